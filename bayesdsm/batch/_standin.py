"""A cheap stand-in for the inference engine, with the same per-partition signature.

``standin_partition(model, catalog, config, seed)`` importance-samples K prior draws of
(θ, μ, E) per star through the emulator and returns a per-star summary table like the
real engine's (percentile columns, ``ess``, ``flags``, a few posterior draws). It is *not*
a posterior sampler to trust; it exists to test and benchmark the batch layer (Dask,
manifests, faults) at a known, small per-star cost, and it keeps the real engine's
contract:

* pure: the result depends only on (model, catalog rows, config, seed);
* per-star randomness from ``fold_in(PRNGKey(seed), source_id)``, so a star's result does
  not depend on which partition or batch it is in;
* stars go through one jitted, vmapped function in fixed-size padded batches, so a process
  compiles once per (model shape, batch size).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.emulator import predict_magnitudes

__all__ = ["standin_partition", "STANDIN_DEFAULTS", "PARAMS"]

#: Defaults of the stand-in's config dict: prior draws per star, stars per jitted batch,
#: posterior draws written per star.
STANDIN_DEFAULTS = {"n_draws": 64, "batch_size": 128, "n_keep": 4}
PARAMS = ("teff", "logg", "feh", "mu", "dist_pc", "ebv")
_QUANTILES = (0.16, 0.5, 0.84)


def _star_key(seed_key, sid_lo, sid_hi):
    """A star's PRNG key from the run key and the two uint32 halves of its ``source_id``."""
    return jax.random.fold_in(jax.random.fold_in(seed_key, sid_lo), sid_hi)


def _weighted_quantiles(x, w):
    order = jnp.argsort(x)
    cw = jnp.cumsum(w[order])
    idx = jnp.searchsorted(cw, jnp.asarray(_QUANTILES, cw.dtype) * cw[-1])
    return x[order][jnp.clip(idx, 0, x.shape[0] - 1)]


def _one_star(emu, key, mag, mask, err, mu_hat, sigma_mu, has_plx, ebv, ebv_err, n_draws, n_keep):
    """Summary of one star: (quantiles (P, 3), ess, resampled draws (P, n_keep))."""
    k_t, k_mu, k_e, k_r = jax.random.split(key, 4)
    med, std = emu.normalizer.median, emu.normalizer.std
    theta = med[None, :] + std[None, :] * jax.random.normal(k_t, (n_draws, 3), med.dtype)
    z_mu = jax.random.normal(k_mu, (n_draws,), med.dtype)
    mu = jnp.where(has_plx > 0, mu_hat + sigma_mu * z_mu, 10.0 + 3.0 * z_mu)
    e = jnp.abs(ebv + ebv_err * jax.random.normal(k_e, (n_draws,), med.dtype))
    pred = jax.vmap(lambda t, ee: predict_magnitudes(emu, t, ee))(theta, e) + mu[:, None]
    chi2 = jnp.sum(mask[None, :] * ((mag[None, :] - pred) / err[None, :]) ** 2, axis=1)
    logw = -0.5 * chi2
    w = jax.nn.softmax(logw)
    ess = 1.0 / jnp.sum(w**2)
    values = jnp.stack([*theta.T, mu, 10.0 ** (1.0 + mu / 5.0), e])
    quant = jax.vmap(_weighted_quantiles, in_axes=(0, None))(values, w)
    pick = jax.random.categorical(k_r, logw, shape=(n_keep,))
    return quant, ess, values[:, pick]


def _batch(emu, seed_key, sid_lo, sid_hi, arrays, n_draws, n_keep):
    keys = jax.vmap(_star_key, in_axes=(None, 0, 0))(seed_key, sid_lo, sid_hi)
    return jax.vmap(_one_star, in_axes=(None, 0, 0, 0, 0, 0, 0, 0, 0, 0, None, None))(
        emu, keys, *arrays, n_draws, n_keep
    )


_batch_jit = jax.jit(_batch, static_argnames=("n_draws", "n_keep"))


def _emulator_of(model):
    return getattr(model, "emulator", model)


def standin_partition(model, catalog, config=None, seed: int = 0):
    """Per-star summaries of one partition (see the module docstring).

    Args:
        model: an :class:`~bayesdsm.emulator.Emulator`, or an object with ``.emulator``.
        catalog: a :class:`~bayesdsm.catalog.Catalog` (N stars).
        config: dict overriding :data:`STANDIN_DEFAULTS`.
        seed: the run's seed.

    Returns:
        astropy Table, one row per star in input order: ``source_id``, ``<p>_p16/p50/p84``
        for p in :data:`PARAMS`, ``ess``, ``flags`` (1: < 3 bands, 2: ess < 2) and
        ``<p>_draws`` (N, n_keep) for teff, logg, feh.
    """
    from astropy.table import Table

    from bayesdsm.likelihood import stardata_from_catalog

    cfg = {**STANDIN_DEFAULTS, **(config or {})}
    emu = _emulator_of(model)
    dtype = np.dtype(emu.normalizer.median.dtype)
    sd = stardata_from_catalog(catalog, dtype=dtype)
    arrays = (sd.mag, sd.mask, sd.mag_err, sd.mu, sd.sigma_mu, sd.has_parallax, sd.ebv)
    arrays = (*arrays, sd.ebv_err)
    sid = np.asarray(catalog.source_id, np.int64)
    n, bs = len(sid), int(cfg["batch_size"])
    seed_key = jax.random.PRNGKey(seed)
    outs = []
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        pad = bs - (stop - start)
        chunk = [np.pad(a[start:stop], [(0, pad)] + [(0, 0)] * (a.ndim - 1)) for a in arrays]
        ids = np.pad(sid[start:stop], (0, pad)).view(np.uint64)
        lo = (ids & np.uint64(0xFFFFFFFF)).astype(np.uint32)
        hi = (ids >> np.uint64(32)).astype(np.uint32)
        res = _batch_jit(
            emu, seed_key, lo, hi, chunk, n_draws=int(cfg["n_draws"]), n_keep=int(cfg["n_keep"])
        )
        outs.append([np.asarray(x)[: stop - start] for x in res])
    q = np.concatenate([o[0] for o in outs]) if outs else np.zeros((0, len(PARAMS), 3))
    ess = np.concatenate([o[1] for o in outs]) if outs else np.zeros(0)
    draws = np.concatenate([o[2] for o in outs]) if outs else np.zeros((0, len(PARAMS), 0))
    t = Table()
    t["source_id"] = sid
    for i, p in enumerate(PARAMS):
        for j, tag in enumerate(("p16", "p50", "p84")):
            t[f"{p}_{tag}"] = q[:, i, j].astype(np.float64)
    t["ess"] = ess.astype(np.float64)
    few = np.asarray(catalog.observed).sum(axis=1) < 3
    t["flags"] = (few.astype(np.int32) | (2 * (ess < 2.0)).astype(np.int32)).astype(np.int32)
    for i, p in enumerate(PARAMS[:3]):
        t[f"{p}_draws"] = draws[:, i, :].astype(np.float64)
    return t
