"""bayesdsm.diagnostics: residual scores (Eq. 18), binned percentiles, R(θ) diagnostics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm import diagnostics as D
from bayesdsm.catalog import Catalog
from bayesdsm.emulator import init_emulator, predict_magnitudes
from bayesdsm.likelihood import colour_scores, stardata_from_catalog

CHUNK = 256  # one chunk shape for all tests: one compilation per reddening mode
SIG_THETA = np.array([20.0, 0.03, 0.02])  # K, dex, dex (small: J C_θ Jᵀ stays linear)


def simulate(emu, n, seed=0, *, noise=True, mask_frac=0.1):
    """Stars drawn from ``emu`` with Gaussian errors of the Eq. 4 covariance.

    Truth θ, μ, E give m = M(θ) + μ + E R(θ); the catalog's θ̂, ϖ̂, Ê and m̂ carry
    independent Gaussian errors of the stated σ (``noise=False``: exact values).
    """
    rng = np.random.default_rng(seed)
    nb = emu.n_bands
    theta = np.column_stack(
        [rng.uniform(4500, 6500, n), rng.uniform(2.0, 4.6, n), rng.uniform(-0.8, 0.3, n)]
    )
    ebv = rng.uniform(0.0, 1.0, n)
    plx = rng.uniform(0.5, 3.0, n)
    mu = 10.0 - 5.0 * np.log10(plx)
    with jax.enable_x64(True):
        e64 = emu.astype(jnp.float64)
        m = np.asarray(jax.vmap(lambda t, e: predict_magnitudes(e64, t, e))(theta, ebv))
    m = m + mu[:, None]
    mag_err = rng.uniform(0.02, 0.05, (n, nb))
    plx_err = plx / rng.uniform(8.0, 30.0, n)
    ebv_err = rng.uniform(0.03, 0.1, n)
    z = (lambda *s: rng.standard_normal(s)) if noise else (lambda *s: np.zeros(s))
    obs = rng.uniform(size=(n, nb)) > mask_frac
    obs[:, 0] = True
    return Catalog.from_arrays(
        bands=emu.bands,
        mag=np.where(obs, m + mag_err * z(n, nb), np.nan),
        mag_err=np.where(obs, mag_err, np.nan),
        theta=theta + SIG_THETA * z(n, 3),
        theta_cov=np.broadcast_to(np.diag(SIG_THETA**2), (n, 3, 3)).copy(),
        parallax=plx + plx_err * z(n),
        parallax_err=plx_err,
        ebv=ebv + ebv_err * z(n),
        ebv_err=ebv_err,
    )


@pytest.fixture(scope="module")
def emu():
    return init_emulator(jax.random.PRNGKey(3), dtype=jnp.float32)


@pytest.mark.parametrize("reddening", ["fit", "prior"])
def test_perfect_model_noise_free_scores_are_zero(emu, reddening):
    cat = simulate(emu, 200, noise=False)
    d = D.star_diagnostics(emu, cat, reddening=reddening, chunk_size=CHUNK)
    ok = np.isfinite(d.scores)
    assert ok.mean() > 0.8
    np.testing.assert_allclose(d.scores[ok], 0.0, atol=2e-3)
    np.testing.assert_allclose(d.mag_score, 0.0, atol=2e-3)
    np.testing.assert_allclose(d.chi2 / d.dof, 0.0, atol=1e-3)
    if reddening == "fit":  # the Eq. 8-9 fit returns the true E when data are exact
        np.testing.assert_allclose(d.ebv, cat.ebv, atol=2e-4)


def test_known_errors_give_unit_percentiles(emu):
    """Scores of data simulated with the model's own covariance are ~N(0, 1)."""
    cat = simulate(emu, 4000, seed=7)
    d = D.star_diagnostics(emu, cat, reddening="prior", chunk_size=CHUNK)
    # sampling error of the 16th/84th percentile of N(0,1) for ~3600 stars: ~0.025
    for p, name in enumerate(d.pair_names):
        q = np.nanpercentile(d.scores[:, p], [16, 50, 84])
        np.testing.assert_allclose(q, [-1.0, 0.0, 1.0], atol=0.1, err_msg=name)
    q = np.nanpercentile(d.mag_score, [16, 50, 84])
    np.testing.assert_allclose(q, [-1.0, 0.0, 1.0], atol=0.1)
    # binned in E, the medians stay at 0 (a correct model shows no trend)
    tr = D.residual_trends(d, n_bins=5)
    for name in ("r-G", "g-r"):
        s, e = D.trend_slope(tr[name]["E"])
        assert abs(s) < max(4 * e, 0.1), (name, s, e)
    # with the fitted reddening (paper's choice), scored with the residual covariance
    # after the fit, the percentiles are -1/0/+1 too
    f = D.star_diagnostics(emu, cat, reddening="fit", chunk_size=CHUNK)
    for p, name in enumerate(f.pair_names):
        q = np.nanpercentile(f.scores[:, p], [16, 50, 84])
        np.testing.assert_allclose(q, [-1.0, 0.0, 1.0], atol=0.1, err_msg=f"fit {name}")


def test_scores_match_likelihood_colour_scores(emu):
    cat = simulate(emu, 50, seed=2)
    d = D.star_diagnostics(emu, cat, reddening="prior", chunk_size=CHUNK)
    stars = stardata_from_catalog(cat)
    ref = np.asarray(jax.vmap(lambda s: colour_scores(emu, s))(stars))
    nx = emu.n_bands - 1  # the first pairs are X - G in band order
    np.testing.assert_array_equal(d.pairs[:nx, 1], 0)
    np.testing.assert_allclose(d.scores[:, :nx], ref, rtol=1e-3, atol=1e-3, equal_nan=True)


def test_chunked_equals_single_batch(emu):
    cat = simulate(emu, 300, seed=4)
    a = D.star_diagnostics(emu, cat, chunk_size=CHUNK)  # 2 chunks, the last one padded
    b = D.star_diagnostics(emu, cat, chunk_size=512)
    for x, y in zip(a, b):
        if isinstance(x, np.ndarray):
            np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4, equal_nan=True)  # float32


def test_missing_bands_and_stars_without_theta(emu):
    cat = simulate(emu, 40, seed=5, mask_frac=0.0)
    theta = cat.theta.copy()
    theta[:5] = np.nan
    cat = cat.replace(theta=theta).select_bands(("G", "BP", "RP", "g", "r"))
    d = D.star_diagnostics(emu, cat, chunk_size=CHUNK)
    assert len(d.theta) == 35 and d.index[0] == 5
    names = d.pair_names
    assert np.isnan(d.scores[:, names.index("J-G")]).all()
    assert np.isfinite(d.scores[:, names.index("g-r")]).all()


def test_binned_percentiles_known_values():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 3, 30000)
    y = 2.0 * x + rng.standard_normal(x.size)
    b = D.binned_percentiles(x, y, np.array([0.0, 1.0, 2.0, 3.0]))
    for k in range(3):
        sel = (x >= k) & (x < k + 1)
        np.testing.assert_allclose(b.values[k], np.percentile(y[sel], [16, 50, 84]))
    slope, err = D.trend_slope(D.binned_percentiles(x, y, np.linspace(0, 3, 13)))
    assert abs(slope - 2.0) < 3 * err + 0.02
    few = D.binned_percentiles([0.5, 1.5], [1.0, 2.0], [0.0, 1.0, 2.0], min_count=2)
    assert np.isnan(few.values).all() and list(few.count) == [1, 1]


def test_delta_r_zero_at_mean_theta(emu):
    cat = simulate(emu, 30, seed=6, noise=False)
    d = D.star_diagnostics(emu, cat, chunk_size=CHUNK)
    theta0 = D.mean_theta(d.theta)
    cat0 = cat.replace(theta=np.broadcast_to(theta0, (30, 3)).copy())
    d0 = D.star_diagnostics(emu, cat0, chunk_size=CHUNK)
    dR, R0, t0 = D.delta_r_over_r(emu, d0, theta0)
    np.testing.assert_allclose(dR, 0.0, atol=1e-5)
    np.testing.assert_allclose(t0, theta0)


def test_reddening_slopes_of_s16_vector():
    """The slopes of S16's own R vector are S16's slopes (theory.schlafly2016_slopes)."""
    theory = pytest.importorskip("bayesdsm.passband_extinction")
    bands = ("g", "r", "i", "z", "y", "J", "H", "Ks", "W1", "W2")
    R = np.array([theory.SCHLAFLY2016["vector"][b][0] for b in bands])
    got = D.learned_reddening_slopes(bands, R, theory.S16_TRIPLETS)
    want = theory.schlafly2016_slopes(theory.S16_TRIPLETS, r_v=3.3)
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-12)
    pct = D.learned_reddening_slopes(bands, np.stack([R, R]), theory.S16_TRIPLETS)
    np.testing.assert_allclose(pct["gri"], [want["gri"]] * 3)


def test_density_at_fallback_matches_validity_at():
    from bayesdsm.validity import ValidityGrid, validity_at

    axes = (np.linspace(4000, 7000, 7), np.linspace(0, 5, 6), np.linspace(-1, 0.5, 4))
    rng = np.random.default_rng(1)
    dens = rng.uniform(size=(2, 7, 6, 4))
    grid = ValidityGrid(axes, dens, ("G", "parallax"))
    theta = np.column_stack(
        [rng.uniform(3900, 7100, 50), rng.uniform(0, 5, 50), rng.uniform(-1, 0.5, 50)]
    )
    want = np.asarray(validity_at(grid, theta.astype(np.float32), "parallax"))
    got = D.density_at({"grid": axes, "density": dens, "bands": ("G", "parallax")}, theta,
                       "parallax")  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(D.density_at(grid, theta, "parallax"), want, rtol=1e-5, atol=1e-6)


def test_history_arrays():
    hist = [
        {"iteration": 0, "train_loss": 1.0, "mean_R": [3.0, 2.0], "note": "x"},
        {"iteration": 1, "train_loss": 0.6, "mean_R": [2.9, 2.1], "val_loss": 0.7},
    ]
    h = D.history_arrays(hist)
    np.testing.assert_allclose(h["train_loss"], [1.0, 0.6])
    assert h["mean_R"].shape == (2, 2)
    np.testing.assert_allclose(h["val_loss"], [np.nan, 0.7])
    assert "note" not in h and D.history_arrays([]) == {}


@pytest.mark.green2020
def test_real_stars_released_model(green2020_dir):
    """On the real dev stars: our Eq. 8-9 reddening is the authors' r_fit, and the
    paper's two findings hold (G colours trend with E; R_W2 collapsed)."""
    from bayesdsm.catalog import read_catalog
    from bayesdsm.config import CutsConfig
    from bayesdsm.cuts import prepare
    from bayesdsm.green2020 import load_green2020_emulator

    cat = read_catalog(green2020_dir / "green2020_test_data_dev.h5", preset="green2020")
    cat = prepare(cat, CutsConfig())[0]
    emu = load_green2020_emulator(green2020_dir, dtype=jnp.float32)
    d = D.star_diagnostics(emu, cat, chunk_size=CHUNK)
    np.testing.assert_allclose(d.ebv, cat.extra["r_fit"][d.index], atol=1e-3)
    np.testing.assert_allclose(d.ebv_err**2, cat.extra["r_var"][d.index], rtol=1e-3)
    tr = D.residual_trends(d)
    slopes = {n: D.trend_slope(tr[n]["E"])[0] for n in d.pair_names}
    with_g = [s for n, s in slopes.items() if "G" in n.split("-")]
    without = [s for n, s in slopes.items() if "G" not in n.split("-")]
    assert np.mean(with_g) < -0.2 and abs(np.mean(without)) < 0.1
    _, R0, _ = D.delta_r_over_r(emu, d)
    assert R0[12] / R0[11] < 0.01  # R_W2 / R_W1
