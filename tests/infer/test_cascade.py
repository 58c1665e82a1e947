"""The cascade (bayesdsm.infer.infer_arrays): summaries, MCMC tiers, the convergence
rule, modes from chains, warm-up, calibration."""

from __future__ import annotations

from dataclasses import replace

import equinox as eqx
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm import infer
from bayesdsm.infer import InferConfig
from bayesdsm.infer.testing import Result, chain_modes, compiled_programs, weighted_quantiles

from ._helpers import FAST, MixturePost, make_catalog


def test_set_draws_ignores_nonfinite_draws():
    """A draw with a non-finite value carries no weight in the summaries; a star with no
    finite draw gets NaN summaries instead of an error."""
    res = Result(2, keep_draws=5, seed=0)
    vals = np.tile(np.arange(10.0)[None, :, None], (2, 1, 6))
    vals[0, 9] = np.inf  # would be the top draw
    vals[1] = np.nan
    res.set_draws(np.arange(2), vals, np.full((2, 10), 0.1), "nuts")
    ref = Result(1, keep_draws=0, seed=0)  # the same star without its infinite draw
    ref.set_draws(np.arange(1), vals[:1, :9], np.full((1, 9), 1 / 9), "nuts")
    for c in ("teff_p16", "teff_p50", "teff_p84"):
        assert res.cols[c][0] == ref.cols[c][0]
    assert res.cols["teff_p84"][0] < 9.0
    assert np.isnan(res.cols["teff_p50"][1]) and np.isnan(res.draws[1]).all()
    assert np.isfinite(res.draws[0]).all()


def test_set_draws_distance_quantiles_from_mu():
    """dist_pc's quantiles (taken from μ's, as the distance is monotonic in μ) equal the
    weighted quantiles of the distance draws themselves."""
    rng = np.random.default_rng(5)
    vals = rng.normal(size=(3, 500, 6))
    vals[..., 3] = 10 + rng.normal(size=(3, 500))
    vals[..., 4] = 10.0 ** (vals[..., 3] / 5 + 1)
    w = rng.dirichlet(np.ones(500), size=3)
    res = Result(3, keep_draws=0, seed=0)
    res.set_draws(np.arange(3), vals, w, "psis")
    ref = weighted_quantiles(vals[..., 4:5], w, (0.16, 0.5, 0.84))[:, 0]
    got = np.stack([res.cols[f"dist_pc_{t}"] for t in ("p16", "p50", "p84")], 1)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


@pytest.mark.parametrize("split", [True, False])
def test_chain_modes_weights_chains_by_mode_mass(split):
    """Chains that failed the bar sitting in two modes the multi-start MAP missed: the
    modes are found from where the chains ended and each mode's chains share its Laplace
    mass (exact here: 0.3 and 0.7), so the weighted draws' median of z₀ is the mixture's;
    chains all in one mode leave the star unflagged (one mode)."""
    a = jnp.asarray([-2.0, 0, 0, 0, 1.5])
    b = jnp.asarray([2.0, 1, 0, 0, 1.5])
    post = MixturePost(a, b)
    rng = np.random.default_rng(3)
    c, d = 8, 2000
    # 2 chains in a (sd 0.2), 6 in b (sd 0.5): equal chain weights would give a 0.25/0.75
    centre = np.where((np.arange(c) < 2)[:, None] & split, np.asarray(a), np.asarray(b))
    sd = np.where((np.arange(c) < 2) & split, 0.2, 0.5)
    zs = centre[None, :, None, :] + sd[None, :, None, None] * rng.normal(size=(1, c, d, 5))
    phys = np.concatenate([zs, zs[..., :1]], -1)
    res = Result(1, keep_draws=0, seed=0)
    mode_mass, nm = np.array([[1.0, 0, 0]]), np.array([1])
    cfg = InferConfig(map_steps=40)
    chain_modes(post, jnp.zeros((1, 1)), cfg, np.arange(1), phys, zs, res, mode_mass, nm)
    if not split:
        assert nm[0] == 1 and np.isnan(res.cols["teff_p50"][0])  # nothing changed
        return
    assert nm[0] == 2
    np.testing.assert_allclose(mode_mass[0], [0.7, 0.3, 0.0], atol=0.01)
    # the exact mixture's z₀ quantiles: 0.3 N(−2, 0.2²) + 0.7 N(2, 0.5²)
    from scipy import optimize, stats

    def cdf(x):
        return 0.3 * stats.norm.cdf(x, -2, 0.2) + 0.7 * stats.norm.cdf(x, 2, 0.5)

    for q, col in ((0.16, "teff_p16"), (0.5, "teff_p50"), (0.84, "teff_p84")):
        exact = optimize.brentq(lambda x, q=q: cdf(x) - q, -5, 5)
        assert res.cols[col][0] == pytest.approx(exact, abs=0.05)


def test_batched_engine_convergence_rule(setup):
    """The batched MCMC tiers end to end (whitened HMC → longer HMC → NUTS), and the rule:
    every star meets the ESS/R̂ bar or is flagged ``multimodal`` or ``not_converged``."""
    emu, _ = setup
    tiny = dict(FAST, n_warmup=30, n_samples=40, nuts_warmup=30, nuts_samples=40)
    # the longer HMC run shares the HMC run's static settings: one compiled program serves
    tiny.update(nuts_max_tree_depth=4, long_warmup=30, long_samples=40, long_leapfrog=5)
    cfg = InferConfig(theta_prior="flat", method="hmc", **tiny)
    post = infer.build_posterior(emu, cfg)
    cat, theta, _ = make_catalog(post, 4, np.random.default_rng(7))
    stars, flags = infer.star_arrays(cat, cfg)
    ids = np.asarray(cat.source_id)
    # an unreachable bar (ESS ≥ 10⁶): no star converges; each is flagged one way or other
    strict = infer.infer_arrays(post, stars, ids, replace(cfg, ess_min=1e6))
    assert not strict["converged"].any()
    for f, meth in zip(strict["flags"], strict["method"]):
        f_set = set(f.split(","))
        assert ("multimodal" in f_set) != ("not_converged" in f_set), f
        if "not_converged" in f_set:
            assert meth == "nuts_more"  # every tier was tried
    cols = [f"{p}_{q}" for p in infer.PARAMS for q in ("p16", "p50", "p84")]
    assert all(np.all(np.isfinite(strict[c])) for c in cols)
    # a bar the short chains can meet: the HMC tier accepts, nobody is flagged
    loose = replace(cfg, ess_min=10.0, rhat_max=1.5)
    res = infer.infer_arrays(post, stars, ids, loose, flags)
    ok = res["converged"]
    assert ok.sum() >= 3
    assert all(("not_converged" not in f.split(",")) for f in res["flags"][ok])
    assert np.median(np.abs(res["teff_p50"] - theta[:, 0])) < 400


def test_warm_up_compiles_the_rare_tiers(setup):
    """After ``warm_up``, a batch whose stars fall through every tier to NUTS compiles no
    sampler program: the longer HMC, NUTS and their PSIS rounds were compiled ahead."""
    emu, _ = setup
    tiny = dict(FAST, n_warmup=30, n_samples=40, nuts_warmup=30, nuts_samples=40)
    tiny.update(nuts_max_tree_depth=3, long_warmup=20, long_samples=30, long_leapfrog=4)
    cfg = InferConfig(theta_prior="flat", n_importance_mcmc=128, **tiny)
    post = infer.build_posterior(emu, cfg)
    cat, _, _ = make_catalog(post, 6, np.random.default_rng(17))
    stars, _ = infer.star_arrays(cat, cfg)
    infer.warm_up(post, stars.take(np.arange(3)), cfg, sizes=(8,))
    jitted = compiled_programs().values()
    before = [f._cache_size() for f in jitted]
    # other stars, an unreachable bar and no mode weighty enough to stop early: every star
    # runs every tier (5 stars: the same bucket of 8)
    strict = replace(cfg, ess_min=1e6, min_mode_weight=2.0)
    res = infer.infer_arrays(post, stars.take(np.arange(1, 6)), np.arange(1, 6), strict)
    assert set(res["method"]) == {"nuts_more"}
    assert [f._cache_size() for f in jitted] == before


@pytest.mark.slow
@pytest.mark.parametrize("theta_prior", ["density", "flat"])
def test_calibration_and_sbc(setup, theta_prior):
    """Central 68/95% intervals cover prior-drawn truth 68±3% / 95±2%, and the ranks of
    the truth among the draws are uniform (SBC), under the default training-density θ
    prior (θ drawn from it exactly, :func:`draw_density_theta`) and the flat θ prior."""
    emu, dens = setup
    rng = np.random.default_rng(11)
    n = 1000
    if theta_prior == "density":
        cfg = InferConfig(batch_size=512)
        post = infer.build_posterior(emu, cfg, theta_density=dens)
        theta, mu, ebv = infer.draw_prior_truth(post, n, rng, density=True)
    else:
        box = ((4000.0, 2.0, -1.0), (6500.0, 4.8, 0.3))
        cfg = InferConfig(theta_prior="flat", batch_size=512)
        post = infer.build_posterior(emu, cfg)
        post = eqx.tree_at(
            lambda p: (p.theta_lo, p.theta_hi),
            post,
            (jnp.asarray(box[0], jnp.float32), jnp.asarray(box[1], jnp.float32)),
        )
        # truth from the posterior's own prior, soft walls included (FLAT_THETA_WALL)
        theta, mu, ebv = infer.draw_prior_truth(post, n, rng, box=box, wall=(100.0, 0.1, 0.1))
    stars = infer.simulate_stars(post, theta, mu, ebv, rng, mag_err=0.05, plx_err=0.2)
    res, draws = infer.infer_arrays(post, stars, np.arange(n), cfg, keep_draws=400)
    truth = np.column_stack([theta, mu, ebv])
    ranks = np.sum(draws[:, :, [0, 1, 2, 3, 5]] < truth[:, None, :], axis=1)
    lo95, lo68, hi68, hi95 = np.percentile(
        draws[:, :, [0, 1, 2, 3, 5]], [2.5, 16, 84, 97.5], axis=1
    )
    cover = np.mean((truth > lo68) & (truth < hi68), axis=0)
    cover95 = np.mean((truth > lo95) & (truth < hi95), axis=0)
    # acceptance: 68 ± 3% and 95 ± 2%, plus 2σ binomial noise of 1000 stars (3%, 1.4%)
    assert np.all(np.abs(cover - 0.68) < 0.03 + 0.03), cover
    hist = np.stack([np.histogram(ranks[:, j], bins=10, range=(0, 400))[0] for j in range(5)])
    from scipy.stats import chisquare

    assert np.all(chisquare(hist, axis=1).pvalue > 1e-3), hist
    assert np.all(np.abs(cover95 - 0.95) < 0.02 + 0.014), cover95
    if theta_prior == "flat":  # ``auto`` ran the MCMC tiers for every star: its PSIS
        # intervals of [Fe/H] covered 0.918-0.923 at 95% under this prior
        assert not any(m == "psis" for m in res["method"])
