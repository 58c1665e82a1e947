"""The reddening scale step: (u, v) from the prior, its invariance, and in training."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm.emulator import emulator_arrays, emulator_from_arrays, init_emulator
from bayesdsm.train import reddening_rescaling, train

from ._toy import TINY


def test_reddening_rescaling_known_values():
    e0 = np.array([0.1, 0.2, 0.4])
    # E₀ = E′/1.05 exactly: u = 1/1.05
    assert reddening_rescaling(1.05 * e0, e0, np.full(3, 0.03)) == pytest.approx((1 / 1.05, 0.0))
    # u = Σ w E′ E₀ / Σ w E′² with w = 1/σ₀²: (1·2 + 4·2/4) / (1·1 + 16/4) = 4/5
    assert reddening_rescaling([1.0, 4.0], [2.0, 2.0], [1.0, 2.0]) == pytest.approx((0.8, 0.0))
    e = np.linspace(0.0, 1.5, 20)
    uv = reddening_rescaling(e, 2 * e + 0.1 * e**2, np.full(20, 0.05), quadratic=True)
    assert uv == pytest.approx((2.0, 0.1))
    assert reddening_rescaling(np.zeros(3), e0, np.ones(3)) == (1.0, 0.0)  # no information
    # with the curvature prior: a band with c = 0.2, R = 1, s = 0.1 adds (0.2 - v)²/0.01,
    # which pulls v from 0.1 towards 0.2 in proportion to the precisions
    uv = reddening_rescaling(
        e, 2 * e + 0.1 * e**2, np.full(20, 0.05), quadratic=True, curvature=([0.2], [1.0], 0.1)
    )
    assert uv[1] > 0.1 and uv[1] < 0.2
    big = reddening_rescaling(
        e, 2 * e + 0.1 * e**2, np.full(20, 1e3), quadratic=True, curvature=([0.2], [1.0], 0.1)
    )
    assert big[1] == pytest.approx(0.2, rel=1e-3)  # a vague E prior: the curvature's wins


def test_quadratic_rescaling_leaves_the_extinction_unchanged():
    """E″ = u E′ + v E′², R/u, c - v/(u R) give the same A = E R + c (E R)² to O(E³)."""
    from bayesdsm.emulator import reddening

    emu = init_emulator(jax.random.PRNGKey(0))
    arrays = {**emulator_arrays(emu), "R_curvature": jnp.full(13, -0.03)}
    emu = emulator_from_arrays(emu.config, arrays, jnp.float32)
    R = emu(jnp.asarray([5500.0, 4.2, 0.0]))[1]
    u, v = 1.04, -0.05
    moved = {**arrays, "R_bias": arrays["R_bias"] - jnp.log(u), "R_curvature": -0.03 - v / (u * R)}
    emu2 = emulator_from_arrays(emu.config, moved, jnp.float32)
    for e in (0.05, 0.3, 0.6):
        a, _ = reddening(emu, R, e)
        a2, _ = reddening(emu2, R / u, u * e + v * e * e)
        # the O(E³) remainder (0.0003 mag at E = 0.3); without the shift of c the
        # difference would be |v| E² R (0.013 mag at E = 0.3)
        np.testing.assert_allclose(a2, a, rtol=0, atol=1e-6 + 0.02 * e**3)


def _posterior(y, R, sig_y, e0, sig0):
    """Eq. 8-9 for one band y = E R + noise: the posterior mean of E, clipped at 0."""
    prec = R**2 / sig_y**2 + 1 / sig0**2
    return np.maximum((y * R / sig_y**2 + e0 / sig0**2) / prec, 0.0)


def _one_band_survey(rng, n, R, sig_y, sig_floor):
    """True E ~ Exp(0.15), an honest prior E₀ ~ N(E, σ₀ = sig_floor + 0.1 E) and one
    band's reddening y = E R + N(0, sig_y²): (E, σ₀, E₀, y)."""
    e = rng.exponential(0.15, n)
    sig0 = sig_floor + 0.1 * e
    e0 = e + sig0 * rng.normal(size=n)
    y = e * R + sig_y * rng.normal(size=n)
    return e, sig0, e0, y


@pytest.mark.parametrize("quadratic", [False, True])
def test_reddening_rescaling_is_unbiased_at_the_truth(quadratic):
    """With E′ the (clipped) posterior at the true R and an honest prior, (u, v) = (1, 0)."""
    n, R, sig_y = 200_000, 2.5, 0.05
    e, sig0, e0, y = _one_band_survey(np.random.default_rng(5), n, R, sig_y, 0.02)
    u, v = reddening_rescaling(_posterior(y, R, sig_y, e0, sig0), e0, sig0, quadratic=quadratic)
    assert u == pytest.approx(1.0, abs=0.004)  # σ(u) ≈ 0.0005 (linear), 0.0015 (quadratic)
    assert v == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("scale_step, tol", [(False, None), (True, 0.005)])
def test_alternating_fit_recovers_R_only_with_the_scale_step(scale_step, tol):
    """The §4 alternation on a one-band toy: fit R by regression on E′ (iteration 0 on
    the prior E₀, so attenuated: 2.38 for 2.5), re-estimate E′ at that R, 20 times. The
    photometry pins E′ R, so without the step R creeps towards the truth only by the
    prior's weight 1 - K per iteration (still 2.44 after 20); with it, R is recovered."""
    n, R_true, sig_y = 100_000, 2.5, 0.03
    e, sig0, e0, y = _one_band_survey(np.random.default_rng(6), n, R_true, sig_y, 0.03)
    ebv = e0
    for _ in range(20):
        R = np.sum(y * ebv) / np.sum(ebv**2)
        ebv = _posterior(y, R, sig_y, e0, sig0)
        if scale_step:
            u, _ = reddening_rescaling(ebv, e0, sig0)
            R, ebv = R / u, ebv * u
    R = np.sum(y * ebv) / np.sum(ebv**2)
    if scale_step:
        assert R == pytest.approx(R_true, rel=tol)
    else:
        assert R < 0.985 * R_true  # still attenuated (2.44 of 2.5)


@pytest.mark.parametrize("curvature", [False, True])
def test_reddening_scale_in_training(cat, run, curvature):
    cfg = dataclasses.replace(TINY, reddening_scale=True, extinction_curvature=curvature)
    res = run if cfg == TINY else train(cat, cfg)  # TINY has both on
    uv = np.array([h["reddening_rescaling"] for h in res.history])
    assert np.all(np.isfinite(uv)) and uv[0, 0] != 1.0 and np.all(uv[:, 0] > 0)
    assert np.all((uv[:, 1] != 0) == curvature)
    off = train(cat, dataclasses.replace(cfg, reddening_scale=False), stop_after=1)
    assert off.history[0]["reddening_rescaling"] == [1.0, 0.0]
    # the returned E′ are the rescaled ones: the prior now holds on average (u = 1)
    tr = res.split == 0  # (the step used the active ones: a few may be excluded)
    rows = np.flatnonzero(cat.has_theta & np.asarray(cat.observed[:, 0], bool))
    e0, s0 = np.asarray(cat.ebv)[rows], np.asarray(cat.ebv_err)[rows]
    curv = None
    if curvature:  # the step also weighed the curvature prior (at R of the mean θ)
        R_mean = res.emulator(jnp.asarray(np.mean(cat.theta[rows][tr], 0), jnp.float32))[1]
        curv = (res.emulator.extinction.curvature, R_mean, 0.1)
    u, v = reddening_rescaling(res.ebv[tr], e0[tr], s0[tr], quadratic=curvature, curvature=curv)
    assert u == pytest.approx(1.0, abs=0.02) and v == pytest.approx(0.0, abs=0.02)
