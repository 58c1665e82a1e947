"""Known values and properties of the prior pieces of bayesdsm.infer (θ, volume, E); the
Galactic prior is tested in tests/test_galaxy.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm import infer


def test_volume_prior_normalisation():
    # ∫ d² e^(−d/L) dd = 2 L³; the prior is (d/10 pc)³ e^(−d/L) per unit μ (Jacobian d ln10/5)
    mu = np.linspace(-5, 25, 200001)
    L = 1350.0
    p = np.exp(np.asarray(jax.vmap(lambda m: infer.log_volume_prior(m, L))(mu), np.float64))
    assert np.trapezoid(p, mu) * np.log(10) / 5 == pytest.approx(2 * L**3 / 1e3, rel=1e-3)


def _grid():
    axes = (np.linspace(3000, 8000, 21), np.linspace(0, 5, 21), np.linspace(-2, 0.5, 11))
    t, g, f = np.meshgrid(*axes, indexing="ij")
    rho = np.exp(-0.5 * (((t - 5500) / 600) ** 2 + ((g - 4.0) / 0.6) ** 2 + ((f + 0.3) / 0.4) ** 2))
    return axes, rho


def test_theta_density_prior_smooth_and_floored():
    axes, rho = _grid()
    tp = infer.ThetaDensityPrior.from_grid(axes, rho, smooth=0.0, floor=1e-3, dtype=jnp.float32)
    # at a node the B-spline reproduces ln(ρ + floor)
    v = tp(jnp.asarray([5500.0, 4.0, -0.25]))
    assert float(v) == pytest.approx(np.log(1 + 1e-3), abs=0.02)
    # never −inf, and a wall outside the grid
    far = tp(jnp.asarray([20000.0, 9.0, 3.0]))
    assert np.isfinite(far) and far < np.log(1e-3)
    # C¹: gradients on both sides of a cell boundary agree
    g = jax.grad(tp)
    a = g(jnp.asarray([5750.0 - 1e-2, 4.0, -0.3]))
    b = g(jnp.asarray([5750.0 + 1e-2, 4.0, -0.3]))
    np.testing.assert_allclose(a, b, rtol=1e-2, atol=1e-6)


def test_theta_density_halo_falls_off_away_from_the_locus():
    """With a halo the floor is floor × (ρ smoothed by `halo` cells, peak 1) + 10⁻³ floor:
    near the locus it matches the flat floor, far from it (3+ halo widths) it is ~10⁻³ of
    it, not a plateau over the whole grid; halo = 0 is the flat floor exactly."""
    axes, rho = _grid()
    kw = dict(smooth=0.0, floor=1e-2, dtype=jnp.float32)
    flat = infer.ThetaDensityPrior.from_grid(axes, rho, **kw)
    halo = infer.ThetaDensityPrior.from_grid(axes, rho, halo=2.0, **kw)
    np.testing.assert_allclose(
        infer.ThetaDensityPrior.from_grid(axes, rho, halo=0.0, **kw).coef, flat.coef
    )
    peak = jnp.asarray([5500.0, 4.0, -0.25])
    assert float(halo(peak)) == pytest.approx(float(flat(peak)), abs=0.02)
    corner = jnp.asarray([8000.0, 0.0, -2.0])  # 4σ-5σ of ρ from the peak on every axis
    assert float(flat(corner)) == pytest.approx(np.log(1e-2), abs=0.05)
    assert float(halo(corner)) < np.log(1e-2) - 3.0
    assert float(halo(corner)) > np.log(1e-2 * 1e-3) - 0.1


def test_ebv_prior_gaussian_or_flat():
    assert float(infer.log_ebv_prior(0.3, 0.1, 0.1, True)) == pytest.approx(-2.0)
    assert float(infer.log_ebv_prior(0.3, 0.1, 0.1, False)) == 0.0
    assert float(infer.log_ebv_prior(6.0, 0.1, 0.1, False, ebv_max=5.0)) < -40
