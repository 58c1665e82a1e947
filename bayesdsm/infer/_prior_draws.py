"""Simulated stars with known truth for the inference tests, calibration and benchmarks."""

from __future__ import annotations

import numpy as np

from bayesdsm.infer._posterior import Posterior, StarArrays

__all__ = ["draw_prior_truth", "draw_density_theta", "simulate_stars", "simulated_catalog"]


def draw_prior_truth(
    post: Posterior,
    n: int,
    rng,
    *,
    ebv_hat=0.2,
    ebv_err=0.1,
    box=((4000.0, 2.0, -1.0), (6500.0, 4.8, 0.3)),
    wall=None,
    density=False,
):
    """(θ (n, 3), μ (n,), E (n,)) drawn from the flat-θ / volume / Gaussian-E prior:
    θ uniform on ``box``, d ~ Gamma(3, L) (p(d) ∝ d² e^(−d/L)), E ~ N(Ê, σ_E) truncated
    at 0.

    With ``density``, θ is drawn from ``post``'s training-density prior instead
    (:func:`draw_density_theta`).

    With ``wall`` (3,) [K, dex, dex], θ is drawn from the soft-walled box of
    :func:`~bayesdsm.infer.log_flat_theta_prior` instead (half-Gaussian tails of s.d.
    ``wall`` outside ``box``; its defaults are (100, 0.1, 0.1)): that matches
    :class:`Posterior` with ``theta_prior=None`` and theta_lo/hi = box exactly, as
    calibration needs (a uniform box alone leaves out the walls' prior mass).
    """
    lo, hi = np.asarray(box[0]), np.asarray(box[1])
    theta = lo + (hi - lo) * rng.uniform(size=(n, 3))
    if density:
        theta = draw_density_theta(post.theta_prior, n, rng)
    elif wall is not None:
        wall = np.asarray(wall, np.float64)
        tail = wall * np.sqrt(np.pi / 2.0)  # mass of each wall (the flat part: hi − lo)
        p_lo = tail / (hi - lo + 2.0 * tail)
        u = rng.uniform(size=(n, 3))
        g = np.abs(rng.normal(size=(n, 3))) * wall
        theta = np.where(u < p_lo, lo - g, np.where(u > 1.0 - p_lo, hi + g, theta))
    d = rng.gamma(3.0, post.volume_length_pc, size=n)
    ebv = np.empty(n)
    for i in range(n):
        e = -1.0
        while e < 0:
            e = rng.normal(ebv_hat, ebv_err)
        ebv[i] = e
    return theta, 5 * np.log10(d / 10.0), ebv


def draw_density_theta(prior, n: int, rng, *, margin: float = 4.0, batch: int = 65536):
    """(n, 3) θ drawn exactly from a :class:`~bayesdsm.infer.ThetaDensityPrior`, by
    rejection: uniform proposals on its grid widened by ``margin`` cells each side (its
    walls fall as a Gaussian of one cell there, so e^(−margin²/2) of the edge density is
    left out), accepted with probability p(θ) / e^(max coefficient): ln p is a convex
    combination of B-spline coefficients (weights ≥ 0, sum 1) plus walls ≤ 0, so that is
    an exact bound."""
    import jax
    import jax.numpy as jnp

    if prior is None:
        raise ValueError("draw_density_theta needs a ThetaDensityPrior (theta_prior='density')")
    lo = np.asarray(prior.lo, np.float64) - margin * np.asarray(prior.step, np.float64)
    hi = np.asarray(prior.hi, np.float64) + margin * np.asarray(prior.step, np.float64)
    logp = jax.jit(jax.vmap(prior))
    top = float(np.max(np.asarray(prior.coef, np.float64))) + 1e-5  # + float32 rounding
    out = []
    while sum(len(o) for o in out) < n:
        th = lo + (hi - lo) * rng.uniform(size=(batch, 3))
        lp = np.asarray(logp(jnp.asarray(th, prior.lo.dtype)), np.float64)
        out.append(th[rng.uniform(size=batch) < np.exp(lp - top)])
    return np.concatenate(out)[:n]


def simulate_stars(
    post: Posterior,
    theta,
    mu,
    ebv,
    rng,
    *,
    mag_err=0.03,
    plx_err=0.05,
    ebv_hat=0.2,
    ebv_err=0.1,
    bands_observed=None,
    xi=None,
):
    """StarArrays of noisy observations of the truth (θ, μ, E) under ``post``'s emulator;
    for a two-component model (K = 2) also ξ (n,) (None: 0 for every star; draws from
    its prior are ``rng.normal(size=n)``). ξ is refused for K = 1."""
    import jax
    import jax.numpy as jnp

    args = [jnp.asarray(a, post.dtype) for a in (theta, mu, ebv)]
    if xi is not None:  # post.z_from refuses it for K = 1
        args.append(jnp.asarray(xi, post.dtype))
    z = jax.vmap(post.z_from)(*args)
    pred = np.asarray(jax.vmap(post.predicted)(z), np.float64)
    n, nb = pred.shape
    mask = np.ones((n, nb), bool) if bands_observed is None else np.asarray(bands_observed)
    mag = pred + mag_err * rng.normal(size=pred.shape)
    plx = 10 ** ((10 - np.asarray(mu)) / 5) + plx_err * rng.normal(size=n)
    one = np.ones(n)
    return StarArrays(
        np.where(mask, mag, 0.0),
        np.full((n, nb), mag_err**2),
        mask,
        plx,
        plx_err * one,
        np.ones(n, bool),
        ebv_hat * one,
        ebv_err * one,
        np.ones(n, bool),
        0 * one,
        0 * one,
        np.zeros(n, bool),
    )


def simulated_catalog(bands, stars: StarArrays, source_id, *, observed=None, **kwargs):
    """A :class:`~bayesdsm.catalog.Catalog` of simulated observations (no θ̂).

    Args:
        bands: the emulator's bands.
        stars: from :func:`simulate_stars`.
        source_id: (N,) int ids.
        observed: (N, B) bool, default ``stars.mask``; unobserved magnitudes are NaN.
        kwargs: further Catalog fields (``ra``, ``dec``, ``extra``, ...).
    """
    from bayesdsm.catalog import Catalog

    n = len(stars.plx)
    obs = np.asarray(stars.mask if observed is None else observed, bool)
    return Catalog(
        bands=tuple(bands),
        theta=np.full((n, 3), np.nan),
        theta_cov=np.full((n, 3, 3), np.nan),
        mag=np.where(obs, stars.mag, np.nan),
        mag_err=np.sqrt(stars.var),
        observed=obs,
        parallax=stars.plx,
        parallax_err=stars.plx_err,
        parallax_ok=np.ones(n, bool),
        ebv=stars.ebv,
        ebv_err=stars.ebv_err,
        survey=np.array(["sim"] * n),
        source_id=np.asarray(source_id, np.int64),
        **kwargs,
    )
