"""Per-star magnitude covariance as diagonal plus low rank, and its Woodbury algebra.

Green et al. (2021), Eq. 4-6 and 11-14, in magnitude space::

    C_m = J C_θ Jᵀ + σ_E² R Rᵀ + σ_μ² 𝟙𝟙ᵀ + diag(σ_m²)
        = D + U S Uᵀ,

with D = diag(σ_m²) over observed bands, U = [J L_θ, R, 𝟙] (n_bands × 5, L_θ the Cholesky
factor of C_θ) and S = diag(1, 1, 1, σ_E², σ_μ²). We store the *precisions*
``dinv = mask / σ_m²`` (0 for an unobserved band: exactly an infinite variance) and
``sinv = diag(S⁻¹)`` (0 for the parallax direction of a star without a usable parallax:
exactly dropping c₀ and modelling only the colours, since the colours are the
projection orthogonal to 𝟙). With the capacitance K = S⁻¹ + Uᵀ D⁻¹ U (5 × 5),

    C⁻¹ = D⁻¹ - D⁻¹ U K⁻¹ Uᵀ D⁻¹         (Woodbury identity)
    log|C| = log|D| + log|S| + log|K|     (matrix determinant lemma)

Everything here is for ONE star; vmap it in the caller.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

__all__ = [
    "LowRankCov",
    "lowrank_cov",
    "capacitance",
    "small_matmul",
    "cholesky_small",
    "solve_lower_small",
    "quadform",
    "whiten",
    "dense",
    "logdet",
]


class LowRankCov(NamedTuple):
    """C = D + U S Uᵀ for one star, stored as precisions.

    Attributes:
        dinv: (n_bands,) mask / σ_m², 0 for unobserved bands.
        U: (n_bands, k) low-rank directions.
        sinv: (k,) precisions of the low-rank coefficients; 0 means infinite variance.
    """

    dinv: jnp.ndarray
    U: jnp.ndarray
    sinv: jnp.ndarray


def lowrank_cov(jac, theta_chol, R, ebv_err, sigma_mu, has_parallax, mag_err, mask):
    """Build the low-rank covariance of one star (Eq. 4 in magnitude space).

    Args:
        jac: (n_bands, 3) J = ∂(M + Ê R)/∂θ at θ̂ (zeros in training iteration 0).
        theta_chol: (3, 3) lower Cholesky factor of C_θ.
        R: (n_bands,) extinction vector (zeros in training iteration 0).
        ebv_err: σ_E (mag).
        sigma_mu: (5 / ln 10) σ_ϖ / ϖ̂ (mag); ignored without a parallax.
        has_parallax: 1.0 where the parallax is used, else 0.0.
        mag_err: (n_bands,) σ_m; any positive value where unobserved.
        mask: (n_bands,) 1.0 where observed, else 0.0.
    """
    dtype = mag_err.dtype
    ones = jnp.ones_like(R)
    U = jnp.concatenate([small_matmul(jac, theta_chol), R[:, None], ones[:, None]], axis=1)
    safe_err = jnp.where(mask > 0, mag_err, 1.0)
    dinv = mask / safe_err**2
    safe_mu = jnp.where(has_parallax > 0, sigma_mu, 1.0)
    sinv = jnp.stack(
        [
            jnp.ones((), dtype),
            jnp.ones((), dtype),
            jnp.ones((), dtype),
            1.0 / ebv_err**2,
            has_parallax / safe_mu**2,
        ]
    ).astype(dtype)
    return LowRankCov(dinv, U, sinv)


def small_matmul(A, B):
    """A @ B for small matrices as a broadcast product and a sum.

    Under ``vmap`` a tiny batched ``dot_general`` is slow on CPU; element-wise products
    and a reduction vectorise across stars instead.
    """
    return jnp.sum(A[:, :, None] * B[None, :, :], axis=1)


def cholesky_small(A):
    """Lower Cholesky factor of a small SPD matrix, unrolled over its static size.

    For the k × k (k = 5) capacitance this is a few dozen scalar operations; under
    ``vmap`` they become element-wise operations across stars, which is several times
    faster on CPU than a batched LAPACK call per 5 × 5 matrix.
    """
    k = A.shape[-1]
    L = [[None] * k for _ in range(k)]
    for j in range(k):
        d = A[j, j] - sum((L[j][m] ** 2 for m in range(j)), jnp.zeros((), A.dtype))
        L[j][j] = jnp.sqrt(d)
        for i in range(j + 1, k):
            s = A[i, j] - sum((L[i][m] * L[j][m] for m in range(j)), jnp.zeros((), A.dtype))
            L[i][j] = s / L[j][j]
    zero = jnp.zeros((), A.dtype)
    return jnp.stack([jnp.stack([L[i][j] if j <= i else zero for j in range(k)]) for i in range(k)])


def solve_lower_small(L, B):
    """L⁻¹ B by forward substitution unrolled over the static size k of L; B is (k, m)."""
    k = L.shape[0]
    rows = []
    for i in range(k):
        s = B[i]
        for m in range(i):
            s = s - L[i, m] * rows[m]
        rows.append(s / L[i, i])
    return jnp.stack(rows)


def capacitance(cov: LowRankCov):
    """K = S⁻¹ + Uᵀ D⁻¹ U, shape (k, k)."""
    DU = cov.U * cov.dinv[:, None]
    K = jnp.diag(cov.sinv) + small_matmul(DU.T, cov.U)
    # A direction with infinite prior variance and no observed band (e.g. the 𝟙 direction
    # of a star with nothing observed) has a zero row and column in K; a unit diagonal
    # there leaves every result unchanged (Uᵀ D⁻¹ is zero in that row) and keeps the
    # Cholesky factor finite, so such a star gives χ² = 0 instead of NaN.
    empty = jnp.diag(K) <= 0
    return K + jnp.diag(jnp.where(empty, jnp.ones_like(cov.sinv), jnp.zeros_like(cov.sinv)))


def quadform(cov: LowRankCov, X):
    """Xᵀ C⁻¹ X for X of shape (n_bands, m), by the Woodbury identity. Returns (m, m).

    Rows of X for unobserved bands are ignored (their precision is 0).
    """
    L = cholesky_small(capacitance(cov))
    DX = cov.dinv[:, None] * X
    V = solve_lower_small(L, small_matmul(cov.U.T, DX))
    return small_matmul(X.T, DX) - small_matmul(V.T, V)


def whiten(cov: LowRankCov):
    """W (n_bands, k) with C⁻¹ = diag(dinv) - W Wᵀ, so rᵀC⁻¹r = Σ dinv r² - |Wᵀ r|².

    Training freezes the covariance for an iteration, so W is computed once per
    iteration and a step costs one (n_bands × k) product per star.
    """
    L = cholesky_small(capacitance(cov))
    return solve_lower_small(L, (cov.U * cov.dinv[:, None]).T).T


def logdet(cov: LowRankCov):
    """log|C| restricted to the observed bands and finite-variance directions.

    Infinite-variance directions (sinv = 0) and unobserved bands are dropped, which
    gives the log-determinant of the covariance of the modelled components up to a
    constant that does not depend on the model.
    """
    obs = cov.dinv > 0
    logd = -jnp.sum(jnp.where(obs, jnp.log(jnp.where(obs, cov.dinv, 1.0)), 0.0))
    finite = cov.sinv > 0
    logs = -jnp.sum(jnp.where(finite, jnp.log(jnp.where(finite, cov.sinv, 1.0)), 0.0))
    L = cholesky_small(capacitance(cov))
    return logd + logs + 2.0 * jnp.sum(jnp.log(jnp.diag(L)))


def dense(cov: LowRankCov, big: float = 1e6):
    """The dense (n_bands × n_bands) covariance, for reference and tests only.

    Infinite variances are replaced by ``big``; do not use this in float32.
    """
    var_d = jnp.where(cov.dinv > 0, 1.0 / jnp.where(cov.dinv > 0, cov.dinv, 1.0), big)
    s = jnp.where(cov.sinv > 0, 1.0 / jnp.where(cov.sinv > 0, cov.sinv, 1.0), big)
    return jnp.diag(var_d) + (cov.U * s[None, :]) @ cov.U.T
