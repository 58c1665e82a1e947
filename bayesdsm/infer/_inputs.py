"""From a model, a config and a catalog to the engine's inputs: the :class:`Posterior`,
per-star arrays (bad values masked and flagged, never raised) and per-star PRNG keys."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.infer._config import InferConfig
from bayesdsm.infer._posterior import Posterior, StarArrays
from bayesdsm.infer._priors import ThetaDensityPrior

__all__ = ["build_posterior", "star_arrays", "star_keys"]


def build_posterior(model, config: InferConfig, theta_density=None) -> Posterior:
    """The :class:`Posterior` for ``model`` (an Emulator, or an object with ``.emulator``
    and optionally ``.validity_grid``) under ``config``.

    ``theta_density`` overrides the model's density: a ``ValidityGrid``-like object
    (``axes``, ``density``, ``names``) or a dict from ``load_green2020_density``.
    """
    dtype = jnp.float64 if config.dtype == "float64" else jnp.float32
    emu = getattr(model, "emulator", model).astype(dtype)
    grid = theta_density if theta_density is not None else getattr(model, "validity_grid", None)
    axes = dens = None
    if grid is not None:
        if isinstance(grid, dict):
            axes, dens = grid["grid"], np.asarray(grid["density"])[0]
        else:
            axes, dens = grid.axes, np.asarray(grid.density)[0]  # component 0 = reference band
    tp = None
    if config.theta_prior == "density":
        if dens is None:
            from bayesdsm.errors import ConfigError

            raise ConfigError(
                "theta_prior='density' needs the model's training density (validity grid); "
                "pass theta_density=..., or use theta_prior='flat'"
            )
        tp = ThetaDensityPrior.from_grid(
            axes,
            dens,
            smooth=config.density_smooth,
            floor=config.density_floor,
            halo=config.density_halo,
            dtype=dtype,
        )
    if axes is not None:
        lo, hi = [a[0] for a in axes], [a[-1] for a in axes]
    else:
        med, std = np.asarray(emu.normalizer.median), np.asarray(emu.normalizer.std)
        lo, hi = med - 4 * std, med + 4 * std
    return Posterior(
        emu,
        tp,
        jnp.asarray(lo, dtype),
        jnp.asarray(hi, dtype),
        config.prior,
        float(config.volume_length_pc),
        float(config.ebv_max),
    )


def star_arrays(catalog, config: InferConfig, bands=None):
    """(StarArrays, input flags (N,) list of sets) from a :class:`~bayesdsm.catalog.Catalog`.

    Bad values never raise: they are masked per star and flagged ``nonfinite_input``.
    """
    n = len(catalog)
    cat_bands = tuple(catalog.bands)
    bands = tuple(bands or cat_bands)
    idx = [cat_bands.index(b) if b in cat_bands else -1 for b in bands]
    mag = np.full((n, len(bands)), np.nan)
    err = np.full((n, len(bands)), np.nan)
    obs = np.zeros((n, len(bands)), bool)
    for j, i in enumerate(idx):
        if i >= 0:
            mag[:, j], err[:, j], obs[:, j] = (
                catalog.mag[:, i],
                catalog.mag_err[:, i],
                catalog.observed[:, i],
            )
    flags = [set() for _ in range(n)]
    with np.errstate(invalid="ignore"):
        good = obs & np.isfinite(mag) & np.isfinite(err) & (err > 0)
    for i in np.nonzero(np.any(obs & ~good, axis=1))[0]:
        flags[i].add("nonfinite_input")
    sig_emu = np.broadcast_to(np.asarray(config.sigma_emu, np.float64), (len(bands),))
    var = np.where(good, np.nan_to_num(err, nan=1.0) ** 2 + sig_emu**2, 1.0)
    plx = np.asarray(catalog.parallax, np.float64) - config.parallax_zero_point
    plx_err = np.asarray(catalog.parallax_err, np.float64)
    with np.errstate(invalid="ignore"):
        plx_ok = np.isfinite(plx) & np.isfinite(plx_err) & (plx_err > 0)
    for i in np.nonzero(np.isfinite(plx) & ~plx_ok)[0]:
        flags[i].add("nonfinite_input")
    plx_ok &= bool(config.use_parallax)
    ebv, ebv_err = np.asarray(catalog.ebv, np.float64), np.asarray(catalog.ebv_err, np.float64)
    with np.errstate(invalid="ignore"):
        ebv_ok = np.isfinite(ebv) & np.isfinite(ebv_err) & (ebv_err > 0) & (ebv_err < 5)
    for i in np.nonzero(np.isfinite(ebv) ^ np.isfinite(ebv_err))[0]:
        flags[i].add("nonfinite_input")
    l = catalog.l if catalog.l is not None else np.full(n, np.nan)
    b = catalog.b if catalog.b is not None else np.full(n, np.nan)
    lb_ok = np.isfinite(l) & np.isfinite(b)
    for i in np.nonzero(good.sum(1) < config.min_bands)[0]:
        flags[i].add("prior_dominated")
    stars = StarArrays(
        np.where(good, mag, 0.0),
        var,
        good,
        np.where(plx_ok, plx, 0.0),
        np.where(plx_ok, plx_err, 1.0),
        plx_ok,
        np.where(ebv_ok, ebv, 0.0),
        np.where(ebv_ok, ebv_err, 1.0),
        ebv_ok,
        np.where(lb_ok, l, 0.0),
        np.where(lb_ok, b, 0.0),
        lb_ok,
    )
    return stars, flags


def star_keys(seed: int, ids):
    """(N, 2) uint32 PRNG keys: fold_in(fold_in(PRNGKey(seed), hi32(id)), lo32(id))."""
    ids = np.asarray(ids).astype(np.uint64)
    hi = (ids >> np.uint64(32)).astype(np.uint32)
    lo = (ids & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    base = jax.random.PRNGKey(seed)
    f = jax.vmap(lambda h, l: jax.random.fold_in(jax.random.fold_in(base, h), l))
    return np.asarray(f(hi, lo))
