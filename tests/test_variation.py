"""The second extinction component (K = 2, issue 20): the emulator, the likelihood's
ξ-marginal terms and the 2-D reddening update against dense NumPy references, the sign
convention, model files and ``predict``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import b_mat, dense_colour_system, forward, np_weights, random_stars, star
from scipy.optimize import minimize_scalar

from bayesdsm.emulator import (
    EmulatorConfig,
    emulator_arrays,
    emulator_from_arrays,
    extinction_variation,
    extinction_vector,
    init_emulator,
)
from bayesdsm.errors import ConfigError, ModelFileError
from bayesdsm.likelihood import (
    ReddeningProfile,
    chi2,
    chi2_profiled,
    extinction_posterior,
    frozen_whitening,
    rebuild_star,
)
from bayesdsm.variation import angle_deg, orient_variation, orthogonal_part

N_STARS = 16


def k2_emulator(key, dtype=jnp.float64, r1_scale=0.3):
    """A random K = 2 emulator: the K = 1 reference's weights plus a random R₁ layer."""
    from _reference import random_emulator

    emu1 = random_emulator(key, dtype)
    arrays = dict(emulator_arrays(emu1))
    k1, k2 = jax.random.split(jax.random.fold_in(key, 2))
    arrays["R1_kernel"] = 0.05 * jax.random.normal(k1, (13, 3), dtype)
    arrays["R1_bias"] = r1_scale * jax.random.normal(k2, (13,), dtype)
    cfg = dataclasses.replace(emu1.config, n_components=2)
    return emulator_from_arrays(cfg, arrays, dtype)


def np_r1(w, theta):
    """R₁ = R ρ with ρ = W₁ θ_n + b₁, in NumPy."""
    x = (np.asarray(theta, np.float64) - w["theta_median"]) / w["theta_std"]
    return forward(w, theta)[1] * (w["R1_kernel"] @ x + w["R1_bias"])


@pytest.fixture
def setup(key, x64):
    emu = k2_emulator(key)
    stars = random_stars(np.random.default_rng(11), N_STARS)
    stars.has_parallax[:] = 1.0  # the dense references need a finite 𝟙 direction
    return emu, stars


def test_k1_configs_and_emulators_have_no_variation(key):
    emu = init_emulator(key)
    assert emu.n_components == 1 and emu.variation is None
    assert not any(k.startswith("R1_") for k in emulator_arrays(emu))
    with pytest.raises(ConfigError, match="one extinction component"):
        extinction_variation(emu, jnp.asarray([5000.0, 4.0, 0.0]))
    with pytest.raises(ConfigError, match="must be 1 or 2"):
        EmulatorConfig(n_components=3)


def test_k2_layer_is_linear_in_theta_n_and_round_trips(key, x64):
    emu = k2_emulator(key)
    w = np_weights(emu)
    th = np.array([5100.0, 3.9, -0.3])
    np.testing.assert_allclose(extinction_variation(emu, jnp.asarray(th)), np_r1(w, th), 1e-12)
    _, R0, _, _ = forward(w, th)
    np.testing.assert_allclose(
        extinction_vector(emu, jnp.asarray(th), 0.7), R0 + 0.7 * np_r1(w, th), rtol=1e-12
    )
    again = emulator_from_arrays(emu.config, emulator_arrays(emu), jnp.float64)
    assert again.n_components == 2
    with pytest.raises(ConfigError, match="R1_kernel"):
        bad = {**emulator_arrays(emu), "R1_kernel": np.zeros((13, 2))}
        emulator_from_arrays(emu.config, bad)
    with pytest.raises(ConfigError, match="n_components=1"):
        emulator_from_arrays(dataclasses.replace(emu.config, n_components=1), emulator_arrays(emu))


def _dense_marginal(w, s, ebv, ebv_err):
    """(Δc, C_c + B x xᵀ Bᵀ, used): colour space at E = ``ebv`` with ξ ~ N(0, 1) along
    x = E R₁ integrated (linear extinction)."""
    dc, Cc, used, _ = dense_colour_system(w, s, ebv=ebv, ebv_err=ebv_err)
    bx = b_mat(13) @ (max(ebv, 0.0) * np_r1(w, s.theta))
    return dc, Cc + np.outer(bx, bx), used


def test_chi2_integrates_xi_like_the_dense_reference(setup):
    emu, stars = setup
    w = np_weights(emu)
    got = jax.jit(jax.vmap(chi2, in_axes=(None, 0)))(
        emu, jax.tree_util.tree_map(jnp.asarray, stars)
    )
    for i in range(N_STARS):
        s = star(stars, i)
        dc, C, used = _dense_marginal(w, s, float(s.ebv), float(s.ebv_err))
        d, C = dc[used], C[np.ix_(used, used)]
        assert float(got[i]) == pytest.approx(d @ np.linalg.solve(C, d), rel=1e-9), i


def test_profiled_objective_is_profile_over_E_plus_marginal_over_xi(setup):
    """χ²_prof = min_E [χ²(E) with ξ integrated + (E − E₀)²/σ₀²] + log|C + σ₀² s sᵀ + x xᵀ|
    − log|C + σ₀² s sᵀ|, by a numerical minimisation and dense determinants."""
    emu, stars = setup
    w = np_weights(emu)
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    f = jax.vmap(lambda s: frozen_whitening(emu, s, gradients=True, extinction=False))
    W = jax.jit(f)(jstars)
    e0 = 0.2 + 0.03 * np.arange(N_STARS)
    s0 = 0.05 + 0.01 * np.arange(N_STARS)
    frozen = ReddeningProfile(W, jnp.asarray(e0), jnp.asarray(s0))
    got = jax.jit(jax.vmap(chi2_profiled, in_axes=(None, 0, 0)))(emu, jstars, frozen)
    for i in range(N_STARS):
        s = star(stars, i)
        e_lin = float(s.ebv)
        dc0, C, used = _dense_marginal(w, s, e_lin, 0.0)
        BR = b_mat(13) @ forward(w, s.theta)[1]
        Cu = C[np.ix_(used, used)]

        def obj(e, dc0=dc0, BR=BR, Cu=Cu, used=used, i=i, e_lin=e_lin):
            d = (dc0 - (e - e_lin) * BR)[used]
            return d @ np.linalg.solve(Cu, d) + (e - e0[i]) ** 2 / s0[i] ** 2

        quad = minimize_scalar(obj, bracket=(e0[i] - 1, e0[i] + 1), tol=1e-12).fun
        _, Cc, _, _ = dense_colour_system(w, s, ebv=e_lin, ebv_err=0.0)
        CE = (Cc + s0[i] ** 2 * np.outer(BR, BR))[np.ix_(used, used)]
        logdet = np.linalg.slogdet(CE + (C - Cc)[np.ix_(used, used)])[1] - np.linalg.slogdet(CE)[1]
        assert float(got[i]) == pytest.approx(quad + logdet, rel=1e-7, abs=1e-8), i


def test_profiled_objective_prefers_the_true_spread_of_r1(key, x64):
    """The ξ log-determinant pins R₁'s length: for stars made with ξ ~ N(0, 1) along R₁,
    the summed objective is smallest near the true scale (without it, larger is better)."""
    emu = k2_emulator(key, r1_scale=0.4)
    rng = np.random.default_rng(5)
    stars = random_stars(rng, 400, p_missing=0.0, p_parallax=1.0)
    stars = stars._replace(ebv=rng.uniform(0.5, 1.5, 400), ebv_err=np.full(400, 0.05))
    js = jax.tree_util.tree_map(jnp.asarray, stars)
    m0 = jax.vmap(lambda s: _noisy_mags(emu, s))(js)
    xi = rng.normal(size=400)
    r1 = jax.vmap(extinction_variation, in_axes=(None, 0))(emu, js.theta)
    mag = m0 + (js.ebv * xi)[:, None] * r1 + rng.normal(size=(400, 13)) * stars.mag_err
    js = js._replace(mag=jnp.asarray(mag), theta_chol=js.theta_chol * 1e-6)
    W = jax.vmap(lambda s: frozen_whitening(emu, s, gradients=True, extinction=False))(js)
    frozen = ReddeningProfile(W, js.ebv, js.ebv_err)

    def total(u):
        a = dict(emulator_arrays(emu))
        a["R1_kernel"], a["R1_bias"] = u * a["R1_kernel"], u * a["R1_bias"]
        e = emulator_from_arrays(emu.config, a, jnp.float64)
        return float(jnp.sum(jax.vmap(chi2_profiled, in_axes=(None, 0, 0))(e, js, frozen)))

    scales = [0.5, 0.8, 1.0, 1.25, 2.0]
    vals = [total(u) for u in scales]
    assert int(np.argmin(vals)) in (1, 2, 3), vals
    assert vals[0] > vals[2] and vals[-1] > vals[2]


def _noisy_mags(emu, s):
    """M(θ) + μ + E R₀(θ) of one star (no noise: the caller adds it)."""
    from bayesdsm.likelihood import model_magnitudes

    return model_magnitudes(emu, s.theta, s.ebv)[0] + s.mu


def test_extinction_posterior_matches_dense_linear_gaussian(setup):
    emu, stars = setup
    w = np_weights(emu)
    # photometry from the model at E = prior + 0.05, ξ ~ N(0, 1); some with E ≤ 0 (τ = 0)
    rng = np.random.default_rng(2)
    e_true = np.linspace(-0.3, 0.9, N_STARS) + 0.05
    xi_true = rng.normal(size=N_STARS)
    m = [
        _mag_k2(emu, jnp.asarray(t), max(e, 0.0), x)
        for t, e, x in zip(stars.theta, e_true, xi_true)
    ]
    mag = np.asarray(m) + stars.mu[:, None] + 0.03 * rng.normal(size=(N_STARS, 13))
    stars = stars._replace(mag=np.where(stars.mask > 0, mag, 0.0), ebv=e_true - 0.05)
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    post = jax.jit(jax.vmap(extinction_posterior, in_axes=(None, 0, 0, 0)))
    e, xi, (ve, cexi, vxi) = post(emu, jstars, jstars.ebv, jstars.ebv_err)
    n_checked = 0
    for i in range(N_STARS):
        s = star(stars, i)
        e0, s0 = float(s.ebv), float(s.ebv_err)
        dc, C, used, R = dense_colour_system(w, s, ebv=0.0, ebv_err=0.0)
        B = b_mat(13)
        Cu, br = C[np.ix_(used, used)], (B @ R)[used]
        d = (dc - e0 * B @ R)[used]
        e1 = e0 + br @ np.linalg.solve(Cu, d) / (br @ np.linalg.solve(Cu, br) + s0**-2)
        # linear in (E, η = E ξ) with η's prior N(0, τ²); τ from max(E₀, e1), then from
        # the first solve's E
        A = np.stack([B @ R, B @ np_r1(w, s.theta)], 1)[used]

        def solve(tau, A=A, Cu=Cu, d=d, s0=s0):
            P = np.diag([s0**-2, 1.0 / tau**2]) + A.T @ np.linalg.solve(Cu, A)
            cov = np.linalg.inv(P)
            return cov, cov @ (A.T @ np.linalg.solve(Cu, d))

        tau = max(e1, e0, 0.0)
        if tau > 1e-3:
            tau = max(e0 + solve(tau)[1][0], 0.0)
        if tau <= 1e-3:  # no scale for ξ: its prior
            assert float(xi[i]) == pytest.approx(0.0, abs=1e-9) and float(vxi[i]) == 1.0
            continue
        cov, (de, eta) = solve(tau)
        E = e0 + de
        if E <= 1e-3:
            continue
        J = np.array([[1.0, 0.0], [-eta / E**2, 1.0 / E]])  # (E, η) -> (E, ξ = η / E)
        cov_xi = J @ cov @ J.T
        np.testing.assert_allclose([e[i], xi[i]], [E, eta / E], rtol=1e-8, atol=1e-10)
        want = cov_xi[[0, 0, 1], [0, 1, 1]]
        np.testing.assert_allclose([ve[i], cexi[i], vxi[i]], want, rtol=1e-7, atol=1e-12)
        n_checked += 1
    assert n_checked >= 10


def test_extinction_posterior_is_calibrated_on_stars_drawn_from_the_model(key, x64):
    """ξ drawn from N(0, 1), E from its prior, photometry from the K = 2 model with its
    errors: the posterior z-scores of E and ξ have mean 0 and s.d. 1 (θ̂ exact)."""
    emu = k2_emulator(key, r1_scale=0.4)
    rng = np.random.default_rng(3)
    n = 3000
    stars = random_stars(rng, n, p_missing=0.1, p_parallax=0.8)
    e0 = rng.uniform(0.3, 1.5, n)
    s0 = np.full(n, 0.1)
    e_true = e0 + s0 * rng.normal(size=n)
    xi = rng.normal(size=n)
    js = jax.tree_util.tree_map(jnp.asarray, stars)._replace(theta_chol=jnp.zeros((n, 3, 3)))
    th = js.theta
    m = jax.vmap(lambda t, e, x: _mag_k2(emu, t, e, x))(th, jnp.asarray(e_true), jnp.asarray(xi))
    mu = np.where(stars.has_parallax > 0, stars.mu, 10.0)
    noise = rng.normal(size=(n, 13)) * stars.mag_err
    mag = np.where(stars.mask > 0, np.asarray(m) + mu[:, None] + noise, 0.0)
    js = js._replace(mag=jnp.asarray(mag), sigma_mu=jnp.full(n, 1e-4))
    js = js._replace(mu=jnp.asarray(mu))
    post = jax.jit(jax.vmap(extinction_posterior, in_axes=(None, 0, 0, 0)))
    e, x, (ve, _, vx) = post(emu, js, jnp.asarray(e0), jnp.asarray(s0))
    for est, var, truth in ((e, ve, e_true), (x, vx, xi)):
        z = (np.asarray(est) - truth) / np.sqrt(np.asarray(var))
        assert abs(np.mean(z)) < 0.08 and 0.9 < np.std(z) < 1.12, (np.mean(z), np.std(z))
    assert np.median(np.sqrt(vx)) < 0.8  # ξ is measured, not the prior


def _mag_k2(emu, theta, e, xi):
    from bayesdsm.emulator import absolute_magnitudes

    return absolute_magnitudes(emu, theta) + e * extinction_vector(emu, theta, xi)


def test_rebuild_star_k2_update_and_chi2(setup):
    """E′ is the 2-D posterior's E (clipped, floored); χ² has ξ integrated at E′."""
    emu, stars = setup
    w = np_weights(emu)
    jstars = jax.tree_util.tree_map(jnp.asarray, stars)
    consts = (0.0, 10.0, 0.02, 0.1)
    e0, s0 = jstars.ebv, jstars.ebv_err
    e_new, e_err, _, chi, _ = jax.jit(jax.vmap(rebuild_star, in_axes=(None, 0, 0, 0, None)))(
        emu, jstars, e0, s0, consts
    )
    e_post, _, (ve, _, _) = jax.vmap(extinction_posterior, in_axes=(None, 0, 0, 0))(
        emu, jstars, e0, s0
    )
    np.testing.assert_allclose(e_new, np.clip(e_post, 0.0, 10.0), rtol=1e-12)
    want_err = np.sqrt(np.maximum(ve, 0.02**2 + (0.1 * np.asarray(e_new)) ** 2))
    np.testing.assert_allclose(e_err, want_err, rtol=1e-10)
    for i in range(N_STARS):
        s = star(stars, i)
        dc, C, used = _dense_marginal(w, s, float(e_new[i]), float(e_err[i]))
        d, C = dc[used], C[np.ix_(used, used)]
        assert float(chi[i]) == pytest.approx(d @ np.linalg.solve(C, d), rel=1e-8), i


def test_orientation_rule_and_geometry(key, x64):
    emu = k2_emulator(key)
    th = emu.normalizer.median
    r0 = np.asarray(emu(th)[1])
    blue = int(np.argmax(r0))
    out = orient_variation(emu)
    perp = orthogonal_part(np.asarray(extinction_variation(out, th)), r0)
    assert perp[blue] <= 0
    assert np.dot(perp, r0) == pytest.approx(0.0, abs=1e-12)
    flipped = orient_variation(out)  # already oriented: unchanged
    np.testing.assert_array_equal(flipped.variation.bias, out.variation.bias)
    before = orthogonal_part(np.asarray(extinction_variation(emu, th)), r0)
    assert angle_deg(before, perp) == pytest.approx(0.0 if before[blue] <= 0 else 180.0, abs=1e-6)
    assert orient_variation(init_emulator(key)).variation is None


def test_model_file_stores_k_and_refuses_k3_and_bad_shapes(key, tmp_path):
    from bayesdsm.evaluate import predict_table
    from bayesdsm.model_file import StellarModel, load_model, read_header, save_model

    emu = k2_emulator(key, jnp.float32)
    path = save_model(StellarModel(emulator=emu), tmp_path / "k2.bdsm")
    assert read_header(path)["emulator"]["n_components"] == 2
    back = load_model(path)
    np.testing.assert_array_equal(back.emulator.variation.bias, np.asarray(emu.variation.bias))
    cols = predict_table(back, np.array([[5000.0, 4.0, 0.0], [6000.0, 4.3, -0.5]]))
    r1 = np.stack([cols[f"R1_{b}"] for b in emu.bands], 1)
    with jax.enable_x64(True):
        e64 = emu.astype(jnp.float64)
        want = jax.vmap(extinction_variation, in_axes=(None, 0))(
            e64, jnp.asarray([[5000.0, 4.0, 0.0], [6000.0, 4.3, -0.5]])
        )
    np.testing.assert_allclose(r1, want, rtol=1e-12)
    k1 = predict_table(init_emulator(key), np.array([[5000.0, 4.0, 0.0]]))
    assert not any(c.startswith("R1_") for c in k1)
    # a header claiming K = 3, and an R1 of the wrong shape: refused with a message
    edits = (
        (lambda h: h["emulator"].update(n_components=3), "n_components=3"),
        (lambda h: h["arrays"]["emulator/R1_kernel"].update(shape=[3, 13]), "R1_kernel"),
    )
    for edit, match in edits:
        bad = _rewrite_header(path, tmp_path / "bad.bdsm", edit)
        with pytest.raises(ModelFileError, match=match):
            load_model(bad)


def _rewrite_header(src, dst, edit):
    """A valid model file (layout of :mod:`bayesdsm.model_file`: magic, header length,
    JSON header, padding to 64 bytes, data, trailer with the SHA-256 of all before it)
    whose header is ``src``'s after ``edit``."""
    import hashlib
    import json
    import struct

    blob = src.read_bytes()
    (hlen,) = struct.unpack("<Q", blob[8:16])
    header = json.loads(blob[16 : 16 + hlen])
    start = 16 + hlen + (-(16 + hlen) % 64)
    data = blob[start : len(blob) - 40]
    edit(header)
    hb = json.dumps(header).encode()
    body = blob[:8] + struct.pack("<Q", len(hb)) + hb + b"\0" * (-(16 + len(hb)) % 64) + data
    dst.write_bytes(body + b"BDSMEND1" + hashlib.sha256(body).digest())
    return dst


def test_green2020_import_has_one_component(green2020_dir, tmp_path):
    from bayesdsm.evaluate import predict_table
    from bayesdsm.model_file import import_green2020, load_model, read_header, save_model

    model = import_green2020(green2020_dir)
    assert model.emulator.n_components == 1
    path = save_model(model, tmp_path / "g20.bdsm")
    assert read_header(path)["emulator"]["n_components"] == 1
    cols = predict_table(load_model(path), np.array([[5000.0, 4.5, 0.0]]))
    assert "R_G" in cols and not any(c.startswith("R1_") for c in cols)


def test_fitted_scores_are_standard_normal_for_stars_with_xi(key):
    """Stars drawn from a K = 2 model (ξ ~ N(0, 1), E from its prior, honest errors):
    the fitted scores' 16/50/84th percentiles are -1/0/+1; scored as if K = 1 (ξ ignored)
    they are too wide."""
    from bayesdsm.emulator import absolute_magnitudes
    from bayesdsm.likelihood import colour_scores

    rng = np.random.default_rng(13)
    n = 3000
    with jax.enable_x64(True):
        emu = k2_emulator(key, r1_scale=0.4)
        st = random_stars(rng, n, p_missing=0.2, p_parallax=1.0)
        prior, prior_err = rng.uniform(0.3, 1.0, n), rng.uniform(0.05, 0.2, n)
        ebv = np.maximum(prior + prior_err * rng.normal(size=n), 0.0)
        xi = rng.normal(size=n)
        th = jnp.asarray(st.theta)
        M = jax.vmap(absolute_magnitudes, in_axes=(None, 0))(emu, th)
        R = jax.vmap(extinction_vector, in_axes=(None, 0, 0))(emu, th, jnp.asarray(xi))
        mu = rng.uniform(8, 12, n)
        mag = np.asarray(M) + np.asarray(R) * ebv[:, None] + mu[:, None]
        mag = mag + st.mag_err * rng.normal(size=mag.shape)
        st = st._replace(mag=np.where(st.mask > 0, mag, 0.0), ebv=prior, ebv_err=prior_err,
                         theta_chol=np.zeros_like(st.theta_chol),
                         mu=mu + st.sigma_mu * rng.normal(size=n))  # fmt: skip
        jst = jax.tree_util.tree_map(jnp.asarray, st)
        fitted = jax.jit(jax.vmap(lambda s: colour_scores(emu, s, fit_reddening=True)))(jst)
        k1 = eqx_k1(emu)
        ignored = jax.jit(jax.vmap(lambda s: colour_scores(k1, s, fit_reddening=True)))(jst)
    p_fit = np.nanpercentile(np.asarray(fitted), [16, 50, 84])
    p_k1 = np.nanpercentile(np.asarray(ignored), [16, 50, 84])
    np.testing.assert_allclose(p_fit, [-1.0, 0.0, 1.0], atol=0.06)
    assert p_k1[2] - p_k1[0] > 2.3, p_k1


def eqx_k1(emu):
    """The same emulator without its second component (K = 1)."""
    arrays = {k: v for k, v in emulator_arrays(emu).items() if not k.startswith("R1_")}
    return emulator_from_arrays(dataclasses.replace(emu.config, n_components=1), arrays)


def test_weight_priors_of_the_second_component(key):
    """R₁'s kernel is L1-penalised like R's; its bias (ρ at the median θ) has the prior
    N(0, variation_scale²); K = 1 has neither site."""
    from bayesdsm.emulator_model import RegularizationConfig, weight_priors

    reg = RegularizationConfig(l1_extinction=1e-2, variation_scale=0.1)
    pri = weight_priors(k2_emulator(key, jnp.float32), 1000, reg)
    b = np.array([0.0, 0.1, -0.2] + [0.0] * 10, np.float32)
    want = -0.5 * np.sum((b / 0.1) ** 2) - 13 * np.log(0.1 * np.sqrt(2 * np.pi))
    assert float(pri["R1_bias"].log_prob(jnp.asarray(b))) == pytest.approx(want, rel=1e-5)
    w = np.zeros((13, 3), np.float32)
    w[0, 0] = 0.5
    lap = pri["R1_kernel"].log_prob(jnp.asarray(w)) - pri["R1_kernel"].log_prob(jnp.zeros((13, 3)))
    assert float(lap) == pytest.approx(-0.5 * 1000 * 1e-2, rel=1e-5)
    assert not any(k.startswith("R1_") for k in weight_priors(init_emulator(key), 1000, reg))
