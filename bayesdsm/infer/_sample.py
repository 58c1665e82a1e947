"""Samplers for batches of stars, each star with its own step size and whitening.

* :func:`importance_sample`: draws from a Student-t mixture over a star's Laplace modes,
  log importance weights ln p − ln q (Pareto smoothing is done by :func:`psis`).
* :func:`refit_proposal`: moment-matched proposal from weighted draws (per mode), for a
  second and third importance-sampling round on the stars whose first round failed.
* :func:`whitened_hmc`: fixed-length HMC in Laplace-whitened coordinates x (z = z_k + S_k x),
  identity mass matrix, per-chain dual-averaging step size during warm-up and a jittered
  step size while sampling (a fixed trajectory length without jitter mixes badly).
* :func:`whitened_nuts`: NumPyro's functional NUTS (:func:`numpyro.infer.hmc.hmc`) in the
  same whitened coordinates, vmapped over (star, chain): the robust fallback.
* :func:`mcmc_diagnostics`: rank-normalised split R̂ and bulk/tail ESS (Vehtari et al.
  2021) for many stars at once, through :mod:`numpyro.diagnostics`.

All JAX functions are written for one (star, chain) and vmapped here, once.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln

from bayesdsm.infer._posterior import Posterior, StarArrays

__all__ = [
    "importance_sample",
    "psis",
    "refit_proposal",
    "kernel_proposal",
    "whitened_hmc",
    "whitened_nuts",
    "mcmc_diagnostics",
]


def _mixture_log_q(x, z, inv_scale, log_prop, log_assign, nu, group=8):
    """ln q(x) (n,) of the folded t_ν mixture (components z (K, D), inv_scale (K, D, D),
    ln weights log_prop (K,), −inf = unused) and each draw's most probable component
    under the weights log_assign (n,).

    Summed in the linear domain: each component's weight × |L_k| is scaled by the
    largest one up front, so the kernel (1 + u²/ν)^(−(ν+D)/2), an integer power for
    odd ν + D, needs no exp or log per draw and component; one log per draw remains (a draw
    lies within its own component, so the sum cannot underflow). A scan over groups of
    ``group`` components keeps memory at O(n · group), each step one (n, D) × (D, D·group)
    matmul (D = 5, or 6 with ξ); the mirror draw (e → −e) needs no second matmul: its
    whitened offset is u − 2 x_e L[:, e]. Measured (8 stars × 16,384 draws, 70
    components, this function alone): 2.3× faster than one component per scan step in
    the log domain; the whole round, with the inverse-CDF component draws:
    ``benchmarks/bench_kernel_round.py``.
    """
    d = x.shape[-1]
    power = -(nu + d) / 2.0
    k_all = z.shape[0]
    g = min(group, k_all)
    pad = -k_all % g
    if pad:  # unused components: identity scale, −inf weights
        eye = jnp.broadcast_to(jnp.eye(d, dtype=inv_scale.dtype), (pad, d, d))
        ninf = jnp.full((pad,), -jnp.inf, log_prop.dtype)
        z = jnp.concatenate([z, jnp.zeros((pad, d), z.dtype)])
        inv_scale = jnp.concatenate([inv_scale, eye])
        log_prop = jnp.concatenate([log_prop, ninf])
        log_assign = jnp.concatenate([log_assign, ninf.astype(log_assign.dtype)])
    n_grp = (k_all + pad) // g
    logdet = jnp.linalg.slogdet(inv_scale)[1]  # (K,)

    def scaled(lw):  # (weights × |L_k| / their max, ln max)
        lw = jnp.where(jnp.isfinite(lw), lw + logdet, -jnp.inf)
        top = jnp.max(lw)
        top = jnp.where(jnp.isfinite(top), top, 0.0)
        return jnp.exp(lw - top), top

    wq, top_q = scaled(log_prop)
    wa, _ = scaled(log_assign)
    centre = jnp.einsum("kjd,kd->kj", inv_scale, z)  # z_k whitened by its own L_k
    n = x.shape[0]

    def kern(u):
        s = 1.0 + jnp.sum(u * u, -1) / nu
        if float(power).is_integer():
            return jax.lax.integer_pow(s, int(power))
        return s**power

    def body(carry, comp):
        acc, best, best_i = carry
        ik, ck, wqk, wak, k0 = comp  # (g, D, D), (g, D), (g,), (g,), ()
        u = (x @ ik.transpose(2, 0, 1).reshape(d, g * d)).reshape(n, g, d) - ck[None]
        um = u - 2.0 * x[:, 4, None, None] * ik[None, :, :, 4]
        base = kern(u) + kern(um)  # (n, g)
        acc = acc + base @ wqk
        ta = base * wak[None]
        i = jnp.argmax(ta, axis=1)
        top = jnp.take_along_axis(ta, i[:, None], 1)[:, 0]
        take = top > best
        return (acc, jnp.where(take, top, best), jnp.where(take, k0 + i, best_i)), None

    init = (jnp.zeros((n,), x.dtype), jnp.full((n,), -1.0, x.dtype), jnp.zeros((n,), jnp.int32))
    shape = lambda a: a.reshape((n_grp, g) + a.shape[1:])  # noqa: E731
    comps = (shape(inv_scale), shape(centre), shape(wq), shape(wa),
             jnp.arange(n_grp, dtype=jnp.int32) * g)  # fmt: skip
    (acc, _, assign), _ = jax.lax.scan(body, init, comps)
    const = gammaln((nu + d) / 2.0) - gammaln(nu / 2.0) - 0.5 * d * jnp.log(nu * jnp.pi)
    return jnp.log(acc) + top_q + const, assign


def _is_one(post, star, z, inv_scale, scale, log_w, key, n, nu, mix):
    valid = jnp.isfinite(log_w)
    nvalid = jnp.sum(valid)
    w_prop = (1.0 - mix) * jnp.exp(jnp.where(valid, log_w, -jnp.inf)) + mix * valid / nvalid
    log_prop = jnp.log(w_prop)
    k1, k2, k3 = jax.random.split(key, 3)
    # inverse-CDF draws of the components: O(n log K), where jax.random.categorical's
    # Gumbel trick costs n × K random numbers (measured on a 70-component round of 8 stars
    # × 16,384 draws: 1.0 s → 0.57 s)
    cdf = jnp.cumsum(jnp.exp(log_prop - jnp.max(log_prop)))
    u = jax.random.uniform(k1, (n,), cdf.dtype) * cdf[-1]
    comp = jnp.minimum(jnp.searchsorted(cdf, u, side="right"), z.shape[0] - 1)
    comp = jnp.where(valid[comp], comp, jnp.argmax(log_prop))  # never an unused one
    y = jax.random.normal(k2, (n, z.shape[-1]), z.dtype)
    # χ²_ν as a sum of ν squared normals: exact for integer ν, and 2× faster on CPU than
    # jax.random.gamma's rejection loop under vmap (measured, 2048 × 1024 draws)
    g = jnp.sum(jax.random.normal(k3, (n, int(nu)), z.dtype) ** 2, axis=1)
    t = y * jnp.sqrt(nu / g)[:, None]
    x = z[comp] + jnp.einsum("nij,nj->ni", scale[comp], t)
    x = x.at[:, 4].set(jnp.abs(x[:, 4]))  # fold onto e ≥ 0 (the target is e-symmetric)
    # folded proposal density q(x) + q(mirror x); draws are assigned by the unmixed weights
    log_q, assign = _mixture_log_q(x, z, inv_scale, jnp.where(valid, log_prop, -jnp.inf), log_w, nu)
    logp, phys = jax.vmap(lambda zz: post.log_prob_and_physical(zz, star))(x)
    lw = jnp.where(jnp.isfinite(logp) & jnp.isfinite(log_q), logp - log_q, -jnp.inf)
    return x, lw, assign, phys


@partial(jax.jit, static_argnums=(4, 5))
def importance_sample(
    post: Posterior,
    stars: StarArrays,
    modes,
    keys,
    n: int = 1024,
    nu: float = 7.0,
    mix: float = 0.3,
):
    """Draws z (N, n, D), log weights (N, n), mode assignments (N, n) and physical
    parameters (N, n, P) per star (D = ``post.ndim``, P = ``len(post.params)``;
    ``post.log_prob_and_physical``: one emulator evaluation per draw gives both ln p and
    the physical values).

    Draws are folded onto e ≥ 0 and weighted with the folded proposal density. The
    proposal is a mixture over the valid modes of multivariate t_ν(z_k, Σ_k), weights
    (1 − mix) × Laplace weight + mix × uniform (so minor modes are explored too); ``nu``
    is an integer (static).
    """
    if float(nu) != int(nu) or nu < 1:
        raise ValueError(f"nu must be a positive integer (t degrees of freedom), got {nu}")
    f = lambda s, z, iv, sc, lw, k: _is_one(post, s, z, iv, sc, lw, k, n, nu, mix)  # noqa: E731
    return jax.vmap(f)(stars, modes.z, modes.inv_scale, modes.scale, modes.log_weight, keys)


@jax.jit
def physical_draws(post: Posterior, z):
    """:meth:`Posterior.physical` (..., P) over any leading axes of z (..., D), jitted."""
    phys = jax.vmap(post.physical)(z.reshape(-1, z.shape[-1]))
    return phys.reshape(z.shape[:-1] + phys.shape[-1:])


def _gpd_fit(x):
    """Generalised-Pareto (k̂, σ̂) per row of exceedances x (N, M) sorted ascending: the
    Zhang & Stephens (2009) profile estimator with the weakly informative k prior of
    Vehtari et al. (2024, JMLR 25, 72), vectorised over rows."""
    n, m = x.shape
    m_est = 30 + int(np.sqrt(m))
    quart = x[:, max(int(m / 4 + 0.5) - 1, 0)]
    grid = 1.0 - np.sqrt(m_est / (np.arange(1, m_est + 1) - 0.5))  # (m_est,)
    b = grid[None, :] / (3.0 * quart[:, None]) + 1.0 / x[:, -1:]  # (N, m_est)
    k = np.mean(np.log1p(-b[:, :, None] * x[:, None, :]), axis=2)
    ll = m * (np.log(-b / k) - k - 1.0)
    w = 1.0 / np.sum(np.exp(ll[:, None, :] - ll[:, :, None]), axis=2)
    b_post = np.sum(b * w, 1) / np.sum(w, 1)
    k_post = np.mean(np.log1p(-b_post[:, None] * x), axis=1)
    sigma = -k_post / b_post
    return (m * k_post + 10 * 0.5) / (m + 10), sigma


def psis(log_weights):
    """Pareto-smoothed importance weights and k̂ per star (Vehtari et al. 2024), host-side
    and vectorised over stars.

    The largest M = min(S/5, 3√S) weights are replaced by the expected order statistics
    of a generalised Pareto fit to them (and capped at the largest raw weight).

    Args:
        log_weights: (N, S) raw log weights (−inf allowed).
    Returns:
        (lw (N, S) normalised log weights, k̂ (N,), ess (N,) = 1/Σ w²).
    """
    lw = np.asarray(log_weights, np.float64)
    lw = np.where(np.isfinite(lw), lw, -np.inf)
    top = np.max(lw, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    w = np.exp(lw - top)  # max 1
    n, s = w.shape
    m = int(min(np.ceil(0.2 * s), np.ceil(3 * np.sqrt(s))))
    order = np.argsort(w, axis=1)
    tail_idx = order[:, -m:]
    cut = np.take_along_axis(w, order[:, -m - 1 : -m], 1)  # (N, 1)
    x = np.take_along_axis(w, tail_idx, 1) - cut
    with np.errstate(all="ignore"):
        ok = np.all(x > 0, axis=1) & np.isfinite(cut[:, 0])
        xs = np.where(ok[:, None], x, 1.0 + np.arange(m)[None])
        k, sigma = _gpd_fit(xs)
        p = (np.arange(1, m + 1) - 0.5) / m
        q = sigma[:, None] / k[:, None] * ((1.0 - p[None]) ** (-k[:, None]) - 1.0)
        q = np.where(np.abs(k[:, None]) < 1e-8, -sigma[:, None] * np.log1p(-p[None]), q)
        smooth = np.minimum(cut + q, 1.0)
    flat = np.all(x <= 0, axis=1)  # equal weights: a perfect proposal
    k = np.where(ok, k, np.where(flat, -np.inf, np.inf))
    ws = w.copy()
    np.put_along_axis(ws, tail_idx, np.where(ok[:, None] & np.isfinite(smooth), smooth, x + cut), 1)
    ws = ws / np.maximum(ws.sum(axis=1, keepdims=True), 1e-300)
    return np.log(np.maximum(ws, 1e-300)), k, 1.0 / np.sum(ws**2, axis=1)


def refit_proposal(modes, x, log_w, assign, *, inflate=1.5, min_ess=20.0, ridge=0.02):
    """Moment-matched proposal components from importance-weighted draws, host-side.

    Each valid mode k gets the weighted mean and covariance of the draws assigned to it
    (``inflate`` × covariance + ``ridge`` × its Laplace covariance), and the weighted mass
    of those draws as its proposal weight. A mode whose draws have an effective count
    below ``min_ess`` keeps its Laplace component. The draws are folded (e ≥ 0): a mode
    whose Laplace component reaches e = 0 (|e_k| < 2 σ_e) is refitted on the draws and
    their mirror images, so its moments describe the unfolded, e-symmetric target.

    Args:
        modes: :class:`~bayesdsm.infer.LaplaceModes` (N stars, K slots).
        x: (N, S, D) folded draws; log_w: (N, S) normalised log weights (from :func:`psis`);
        assign: (N, S) mode slot of each draw.
    Returns:
        :class:`~bayesdsm.infer.LaplaceModes` (NumPy arrays) with the refitted ``z``,
        ``scale``, ``inv_scale`` and ``log_weight``; other fields unchanged.
    """
    x = np.asarray(x, np.float64)
    w = np.exp(np.asarray(log_w, np.float64))
    assign = np.asarray(assign)
    mz, msc = np.asarray(modes.z, np.float64), np.asarray(modes.scale, np.float64)
    valid = np.asarray(modes.valid)
    lap_cov = msc @ np.swapaxes(msc, -1, -2)
    z, sc, lw_new = mz.copy(), msc.copy(), np.full(valid.shape, -np.inf)
    d = x.shape[-1]
    mirror = x * np.where(np.arange(d) == 4, -1.0, 1.0)  # e → −e
    for k in range(mz.shape[1]):
        wk = w * (assign == k)
        mass = wk.sum(1)
        ess = mass**2 / np.maximum(np.sum(wk**2, 1), 1e-300)
        touch = np.abs(mz[:, k, 4]) < 2.0 * np.sqrt(lap_cov[:, k, 4, 4])
        xs = np.concatenate([x, np.where(touch[:, None, None], mirror, x)], 1)
        ws = np.concatenate([wk, wk], 1) / (2.0 * np.maximum(mass, 1e-300)[:, None])
        mean = np.einsum("ns,nsd->nd", ws, xs)
        dx = xs - mean[:, None]
        cov = inflate * np.einsum("ns,nsd,nse->nde", ws, dx, dx) + ridge * lap_cov[:, k]
        use = valid[:, k] & (ess >= min_ess) & np.all(np.isfinite(cov), (1, 2))
        chol = np.linalg.cholesky(np.where(use[:, None, None], cov, np.eye(d)))
        z[:, k] = np.where(use[:, None], mean, mz[:, k])
        sc[:, k] = np.where(use[:, None, None], chol, msc[:, k])
        lw_new[:, k] = np.where(valid[:, k], np.log(np.maximum(mass, 1e-12)), -np.inf)
    lw_new -= np.logaddexp.reduce(lw_new, axis=1, keepdims=True)
    dtype = np.asarray(modes.z).dtype
    return modes._replace(
        z=z.astype(dtype),
        scale=sc.astype(dtype),
        inv_scale=np.linalg.inv(sc).astype(dtype),
        log_weight=lw_new.astype(dtype),
    )


def kernel_proposal(
    modes, x, log_w, assign, *, n_kernels=128, defensive=0.2, inflate=1.5, widen=2.0
):
    """Adaptive importance-sampling proposal for posteriors that no single t per mode fits
    (curved ridges, walls, E near 0), host-side: a defensive kernel mixture.

    ``n_kernels`` components t_ν(x_j, h² Σ_k(j)) sit at draws x_j resampled ∝ w
    (systematic resampling with a fixed offset, so a star's proposal depends on its own
    draws only), where Σ_k is the refitted covariance of the draw's mode (see
    :func:`refit_proposal`) and h = (4 / (d + 2))^(1/(d+4)) J^(−1/(d+4)) is Silverman's
    bandwidth for d dimensions (5, or 6 with ξ) and J kernels. The moment-matched components of
    :func:`refit_proposal`, widened ``widen`` times, keep total weight ``defensive``, so
    the proposal's tails are heavier than the target's (Hesterberg 1995).

    Args: as :func:`refit_proposal`.
    Returns:
        (proposal :class:`~bayesdsm.infer.LaplaceModes` with K + n_kernels components,
        (N, K + n_kernels) int mode slot of each component, refitted K-slot modes).
    """
    base = refit_proposal(modes, x, log_w, assign, inflate=inflate)
    w = np.exp(np.asarray(log_w, np.float64))
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-300)
    n_stars, k_modes = np.asarray(base.valid).shape
    cw = np.cumsum(w, 1)
    u = (np.arange(n_kernels) + 0.5) / n_kernels
    pick = np.stack([np.searchsorted(c, u * c[-1]) for c in cw]).clip(0, w.shape[1] - 1)
    slot = np.take_along_axis(np.asarray(assign), pick, 1)  # (N, J)
    d = np.asarray(x).shape[-1]
    h = (4.0 / (d + 2)) ** (1.0 / (d + 4)) * n_kernels ** (-1.0 / (d + 4))
    bscale = np.asarray(base.scale, np.float64) / np.sqrt(inflate)
    rows = np.arange(n_stars)[:, None]
    ksc = h * bscale[rows, slot]  # (N, J, D, D)
    dtype = np.asarray(modes.z).dtype
    lw_base = np.asarray(base.log_weight, np.float64) + np.log(defensive)
    lw_kern = np.full((n_stars, n_kernels), np.log((1.0 - defensive) / n_kernels))
    sc = np.concatenate([widen * np.asarray(base.scale, np.float64), ksc], 1)
    prop = base._replace(
        z=np.concatenate([np.asarray(base.z), np.asarray(x)[rows, pick]], 1).astype(dtype),
        scale=sc.astype(dtype),
        inv_scale=np.linalg.inv(sc).astype(dtype),
        log_weight=np.concatenate([lw_base, lw_kern], 1).astype(dtype),
        logp=None,
        valid=np.concatenate([np.asarray(base.valid), np.ones((n_stars, n_kernels), bool)], 1),
        group=None,
    )
    comp_slot = np.concatenate([np.broadcast_to(np.arange(k_modes), (n_stars, k_modes)), slot], 1)
    return prop, comp_slot, base


def _leapfrog(logp_grad, x, p, g, eps, n):
    def body(_, c):
        x, p, g, _lp = c
        p = p + 0.5 * eps * g
        x = x + eps * p
        lp, g = logp_grad(x)
        p = p + 0.5 * eps * g
        return x, p, g, lp

    return jax.lax.fori_loop(0, n, body, (x, p, g, jnp.zeros((), x.dtype)))


def _hmc_chain(post, star, zc, scale, key, n_warmup, n_samples, n_leap, eps_max, target):
    dtype = zc.dtype
    logp = lambda x: post(zc + scale @ x, star)  # noqa: E731
    logp_grad = jax.value_and_grad(logp)

    def transition(state, key, eps):
        x, lp, g = state
        k1, k2 = jax.random.split(key)
        p = jax.random.normal(k1, zc.shape, dtype)
        xn, pn, gn, lpn = _leapfrog(logp_grad, x, p, g, eps, n_leap)
        h0 = -lp + 0.5 * jnp.sum(p**2)
        h1 = -lpn + 0.5 * jnp.sum(pn**2)
        dh = jnp.where(jnp.isfinite(h1), h1 - h0, jnp.inf)
        acc = jnp.minimum(1.0, jnp.exp(-dh))
        take = jax.random.uniform(k2, (), dtype) < acc
        new = jax.tree_util.tree_map(lambda a, b: jnp.where(take, a, b), (xn, lpn, gn), state)
        return new, acc, dh > 1000.0

    k0, kw, ks = jax.random.split(key, 3)
    x0 = 0.3 * jax.random.normal(k0, zc.shape, dtype)
    lp0, g0 = logp_grad(x0)
    state = (x0, lp0, g0)
    t0, gamma, kappa = 10.0, 0.05, 0.75
    mu = jnp.log(10.0 * eps_max)

    def warm(carry, key):
        state, log_eps, hbar, log_eps_bar, t = carry
        kj, kt = jax.random.split(key)
        eps = jnp.exp(log_eps) * jax.random.uniform(kj, (), dtype, 0.7, 1.3)
        state, acc, _ = transition(state, kt, eps)
        t = t + 1.0
        hbar = (1 - 1 / (t + t0)) * hbar + (target - acc) / (t + t0)
        log_eps = jnp.minimum(mu - jnp.sqrt(t) / gamma * hbar, jnp.log(eps_max))
        eta = t**-kappa
        log_eps_bar = eta * log_eps + (1 - eta) * log_eps_bar
        return (state, log_eps, hbar, log_eps_bar, t), None

    z0 = jnp.zeros((), dtype)
    init = (state, jnp.log(jnp.asarray(eps_max, dtype)), z0, z0, z0)
    (state, _, _, log_eps_bar, _), _ = jax.lax.scan(warm, init, jax.random.split(kw, n_warmup))
    eps = jnp.exp(log_eps_bar)

    def sample(state, key):
        kj, kt = jax.random.split(key)
        state, acc, div = transition(state, kt, eps * jax.random.uniform(kj, (), dtype, 0.6, 1.4))
        return state, (zc + scale @ state[0], acc, div)

    _, (zs, acc, div) = jax.lax.scan(sample, state, jax.random.split(ks, n_samples))
    return zs, jnp.mean(acc), jnp.sum(div), eps


@partial(jax.jit, static_argnums=(5, 6, 7))
def whitened_hmc(
    post: Posterior,
    stars: StarArrays,
    zc,
    scale,
    keys,
    n_warmup: int,
    n_samples: int,
    n_leapfrog: int,
    eps_max: float = 0.45,
    target: float = 0.8,
):
    """Fixed-length whitened HMC for (N stars × C chains).

    Args:
        stars: N stars; zc (N, C, D) and scale (N, C, D, D): each chain's mode and
            whitening (D = :attr:`Posterior.ndim`); keys (N, C) PRNG keys.
    Returns:
        z draws (N, C, n_samples, D), mean acceptance (N, C), divergences (N, C),
        step size (N, C).
    """

    def per_chain(star, zc, sc, key):
        return _hmc_chain(post, star, zc, sc, key, n_warmup, n_samples, n_leapfrog, eps_max, target)

    per_star = lambda s, z, sc, k: jax.vmap(lambda a, b, c: per_chain(s, a, b, c))(z, sc, k)  # noqa: E731
    return jax.vmap(per_star)(stars, zc, scale, keys)


@partial(jax.jit, static_argnums=(5, 6, 7))
def whitened_nuts(
    post: Posterior,
    stars: StarArrays,
    zc,
    scale,
    keys,
    n_warmup: int,
    n_samples: int,
    max_tree_depth: int = 6,
):
    """NumPyro functional NUTS in whitened coordinates for (N stars × C chains), with
    step-size and diagonal mass adaptation. Same shapes as :func:`whitened_hmc`; the
    last output is the number of leapfrog steps (N, C)."""
    from numpyro.infer.hmc import hmc

    def gen(star, zc, sc):
        return lambda x: -post(zc + sc @ x, star)

    init_kernel, sample_kernel = hmc(potential_fn_gen=gen, algo="NUTS")

    def per_chain(star, zc, sc, key):
        k0, k1 = jax.random.split(key)
        x0 = 0.3 * jax.random.normal(k0, zc.shape, zc.dtype)
        state = init_kernel(
            x0,
            n_warmup,
            model_args=(star, zc, sc),
            rng_key=k1,
            max_tree_depth=max_tree_depth,
            target_accept_prob=0.85,
        )

        def body(state, _):
            state = sample_kernel(state, model_args=(star, zc, sc))
            return state, (zc + sc @ state.z, state.diverging, state.num_steps)

        _, (zs, div, nsteps) = jax.lax.scan(body, state, None, length=n_warmup + n_samples)
        return (
            zs[n_warmup:],
            jnp.mean(jnp.ones(()) * 1.0),
            jnp.sum(div[n_warmup:]),
            jnp.sum(nsteps),
        )

    per_star = lambda s, z, sc, k: jax.vmap(lambda a, b, c: per_chain(s, a, b, c))(z, sc, k)  # noqa: E731
    return jax.vmap(per_star)(stars, zc, scale, keys)


def _rank_normal(x):
    from scipy.special import ndtri
    from scipy.stats import rankdata

    c, d = x.shape[:2]
    flat = x.reshape(c * d, -1)
    r = rankdata(flat, axis=0, method="average")
    return ndtri((r - 0.375) / (c * d + 0.25)).reshape(x.shape)


def mcmc_diagnostics(draws):
    """Rank-normalised split R̂ and bulk/tail ESS (Vehtari et al. 2021), vectorised.

    Args:
        draws: (C, D, ...) chains × draws × anything (e.g. stars, parameters).
    Returns:
        dict of (...) arrays: ``rhat`` (max of bulk and folded split R̂), ``ess_bulk``,
        ``ess_tail`` (min over the 5% and 95% quantile indicators).
    """
    import warnings

    from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

    x = np.asarray(draws, np.float64)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        z = _rank_normal(x)
        folded = _rank_normal(np.abs(x - np.median(x, axis=(0, 1), keepdims=True)))
        rhat = np.maximum(split_gelman_rubin(z), split_gelman_rubin(folded))
        ess_bulk = effective_sample_size(z)
        q05, q95 = np.quantile(x, [0.05, 0.95], axis=(0, 1), keepdims=True)
        tails = []
        for ind in (x <= q05, x >= q95):
            e = effective_sample_size(ind.astype(np.float64) + 1e-9 * z)
            tails.append(e)
        ess_tail = np.minimum(*tails)
    bad = ~np.isfinite(rhat)
    rhat = np.where(bad, np.inf, rhat)
    return {
        "rhat": rhat,
        "ess_bulk": np.where(np.isfinite(ess_bulk), ess_bulk, 0.0),
        "ess_tail": np.where(np.isfinite(ess_tail), ess_tail, 0.0),
    }
