"""The population density of true labels θ by extreme deconvolution, and p(θ | θ̂) under it.

Regression calibration of θ̂ errors: a star's likelihood is evaluated at its posterior of
θ under a deconvolved population density, not at θ̂. The paper's method (the likelihood at
θ̂, C_θ propagated) is the limit of a flat density.

θ = (Teff [K], log g [dex], [Fe/H] [dex]); p(θ) = Σ_k π_k N(θ; μ_k, V_k) is fitted by
extreme deconvolution (XD; Bovy, Hogg & Roweis 2011, Ann. Appl. Stat. 5, 1657) to θ̂ with
noise N(θ̂; θ, C), C = C_θ. Each star's posterior is Σ_k w_k N(θ; m_k, S_k) with

    T_k = V_k + C,    w_k ∝ π_k N(θ̂; μ_k, T_k),
    m_k = μ_k + V_k T_k⁻¹ (θ̂ − μ_k),    S_k = V_k − V_k T_k⁻¹ V_k = V_k T_k⁻¹ C.

Our own vectorised XD EM: astroML's XDGMM loops over stars in Python (too slow).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from bayesdsm.errors import TrainingError

__all__ = [
    "ThetaDensity",
    "fit_theta_density",
    "posterior",
    "posterior_components",
    "posterior_moments",
]

_CHUNK = 2048  # stars per chunk: (6, K, chunk) arrays stay in cache
_IJ = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])  # a symmetric 3x3's 6 entries
_FULL = [[0, 3, 4], [3, 1, 5], [4, 5, 2]]  # and back


@dataclass(frozen=True)
class ThetaDensity:
    """Deconvolved population density of θ: a Gaussian mixture in θ's own units."""

    weights: np.ndarray  # (K,) summing to 1
    means: np.ndarray  # (K, 3)
    covs: np.ndarray  # (K, 3, 3)


def _check(theta, cov):
    """θ̂, C as float64 and the rows where both are finite."""
    theta, cov = np.asarray(theta, np.float64), np.asarray(cov, np.float64)
    if theta.ndim != 2 or theta.shape[1] != 3 or cov.shape != (len(theta), 3, 3):
        raise TrainingError(
            f"θ̂ must have shape (n, 3) and its covariance (n, 3, 3); got {theta.shape} and "
            f"{cov.shape}: pass (Teff, log g, [Fe/H]) per star with its 3x3 C_θ"
        )
    ok = np.isfinite(theta).all(1) & np.isfinite(cov).all((1, 2))
    return theta, cov, np.flatnonzero(ok)


def _terms(mu, V, x, C):
    """log N(x; μ_k, T_k) (K, n), T_k⁻¹'s entries _IJ (6, K, n), T_k⁻¹(x − μ_k) (3, K, n).

    T = V + C; T⁻¹ is the adjugate of T scaled to unit diagonal, over (K, n) arrays.
    """
    t = V[:, *_IJ].T[:, :, None] + np.ascontiguousarray(C[:, *_IJ].T)[:, None]
    g = 1.0 / np.sqrt(t[:3])
    b, c, e = t[3] * g[0] * g[1], t[4] * g[0] * g[2], t[5] * g[1] * g[2]
    cof = np.array([1 - e * e, 1 - c * c, 1 - b * b, c * e - b, b * e - c, b * c - e])
    det = cof[0] + b * cof[3] + c * cof[4]
    g *= 1.0 / np.sqrt(det)  # T⁻¹_ij = cof_ij g_i g_j
    y = (np.ascontiguousarray(x.T)[:, None] - mu.T[:, :, None]) * g
    z = np.array([sum(cof[_FULL[i][j]] * y[j] for j in range(3)) for i in range(3)])
    logdet = np.log(det * t[0] * t[1] * t[2] * (2 * np.pi) ** 3)  # of 2πT
    return -0.5 * ((y * z).sum(0) + logdet), cof * g[_IJ[0]] * g[_IJ[1]], z * g


def _posterior_chunk(density: ThetaDensity, x, C):
    """Normalised log w (n, K), m (n, K, 3) and S (n, K, 3, 3) for one chunk of stars."""
    mu, V = density.means, density.covs
    logp, inv, u = _terms(mu, V, x, C)
    logw = logp.T + np.log(density.weights)
    logw -= logsumexp(logw, axis=1, keepdims=True)
    m = mu[None] + np.einsum("kij,jkn->nki", V, u)
    S = V[None] @ inv[_FULL].transpose(3, 2, 0, 1) @ C[:, None]
    return logw, m, 0.5 * (S + np.swapaxes(S, -1, -2))


def _chunks(theta, cov, ok):
    """(rows, θ̂, C) per chunk of the rows ok."""
    for start in range(0, len(ok), _CHUNK):
        rows = ok[start : start + _CHUNK]
        yield rows, theta[rows], cov[rows]


def posterior(density: ThetaDensity, theta, cov, n_keep: int):
    """Each star's posterior p(θ | θ̂) = Σ_k w_k N(m_k, S_k), in one pass over the stars.

    Args:
        density: the population density of θ.
        theta: (n, 3) θ̂.
        cov: (n, 3, 3) C_θ.
        n_keep: components kept per star, 1 ≤ n_keep ≤ K.

    Returns:
        ((mean (n, 3), covariance (n, 3, 3)) of the whole mixture, moment-matched;
        (weights (n, n_keep) renormalised to 1, means (n, n_keep, 3), covs
        (n, n_keep, 3, 3)) of its n_keep largest components by weight, descending),
        float64; NaN where θ̂ or C is not finite.
    """
    theta, cov, ok = _check(theta, cov)
    K, n = len(density.weights), len(theta)
    if not 1 <= n_keep <= K:
        raise ValueError(f"n_keep must be in 1..{K} (the density's components); got {n_keep}")
    mean, var = np.full(theta.shape, np.nan), np.full(cov.shape, np.nan)
    w, m, S = (np.full((n, n_keep, 3, 3)[:d], np.nan) for d in (2, 3, 4))
    for rows, x, C in _chunks(theta, cov, ok):
        logw, mk, Sk = _posterior_chunk(density, x, C)
        wk = np.exp(logw)
        mean[rows] = np.einsum("nk,nki->ni", wk, mk)
        d = mk - mean[rows][:, None]
        var[rows] = np.einsum("nk,nkij->nij", wk, Sk + d[..., :, None] * d[..., None, :])
        top = np.argsort(-logw, axis=1, kind="stable")[:, :n_keep]
        wk = np.exp(np.take_along_axis(logw, top, 1))
        w[rows] = wk / wk.sum(1, keepdims=True)
        m[rows] = np.take_along_axis(mk, top[..., None], 1)
        S[rows] = np.take_along_axis(Sk, top[..., None, None], 1)
    return (mean, var), (w, m, S)


def posterior_components(density: ThetaDensity, theta, cov, n_keep: int):
    """The n_keep largest-weight components of each star's posterior (:func:`posterior`)."""
    return posterior(density, theta, cov, n_keep)[1]


def posterior_moments(density: ThetaDensity, theta, cov):
    """Mean (n, 3) and covariance (n, 3, 3) of each star's posterior, moment-matched
    (:func:`posterior`)."""
    return posterior(density, theta, cov, 1)[0]


def _em_step(w, mu, V, x, C):
    """One XD EM step (Bovy et al. Eq. 16-19): new (w, μ, V), mean logL per star of the old.

    With u = T⁻¹(x − μ): Σqb = qμ + VΣqu and ΣqB = qV − VΣqT⁻¹V.
    """
    K = len(w)
    qj, su, suu, sT, ll = np.zeros(K), np.zeros((3, K)), np.zeros((3, 3, K)), np.zeros((6, K)), 0
    logw = np.log(w + 1e-300)[:, None]
    for i in range(0, len(x), _CHUNK):
        logp, inv, u = _terms(mu, V, x[i : i + _CHUNK], C[i : i + _CHUNK])
        q = logp + logw
        top = q.max(0)
        q = np.exp(q - top)
        total = q.sum(0)
        ll += np.sum(np.log(total) + top)
        q /= total
        qj += q.sum(1)
        su += np.einsum("kn,ikn->ik", q, u)
        suu += np.einsum("ikn,jkn->ijk", q * u, u)
        sT += np.einsum("kn,pkn->pk", q, inv)
    q = np.maximum(qj, 1e-8 * len(x))[:, None]  # so a component with ~no stars stays put
    dm = np.einsum("kij,jk->ki", V, su) / q
    Vn = V + V @ (suu - sT[_FULL]).transpose(2, 0, 1) @ V / q[..., None]
    Vn -= dm[:, :, None] * dm[:, None, :]
    return qj / qj.sum(), mu + dm, _floor(Vn), ll / len(x)


def _floor(V, floor=1e-6):
    """Symmetric V (from its lower triangle) with eigenvalues ≥ floor: never singular."""
    lam, U = np.linalg.eigh(V)
    return (U * np.maximum(lam, floor)[..., None, :]) @ np.swapaxes(U, -1, -2)


def _xd(x, C, K: int, rng, max_iter: int, tol: float):
    """XD from k-means++ μ (of ≤ 10⁴ stars), V = cov(x) / K^(2/3), w = 1/K, until a step
    changes the mean logL per star by < tol: (w, μ, V, that logL before each step)."""
    sub = x[rng.choice(len(x), min(len(x), 10_000), replace=False)]
    mu = [sub[rng.integers(len(sub))]]
    d2 = ((sub - mu[0]) ** 2).sum(1) + 1e-12
    for _ in range(K - 1):
        mu.append(sub[rng.choice(len(sub), p=d2 / d2.sum())])
        d2 = np.minimum(d2, ((sub - mu[-1]) ** 2).sum(1) + 1e-12)
    V = _floor(np.tile(np.cov(x.T) / K ** (2 / 3), (K, 1, 1)))
    w, mu, history = np.full(K, 1 / K), np.array(mu), []
    for _ in range(max_iter):
        w, mu, V, ll = _em_step(w, mu, V, x, C)
        history.append(ll)
        if len(history) > 1 and abs(ll - history[-2]) < tol:
            break
    return w, mu, V, history


def fit_theta_density(
    theta,
    cov,
    *,
    n_components: int = 12,
    max_stars: int = 50_000,
    seed: int = 0,
    max_iter: int = 200,
    tol: float = 1e-5,
) -> ThetaDensity:
    """Fit the population density of θ to noisy θ̂ by extreme deconvolution.

    Uses a seeded random max_stars of the rows with finite θ̂ and C, θ standardised (median,
    1.4826 × MAD) for the fit. Defaults: benchmarks/bench_deconvolve.py.

    Args:
        theta: (n, 3) θ̂ = (Teff [K], log g, [Fe/H]).
        cov: (n, 3, 3) C_θ in the same units.
        n_components: K, Gaussian components of the mixture.
        max_stars: the most rows fitted.
        seed: seeds the subset and the k-means++ start.
        max_iter: the most EM steps.
        tol: stop when a step changes the mean log-likelihood per star by less.

    Raises:
        TrainingError: bad shapes, fewer than 10 × n_components finite rows, or a fit
            that ends with non-finite parameters.
    """
    theta, cov, ok = _check(theta, cov)
    if len(ok) < 10 * n_components:
        raise TrainingError(
            f"extreme deconvolution with {n_components} components needs at least "
            f"{10 * n_components} stars with finite θ̂ and C_θ; got {len(ok)} of {len(theta)}: "
            "use more stars or fewer components"
        )
    rng = np.random.default_rng(seed)
    if len(ok) > max_stars:
        ok = np.sort(rng.choice(ok, max_stars, replace=False))
    x, C = theta[ok], cov[ok]
    centre = np.median(x, axis=0)
    scale = 1.4826 * np.median(np.abs(x - centre), axis=0)
    scale = np.where(scale > 0, scale, np.std(x, axis=0))
    scale = np.where(scale > 0, scale, 1.0)
    outer = scale[:, None] * scale[None, :]
    w, mu, V, _ = _xd((x - centre) / scale, C / outer, n_components, rng, max_iter, tol)
    means, covs = centre + mu * scale, V * outer
    if not all(np.isfinite(a).all() for a in (w, means, covs)):
        raise TrainingError(
            "extreme deconvolution ended with non-finite parameters: use fewer components, "
            "or cut extreme θ̂ outliers first"
        )
    return ThetaDensity(w, means, covs)
