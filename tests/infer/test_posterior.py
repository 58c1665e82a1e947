"""The one-star posterior (bayesdsm.infer.Posterior) and draws from its prior."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm import infer
from bayesdsm.infer import InferConfig


def test_posterior_z_roundtrip_and_fold(setup):
    emu, dens = setup
    post = infer.build_posterior(emu, InferConfig(), theta_density=dens)
    z = post.z_from(jnp.asarray([5800.0, 4.4, 0.0]), 10.0, 0.3)
    phys = post.physical(z)
    np.testing.assert_allclose(
        np.asarray(phys)[[0, 1, 2, 3, 5]], [5800, 4.4, 0, 10, 0.3], rtol=1e-5, atol=1e-4
    )
    star = infer.simulate_stars(post, [[5800, 4.4, 0]], [10.0], [0.3], np.random.default_rng(0))
    star = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[0], star)
    # the folded target is symmetric in e
    assert float(post(z, star)) == pytest.approx(float(post(z.at[4].multiply(-1), star)), rel=1e-6)


def test_draw_density_theta_matches_the_prior():
    """Rejection draws from a ThetaDensityPrior have the prior's 1-D marginals, computed
    by summing exp(ln p) over a fine grid (χ² test, 20k draws)."""
    from scipy.stats import chisquare

    rng = np.random.default_rng(8)
    axes = [np.linspace(4000, 7000, 9), np.linspace(1.0, 5.0, 7), np.linspace(-1.5, 0.5, 6)]
    g = np.meshgrid(*[np.arange(len(a)) for a in axes], indexing="ij")
    dens = np.exp(-0.5 * ((g[0] - 5) ** 2 / 4 + (g[1] - 2 * g[0] / 3 - 1) ** 2 + (g[2] - 3) ** 2))
    prior = infer.ThetaDensityPrior.from_grid(axes, dens, smooth=0.5, floor=1e-2, halo=2.0)
    th = infer.draw_density_theta(prior, 20000, rng)
    lo = np.asarray(prior.lo) - 4 * np.asarray(prior.step)
    hi = np.asarray(prior.hi) + 4 * np.asarray(prior.step)
    # midpoint rule: 12 bins per axis, 5 cells per bin
    fine = [a + (np.arange(60) + 0.5) * (b - a) / 60 for a, b in zip(lo, hi)]
    pts = np.stack(np.meshgrid(*fine, indexing="ij"), -1).reshape(-1, 3)
    p = np.exp(np.asarray(jax.vmap(prior)(jnp.asarray(pts, jnp.float32)), np.float64))
    p = p.reshape(60, 60, 60)
    for j in range(3):
        marg = p.sum(axis=tuple(k for k in range(3) if k != j))
        expect = marg.reshape(12, 5).sum(1)
        counts = np.histogram(th[:, j], np.linspace(lo[j], hi[j], 13))[0]
        keep = expect > 5e-4 * expect.sum()
        expect = expect[keep] / expect[keep].sum() * counts[keep].sum()
        assert chisquare(counts[keep], expect).pvalue > 1e-3, (j, counts, expect)
