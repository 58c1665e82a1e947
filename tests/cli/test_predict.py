"""``bayesdsm predict`` on malformed θ files: every row kept, bad rows flagged with NaN
outputs, or one clear error naming the column (issue 18)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesdsm.evaluate import predict_table
from bayesdsm.model_file import load_model

from ._malformed import texts

MODEL_COLUMNS = ("M_G", "BP_G", "W2_G", "R_G", "spread_M_G", "validity_G", "validity_parallax")


def predict(run_cli, model, theta_file, out, *extra):
    return run_cli("predict", model, "--theta-file", theta_file, "--out", out, *extra)


def test_bad_values_are_flagged_rows_with_nan_outputs(tiny_model_path, tmp_path, run_cli):
    path = tmp_path / "theta.csv"
    path.write_text(
        "source_id,teff,logg,feh\n"
        "11,5500,3.5,0.0\n"  # good
        "12,nan,3.5,0.0\n"
        "13,5500,inf,0.0\n"  # issue 18: log g = inf gave a finite M_G (7.03)
        "14,5500,3.5,-inf\n"
        "15,hot,3.5,0.0\n"  # a string makes the whole column text
        "16,5500,,0.0\n"  # an empty cell
        "17,5400,3.4,-0.1\n"  # good
    )
    out = tmp_path / "pred.ecsv"
    res = predict(run_cli, tiny_model_path, path, out, "--ebv", "0.2")
    assert res.code == 0, res.err
    t = Table.read(out)
    assert list(t["row"]) == list(range(7)) and list(t["source_id"]) == list(range(11, 18))
    expected = [
        "",
        "theta_nonfinite:teff",
        "theta_nonfinite:logg",
        "theta_nonfinite:feh",
        "theta_not_a_number:teff",
        "theta_missing:logg",
        "",
    ]
    assert texts(t["flags"]) == expected
    for c in (*MODEL_COLUMNS, "M_G_red", "spread_M_G_red"):
        v = np.ma.filled(np.ma.asarray(t[c], float), np.nan)
        assert np.all(np.isnan(v[1:6])), c  # non-finite θ never yields a finite prediction
        assert np.all(np.isfinite(v[[0, 6]])), c
    s = res.summary
    assert s["n_input"] == s["n_rows"] == 7 and s["n_predicted"] == 2
    assert s["flags"]["theta_nonfinite:logg"] == 1 and s["flags"]["theta_not_a_number:teff"] == 1


def test_far_theta_is_predicted_and_flagged(tiny_model_path, tmp_path, run_cli):
    path = tmp_path / "theta.parquet"
    Table({"teff": [5500.0, 30000.0], "logg": [3.5, 4.0], "feh": [0.0, 0.0]}).write(path)
    res = predict(run_cli, tiny_model_path, path, tmp_path / "p.fits")
    assert res.code == 0, res.err
    t = Table.read(tmp_path / "p.fits")
    flags = texts(t["flags"])
    assert flags[0] == "" and set(flags[1].split(",")) == {"outside_range", "outside_validity"}
    assert np.isfinite(t["M_G"][1])  # evaluated anyway, with a warning
    assert "warning: 1 of 2 stars have θ more than 4.0 standard deviations" in res.err


def test_masked_cells_of_a_table_format(tiny_model_path, tmp_path, run_cli):
    path = tmp_path / "theta.ecsv"
    teff = MaskedColumn([5500.0, 5600.0], mask=[False, True])
    Table({"teff": teff, "logg": [3.5, 3.6], "feh": [0.0, 0.1]}).write(path)
    res = predict(run_cli, tiny_model_path, path, tmp_path / "p.parquet")
    assert res.code == 0, res.err
    t = Table.read(tmp_path / "p.parquet")
    assert texts(t["flags"]) == ["", "theta_missing:teff"] and np.isnan(t["M_G"][1])
    assert "source_id" not in t.colnames  # the file has none: the row index is the id


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("teff,logg\n5500,3.5\n", ["missing column(s) ['feh']"]),
        ("teff,logg,feh\n", ["no rows"]),
        ("\x00\x01 not a table \xff", ["cannot be read as CSV"]),
    ],
)
def test_unusable_theta_file_is_one_clear_error(text, words, tiny_model_path, tmp_path, run_cli):
    path = tmp_path / "theta.csv"
    path.write_bytes(text.encode("latin-1"))
    res = predict(run_cli, tiny_model_path, path, tmp_path / "p.csv")
    assert res.code == 2
    (line,) = res.err.strip().splitlines()
    assert line.startswith(f"error: {path}") and all(w in line for w in words), line
    assert not (tmp_path / "p.csv").exists()


def test_non_numeric_column_type_names_the_column(tiny_model_path, tmp_path, run_cli):
    path = tmp_path / "theta.ecsv"
    Table({"teff": [5500.0], "logg": [[3.5, 1.0]], "feh": [0.0]}).write(path)
    res = predict(run_cli, tiny_model_path, path, tmp_path / "p.csv")
    assert res.code == 2 and "column 'logg'" in res.err


BAD = st.sampled_from([np.nan, np.inf, -np.inf])


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    theta=st.lists(
        st.tuples(
            st.one_of(st.floats(4000, 7000), BAD),
            st.one_of(st.floats(1.0, 5.0), BAD),
            st.one_of(st.floats(-2.0, 0.5), BAD),
        ),
        min_size=1,
        max_size=9,
    )
)
def test_every_row_out_and_no_finite_prediction_from_bad_theta(
    theta, tiny_model_path, tmp_path_factory, run_cli
):
    theta = np.array(theta, float)
    folder = tmp_path_factory.mktemp("hyp")
    path = folder / "theta.parquet"
    Table({"teff": theta[:, 0], "logg": theta[:, 1], "feh": theta[:, 2]}).write(path)
    res = predict(run_cli, tiny_model_path, path, folder / "p.parquet", "--ebv", "0.1")
    assert res.code == 0, res.err
    t = Table.read(folder / "p.parquet")
    assert len(t) == len(theta) and list(t["row"]) == list(range(len(theta)))
    bad = ~np.all(np.isfinite(theta), axis=1)
    for c in ("M_G", "BP_G_red", "R_W2", "spread_R_G", "validity_G"):
        v = np.asarray(t[c], float)
        assert not np.any(np.isfinite(v[bad])), c
        assert np.all(np.isfinite(v[~bad])), c
    assert all("theta_nonfinite" in f for f in np.asarray(texts(t["flags"]))[bad])


def test_predict_table_never_predicts_from_non_finite_theta(tiny_model_path):
    model = load_model(tiny_model_path)
    cols = predict_table(model, [[5500.0, np.inf, 0.0], [5500.0, 3.5, 0.0]], ebv=[0.1, np.nan])
    assert list(cols["flags"]) == ["theta_nonfinite:logg", "ebv_nonfinite"]
    assert np.all(np.isnan([cols["M_G"], cols["M_G_red"]]))  # both rows: θ or E is bad
