"""The cascade: one batch of stars through the tiers of samplers to a summary table.

The per-partition entry point :func:`infer_arrays` is a pure function of (posterior,
arrays, ids, config): each star's PRNG key is ``fold_in(fold_in(PRNGKey(seed), id_hi),
id_lo)`` of its 64-bit id (Gaia ``source_id`` or row index), and every step treats stars
independently, so a star's result does not depend on how stars are grouped (Dask
partitions, chunks, batches).

Tiers of ``method="auto"``, each run only on the stars the previous ones left (compacted
and padded to 8 × 4^k stars, so each bucket size compiles once): (1) multi-start MAP +
Laplace per mode; (2) PSIS importance sampling from a Student-t mixture over the modes,
accepted where k̂ ≤ 0.7 and ESS ≥ 200 (a star with k̂ > 0.5, ``pareto_k_first``, is held
for one refitted round, whose draws stand if they meet that bar), then up to
``len(n_importance_refit)`` more rounds from a proposal refitted to the previous round's
weighted draws and ``len(n_importance_kernel)`` rounds from a kernel mixture on them;
(3) fixed-length HMC whitened by that proposal (chains split over the top-2 modes),
accepted where R̂ ≤ 1.01 and bulk/tail ESS ≥ 200 within every mode, or else where one
PSIS round from a kernel mixture on the chains' draws meets the PSIS bar (method
``hmc+psis``; the same after each later MCMC tier); then the convergence rule: a star
still failing whose modes carry weight (≥ 2 modes with mass ≥ ``min_mode_weight``:
importance mass, or Laplace evidence where PSIS fails) is flagged ``multimodal`` and
keeps its mode-weighted draws; the others go on to (4) longer HMC, (5) NUTS and (6) a
second NUTS run pooled with the first (twice the chains and draws for R̂ and ESS). A
star that fails them all has its modes looked for where its chains ended (damped Newton
from each chain's last draw): chains in ≥ 2 weighty mode groups make it ``multimodal``,
each group's chains sharing the group's Laplace mass; otherwise it is flagged
``not_converged``. The ``converged`` column says whether the star met the bar.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.infer._config import InferConfig
from bayesdsm.infer._inputs import star_keys
from bayesdsm.infer._laplace import find_modes
from bayesdsm.infer._mcmc import cascade_tiers, chain_modes, run_mcmc
from bayesdsm.infer._padding import pad_size
from bayesdsm.infer._posterior import Posterior, StarArrays
from bayesdsm.infer._psis import group_mass, psis_on_mcmc, psis_tier, slot_mass
from bayesdsm.infer._result import Result, xi_prior_dominated

__all__ = ["infer_arrays", "warm_up"]


def infer_arrays(
    post: Posterior, stars: StarArrays, ids, config: InferConfig, flags=None, keep_draws: int = 0
):
    """Posterior summaries for one batch of stars: the pure per-partition entry point.

    Args:
        post: from :func:`build_posterior`.
        stars: :class:`StarArrays` with a leading star axis (NumPy arrays).
        ids: (N,) int64 star ids (``source_id`` or global row index) for the PRNG keys.
        config: :class:`InferConfig` (its ``seed`` is the global seed).
        flags: optional (N,) list of sets of input flags (from :func:`star_arrays`).
        keep_draws: if > 0, also return (N, keep_draws, P) equal-weight posterior draws of
            ``post.params`` (P = 6, or 7 with ξ for a two-component model).
    Returns:
        dict of (N,) NumPy columns (see :func:`bayesdsm.infer.infer_catalog`), and the
        draws array when ``keep_draws``.
    """
    n = len(ids)
    flags = [set(f) for f in flags] if flags is not None else [set() for _ in range(n)]
    if n == 0:  # an empty partition: the same columns, no rows
        res = Result(0, keep_draws, config.seed, post.params)
        cols = dict(res.cols, flags=np.array([], object), converged=np.zeros(0, bool))
        return (cols, res.draws) if keep_draws else cols
    m = pad_size(n) if n < config.batch_size else int(np.ceil(n / 256) * 256)
    sel = np.concatenate([np.arange(n), np.zeros(m - n, int)])
    js = StarArrays(*(np.asarray(a)[sel] for a in stars)).astype(post.dtype)
    keys = star_keys(config.seed, np.asarray(ids)[sel])
    modes = find_modes(post, js, config.n_starts, config.map_steps, config.mode_barrier)
    res = Result(n, keep_draws, config.seed, post.params)
    standing, mass, prop = psis_tier(post, js, modes, keys, config, n, res)
    mode_mass = group_mass(mass, modes.group, n)
    nm = np.sum(mode_mass >= config.min_mode_weight, 1)
    todo = np.nonzero(~standing)[0]
    todo = _mcmc_tiers(post, js, modes, prop, keys, config, todo, res, mode_mass, nm)
    for r in todo:
        flags[r].add("not_converged")
    cols = _checks(post, js, modes, config, res, mode_mass, nm, flags)
    return (cols, res.draws) if keep_draws else cols


def _mcmc_tiers(post, js, modes, prop, keys, config, todo, res, mode_mass, nm):
    """The MCMC tiers and the convergence rule for the stars ``todo`` that PSIS left;
    fills ``res`` and updates ``mode_mass`` and ``nm`` (modes per star) in place. Returns
    the stars that failed every tier with a single weighty mode (``not_converged``)."""
    last = None
    for t, tier in enumerate(cascade_tiers(config)):
        if t > 0:
            # the convergence rule: a star failing the bar whose modes carry weight (≥ 2
            # with ≥ min_mode_weight) is flagged multimodal, its draws weighted by the
            # modes' mass; the rest go on to the next, longer tier
            todo = todo[nm[todo] < 2]
        if len(todo) == 0:
            break
        pool = None
        if tier.pooled:  # the first NUTS run's chains of the stars still failing
            at = np.searchsorted(last[0], todo)
            pool = tuple(a[at] for a in last[1:])
        phys, ok, rhat, ess, ndiv, wc, zs, chain_mode = run_mcmc(
            tier, post, js, prop, mode_mass, keys, config, todo, pool
        )
        last = (todo, phys, zs, ndiv)
        c, d = phys.shape[1], phys.shape[2]
        wd = np.repeat(wc[:, :, None] / d, d, axis=2).reshape(len(todo), c * d)
        res.set_draws(todo, phys.reshape(len(todo), c * d, phys.shape[-1]), wd, tier.name)
        res.cols["rhat_max"][todo], res.cols["ess_min"][todo] = rhat, ess
        res.cols["n_divergent"][todo] = ndiv.sum(1)
        res.met[todo[ok]] = True
        if config.n_importance_mcmc > 0 and not ok.all():
            # importance sampling from a kernel mixture on the failed chains' draws (salt
            # 40 + the tier's place in the cascade)
            bad = np.nonzero(~ok)[0]
            rows = todo[bad]
            saved, pd, w, khat, ess_is, slot = psis_on_mcmc(
                post, js, prop, keys, config, rows, zs[bad], wd[bad], chain_mode[bad], 40 + t
            )
            rows, pd, w, slot = rows[saved], pd[saved], w[saved], slot[saved]
            res.set_draws(rows, pd, w, f"{tier.name}+psis")
            res.cols["rhat_max"][rows] = np.nan  # the reported draws are PSIS draws
            res.cols["ess_min"][rows], res.cols["pareto_k"][rows] = ess_is[saved], khat[saved]
            group = None if modes.group is None else np.asarray(modes.group)[rows]
            mass = group_mass(slot_mass(w, slot, mode_mass.shape[1]), group, len(rows))
            mode_mass[rows] = mass
            nm[rows] = np.sum(mass >= config.min_mode_weight, 1)
            res.met[rows] = True
            ok[bad[saved]] = True
        todo = todo[~ok]
    todo = todo[nm[todo] < 2]
    if len(todo) and last is not None:
        # chains that ended in different modes the multi-start MAP missed: find those
        # modes from the chains and weight them (else the star is not_converged)
        at = np.searchsorted(last[0], todo)
        chain_modes(post, js, config, todo, last[1][at], last[2][at], res, mode_mass, nm)
    return todo[nm[todo] < 2]


def _checks(post, js, modes, config, res, mode_mass, nm, flags):
    """The table's columns: ``res``'s, the per-star checks at the best mode (χ²/dof,
    training density), modes, flags (``xi_prior_dominated`` from ξ's quantiles, for a
    two-component model) and ``converged``."""
    n = len(flags)
    cols = res.cols
    best = np.argmax(np.asarray(modes.log_weight), 1)
    zb = jnp.asarray(np.asarray(modes.z)[np.arange(len(best)), best])
    chi2, nobs = jax.vmap(post.chi2)(zb, js)
    cols["chi2_dof"] = np.asarray(chi2, np.float64)[:n] / np.maximum(np.asarray(nobs)[:n] - 1, 1)
    theta_b = np.asarray(jax.vmap(post.theta)(zb), np.float64)[:n]
    if post.theta_prior is not None:
        lrho = np.asarray(jax.vmap(post.theta_prior)(jnp.asarray(theta_b, post.dtype)), np.float64)
        cols["validity"] = np.maximum(np.exp(lrho) - config.density_floor, 0.0)
    cols["n_modes"] = nm
    k_modes = mode_mass.shape[1]
    cols["mode_weight_2"] = np.sort(mode_mass, 1)[:, -2] if k_modes > 1 else np.zeros(n)
    conv = np.asarray(modes.converged)[:n]
    xi_prior = xi_prior_dominated(cols)
    for r in range(n):
        if xi_prior[r]:
            flags[r].add("xi_prior_dominated")
        if nm[r] >= 2:
            flags[r].add("multimodal")
        if not conv[r]:
            flags[r].add("map_not_converged")
        if cols["chi2_dof"][r] > config.chi2_max:
            flags[r].add("chi2")
        if cols["validity"][r] < config.validity_min:
            flags[r].add("outside_validity")
    cols["flags"] = np.array([",".join(sorted(f)) for f in flags], dtype=object)
    # converged: met the ESS/R̂ (or PSIS) bar. A star that did not is flagged either
    # ``multimodal`` (modes found and weighted) or ``not_converged``.
    cols["converged"] = res.met
    return cols


def warm_up(post: Posterior, stars: StarArrays, config: InferConfig, sizes=(8, 32)):
    """Compile every tier's programs for later-tier subsets of each of ``sizes`` stars
    (buckets 8 × 4^k), by running all tiers on the first stars of ``stars`` with a bar no
    star can meet (k̂ ≤ −∞, ESS ≥ ∞, no mode weighty enough to stop at ``multimodal``).

    The rare tiers (longer HMC, NUTS, PSIS on their chains) otherwise compile inside
    the first batch that needs them: about 30 s on two cores, once per process (or once
    per machine with the persistent compilation cache, :mod:`bayesdsm.batch`). Nothing is
    returned: only JAX's caches change.
    """
    n = len(np.asarray(stars.mag))
    force = dataclasses.replace(config, pareto_k_max=-np.inf, ess_min=np.inf, min_mode_weight=2.0)
    for size in sizes:
        rows = np.arange(size) % n
        infer_arrays(post, StarArrays(*(np.asarray(a)[rows] for a in stars)), rows, force)
