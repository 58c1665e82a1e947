"""Column presets: each archive schema on a tiny synthetic table with its real column names."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from astropy.table import MaskedColumn, Table

from bayesdsm.catalog import (
    apply_preset,
    catalog_from_table,
    flux_to_mag,
    list_presets,
    load_preset,
    merge_catalogs,
    read_catalog,
    read_table,
)
from bayesdsm.errors import CatalogError, ConfigError

SHIPPED = [
    "apogee_dr17",
    "gaia_dr3",
    "galah_dr3",
    "green2020",
    "lamost_ddpayne",
    "ps1",
    "twomass",
    "unwise",
]

# Known values: (flux, flux_err, zero point) -> (mag, mag_err), tolerance 1e-9.
FLUX_TABLE = [
    # unWISE: 1 nanomaggy is 22.5 Vega mag by definition of the nanomaggy (Schlafly+2019)
    (1.0, 0.1, 22.5, 22.5, 2.5 / math.log(10) * 0.1),
    # 100 nanomaggies -> 17.5 mag
    (100.0, 1.0, 22.5, 17.5, 2.5 / math.log(10) * 0.01),
    # Gaia DR3 G: a flux of 1 e-/s is the zero point itself, 25.6874 (DR3 doc. Table 5.2)
    (1.0, 0.0, 25.6874, 25.6874, 0.0),
    # Gaia: F = 10^(0.4 (25.6874 - 15)) e-/s is G = 15; sigma_F/F = 1% -> 0.010857 mag
    (
        10 ** (0.4 * (25.6874 - 15.0)),
        0.01 * 10 ** (0.4 * (25.6874 - 15.0)),
        25.6874,
        15.0,
        0.0108574,
    ),
]


def test_shipped_presets_load():
    assert list_presets() == SHIPPED
    for name in SHIPPED:
        assert load_preset(name).name == name


def test_unknown_preset_and_unknown_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'sdss99'"):
        load_preset("sdss99")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ncolumnz = {teff = "T"}\n')
    with pytest.raises(ConfigError, match="columnz"):
        load_preset(bad)


@pytest.mark.parametrize("flux, err, zp, mag, mag_err", FLUX_TABLE)
def test_flux_to_mag_known_values(flux, err, zp, mag, mag_err):
    m, e = flux_to_mag(np.array([flux]), np.array([err]), zp)
    assert m[0] == pytest.approx(mag, abs=1e-9)
    assert e[0] == pytest.approx(mag_err, abs=1e-6)


def test_flux_to_mag_nonpositive_is_unobserved():
    m, e = flux_to_mag(np.array([0.0, -3.0, np.nan]), np.ones(3), 22.5)
    assert np.isnan(m).all() and np.isnan(e).all()


def test_apogee_dr17_flags_and_columns():
    # ASPCAPFLAG bits: 7 = STAR_WARN, 23 = STAR_BAD (APOGEE_ASPCAPFLAG bitmask); bit 0 is
    # TEFF_WARN, which alone does not remove a star.
    t = Table(
        {
            "APOGEE_ID": ["2M1", "2M2", "2M3", "2M4"],
            "GAIAEDR3_SOURCE_ID": np.array([11, 12, 13, 14], dtype=np.int64),
            "TEFF": [4800.0, 5000.0, 5200.0, 5400.0],
            "TEFF_ERR": [50.0, 60.0, 70.0, 80.0],
            "LOGG": [2.5, 3.0, 3.5, 4.0],
            "LOGG_ERR": [0.05, 0.05, 0.05, 0.05],
            "M_H": [-0.1, 0.0, 0.1, 0.2],
            "M_H_ERR": [0.01, 0.01, 0.01, 0.01],
            "RA": [1.0, 2, 3, 4],
            "DEC": [5.0, 6, 7, 8],
            "GLON": [10.0, 20, 30, 40],
            "GLAT": [-1.0, -2, -3, -4],
            "ASPCAPFLAG": np.array([0, 1 << 7, 1 << 23, 1 << 0], dtype=np.uint64),
        }
    )
    out = apply_preset(t, "apogee_dr17")
    assert list(out["source_id"]) == [11, 14]
    assert list(out["feh"]) == [-0.1, 0.2] and list(out["survey"]) == ["apogee", "apogee"]
    assert [r["removed"] for r in out.meta["preset_rejected"]] == [2]
    with pytest.raises(CatalogError, match="partial catalog") as exc:
        catalog_from_table(out)
    assert exc.value.rule == "missing_column"


def test_galah_dr3_flags():
    t = Table(
        {
            "sobject_id": np.arange(4),
            "dr3_source_id": np.array([1, 2, 3, 4], np.int64),
            "teff": [5700.0, 5800, 5900, 6000],
            "e_teff": [80.0, 80, 80, 80],
            "logg": [4.4, 4.3, 4.2, 4.1],
            "e_logg": [0.2, 0.2, 0.2, 0.2],
            "fe_h": [0.0, -0.2, -0.4, -0.6],
            "e_fe_h": [0.07, 0.07, 0.07, 0.07],
            "flag_sp": [0, 1, 0, 0],
            "flag_fe_h": [0, 0, 4, 0],
        }
    )
    out = apply_preset(t, "galah_dr3")
    assert list(out["source_id"]) == [1, 4] and list(out["feh_err"]) == [0.07, 0.07]
    assert [r["removed"] for r in out.meta["preset_rejected"]] == [1, 1]


def test_lamost_ddpayne_cuts_case_insensitive():
    t = Table(
        {
            "source_id": np.array([1, 2, 3, 4], np.int64),
            "teff": [5000.0, 5100, 5200, 5300],
            "teff_err": [30.0, 30, 30, 30],
            "logg": [4.5, 4.5, 4.5, 4.5],
            "logg_err": [0.05, 0.05, 0.05, 0.05],
            "feh": [0.0, 0, 0, 0],
            "feh_err": [0.03, 0.03, 0.03, 0.03],
            "snr_u": [5.0, 5, 5, 5],
            "snr_g": [25.0, 10, 25, 25],
            "snr_r": [0.0, 19, 0, 0],
            "snr_i": [np.nan, 1, 0, 0],
            "snr_z": [0.0, 0, 0, 0],
            "qflag_chi2": ["good", "good", "bad", "good"],
            "flag_singlestar": ["YES", "YES", "YES", "NO"],
        }
    )
    out = apply_preset(t, "lamost_ddpayne")
    assert list(out["source_id"]) == [1]
    assert [r["removed"] for r in out.meta["preset_rejected"]] == [1, 1, 1]


def gaia_table():
    zp = {"g": 25.6874, "bp": 25.3385, "rp": 24.7479}
    mags = {"g": [12.0, 15.0], "bp": [12.5, np.nan], "rp": [11.4, 14.2]}
    t = Table(
        {
            "source_id": np.array([11, 21], np.int64),
            "ra": [1.0, 2.0],
            "dec": [3.0, 4.0],
            "l": [5.0, 6.0],
            "b": [7.0, 8.0],
            "parallax": [2.0, 0.1],
            "parallax_error": [0.02, 0.05],
        }
    )
    for b, m in mags.items():
        flux = 10 ** (0.4 * (zp[b] - np.array(m)))
        t[f"phot_{b}_mean_flux"] = flux
        t[f"phot_{b}_mean_flux_error"] = 0.001 * flux
    return t


def test_gaia_dr3_fluxes_to_vega_mags():
    out = apply_preset(gaia_table(), "gaia_dr3")
    np.testing.assert_allclose(out["mag_G"], [12.0, 15.0], atol=1e-9)
    np.testing.assert_allclose(out["mag_RP"], [11.4, 14.2], atol=1e-9)
    assert np.isnan(out["mag_BP"][1]) and np.isnan(out["mag_err_BP"][1])
    np.testing.assert_allclose(out["mag_err_G"], 2.5 / np.log(10) * 0.001)
    assert list(out["parallax_err"]) == [0.02, 0.05]
    cat = catalog_from_table(out)  # a photometric-only partial catalog is a Catalog
    assert cat.bands == ("G", "BP", "RP") and not cat.has_theta.any()
    assert not cat.observed[1, 1]


def ps1_table():
    t = Table({"source_id": np.array([11, 21], np.int64)})
    for k, f in enumerate("grizy"):
        t[f"{f}MeanPSFMag"] = [15.0 + k * 0.1, -999.0 if f == "g" else 16.0]
        t[f"{f}MeanPSFMagErr"] = [0.01, -999.0 if f == "g" else 0.02]
    return t


def test_ps1_sentinel_is_unobserved():
    out = apply_preset(ps1_table(), "ps1")
    assert np.isnan(out["mag_g"][1]) and np.isnan(out["mag_err_g"][1])
    assert out["mag_i"][0] == pytest.approx(15.2)
    cat = catalog_from_table(out)  # -999 in both: no warning, just unobserved
    assert cat.bands == ("g", "r", "i", "z", "y") and not cat.observed[1, 0]


def twomass_table():
    return Table(
        {
            "source_id": np.array([11, 21], np.int64),
            "designation": ["a", "b"],
            "j_m": [12.04, 13.0],
            "j_msigcom": MaskedColumn([0.029, 0.0], mask=[False, True]),
            "h_m": [11.699, 12.5],
            "h_msigcom": [0.028, 0.03],
            "k_m": [11.604, 12.4],
            "k_msigcom": [0.027, 0.04],
        }
    )


def test_twomass_passes_magnitudes_as_reported():
    # Values of the first green2020 star: 2MASS J/H/Ks as published (Vega-based), unchanged.
    out = apply_preset(twomass_table(), "twomass")
    assert list(out["mag_J"]) == [12.04, 13.0] and out["mag_Ks"][0] == 11.604
    assert np.isnan(out["mag_err_J"][1])  # null sigcom (upper limit)
    with pytest.warns(match="mag_err_nonfinite"):
        cat = catalog_from_table(out)
    assert not cat.observed[1, 0]


def unwise_table():
    return Table(
        {
            "source_id": np.array([11, 21], np.int64),
            "flux_1": [1.0, -2.0],
            "dflux_1": [0.1, 1.0],
            "flux_2": [100.0, 10.0],
            "dflux_2": [1.0, 1.0],
        }
    )


def test_unwise_nanomaggies_to_ab():
    # 1 nanomaggy -> 22.5 Vega mag -> +2.699 -> 25.199 AB (W1); 100 nmgy -> 17.5 + 3.339 (W2)
    out = apply_preset(unwise_table(), "unwise")
    assert out["mag_W1"][0] == pytest.approx(25.199, abs=1e-12)
    assert out["mag_W2"][0] == pytest.approx(20.839, abs=1e-12)
    assert out["mag_W2"][1] == pytest.approx(22.5 - 2.5 + 3.339, abs=1e-12)
    assert np.isnan(out["mag_W1"][1])  # negative flux: unobserved, and counted
    assert out.meta["nonpositive_flux"] == {"W1": 1, "W2": 0}


def test_missing_preset_column_names_it():
    t = gaia_table()
    del t["phot_rp_mean_flux_error"]
    with pytest.raises(CatalogError) as exc:
        apply_preset(t, "gaia_dr3")
    assert (exc.value.column, exc.value.rule) == ("phot_rp_mean_flux_error", "missing_column")


def test_user_presets_toml_and_json(tmp_path):
    raw = Table(
        {
            "ID": np.array([5, 6], np.int64),
            "Gmag": [10.0, 11.0],
            "eGmag": [0.01, 0.02],
            "Temp": [5000.0, 6000.0],
            "eTemp": [50.0, 60.0],
            "grav": [4.0, 4.1],
            "egrav": [0.1, 0.1],
            "met": [0.0, -0.3],
            "emet": [0.05, 0.05],
        }
    )
    columns = {
        "source_id": "ID",
        "mag_G": "Gmag",
        "mag_err_G": "eGmag",
        "teff": "Temp",
        "teff_err": "eTemp",
        "logg": "grav",
        "logg_err": "egrav",
        "feh": "met",
        "feh_err": "emet",
    }
    toml = tmp_path / "mine.toml"
    toml.write_text(
        'name = "mine"\nsurvey = "mysurvey"\n[columns]\n'
        + "".join(f'{k} = "{v}"\n' for k, v in columns.items())
    )
    jsn = tmp_path / "mine.json"
    jsn.write_text(json.dumps({"name": "mine", "survey": "mysurvey", "columns": columns}))
    raw.write(tmp_path / "raw.fits")
    for preset in (toml, jsn, str(toml)):
        cat = read_catalog(tmp_path / "raw.fits", preset=preset)
        assert list(cat.source_id) == [5, 6] and list(cat.survey) == ["mysurvey"] * 2
        np.testing.assert_allclose(cat.theta[1], [6000.0, 4.1, -0.3])


def test_merge_spectroscopic_with_photometric(tmp_path):
    apogee = Table(
        {
            "GAIAEDR3_SOURCE_ID": np.array([11, 21, 99], np.int64),
            "TEFF": [5000.0, 5100, 5200],
            "TEFF_ERR": [50.0] * 3,
            "LOGG": [4.0] * 3,
            "LOGG_ERR": [0.1] * 3,
            "M_H": [0.0] * 3,
            "M_H_ERR": [0.02] * 3,
            "RA": [1.0, 2, 3],
            "DEC": [1.0, 2, 3],
            "GLON": [1.0, 2, 3],
            "GLAT": [1.0, 2, 3],
            "ASPCAPFLAG": np.zeros(3, np.int64),
        }
    )
    apogee.write(tmp_path / "allStar.fits")
    galah = Table(
        {
            "dr3_source_id": np.array([11], np.int64),
            "teff": [5050.0],
            "e_teff": [70.0],
            "logg": [4.1],
            "e_logg": [0.2],
            "fe_h": [0.05],
            "e_fe_h": [0.07],
            "flag_sp": [0],
            "flag_fe_h": [0],
        }
    )
    spectro = [
        read_table(tmp_path / "allStar.fits", preset="apogee_dr17"),
        apply_preset(galah, "galah_dr3"),
    ]
    phot = [
        apply_preset(t, p)
        for t, p in [
            (gaia_table(), "gaia_dr3"),
            (ps1_table(), "ps1"),
            (twomass_table(), "twomass"),
            (unwise_table(), "unwise"),
        ]
    ]
    with pytest.warns(match="mag_err_nonfinite"):  # the null 2MASS J error
        cat = merge_catalogs(spectro, *phot)
    assert len(cat) == 4 and cat.bands[0] == "G" and len(cat.bands) == 13
    assert list(cat.survey) == ["apogee"] * 3 + ["galah"]
    assert list(cat.source_id) == [11, 21, 99, 11]  # star 11 seen by two surveys
    assert not cat.observed[2].any()  # 99 has no photometry
    np.testing.assert_allclose(cat.mag[[0, 3], 0], 12.0, atol=1e-9)
    assert cat.ra[2] == 3.0  # positions kept from the left (APOGEE)
    assert cat.meta["merge"][0] == {"table": 1, "matched": 3, "unmatched": 1}
    with pytest.raises(CatalogError) as exc:
        merge_catalogs(spectro[0], apply_preset(gaia_table()[[0, 0]], "gaia_dr3"))
    assert exc.value.rule == "duplicate_source_id"


@pytest.mark.green2020
def test_green2020_preset_reads_5000_stars(green2020_dir):
    cat = read_catalog(green2020_dir / "green2020_test_data_dev.h5", preset="green2020")
    assert len(cat) == 5000
    assert cat.meta["floors_applied"] and cat.meta["zero_points_applied"]
    assert cat.meta["validation"] == []
    assert set(cat.survey) == {"apogee", "galah", "lamost"}
    assert {"r_fit", "r_var", "r_source"} <= set(cat.extra)
    # first star, from the file itself (h5py): Teff 6294.19 K, G 13.445989, Ks 11.604
    assert cat.theta[0, 0] == pytest.approx(6294.1914, abs=1e-3)
    assert cat.mag[0, 0] == pytest.approx(13.445989, abs=1e-5)
    assert cat.mag[0, cat.bands.index("Ks")] == pytest.approx(11.604, abs=1e-5)
    assert cat.has_theta.all() and cat.observed[:, 0].all()
