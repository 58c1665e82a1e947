"""Priors for per-star inference p(θ, μ, E | data): small documented pieces.

Every function works on ONE star (scalars, or θ of shape (3,)) in plain units and returns a
log density (natural log, up to an additive constant that does not depend on the
parameters). They are JAX-traceable (``jit``/``vmap``/``grad``); batching happens in
:mod:`bayesdsm.infer`.

Units: Teff [K], log g [dex], [Fe/H] [dex], distance modulus μ [mag], distance d [pc]
(d = 10^(μ/5 + 1)), reddening E [mag, SFD scale], Galactic (l, b) [deg], Galactocentric
(R, Z) [kpc].

Pieces
------
* :func:`logn_thin_disk`, :func:`logn_thick_disk`, :func:`logn_halo`: log number densities
  (relative to the thin disk at the Sun) and :func:`logp_feh_component` ([Fe/H] per
  component). Defaults follow **brutus** (Speagle et al. 2025, arXiv:2503.02227,
  ``brutus.priors`` ``gal_lnprior`` defaults, partly from Bland-Hawthorn & Gerhard 2016):
  R_sun = 8.2 kpc, Z_sun = 0.025 kpc; thin disk R_s = 2.6 kpc, Z_s = 0.3 kpc; thick disk
  R_s = 2.0 kpc, Z_s = 0.9 kpc, weight 0.04; halo power law η = 4.2 with oblateness going
  from q = 0.2 at the centre to 0.8 far out (scale r_q = 6 kpc), core 1 kpc, weight 0.005;
  [Fe/H] ~ N(−0.2, 0.3) thin, N(−0.7, 0.4) thick, N(−1.6, 0.5) halo.
* :func:`log_galactic_prior`: log p(μ, [Fe/H] | l, b) = logsumexp_c [log n_c(R, Z) +
  log N([Fe/H] | c)] + 3 ln d: the number density times the volume element d² dd, with
  dd/dμ = d ln10 / 5 (so d³ in μ). A soft wall beyond ``mu_max`` keeps it proper (the halo
  term grows as d^(3-η) otherwise only slowly).
* :func:`log_volume_prior`: direction-free fallback, p(d) ∝ d² exp(−d/L) (the
  exponentially decreasing space density prior of Bailer-Jones 2015, L = 1.35 kpc), in μ:
  3 ln d − d/L. No [Fe/H] term beyond the θ prior.
* :class:`ThetaDensityPrior`: the data-driven θ prior, log(ρ_smooth(θ) + floor), where ρ is
  the model's peak-normalised training density (validity grid, §6 of Green et al. 2021),
  smoothed by a Gaussian of ``smooth`` grid cells and interpolated by a tricubic B-spline;
  outside the grid a quadratic wall. Never −inf.
* :func:`log_flat_theta_prior`: uniform on a box with soft quadratic walls.
* :func:`log_ebv_prior`: Gaussian N(Ê, σ_E) (truncated at 0 by the E ≥ 0 constraint) where
  a prior is given, else flat on [0, E_max] (soft wall above E_max).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "GALACTIC_DEFAULTS",
    "logn_thin_disk",
    "logn_thick_disk",
    "logn_halo",
    "logp_feh_component",
    "galactocentric_rz",
    "log_galactic_prior",
    "log_volume_prior",
    "ThetaDensityPrior",
    "log_flat_theta_prior",
    "FLAT_THETA_WALL",
    "log_ebv_prior",
    "soft_wall",
]

_LN10 = float(np.log(10.0))

#: brutus (Speagle et al. 2025) defaults; lengths in kpc.
GALACTIC_DEFAULTS = dict(
    r_sun=8.2,
    z_sun=0.025,
    thin_r=2.6,
    thin_z=0.3,
    thick_r=2.0,
    thick_z=0.9,
    thick_weight=0.04,
    halo_eta=4.2,
    halo_q_centre=0.2,
    halo_q_inf=0.8,
    halo_r_q=6.0,
    halo_core=1.0,
    halo_weight=0.005,
    feh_thin=(-0.2, 0.3),
    feh_thick=(-0.7, 0.4),
    feh_halo=(-1.6, 0.5),
)


def soft_wall(x, lo=-jnp.inf, hi=jnp.inf, width=1.0):
    """−((lo − x)₊² + (x − hi)₊²) / (2 width²): 0 inside [lo, hi], a Gaussian wall outside."""
    below = jnp.maximum(lo - x, 0.0)
    above = jnp.maximum(x - hi, 0.0)
    return -0.5 * (below**2 + above**2) / width**2


def logn_thin_disk(R, Z, r_sun=8.2, z_sun=0.025, r_scale=2.6, z_scale=0.3):
    """ln n of an exponential disk at Galactocentric (R, Z) [kpc], 0 at the Sun."""
    return -(R - r_sun) / r_scale - (jnp.abs(Z) - abs(z_sun)) / z_scale


def logn_thick_disk(R, Z, r_sun=8.2, z_sun=0.025, r_scale=2.0, z_scale=0.9, weight=0.04):
    """ln n of the thick disk [kpc]: an exponential disk times ``weight`` (at the Sun)."""
    return jnp.log(weight) + logn_thin_disk(R, Z, r_sun, z_sun, r_scale, z_scale)


def logn_halo(
    R, Z, r_sun=8.2, z_sun=0.025, eta=4.2, q_centre=0.2, q_inf=0.8, r_q=6.0, core=1.0, weight=0.005
):
    """ln n of an oblate power-law halo, n ∝ R_eff^−η, whose flattening q(r) goes from
    ``q_centre`` to ``q_inf`` over ``r_q`` [kpc]; R_eff² = R² + (Z/q)² + core²; ``weight``
    is its density relative to the thin disk at the Sun."""

    def reff(R, Z):
        r = jnp.sqrt(R**2 + Z**2 + r_q**2)
        q = q_inf - (q_inf - q_centre) * jnp.exp(1.0 - r / r_q)
        return jnp.sqrt(R**2 + (Z / q) ** 2 + core**2)

    return jnp.log(weight) - eta * (jnp.log(reff(R, Z)) - jnp.log(reff(r_sun, z_sun)))


def logp_feh_component(feh, mean, sigma):
    """ln N([Fe/H] | mean, sigma), normalised (dex⁻¹)."""
    return -0.5 * ((feh - mean) / sigma) ** 2 - jnp.log(sigma) - 0.5 * np.log(2 * np.pi)


def galactocentric_rz(l_deg, b_deg, d_kpc, r_sun=8.2, z_sun=0.025):
    """(R, Z) [kpc] of the point at distance d [kpc] along Galactic (l, b) [deg]."""
    l_rad, b_rad = jnp.deg2rad(l_deg), jnp.deg2rad(b_deg)
    x = r_sun - d_kpc * jnp.cos(b_rad) * jnp.cos(l_rad)
    y = d_kpc * jnp.cos(b_rad) * jnp.sin(l_rad)
    return jnp.sqrt(x**2 + y**2), z_sun + d_kpc * jnp.sin(b_rad)


def log_galactic_prior(mu, feh, l_deg, b_deg, mu_max=20.0, **params):
    """ln p(μ, [Fe/H] | l, b): thin + thick disk + halo number density × d³ (μ Jacobian),
    each component with its own [Fe/H] Gaussian. ``params`` override
    :data:`GALACTIC_DEFAULTS`."""
    p = {**GALACTIC_DEFAULTS, **params}
    d_kpc = 10.0 ** (mu / 5.0 - 2.0)
    R, Z = galactocentric_rz(l_deg, b_deg, d_kpc, p["r_sun"], p["z_sun"])
    sun = dict(r_sun=p["r_sun"], z_sun=p["z_sun"])
    thin = logn_thin_disk(R, Z, **sun, r_scale=p["thin_r"], z_scale=p["thin_z"])
    thick = logn_thick_disk(
        R, Z, **sun, r_scale=p["thick_r"], z_scale=p["thick_z"], weight=p["thick_weight"]
    )
    halo = logn_halo(
        R,
        Z,
        **sun,
        eta=p["halo_eta"],
        q_centre=p["halo_q_centre"],
        q_inf=p["halo_q_inf"],
        r_q=p["halo_r_q"],
        core=p["halo_core"],
        weight=p["halo_weight"],
    )
    comps = jnp.stack(
        [
            thin + logp_feh_component(feh, *p["feh_thin"]),
            thick + logp_feh_component(feh, *p["feh_thick"]),
            halo + logp_feh_component(feh, *p["feh_halo"]),
        ]
    )
    return jax.nn.logsumexp(comps) + 3.0 * _LN10 * mu / 5.0 + soft_wall(mu, hi=mu_max, width=0.5)


def log_volume_prior(mu, length_pc=1350.0):
    """ln p(μ) for p(d) ∝ d² exp(−d/L) (Bailer-Jones 2015; L [pc]): 3 ln d − d/L."""
    d = 10.0 ** (mu / 5.0 + 1.0)
    return 3.0 * _LN10 * mu / 5.0 - d / length_pc


def log_ebv_prior(ebv, ebv_hat, ebv_err, has_prior, ebv_max=10.0):
    """ln p(E): N(Ê, σ_E) where ``has_prior`` (E ≥ 0 is imposed by the parameterisation,
    which truncates it), else flat on [0, ``ebv_max``] with a soft wall (0.1 mag) above."""
    gauss = -0.5 * ((ebv - ebv_hat) / ebv_err) ** 2
    flat = soft_wall(ebv, hi=ebv_max, width=0.1)
    return jnp.where(has_prior, gauss, flat)


#: Widths of the flat θ prior's soft walls (K, dex, dex).
FLAT_THETA_WALL = (100.0, 0.1, 0.1)


def log_flat_theta_prior(theta, lo, hi, width=FLAT_THETA_WALL):
    """Uniform θ on the box [lo, hi] (3,), with soft Gaussian walls of ``width`` outside."""
    return jnp.sum(soft_wall(theta, jnp.asarray(lo), jnp.asarray(hi), jnp.asarray(width)))


def _bspline_weights(t):
    """Cubic B-spline weights (4,) of nodes i−1..i+2 at fraction t ∈ [0, 1) past node i."""
    t2, t3 = t * t, t * t * t
    return jnp.stack(
        [(1 - t) ** 3 / 6, (3 * t3 - 6 * t2 + 4) / 6, (-3 * t3 + 3 * t2 + 3 * t + 1) / 6, t3 / 6]
    )


class ThetaDensityPrior(eqx.Module):
    """Data-driven θ prior: ln(ρ_smooth(θ) + floor) on a regular (Teff, log g, [Fe/H]) grid.

    Build it with :meth:`from_grid`; call it on one θ (3,). Between nodes the log density
    is a tricubic B-spline (C², so its curvature enters the Laplace approximations and HMC
    sees no kinks). Outside the grid the edge value is continued with a quadratic wall of
    one grid cell, so the prior is proper and never −inf.

    Attributes:
        coef: (nt, ng, nf) B-spline coefficients of ln(ρ + floor).
        lo, step: (3,) first node and spacing per axis (K, dex, dex).
    """

    coef: jax.Array
    lo: jax.Array
    step: jax.Array

    @classmethod
    def from_grid(cls, axes, density, *, smooth=1.0, floor=1e-3, halo=0.0, dtype=None):
        """From node axes (3 × 1-D, uniform) and a peak-normalised density (nt, ng, nf).

        Args:
            smooth: Gaussian smoothing σ in grid cells; 0 = none.
            floor: added to the (re-peak-normalised) density before the log.
            halo: if > 0, the floor is not flat but ``floor`` × the density smoothed
                with σ = ``halo`` cells (peak 1), plus 10⁻³ ``floor``: a prior that
                allows θ a little off the training locus, and falls off away from it
                instead of a plateau over the whole grid (where the emulator only
                extrapolates, e.g. log g 5–7).
        """
        from scipy import ndimage

        raw = np.clip(np.asarray(density, np.float64), 0.0, None)
        rho = ndimage.gaussian_filter(raw, smooth, mode="nearest") if smooth > 0 else raw
        rho = rho / max(rho.max(), 1e-300)
        if halo > 0:
            wide = ndimage.gaussian_filter(raw, halo, mode="nearest")
            floor = floor * (wide / max(wide.max(), 1e-300) + 1e-3)
        axes = [np.asarray(a, np.float64) for a in axes]
        step = np.array([(a[-1] - a[0]) / (n - 1) for a, n in zip(axes, rho.shape)])
        coef = ndimage.spline_filter(np.log(rho + floor), order=3, mode="nearest")
        dtype = dtype or jnp.float32
        return cls(
            jnp.asarray(coef, dtype),
            jnp.asarray([a[0] for a in axes], dtype),
            jnp.asarray(step, dtype),
        )

    @property
    def hi(self):
        return self.lo + self.step * (jnp.asarray(self.coef.shape, self.step.dtype) - 1)

    def __call__(self, theta):
        u = (theta - self.lo) / self.step
        shape = self.coef.shape
        n = jnp.asarray(shape, u.dtype)
        uc = jnp.clip(u, 0.0, n - 1)
        i0 = jnp.clip(jnp.floor(uc), 0, n - 2)
        t = uc - i0
        idx = [
            jnp.clip(i0[j].astype(jnp.int32) + jnp.arange(-1, 3), 0, shape[j] - 1) for j in range(3)
        ]
        block = self.coef[idx[0][:, None, None], idx[1][None, :, None], idx[2][None, None, :]]
        w = [_bspline_weights(t[j]) for j in range(3)]
        val = jnp.einsum("abc,a,b,c->", block, w[0], w[1], w[2])
        return val + jnp.sum(soft_wall(u, 0.0, n - 1, 1.0))
