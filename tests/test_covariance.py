"""Woodbury algebra of the diagonal + low-rank covariance against dense NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from bayesdsm.covariance import (
    LowRankCov,
    cholesky_small,
    logdet,
    quadform,
    small_matmul,
    solve_lower_small,
    whiten,
)


def random_cov(rng, n=13, k=5, n_masked=3, infinite=(4,)):
    mask = np.ones(n)
    mask[rng.choice(np.arange(1, n), n_masked, replace=False)] = 0.0
    err = rng.uniform(0.02, 0.2, n)
    U = rng.normal(size=(n, k)) * 0.3
    sinv = rng.uniform(0.5, 4.0, k)
    sinv[list(infinite)] = 0.0
    return LowRankCov(mask / err**2, U, sinv), mask, err


def reference_precision(cov: LowRankCov, mask):
    """Exact limit of C⁻¹ on the observed bands when some directions have infinite variance.

    With C = C_f + V diag(∞) Vᵀ, the limit is Q = C_f⁻¹ - C_f⁻¹ V (Vᵀ C_f⁻¹ V)⁻¹ Vᵀ C_f⁻¹
    (the residual is profiled over the infinite directions).
    """
    obs = mask > 0
    U = np.asarray(cov.U)[obs]
    sinv = np.asarray(cov.sinv)
    fin = sinv > 0
    Cf = np.diag(1.0 / np.asarray(cov.dinv)[obs]) + (U[:, fin] / sinv[fin]) @ U[:, fin].T
    P = np.linalg.inv(Cf)
    V = U[:, ~fin]
    if V.shape[1]:
        PV = P @ V
        P = P - PV @ np.linalg.solve(V.T @ PV, PV.T)
    return P, obs


@pytest.mark.parametrize("infinite", [(), (4,), (3, 4)])
def test_quadform_matches_dense(x64, infinite):
    rng = np.random.default_rng(len(infinite))
    for _ in range(5):
        cov, mask, _ = random_cov(rng, infinite=infinite)
        X = rng.normal(size=(13, 3))
        P, obs = reference_precision(cov, mask)
        want = X[obs].T @ P @ X[obs]
        got = quadform(jax.tree_util.tree_map(jnp.asarray, cov), jnp.asarray(X))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * np.abs(want).max())


def test_whiten_reproduces_precision(x64):
    rng = np.random.default_rng(11)
    cov, mask, _ = random_cov(rng)
    W = np.asarray(whiten(jax.tree_util.tree_map(jnp.asarray, cov)))
    P, obs = reference_precision(cov, mask)
    got = (np.diag(np.asarray(cov.dinv)) - W @ W.T)[np.ix_(obs, obs)]
    np.testing.assert_allclose(got, P, rtol=1e-10, atol=1e-10 * np.abs(P).max())


def test_logdet_matches_dense(x64):
    rng = np.random.default_rng(5)
    cov, mask, _ = random_cov(rng, infinite=())
    obs = mask > 0
    U = np.asarray(cov.U)[obs]
    C = np.diag(1.0 / np.asarray(cov.dinv)[obs]) + (U / np.asarray(cov.sinv)) @ U.T
    want = np.linalg.slogdet(C)[1]
    got = float(logdet(jax.tree_util.tree_map(jnp.asarray, cov)))
    assert got == pytest.approx(want, rel=1e-12)


def test_small_helpers_match_lapack(x64):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(5, 5))
    S = A @ A.T + 5 * np.eye(5)
    L = np.asarray(cholesky_small(jnp.asarray(S)))
    np.testing.assert_allclose(L, np.linalg.cholesky(S), rtol=1e-13)
    B = rng.normal(size=(5, 7))
    np.testing.assert_allclose(
        solve_lower_small(jnp.asarray(L), jnp.asarray(B)),
        scipy.linalg.solve_triangular(L, B, lower=True),
        rtol=1e-12,
    )
    np.testing.assert_allclose(small_matmul(jnp.asarray(A), jnp.asarray(B)), A @ B, rtol=1e-13)


def test_vmapped_equals_single(x64):
    rng = np.random.default_rng(9)
    covs = [random_cov(rng)[0] for _ in range(6)]
    stacked = jax.tree_util.tree_map(lambda *a: jnp.asarray(np.stack(a)), *covs)
    X = jnp.asarray(rng.normal(size=(6, 13, 1)))
    batched = jax.vmap(quadform)(stacked, X)
    for i, c in enumerate(covs):
        one = quadform(jax.tree_util.tree_map(jnp.asarray, c), X[i])
        np.testing.assert_allclose(batched[i], one, rtol=1e-13)
