"""Weight uncertainty by SVI: exact posterior, 1/√N, extrapolation, round trips."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import random_stars

from bayesdsm.catalog import Catalog
from bayesdsm.emulator import EmulatorConfig, emulator_arrays, init_emulator
from bayesdsm.emulator_model import emulator_from_params
from bayesdsm.epistemic import EpistemicConfig, fit_guide, fit_weight_uncertainty, predictive_spread
from bayesdsm.errors import ConfigError
from bayesdsm.evaluate import predict_table
from bayesdsm.likelihood import chi2_whitened, frozen_whitening, model_magnitudes
from bayesdsm.model_file import StellarModel, load_model, save_model

OUTPUT_LAYER = ("output_kernel", "output_bias")
NARROW = ((5000.0, 6000.0), (4.0, 4.6), (-0.5, 0.2))  # Teff [K], log g, [Fe/H]


def simulated(n, seed=0, hidden=(3,), box=None):
    """A small emulator and n stars observed from it (σ_m = 0.02-0.15 mag, 20% missing)."""
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        emu = init_emulator(jax.random.PRNGKey(0), EmulatorConfig(hidden=hidden), dtype=jnp.float64)
        arrays = dict(emulator_arrays(emu))
        arrays["output_bias"] = jnp.linspace(4.0, -1.0, 13)
        emu = emulator_from_params(emu, arrays)
        s = random_stars(rng, n, p_missing=0.2)
        if box is not None:
            s = s._replace(theta=np.stack([rng.uniform(*b, n) for b in box], 1))
        m = np.asarray(jax.vmap(lambda t, e: model_magnitudes(emu, t, e)[0])(s.theta, s.ebv))
        mu = np.where(s.has_parallax > 0, s.mu, 10.0)
        mag = (m + mu[:, None] + rng.normal(size=m.shape) * s.mag_err) * s.mask
    return emu, s._replace(mag=mag)


def exact_output_layer_std(emu, stars):
    """Marginal posterior σ of the output layer given the hidden layers (flat prior).

    B·M is linear in the output weights, so with the covariance frozen χ² is quadratic
    and the posterior is Gaussian with precision ∂²(Σ χ²/2); computed by jax.hessian.
    """
    with jax.enable_x64(True):
        W = jax.vmap(frozen_whitening, in_axes=(None, 0))(emu, stars)
        arr = emulator_arrays(emu)
        shapes = {k: arr[k].shape for k in OUTPUT_LAYER}
        x0 = jnp.concatenate([arr[k].ravel() for k in OUTPUT_LAYER])

        def unflat(x):
            out, i = {}, 0
            for k, sh in shapes.items():
                out[k] = x[i : i + int(np.prod(sh))].reshape(sh)
                i += int(np.prod(sh))
            return out

        def nlp(x):
            e = emulator_from_params(emu, unflat(x))
            return 0.5 * jnp.sum(jax.vmap(chi2_whitened, in_axes=(None, 0, 0))(e, stars, W))

        cov = np.linalg.inv(np.asarray(jax.hessian(nlp)(x0)))
        return {k: np.asarray(v) for k, v in unflat(jnp.sqrt(jnp.diag(cov))).items()}


def quick(**kw):
    base = dict(steps=400, batch_size=100, dtype="float64", max_chi2_dof=None, n_draws=1000,
                init_scale=1.0, flat_prior_scale=10.0,
                steps_per_call=200)  # fmt: skip
    return EpistemicConfig(**{**base, **kw})


@pytest.mark.parametrize("guide", ["lowrank", "normal"])
def test_output_layer_matches_exact_posterior(guide):
    emu, stars = simulated(300)
    exact = exact_output_layer_std(emu, stars)
    # the preconditioner sees half the stars, so SVI has to correct it
    cfg = quick(guide=guide, rank=10, sites=OUTPUT_LAYER, precondition_stars=150)
    fit = fit_guide(emu, stars, cfg, progress=False)
    assert set(fit.draws) == set(OUTPUT_LAYER)
    for k in OUTPUT_LAYER:
        ratio = fit.draws[k].std(0) / exact[k]
        assert 0.85 < np.median(ratio) < 1.15, (k, ratio)
        assert np.all((ratio > 0.7) & (ratio < 1.3)), (k, ratio)
    assert fit.info["n_stars"] == 300 and np.isfinite(fit.info["final_elbo"])


def spread_model(emu, fit):
    return StellarModel(emulator=emu, epistemic=fit.draws)


def test_spread_shrinks_as_one_over_sqrt_n():
    spreads = []
    for n in (100, 400):
        emu, stars = simulated(n, seed=n)
        cfg = quick(steps=200, sites=OUTPUT_LAYER, n_draws=400)
        fit = fit_guide(emu, stars, cfg, progress=False)
        theta = simulated(50, seed=1)[1].theta
        spreads.append(np.mean(predictive_spread(spread_model(emu, fit), theta)["BM_std"], 0))
    ratio = spreads[0] / spreads[1]  # √(400/100) = 2 expected
    assert 1.5 < np.median(ratio) < 2.7, ratio


def test_spread_larger_outside_training_range():
    emu, stars = simulated(300, box=NARROW)
    cfg = quick(n_draws=300, init_scale=0.1, flat_prior_scale=1.0)  # the defaults
    fit = fit_guide(emu, stars, cfg, progress=False)
    model = spread_model(emu, fit)
    inside = np.array([[5500.0, 4.3, -0.1], [5200.0, 4.5, 0.0], [5800.0, 4.1, -0.4]])
    outside = np.array([[7500.0, 2.5, -1.5], [3800.0, 1.5, 0.5], [4200.0, 2.0, -2.0]])
    s_in = predictive_spread(model, inside)
    s_out = predictive_spread(model, outside)
    for key in ("BM_std", "R_std"):
        assert np.median(s_out[key]) > 2 * np.median(s_in[key]), key


def catalog_of(stars, bands) -> Catalog:
    n = len(stars.mag)
    plx = np.where(stars.has_parallax > 0, 10 ** ((10.0 - stars.mu) / 5.0), np.nan)
    return Catalog(
        bands=bands,
        theta=stars.theta,
        theta_cov=stars.theta_chol @ np.swapaxes(stars.theta_chol, 1, 2),
        mag=np.where(stars.mask > 0, stars.mag, np.nan),
        mag_err=np.where(stars.mask > 0, stars.mag_err, np.nan),
        observed=stars.mask > 0,
        parallax=plx,
        parallax_err=np.where(stars.has_parallax > 0, plx * stars.sigma_mu / 2.1714724, np.nan),
        parallax_ok=stars.has_parallax > 0,
        ebv=stars.ebv,
        ebv_err=stars.ebv_err,
        survey=np.array(["sim"] * n),
        source_id=np.arange(n),
    )


def test_fit_weight_uncertainty_round_trip(tmp_path):
    emu, stars = simulated(120)
    model = StellarModel(emulator=emu, config={"train": {"l2_stellar": 2e-4}})
    cfg = EpistemicConfig(steps=60, batch_size=64, n_draws=8, rank=3, steps_per_call=30)
    new = fit_weight_uncertainty(model, catalog_of(stars, emu.bands), cfg, progress=False)
    info = new.meta["epistemic"]
    assert info["guide"] == "lowrank" and info["rank"] == 3 and info["steps"] == 60
    assert info["regularization"]["l2_stellar"] == 2e-4 and np.isfinite(info["final_elbo"])
    assert new.config["epistemic"]["n_draws"] == 8 and model.epistemic is None
    assert all(v.shape[0] == 8 for v in new.epistemic.values())
    loaded = load_model(save_model(new, tmp_path / "m.bdsm"))
    assert set(loaded.epistemic) == set(new.epistemic)
    for k, v in new.epistemic.items():
        np.testing.assert_array_equal(loaded.epistemic[k], v)
    theta = stars.theta[:5]
    a, b = predictive_spread(new, theta, 0.3), predictive_spread(loaded, theta, 0.3)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12)
    # bayesdsm predict's spread_ columns are this spread
    cols = predict_table(loaded, theta, 0.3)
    np.testing.assert_allclose(cols["spread_M_G"], a["BM_std"][:, 0], rtol=1e-12)
    np.testing.assert_allclose(cols["spread_R_W2"], a["R_std"][:, -1], rtol=1e-12)
    np.testing.assert_allclose(cols["spread_BP_G_red"], a["red_std"][:, 1], rtol=1e-12)


def test_spread_is_per_star_and_per_draw():
    """The vmapped spread equals a loop over draws and stars (NumPy statistics)."""
    emu, stars = simulated(5)
    rng = np.random.default_rng(3)
    draws = {
        k: np.asarray(v)[None] + 0.01 * rng.normal(size=(6, *np.shape(v)))
        for k, v in emulator_arrays(emu).items()
        if k in ("output_bias", "R_bias")
    }
    model = StellarModel(emulator=emu, epistemic=draws)
    got = predictive_spread(model, stars.theta)
    with jax.enable_x64(True):
        emus = [x.astype(jnp.float64) for x in model.epistemic_emulators()]
        per = np.array([[np.asarray(e(t)[0]) for t in stars.theta] for e in emus])
    np.testing.assert_allclose(got["BM_std"], per.std(0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(got["BM_mean"], per.mean(0), rtol=1e-12)


def test_bad_input():
    emu, _ = simulated(3)
    with pytest.raises(ConfigError, match="no epistemic"):
        predictive_spread(StellarModel(emulator=emu), np.zeros((1, 3)))
    with pytest.raises(ConfigError, match="guide"):
        EpistemicConfig(guide="delta")
    with pytest.raises(ConfigError, match="unknown"):
        fit_guide(emu, random_stars(np.random.default_rng(0), 3), quick(sites=("nope",)))
    assert dataclasses.asdict(EpistemicConfig())["rank"] == 10
