"""Drivers: catalog → per-star arrays → tiers of samplers → summary table, streamed to disk.

The per-partition entry point :func:`infer_arrays` is a pure function of (posterior,
arrays, ids, config): each star's PRNG key is ``fold_in(fold_in(PRNGKey(seed), id_hi),
id_lo)`` of its 64-bit id (Gaia ``source_id`` or row index), and every step treats stars
independently, so a star's result does not depend on how stars are grouped (Dask
partitions, chunks, batches).

Tiers of ``method="auto"``: (1) multi-start MAP + Laplace per mode; (2) PSIS importance
sampling from a Student-t mixture over the modes, accepted where k̂ ≤ 0.7 and ESS ≥ 200;
(3) whitened fixed-length HMC (chains split over the modes) for the rest, accepted where
R̂ ≤ 1.01 and bulk/tail ESS ≥ 200 within every mode; (4) whitened NUTS for what is left;
(5) the convergence rule for stars still failing: if the multi-start MAP found ≥ 2
distinct modes the star is flagged ``multimodal`` (its draws weighted by the modes'
importance mass, Laplace evidence where PSIS fails); otherwise it gets one longer NUTS
run (``nuts_long_*``) and is flagged ``not_converged`` if that fails too. The
``converged`` column says whether the star met the bar.
"""

from __future__ import annotations

import numpy as np

from bayesdsm.infer._config import InferConfig
from bayesdsm.infer._model import PARAMS, Posterior, StarArrays

__all__ = ["build_posterior", "star_arrays", "star_keys", "infer_arrays", "FLAGS"]

#: Flag names (a comma-separated string per star in the table).
FLAGS = (
    "nonfinite_input",  # a non-finite or non-positive value was masked
    "prior_dominated",  # fewer than ``min_bands`` bands
    "outside_validity",  # training density at the MAP < validity_min
    "chi2",  # χ²/dof at the MAP > chi2_max
    "multimodal",  # ≥ 2 modes with ≥ min_mode_weight, or failed the bar with ≥ 2 modes
    "not_converged",  # one mode, and even the longer NUTS run failed the ESS/R̂ bar
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
            axes, dens, smooth=config.density_smooth, floor=config.density_floor, dtype=dtype
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


def _run_mcmc(kind, post, stars, modes, mode_mass, keys, config, idx):
    """Whitened HMC or NUTS for stars ``idx``; chains split over their top-2 modes.

    Returns (draws (n, C, D, 6) physical, ok (n,), rhat (n,), ess (n,), ndiv (n,), chain
    mode (n, C), mode weights (n, C))."""
    import jax
    import jax.numpy as jnp

    from bayesdsm.infer._sample import mcmc_diagnostics, whitened_hmc, whitened_nuts

    n, c = len(idx), config.n_chains
    m = _pad(n)
    sel = np.concatenate([idx, np.full(m - n, idx[0])])
    mass = mode_mass[sel]
    top = np.argsort(-mass, axis=1)[:, :2]
    two = mass[np.arange(m), top[:, 1]] >= config.min_mode_weight
    chain_mode = np.where(two[:, None] & (np.arange(c)[None] >= c // 2), top[:, 1:2], top[:, :1])
    zc = np.take_along_axis(np.asarray(modes.z)[sel], chain_mode[..., None], 1)
    sc = np.take_along_axis(np.asarray(modes.scale)[sel], chain_mode[..., None, None], 1)
    salt = {"hmc": 7, "nuts": 7, "nuts_long": 11}[kind]
    ks = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, salt), c))(
        jnp.asarray(keys[sel])
    )
    sub = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[sel], stars)
    dtype = post.dtype
    if kind == "hmc":
        zs, _, ndiv, _ = whitened_hmc(
            post,
            sub,
            jnp.asarray(zc, dtype),
            jnp.asarray(sc, dtype),
            ks,
            config.n_warmup,
            config.n_samples,
            config.n_leapfrog,
        )
    else:
        long = kind == "nuts_long"
        zs, _, ndiv, _ = whitened_nuts(
            post,
            sub,
            jnp.asarray(zc, dtype),
            jnp.asarray(sc, dtype),
            ks,
            config.nuts_long_warmup if long else config.nuts_warmup,
            config.nuts_long_samples if long else config.nuts_samples,
            config.nuts_long_max_tree_depth if long else config.nuts_max_tree_depth,
        )
    phys = np.asarray(jax.vmap(jax.vmap(jax.vmap(post.physical)))(zs), np.float64)[:n]
    chain_mode, two = chain_mode[:n], two[:n]
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
    w_mode = np.take_along_axis(mode_mass[idx], chain_mode, 1)
    w_chain = np.where(
        two[:, None], w_mode / np.maximum(w_mode.sum(1, keepdims=True), 1e-300), 1.0 / c
    )
    return phys, ok, rhat, ess, np.asarray(ndiv)[:n].sum(1), w_chain


def _summarise(out, i, vals, w):
    """Fill percentile columns of rows ``i`` from draws vals (n, S, 6), weights (n, S)."""
    q = _weighted_quantiles(vals, w, (0.16, 0.5, 0.84))
    for j, p in enumerate(PARAMS):
        for k, tag in enumerate(("p16", "p50", "p84")):
            out[f"{p}_{tag}"][i] = q[:, j, k]


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
    from bayesdsm.infer._sample import importance_sample, psis

    n = len(ids)
    flags = [set(f) for f in flags] if flags is not None else [set() for _ in range(n)]
    dtype = post.dtype
    m = _pad(n) if n < config.batch_size else int(np.ceil(n / 256) * 256)
    sel = np.concatenate([np.arange(n), np.zeros(m - n, int)])
    js = _cast(StarArrays(*(np.asarray(a)[sel] for a in stars)), dtype)
    keys = star_keys(config.seed, np.asarray(ids)[sel])
    modes = find_modes(post, js, config.n_starts, config.map_steps)
    # --- tier 2: PSIS from the Laplace mixture
    x, lw, assign = importance_sample(post, js, modes, jnp.asarray(keys), config.n_importance)
    slw, khat, ess_is = psis(lw)
    w = np.exp(slw)
    assign = np.asarray(assign)
    k_modes = modes.z.shape[1]
    mass = np.stack([np.sum(w * (assign == k), 1) for k in range(k_modes)], 1)
    lap_w = np.exp(np.asarray(modes.log_weight, np.float64))
    good_is = np.isfinite(khat) & (khat <= config.pareto_k_max)
    mode_mass = np.where(good_is[:, None], mass, lap_w)
    phys_is = np.asarray(jax.vmap(jax.vmap(post.physical))(x), np.float64)
    cols = {
        name: np.full(n, np.nan) for p in PARAMS for name in (f"{p}_p16", f"{p}_p50", f"{p}_p84")
    }
    cols.update(
        rhat_max=np.full(n, np.nan),
        ess_min=np.zeros(n),
        n_divergent=np.zeros(n, np.int64),
        pareto_k=khat[:n],
        n_modes=np.zeros(n, np.int64),
        mode_weight_2=np.zeros(n),
        chi2_dof=np.full(n, np.nan),
        validity=np.full(n, np.nan),
        method=np.array(["psis"] * n, dtype=object),
    )
    draws = np.zeros((n, keep_draws, 6)) if keep_draws else None
    rng = np.random.default_rng(config.seed)
    accept_is = good_is[:n] & (ess_is[:n] >= config.ess_min)
    if config.method in ("hmc", "nuts"):
        accept_is[:] = False
    if config.method == "laplace":
        accept_is[:] = True
    i = np.nonzero(accept_is)[0]
    _summarise(cols, i, phys_is[i], w[i])
    cols["ess_min"][i] = ess_is[i]
    if keep_draws and len(i):
        for r in i:
            draws[r] = phys_is[r, rng.choice(w.shape[1], keep_draws, p=w[r])]
    met = accept_is.copy()  # met the ESS/R̂ (or PSIS) bar
    if config.method == "laplace":
        met = good_is[:n] & (ess_is[:n] >= config.ess_min)
    n_distinct = np.asarray(modes.valid).sum(1)[:n]
    todo = np.nonzero(~accept_is)[0]
    for kind in ("hmc", "nuts", "nuts_long"):
        if len(todo) == 0 or (kind == "hmc" and config.method == "nuts"):
            continue
        if kind == "nuts_long":
            # the convergence rule: a star failing the bar after NUTS is either
            # multimodal (≥ 2 distinct modes found by the multi-start MAP; its NUTS draws
            # are weighted by the modes' importance / Laplace mass) or gets one longer NUTS
            # run, and is flagged ``not_converged`` if that fails too
            for r in todo[n_distinct[todo] >= 2]:
                flags[r].add("multimodal")
            todo = todo[n_distinct[todo] < 2]
            if not config.escalate:
                for r in todo:
                    flags[r].add("not_converged")
                todo = todo[:0]
            if len(todo) == 0:
                continue
        phys, ok, rhat, ess, ndiv, wc = _run_mcmc(
            kind, post, js, modes, mode_mass, keys, config, todo
        )
        # HMC results are kept only where they pass; NUTS results are kept for every star
        # (a failing star's NUTS summary stands unless the longer run replaces it)
        keep_all = kind != "hmc"
        fin = todo if keep_all else todo[ok]
        sub = np.arange(len(todo)) if keep_all else np.nonzero(ok)[0]
        c, d = phys.shape[1], phys.shape[2]
        wd = np.repeat(wc[sub][:, :, None] / d, d, axis=2).reshape(len(sub), c * d)
        _summarise(cols, fin, phys[sub].reshape(len(sub), c * d, 6), wd)
        cols["rhat_max"][fin], cols["ess_min"][fin] = rhat[sub], ess[sub]
        cols["n_divergent"][fin] = ndiv[sub]
        cols["method"][fin] = kind
        met[todo[ok]] = True
        if kind == "nuts_long":
            for r in todo[~ok]:
                flags[r].add("not_converged")
        if keep_draws:
            for j, (r, s) in enumerate(zip(fin, sub)):
                draws[r] = phys[s].reshape(c * d, 6)[rng.choice(c * d, keep_draws, p=wd[j])]
        todo = todo[~ok]
    # --- per-star checks at the best mode
    best = np.argmax(np.asarray(modes.log_weight), 1)
    zb = jnp.asarray(np.asarray(modes.z)[np.arange(m), best])
    chi2, nobs = jax.vmap(post.chi2)(zb, js)
    cols["chi2_dof"] = np.asarray(chi2, np.float64)[:n] / np.maximum(np.asarray(nobs)[:n] - 1, 1)
    theta_b = np.asarray(jax.vmap(post.theta)(zb), np.float64)[:n]
    if post.theta_prior is not None:
        lrho = np.asarray(jax.vmap(post.theta_prior)(jnp.asarray(theta_b, dtype)), np.float64)
        cols["validity"] = np.exp(lrho) - config.density_floor
    nm = np.sum(mode_mass[:n] >= config.min_mode_weight, 1)
    cols["n_modes"] = nm
    cols["mode_weight_2"] = np.sort(mode_mass[:n], 1)[:, -2] if k_modes > 1 else np.zeros(n)
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
    cols["converged"] = met
    return (cols, draws) if keep_draws else cols
