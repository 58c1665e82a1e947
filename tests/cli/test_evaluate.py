"""Smoke tests of `bayesdsm import-green2020`, `evaluate` and `predict` (main(argv))."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from _reference import random_emulator, random_stars
from astropy.table import Table

from bayesdsm.catalog import Catalog, write_catalog
from bayesdsm.cli import COMMANDS, build_parser, main
from bayesdsm.conventions import BANDS
from bayesdsm.model_file import StellarModel, save_model


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    emu = random_emulator(jax.random.PRNGKey(1), np.float32)
    bias = np.asarray(emu.extinction.bias)
    model = StellarModel(emulator=emu, epistemic={"R_bias": np.stack([bias, bias + 0.05])})
    return save_model(model, tmp_path_factory.mktemp("m") / "m.bdsm")


def small_catalog(n=12) -> Catalog:
    s = random_stars(np.random.default_rng(3), n)
    mag = np.where(s.mask > 0, s.mag, np.nan)
    mag[1, 1:] = np.nan  # only G: no colour -> flagged
    theta_cov = s.theta_chol @ np.swapaxes(s.theta_chol, 1, 2)
    plx = np.where(s.has_parallax > 0, 10 ** ((10 - s.mu) / 5), np.nan)
    return Catalog.from_arrays(
        bands=BANDS, mag=mag, mag_err=np.where(np.isfinite(mag), s.mag_err, np.nan), theta=s.theta,
        theta_cov=theta_cov, parallax=plx, parallax_err=plx * 0.05, ebv=s.ebv, ebv_err=s.ebv_err,
    )  # fmt: skip


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_table_and_help(capsys):
    assert {"import-green2020", "evaluate", "predict"} <= set(COMMANDS)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["evaluate", "--help"])
    assert "dof = (number of modelled components) - 1" in capsys.readouterr().out


def test_evaluate(model_path, tmp_path, capsys):
    cat_path = write_catalog(small_catalog(), tmp_path / "cat.ecsv")
    out = tmp_path / "eval.ecsv"
    assert main([
        "evaluate", str(model_path), str(cat_path), "--out", str(out), "--no-prepare"
    ]) == 0  # fmt: skip
    summary = last_json(capsys.readouterr().out)
    assert summary["n_input"] == 12 and summary["n_stars"] == 11 and summary["n_evaluated"] == 12
    assert {"mean_chi2_dof_below5", "frac_chi2_dof_above5"} <= set(summary)
    assert summary["flags"]["no_colour"] == 1
    t = Table.read(out)
    assert t.colnames[:3] == ["row", "source_id", "chi2"]
    assert {"chi2", "dof", "chi2_dof", "flag", "flags", "score_BP_G", "score_W2_G"} <= set(
        t.colnames
    )
    assert t["flag"][1] & 1 and np.isnan(t["chi2_dof"][1]) and t["flags"][1] == "no_colour"
    assert np.all(np.isfinite(np.delete(np.asarray(t["chi2_dof"]), 1)))
    cuts = json.loads((tmp_path / "eval.ecsv.cuts.json").read_text())
    assert cuts["n_in"] == cuts["n_out"] == 12


def test_evaluate_with_preparation_keeps_cut_rows(model_path, tmp_path, capsys):
    cat = small_catalog()
    theta = cat.theta.copy()
    theta[4] = np.nan  # no θ̂: removed by require_theta
    cat_path = write_catalog(cat.replace(theta=theta), tmp_path / "cat.parquet")
    out = tmp_path / "eval.parquet"
    assert main(["evaluate", str(model_path), str(cat_path), "--out", str(out)]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["n_input"] == 12 and summary["n_evaluated"] == 11 and summary["n_cut"] == 1
    t = Table.read(out)
    assert list(t["row"]) == list(range(12)) and list(t["source_id"]) == list(range(12))
    assert t["flags"][4] == "cut:require_theta" and t["flag"][4] == 16 and t["dof"][4] == 0
    assert np.isnan(t["chi2"][4]) and np.isnan(t["score_BP_G"][4])
    cuts = json.loads((tmp_path / "eval.parquet.cuts.json").read_text())
    assert {r["rule"]: r["count"] for r in cuts["rules"]}["require_theta"] == 1


def test_predict(model_path, tmp_path, capsys):
    theta = tmp_path / "theta.csv"
    Table({"teff": [5780.0, 4500.0], "logg": [4.44, 2.5], "feh": [0.0, -0.5]}).write(theta)
    out = tmp_path / "pred.csv"
    code = main(["predict", str(model_path), "--theta-file", str(theta), "--out", str(out),
                 "--ebv", "0.5"])  # fmt: skip
    assert code == 0
    t = Table.read(out)
    for c in ("M_G", "BP_G", "W2_G", "R_G", "R_W2", "M_G_red", "BP_G_red", "spread_R_G"):
        assert c in t.colnames, c
    np.testing.assert_allclose(t["M_G_red"], t["M_G"] + 0.5 * t["R_G"], rtol=1e-6)
    np.testing.assert_allclose(t["BP_G_red"], t["BP_G"] + 0.5 * (t["R_BP"] - t["R_G"]), rtol=1e-6)
    assert np.all(np.asarray(t["spread_R_G"]) > 0)
    assert last_json(capsys.readouterr().out)["n_rows"] == 2


def test_bad_model_file_is_a_clean_error(tmp_path, capsys):
    bad = tmp_path / "bad.bdsm"
    bad.write_bytes(b"BDSMODEL" + b"\xff" * 40)
    theta = tmp_path / "theta.csv"
    Table({"teff": [5780.0], "logg": [4.44], "feh": [0.0]}).write(theta)
    assert main(["predict", str(bad), "--theta-file", str(theta), "--out", "x.csv"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(bad) in err and "Traceback" not in err


def test_import_green2020_then_predict(green2020_dir, tmp_path, capsys):
    out = tmp_path / "g.bdsm"
    assert main(["import-green2020", str(green2020_dir), "--out", str(out)]) == 0
    theta = tmp_path / "theta.csv"
    Table({"teff": [5780.0], "logg": [4.44], "feh": [0.0]}).write(theta)
    pred = tmp_path / "p.csv"
    assert main(["predict", str(out), "--theta-file", str(theta), "--out", str(pred),
                 "--ebv", "1"]) == 0  # fmt: skip
    t = Table.read(pred)
    # PAPER.md "Known values" (authors' tutorial): B(M + E R) at the Sun, E = 1
    assert t["M_G_red"][0] == pytest.approx(7.2703, abs=1e-4)
    assert t["W2_G_red"][0] == pytest.approx(-0.6578, abs=1e-4)
    assert t["validity_G"][0] > 1e-2 and "validity_parallax" in t.colnames
