"""The PSIS tier of the cascade: importance-sampling rounds, Pareto-smoothed, per star.

Round r of a star draws from a proposal (a Student-t mixture) with the star's PRNG key
folded with the salt 3 + r. Rounds, each on the stars still failing the bar (k̂ ≤
``pareto_k_max`` and ESS ≥ ``ess_min``): the Laplace-mixture proposal (``n_importance``
draws); proposals refitted to the previous round's weighted draws
(``n_importance_refit``); defensive kernel mixtures on them (``n_importance_kernel``).
The same kernel mixture on an MCMC tier's chains is :func:`psis_on_mcmc`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.infer._padding import padded, rows, subset
from bayesdsm.infer._sample import importance_sample, kernel_proposal, psis, refit_proposal

__all__ = ["is_round", "psis_tier", "psis_on_mcmc", "slot_mass", "group_mass"]

#: Weight of the uniform-over-modes part of each round's proposal (importance_sample's mix).
ROUND_MIX = {"laplace": 0.3, "refit": 0.1, "kernel": 0.0}


def is_round(post, stars, prop, keys, idx, n_draws, salt, mix, comp_slot=None):
    """One importance-sampling round for stars ``idx`` (compacted, padded:
    :func:`~bayesdsm.infer._padding.bucket`) from ``prop``, the proposal of those n stars.
    Returns (x (n, S, D), normalised log weights, k̂, ESS, mode slot of each draw (n, S),
    physical draws (n, S, P)); the slot is the drawing component's, mapped through
    ``comp_slot`` (n, K') if given."""
    n = len(idx)
    pad = padded(n)
    sel = idx[pad]
    ks = jax.vmap(lambda k: jax.random.fold_in(k, salt))(jnp.asarray(keys[sel]))
    x, lw, assign, phys = importance_sample(
        post, subset(stars, sel), subset(prop, pad), ks, n_draws, 7.0, mix
    )
    slw, khat, ess = psis(np.asarray(lw)[:n])
    phys = np.asarray(phys)[:n]  # the posterior's dtype (sorts faster)
    assign = np.asarray(assign)[:n]
    if comp_slot is not None:
        assign = np.take_along_axis(comp_slot, assign, 1)
    return np.asarray(x)[:n], slw, khat, ess, assign, phys


def psis_on_mcmc(post, stars, prop, keys, config, idx, zs, w_draw, chain_mode, salt):
    """A PSIS round for stars ``idx`` whose MCMC run failed the bar, from a defensive
    kernel mixture (:func:`kernel_proposal`) on their MCMC draws zs (n, C, D, ndim),
    weighted w_draw (n, C·D), of mode slots chain_mode (n, C). Chains that have not mixed to
    R̂ ≤ 1.01 still trace the posterior's shape (a curved ridge, a wall) far better than
    any Laplace or moment-matched proposal; the importance weights then correct for the
    chains' imbalance, and k̂ says whether that worked.

    Returns (ok (n,), physical draws (n, S, P), weights (n, S), k̂ (n,), ESS (n,), mode
    slot of each draw (n, S))."""
    n, c, d = zs.shape[:3]
    x = np.array(zs.reshape(n, c * d, zs.shape[-1]), np.float64)
    x[..., 4] = np.abs(x[..., 4])  # the draws of the folded target
    assign = np.repeat(chain_mode, d, axis=1)
    lw = np.log(np.maximum(w_draw, 1e-300))
    sub = rows(prop, idx)
    draw_from, comp_slot, _ = kernel_proposal(
        sub, x, lw, assign, n_kernels=config.n_kernels, inflate=config.refit_inflate
    )
    _, slw, khat, ess, slot, phys = is_round(
        post, stars, draw_from, keys, idx, config.n_importance_mcmc, salt, 0.0, comp_slot
    )
    ok = np.isfinite(khat) & (khat <= config.pareto_k_max) & (ess >= config.ess_min)
    return ok, phys, np.exp(slw), khat, ess, slot


def slot_mass(w, assign, k_modes):
    """(n, K) the weight of each mode slot's draws."""
    return np.stack([np.sum(w * (assign == k), 1) for k in range(k_modes)], 1)


def group_mass(mass, group, n):
    """(n, K) mass per mode group, held by the group's representative slot (0 elsewhere)."""
    if group is None:
        return mass
    group = np.asarray(group)[:n]
    out = np.zeros_like(mass)
    for k in range(mass.shape[1]):
        np.add.at(out, (np.arange(n), group[:, k]), mass[:, k])
    return out


def _rounds(config):
    """[(draws, kind)] of the PSIS rounds ``config`` runs (the first one only when the
    MCMC tiers sample every star)."""
    rounds = [(config.n_importance, "laplace")]
    if config.engine not in ("hmc", "nuts"):
        rounds += [(s, "refit") for s in config.n_importance_refit]
        rounds += [(s, "kernel") for s in config.n_importance_kernel]
    return rounds


def psis_tier(post, stars, modes, keys, config, n, res):
    """Importance sampling in rounds: the Laplace-mixture proposal for every star, then,
    for the stars that fail the bar (k̂ ≤ pareto_k_max and ESS ≥ ess_min; a star meeting
    it in the first round with k̂ > pareto_k_first is held for the second round only,
    whose draws stand if they meet it), a proposal
    refitted to their previous round's weighted draws (:func:`refit_proposal`) with
    ``n_importance_refit[r]`` draws in round r + 1, on those stars only; then rounds of
    ``n_importance_kernel`` draws from a defensive kernel mixture on the previous
    round's draws (:func:`kernel_proposal`) for the stars still failing.

    Fills ``res`` for the stars whose importance sample stands (met the bar; with
    ``method="laplace"`` every star's last round) and returns (standing (n,) bool, mode
    mass (n, K): the last round with k̂ ≤ pareto_k_max, else the Laplace weights, final
    proposal of every star (NumPy :class:`LaplaceModes`))."""
    k_modes = np.asarray(modes.z).shape[1]
    prop = type(modes)(*(None if a is None else np.array(a) for a in modes))
    mass = np.exp(np.asarray(modes.log_weight, np.float64))[:n]
    standing = np.zeros(n, bool)
    mcmc_all = config.engine in ("hmc", "nuts")
    rounds = _rounds(config)
    idx, prev, held = np.arange(n), None, None
    for r, (n_draws, kind) in enumerate(rounds):
        if len(idx) == 0:
            break
        sub = rows(prop, idx)
        comp_slot = None
        if kind == "refit":
            sub = refit_proposal(sub, *prev, inflate=config.refit_inflate)
            draw_from = sub
        elif kind == "kernel":
            draw_from, comp_slot, sub = kernel_proposal(
                sub, *prev, n_kernels=config.n_kernels, inflate=config.refit_inflate
            )
        else:
            draw_from = sub
        if kind != "laplace":  # keep the refitted components for the MCMC tiers
            for name in ("z", "scale", "inv_scale", "log_weight"):
                getattr(prop, name)[idx] = getattr(sub, name)
        x, slw, khat, ess, assign, phys = is_round(
            post, stars, draw_from, keys, idx, n_draws, 3 + r, ROUND_MIX[kind], comp_slot
        )
        w = np.exp(slw)
        good_k = np.isfinite(khat) & (khat <= config.pareto_k_max)
        mass[idx[good_k]] = slot_mass(w[good_k], assign[good_k], k_modes)
        ok = good_k & (ess >= config.ess_min) & (not mcmc_all)
        if r == 0 and len(rounds) > 1:
            # met the bar, but with pareto_k_first < k̂: held for one refitted round,
            # whose draws stand if they meet the bar (else these do)
            hold = ok & (khat > config.pareto_k_first)
            held = dict(rows=idx[hold], phys=phys[hold], w=w[hold], khat=khat[hold],
                        ess=ess[hold], mass=mass[idx[hold]].copy())  # fmt: skip
            ok &= ~hold
        final = ok | ((r == len(rounds) - 1) & (config.engine == "laplace"))
        res.set_draws(idx[final], phys[final], w[final], "psis")
        res.cols["ess_min"][idx[final]] = ess[final]
        res.cols["pareto_k"][idx] = khat
        if r == 1 and len(held["rows"]):
            at = np.searchsorted(idx, held["rows"])
            back = ~ok[at]  # the refitted round failed: the first round's draws stand
            ok[at] = final[at] = True
            back_rows = held["rows"][back]
            res.set_draws(back_rows, held["phys"][back], held["w"][back], "psis")
            res.cols["ess_min"][back_rows] = held["ess"][back]
            res.cols["pareto_k"][back_rows] = held["khat"][back]
            mass[back_rows] = held["mass"][back]
        res.met[idx[ok]] = True
        standing[idx[final]] = True
        prev = (x[~final], slw[~final], assign[~final])
        idx = idx[~final]
    return standing, mass, prop
