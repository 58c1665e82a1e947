"""Multi-start MAP + Laplace modes (bayesdsm.infer.find_modes)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm import infer
from bayesdsm.infer import InferConfig
from bayesdsm.infer.testing import mode_groups

from ._helpers import Mixture


def test_laplace_at_a_wall_of_the_flat_prior_leaves_the_wall_out(setup):
    """A star whose data pull [Fe/H] beyond the flat prior's box (truth +0.2, box edge
    −0.5): its mode presses on the wall, and the Laplace covariance is the inverse of
    −∇² ln p without the walls' term (autodiff reference), not the wall's narrow width."""
    emu, _ = setup
    post = infer.build_posterior(emu, InferConfig(theta_prior="flat"))
    lo, hi = jnp.asarray([4000.0, 2.0, -1.0]), jnp.asarray([6500.0, 4.8, -0.5])
    post = eqx.tree_at(lambda p: (p.theta_lo, p.theta_hi), post, (lo, hi))
    stars = infer.simulate_stars(
        post, [[5000.0, 3.0, 0.2]], [9.0], [0.1], np.random.default_rng(1), mag_err=0.01
    )
    modes = infer.find_modes(post, stars.astype(post.dtype), 6, 25, 1.0)
    best = int(np.argmax(np.where(modes.valid[0], modes.logp[0], -np.inf)))
    z = modes.z[0, best]
    assert float(post.theta(z)[2]) > -0.5  # beyond the box: on the wall
    star = jax.tree_util.tree_map(lambda a: jnp.asarray(a)[0], stars.astype(post.dtype))
    h = jax.hessian(lambda q: -post(q, star) + infer.log_flat_theta_prior(post.theta(q), lo, hi))(z)
    cov = np.asarray(modes.scale[0, best] @ modes.scale[0, best].T, np.float64)
    np.testing.assert_allclose(cov, np.linalg.inv(np.asarray(h, np.float64)), rtol=0.05, atol=1e-4)
    # ... which is much wider in [Fe/H] than the wall (s.d. 0.1 dex)
    assert np.sqrt(cov[2, 2]) * float(emu.normalizer.std[2]) > 0.2


def test_mode_groups_join_shallow_dips_only():
    """Two maxima with a deep density dip between them stay two groups; two maxima of a
    flat-topped mixture (dip < 1 nat) are one group, represented by the better one."""
    a = jnp.asarray([-2.0, 0, 0, 0, 1.5])
    b = jnp.asarray([2.0, 1, 0, 0, 1.5])
    deep = Mixture(a, b)
    z = jnp.stack([a, b, a])
    logp = jax.vmap(lambda q: deep(q, None))(z)
    valid = jnp.asarray([True, True, False])
    np.testing.assert_array_equal(mode_groups(deep, None, z, logp, valid, 1.0), [0, 1, 2])
    # a flat top: 0.3 N(−0.8 e₀, 0.5²) + 0.7 N(+0.8 e₀, 0.5²): two maxima, a 0.24-nat dip
    shallow = Mixture(jnp.asarray([-0.8, 0, 0, 0, 1.5]), jnp.asarray([0.8, 0, 0, 0, 1.5]))
    xs = jnp.linspace(-1.5, 1.5, 3001)
    lp = jax.vmap(lambda x: shallow._same_width(jnp.asarray([x, 0, 0, 0, 1.5])))(xs)
    peaks = [i for i in range(1, 3000) if lp[i] > lp[i - 1] and lp[i] > lp[i + 1]]
    assert len(peaks) == 2  # really two local maxima
    z2 = jnp.stack([jnp.asarray([xs[i], 0, 0, 0, 1.5]) for i in peaks])
    lp2 = lp[jnp.asarray(peaks)]
    g = mode_groups(lambda q, s: shallow._same_width(q), None, z2, lp2, jnp.ones(2, bool), 1.0)
    best = int(jnp.argmax(lp2))
    np.testing.assert_array_equal(g, [best, best])
    g0 = mode_groups(lambda q, s: shallow._same_width(q), None, z2, lp2, jnp.ones(2, bool), 1e-4)
    np.testing.assert_array_equal(g0, [0, 1])  # a tiny barrier threshold separates them
