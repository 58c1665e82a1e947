"""Extreme deconvolution of θ̂ and the per-star posterior p(θ | θ̂): against slow per-star
NumPy loops (posterior; one EM step of Bovy et al. 2011), the flat-density limit, a never
decreasing EM likelihood, a collapsing component, stock astroML's XDGMM, recovery of an
injected population, the regression-calibration property, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from bayesdsm.deconvolve import (
    ThetaDensity,
    _em_step,
    _xd,
    fit_theta_density,
    posterior_components,
    posterior_moments,
)
from bayesdsm.errors import TrainingError


def random_spd(rng, n, scales):
    """(n, 3, 3) random SPD matrices with standard deviations ~ scales and correlations."""
    A = rng.normal(size=(n, 3, 3)) * 0.4 + np.eye(3)
    corr = A @ np.swapaxes(A, 1, 2)
    d = 1.0 / np.sqrt(np.diagonal(corr, axis1=1, axis2=2))
    corr = corr * d[:, :, None] * d[:, None, :]
    sd = np.asarray(scales) * rng.uniform(0.5, 1.5, (n, 3))
    return corr * sd[:, :, None] * sd[:, None, :]


def reference_posterior(density, theta, cov):
    """Per star and component, by scipy and explicit inverses: w (n, K), m, S (unsorted)."""
    n, K = len(theta), len(density.weights)
    w, m, S = np.zeros((n, K)), np.zeros((n, K, 3)), np.zeros((n, K, 3, 3))
    for i in range(n):
        for k in range(K):
            mu, V = density.means[k], density.covs[k]
            Tinv = np.linalg.inv(V + cov[i])
            w[i, k] = density.weights[k] * multivariate_normal(mu, V + cov[i]).pdf(theta[i])
            m[i, k] = mu + V @ Tinv @ (theta[i] - mu)
            S[i, k] = V - V @ Tinv @ V
        w[i] /= w[i].sum()
    return w, m, S


@pytest.fixture(scope="module")
def random_case():
    rng = np.random.default_rng(11)
    K, n, scales = 3, 50, [300.0, 0.4, 0.3]
    density = ThetaDensity(
        weights=np.array([0.5, 0.3, 0.2]),
        means=np.array([[4800, 2.5, -0.2], [5300, 3.5, -0.4], [5800, 4.3, 0.0]]),
        covs=random_spd(rng, K, scales),
    )
    pick = rng.choice(K, n, p=density.weights)
    theta = density.means[pick] + rng.normal(size=(n, 3)) * scales
    return density, theta, random_spd(rng, n, [150.0, 0.2, 0.15])


@pytest.mark.parametrize("n_keep", [1, 2, 3])
def test_posterior_components_match_per_star_loop(random_case, n_keep):
    density, theta, cov = random_case
    w_ref, m_ref, S_ref = reference_posterior(density, theta, cov)
    w, m, S = posterior_components(density, theta, cov, n_keep)
    assert w.shape == (50, n_keep) and m.shape == (50, n_keep, 3)
    assert S.shape == (50, n_keep, 3, 3) and w.dtype == m.dtype == S.dtype == np.float64
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-12)
    assert np.all(np.diff(w, axis=1) <= 0)
    top = np.argsort(-w_ref, axis=1)[:, :n_keep]
    w_top = np.take_along_axis(w_ref, top, 1)
    np.testing.assert_allclose(w, w_top / w_top.sum(1, keepdims=True), rtol=1e-9, atol=1e-300)
    np.testing.assert_allclose(m, np.take_along_axis(m_ref, top[..., None], 1), rtol=1e-10)
    S_top = np.take_along_axis(S_ref, top[..., None, None], 1)
    scale = np.sqrt(np.einsum("nkii->nki", S_top))
    np.testing.assert_allclose(
        (S - S_top) / (scale[..., :, None] * scale[..., None, :]), 0.0, atol=1e-8
    )


def test_posterior_moments_match_per_star_loop(random_case):
    density, theta, cov = random_case
    w, m, S = reference_posterior(density, theta, cov)
    mean_ref = np.einsum("nk,nki->ni", w, m)
    second = np.einsum("nk,nkij->nij", w, S + m[..., :, None] * m[..., None, :])
    cov_ref = second - mean_ref[:, :, None] * mean_ref[:, None, :]
    mean, var = posterior_moments(density, theta, cov)
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-10)
    sd = np.sqrt(np.einsum("nii->ni", cov_ref))
    np.testing.assert_allclose((var - cov_ref) / (sd[:, :, None] * sd[:, None, :]), 0, atol=1e-7)


def test_flat_density_gives_the_papers_method():
    """One very broad component (V = 10⁶ I against C ≲ 1): p(θ | θ̂) → N(θ̂, C)."""
    rng = np.random.default_rng(3)
    theta = rng.normal(size=(40, 3))
    cov = random_spd(rng, 40, [0.5, 0.3, 0.2])
    flat = ThetaDensity(np.ones(1), np.zeros((1, 3)), 1e6 * np.eye(3)[None])
    mean, var = posterior_moments(flat, theta, cov)
    np.testing.assert_allclose(mean, theta, atol=1e-5)
    np.testing.assert_allclose(var, cov, rtol=1e-5, atol=1e-8)
    w, m, S = posterior_components(flat, theta, cov, 1)
    np.testing.assert_allclose(w, 1.0)
    np.testing.assert_allclose(m[:, 0], mean, rtol=1e-12)


# A giant branch and a dwarf sequence (θ's units: K, dex, dex).
TRUE_W = np.array([0.35, 0.65])
TRUE_MU = np.array([[4800.0, 2.5, -0.3], [5800.0, 4.3, -0.1]])
TRUE_V = np.array(
    [
        [[100.0**2, 0.6 * 100 * 0.25, 0.0], [0.6 * 100 * 0.25, 0.25**2, 0.0], [0, 0, 0.2**2]],
        [[250.0**2, -0.3 * 250 * 0.15, 0.0], [-0.3 * 250 * 0.15, 0.15**2, 0.0], [0, 0, 0.25**2]],
    ]
)
N_POP = 20_000


@pytest.fixture(scope="module")
def population():
    """True θ, noisy θ̂ with per-star C (noise ~ the intrinsic widths), component labels."""
    rng = np.random.default_rng(2011)
    label = rng.choice(2, N_POP, p=TRUE_W)
    true = TRUE_MU[label] + np.einsum(
        "nij,nj->ni", np.linalg.cholesky(TRUE_V)[label], rng.normal(size=(N_POP, 3))
    )
    cov = random_spd(rng, N_POP, [120.0, 0.15, 0.15])
    noisy = true + np.einsum("nij,nj->ni", np.linalg.cholesky(cov), rng.normal(size=(N_POP, 3)))
    return true, noisy, cov, label


@pytest.fixture(scope="module")
def fitted(population):
    _, noisy, cov, _ = population
    return fit_theta_density(noisy, cov, n_components=2, max_iter=100, seed=1)


def covariance_ratio(estimate, truth):
    """Eigenvalues of L⁻¹ estimate L⁻ᵀ (L L ᵀ = truth): all 1 when they agree."""
    Linv = np.linalg.inv(np.linalg.cholesky(truth))
    return np.linalg.eigvalsh(Linv @ estimate @ Linv.T)


def test_recovers_injected_population(population, fitted):
    _, noisy, cov, label = population
    order = np.argsort(fitted.means[:, 0])  # giants (cool) first
    w, mu, V = fitted.weights[order], fitted.means[order], fitted.covs[order]
    np.testing.assert_allclose(w.sum(), 1.0)
    assert np.all(np.abs(w - TRUE_W) < 5 * np.sqrt(TRUE_W * (1 - TRUE_W) / N_POP))
    for k in range(2):
        n_k = TRUE_W[k] * N_POP
        se = np.sqrt((np.diag(TRUE_V[k]) + np.einsum("nii->i", cov[label == k]) / n_k) / n_k)
        assert np.all(np.abs(mu[k] - TRUE_MU[k]) < 5 * se), (mu[k], TRUE_MU[k], se)
        # variances from n_k ≈ 7000-13000 noisy stars: relative SE ≲ 4 %; allow 20 %
        ratio = covariance_ratio(V[k], TRUE_V[k])
        assert np.all(np.abs(ratio - 1) < 0.2), (k, ratio)
        # the plain covariance of θ̂ (even knowing the labels) is inflated by C: it fails
        plain = covariance_ratio(np.cov(noisy[label == k].T), TRUE_V[k])
        assert np.any(np.abs(plain - 1) > 0.2), (k, plain)


def test_regression_calibration(population, fitted):
    true, noisy, cov, _ = population
    mean, var = posterior_moments(fitted, noisy, cov)
    mse_post = np.mean((mean - true) ** 2, axis=0)
    mse_hat = np.mean((noisy - true) ** 2, axis=0)
    assert np.all(mse_post < 0.8 * mse_hat), (mse_post, mse_hat)
    z = (true - mean) / np.sqrt(np.einsum("nii->ni", var))
    assert np.all(np.abs(z.std(axis=0) - 1) < 0.1), z.std(axis=0)
    assert np.all(np.abs(z.mean(axis=0)) < 0.05), z.mean(axis=0)


def reference_em_step(w, mu, V, x, C):
    """Bovy et al. (2011) Eq. 16-19, one star and component at a time with explicit inverses:
    new (w, μ, V) and the mean log-likelihood per star of the old ones."""
    n, K = len(x), len(w)
    q, b, B = np.zeros((n, K)), np.zeros((n, K, 3)), np.zeros((n, K, 3, 3))
    for i in range(n):
        for k in range(K):
            Tinv = np.linalg.inv(V[k] + C[i])
            q[i, k] = w[k] * multivariate_normal(mu[k], V[k] + C[i]).pdf(x[i])
            b[i, k] = mu[k] + V[k] @ Tinv @ (x[i] - mu[k])
            B[i, k] = V[k] - V[k] @ Tinv @ V[k]
    loglike = np.log(q.sum(1)).mean()
    q /= q.sum(1, keepdims=True)  # E step: q_ik, b_ik, B_ik
    qj = q.sum(0)  # M step: α, then m, then V about the new m
    new_mu = np.einsum("nk,nki->ki", q, b) / qj[:, None]
    d = new_mu - b
    new_V = np.einsum("nk,nkij->kij", q, d[..., :, None] * d[..., None, :] + B)
    return qj / n, new_mu, new_V / qj[:, None, None], loglike


def test_em_step_matches_per_star_loop():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(200, 3)) + rng.choice([-1.5, 0.0, 1.5], (200, 1))
    C = random_spd(rng, 200, [0.3, 0.3, 0.3])
    w, mu, V = np.array([0.5, 0.3, 0.2]), rng.normal(size=(3, 3)), random_spd(rng, 3, [0.8] * 3)
    ours = _em_step(w, mu, V, x, C)
    for a, b in zip(ours, reference_em_step(w, mu, V, x, C)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_em_never_decreases_the_likelihood():
    theta, cov = small_sample(500)
    scale = np.array([500.0, 1.0, 0.3])  # roughly standardised, as fit_theta_density does
    x, C = (theta - TRUE_MU.mean(0)) / scale, cov / np.outer(scale, scale)
    *_, history = _xd(x, C, 3, np.random.default_rng(0), max_iter=60, tol=0.0)
    assert len(history) == 60 and history[-1] > history[0] + 0.1
    assert np.all(np.diff(history) >= -1e-12), np.diff(history).min()


def test_collapsing_component_stays_regular():
    """20 identical θ̂ with C = 0 pull a component onto a point: without the floor on V's
    eigenvalues, V and T = V + C would go singular (NaN)."""
    rng = np.random.default_rng(9)
    theta = np.concatenate([rng.normal(size=(300, 3)), np.full((20, 3), 6.0)])
    cov = np.concatenate([np.tile(0.1 * np.eye(3), (300, 1, 1)), np.zeros((20, 3, 3))])
    density = fit_theta_density(theta, cov, n_components=2, max_iter=300, seed=0)
    point = np.argmax(density.means[:, 0])
    np.testing.assert_allclose(density.weights[point], 20 / 320, rtol=1e-6)
    np.testing.assert_allclose(density.means[point], 6.0, atol=1e-6)
    eig = np.linalg.eigvalsh(density.covs)
    assert np.all(eig[point] > 1e-7) and np.all(eig[point] < 1e-5), eig  # 1e-6 × scale²
    mean, var = posterior_moments(density, theta, cov)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(var))
    np.testing.assert_allclose(mean[300:], 6.0, atol=1e-9)


def mixture_loglike(w, mu, V, x, C):
    """Mean log Σ_k w_k N(x; μ_k, V_k + C) per star, by batched LAPACK."""
    logp = []
    for k in range(len(w)):
        T = V[k] + C
        r = x - mu[k]
        maha = np.einsum("ni,ni->n", r, np.linalg.solve(T, r[..., None])[..., 0])
        logp.append(np.log(w[k]) - 0.5 * (maha + np.linalg.slogdet(T)[1] + 3 * np.log(2 * np.pi)))
    return np.mean(np.logaddexp.reduce(np.array(logp), axis=0))


def test_fit_agrees_with_stock_astroml():
    """Stock astroML XDGMM (public API; slow, 2,000 stars) reaches the same optimum."""
    astroml = pytest.importorskip("astroML.density_estimation", reason="astroML not installed")
    rng = np.random.default_rng(8)
    n, means = 2000, np.array([[0.0, 0.0, 0.0], [4.0, -3.0, 2.0]])
    label = rng.choice(2, n, p=[0.4, 0.6])
    V = random_spd(rng, 2, [0.8, 0.6, 0.5])
    C = random_spd(rng, n, [0.3, 0.3, 0.3])
    true = means[label] + np.einsum(
        "nij,nj->ni", np.linalg.cholesky(V)[label], rng.normal(size=(n, 3))
    )
    X = true + np.einsum("nij,nj->ni", np.linalg.cholesky(C), rng.normal(size=(n, 3)))
    ours = fit_theta_density(X, C, n_components=2, max_iter=1000, tol=1e-9)
    with warnings.catch_warnings():  # its 10-step GaussianMixture start does not converge
        warnings.filterwarnings("ignore", message=".*did not converge")
        # tol is on the total logL: 5e-6 per star (each of its steps takes ~0.3 s)
        stock = astroml.XDGMM(2, max_iter=1000, tol=1e-2, random_state=0).fit(X, C)
    ll_ours = mixture_loglike(ours.weights, ours.means, ours.covs, X, C)
    ll_stock = mixture_loglike(stock.alpha, stock.mu, stock.V, X, C)
    np.testing.assert_allclose(ll_stock, stock.logL(X, C) / n, rtol=1e-10)
    assert abs(ll_ours - ll_stock) < 0.01, (ll_ours, ll_stock)
    a, b = ours.means[np.argsort(ours.means[:, 0])], stock.mu[np.argsort(stock.mu[:, 0])]
    for k in range(2):
        n_k = np.sum(label == k)
        se = np.sqrt((np.diag(V[k]) + np.einsum("nii->i", C[label == k]) / n_k) / n_k)
        assert np.all(np.abs(a[k] - b[k]) < 3 * se), (a[k], b[k], se)


def small_sample(n=400, seed=7):
    rng = np.random.default_rng(seed)
    label = rng.choice(2, n, p=TRUE_W)
    cov = random_spd(rng, n, [120.0, 0.15, 0.15])
    theta = TRUE_MU[label] + rng.normal(size=(n, 3)) * [200.0, 0.3, 0.3]
    return theta, cov


@pytest.mark.parametrize(
    ("theta_shape", "cov_shape"),
    [((20, 2), (20, 3, 3)), ((20, 3), (20, 3)), ((20, 3), (19, 3, 3)), ((3,), (3, 3))],
)
def test_bad_shapes(theta_shape, cov_shape):
    theta, cov = np.zeros(theta_shape), np.zeros(cov_shape)
    with pytest.raises(TrainingError, match=r"shape \(n, 3\).*\(n, 3, 3\)"):
        fit_theta_density(theta, cov, n_components=1)
    with pytest.raises(TrainingError, match="shape"):
        posterior_moments(ThetaDensity(np.ones(1), np.zeros((1, 3)), np.eye(3)[None]), theta, cov)


def test_too_few_finite_rows():
    theta, cov = small_sample(100)
    theta[:85, 1] = np.nan
    with pytest.raises(TrainingError, match="at least 20 stars.*got 15 of 100.*fewer components"):
        fit_theta_density(theta, cov, n_components=2)


def test_non_finite_rows_are_ignored():
    theta, cov = small_sample()
    clean = fit_theta_density(theta, cov, n_components=2, max_iter=20)
    bad = np.zeros(len(theta) + 4, bool)
    bad[[0, 101, 250, 403]] = True
    bad_theta, bad_cov = np.ones((len(bad), 3)), np.tile(np.eye(3), (len(bad), 1, 1))
    bad_theta[~bad], bad_cov[~bad] = theta, cov
    bad_theta[0, 1], bad_cov[101, 2, 2], bad_theta[250, 0], bad_cov[403, 0, 1] = (
        np.nan,
        np.inf,
        -np.inf,
        np.nan,
    )
    dirty = fit_theta_density(bad_theta, bad_cov, n_components=2, max_iter=20)
    for a, b in zip(
        (clean.weights, clean.means, clean.covs), (dirty.weights, dirty.means, dirty.covs)
    ):
        np.testing.assert_array_equal(a, b)
    mean, var = posterior_moments(clean, bad_theta, bad_cov)
    assert np.isnan(mean[bad]).all() and np.isfinite(mean[~bad]).all()
    w, _, _ = posterior_components(clean, bad_theta, bad_cov, 2)
    assert np.isnan(w[bad]).all() and np.isfinite(w[~bad]).all()
    with pytest.raises(ValueError, match="n_keep"):
        posterior_components(clean, theta, cov, 3)


def test_subset_is_seeded():
    theta, cov = small_sample(600)
    a = fit_theta_density(theta, cov, n_components=2, max_stars=300, seed=4, max_iter=10)
    b = fit_theta_density(theta, cov, n_components=2, max_stars=300, seed=4, max_iter=10)
    c = fit_theta_density(theta, cov, n_components=2, max_stars=300, seed=5, max_iter=10)
    np.testing.assert_array_equal(a.means, b.means)
    assert not np.allclose(a.means, c.means)
