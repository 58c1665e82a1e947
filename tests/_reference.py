"""Slow, independent NumPy references for the emulator and the likelihood (tests only).

Nothing here calls bayesdsm's JAX code except :func:`bayesdsm.emulator.emulator_arrays`
to read the weights. The Jacobian is analytic (chain rule through the sigmoid MLP and
the exponential extinction layer), the covariance is built densely in magnitude space
and projected to colour space with B, exactly as written in the paper (Eq. 4-6).
"""

from __future__ import annotations

import numpy as np

from bayesdsm.emulator import emulator_arrays


def np_weights(emu) -> dict[str, np.ndarray]:
    return {k: np.asarray(v, np.float64) for k, v in emulator_arrays(emu).items()}


def b_mat(n):
    B = np.eye(n)
    B[1:, 0] = -1.0
    return B


def forward(w, theta):
    """(B·M, R, dBM/dθ, dR/dθ) of one star for a sigmoid MLP, in NumPy float64."""
    std = w["theta_std"]
    x = (np.asarray(theta, np.float64) - w["theta_median"]) / std
    dx = np.diag(1.0 / std)  # dθ_n/dθ
    h, dh = x, dx
    i = 0
    while f"hidden_{i}_kernel" in w:
        z = w[f"hidden_{i}_kernel"] @ h + w[f"hidden_{i}_bias"]
        a = 1.0 / (1.0 + np.exp(-z))
        dh = (a * (1.0 - a))[:, None] * (w[f"hidden_{i}_kernel"] @ dh)
        h = a
        i += 1
    bm = w["output_kernel"] @ h + w["output_bias"]
    dbm = w["output_kernel"] @ dh
    R = np.exp(w["R_kernel"] @ x + w["R_bias"])
    dR = R[:, None] * (w["R_kernel"] @ dx)
    return bm, R, dbm, dR


def dense_colour_system(w, star, ebv=None, ebv_err=None, parallax_term=True):
    """(Δc, C_c, used) of one star in colour space, by the paper's recipe.

    Δc = B(m̂ - M - E R - μ̂), C_c = B C_m Bᵀ with
    C_m = J C_θ Jᵀ + σ_E² R Rᵀ + σ_μ² 𝟙𝟙ᵀ + diag σ², J = ∂(M + E R)/∂θ at θ̂.
    ``used`` selects c₀ (with a parallax) and the colours of observed bands (the
    reference band must be observed).
    """
    s = {k: np.asarray(v, np.float64) for k, v in star._asdict().items()}
    n = len(s["mag"])
    e = float(s["ebv"] if ebv is None else ebv)
    e_err = float(s["ebv_err"] if ebv_err is None else ebv_err)
    B = b_mat(n)
    Binv = np.linalg.inv(B)
    bm, R, dbm, dR = forward(w, s["theta"])
    M = Binv @ bm
    J = Binv @ dbm + e * dR
    C_theta = s["theta_chol"] @ s["theta_chol"].T
    Cm = J @ C_theta @ J.T + e_err**2 * np.outer(R, R) + np.diag(s["mag_err"] ** 2)
    has = s["has_parallax"] > 0
    if has and parallax_term:
        Cm = Cm + s["sigma_mu"] ** 2 * np.ones((n, n))
    dc = B @ (s["mag"] - M - e * R - (s["mu"] if has else 0.0))
    Cc = B @ Cm @ B.T
    assert s["mask"][0] > 0, "the colour-space reference needs the reference band"
    used = np.concatenate([[has], s["mask"][1:] > 0])
    return dc, Cc, used, R


def dense_chi2(w, star):
    dc, Cc, used, _ = dense_colour_system(w, star)
    d, C = dc[used], Cc[np.ix_(used, used)]
    return float(d @ np.linalg.solve(C, d))


def dense_reddening_posterior(w, star, prior_mean, prior_err):
    """Eq. 8-9 in colour space: m_pred = M(θ̂) + μ̂, C_pred without the R term, E = 0."""
    dc, Cc, used, R = dense_colour_system(w, star, ebv=0.0, ebv_err=0.0)
    BR = b_mat(len(R)) @ R
    d, C, r = dc[used], Cc[np.ix_(used, used)], BR[used]
    prec = r @ np.linalg.solve(C, r) + 1.0 / prior_err**2
    mean = (prior_mean / prior_err**2 + r @ np.linalg.solve(C, d)) / prec
    return mean, 1.0 / prec


def dense_scores(w, star):
    """Δ(X - ref)/σ(X - ref) from the finite part of C_m (no parallax term)."""
    dc, Cc, _, _ = dense_colour_system(w, star, parallax_term=False)
    mask = np.asarray(star.mask, np.float64)
    out = dc[1:] / np.sqrt(np.diag(Cc)[1:])
    return np.where((mask[1:] > 0) & (mask[0] > 0), out, np.nan)


def dense_fitted_scores(w, star):
    """Scores at the best-fit Ê (Eq. 8-9, clipped at 0), σ² = diag B C_n S⁻¹ C_n Bᵀ.

    C_n is C_m at Ê without the E term and S = C_n + σ_E² R Rᵀ (σ_E the prior's), over
    the components the fit uses (c₀ = m_ref - μ̂ only with a parallax): the covariance of
    the residual after fitting E, by dense products (not by the Sherman-Morrison form
    the fast path uses).
    """
    mean, _ = dense_reddening_posterior(w, star, float(star.ebv), float(star.ebv_err))
    e = max(mean, 0.0)
    dc, Cn, used, R = dense_colour_system(w, star, ebv=e, ebv_err=0.0)
    BR = b_mat(len(R)) @ R
    mask = np.asarray(star.mask, np.float64)
    Cn_u = Cn[np.ix_(used, used)]
    S = Cn_u + float(star.ebv_err) ** 2 * np.outer(BR[used], BR[used])
    var = np.full(len(R), np.nan)
    var[used] = np.diag(Cn_u @ np.linalg.solve(S, Cn_u))
    out = dc[1:] / np.sqrt(var[1:])
    return np.where((mask[1:] > 0) & (mask[0] > 0), out, np.nan)


def random_emulator(key, dtype=np.float64):
    """A random emulator with non-trivial hidden, output and extinction weights."""
    import jax
    import jax.numpy as jnp

    from bayesdsm.emulator import EmulatorConfig, emulator_from_arrays, init_emulator

    emu = init_emulator(key, EmulatorConfig(), dtype=dtype)
    arrays = dict(emulator_arrays(emu))
    keys = jax.random.split(jax.random.fold_in(key, 1), 4)
    arrays["R_kernel"] = 0.1 * jax.random.normal(keys[0], arrays["R_kernel"].shape, dtype)
    arrays["output_bias"] = jnp.linspace(4.0, -1.0, 13, dtype=dtype)
    arrays["hidden_0_bias"] = 0.3 * jax.random.normal(keys[1], (32,), dtype)
    arrays["output_kernel"] = 0.5 * arrays["output_kernel"]
    return emulator_from_arrays(emu.config, arrays, dtype)


def random_stars(rng, n, dtype=np.float64, n_bands=13, p_missing=0.25, p_parallax=0.7):
    """NumPy StarData of n random stars (reference band always observed)."""
    from bayesdsm.likelihood import StarData

    theta = np.stack(
        [rng.uniform(4000, 6800, n), rng.uniform(1.5, 4.7, n), rng.uniform(-1.2, 0.3, n)], 1
    )
    A = rng.normal(size=(n, 3, 3)) * np.array([40.0, 0.08, 0.05])[:, None]
    cov = A @ np.swapaxes(A, 1, 2) + np.diag([30.0**2, 0.05**2, 0.03**2])
    mask = (rng.random((n, n_bands)) > p_missing).astype(float)
    mask[:, 0] = 1.0
    err = rng.uniform(0.02, 0.15, (n, n_bands))
    has = (rng.random(n) < p_parallax).astype(float)
    mag = np.where(mask > 0, rng.normal(12.0, 0.3, (n, n_bands)), 0.0)
    return StarData(
        mag=mag.astype(dtype),
        mask=mask.astype(dtype),
        mag_err=np.where(mask > 0, err, 1.0).astype(dtype),
        theta=theta.astype(dtype),
        theta_chol=np.linalg.cholesky(cov).astype(dtype),
        mu=np.where(has > 0, rng.uniform(7.0, 12.0, n), 0.0).astype(dtype),
        sigma_mu=np.where(has > 0, rng.uniform(0.01, 0.4, n), 1.0).astype(dtype),
        has_parallax=has.astype(dtype),
        ebv=rng.uniform(0.0, 0.8, n).astype(dtype),
        ebv_err=rng.uniform(0.02, 0.2, n).astype(dtype),
    )


def star(stars, i):
    """Star i of a StarData of arrays."""
    return type(stars)(*(np.asarray(a)[i] for a in stars))


def dense_profiled_chi2(w, star, prior_mean, prior_err):
    """min over E of χ²(E) + (E - E₀)²/σ₀², by a numerical 1-D minimisation in colour
    space: Δc(E) = B(m̂ - M - E R - μ̂) with C_c built at the star's E′ (``star.ebv``)
    without the σ_E² R Rᵀ term (linear extinction)."""
    from scipy.optimize import minimize_scalar

    dc0, Cc, used, R = dense_colour_system(w, star, ebv_err=0.0)
    BR = b_mat(len(R)) @ R
    e_lin = float(star.ebv)
    C = Cc[np.ix_(used, used)]

    def f(e):
        d = (dc0 - (e - e_lin) * BR)[used]
        return float(d @ np.linalg.solve(C, d)) + (e - prior_mean) ** 2 / prior_err**2

    res = minimize_scalar(f, bracket=(prior_mean - 1.0, prior_mean + 1.0), tol=1e-12)
    return res.fun


def dense_mixture_chi2(w, star, weights, thetas, chols):
    """-2 log Σ_l w_l N(Δc_l; 0, C_l) + const in colour space, each component l the star
    at θ = thetas[l] with C_θ = chols[l] chols[l]ᵀ (the constant: the log 2π terms)."""
    terms = []
    for wl, th, ch in zip(weights, thetas, chols, strict=True):
        s = star._replace(theta=np.asarray(th), theta_chol=np.asarray(ch))
        dc, Cc, used, _ = dense_colour_system(w, s)
        d, C = dc[used], Cc[np.ix_(used, used)]
        terms.append(np.log(wl) - 0.5 * np.linalg.slogdet(C)[1] - 0.5 * d @ np.linalg.solve(C, d))
    return -2.0 * np.logaddexp.reduce(terms)
