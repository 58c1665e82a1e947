"""The likelihood (Eq. 3-9, 18) against slow dense NumPy references, gradients, batching."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import (
    dense_chi2,
    dense_fitted_scores,
    dense_mixture_chi2,
    dense_profiled_chi2,
    dense_reddening_posterior,
    dense_scores,
    np_weights,
    random_emulator,
    random_stars,
    star,
)
from jax.test_util import check_grads

from bayesdsm.emulator import emulator_arrays, emulator_from_arrays
from bayesdsm.likelihood import (
    ReddeningProfile,
    StarData,
    ThetaMixture,
    chi2,
    chi2_mixture,
    chi2_profiled,
    chi2_whitened,
    colour_scores,
    dof,
    frozen_terms,
    frozen_whitening,
    linearized_parallax,
    model_magnitudes,
    n_components,
    reddening_posterior,
)

N_STARS = 24


@pytest.fixture
def setup(key, x64):
    emu = random_emulator(key, jnp.float64)
    stars = random_stars(np.random.default_rng(7), N_STARS)
    # cover the edge cases: no parallax, every band observed, a single colour
    stars.has_parallax[:3] = 0.0
    stars.mask[3] = 1.0
    stars.mask[4] = 0.0
    stars.mask[4, [0, 5]] = 1.0
    stars.mag_err[4] = np.where(stars.mask[4] > 0, stars.mag_err[4], 1.0)
    stars.mag[4] = np.where(stars.mask[4] > 0, stars.mag[4], 0.0)
    return emu, stars


def test_chi2_matches_dense_reference(setup):
    emu, stars = setup
    w = np_weights(emu)
    fn = jax.jit(chi2)
    for i in range(N_STARS):
        s = star(stars, i)
        got = float(fn(emu, jax.tree_util.tree_map(jnp.asarray, s)))
        want = dense_chi2(w, s)
        assert got == pytest.approx(want, rel=1e-10), i


def test_batched_equals_per_star(setup):
    emu, stars = setup
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    batched = jax.jit(jax.vmap(chi2, in_axes=(None, 0)))(emu, jstars)
    single = jax.jit(chi2)
    for i in range(N_STARS):
        s = jax.tree_util.tree_map(lambda a, i=i: a[i], jstars)
        np.testing.assert_allclose(batched[i], single(emu, s), rtol=1e-12)


def test_whitened_chi2_equals_chi2_at_the_snapshot(setup):
    emu, stars = setup
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    W = jax.jit(jax.vmap(frozen_whitening, in_axes=(None, 0)))(emu, jstars)
    a = jax.jit(jax.vmap(chi2_whitened, in_axes=(None, 0, 0)))(emu, jstars, W)
    b = jax.jit(jax.vmap(chi2, in_axes=(None, 0)))(emu, jstars)
    np.testing.assert_allclose(a, b, rtol=1e-10)


def test_profiled_chi2_matches_a_numerical_minimisation_over_E(setup):
    emu, stars = setup
    w = np_weights(emu)
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    W = jax.jit(jax.vmap(partial_whitening, in_axes=(None, 0)))(emu, jstars)
    prior_mean = 0.2 + 0.02 * np.arange(N_STARS)
    prior_err = 0.03 + 0.01 * np.arange(N_STARS)
    frozen = ReddeningProfile(W, jnp.asarray(prior_mean), jnp.asarray(prior_err))
    got = jax.jit(jax.vmap(chi2_profiled, in_axes=(None, 0, 0)))(emu, jstars, frozen)
    for i in range(N_STARS):
        want = dense_profiled_chi2(w, star(stars, i), prior_mean[i], prior_err[i])
        assert float(got[i]) == pytest.approx(want, rel=1e-7, abs=1e-9), i


def test_profiled_chi2_with_a_sharp_prior_is_chi2_at_the_prior_mean(setup):
    """σ₀ → 0 pins E at E₀: χ² of the frozen covariance (no R term) at E₀."""
    emu, stars = setup
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    W = jax.jit(jax.vmap(partial_whitening, in_axes=(None, 0)))(emu, jstars)
    e0 = jnp.full(N_STARS, 0.4)
    frozen = ReddeningProfile(W, e0, jnp.full(N_STARS, 1e-9))
    got = jax.jit(jax.vmap(chi2_profiled, in_axes=(None, 0, 0)))(emu, jstars, frozen)
    want = jax.jit(jax.vmap(chi2_whitened, in_axes=(None, 0, 0)))(emu, jstars._replace(ebv=e0), W)
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_profiled_chi2_is_invariant_along_the_reddening_scale(setup):
    """E → u E, R → R / u leaves A = E R, so the profile with the prior and E′ scaled
    by u must equal the original: the prior alone sets the scale."""
    emu, stars = setup
    u = 1.14
    arrays = dict(emulator_arrays(emu))
    arrays["R_bias"] = arrays["R_bias"] - np.log(u)
    emu_u = emulator_from_arrays(emu.config, arrays, jnp.float64)
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    scaled = jstars._replace(ebv=u * jstars.ebv)
    f = jax.jit(jax.vmap(partial_whitening, in_axes=(None, 0)))
    e0, s0 = jnp.full(N_STARS, 0.3), jnp.full(N_STARS, 0.05)
    prof = jax.jit(jax.vmap(chi2_profiled, in_axes=(None, 0, 0)))
    a = prof(emu, jstars, ReddeningProfile(f(emu, jstars), e0, s0))
    b = prof(emu_u, scaled, ReddeningProfile(f(emu_u, scaled), u * e0, u * s0))
    np.testing.assert_allclose(a, b, rtol=1e-9)
    # … and a prior on a different scale is a different objective
    c = prof(emu_u, scaled, ReddeningProfile(f(emu_u, scaled), e0, s0))
    assert np.max(np.abs(np.asarray(c - a))) > 1e-3


def partial_whitening(emu, s):
    """The frozen whitening at the star's E′ without the reddening direction."""
    return frozen_whitening(emu, s, gradients=True, extinction=False)


def test_mixture_chi2_matches_the_dense_mixture_likelihood(setup):
    """-2 log Σ w_l N_l against dense colour-space Gaussians, up to a constant per star
    (log|D| and 2π terms) that must not depend on the components or their weights."""
    emu, stars = setup
    w = np_weights(emu)
    rng = np.random.default_rng(3)
    fn = jax.jit(chi2_mixture)
    for i in range(8):
        s = star(stars, i)
        offsets = []
        for trial in range(3):
            n_comp = 1 + trial
            thetas = s.theta + rng.normal(size=(n_comp, 3)) * np.array([150.0, 0.3, 0.1])
            chols = np.linalg.cholesky(
                np.eye(3)[None]
                * np.array([80.0, 0.1, 0.05])[None, :] ** 2
                * rng.uniform(0.5, 2.0, (n_comp, 1, 1))
            )
            weights = rng.dirichlet(np.ones(n_comp))
            rows = StarData(*(np.repeat(np.asarray(a)[None], n_comp, axis=0) for a in s))
            rows = rows._replace(theta=thetas, theta_chol=chols)
            jrows = jax.tree_util.tree_map(jnp.asarray, rows)
            W, logdet = jax.vmap(frozen_terms, in_axes=(None, 0))(emu, jrows)
            log_w = jnp.log(jnp.asarray(weights)) - 0.5 * logdet
            got = float(fn(emu, jrows, ThetaMixture(W, log_w)))
            offsets.append(got - dense_mixture_chi2(w, s, weights, thetas, chols))
        np.testing.assert_allclose(offsets, offsets[0], rtol=0, atol=1e-7)


def test_one_component_mixture_is_its_chi2(setup):
    emu, stars = setup
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    W = jax.jit(jax.vmap(frozen_whitening, in_axes=(None, 0)))(emu, jstars)
    one = jax.tree_util.tree_map(lambda a: a[:, None], jstars)
    mix = ThetaMixture(W[:, None], jnp.zeros((N_STARS, 1)))
    got = jax.jit(jax.vmap(chi2_mixture, in_axes=(None, 0, 0)))(emu, one, mix)
    want = jax.jit(jax.vmap(chi2_whitened, in_axes=(None, 0, 0)))(emu, jstars, W)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_reddening_posterior_matches_dense(setup):
    emu, stars = setup
    w = np_weights(emu)
    fn = jax.jit(reddening_posterior)
    for i in range(N_STARS):
        s = star(stars, i)
        prior_mean, prior_err = 0.3 + 0.01 * i, 0.05 + 0.01 * i
        m, v = fn(emu, jax.tree_util.tree_map(jnp.asarray, s), prior_mean, prior_err)
        m_ref, v_ref = dense_reddening_posterior(w, s, prior_mean, prior_err)
        assert float(m) == pytest.approx(m_ref, rel=1e-10, abs=1e-12)
        assert float(v) == pytest.approx(v_ref, rel=1e-10)


@pytest.mark.parametrize(
    ("fit", "reference", "rtol"),
    [(False, dense_scores, 1e-10), (True, dense_fitted_scores, 1e-8)],
    ids=["prior_E", "fitted_E"],
)
def test_colour_scores_match_dense(setup, fit, reference, rtol):
    emu, stars = setup
    w = np_weights(emu)
    fn = jax.jit(functools.partial(colour_scores, fit_reddening=fit))
    for i in range(N_STARS):
        s = star(stars, i)
        got = np.asarray(fn(emu, jax.tree_util.tree_map(jnp.asarray, s)))
        want = reference(w, s)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=rtol)


def test_fitted_scores_are_standard_normal_for_honest_errors(key):
    """Stars drawn from the model with the errors they report, E from its prior.

    With Ê fitted to the same photometry (Fig. 12's recipe) the scores' 16/50/84th
    percentiles are -1/0/+1 within sampling error; scored with C_m at Ê they are not
    (the σ_E R term counts the uncertainty the fit has already absorbed).
    """
    rng = np.random.default_rng(11)
    n = 3000
    with jax.enable_x64(True):
        emu = random_emulator(key, jnp.float64)
        st = random_stars(rng, n, p_missing=0.2, p_parallax=1.0)
        true_theta = st.theta + np.einsum("nij,nj->ni", st.theta_chol, rng.normal(size=(n, 3)))
        prior, prior_err = rng.uniform(0.2, 0.8, n), rng.uniform(0.05, 0.2, n)
        ebv = prior + prior_err * rng.normal(size=n)
        M, R = jax.vmap(lambda t: model_magnitudes(emu, t, 0.0))(jnp.asarray(true_theta))
        mu = rng.uniform(8, 12, n)
        mag = np.asarray(M) + np.asarray(R) * ebv[:, None] + mu[:, None]
        mag = mag + st.mag_err * rng.normal(size=mag.shape)
        plx_mu = mu + st.sigma_mu * rng.normal(size=n)
        st = st._replace(mag=np.where(st.mask > 0, mag, 0.0), mu=plx_mu, ebv=prior,
                         ebv_err=prior_err)  # fmt: skip
        jst = jax.tree_util.tree_map(jnp.asarray, st)
        fitted = jax.jit(jax.vmap(lambda s: colour_scores(emu, s, fit_reddening=True)))(jst)
        post = jax.vmap(lambda s: reddening_posterior(emu, s, s.ebv, s.ebv_err))(jst)
        at_post = jax.jit(jax.vmap(lambda s, e, v: colour_scores(emu, s, e, jnp.sqrt(v))))(
            jst, jnp.maximum(post[0], 0.0), post[1]
        )
    p_fit = np.nanpercentile(np.asarray(fitted), [16, 50, 84])
    p_cm = np.nanpercentile(np.asarray(at_post), [16, 50, 84])
    print("fitted:", p_fit, "C_m at Ê:", p_cm)
    np.testing.assert_allclose(p_fit, [-1.0, 0.0, 1.0], atol=0.06)
    assert p_cm[2] - p_cm[0] < 1.9, "C_m at the fitted Ê gives too-narrow scores"


def test_float32_agrees_with_float64(key):
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        emu64 = random_emulator(key, jnp.float64)
        s64 = jax.tree_util.tree_map(jnp.asarray, random_stars(rng, 16))
        want = np.asarray(jax.jit(jax.vmap(chi2, in_axes=(None, 0)))(emu64, s64))
        arrays = {k: np.asarray(v) for k, v in emulator_arrays(emu64).items()}
    emu32 = emulator_from_arrays(emu64.config, arrays, jnp.float32)
    s32 = StarData(*(jnp.asarray(np.asarray(a), jnp.float32) for a in s64))
    got = jax.jit(jax.vmap(chi2, in_axes=(None, 0)))(emu32, s32)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=2e-3)


def _params_and_rebuild(emu):
    arrays = dict(emulator_arrays(emu))
    fixed = {k: arrays.pop(k) for k in ("theta_median", "theta_std")}

    def rebuild(params):
        return emulator_from_arrays(emu.config, {**params, **fixed})

    return arrays, rebuild


def test_chi2_gradients_wrt_weights(setup):
    emu, stars = setup
    params, rebuild = _params_and_rebuild(emu)
    jstars = jax.tree_util.tree_map(lambda a: jnp.asarray(a[:4]), stars)

    def f(p):
        return jnp.sum(jax.vmap(chi2, in_axes=(None, 0))(rebuild(p), jstars))

    check_grads(jax.jit(f), (params,), order=1, modes=["rev"], eps=1e-6)


def test_chi2_whitened_gradients_wrt_weights(setup):
    emu, stars = setup
    params, rebuild = _params_and_rebuild(emu)
    jstars = jax.tree_util.tree_map(lambda a: jnp.asarray(a[:6]), stars)
    W = jax.jit(jax.vmap(frozen_whitening, in_axes=(None, 0)))(emu, jstars)

    def f(p):
        return jnp.sum(jax.vmap(chi2_whitened, in_axes=(None, 0, 0))(rebuild(p), jstars, W))

    check_grads(jax.jit(f), (params,), order=1, modes=["rev", "fwd"], eps=1e-6)


@pytest.mark.parametrize(
    ("observed", "parallax", "components", "dof_"),
    [
        # (observed band indices, parallax used, modelled components, dof)
        (range(13), 1.0, 13, 12),
        (range(13), 0.0, 12, 11),
        ((0, 1, 2), 1.0, 3, 2),
        ((0, 1), 0.0, 1, 0),  # one colour, no parallax: nothing to test
        ((0,), 1.0, 1, 0),  # M_G only
        ((0,), 0.0, 0, -1),
        ((), 1.0, 0, -1),  # nothing observed
    ],
)
def test_components_and_dof(observed, parallax, components, dof_):
    mask = np.zeros(13)
    mask[list(observed)] = 1.0
    s = random_stars(np.random.default_rng(0), 1, np.float32)
    s = star(s._replace(mask=mask[None], has_parallax=np.array([parallax])), 0)
    assert float(n_components(s)) == components
    assert float(dof(s)) == dof_


def test_star_without_colours_does_not_poison_the_batch(setup):
    emu, stars = setup
    stars.mask[0] = 0.0  # nothing observed at all
    stars.mask[1] = 0.0
    stars.mask[1, 0] = 1.0  # only G
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)

    def loss(e):
        return jnp.sum(jax.vmap(chi2, in_axes=(None, 0))(e, jstars))

    c = jax.jit(jax.vmap(chi2, in_axes=(None, 0)))(emu, jstars)
    assert np.all(np.isfinite(c))
    assert float(c[0]) == 0.0
    grads = jax.jit(jax.grad(loss))(emu)
    assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


def test_linearized_parallax_known_values(key):
    """At ϖ̂ = ϖ(p) it is the inverted parallax; it is linear in ϖ̂ with slope -σ_μ/σ_ϖ."""
    with jax.enable_x64(True):
        emu = random_emulator(key, jnp.float64)
        s = jax.tree_util.tree_map(jnp.asarray, star(random_stars(np.random.default_rng(5), 1), 0))
        m, _ = model_magnitudes(emu, s.theta, s.ebv)
        w = s.mask / s.mag_err**2
        p = float(jnp.sum(w * (s.mag - m)) / jnp.sum(w))  # the photometric distance modulus
        plx_p = 10 ** ((10 - p) / 5)
        f = jax.jit(linearized_parallax)
        mu, sig, has = f(emu, s, plx_p, 0.1 * plx_p)
        assert float(has) == 1.0
        assert float(mu) == pytest.approx(p, abs=1e-10)
        assert float(sig) == pytest.approx(5 / np.log(10) * 0.1, rel=1e-12)
        mu2, sig2, _ = f(emu, s, -0.5 * plx_p, 0.1 * plx_p)  # negative parallaxes are used
        assert float(sig2) == pytest.approx(float(sig), rel=1e-12)
        assert float(mu2 - mu) == pytest.approx(1.5 * 5 / np.log(10), rel=1e-12)
        _, _, none = f(emu, s, np.nan, 0.1)
        assert float(none) == 0.0


def test_linearized_parallax_is_unbiased_where_inversion_after_a_snr_cut_is_not():
    """Stars ∝ d² in volume, σ_ϖ fixed: μ̂ = 10 - 5 log10 ϖ̂ of the stars with ϖ̂/σ_ϖ > 5
    is biased short (upward-scattered parallaxes pass the cut), while the linearised ϖ
    likelihood of all stars, at the true photometric distance, has mean pull 0."""
    rng = np.random.default_rng(2)
    n = 200_000
    d = 5000.0 * rng.uniform(size=n) ** (1 / 3)  # pc
    mu_true = 5 * np.log10(d) - 5
    sig = 0.05
    plx = 1000.0 / d + sig * rng.normal(size=n)
    # the linearisation of linearized_parallax at p = μ_true, in closed form
    plx_p = 10 ** ((10 - mu_true) / 5)
    mu_lin = mu_true - 5 / np.log(10) * (plx / plx_p - 1)
    pull_lin = (mu_lin - mu_true) / (5 / np.log(10) * sig / plx_p)
    cut = plx / sig > 5
    mu_inv = 10 - 5 * np.log10(plx[cut])
    pull_inv = (mu_inv - mu_true[cut]) / (5 / np.log(10) * sig / plx[cut])
    assert abs(pull_lin.mean()) < 5 * pull_lin.std() / np.sqrt(n)
    assert pull_inv.mean() < -0.1


def test_reddening_posterior_with_curvature(key):
    """Noise-free photometry of a curved-extinction model: the Eq. 8-9 estimate,
    linearised at the prior mean, is exact there and second-order close nearby; the
    linear model's estimate of the same photometry is not."""
    from bayesdsm.emulator import emulator_arrays, emulator_from_arrays

    with jax.enable_x64(True):
        emu = random_emulator(key, jnp.float64)
        s = jax.tree_util.tree_map(jnp.asarray, star(random_stars(np.random.default_rng(8), 1), 0))
        s = s._replace(mask=jnp.ones_like(s.mask), mag_err=jnp.full_like(s.mag_err, 0.02))
        R = emu(s.theta)[1]
        curved = emulator_from_arrays(
            emu.config,
            {**emulator_arrays(emu), "R_curvature": jnp.full_like(R, -0.04)},
            jnp.float64,
        )
        e_true = 0.6
        m, _ = model_magnitudes(curved, s.theta, e_true)
        s = s._replace(mag=m + s.mu * s.has_parallax)
        f = jax.jit(reddening_posterior)
        at_truth, _ = f(curved, s, e_true, 10.0)
        near, _ = f(curved, s, e_true - 0.1, 10.0)
        linear, _ = f(emu, s, e_true - 0.1, 10.0)
    assert float(at_truth) == pytest.approx(e_true, abs=1e-8)
    assert abs(float(near) - e_true) < 0.05 * 0.1
    assert abs(float(linear) - e_true) > 5 * abs(float(near) - e_true)
