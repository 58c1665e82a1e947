"""ξ, the weight of the second extinction component (K = 2, issue 20): sampled in every
tier with prior N(0, 1), reported in the table, flagged where the prior dominates it; a
one-component model is unchanged."""

from __future__ import annotations

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import b_mat, forward, np_weights, random_emulator

from bayesdsm import infer
from bayesdsm.infer import InferConfig
from bayesdsm.infer.testing import variation_bias, with_variation

from ._helpers import FAST

XI_COLS = ("xi_p16", "xi_p50", "xi_p84")


@pytest.fixture(scope="module")
def emu2(setup):
    """The released Green 2020 emulator with R₁ = R ρ, |ρ| ≤ 0.3 (:func:`with_variation`)."""
    return with_variation(setup[0])


def _star(stars, i):
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[i], stars)


# -- the one-star posterior -------------------------------------------------------------


def test_k1_posterior_shapes_unchanged(setup):
    """K = 1: z has 5 coordinates, the physical vector the 6 :data:`PARAMS`, and ξ is
    refused."""
    emu, _ = setup
    post = infer.build_posterior(emu, InferConfig(theta_prior="flat"))
    assert post.ndim == 5 and post.params == infer.PARAMS and not post.has_xi
    z = post.z_from(jnp.asarray([5800.0, 4.4, 0.0]), 10.0, 0.3)
    assert z.shape == (5,) and post.physical(z).shape == (6,)
    with pytest.raises(ValueError, match="K = 1"):
        post.z_from(jnp.asarray([5800.0, 4.4, 0.0]), 10.0, 0.3, 0.5)


def test_k2_posterior_roundtrip_and_zero_variation(setup, emu2):
    """K = 2: z = (θ_n, m₀, e, ξ) round-trips the physical values (ξ last); with R₁ = 0
    the density is K = 1's minus ξ²/2 (the N(0, 1) prior) at every ξ."""
    emu, _ = setup
    post2 = infer.build_posterior(emu2, InferConfig(theta_prior="flat"))
    assert post2.ndim == 6 and post2.params == infer.PARAMS_XI and post2.has_xi
    z = post2.z_from(jnp.asarray([5000.0, 3.0, -0.3]), 9.0, 0.8, -1.3)
    np.testing.assert_allclose(
        np.asarray(post2.physical(z))[[0, 1, 2, 3, 5, 6]],
        [5000, 3.0, -0.3, 9.0, 0.8, -1.3], rtol=1e-5, atol=1e-4,
    )  # fmt: skip
    flat = with_variation(emu, np.zeros(emu.n_bands), np.zeros((emu.n_bands, 3)))
    post0 = infer.build_posterior(flat, InferConfig(theta_prior="flat"))
    post1 = infer.build_posterior(emu, InferConfig(theta_prior="flat"))
    rng = np.random.default_rng(0)
    star = _star(infer.simulate_stars(post1, [[5000, 3.0, -0.3]], [9.0], [0.8], rng), 0)
    z1 = post1.z_from(jnp.asarray([5100.0, 3.2, -0.2]), 9.1, 0.7)
    for xi in (-2.0, 0.0, 0.7):
        lp0 = float(post0(jnp.append(z1, xi), star))
        assert lp0 == pytest.approx(float(post1(z1, star)) - 0.5 * xi**2, rel=1e-6, abs=1e-3)


def _numpy_log_post(w, z, star, lo, hi, length_pc):
    """ln p(z | star) of a K = 2 model written out in NumPy (float64) from the weights:
    A = A₁ + c A₁² with A₁ = E (R + ξ R₁), m₀ = μ + M_ref + A_ref, flat-θ, volume and
    N(Ê, σ_E) E priors, ξ ~ N(0, 1). The θ and distance priors come from the package
    (tested elsewhere)."""
    theta_n = np.asarray(z[:3])
    theta = theta_n * w["theta_std"] + w["theta_median"]
    bm, r0, _, _ = forward(w, theta)
    r1 = r0 * (w["R1_kernel"] @ theta_n + w["R1_bias"])  # R₁ = R ρ
    ebv, xi = abs(z[4]), z[5]
    a1 = ebv * (r0 + xi * r1)
    a = a1 + w["R_curvature"] * a1**2
    mabs = np.linalg.solve(b_mat(len(bm)), bm)
    mu = z[3] - mabs[0] - a[0]
    pred = mabs + mu + a
    s = {k: np.asarray(v, np.float64) for k, v in star._asdict().items()}
    chi2 = np.sum(np.where(s["mask"], (s["mag"] - pred) ** 2 / s["var"], 0.0))
    chi2 += ((s["plx"] - 10 ** ((10 - mu) / 5)) / s["plx_err"]) ** 2
    chi2 += ((ebv - s["ebv"]) / s["ebv_err"]) ** 2
    prior = float(infer.log_flat_theta_prior(jnp.asarray(theta), lo, hi))
    prior += float(infer.log_volume_prior(jnp.asarray(mu), length_pc))
    return -0.5 * chi2 - 0.5 * xi**2 + prior


def test_k2_log_density_matches_numpy_reference(key):
    """The K = 2 posterior's ln p at random z (ξ of either sign, e of either sign) equals
    a slow NumPy reference (float64, a random emulator with a random R₁ and extinction
    curvature)."""
    import equinox as eqx

    rng = np.random.default_rng(2)
    with jax.enable_x64(True):
        base = random_emulator(key, jnp.float64)
        curv = jnp.asarray(-0.03 * rng.uniform(size=13))
        base = eqx.tree_at(lambda e: e.extinction.curvature, base, curv)
        emu = with_variation(base, 0.2 * rng.normal(size=13), 0.05 * rng.normal(size=(13, 3)))
        post = infer.build_posterior(emu, InferConfig(theta_prior="flat", dtype="float64"))
        stars = infer.simulate_stars(
            post, [[5200.0, 3.5, -0.4]] * 2, [8.0, 9.0], [0.5, 0.2], rng, xi=[0.8, -0.5]
        )
        stars = stars._replace(mask=stars.mask & (np.arange(13) != 4))  # one band unobserved
        w = np_weights(emu)
        for i in range(2):
            star = _star(stars.astype(jnp.float64), i)
            for _ in range(3):
                z = np.concatenate([rng.normal(0, 0.5, 3), [rng.normal(12, 0.5)],
                                    rng.normal(0, 0.6, 2)])  # fmt: skip
                ref = _numpy_log_post(w, z, star, post.theta_lo, post.theta_hi, 1350.0)
                got = float(post(jnp.asarray(z), star))
                assert got == pytest.approx(ref, rel=1e-9, abs=1e-8), (z, got, ref)


def test_k2_star_model_sites(emu2):
    """The NumPyro model of a K = 2 star samples a 6-d z and reports ξ = z[5]."""
    from numpyro import handlers

    post = infer.build_posterior(emu2, InferConfig(theta_prior="flat"))
    rng = np.random.default_rng(1)
    star = _star(infer.simulate_stars(post, [[5000, 3, 0]], [9.0], [0.5], rng, xi=[1.0]), 0)
    z = post.z_from(jnp.asarray([5000.0, 3.0, 0.0]), 9.0, 0.5, 1.0)
    model = handlers.substitute(infer.star_model, data={"z": z})
    tr = handlers.trace(model).get_trace(post, star)
    assert tr["z"]["value"].shape == (6,)
    assert float(tr["xi"]["value"]) == pytest.approx(1.0)
    assert float(tr["log_post"]["fn"].log_factor) == pytest.approx(float(post(z, star)))
    assert set(infer.PARAMS_XI) <= set(tr)


# -- the engines ------------------------------------------------------------------------


def _reddened(post, n, rng, xi):
    """n strongly reddened stars (E 0.8-1.2) of known ξ, 13 bands of σ 0.03 mag."""
    theta = np.column_stack(
        [rng.uniform(4500, 6000, n), rng.uniform(3.8, 4.6, n), rng.uniform(-0.6, 0.1, n)]
    )
    mu = rng.uniform(8.0, 10.0, n)
    ebv = rng.uniform(0.8, 1.2, n)
    stars = infer.simulate_stars(post, theta, mu, ebv, rng, xi=xi, ebv_hat=1.0, ebv_err=0.3)
    return stars, theta, ebv


def test_laplace_modes_recover_xi(emu2):
    """The MAP + Laplace tier on strongly reddened K = 2 stars: the best mode's ξ lies
    within 4 Laplace s.d. of the truth, and that s.d. is well below the prior's."""
    post = infer.build_posterior(emu2, InferConfig(theta_prior="flat"))
    rng = np.random.default_rng(4)
    xi = np.array([-1.5, -0.5, 0.4, 1.6])
    stars, _, _ = _reddened(post, 4, rng, xi)
    modes = infer.find_modes(post, stars.astype(post.dtype), 3, 25, 1.0)
    assert modes.z.shape == (4, 3, 6) and modes.scale.shape == (4, 3, 6, 6)
    best = np.argmax(np.asarray(modes.log_weight), 1)
    z = np.asarray(modes.z)[np.arange(4), best]
    sc = np.asarray(modes.scale, np.float64)[np.arange(4), best]
    sd = np.sqrt(np.einsum("nij,nij->ni", sc, sc)[:, 5])
    assert np.all(sd < 0.5), sd
    assert np.all(np.abs(z[:, 5] - xi) < 4 * sd), (z[:, 5], xi, sd)


@pytest.mark.parametrize("method", ["laplace", "hmc", "nuts"])
def test_each_tier_recovers_xi(emu2, method):
    """PSIS (``laplace``), whitened HMC and NUTS on strongly reddened K = 2 stars: the
    truth lies within 4 posterior s.d. ((p84 − p16)/2) of ξ's median, ξ is measured (s.d.
    < 0.5) and not flagged prior-dominated, and the other parameters are reported too."""
    cfg = InferConfig(theta_prior="flat", method=method, **dict(FAST, ess_min=50.0))
    post = infer.build_posterior(emu2, cfg)
    rng = np.random.default_rng(5)
    xi = np.array([-1.2, 0.3, 1.5])
    stars, theta, ebv = _reddened(post, 3, rng, xi)
    cols = infer.infer_arrays(post, stars, np.arange(3), cfg)
    sd = 0.5 * (cols["xi_p84"] - cols["xi_p16"])
    assert np.all(sd < 0.5), sd
    assert np.all(np.abs(cols["xi_p50"] - xi) < 4 * sd), (cols["xi_p50"], xi, sd)
    assert np.all(np.abs(cols["ebv_p50"] - ebv) < 0.2)
    assert np.median(np.abs(cols["teff_p50"] - theta[:, 0])) < 400
    assert not any("xi_prior_dominated" in f for f in cols["flags"])
    if method == "laplace":
        assert set(cols["method"]) == {"psis"}
    else:  # an MCMC tier's draws (or a PSIS round's on its chains)
        assert all(
            m.split("+")[0] in ("hmc", "hmc_long", "nuts", "nuts_more") for m in cols["method"]
        )


@pytest.mark.slow  # 150 s on two busy cores: it compiles every tier's programs for 6-d z
def test_every_tier_runs_on_k2(setup, emu2):
    """Under a bar no star can meet, K = 2 stars fall through every tier of ``auto``
    (PSIS rounds: Laplace, refitted, kernel; HMC, longer HMC, NUTS, pooled NUTS, PSIS on
    the chains, modes from the chains), each flagged ``multimodal`` or
    ``not_converged``, with finite ξ summaries and 7-column draws."""
    tiny = dict(FAST, n_warmup=30, n_samples=40, nuts_warmup=30, nuts_samples=40)
    tiny.update(nuts_max_tree_depth=4, long_warmup=30, long_samples=40, long_leapfrog=5)
    cfg = InferConfig(n_importance_mcmc=128, **tiny)
    post = infer.build_posterior(emu2, cfg, theta_density=setup[1])
    rng = np.random.default_rng(6)
    stars, _, _ = _reddened(post, 3, rng, rng.normal(size=3))
    strict = replace(cfg, ess_min=1e6)
    cols, draws = infer.infer_arrays(post, stars, np.arange(3), strict, keep_draws=50)
    assert draws.shape == (3, 50, 7)
    assert not cols["converged"].any()
    for f in cols["flags"]:
        f_set = set(f.split(","))
        assert ("multimodal" in f_set) != ("not_converged" in f_set), f
    for c in [f"{p}_{q}" for p in infer.PARAMS_XI for q in ("p16", "p50", "p84")]:
        assert np.all(np.isfinite(cols[c])), c


def test_low_reddening_xi_is_flagged_prior_dominated(setup):
    """The issue's bad input: a K = 2 model on stars none of which has E above 0.1. Every
    star finishes (meets the bar, finite summaries), ξ's posterior is close to its
    N(0, 1) prior, and every star is flagged ``xi_prior_dominated`` (s.d. > 1/√2).

    13 bands of σ 0.05 mag and R₁ = R ρ with |ρ| ≤ 0.1 (a 10% variation per unit ξ,
    more than R(V) ~ N(3.1, 0.18) gives)."""
    cfg = InferConfig(theta_prior="flat", method="hmc", **dict(FAST, n_warmup=100, n_samples=200))
    base = setup[0]
    post = infer.build_posterior(
        with_variation(base, r1_bias=variation_bias(base.n_bands, 0.1)), cfg
    )
    rng = np.random.default_rng(1)
    n = 8
    theta, mu, _ = infer.draw_prior_truth(post, n, rng)
    ebv = np.linspace(0.0, 0.1, n)
    stars = infer.simulate_stars(
        post, theta, mu, ebv, rng, xi=rng.normal(size=n), ebv_hat=0.05, ebv_err=0.05,
        mag_err=0.05,
    )  # fmt: skip
    cols = infer.infer_arrays(post, stars, np.arange(n), cfg)
    assert cols["converged"].all()
    for c in [f"{p}_{q}" for p in infer.PARAMS_XI for q in ("p16", "p50", "p84")]:
        assert np.all(np.isfinite(cols[c])), c
    sd = 0.5 * (cols["xi_p84"] - cols["xi_p16"])
    assert np.all(sd > infer.XI_PRIOR_SD), sd
    assert all("xi_prior_dominated" in f.split(",") for f in cols["flags"])
    assert np.all(np.abs(cols["xi_p50"]) < 1.0)  # near the prior's median


# -- the table --------------------------------------------------------------------------


def test_output_columns_k2_and_k1(setup, emu2, tmp_path):
    """ξ's quantiles are columns of a K = 2 model's table (in memory and on disk, with
    the draws' ``xi`` in the InferenceData) and absent from a K = 1 model's."""
    emu, _ = setup
    cfg = InferConfig(theta_prior="flat", method="laplace", **FAST)
    tabs = {}
    for k, model in ((1, emu), (2, emu2)):
        post = infer.build_posterior(model, cfg)
        rng = np.random.default_rng(7)
        theta, mu, ebv = infer.draw_prior_truth(post, 3, rng)
        xi = rng.normal(size=3) if k == 2 else None
        s = infer.simulate_stars(post, theta, mu, ebv, rng, xi=xi)
        cat = infer.simulated_catalog(model.bands, s, np.arange(3))
        tabs[k] = infer.infer_catalog(model, cat, cfg)
    assert not any(c.startswith("xi_") for c in tabs[1].colnames)
    assert tabs[2].colnames == tabs[1].colnames[:20] + list(XI_COLS) + tabs[1].colnames[20:]
    assert all(np.all(np.isfinite(tabs[2][c])) for c in XI_COLS)
    # on disk, with the draws
    pytest.importorskip("arviz")
    import arviz as az

    out = tmp_path / "k2.parquet"
    t = infer.run_inference(emu2, cat, out, cfg, idata_dir=tmp_path / "idata", log=lambda m: None)
    assert set(XI_COLS) <= set(t.colnames)
    idata = az.from_netcdf(str(tmp_path / "idata" / "chunk_00000.nc"))
    assert "xi" in idata.posterior and idata.posterior["xi"].shape[-1] == 3


def test_flag_criterion_is_the_documented_one():
    """``xi_prior_dominated`` ⟺ (xi_p84 − xi_p16)/2 > XI_PRIOR_SD = 1/√2; NaN summaries
    are not flagged; a table without ξ flags nothing."""
    from bayesdsm.infer._result import xi_prior_dominated

    assert infer.XI_PRIOR_SD == pytest.approx(np.sqrt(0.5))
    cols = {"xi_p16": np.array([-1.0, -0.7, np.nan, -0.1]),
            "xi_p84": np.array([1.0, 0.7, 1.0, 0.1])}  # fmt: skip
    np.testing.assert_array_equal(xi_prior_dominated(cols), [True, False, False, False])
    assert not xi_prior_dominated({"teff_p50": np.zeros(3)}).any()
    assert "xi_prior_dominated" in infer.FLAGS
    assert variation_bias(13).shape == (13,)
