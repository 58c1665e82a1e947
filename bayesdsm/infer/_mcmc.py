"""The MCMC tiers of the cascade: whitened HMC and NUTS on the stars PSIS left, and the
modes that failed chains point to.

Each tier is a :class:`Tier` row of :data:`TIERS`: its sampler, the :class:`InferConfig`
fields of its settings, and the salt folded into each star's PRNG key (so a tier's draws
do not depend on which tiers ran before it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.infer._laplace import find_modes
from bayesdsm.infer._padding import bucket, padded, subset
from bayesdsm.infer._sample import (
    mcmc_diagnostics,
    physical_draws,
    whitened_hmc,
    whitened_nuts,
)

__all__ = ["Tier", "TIERS", "cascade_tiers", "run_mcmc", "chain_modes"]


@dataclass(frozen=True)
class Tier:
    """One MCMC tier.

    Attributes:
        name: the ``method`` its stars report.
        sampler: :func:`whitened_hmc` or :func:`whitened_nuts`.
        salt: folded into each star's key.
        settings: the InferConfig fields of the sampler's warm-up, draws and leapfrog
            steps (HMC) or tree depth (NUTS).
        pooled: a second run whose chains are pooled with the previous NUTS run's.
    """

    name: str
    sampler: Callable
    salt: int
    settings: tuple[str, str, str]
    pooled: bool = False


_NUTS = ("nuts_warmup", "nuts_samples", "nuts_max_tree_depth")

#: The MCMC tiers by name, in the order the cascade tries them.
TIERS = {
    t.name: t
    for t in (
        Tier("hmc", whitened_hmc, 7, ("n_warmup", "n_samples", "n_leapfrog")),
        Tier("hmc_long", whitened_hmc, 13, ("long_warmup", "long_samples", "long_leapfrog")),
        Tier("nuts", whitened_nuts, 7, _NUTS),
        Tier("nuts_more", whitened_nuts, 19, _NUTS, pooled=True),
    )
}


def cascade_tiers(config) -> tuple[Tier, ...]:
    """The MCMC tiers ``config`` runs, in order (none for ``method="laplace"``)."""
    engine = config.engine
    if engine == "laplace":
        return ()
    if engine == "nuts":
        names = ("nuts", "nuts_more") if config.escalate else ("nuts",)
    else:
        names = ("hmc", "hmc_long", "nuts", "nuts_more") if config.escalate else ("hmc",)
    return tuple(TIERS[n] for n in names)


def run_mcmc(tier: Tier, post, stars, modes, mode_mass, keys, config, idx, pool=None):
    """One MCMC tier for stars ``idx`` only (compacted, padded:
    :func:`~bayesdsm.infer._padding.bucket`); chains split over their top-2 modes.
    ``modes`` gives each mode's centre and whitening (the Laplace modes, or the refitted
    importance-sampling proposal).

    A ``pooled`` tier (``nuts_more``) is a second NUTS run (other keys, the same compiled
    program) whose chains are pooled with ``pool`` = (physical draws, z draws,
    divergences) of the first NUTS run on the same stars, so R̂ and ESS are judged on
    twice the chains and draws. The stars that reach it have a single weighty mode (the
    convergence rule), so every pooled chain starts from it.

    Returns (draws (n, C, S, P) physical (P = len(``post.params``)), ok (n,), rhat (n,),
    ess (n,), ndiv (n, C), chain weights (n, C), z draws (n, C, S, ``post.ndim``), mode
    slot of each chain (n, C))."""
    n, c = len(idx), config.n_chains
    m = bucket(n)
    sel = idx[padded(n)]
    mass = mode_mass[sel]
    top = np.argsort(-mass, axis=1)[:, :2]
    two = mass[np.arange(m), top[:, 1]] >= config.min_mode_weight
    chain_mode = np.where(two[:, None] & (np.arange(c)[None] >= c // 2), top[:, 1:2], top[:, :1])
    zc = np.take_along_axis(np.asarray(modes.z)[sel], chain_mode[..., None], 1)
    sc = np.take_along_axis(np.asarray(modes.scale)[sel], chain_mode[..., None, None], 1)
    ks = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, tier.salt), c))(
        jnp.asarray(keys[sel])
    )
    dtype = post.dtype
    zc, sc = jnp.asarray(zc, dtype), jnp.asarray(sc, dtype)
    settings = (getattr(config, f) for f in tier.settings)
    zs, _, ndiv, _ = tier.sampler(post, subset(stars, sel), zc, sc, ks, *settings)
    phys = np.asarray(physical_draws(post, zs))[:n]  # the posterior's dtype
    chain_mode, two = chain_mode[:n], two[:n]
    zs, ndiv = np.asarray(zs)[:n], np.asarray(ndiv)[:n]
    if pool is not None:
        phys, zs, ndiv = (np.concatenate([a, b], 1) for a, b in zip(pool, (phys, zs, ndiv)))
        chain_mode = np.concatenate([chain_mode, chain_mode], 1)
        two, c = np.zeros(n, bool), 2 * c
    # diagnostics within each mode's chains (the mode's chains are a block of c/2 or c)
    rhat = np.zeros(n)
    ess = np.full(n, np.inf)
    for blk in (slice(0, c // 2), slice(c // 2, c)) if c >= 4 else (slice(0, c),):
        dg = mcmc_diagnostics(np.moveaxis(phys[:, blk], (1, 2), (0, 1)))
        rhat = np.maximum(rhat, np.where(two, dg["rhat"].max(-1), 0.0))
        ess = np.minimum(
            ess, np.where(two, np.minimum(dg["ess_bulk"], dg["ess_tail"]).min(-1), np.inf)
        )
    dg = mcmc_diagnostics(np.moveaxis(phys, (1, 2), (0, 1)))
    rhat = np.where(two, rhat, dg["rhat"].max(-1))
    ess = np.where(two, ess, np.minimum(dg["ess_bulk"], dg["ess_tail"]).min(-1))
    ok = (rhat <= config.rhat_max) & (ess >= config.ess_min)
    ok &= np.all(np.isfinite(phys), axis=(1, 2, 3))
    w_mode = np.take_along_axis(mode_mass[idx], chain_mode, 1)
    w_chain = np.where(
        two[:, None], w_mode / np.maximum(w_mode.sum(1, keepdims=True), 1e-300), 1.0 / c
    )
    return phys, ok, rhat, ess, ndiv, w_chain, zs, chain_mode


def chain_modes(post, stars, config, rows, phys, zs, res, mode_mass, nm):
    """Modes found by MCMC chains, for stars ``rows`` that failed every tier with a single
    weighty mode: damped Newton from each chain's last draw, Laplace mass per mode group
    (:func:`~bayesdsm.infer.find_modes`), each chain assigned to the group of the mode
    nearest its last draw. A star whose chains sit in ≥ 2 groups of mass
    ≥ ``min_mode_weight`` gets its draws reweighted (each group's chains share its mass)
    and ``nm`` ≥ 2 (the ``multimodal`` flag); ``mode_mass`` gets the groups' masses,
    largest first. Updates ``res``, ``mode_mass`` and ``nm`` in place."""
    n, c, d = zs.shape[:3]
    pad = padded(n)
    starts = np.array(zs[:, :, -1], np.float64)
    starts[..., 4] = np.abs(starts[..., 4])
    found = find_modes(
        post, subset(stars, rows[pad]), c, config.map_steps, config.mode_barrier,
        starts=jnp.asarray(starts[pad], post.dtype),
    )  # fmt: skip
    z, valid = np.asarray(found.z, np.float64)[:n], np.asarray(found.valid)[:n]
    inv_scale = np.asarray(found.inv_scale, np.float64)[:n]
    group, mass = np.asarray(found.group)[:n], np.exp(np.asarray(found.log_weight, np.float64))[:n]
    k_keep = mode_mass.shape[1]
    for i, r in enumerate(rows):
        # each chain's mode: the valid mode nearest its last draw (Mahalanobis)
        dz = starts[i][:, None, :] - z[i][None, :, :]  # (chain, mode, D)
        dist = np.sum(np.einsum("kab,ckb->cka", inv_scale[i], dz) ** 2, -1)
        near = np.argmin(np.where(valid[i][None, :], dist, np.inf), 1)
        g = group[i][near]  # (C,) the group of each chain
        g_mass = {k: mass[i][group[i] == k].sum() for k in np.unique(g)}
        weighty = [k for k, v in g_mass.items() if v >= config.min_mode_weight]
        if len(weighty) < 2:
            continue
        w_chain = np.array([g_mass[k] / np.sum(g == k) for k in g])
        w = np.repeat(w_chain / (w_chain.sum() * d), d)
        draws = phys[i : i + 1].reshape(1, c * d, phys.shape[-1])
        res.set_draws(rows[i : i + 1], draws, w[None], res.cols["method"][r])
        masses = np.sort(list(g_mass.values()))[::-1][:k_keep] / sum(g_mass.values())
        mode_mass[r] = 0.0
        mode_mass[r, : len(masses)] = masses
        nm[r] = len(weighty)
