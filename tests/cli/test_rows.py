"""The row accounting behind the per-star tables: ``Catalog.flags`` from the reader and
from :func:`bayesdsm.cuts.prepare`, and the report's map back to the input rows."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from bayesdsm.catalog import add_flag, catalog_from_table, catalog_to_table, flag_counts
from bayesdsm.config import CutsConfig
from bayesdsm.cuts import input_report, prepare
from bayesdsm.errors import BayesDSMWarning

from ._malformed import simulated_rows, write_green2020


@pytest.fixture
def catalog(tmp_path):
    from bayesdsm.catalog import read_catalog

    a = simulated_rows(10)
    a["mag_err"][1, 2] = -1.0  # masked band, star kept
    a["atm_param"][2, 0] = np.nan  # no θ̂: require_theta
    a["mag"][3] = a["mag_err"][3] = np.nan  # no G: require_reference_band
    a["mag_err"][4, 5] = 0.5  # σ > 0.2: max_mag_err masks the band
    a["parallax"][5] = 0.01  # SNR < 5
    with pytest.warns(BayesDSMWarning, match="masked bad values"):
        return read_catalog(write_green2020(a, tmp_path / "c.h5"), preset="green2020")


def test_reader_flags_each_masked_value(catalog):
    assert catalog.flags[1] == "mag_err_nonpositive:mag_err_RP"
    assert catalog.flags[2] == "theta_nonfinite:teff"
    assert not any(catalog.flags[[0, 3, 4, 5]])
    sub = catalog.subset([2, 1])
    assert list(sub.flags) == ["theta_nonfinite:teff", "mag_err_nonpositive:mag_err_RP"]


def test_prepare_maps_every_input_row(catalog):
    cat = catalog.replace(source_id=np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 8]))
    out, rep = prepare(cat, CutsConfig(duplicates="best"))
    assert list(rep.removed_by[:4]) == ["", "", "require_theta", "require_reference_band"]
    assert rep.removed_by[8] == "duplicates" or rep.removed_by[9] == "duplicates"
    assert len(rep.kept) == rep.n_out == len(out) == 7
    np.testing.assert_array_equal(out.source_id, cat.source_id[rep.kept])
    assert rep.removed_counts() == {
        "duplicates": 1,
        "require_reference_band": 1,
        "require_theta": 1,
    }
    flags = dict(zip(rep.kept.tolist(), out.flags, strict=True))
    assert flags[4] == "max_mag_err:i" and "min_parallax_snr" in flags[5]
    cols = rep.to_input_rows({"x": np.arange(7.0), "k": np.arange(7), "s": out.flags})
    assert np.isnan(cols["x"][2]) and cols["k"][3] == 0 and cols["s"][2] == ""
    np.testing.assert_array_equal(cols["x"][rep.kept], np.arange(7.0))


def test_input_report_keeps_every_row(catalog):
    rep = input_report(catalog)
    assert rep.n_in == rep.n_out == 10 and not any(rep.removed_by)
    assert {r.rule for r in rep.rules} == {"input:mag_err_nonpositive", "input:theta_nonfinite"}


def test_flags_are_not_written_to_catalog_files(catalog):
    t = catalog_to_table(catalog)
    assert "flags" not in t.colnames
    assert not any(catalog_from_table(t).flags)  # the masked values are NaN: nothing to flag


def test_flag_helpers():
    flags = add_flag(np.array(["", "a", ""], object), np.array([True, True, False]), "b")
    assert list(flags) == ["b", "a,b", ""]
    assert flag_counts(flags) == {"a": 1, "b": 2}
    assert flag_counts(Table({"f": ["x,y", "y", ""]})["f"]) == {"x": 1, "y": 2}
