"""Catalog file I/O: round trips for every format, and the readers on bad input."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bayesdsm.catalog import (
    COV_COLUMNS,
    Catalog,
    catalog_from_table,
    catalog_to_table,
    read_catalog,
    write_catalog,
)
from bayesdsm.conventions import BANDS
from bayesdsm.errors import BayesDSMWarning, CatalogError

FORMATS = ["fits", "parquet", "ecsv", "csv", "h5"]
HSET = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_catalog(n=12, bands=("G", "BP", "RP", "J", "W1"), seed=0) -> Catalog:
    rng = np.random.default_rng(seed)
    nb = len(bands)
    mag = rng.uniform(10, 18, (n, nb))
    err = rng.uniform(0.01, 0.1, (n, nb))
    unobs = rng.random((n, nb)) < 0.2
    unobs[:, 0] = False
    mag[unobs] = err[unobs] = np.nan
    theta = np.c_[rng.uniform(4000, 7000, n), rng.uniform(1, 5, n), rng.uniform(-2, 0.5, n)]
    sig = np.c_[rng.uniform(20, 100, n), rng.uniform(0.05, 0.2, n), rng.uniform(0.03, 0.1, n)]
    rho = rng.uniform(-0.5, 0.5, n)
    cov = np.zeros((n, 3, 3))
    cov[:, [0, 1, 2], [0, 1, 2]] = sig**2
    cov[:, 0, 1] = cov[:, 1, 0] = rho * sig[:, 0] * sig[:, 1]
    theta[-1] = np.nan  # a photometric-only star
    cov[-1] = np.nan
    plx = rng.normal(1, 0.5, n)
    observed = np.isfinite(mag)
    observed[1, 1] = False  # masked although it has values
    return Catalog.from_arrays(
        bands=bands,
        mag=mag,
        mag_err=err,
        observed=observed,
        theta=theta,
        theta_cov=cov,
        parallax=plx,
        parallax_err=np.full(n, 0.1),
        parallax_ok=np.arange(n) % 3 != 0,
        ebv=rng.uniform(0, 1, n),
        ebv_err=np.full(n, 0.05),
        survey=np.array(["apogee", "galah", "lamost"])[np.arange(n) % 3],
        source_id=np.arange(n, dtype=np.int64) * 10**15 + 7,
        ra=rng.uniform(0, 360, n),
        dec=rng.uniform(-90, 90, n),
        extra={"true_mu": rng.normal(10, 1, n), "note": np.array([f"s{i}" for i in range(n)])},
        meta={"origin": "test", "n_draws": 3},
    )


def assert_catalogs_equal(a: Catalog, b: Catalog, meta=True):
    assert a.bands == b.bands
    for name in (
        "theta",
        "theta_cov",
        "mag",
        "mag_err",
        "parallax",
        "parallax_err",
        "ebv",
        "ebv_err",
        "ra",
        "dec",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("observed", "parallax_ok", "survey", "source_id"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert set(a.extra) == set(b.extra)
    for k in a.extra:
        np.testing.assert_array_equal(a.extra[k], b.extra[k], err_msg=k)
    if meta:
        for k, v in a.meta.items():
            assert b.meta[k] == v, k


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_every_format(tmp_path, fmt):
    cat = make_catalog()
    path = write_catalog(cat, tmp_path / f"cat.{fmt}")
    back = read_catalog(path)
    assert_catalogs_equal(cat, back, meta=fmt != "csv")
    assert not np.isfinite(back.mag[~np.isfinite(cat.mag)]).any()  # NaN masks preserved
    assert [p.name for p in tmp_path.iterdir()] == [f"cat.{fmt}"]  # no temporary left


@pytest.mark.parametrize("fmt", ["fits", "parquet", "ecsv", "h5"])
def test_round_trip_keeps_band_order(tmp_path, fmt):
    cat = make_catalog(bands=("RP", "G", "W1"))
    back = read_catalog(write_catalog(cat, tmp_path / f"c.{fmt}"))
    assert back.bands == ("RP", "G", "W1")


def test_csv_gives_paper_band_order_and_overwrites_atomically(tmp_path):
    path = tmp_path / "c.csv"
    write_catalog(make_catalog(n=5), path)
    write_catalog(make_catalog(n=7, bands=("W1", "G")), path)
    back = read_catalog(path)
    assert len(back) == 7 and back.bands == ("G", "W1")


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = write_catalog(make_catalog(n=5), tmp_path / "c.parquet")

    def broken_write(self, tmp, **kwargs):
        tmp.write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Table, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_catalog(make_catalog(n=7), path)
    assert [p.name for p in tmp_path.iterdir()] == ["c.parquet"]
    monkeypatch.undo()
    assert len(read_catalog(path)) == 5


def test_csv_refuses_multidimensional_extra(tmp_path):
    cat = make_catalog(n=4)
    cat = cat.replace(extra={"vec": np.zeros((4, 2))})
    with pytest.raises(CatalogError, match="vec") as exc:
        write_catalog(cat, tmp_path / "c.csv")
    assert exc.value.rule == "csv_multidim"
    assert not list(tmp_path.iterdir())


def test_units_are_converted(tmp_path):
    t = catalog_to_table(make_catalog(n=4))
    t["parallax"] = t["parallax"].to("arcsec")
    cat = catalog_from_table(t)
    np.testing.assert_allclose(cat.parallax, make_catalog(n=4).parallax)


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(CatalogError, match="format"):
        write_catalog(make_catalog(n=2), tmp_path / "c.xyz")
    with pytest.raises(CatalogError, match="no such catalog file"):
        read_catalog(tmp_path / "nope.fits")


def test_hdf5_without_catalog_path_says_use_a_preset(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(CatalogError, match="preset"):
        read_catalog(tmp_path / "x.h5")


def test_diagonal_errors_instead_of_covariance():
    t = Table(
        {
            "mag_G": [12.0, 13.0],
            "mag_err_G": [0.01, 0.02],
            "teff": [5000.0, 6000.0],
            "logg": [4.0, 4.5],
            "feh": [0.0, -0.5],
            "teff_err": [50.0, 60.0],
            "logg_err": [0.1, 0.1],
            "feh_err": [0.05, 0.05],
        }
    )
    cat = catalog_from_table(t)
    np.testing.assert_allclose(cat.theta_cov[1], np.diag([3600.0, 0.01, 0.0025]))
    assert cat.meta["validation"] == []


# ----------------------------------------------------------------------------------------
# bad input: hypothesis


def good_table(n=6):
    return catalog_to_table(make_catalog(n=n, bands=("G", "BP", "J")))


REQUIRED = ["mag_err_G", "mag_err_J", "logg", "cov_logg_feh", "parallax_err", "ebv_err", "dec"]


@HSET
@given(col=st.sampled_from(REQUIRED))
def test_missing_column_names_it(col):
    t = good_table()
    del t[col]
    with pytest.raises(CatalogError) as exc:
        catalog_from_table(t)
    assert exc.value.rule == "missing_column"
    assert exc.value.column == col
    assert col in str(exc.value)


# (column, bad values, rule); NaN parallax means "no parallax", so only inf is bad there.
NONFINITE = [
    ("mag_G", [np.nan, np.inf, -np.inf], "mag_nonfinite"),
    ("mag_err_BP", [np.nan, np.inf], "mag_err_nonfinite"),
    ("teff", [np.nan, np.inf, -np.inf], "theta_nonfinite"),
    ("feh", [np.nan, np.inf], "theta_nonfinite"),
    ("cov_teff_logg", [np.nan, np.inf], "theta_err_nonfinite"),
    ("parallax", [np.inf, -np.inf], "parallax_nonfinite"),
    ("parallax_err", [np.nan, np.inf], "parallax_err_nonfinite"),
    ("ebv", [np.nan, np.inf], "ebv_nonfinite"),
    ("ebv_err", [np.nan, np.inf], "ebv_err_nonfinite"),
]
NONPOSITIVE = [
    ("mag_err_G", "mag_err_nonpositive"),
    ("cov_teff_teff", "theta_err_nonpositive"),
    ("cov_feh_feh", "theta_err_nonpositive"),
    ("parallax_err", "parallax_err_nonpositive"),
    ("ebv_err", "ebv_err_nonpositive"),
]


def check_masking(cat: Catalog, column: str, row: int):
    """The documented masking happened for (column, row)."""
    if column.startswith("mag"):
        band = column.split("_")[-1]
        assert not cat.observed[row, cat.bands.index(band)]
        assert np.isnan(cat.mag[row, cat.bands.index(band)])
    elif column in ("teff", "logg", "feh") or column.startswith("cov_") or column == "theta_cov":
        assert not cat.has_theta[row]
        assert np.isnan(cat.theta_cov[row]).all()
    elif column.startswith("parallax"):
        assert not cat.parallax_ok[row]
    else:
        assert (cat.ebv[row], cat.ebv_err[row]) == (0.0, 10.0)
    others = np.arange(len(cat)) != row
    assert cat.observed[others, 0].all()  # other stars untouched


def inject(column, row, value):
    t = good_table()
    t[column][row] = value
    return t


@HSET
@given(case=st.sampled_from(NONFINITE), row=st.integers(0, 4), data=st.data())
def test_nonfinite_values_raise_when_strict_and_mask_otherwise(case, row, data):
    column, values, rule = case
    t = inject(column, row, data.draw(st.sampled_from(values)))
    with pytest.raises(CatalogError) as exc:
        catalog_from_table(t, strict=True)
    assert (exc.value.column, exc.value.rule) == (column, rule)
    assert row in exc.value.rows and str(row) in str(exc.value)
    with pytest.warns(BayesDSMWarning, match=rule):
        cat = catalog_from_table(t)
    (issue,) = [v for v in cat.meta["validation"] if v["rule"] == rule]
    assert issue["count"] == 1 and issue["rows"] == [row] and issue["column"] == column
    check_masking(cat, column, row)


@HSET
@given(
    case=st.sampled_from(NONPOSITIVE),
    row=st.integers(0, 4),
    value=st.floats(max_value=0.0, allow_nan=False, allow_infinity=False),
)
def test_nonpositive_errors_raise_when_strict_and_mask_otherwise(case, row, value):
    column, rule = case
    t = inject(column, row, value)
    with pytest.raises(CatalogError) as exc:
        catalog_from_table(t, strict=True)
    assert (exc.value.column, exc.value.rule, exc.value.rows) == (column, rule, [row])
    with pytest.warns(BayesDSMWarning, match=rule):
        cat = catalog_from_table(t)
    check_masking(cat, column, row)


@HSET
@given(
    row=st.integers(0, 4),
    corr=st.floats(1.0, 50.0),
    sign=st.sampled_from([-1.0, 1.0]),
    pair=st.sampled_from([("teff", "logg"), ("teff", "feh"), ("logg", "feh")]),
)
def test_non_positive_definite_covariance(row, corr, sign, pair):
    t = good_table()
    a, b = pair
    t[f"cov_{a}_{b}"][row] = sign * corr * np.sqrt(t[f"cov_{a}_{a}"][row] * t[f"cov_{b}_{b}"][row])
    with pytest.raises(CatalogError) as exc:
        catalog_from_table(t, strict=True)
    assert (exc.value.column, exc.value.rule, exc.value.rows) == (
        "theta_cov",
        "theta_cov_not_pd",
        [row],
    )
    with pytest.warns(BayesDSMWarning, match="theta_cov_not_pd"):
        cat = catalog_from_table(t)
    check_masking(cat, "theta_cov", row)
    assert cat.has_theta.sum() == len(cat) - 2  # the bad row and the photometric-only star


@HSET
@given(name=st.text(alphabet="abcdefghkmnopqstuvwxXZ0123456789", min_size=1, max_size=6))
def test_unknown_band(name):
    if name in BANDS or name.startswith("err"):
        return
    t = good_table()
    t[f"mag_{name}"] = 15.0
    t[f"mag_err_{name}"] = 0.1
    with pytest.raises(CatalogError) as exc:
        catalog_from_table(t)
    assert (exc.value.column, exc.value.rule) == (f"mag_{name}", "unknown_band")
    # a superset on purpose is fine
    cat = catalog_from_table(t, bands=("G", "BP", "J", name))
    assert cat.bands[-1] == name


def test_missing_values_in_both_mag_and_error_are_just_unobserved():
    t = good_table()
    t["mag_J"][2] = t["mag_err_J"][2] = np.nan
    t["ebv"][1] = t["ebv_err"][1] = np.nan
    cat = catalog_from_table(t)  # no warning (filterwarnings = error)
    assert not cat.observed[2, 2]
    assert [v["rule"] for v in cat.meta["validation"]] == ["ebv_missing"]


def test_bad_rows_counted_across_columns():
    t = good_table()
    t["mag_err_G"][[0, 3]] = -1.0
    with pytest.warns(BayesDSMWarning):
        cat = catalog_from_table(t)
    (issue,) = cat.meta["validation"]
    assert issue["count"] == 2 and issue["rows"] == [0, 3]


def test_source_id_must_be_integer():
    t = good_table()
    t["source_id"] = t["source_id"].astype(float)
    with pytest.raises(CatalogError) as exc:
        catalog_from_table(t)
    assert exc.value.column == "source_id"


def test_cov_columns_are_the_six_upper_entries():
    assert [c for c, _, _ in COV_COLUMNS] == [
        "cov_teff_teff",
        "cov_teff_logg",
        "cov_teff_feh",
        "cov_logg_logg",
        "cov_logg_feh",
        "cov_feh_feh",
    ]
