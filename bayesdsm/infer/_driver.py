"""Drivers: catalog → per-star arrays → tiers of samplers → summary table, streamed to disk.

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

import numpy as np

from bayesdsm.infer._config import InferConfig
from bayesdsm.infer._posterior import PARAMS, Posterior, StarArrays

__all__ = ["build_posterior", "star_arrays", "star_keys", "infer_arrays", "warm_up", "FLAGS"]

#: Flag names (a comma-separated string per star in the table).
FLAGS = (
    "nonfinite_input",  # a non-finite or non-positive value was masked
    "prior_dominated",  # fewer than ``min_bands`` bands
    "outside_validity",  # training density at the MAP < validity_min
    "chi2",  # χ²/dof at the MAP > chi2_max
    "multimodal",  # ≥ 2 modes with ≥ min_mode_weight, or failed the bar with ≥ 2 modes
    "not_converged",  # one mode, and even the pooled NUTS runs failed the ESS/R̂ bar
    "map_not_converged",  # no start reached a local maximum
)


def build_posterior(model, config: InferConfig, theta_density=None) -> Posterior:
    """The :class:`Posterior` for ``model`` (an Emulator, or an object with ``.emulator``
    and optionally ``.validity_grid``) under ``config``.

    ``theta_density`` overrides the model's density: a ``ValidityGrid``-like object
    (``axes``, ``density``, ``names``) or a dict from ``load_green2020_density``.
    """
    import jax.numpy as jnp

    from bayesdsm.priors import ThetaDensityPrior

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
    import jax

    ids = np.asarray(ids).astype(np.uint64)
    hi = (ids >> np.uint64(32)).astype(np.uint32)
    lo = (ids & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    base = jax.random.PRNGKey(seed)
    f = jax.vmap(lambda h, l: jax.random.fold_in(jax.random.fold_in(base, h), l))
    return np.asarray(f(hi, lo))


def _pad(n: int, minimum: int = 8) -> int:
    return max(minimum, 1 << int(np.ceil(np.log2(max(n, 1)))))


def _bucket(n: int) -> int:
    """Padded size of a later tier's subset of stars: 8 × 4^k ≥ n. Each size compiles
    once per function; powers of 4 instead of 2 halve the number of sizes (and of
    compilations during a run, which cost more than the padding: measured on 4,096
    stars, 26.5 s while new sizes compiled against 22.0 s once all had)."""
    size = 8
    while size < n:
        size *= 4
    return size


def _cast(stars: StarArrays, dtype):
    import jax.numpy as jnp

    return StarArrays(
        *(jnp.asarray(a) if np.asarray(a).dtype == bool else jnp.asarray(a, dtype) for a in stars)
    )


def _weighted_quantiles(values, weights, qs):
    """values (N, S, P), weights (N, S) normalised → (N, P, len(qs))."""
    order = np.argsort(values, axis=1)
    v = np.take_along_axis(values, order, axis=1)
    w = np.take_along_axis(np.broadcast_to(weights[..., None], values.shape), order, axis=1)
    cw = np.cumsum(w, axis=1) - 0.5 * w
    out = np.empty(values.shape[:1] + values.shape[2:] + (len(qs),))
    for k, q in enumerate(qs):
        i = np.clip(np.sum(cw < q, axis=1), 0, values.shape[1] - 1)
        out[..., k] = np.take_along_axis(v, i[:, None, :], axis=1)[:, 0, :]
    return out


def _rows(modes, idx):
    """The rows ``idx`` of a NumPy :class:`LaplaceModes`-like tuple (None fields kept)."""
    return type(modes)(*(None if a is None else np.asarray(a)[idx] for a in modes))


def _subset(tree, sel):
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[sel]), tree)


def _run_mcmc(kind, post, stars, modes, mode_mass, keys, config, idx, pool=None):
    """Whitened HMC or NUTS for stars ``idx`` only (compacted, padded: :func:`_bucket`);
    chains split over their top-2 modes. ``modes`` gives each mode's centre and
    whitening (the Laplace modes, or the refitted importance-sampling proposal).

    ``kind="nuts_more"`` is a second NUTS run (other keys, the same compiled program)
    whose chains are pooled with ``pool`` = (physical draws, z draws, divergences) of
    the first NUTS run on the same stars, so R̂ and ESS are judged on twice the chains
    and draws. The stars that reach it have a single weighty mode (the convergence
    rule), so every pooled chain starts from it.

    Returns (draws (n, C, D, 6) physical, ok (n,), rhat (n,), ess (n,), ndiv (n, C), chain
    weights (n, C), z draws (n, C, D, 5), mode slot of each chain (n, C))."""
    import jax
    import jax.numpy as jnp

    from bayesdsm.infer._sample import (
        mcmc_diagnostics,
        physical_draws,
        whitened_hmc,
        whitened_nuts,
    )

    n, c = len(idx), config.n_chains
    m = _bucket(n)
    sel = np.concatenate([idx, np.full(m - n, idx[0])])
    mass = mode_mass[sel]
    top = np.argsort(-mass, axis=1)[:, :2]
    two = mass[np.arange(m), top[:, 1]] >= config.min_mode_weight
    chain_mode = np.where(two[:, None] & (np.arange(c)[None] >= c // 2), top[:, 1:2], top[:, :1])
    zc = np.take_along_axis(np.asarray(modes.z)[sel], chain_mode[..., None], 1)
    sc = np.take_along_axis(np.asarray(modes.scale)[sel], chain_mode[..., None, None], 1)
    salt = {"hmc": 7, "hmc_long": 13, "nuts": 7, "nuts_more": 19}[kind]
    ks = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, salt), c))(
        jnp.asarray(keys[sel])
    )
    sub = _subset(stars, sel)
    dtype = post.dtype
    zc, sc = jnp.asarray(zc, dtype), jnp.asarray(sc, dtype)
    if kind in ("hmc", "hmc_long"):
        long = kind == "hmc_long"
        zs, _, ndiv, _ = whitened_hmc(
            post,
            sub,
            zc,
            sc,
            ks,
            config.long_warmup if long else config.n_warmup,
            config.long_samples if long else config.n_samples,
            config.long_leapfrog if long else config.n_leapfrog,
        )
    else:
        zs, _, ndiv, _ = whitened_nuts(
            post, sub, zc, sc, ks, config.nuts_warmup, config.nuts_samples,
            config.nuts_max_tree_depth,
        )  # fmt: skip
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


def _is_round(post, stars, prop, keys, idx, n_draws, salt, mix, comp_slot=None):
    """One importance-sampling round for stars ``idx`` (compacted, padded: :func:`_bucket`)
    from ``prop``, the proposal of those n stars. Returns (x (n, S, 5), normalised
    log weights, k̂, ESS, mode slot of each draw (n, S), physical draws (n, S, 6)); the
    slot is the drawing component's, mapped through ``comp_slot`` (n, K') if given."""
    import jax
    import jax.numpy as jnp

    from bayesdsm.infer._sample import importance_sample, psis

    n = len(idx)
    pad = np.concatenate([np.arange(n), np.zeros(_bucket(n) - n, int)])
    sel = idx[pad]
    ks = jax.vmap(lambda k: jax.random.fold_in(k, salt))(jnp.asarray(keys[sel]))
    x, lw, assign, phys = importance_sample(
        post, _subset(stars, sel), _subset(prop, pad), ks, n_draws, 7.0, mix
    )
    slw, khat, ess = psis(np.asarray(lw)[:n])
    phys = np.asarray(phys)[:n]  # the posterior's dtype (sorts faster)
    assign = np.asarray(assign)[:n]
    if comp_slot is not None:
        assign = np.take_along_axis(comp_slot, assign, 1)
    return np.asarray(x)[:n], slw, khat, ess, assign, phys


def _psis_on_mcmc(post, stars, prop, keys, config, idx, zs, w_draw, chain_mode, salt):
    """A PSIS round for stars ``idx`` whose MCMC run failed the bar, from a defensive
    kernel mixture (:func:`kernel_proposal`) on their MCMC draws zs (n, C, D, 5), weighted
    w_draw (n, C·D), of mode slots chain_mode (n, C). Chains that have not mixed to
    R̂ ≤ 1.01 still trace the posterior's shape (a curved ridge, a wall) far better than
    any Laplace or moment-matched proposal; the importance weights then correct for the
    chains' imbalance, and k̂ says whether that worked.

    Returns (ok (n,), physical draws (n, S, 6), weights (n, S), k̂ (n,), ESS (n,), mode
    slot of each draw (n, S))."""
    from bayesdsm.infer._sample import kernel_proposal

    n, c, d = zs.shape[:3]
    x = np.array(zs.reshape(n, c * d, 5), np.float64)
    x[..., 4] = np.abs(x[..., 4])  # the draws of the folded target
    assign = np.repeat(chain_mode, d, axis=1)
    lw = np.log(np.maximum(w_draw, 1e-300))
    sub = _rows(prop, idx)
    draw_from, comp_slot, _ = kernel_proposal(
        sub, x, lw, assign, n_kernels=config.n_kernels, inflate=config.refit_inflate
    )
    _, slw, khat, ess, slot, phys = _is_round(
        post, stars, draw_from, keys, idx, config.n_importance_mcmc, salt, 0.0, comp_slot
    )
    ok = np.isfinite(khat) & (khat <= config.pareto_k_max) & (ess >= config.ess_min)
    return ok, phys, np.exp(slw), khat, ess, slot


def _mode_mass(w, assign, k_modes):
    return np.stack([np.sum(w * (assign == k), 1) for k in range(k_modes)], 1)


def _psis_tier(post, stars, modes, keys, config, n, res):
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
    from bayesdsm.infer._sample import kernel_proposal, refit_proposal

    k_modes = np.asarray(modes.z).shape[1]
    prop = type(modes)(*(None if a is None else np.array(a) for a in modes))
    mode_mass = np.exp(np.asarray(modes.log_weight, np.float64))[:n]
    standing = np.zeros(n, bool)
    method = _method(config)
    mcmc_all = method in ("hmc", "nuts")
    rounds = [(config.n_importance, "laplace")]
    if not mcmc_all:
        rounds += [(s, "refit") for s in config.n_importance_refit]
        rounds += [(s, "kernel") for s in config.n_importance_kernel]
    idx, prev, held = np.arange(n), None, None
    for r, (n_draws, kind) in enumerate(rounds):
        if len(idx) == 0:
            break
        sub = _rows(prop, idx)
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
        x, slw, khat, ess, assign, phys = _is_round(
            post, stars, draw_from, keys, idx, n_draws, 3 + r,
            {"laplace": 0.3, "refit": 0.1, "kernel": 0.0}[kind], comp_slot,
        )  # fmt: skip
        w = np.exp(slw)
        good_k = np.isfinite(khat) & (khat <= config.pareto_k_max)
        mode_mass[idx[good_k]] = _mode_mass(w[good_k], assign[good_k], k_modes)
        ok = good_k & (ess >= config.ess_min) & (not mcmc_all)
        if r == 0 and len(rounds) > 1:
            # met the bar, but with pareto_k_first < k̂: held for one refitted round,
            # whose draws stand if they meet the bar (else these do)
            hold = ok & (khat > config.pareto_k_first)
            held = dict(rows=idx[hold], phys=phys[hold], w=w[hold], khat=khat[hold],
                        ess=ess[hold], mass=mode_mass[idx[hold]].copy())  # fmt: skip
            ok &= ~hold
        final = ok | ((r == len(rounds) - 1) & (method == "laplace"))
        res.set_draws(idx[final], phys[final], w[final], "psis")
        res.cols["ess_min"][idx[final]] = ess[final]
        res.cols["pareto_k"][idx] = khat
        if r == 1 and len(held["rows"]):
            at = np.searchsorted(idx, held["rows"])
            back = ~ok[at]  # the refitted round failed: the first round's draws stand
            ok[at] = final[at] = True
            rows = held["rows"][back]
            res.set_draws(rows, held["phys"][back], held["w"][back], "psis")
            res.cols["ess_min"][rows] = held["ess"][back]
            res.cols["pareto_k"][rows] = held["khat"][back]
            mode_mass[rows] = held["mass"][back]
        res.met[idx[ok]] = True
        standing[idx[final]] = True
        prev = (x[~final], slw[~final], assign[~final])
        idx = idx[~final]
    return standing, mode_mass, prop


class _Result:
    """Output columns, optional equal-weight draws and the met-the-bar mask of n stars."""

    def __init__(self, n, keep_draws, seed):
        self.cols = {
            name: np.full(n, np.nan)
            for p in PARAMS
            for name in (f"{p}_p16", f"{p}_p50", f"{p}_p84")
        }
        self.cols.update(
            rhat_max=np.full(n, np.nan),
            ess_min=np.zeros(n),
            n_divergent=np.zeros(n, np.int64),
            pareto_k=np.full(n, np.nan),
            n_modes=np.zeros(n, np.int64),
            mode_weight_2=np.zeros(n),
            chi2_dof=np.full(n, np.nan),
            validity=np.full(n, np.nan),
            method=np.array(["psis"] * n, dtype=object),
        )
        self.met = np.zeros(n, bool)
        self.keep = keep_draws
        self.draws = np.zeros((n, keep_draws, 6)) if keep_draws else None
        self.rng = np.random.default_rng(seed)

    def set_draws(self, rows, vals, w, method):
        """Summaries of ``rows`` from weighted draws vals (r, S, 6), weights (r, S)."""
        if len(rows) == 0:
            return
        # a draw with a non-finite value (e.g. an overflowing emulator far from the
        # data) carries no weight; a star left with no weight gets NaN summaries
        w = np.where(np.all(np.isfinite(vals), -1), w, 0.0)
        total = w.sum(1)
        vals = np.where(np.isfinite(vals), vals, 0.0)
        # dist_pc is monotonic in μ, so its quantiles are μ's transformed (a weighted
        # quantile here is one of the draws, no interpolation): one sort fewer
        own = [j for j, p in enumerate(PARAMS) if p != "dist_pc"]
        qo = _weighted_quantiles(
            vals[..., own], w / np.maximum(total, 1e-300)[:, None], (0.16, 0.5, 0.84)
        )
        q = np.empty((len(rows), len(PARAMS), 3))
        q[:, own] = qo
        mu_q = qo[:, own.index(PARAMS.index("mu"))]
        q[:, PARAMS.index("dist_pc")] = 10.0 ** (mu_q / 5.0 + 1.0)
        q[total <= 0] = np.nan
        for j, p in enumerate(PARAMS):
            for k, tag in enumerate(("p16", "p50", "p84")):
                self.cols[f"{p}_{tag}"][rows] = q[:, j, k]
        self.cols["method"][rows] = method
        if self.keep:
            for r, v, ww, t in zip(rows, vals, w, total):
                self.draws[r] = v[self._resample(ww / t)] if t > 0 else np.nan

    def _resample(self, p):
        """``keep`` indices drawn ∝ p by systematic resampling (one uniform offset): the
        equal-weight draws' quantiles are less noisy than with multinomial draws, so their
        intervals cover closer to nominal (measured: 95% intervals of a Gaussian target,
        0.943 multinomial vs 0.945 systematic vs 0.947 weighted)."""
        u = (self.rng.uniform() + np.arange(self.keep)) / self.keep
        return np.searchsorted(np.cumsum(p), u * np.sum(p)).clip(0, len(p) - 1)


def _group_mass(mass, group, n):
    """(n, K) mass per mode group, held by the group's representative slot (0 elsewhere)."""
    if group is None:
        return mass
    group = np.asarray(group)[:n]
    out = np.zeros_like(mass)
    for k in range(mass.shape[1]):
        np.add.at(out, (np.arange(n), group[:, k]), mass[:, k])
    return out


def _method(config):
    """The engine ``config`` runs: ``method``, except that ``"auto"`` under the flat θ
    prior runs as ``"hmc"``. There, PSIS intervals of [Fe/H] (which the photometry
    barely constrains, so its posterior fills the prior's box and runs into the soft
    walls) covered the truth 0.920 of the time at 95% and 0.647 at 68% (calibration
    seed 11), against 0.932 and 0.654 with the MCMC tiers (BENCHMARKS.md, session 6)."""
    if config.method == "auto" and config.theta_prior == "flat":
        return "hmc"
    return config.method


def _mcmc_tiers(config):
    method = _method(config)
    if method == "laplace":
        return ()
    if method == "nuts":
        return ("nuts", "nuts_more") if config.escalate else ("nuts",)
    return ("hmc", "hmc_long", "nuts", "nuts_more") if config.escalate else ("hmc",)


def _chain_modes(post, stars, config, rows, phys, zs, res, mode_mass, nm):
    """Modes found by MCMC chains, for stars ``rows`` that failed every tier with a single
    weighty mode: damped Newton from each chain's last draw, Laplace mass per mode group
    (:func:`bayesdsm.infer._laplace.find_modes`), each chain assigned to the group of
    the mode nearest its last draw. A star whose chains sit in ≥ 2 groups of mass
    ≥ ``min_mode_weight`` gets its draws reweighted (each group's chains share its mass)
    and ``nm`` ≥ 2 (the ``multimodal`` flag); ``mode_mass`` gets the groups' masses,
    largest first. Updates ``res``, ``mode_mass`` and ``nm`` in place."""
    import jax.numpy as jnp

    from bayesdsm.infer._laplace import find_modes

    n, c, d = zs.shape[:3]
    pad = np.concatenate([np.arange(n), np.zeros(_bucket(n) - n, int)])
    starts = np.array(zs[:, :, -1], np.float64)
    starts[..., 4] = np.abs(starts[..., 4])
    found = find_modes(
        post, _subset(stars, rows[pad]), c, config.map_steps, config.mode_barrier,
        starts=jnp.asarray(starts[pad], post.dtype),
    )  # fmt: skip
    z, valid = np.asarray(found.z, np.float64)[:n], np.asarray(found.valid)[:n]
    inv_scale = np.asarray(found.inv_scale, np.float64)[:n]
    group, mass = np.asarray(found.group)[:n], np.exp(np.asarray(found.log_weight, np.float64))[:n]
    k_keep = mode_mass.shape[1]
    for i, r in enumerate(rows):
        # each chain's mode: the valid mode nearest its last draw (Mahalanobis)
        dz = starts[i][:, None, :] - z[i][None, :, :]  # (chain, mode, 5)
        dist = np.sum(np.einsum("kab,ckb->cka", inv_scale[i], dz) ** 2, -1)
        near = np.argmin(np.where(valid[i][None, :], dist, np.inf), 1)
        g = group[i][near]  # (C,) the group of each chain
        g_mass = {k: mass[i][group[i] == k].sum() for k in np.unique(g)}
        weighty = [k for k, v in g_mass.items() if v >= config.min_mode_weight]
        if len(weighty) < 2:
            continue
        w_chain = np.array([g_mass[k] / np.sum(g == k) for k in g])
        w = np.repeat(w_chain / (w_chain.sum() * d), d)
        draws = phys[i : i + 1].reshape(1, c * d, 6)
        res.set_draws(rows[i : i + 1], draws, w[None], res.cols["method"][r])
        masses = np.sort(list(g_mass.values()))[::-1][:k_keep] / sum(g_mass.values())
        mode_mass[r] = 0.0
        mode_mass[r, : len(masses)] = masses
        nm[r] = len(weighty)


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
        keep_draws: if > 0, also return (N, keep_draws, 6) equal-weight posterior draws.
    Returns:
        dict of (N,) NumPy columns (see :func:`bayesdsm.infer.infer_catalog`), and the
        draws array when ``keep_draws``.
    """
    import jax
    import jax.numpy as jnp

    from bayesdsm.infer._laplace import find_modes

    n = len(ids)
    flags = [set(f) for f in flags] if flags is not None else [set() for _ in range(n)]
    if n == 0:  # an empty partition: the same columns, no rows
        res = _Result(0, keep_draws, config.seed)
        cols = dict(res.cols, flags=np.array([], object), converged=np.zeros(0, bool))
        return (cols, res.draws) if keep_draws else cols
    dtype = post.dtype
    m = _pad(n) if n < config.batch_size else int(np.ceil(n / 256) * 256)
    sel = np.concatenate([np.arange(n), np.zeros(m - n, int)])
    js = _cast(StarArrays(*(np.asarray(a)[sel] for a in stars)), dtype)
    keys = star_keys(config.seed, np.asarray(ids)[sel])
    modes = find_modes(post, js, config.n_starts, config.map_steps, config.mode_barrier)
    res = _Result(n, keep_draws, config.seed)
    standing, slot_mass, prop = _psis_tier(post, js, modes, keys, config, n, res)
    mode_mass = _group_mass(slot_mass, modes.group, n)
    nm = np.sum(mode_mass >= config.min_mode_weight, 1)
    todo, last = np.nonzero(~standing)[0], None
    for t, kind in enumerate(_mcmc_tiers(config)):
        if t > 0:
            # the convergence rule: a star failing the bar whose modes carry weight (≥ 2
            # with ≥ min_mode_weight) is flagged multimodal, its draws weighted by the
            # modes' mass; the rest go on to the next, longer tier
            todo = todo[nm[todo] < 2]
        if len(todo) == 0:
            break
        pool = None
        if kind == "nuts_more":  # the first NUTS run's chains of the stars still failing
            at = np.searchsorted(last[0], todo)
            pool = tuple(a[at] for a in last[1:])
        phys, ok, rhat, ess, ndiv, wc, zs, chain_mode = _run_mcmc(
            kind, post, js, prop, mode_mass, keys, config, todo, pool
        )
        last = (todo, phys, zs, ndiv)
        c, d = phys.shape[1], phys.shape[2]
        wd = np.repeat(wc[:, :, None] / d, d, axis=2).reshape(len(todo), c * d)
        res.set_draws(todo, phys.reshape(len(todo), c * d, 6), wd, kind)
        res.cols["rhat_max"][todo], res.cols["ess_min"][todo] = rhat, ess
        res.cols["n_divergent"][todo] = ndiv.sum(1)
        res.met[todo[ok]] = True
        if config.n_importance_mcmc > 0 and not ok.all():
            # importance sampling from a kernel mixture on the failed chains' draws
            bad = np.nonzero(~ok)[0]
            rows = todo[bad]
            saved, pd, w, khat, ess_is, slot = _psis_on_mcmc(
                post, js, prop, keys, config, rows, zs[bad], wd[bad], chain_mode[bad], 40 + t
            )
            rows, pd, w, slot = rows[saved], pd[saved], w[saved], slot[saved]
            res.set_draws(rows, pd, w, f"{kind}+psis")
            res.cols["rhat_max"][rows] = np.nan  # the reported draws are PSIS draws
            res.cols["ess_min"][rows], res.cols["pareto_k"][rows] = ess_is[saved], khat[saved]
            group = None if modes.group is None else np.asarray(modes.group)[rows]
            mass = _group_mass(_mode_mass(w, slot, mode_mass.shape[1]), group, len(rows))
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
        _chain_modes(post, js, config, todo, last[1][at], last[2][at], res, mode_mass, nm)
    for r in todo[nm[todo] < 2]:
        flags[r].add("not_converged")
    # --- per-star checks at the best mode
    cols = res.cols
    best = np.argmax(np.asarray(modes.log_weight), 1)
    zb = jnp.asarray(np.asarray(modes.z)[np.arange(m), best])
    chi2, nobs = jax.vmap(post.chi2)(zb, js)
    cols["chi2_dof"] = np.asarray(chi2, np.float64)[:n] / np.maximum(np.asarray(nobs)[:n] - 1, 1)
    theta_b = np.asarray(jax.vmap(post.theta)(zb), np.float64)[:n]
    if post.theta_prior is not None:
        lrho = np.asarray(jax.vmap(post.theta_prior)(jnp.asarray(theta_b, dtype)), np.float64)
        cols["validity"] = np.maximum(np.exp(lrho) - config.density_floor, 0.0)
    cols["n_modes"] = nm
    k_modes = mode_mass.shape[1]
    cols["mode_weight_2"] = np.sort(mode_mass, 1)[:, -2] if k_modes > 1 else np.zeros(n)
    conv = np.asarray(modes.converged)[:n]
    for r in range(n):
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
    return (cols, res.draws) if keep_draws else cols


def warm_up(post: Posterior, stars: StarArrays, config: InferConfig, sizes=(8, 32)):
    """Compile every tier's programs for later-tier subsets of each of ``sizes`` stars
    (buckets 8 × 4^k), by running all tiers on the first stars of ``stars`` with a bar no
    star can meet (k̂ ≤ −∞, ESS ≥ ∞, no mode weighty enough to stop at ``multimodal``).

    The rare tiers (longer HMC, NUTS, PSIS on their chains) otherwise compile inside
    the first batch that needs them: about 30 s on two cores, once per process (or once
    per machine with the persistent compilation cache, :mod:`bayesdsm.batch`). Nothing is
    returned: only JAX's caches change.
    """
    import dataclasses

    n = len(np.asarray(stars.mag))
    force = dataclasses.replace(config, pareto_k_max=-np.inf, ess_min=np.inf, min_mode_weight=2.0)
    for size in sizes:
        rows = np.arange(size) % n
        infer_arrays(post, StarArrays(*(np.asarray(a)[rows] for a in stars)), rows, force)
