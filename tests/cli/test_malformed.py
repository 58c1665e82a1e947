"""Issue 18: nine malformed catalogs through ``evaluate``, ``infer`` and ``fit``.

Every case: no traceback; a malformed file is refused with one ``error:`` line naming it
(exit 2); otherwise ``evaluate`` and ``infer`` write exactly one row per input row, in
input order, each bad row flagged with its reason, and the preparation report beside the
output. The catalogs are simulated in the layout of the released green2020 test data
(:mod:`._malformed`), and the same cases are cut from the real file when
BAYESDSM_GREEN2020_DIR is set.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.table import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from infer._helpers import FAST as INFER_FAST

from ._malformed import (
    CASES,
    CUT,
    REFUSED,
    make_case,
    simulated_rows,
    split,
    texts,
    write_green2020,
)

N_ROWS = 40
ROW_CASES = [c for c in CASES if c not in REFUSED]


def check_refused(res, case, path):
    assert res.code == 2, res.err
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("error: ") and str(path) in last and REFUSED[case] in last, last


def numbers(col) -> np.ndarray:
    """A float column as an array, NaN where masked (FITS reads NaN back as masked)."""
    return np.ma.filled(np.ma.asarray(col, float), np.nan)


def check_evaluate(t, summary, n, reasons, cut):
    assert len(t) == n and list(t["row"]) == list(range(n))
    assert list(t["source_id"]) == list(range(n))  # green2020 has no ids: the row index
    for row, reason in reasons.items():
        assert reason in split(t["flags"][row]) or not reason, (row, t["flags"][row])
    for row, rule in cut.items():
        assert f"cut:{rule}" in split(t["flags"][row]) and t["flag"][row] & 16
        assert np.isnan(numbers(t["chi2"])[row]) and np.isnan(numbers(t["chi2_dof"])[row])
    kept = np.setdiff1d(np.arange(n), list(cut))
    assert np.all(np.isfinite(numbers(t["chi2"])[kept]))  # masked values: still evaluated
    nan = ~np.isfinite(numbers(t["chi2_dof"]))
    assert all(texts(t["flags"])[i] for i in np.flatnonzero(nan))  # no NaN without a reason
    assert summary["n_input"] == n and summary["n_evaluated"] == n - len(cut)
    assert summary["n_cut"] == len(cut)
    for rule in set(cut.values()):
        assert summary["flags"][f"cut:{rule}"] == sum(r == rule for r in cut.values())


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate(case, tiny_model_path, tmp_path, run_cli):
    path, n, reasons = make_case(case, simulated_rows(N_ROWS), tmp_path)
    out = tmp_path / "eval.parquet"
    res = run_cli("evaluate", tiny_model_path, path, "--preset", "green2020", "--out", out)
    if case in REFUSED:
        check_refused(res, case, path)
        assert not out.exists()
        return
    assert res.code == 0, res.err
    check_evaluate(Table.read(out), res.summary, n, reasons, CUT.get(case, {}))
    cuts = json.loads((tmp_path / "eval.parquet.cuts.json").read_text())
    assert cuts["n_in"] == n and cuts["n_out"] == n - len(CUT.get(case, {}))
    rules = {r["rule"]: r["count"] for r in cuts["rules"]}
    for reason in {r.split(":")[0] for r in reasons.values() if r}:
        assert rules[f"input:{reason}"] >= 1
    assert "warning: catalog: masked bad values" in res.err or not any(reasons.values())


@pytest.mark.parametrize("case", ["nan_inf_theta", "non_pd_theta_cov"])
def test_evaluate_without_preparation_flags_no_theta(case, tiny_model_path, tmp_path, run_cli):
    path, n, reasons = make_case(case, simulated_rows(N_ROWS), tmp_path)
    out = tmp_path / "eval.ecsv"
    res = run_cli(
        "evaluate", tiny_model_path, path, "--preset", "green2020", "--out", out, "--no-prepare"
    )
    assert res.code == 0, res.err
    t = Table.read(out)
    assert len(t) == n
    for row, reason in reasons.items():
        assert {reason, "no_theta"} <= split(t["flags"][row]) and t["flag"][row] & 2
    assert res.summary["n_evaluated"] == n - len(reasons)
    cuts = json.loads((tmp_path / "eval.ecsv.cuts.json").read_text())
    assert cuts["n_in"] == cuts["n_out"] == n


def test_evaluate_when_every_row_is_cut(tiny_model_path, tmp_path, run_cli):
    a = simulated_rows(6)
    a["atm_param"][:, 1] = np.nan
    path = write_green2020(a, tmp_path / "no_theta.h5")
    out = tmp_path / "eval.csv"
    res = run_cli("evaluate", tiny_model_path, path, "--preset", "green2020", "--out", out)
    assert res.code == 0, res.err
    t = Table.read(out)
    assert len(t) == 6 and all("cut:require_theta" in f for f in texts(t["flags"]))
    assert res.summary["n_evaluated"] == 0 and res.summary["mean_chi2_dof_below5"] is None
    assert "warning: no row could be evaluated" in res.err


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    bad=st.lists(
        st.tuples(
            st.integers(0, 11),
            st.sampled_from(
                ["mag", "mag_err", "atm_param", "parallax", "parallax_err", "r", "r_err"]
            ),
            st.integers(0, 2),
            st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -1.0]),
        ),
        max_size=6,
    )
)
def test_evaluate_keeps_every_row_whatever_the_bad_values(
    bad, tiny_model_path, tmp_path_factory, run_cli
):
    a = simulated_rows(12, seed=1)
    for row, col, k, value in bad:
        if a[col].ndim == 1:
            a[col][row] = value
        else:
            a[col][row, k] = value
    folder = tmp_path_factory.mktemp("hyp")
    path = write_green2020(a, folder / "c.h5")
    res = run_cli(
        "evaluate", tiny_model_path, path, "--preset", "green2020", "--out", folder / "e.ecsv"
    )
    assert res.code == 0, res.err
    t = Table.read(folder / "e.ecsv")
    assert list(t["row"]) == list(range(12))
    bad_rows = {row for row, *_ in bad}
    for i in range(12):
        if not np.isfinite(t["chi2_dof"][i]):
            assert texts(t["flags"])[i], i
        if i not in bad_rows:
            assert not {f for f in split(t["flags"][i]) if f.startswith("cut:")}


# ------------------------------------------------------------------ infer

INFER_ARGS = (
    "--preset",
    "green2020",
    "--method",
    "laplace",
    "--theta-prior",
    "flat",
    "--no-compile-cache",
    "--chunk",
    "32",
)
#: Tiny engine settings, those of tests/infer (one compilation of ~1 min for all cases),
#: without its batch and chunk sizes, which the CLI sets from ``--chunk``.
FAST = {k: v for k, v in INFER_FAST.items() if k not in ("batch_size", "chunk_size")}


@pytest.fixture
def fast_infer(monkeypatch):
    """``bayesdsm infer`` with :data:`FAST` engine settings (the CLI has no flags for them)."""
    import functools

    import bayesdsm.infer

    fast = functools.partial(bayesdsm.infer.InferConfig, **FAST)
    monkeypatch.setattr(bayesdsm.infer, "InferConfig", fast)


@pytest.mark.parametrize("case", list(CASES))
def test_infer(case, tiny_model_path, tmp_path, run_cli, fast_infer):
    path, n, reasons = make_case(case, simulated_rows(24), tmp_path)
    out = tmp_path / "post.parquet"
    res = run_cli("infer", tiny_model_path, path, "--out", out, *INFER_ARGS)
    if case in REFUSED:
        check_refused(res, case, path)
        assert not out.exists()
        return
    assert res.code == 0, res.err
    t = Table.read(out)
    assert len(t) == n and list(t["row"]) == list(range(n))
    for row, reason in reasons.items():
        flags = split(t["flags"][row])
        assert reason in flags or not reason, (row, flags)
        if reason and not reason.startswith("theta_"):  # a value infer uses was masked
            assert "nonfinite_input" in flags
    if case == "no_photometry":
        assert "prior_dominated" in split(t["flags"][12])
    assert res.summary["n_input"] == n
    assert all(res.summary["flags"][r] >= 1 for r in reasons.values() if r)
    cuts = json.loads((tmp_path / "post.parquet.cuts.json").read_text())
    assert cuts["n_in"] == cuts["n_out"] == n


# ------------------------------------------------------------------ fit


@pytest.fixture
def tiny_fit_config(tmp_path):
    path = tmp_path / "fit.toml"
    path.write_text("[train]\nn_iterations = 1\nepochs = 1\nbatch_size = 32\nchunk_size = 64\n")
    return path


@pytest.mark.parametrize("case", list(REFUSED))
def test_fit_refuses_a_malformed_file(case, tmp_path, tiny_fit_config, run_cli):
    path, _, _ = make_case(case, simulated_rows(N_ROWS), tmp_path)
    res = run_cli(
        "fit",
        path,
        "--preset",
        "green2020",
        "--out",
        tmp_path / "m.bdsm",
        "--config",
        tiny_fit_config,
        "--quiet",
    )
    assert res.code == 2, res.err
    assert res.err.strip().splitlines()[-1].startswith("error: ")
    check_refused(res, case, path)
    assert not (tmp_path / "m.bdsm").exists()


def test_fit_stops_when_nothing_trainable_is_left(tmp_path, tiny_fit_config, run_cli):
    a = simulated_rows(20)
    a["atm_param_cov"][:, 1, 1] = -1.0  # every θ̂ masked on reading, then cut
    path = write_green2020(a, tmp_path / "c.h5")
    res = run_cli(
        "fit",
        path,
        "--preset",
        "green2020",
        "--out",
        tmp_path / "m.bdsm",
        "--config",
        tiny_fit_config,
        "--quiet",
    )
    assert res.code == 2, res.err
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("error: no stars left to train on") and "require_theta" in last
    assert not (tmp_path / "m.bdsm").exists()
    cuts = json.loads((tmp_path / "m.bdsm.cuts.json").read_text())  # what was cut, and why
    assert cuts["n_in"] == 20 and cuts["n_out"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("case", ROW_CASES)
def test_fit_trains_on_what_is_left(case, tmp_path, tiny_fit_config, run_cli):
    path, _, _ = make_case(case, simulated_rows(60), tmp_path)
    out = tmp_path / "m.bdsm"
    res = run_cli(
        "fit", path, "--preset", "green2020", "--out", out, "--config", tiny_fit_config, "--quiet"
    )
    assert res.code == 0, res.err
    assert out.exists() and res.summary["iterations"] == 1


# ------------------------------------------------------------------ the real test stars


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_real_stars(case, green2020_rows, green2020_model_path, tmp_path, run_cli):
    path, n, reasons = make_case(case, green2020_rows, tmp_path)
    out = tmp_path / "eval.fits"
    res = run_cli("evaluate", green2020_model_path, path, "--preset", "green2020", "--out", out)
    if case in REFUSED:
        check_refused(res, case, path)
        return
    assert res.code == 0, res.err
    check_evaluate(Table.read(out), res.summary, n, reasons, CUT.get(case, {}))
    assert res.summary["flags"].get("min_parallax_snr", 0) > 10  # ~15% of the real stars


@pytest.mark.slow
@pytest.mark.parametrize("case", ROW_CASES)
def test_infer_real_stars(
    case, green2020_rows, green2020_model_path, tmp_path, run_cli, fast_infer
):
    path, n, reasons = make_case(case, green2020_rows[:24], tmp_path)
    out = tmp_path / "post.ecsv"
    res = run_cli(
        "infer",
        green2020_model_path,
        path,
        "--out",
        out,
        "--preset",
        "green2020",
        "--method",
        "laplace",
        "--no-compile-cache",
    )
    assert res.code == 0, res.err
    t = Table.read(out)
    assert len(t) == n and all(r in split(t["flags"][i]) for i, r in reasons.items() if r)
