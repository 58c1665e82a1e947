"""The §3 preparation: each rule, the report, zero points, and the green2020 acceptance."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bayesdsm.catalog import Catalog, read_catalog
from bayesdsm.config import (
    PAPER_ZERO_POINTS,
    CutsConfig,
    from_dict,
    from_json,
    from_toml,
    to_json,
    to_toml,
)
from bayesdsm.cuts import estimate_zero_points, prepare
from bayesdsm.errors import ConfigError


def small_catalog():
    """Six stars, each built to trip exactly one rule (star 0 trips none)."""
    bands = ("G", "BP", "J")
    mag = np.full((6, 3), 14.0)
    err = np.full((6, 3), 0.01)
    err[1, 1] = 0.25  # star 1: BP error > 0.2 -> masked
    mag[2, 0] = err[2, 0] = np.nan  # star 2: no G -> removed
    sig = np.tile([50.0, 0.1, 0.05], (6, 1))
    sig[3, 0] = 250.0  # star 3: sigma_Teff > 200 -> removed
    cov = np.zeros((6, 3, 3))
    cov[:, [0, 1, 2], [0, 1, 2]] = sig**2
    plx = np.full(6, 2.0)
    plx[4] = 0.4  # star 4: SNR 4 -> parallax_ok False, values kept
    theta = np.tile([5000.0, 4.0, 0.0], (6, 1))
    theta[5] = np.nan  # star 5: no theta -> removed
    return Catalog.from_arrays(
        bands=bands,
        mag=mag,
        mag_err=err,
        theta=theta,
        theta_cov=cov,
        parallax=plx,
        parallax_err=np.full(6, 0.1),
        ebv=np.full(6, 0.1),
        ebv_err=np.full(6, 0.05),
        survey=np.full(6, "galah"),
    )


def test_each_rule_on_a_small_catalog():
    cat = small_catalog()
    out, rep = prepare(cat)
    assert (rep.n_in, rep.n_out, len(out)) == (6, 3, 3)
    assert list(out.source_id) == [0, 1, 4]
    counts = {r.rule: (r.action, r.count) for r in rep.rules}
    assert counts["max_theta_err"] == ("removed", 1)
    assert counts["require_theta"] == ("removed", 1)
    assert counts["require_reference_band"] == ("removed", 1)
    assert counts["max_mag_err"] == ("masked", 1)
    assert counts["min_parallax_snr"] == ("flagged", 1)
    # floors: photometry and sigma_E in quadrature, theta variances on the diagonal
    np.testing.assert_allclose(out.mag_err[0], np.hypot(0.01, 0.02))
    np.testing.assert_allclose(out.ebv_err, np.hypot(0.05, 0.02))
    np.testing.assert_allclose(
        np.diagonal(out.theta_cov[0]), [50.0**2 + 10.0**2, 0.1**2 + 0.05**2, 0.05**2 + 0.03**2]
    )
    assert not out.observed[1, 1] and out.mag[1, 1] == 14.0  # masked, value kept
    assert list(out.parallax_ok) == [True, True, False]
    assert out.parallax[2] == 0.4  # the parallax value is not deleted
    assert out.meta["floors_applied"] and out.meta["cuts_config"]["min_parallax_snr"] == 5.0


def test_floors_are_not_applied_twice():
    once, _ = prepare(small_catalog())
    twice, rep = prepare(once)
    for name in ("mag_err", "theta_cov", "ebv_err", "observed", "parallax_ok", "theta"):
        np.testing.assert_array_equal(getattr(once, name), getattr(twice, name), err_msg=name)
    assert rep["mag_err_floor"].action == "skipped" and rep["zero_points"].action == "skipped"


def test_report_prints_and_serialises():
    _, rep = prepare(small_catalog())
    text = str(rep)
    for rule in (
        "mag_err_floor",
        "max_mag_err",
        "min_parallax_snr",
        "max_theta_err",
        "ebv_err_floor",
        "require_reference_band",
        "zero_points",
    ):
        assert rule in text
    d = json.loads(rep.to_json())
    assert d["n_out"] == 3 and {r["rule"] for r in d["rules"]} >= {"min_parallax_snr"}
    assert rep.fraction("min_parallax_snr") == pytest.approx(1 / 3)


def test_thresholds_are_config_fields():
    _, rep = prepare(
        small_catalog(),
        CutsConfig(min_parallax_snr=3.0, max_mag_err=0.3, max_theta_err=(300.0, 0.5, 0.5)),
    )
    assert rep["min_parallax_snr"].count == 0 and rep["max_mag_err"].count == 0
    assert rep["max_theta_err"].count == 0 and rep.n_out == 4


def test_input_problems_open_the_report():
    cat = small_catalog()
    cat = cat.replace(
        meta={
            "validation": [
                {
                    "rule": "mag_err_nonpositive",
                    "column": "mag_err_G",
                    "count": 2,
                    "rows": [0, 1],
                    "action": "mask",
                }
            ]
        }
    )
    _, rep = prepare(cat)
    assert rep.rules[0].rule == "input:mag_err_nonpositive" and rep.rules[0].count == 2


# ----------------------------------------------------------------------------------------
# survey zero points


def shared_star_catalog(rng, offsets, pairs, n_per_pair=400):
    """Stars observed by two surveys; survey s measures theta - offsets[s] plus noise."""
    sig = {"galah": [60.0, 0.12, 0.06], "lamost": [40.0, 0.06, 0.04], "apogee": [30.0, 0.05, 0.02]}
    rows = []
    sid = 0
    for a, b in pairs:
        for _ in range(n_per_pair):
            truth = [rng.uniform(4500, 6500), rng.uniform(2, 4.6), rng.uniform(-1, 0.3)]
            for s in (a, b):
                scale = np.asarray(sig[s]) * rng.uniform(0.5, 2.0)
                obs = truth - np.asarray(offsets.get(s, (0, 0, 0))) + rng.normal(0, scale)
                rows.append((sid, s, obs, scale))
            sid += 1
    n = len(rows)
    cov = np.zeros((n, 3, 3))
    cov[:, [0, 1, 2], [0, 1, 2]] = np.array([r[3] for r in rows]) ** 2
    return Catalog.from_arrays(
        bands=("G",),
        mag=np.full((n, 1), 14.0),
        mag_err=np.full((n, 1), 0.01),
        theta=np.array([r[2] for r in rows]),
        theta_cov=cov,
        survey=np.array([r[1] for r in rows]),
        source_id=np.array([r[0] for r in rows], np.int64),
    )


def test_zero_points_recover_injected_offsets():
    rng = np.random.default_rng(3)
    injected = {"lamost": (-40.0, 0.08, -0.05), "apogee": (25.0, -0.03, 0.04)}
    cat = shared_star_catalog(rng, injected, [("galah", "lamost"), ("galah", "apogee")])
    zp = estimate_zero_points(cat, reference="galah")
    for s, off in injected.items():
        assert zp.n_common[s] == 400
        pull = (np.asarray(zp.offsets[s]) - off) / np.asarray(zp.errors[s])
        assert np.all(np.abs(pull) < 4.0), (s, pull)
        assert zp.errors[s][0] < 6.0  # about 60 K / sqrt(400) * ~1.3


def test_zero_points_through_a_pivot_and_in_prepare():
    rng = np.random.default_rng(4)
    injected = {"lamost": (-30.0, 0.05, 0.06), "apogee": (20.0, -0.04, 0.02)}
    # APOGEE shares no star with GALAH: chain through LAMOST, as the paper did.
    cat = shared_star_catalog(rng, injected, [("galah", "lamost"), ("lamost", "apogee")])
    direct = estimate_zero_points(cat)
    assert direct.n_common["apogee"] == 0 and "apogee" not in direct.offsets
    zp = estimate_zero_points(cat, pivot="lamost")
    for s, off in injected.items():
        pull = (np.asarray(zp.offsets[s]) - off) / np.asarray(zp.errors[s])
        assert np.all(np.abs(pull) < 4.0), (s, pull)
    cfg = CutsConfig(zero_points="estimate", zero_point_pivot="lamost", duplicates="best")
    out, rep = prepare(cat, cfg)
    assert rep["zero_points"].count == 1200 and rep["duplicates"].count == 800
    assert len(np.unique(out.source_id)) == len(out) == 800
    assert set(rep.zero_points) == {"lamost", "apogee"}


def test_paper_zero_points_by_default():
    cat = small_catalog().replace(survey=np.array(["LAMOST", "apogee", "galah"] * 2))
    out, rep = prepare(
        cat,
        CutsConfig(
            require_theta=False, require_reference_band=False, max_theta_err=(1e9, 9.0, 9.0)
        ),
    )
    np.testing.assert_allclose(out.theta[0] - cat.theta[0], PAPER_ZERO_POINTS["lamost"])
    np.testing.assert_allclose(out.theta[1] - cat.theta[1], PAPER_ZERO_POINTS["apogee"])
    np.testing.assert_array_equal(out.theta[2], cat.theta[2])
    assert rep["zero_points"].count == 4  # star 5 (no theta) is not changed
    none, rep = prepare(cat, CutsConfig(zero_points="none", require_theta=False))
    assert rep["zero_points"].action == "skipped"


# ----------------------------------------------------------------------------------------
# config round trips


def test_cuts_config_round_trips_and_rejects_unknown_keys():
    cfg = CutsConfig(min_parallax_snr=3.5, zero_points={"LAMOST": (-1.0, 0.0, 0.1)})
    assert from_json(CutsConfig, to_json(cfg)) == cfg
    assert from_toml(CutsConfig, to_toml(cfg)) == cfg
    assert from_toml(CutsConfig, to_toml(CutsConfig())) == CutsConfig()
    with pytest.raises(ConfigError, match="'parallax_snr'"):
        from_dict(CutsConfig, {"parallax_snr": 5})
    with pytest.raises(ConfigError, match="zero_points"):
        CutsConfig(zero_points="bogus")
    with pytest.raises(ConfigError, match="max_mag_err"):
        CutsConfig(max_mag_err=-1.0)


# ----------------------------------------------------------------------------------------
# acceptance on the authors' released test data


@pytest.mark.green2020
def test_green2020_preparation(green2020_dir):
    cat = read_catalog(green2020_dir / "green2020_test_data_dev.h5", preset="green2020")
    out, rep = prepare(cat)
    print()
    print(rep)
    frac = rep.fraction("min_parallax_snr")
    print(
        f"green2020: parallax SNR < 5 flagged {rep['min_parallax_snr'].count} of "
        f"{rep['min_parallax_snr'].of} stars = {100 * frac:.2f}%"
    )
    assert len(cat) == len(out) == 5000
    assert 0.10 <= frac <= 0.20
    # floors are not applied twice: errors unchanged
    np.testing.assert_array_equal(out.mag_err, cat.mag_err)
    np.testing.assert_array_equal(out.theta_cov, cat.theta_cov)
    np.testing.assert_array_equal(out.ebv_err, cat.ebv_err)
    np.testing.assert_array_equal(out.theta, cat.theta)
    np.testing.assert_array_equal(out.parallax, cat.parallax)  # values kept
    for rule in (
        "mag_err_floor",
        "theta_err_floor",
        "max_theta_err",
        "ebv_err_floor",
        "zero_points",
    ):
        assert rep[rule].action == "skipped"
    snr = cat.parallax / cat.parallax_err
    np.testing.assert_array_equal(out.parallax_ok, snr >= 5)
