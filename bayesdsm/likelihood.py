"""The heteroscedastic likelihood of Green et al. (2021), Eq. 3-9 and 18, for one star.

Conventions (stated once, used everywhere):

* The residual is taken in magnitude space, r = m̂ - (M(θ̂) + μ̂ + Ê R(θ̂)), with the
  low-rank covariance of :mod:`bayesdsm.covariance`. Because B is invertible and the
  colours are exactly the directions orthogonal to 𝟙, this χ² equals the paper's
  colour-space χ² = Δcᵀ C_c⁻¹ Δc (Eq. 6), with c₀ dropped where the parallax is unusable.
* J = ∂(M + Ê R)/∂θ is taken at θ̂ (Eq. 4); the catalog's reddening prior (Ê, σ_E)
  enters the covariance through σ_E² R Rᵀ.
* μ̂ = 10 - 5 log10(ϖ̂ / mas) (naive conversion) and σ_μ = (5 / ln 10) σ_ϖ / ϖ̂.
* Number of modelled components = (observed bands - 1 colours) + (1 if parallax used);
  dof = components - 1 (see :func:`dof`).

Per-star functions take a :class:`StarData` of one star; vmap them in the caller.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.covariance import LowRankCov, logdet, lowrank_cov, quadform, whiten
from bayesdsm.emulator import Emulator, extinction_variation, reddening

__all__ = [
    "StarData",
    "stardata_from_catalog",
    "model_magnitudes",
    "residual",
    "star_covariance",
    "chi2",
    "n_components",
    "dof",
    "reddening_posterior",
    "colour_scores",
    "linearized_parallax",
    "frozen_whitening",
    "chi2_whitened",
    "ReddeningProfile",
    "chi2_profiled",
    "ThetaMixture",
    "chi2_mixture",
    "frozen_terms",
    "chi2_frozen",
    "model_jacobians",
    "rebuild_star",
    "variation_direction",
    "extinction_posterior",
]

LN10_5 = 5.0 / np.log(10.0)


class StarData(NamedTuple):
    """Per-star inputs of the likelihood (one star, or stars on the leading axis).

    Attributes:
        mag: (n_bands,) apparent magnitudes; 0 where unobserved.
        mask: (n_bands,) 1.0 where observed, else 0.0.
        mag_err: (n_bands,) σ_m; 1 where unobserved.
        theta: (3,) θ̂ = (Teff, log g, [Fe/H]).
        theta_chol: (3, 3) lower Cholesky factor of C_θ.
        mu: μ̂ from the parallax (0 where none).
        sigma_mu: σ_μ (1 where none).
        has_parallax: 1.0 where the parallax is used, else 0.0.
        ebv: reddening estimate Ê (mag).
        ebv_err: σ_E (mag).
    """

    mag: jnp.ndarray
    mask: jnp.ndarray
    mag_err: jnp.ndarray
    theta: jnp.ndarray
    theta_chol: jnp.ndarray
    mu: jnp.ndarray
    sigma_mu: jnp.ndarray
    has_parallax: jnp.ndarray
    ebv: jnp.ndarray
    ebv_err: jnp.ndarray


def stardata_from_catalog(cat, dtype=np.float32, *, ebv=None, ebv_err=None) -> StarData:
    """Convert a :class:`~bayesdsm.catalog.Catalog` to NumPy :class:`StarData` arrays.

    Only ``cat.observed`` bands and ``cat.parallax_ok`` parallaxes (with ϖ̂ > 0) are used.
    ``ebv``/``ebv_err`` override the catalog's reddening prior (e.g. with updated
    reddenings during training). Stars without θ̂ get θ̂ = 0 and L_θ = 0 here; callers
    must not evaluate them.
    """
    mask = np.asarray(cat.observed, bool)
    mag = np.where(mask, np.nan_to_num(cat.mag), 0.0)
    err = np.where(mask, np.nan_to_num(cat.mag_err, nan=1.0), 1.0)
    theta = np.nan_to_num(np.asarray(cat.theta, np.float64))
    cov = np.asarray(cat.theta_cov, np.float64)
    good = np.all(np.isfinite(cov), axis=(1, 2))
    chol = np.zeros_like(cov)
    if good.any():
        chol[good] = np.linalg.cholesky(cov[good])
    plx = np.asarray(cat.parallax, np.float64)
    plx_err = np.asarray(cat.parallax_err, np.float64)
    has = np.asarray(cat.parallax_ok, bool) & np.isfinite(plx) & (plx > 0) & (plx_err > 0)
    safe_plx = np.where(has, plx, 1.0)
    mu = np.where(has, 10.0 - 5.0 * np.log10(safe_plx), 0.0)
    sigma_mu = np.where(has, LN10_5 * np.where(has, plx_err, 1.0) / safe_plx, 1.0)
    e = np.asarray(cat.ebv if ebv is None else ebv, np.float64)
    e_err = np.asarray(cat.ebv_err if ebv_err is None else ebv_err, np.float64)
    return StarData(
        mag=mag.astype(dtype),
        mask=mask.astype(dtype),
        mag_err=err.astype(dtype),
        theta=theta.astype(dtype),
        theta_chol=chol.astype(dtype),
        mu=mu.astype(dtype),
        sigma_mu=sigma_mu.astype(dtype),
        has_parallax=has.astype(dtype),
        ebv=np.nan_to_num(e).astype(dtype),
        ebv_err=np.nan_to_num(e_err, nan=10.0).astype(dtype),
    )


def model_magnitudes(emu: Emulator, theta, ebv):
    """M(θ) + A(E, θ) and the reddening vector ∂A/∂E at E, for one star.

    A = E R(θ) (the paper) + c (E R)² (:func:`bayesdsm.emulator.reddening`; c = 0 unless
    the curvature was fitted), so the vector is R (1 + 2 c E R), i.e. R(θ) when c = 0.
    """
    bm, R = emu(theta)
    a, slope = reddening(emu, R, ebv)
    return _bm_to_m(bm) + a, slope


def _bm_to_m(bm):
    return bm + bm[0] * (jnp.arange(bm.shape[0]) > 0)


def residual(model_mag, star: StarData):
    """r = m̂ - (model + μ̂) on observed bands (0 elsewhere).

    Without a parallax the 𝟙 direction has infinite variance, so any μ̂ gives the same
    χ²; we subtract the precision-weighted mean residual instead, which keeps r small
    and avoids cancellation in float32.
    """
    r0 = (star.mag - model_mag) * star.mask
    w = star.mask / star.mag_err**2
    offset_free = jnp.sum(w * r0) / jnp.maximum(jnp.sum(w), 1e-30)
    offset = jnp.where(star.has_parallax > 0, star.mu, offset_free)
    return (r0 - offset) * star.mask


def star_covariance(
    emu: Emulator, star: StarData, *, ebv=None, ebv_err=None, gradients=True, extinction=True
) -> LowRankCov:
    """C_m of Eq. 4 for one star, from the emulator at θ̂.

    Args:
        ebv, ebv_err: the Ê in J = ∂(M + Ê R)/∂θ and the σ_E of the σ_E² R Rᵀ term;
            default ``star.ebv`` and ``star.ebv_err``.
        gradients: if False, J = 0 (training iteration 0).
        extinction: if False, R = 0 in the covariance (training iteration 0).
    """
    ebv = star.ebv if ebv is None else ebv
    ebv_err = star.ebv_err if ebv_err is None else ebv_err

    def f(theta):
        m, R = model_magnitudes(emu, theta, ebv)
        return m, R

    if gradients:
        jac, R = jax.jacfwd(f, has_aux=True)(star.theta)
    else:
        _, R = f(star.theta)
        jac = jnp.zeros((R.shape[0], 3), R.dtype)
    if not extinction:
        R = jnp.zeros_like(R)
    return lowrank_cov(
        jac, star.theta_chol, R, ebv_err, star.sigma_mu, star.has_parallax, star.mag_err, star.mask
    )


def chi2(emu: Emulator, star: StarData):
    """χ² of one star (Eq. 6) with the catalog's Ê and σ_E, J at θ̂.

    With K = 2, ξ ~ N(0, 1) is integrated out: the covariance gains x xᵀ with
    x = :func:`variation_direction` at Ê.
    """
    m, _ = model_magnitudes(emu, star.theta, star.ebv)
    r = residual(m, star)
    cov = star_covariance(emu, star)
    if emu.n_components == 1:
        return quadform(cov, r[:, None])[0, 0]
    x = variation_direction(emu, star.theta, star.ebv) * star.mask
    q = quadform(cov, jnp.stack([x, r], axis=1))
    return q[1, 1] - q[0, 1] ** 2 / (1.0 + q[0, 0])


def n_components(star: StarData):
    """Number of modelled components: colours of observed bands, + c₀ with a parallax."""
    n_obs = jnp.sum(star.mask)
    return jnp.maximum(n_obs - 1.0, 0.0) + star.has_parallax * (n_obs > 0)


def dof(star: StarData):
    """Degrees of freedom of χ²: modelled components - 1 (for the fitted reddening)."""
    return n_components(star) - 1.0


def reddening_posterior(emu: Emulator, star: StarData, prior_mean, prior_err):
    """Closed-form Gaussian posterior of E (Eq. 8-9) for one star.

    m_pred = M(θ̂) + μ̂ (E = 0), and C_pred is Eq. 4 with Ê = σ_E = 0 (J = ∂M/∂θ). The
    prior N(prior_mean, prior_err²) is the catalog's initial estimate, held fixed.

    With a fitted curvature c the magnitudes are linearised in E at the prior mean E₀,
    m ≈ m(E₀) + (E - E₀) ∂A/∂E(E₀); with c = 0 this is the paper's closed form.

    Returns:
        (mean, variance) of E, unclipped (the training loop clips and floors them).
    """
    m0, slope = model_magnitudes(emu, star.theta, prior_mean)
    r = residual(m0, star)
    cov = star_covariance(emu, star, ebv=0.0, ebv_err=jnp.ones_like(star.ebv_err))
    # Ê = σ_E = 0: remove the R direction from the covariance.
    cov = cov._replace(U=cov.U.at[:, 3].set(0.0))
    q = quadform(cov, jnp.stack([slope * star.mask, r], axis=1))
    prec = q[0, 0] + 1.0 / prior_err**2
    return prior_mean + q[0, 1] / prec, 1.0 / prec


def colour_scores(
    emu: Emulator, star: StarData, ebv=None, ebv_err=None, *, fit_reddening=False, pairs=None
):
    """Residual scores Δ(X - Y)/σ(X - Y) of Eq. 18.

    Unobserved colours (either band missing) give NaN.

    Args:
        pairs: (P, 2) int band indices (X, Y) of the colours; default X - ref for every
            band X after the reference (shape (n_bands - 1,) out).
        ebv, ebv_err: the reddening (default the star's own ``ebv``/``ebv_err``).
        fit_reddening: how that reddening relates to this photometry.

            * ``False``: it is independent of it (a dust-map prior, or the truth). σ² of a
              colour comes from C_m (Eq. 4) at that E: C_XX + C_rr - 2 C_Xr.
            * ``True``: (ebv, ebv_err) is the prior, and Ê is the best fit of Eq. 8-9 to
              this same photometry (clipped at 0), as the paper scores Fig. 12. The fit
              absorbs the residual along R, so the residual's covariance is not C_m but
              C_n - σ_post² R Rᵀ, where C_n is C_m without its E term and σ_post² the
              posterior variance of E: with r₀ = m̂ - M - E₀R ~ N(0, S),
              S = C_n + σ_E² R Rᵀ, the residual is r = C_n S⁻¹ r₀, so
              Cov(r) = C_n S⁻¹ C_n = C_n - σ_post² R Rᵀ (Sherman-Morrison). Scored with
              C_m instead, colours whose variance the σ_E R term dominates come out
              narrower than ±1 even for a perfect model.

    With K = 2, ξ ~ N(0, 1) is integrated out (x xᵀ added to C_m and C_n, x =
    :func:`variation_direction` at Ê), and the fitted Ê is :func:`extinction_posterior`'s.
    """
    ebv = star.ebv if ebv is None else ebv
    ebv_err = star.ebv_err if ebv_err is None else ebv_err
    k2 = emu.n_components == 2
    if fit_reddening:
        prior_err = ebv_err
        fit = extinction_posterior if k2 else reddening_posterior
        ebv = jnp.maximum(fit(emu, star, ebv, ebv_err)[0], 0.0)
        ebv_err = jnp.ones_like(ebv_err)
    m, R = model_magnitudes(emu, star.theta, ebv)
    cov = star_covariance(emu, star, ebv=ebv, ebv_err=ebv_err)
    # K = 2: ξ ~ N(0, 1) integrated, the covariance gains x xᵀ
    x = variation_direction(emu, star.theta, ebv) * star.mask if k2 else None
    if fit_reddening:
        cov = cov._replace(U=cov.U.at[:, 3].set(0.0))  # C_n: C_m at Ê without σ_E² R Rᵀ
        if k2:  # Rᵀ (C_n + x xᵀ)⁻¹ R by Sherman-Morrison
            q = quadform(cov, jnp.stack([R * star.mask, x], axis=1))
            rcr = q[0, 0] - q[0, 1] ** 2 / (1.0 + q[1, 1])
        else:
            rcr = quadform(cov, (R * star.mask)[:, None])[0, 0]
        post_var = 1.0 / (rcr + prior_err**-2)
    if pairs is None:
        i, j = jnp.arange(1, star.mag.shape[0]), jnp.zeros(star.mag.shape[0] - 1, int)
    else:
        i, j = pairs[:, 0], pairs[:, 1]
    d = (star.mag - m) * star.mask
    # colour variance from the finite part of C_m: diag + J C_θ Jᵀ + σ_E² R Rᵀ
    var_m = jnp.where(star.mask > 0, star.mag_err**2, 0.0)
    Uf = cov.U[:, :4] / jnp.sqrt(cov.sinv[:4])[None, :]
    var_c = var_m[i] + var_m[j] + jnp.sum((Uf[i] - Uf[j]) ** 2, axis=1)
    if k2:
        var_c = var_c + (x[i] - x[j]) ** 2
    if fit_reddening:
        var_c = var_c - post_var * (R[i] - R[j]) ** 2
    ok = (star.mask[i] > 0) & (star.mask[j] > 0)
    return jnp.where(ok, (d[i] - d[j]) / jnp.sqrt(jnp.where(ok, var_c, 1.0)), jnp.nan)


def frozen_whitening(emu: Emulator, star: StarData, *, gradients=True, extinction=True):
    """W (n_bands, 5) of the covariance frozen for one training iteration (§4).

    The paper holds {C_m} fixed while the network trains and rebuilds it between
    iterations from the previous iteration's network ``emu``; iteration 0 uses
    ``gradients=False, extinction=False`` (∇M = 0, R = 0). See :func:`chi2_whitened`.
    """
    return whiten(star_covariance(emu, star, gradients=gradients, extinction=extinction))


def frozen_terms(emu: Emulator, star: StarData, *, gradients=True, extinction=True):
    """(W, log|C|) of :func:`frozen_whitening`'s covariance (log|C| as
    :func:`bayesdsm.covariance.logdet`: its finite part), for mixture weights."""
    cov = star_covariance(emu, star, gradients=gradients, extinction=extinction)
    return whiten(cov), logdet(cov)


def chi2_whitened(emu: Emulator, star: StarData, W):
    """χ² of one star with a frozen covariance C⁻¹ = diag(mask/σ²) - W Wᵀ.

    This is the training objective's per-star term: the network ``emu`` moves the
    residual, the covariance stays as it was built at the start of the iteration.
    """
    m, _ = model_magnitudes(emu, star.theta, star.ebv)
    r = residual(m, star)
    dinv = star.mask / star.mag_err**2
    return jnp.sum(dinv * r**2) - jnp.sum((W.T @ r) ** 2)


class ReddeningProfile(NamedTuple):
    """A frozen covariance without the reddening direction, and the reddening prior that
    :func:`chi2_profiled` minimises χ² over (one star, or stars on the leading axis).

    Attributes:
        W: (n_bands, 5) whitening of the covariance without the σ_E² R Rᵀ term.
        prior_mean, prior_err: the catalogue's reddening prior (E₀, σ₀) (mag).
    """

    W: jnp.ndarray
    prior_mean: jnp.ndarray
    prior_err: jnp.ndarray


def chi2_profiled(emu: Emulator, star: StarData, frozen: ReddeningProfile):
    """min over E of χ²(E) + (E - E₀)²/σ₀²: the star's reddening profiled out with its prior.

    The magnitudes are linear in E about ``star.ebv`` (E′, the last reddening update),
    m(E) = m(E′) + (E - E′) s with s = ∂A/∂E(E′) (exact when the extinction is linear),
    so with the residual r₀ at the prior mean, r₀ = r(m(E′) + (E₀ - E′) s), and C⁻¹ the
    frozen covariance without the R direction,

        χ²_prof = r₀ᵀ C⁻¹ r₀ - (sᵀ C⁻¹ r₀)² / (1/σ₀² + sᵀ C⁻¹ s),

    the Gaussian quadratic form with covariance C + σ₀² s sᵀ. With K = 2, ξ ~ N(0, 1) is
    integrated out along x = :func:`variation_direction` at E′ (covariance
    C + σ₀² s sᵀ + x xᵀ, E still profiled), and ξ's log-determinant is added: with it the
    optimum puts R₁'s length at the population's spread of the extinction curve (without
    it, a longer R₁ would always fit better). Unlike :func:`chi2_whitened`
    at a fixed E′, both s (through R) and the reddening E are live: the network and every
    star's E are fitted jointly, so the reddenings' scale and zero point, which the
    photometry alone leaves free (E → u E, R → R/u), sit where the prior puts them.
    Without a parallax, s is taken orthogonal to 𝟙 as :func:`residual` takes r.
    """
    m, s = model_magnitudes(emu, star.theta, star.ebv)
    r = residual(m + (frozen.prior_mean - star.ebv) * s, star)
    # residual() is affine in the model: minus its linear part, applied to s
    s_r = -residual(s, star._replace(mag=jnp.zeros_like(star.mag), mu=jnp.zeros_like(star.mu)))
    dinv = star.mask / star.mag_err**2
    W = frozen.W
    wr, ws = W.T @ r, W.T @ s_r
    rr = jnp.sum(dinv * r**2) - jnp.sum(wr**2)
    sr = jnp.sum(dinv * s_r * r) - jnp.sum(ws * wr)
    ss = jnp.sum(dinv * s_r**2) - jnp.sum(ws**2)
    if emu.n_components == 1:
        return rr - sr**2 / (1.0 / frozen.prior_err**2 + ss)
    # K = 2: ξ ~ N(0, 1) along x = ∂A/∂ξ at E′, marginalised: the 2-D version of the
    # above (E profiled, ξ integrated), plus ξ's log-determinant, which pins R₁'s scale
    x = variation_direction(emu, star.theta, star.ebv)
    x_r = -residual(x, star._replace(mag=jnp.zeros_like(star.mag), mu=jnp.zeros_like(star.mu)))
    wx = W.T @ x_r
    xr = jnp.sum(dinv * x_r * r) - jnp.sum(wx * wr)
    xx = jnp.sum(dinv * x_r**2) - jnp.sum(wx**2)
    sx = jnp.sum(dinv * s_r * x_r) - jnp.sum(ws * wx)
    quad, logdet, _, _ = _gauss2(ss + 1.0 / frozen.prior_err**2, sx, xx + 1.0, sr, xr)
    return rr - quad + logdet


def _gauss2(m11, m12, m22, b1, b2):
    """For the 2 × 2 precision M = [[m11, m12], [m12, m22]] and b = (b1, b2):
    (bᵀ M⁻¹ b, log(m22 - m12²/m11), M⁻¹ b, M⁻¹ as (v11, v12, v22)).

    The log term is log|M| - log m11: the log-determinant of the second coefficient
    (ξ, prior precision 1) once the first (E) is profiled, i.e. ξ's marginal
    log-determinant log(1 + xᵀ C_E⁻¹ x) with C_E the covariance with E integrated.
    """
    det = m11 * m22 - m12**2
    c1 = (m22 * b1 - m12 * b2) / det
    c2 = (m11 * b2 - m12 * b1) / det
    return b1 * c1 + b2 * c2, jnp.log(det / m11), (c1, c2), (m22 / det, -m12 / det, m11 / det)


def variation_direction(emu: Emulator, theta, ebv, R=None):
    """∂A/∂ξ at ξ = 0 (n_bands,) of one star at reddening E (K = 2):
    E R₁ (1 + 2 c E R), with E clipped at 0 (so ξ has no effect on an unreddened star).

    ξ ~ N(0, 1) is the star's coefficient of R₁ (A = E (R + ξ R₁) + the curvature);
    ``R`` = R(θ) if already computed.
    """
    R = emu.extinction(emu.normalizer(theta)) if R is None else R
    e = jnp.maximum(ebv, 0.0)
    r1 = extinction_variation(emu, theta, R)
    return e * r1 * (1.0 + 2.0 * emu.extinction.curvature * e * R)


def extinction_posterior(emu: Emulator, star: StarData, prior_mean, prior_err):
    """The closed-form Gaussian posterior of (E, ξ) of one star (K = 2; Eq. 8-9 in 2-D).

    The magnitudes are linear in (E, η) with η = E ξ: m = M + μ + E R + η R₁ (exactly, for
    linear extinction; linearised at E₀ with the curvature). Priors: E ~ N(E₀, σ₀²) and
    η ~ N(0, τ²), which is ξ ~ N(0, 1) with ξ's scale E taken at an estimate τ ≥ 0: the
    posterior mean of E from a first solve with τ the larger of E₀ and the 1-D update's E
    (:func:`reddening_posterior`). Then ξ = η / E at the posterior mean of E, its
    variance by the delta method. Where that E or τ is below 1e-3 mag, ξ is η / τ (its
    prior N(0, 1) when τ = 0).

    Returns:
        (E mean, ξ mean, (var E, cov(E, ξ), var ξ)), unclipped.
    """
    M, R, dM, _ = model_jacobians(emu, star.theta)
    return _posterior2(emu, star, M, R, dM, prior_mean, prior_err)


def _update1(emu, star, M, R, dM, prior_mean, prior_err):
    """Eq. 8-9 from one Jacobian pass: m_pred = M + μ̂, C_pred without the R direction
    (Ê = σ_E = 0), the magnitudes linearised in E at the prior mean (exact for linear
    extinction). Returns (E mean, its precision, C_pred, ∂A/∂E at E₀, residual at E₀)."""
    a0, slope0 = reddening(emu, R, prior_mean)
    r0 = residual(M + a0, star)
    cov0 = lowrank_cov(
        dM, star.theta_chol, jnp.zeros_like(R), jnp.ones_like(star.ebv_err), star.sigma_mu,
        star.has_parallax, star.mag_err, star.mask,
    )  # fmt: skip
    q = quadform(cov0, jnp.stack([slope0 * star.mask, r0], axis=1))
    prec = q[0, 0] + 1.0 / prior_err**2
    return prior_mean + q[0, 1] / prec, prec, cov0, slope0, r0


def _posterior2(emu, star, M, R, dM, prior_mean, prior_err):
    """:func:`extinction_posterior` from one Jacobian pass."""
    e1, _, cov0, slope0, r0 = _update1(emu, star, M, R, dM, prior_mean, prior_err)

    def solve(tau):
        x = variation_direction(emu, star.theta, tau, R) * star.mask  # τ ∂A/∂η: coef. η/τ
        q = quadform(cov0, jnp.stack([slope0 * star.mask, x, r0], axis=1))
        return _gauss2(q[0, 0] + 1.0 / prior_err**2, q[0, 1], q[1, 1] + 1.0, q[0, 2], q[1, 2])

    # η's prior scale: the larger of the prior's and the 1-D update's E (a ξ R₁ with a
    # part along R can pull the 1-D E to 0), then once more at the 2-D solution's E
    tau = jnp.maximum(jnp.maximum(e1, prior_mean), 0.0)
    tau = jnp.maximum(prior_mean + solve(tau)[2][0], 0.0)
    _, _, (de, c), (v11, v12, v22) = solve(tau)
    e = prior_mean + de
    ok = (e > 1e-3) & (tau > 1e-3)
    u = jnp.where(ok, tau / jnp.where(ok, e, 1.0), 1.0)  # ξ = (η/τ)(τ/E)
    xi = u * c
    de_xi = jnp.where(ok, xi / jnp.where(ok, e, 1.0), 0.0)  # ∂ξ/∂E = -ξ/E, negated
    var_xi = u**2 * v22 - 2.0 * u * de_xi * v12 + de_xi**2 * v11
    return e, xi, (v11, u * v12 - de_xi * v11, var_xi)


class ThetaMixture(NamedTuple):
    """One star's likelihood as a mixture over the components of its posterior θ.

    The star's :class:`StarData` then carries a leading axis of L components: θ is each
    component's mean, ``theta_chol`` its covariance's Cholesky factor, the rest repeated.

    Attributes:
        frozen: (L, …) each component's frozen covariance (a whitening W or a
            :class:`ReddeningProfile`).
        log_weight: (L,) log w_l - ½ log|C_l| (:func:`frozen_terms` gives log|C_l|).
    """

    frozen: object
    log_weight: jnp.ndarray


def chi2_mixture(emu: Emulator, star: StarData, mixture: ThetaMixture):
    """-2 log Σ_l exp(log_weight_l - χ²_l / 2) of one star whose θ is a mixture of L
    Gaussians (:class:`ThetaMixture`; its leaves and ``star``'s have the leading L axis):
    p(m | θ̂) = ∫ p(m | θ) p(θ | θ̂) dθ ≈ Σ_l w_l N(m; f(m_l), C + J S_l Jᵀ). With one
    component and log_weight 0 it is that component's χ²."""
    chi = jax.vmap(chi2_frozen, in_axes=(None, 0, 0))(emu, star, mixture.frozen)
    return -2.0 * jax.nn.logsumexp(mixture.log_weight - 0.5 * chi)


def chi2_frozen(emu: Emulator, star: StarData, frozen):
    """The training objective's per-star χ²: :func:`chi2_mixture` for a
    :class:`ThetaMixture`, :func:`chi2_profiled` for a :class:`ReddeningProfile`, else
    :func:`chi2_whitened` with the whitening ``frozen``."""
    if isinstance(frozen, ThetaMixture):
        return chi2_mixture(emu, star, frozen)
    if isinstance(frozen, ReddeningProfile):
        return chi2_profiled(emu, star, frozen)
    return chi2_whitened(emu, star, frozen)


def model_jacobians(emu: Emulator, theta):
    """(M, R, ∂M/∂θ, ∂R/∂θ) of one star from ONE forward-mode Jacobian pass.

    M are the zero-extinction magnitudes; for any reddening E the Jacobian of M + E R is
    ∂M/∂θ + E ∂R/∂θ, so a reddening update and the covariance at the new E can share it.
    """

    def f(t):
        bm, R = emu(t)
        out = (_bm_to_m(bm), R)
        return out, out

    (dM, dR), (M, R) = jax.jacfwd(f, has_aux=True)(theta)
    return M, R, dM, dR


def linearized_parallax(emu: Emulator, star: StarData, plx, plx_err):
    """(μ̃, σ_μ): the parallax likelihood in ϖ, linearised at the model's distance.

    Inverting ϖ̂ (μ̂ = 10 - 5 log10 ϖ̂) needs ϖ̂ > 0 and, after a cut on ϖ̂/σ_ϖ, is biased
    towards small distances (stars near the cut scattered up into it), more so the
    farther and the more reddened the star: a bias the fit then puts into R and M. The
    Gaussian N(ϖ̂ | ϖ(μ), σ_ϖ) has no such bias and takes every parallax, negative ones
    included. Linearising ϖ(μ) = 10^((10 - μ)/5) at the model's photometric distance
    modulus p (precision-weighted mean of m̂ - M - E R over the observed bands; E the
    star's current ``ebv``) gives a Gaussian in μ with

        μ̃ = p - (5 / ln 10)(ϖ̂ / ϖ_p - 1),   σ_μ = (5 / ln 10) σ_ϖ / ϖ_p,

    which replaces (μ̂, σ_μ) in :class:`StarData`. Rebuilt once per training iteration,
    like the covariance, it converges to the exact ϖ-space likelihood as the model
    does (to first order in μ - p).

    Args:
        plx, plx_err: ϖ̂ and σ_ϖ (mas); NaN or σ_ϖ ≤ 0 means no parallax.

    Returns:
        (mu, sigma_mu, has_parallax) for :class:`StarData`.
    """
    m, _ = model_magnitudes(emu, star.theta, star.ebv)
    w = star.mask / star.mag_err**2
    p = jnp.sum(w * (star.mag - m)) / jnp.maximum(jnp.sum(w), 1e-30)
    has = jnp.isfinite(plx) & jnp.isfinite(plx_err) & (plx_err > 0) & (jnp.sum(w) > 0)
    plx_p = 10.0 ** ((10.0 - p) / 5.0)
    mu = p - LN10_5 * (jnp.where(has, plx, plx_p) / plx_p - 1.0)
    sigma_mu = LN10_5 * jnp.where(has, plx_err, 1.0) / plx_p
    return (
        jnp.where(has, mu, 0.0),
        jnp.where(has, sigma_mu, 1.0),
        has.astype(star.mag.dtype),
    )


def rebuild_star(emu: Emulator, star: StarData, prior_mean, prior_err, consts):
    """The end-of-iteration pass of §4 for one star with a single Jacobian.

    Equivalent to :func:`reddening_posterior` (Eq. 8-9), then clipping ⟨E′⟩ to
    [lo, hi] and flooring σ²_E′ at floor² + (frac E′)², then :func:`frozen_whitening`
    and :func:`chi2_whitened` at (E′, σ_E′) — but J is computed once and reused
    (J = ∂M/∂θ for the reddening posterior, ∂M/∂θ + E′ ∂R/∂θ for the new covariance).

    With K = 2 the update is :func:`extinction_posterior`'s (E, ξ) jointly (E′ and σ_E′
    its E marginal), and χ² has ξ ~ N(0, 1) integrated out: the covariance gains
    x xᵀ with x = :func:`variation_direction` at E′ (W stays without it).

    Args:
        consts: (lo, hi, floor, frac).

    Returns:
        (E′, σ_E′, W, χ², R) with W the frozen whitening at E′ and R = R(θ̂).
    """
    lo, hi, floor, frac = consts
    M, R, dM, dR = model_jacobians(emu, star.theta)
    if emu.n_components == 2:  # (E, ξ) jointly; E's marginal goes on
        e, _, (var, _, _) = _posterior2(emu, star, M, R, dM, prior_mean, prior_err)
    else:
        e, prec = _update1(emu, star, M, R, dM, prior_mean, prior_err)[:2]
        var = 1.0 / prec
    e = jnp.clip(e, lo, hi)
    var = jnp.maximum(var, floor**2 + (frac * e) ** 2)
    e_err = jnp.sqrt(var)
    a, slope = reddening(emu, R, e)
    # ∂A/∂θ = ∂A/∂R ∂R/∂θ with ∂A/∂R = E (1 + 2 c E R)
    dA = (e * (1.0 + 2.0 * emu.extinction.curvature * e * R))[:, None] * dR
    cov = lowrank_cov(
        dM + dA, star.theta_chol, slope, e_err, star.sigma_mu, star.has_parallax,
        star.mag_err, star.mask,
    )  # fmt: skip
    W = whiten(cov)
    r = residual(M + a, star)
    wr = W.T @ r
    chi = jnp.sum(cov.dinv * r**2) - jnp.sum(wr**2)
    if emu.n_components == 2:  # ξ ~ N(0, 1) marginalised (Sherman-Morrison)
        x = variation_direction(emu, star.theta, e, R) * star.mask
        wx = W.T @ x
        xr = jnp.sum(cov.dinv * x * r) - jnp.sum(wx * wr)
        xx = jnp.sum(cov.dinv * x**2) - jnp.sum(wx**2)
        chi = chi - xr**2 / (1.0 + xx)
    return e, e_err, W, chi, R
