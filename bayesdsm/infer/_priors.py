"""The per-star prior pieces besides the Galaxy: θ, distance without a direction, E.

Every function works on ONE star (scalars, or θ of shape (3,)) in plain units and returns a
log density (natural log, up to an additive constant that does not depend on the
parameters). They are JAX-traceable (``jit``/``vmap``/``grad``); batching happens in the
engines. The Galactic distance and [Fe/H] prior is :func:`bayesdsm.galaxy.log_galactic_prior`.

Units: Teff [K], log g [dex], [Fe/H] [dex], distance modulus μ [mag], distance d [pc]
(d = 10^(μ/5 + 1)), reddening E [mag, SFD scale].

* :func:`log_volume_prior`: direction-free distance prior, p(d) ∝ d² exp(−d/L) (the
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
    "log_volume_prior",
    "ThetaDensityPrior",
    "log_flat_theta_prior",
    "FLAT_THETA_WALL",
    "log_ebv_prior",
    "soft_wall",
]

_LN10 = float(np.log(10.0))


def soft_wall(x, lo=-jnp.inf, hi=jnp.inf, width=1.0):
    """−((lo − x)₊² + (x − hi)₊²) / (2 width²): 0 inside [lo, hi], a Gaussian wall outside."""
    below = jnp.maximum(lo - x, 0.0)
    above = jnp.maximum(x - hi, 0.0)
    return -0.5 * (below**2 + above**2) / width**2


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
