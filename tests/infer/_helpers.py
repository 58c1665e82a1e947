"""Shared pieces of the inference tests: fast settings, simulated catalogs, toy targets.

The toy targets have the interface the engines need (``__call__``, ``physical``,
``log_prob_and_physical``; :class:`MixturePost` also the mode finder's) and known answers.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm import infer

#: Cheap engine settings for the fast tests.
FAST = dict(
    n_starts=3,
    map_steps=20,
    n_importance=256,
    n_importance_refit=(256,),
    n_importance_kernel=(512,),
    n_kernels=16,
    n_warmup=40,
    n_samples=60,
    nuts_warmup=40,
    nuts_samples=60,
    batch_size=16,
    chunk_size=4,
)


def make_catalog(post, n, rng):
    """(Catalog of n stars drawn from the flat-θ prior, ids 100.., their true θ, bands)."""
    theta, mu, ebv = infer.draw_prior_truth(post, n, rng)
    s = infer.simulate_stars(post, theta, mu, ebv, rng)
    cat = infer.simulated_catalog(
        post.emulator.bands, s, np.arange(100, 100 + n), extra={"true_teff": theta[:, 0]}
    )
    return cat, theta, cat.mag.shape[1]


class Toy(eqx.Module):
    """A toy target's interface for the samplers: its physical values are z and z₀."""

    def physical(self, z):
        return jnp.concatenate([z, z[:1]])

    def log_prob_and_physical(self, z, star):
        return self(z, star), self.physical(z)


class Mixture(Toy):
    """Toy 5-d target: 0.3 N(a, A) + 0.7 N(b, B) (exact mode weights)."""

    a: jax.Array
    b: jax.Array

    def __call__(self, z, star):
        la = jnp.log(0.3) - 0.5 * jnp.sum(((z - self.a) / 0.2) ** 2) - 5 * jnp.log(0.2)
        lb = jnp.log(0.7) - 0.5 * jnp.sum(((z - self.b) / 0.5) ** 2) - 5 * jnp.log(0.5)
        return jnp.logaddexp(la, lb)

    def _same_width(self, z):
        """0.3 N(a, 0.5²) + 0.7 N(b, 0.5²)."""
        la = jnp.log(0.3) - 0.5 * jnp.sum(((z - self.a) / 0.5) ** 2)
        lb = jnp.log(0.7) - 0.5 * jnp.sum(((z - self.b) / 0.5) ** 2)
        return jnp.logaddexp(la, lb)


class Banana(Toy):
    """Toy 5-d curved target: z₁ | z₀ ~ N(0.8 z₀² − 1, 0.3²), z₀, z₂, z₃ ~ N(0, 1), |z₄| ~
    N(3, 1); the exact means are (0, −0.2, 0, 0, ·)."""

    def __call__(self, z, star):
        return -0.5 * (
            z[0] ** 2 + ((z[1] - 0.8 * z[0] ** 2 + 1.0) / 0.3) ** 2 + z[2] ** 2 + z[3] ** 2
            + (jnp.abs(z[4]) - 3.0) ** 2
        )  # fmt: skip


def banana_mode():
    """One star's Laplace-like mode for the banana: at (0, −1, 0, 0, 3), widths (1, 0.3,
    1, 1, 1)."""
    sd = jnp.asarray([1.0, 0.3, 1, 1, 1])
    return infer.LaplaceModes(
        jnp.asarray([[[0.0, -1.0, 0, 0, 3.0]]]),
        jnp.zeros((1, 1)),
        jnp.diag(sd)[None, None],
        jnp.diag(1.0 / sd)[None, None],
        jnp.zeros((1, 1)),
        jnp.ones((1, 1), bool),
        jnp.ones(1, bool),
    )


class MixturePost(Mixture):
    """:class:`Mixture` with the interface of the mode finder (no least-squares part:
    its damped Newton steps are then gradient steps with a step-size search)."""

    dtype = jnp.float32
    theta_prior = True  # not None: no flat-prior walls

    def residuals(self, z, star):
        return jnp.zeros(1, z.dtype)

    def log_prior_rest(self, z, star):
        return self(z, star)
