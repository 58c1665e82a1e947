"""The NumPyro emulator model: −log joint = Σ Eq. 15 loss + const, from independent code."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import pytest
from _reference import dense_colour_system, np_weights, random_emulator, random_stars
from numpyro.infer.util import log_density

from bayesdsm.emulator import emulator_arrays
from bayesdsm.emulator_model import (
    RegularizationConfig,
    emulator_from_params,
    emulator_model,
    weight_priors,
)
from bayesdsm.likelihood import frozen_whitening

LAMBDA_S, LAMBDA_R, N_BANDS = 1e-4, 1e-2, 13  # Eq. 15 and §4 of Green et al. (2021)


def numpy_loss(w0, w, stars, n_total):
    """Σ_n Eq. 15 over a batch scaled to N stars, with the covariance frozen at w0.

    χ²_n = Δc(w)ᵀ C_c(w0)⁻¹ Δc(w) in colour space; penalties N λ_s Σ w_s² + N λ_r Σ|w_r|.
    """
    n_batch = len(stars.mag)
    total = 0.0
    for i in range(n_batch):
        s = type(stars)(*(np.asarray(a)[i] for a in stars))
        _, Cc, used, _ = dense_colour_system(w0, s)  # frozen covariance
        dc, _, _, _ = dense_colour_system(w, s)  # residual of the current network
        d = dc[used]
        total += d @ np.linalg.solve(Cc[np.ix_(used, used)], d) / N_BANDS
    total *= n_total / n_batch
    l2 = sum(np.sum(w[k] ** 2) for k in w if k.startswith("hidden_") and k.endswith("_kernel"))
    l1 = np.sum(np.abs(w["R_kernel"]))
    return total + n_total * (LAMBDA_S * l2 + LAMBDA_R * l1)


@pytest.mark.parametrize("n_total", [20, 300])
def test_negative_log_joint_is_eq15_loss(key, n_total):
    with jax.enable_x64(True):
        template = random_emulator(key, jnp.float64)
        stars = jax.tree_util.tree_map(
            jnp.asarray, random_stars(np.random.default_rng(1), 20, np.float64)
        )
        W = jax.jit(jax.vmap(frozen_whitening, in_axes=(None, 0)))(template, stars)
        base = {k: v for k, v in emulator_arrays(template).items() if "theta_" not in k}
        k1, k2 = jax.random.split(key)
        p1 = {k: v + 0.05 * jax.random.normal(k1, v.shape, v.dtype) for k, v in base.items()}
        p2 = {k: v + 0.05 * jax.random.normal(k2, v.shape, v.dtype) for k, v in base.items()}
        model = numpyro.handlers.seed(emulator_model, rng_seed=0)

        def neg_log_joint(p):
            lp, _ = log_density(model, (template, stars, W), {"n_total": n_total}, p)
            return -float(lp)

        w0 = np_weights(template)
        w1 = np_weights(emulator_from_params(template, p1))
        w2 = np_weights(emulator_from_params(template, p2))
        got = neg_log_joint(p1) - neg_log_joint(p2)
        want = numpy_loss(w0, w1, stars, n_total) - numpy_loss(w0, w2, stars, n_total)
        assert got == pytest.approx(want, rel=1e-6)
        # and the loss difference is not dominated by one term
        assert abs(want) > 1e-3


def test_prior_scales(key):
    """Normal σ_s = 1/√(2Nλ_s) on hidden kernels, Laplace b = 1/(Nλ_r) on R, flat elsewhere."""
    template = random_emulator(key, jnp.float32)
    priors = weight_priors(template, 1000, RegularizationConfig())
    assert float(np.max(priors["hidden_0_kernel"].base_dist.scale)) == pytest.approx(
        1 / np.sqrt(2 * 1000 * LAMBDA_S), rel=1e-6
    )
    assert float(np.min(priors["R_kernel"].base_dist.scale)) == pytest.approx(
        1 / (1000 * LAMBDA_R), rel=1e-6
    )
    assert type(priors["output_kernel"]).__name__ == "ImproperUniform"
    assert "theta_median" not in priors


def test_curvature_is_a_weight_only_when_fitted(key):
    from bayesdsm.emulator_model import RegularizationConfig, weight_priors

    emu = random_emulator(key, jnp.float32)
    assert "R_curvature" not in weight_priors(emu, 100, RegularizationConfig())
    fitted = weight_priors(emu, 100, RegularizationConfig(fit_curvature=True))
    assert fitted["R_curvature"].event_shape == (emu.n_bands,)
    # Appendix B: |c_G| ≈ 0.04 per mag, so a width of 0.1
    np.testing.assert_allclose(fitted["R_curvature"].base_dist.scale, 0.1)
