"""The per-star passes of an iteration against the separate likelihood functions."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm.emulator import emulator_arrays, emulator_from_arrays
from bayesdsm.likelihood import (
    chi2_whitened,
    frozen_whitening,
    reddening_posterior,
    stardata_from_catalog,
)
from bayesdsm.train._passes import rebuild


@pytest.mark.parametrize("curvature", [0.0, -0.04])
def test_rebuild_matches_separate_passes(cat, run, curvature):
    """One Jacobian per star gives the same E′, σ_E′, W and χ² as the separate passes
    (with the extinction's curvature too: its ∂A/∂θ then has the 1 + 2cER factor)."""
    stars = jax.tree_util.tree_map(lambda a: np.asarray(a[:50]), stardata_from_catalog(cat))
    arrays = {**emulator_arrays(run.emulator), "R_curvature": jnp.full(13, curvature)}
    emu = emulator_from_arrays(run.emulator.config, arrays, jnp.float32)
    consts = jnp.asarray([0.0, 10.0, 0.02, 0.1], jnp.float32)
    e, e_err, W, chi, R = rebuild(emu, stars, stars.ebv, stars.ebv_err, consts, chunk=32)
    stars = jax.tree_util.tree_map(jnp.asarray, stars)
    mean, var = jax.vmap(reddening_posterior, (None, 0, 0, 0))(emu, stars, stars.ebv, stars.ebv_err)
    e_ref = jnp.clip(mean, 0.0, 10.0)
    err_ref = jnp.sqrt(jnp.maximum(var, 0.02**2 + (0.1 * e_ref) ** 2))
    np.testing.assert_allclose(e, e_ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(e_err, err_ref, rtol=1e-4, atol=1e-6)
    s = stars._replace(ebv=jnp.asarray(e), ebv_err=jnp.asarray(e_err))
    W_ref = jax.vmap(frozen_whitening, (None, 0))(emu, s)
    chi_ref = jax.vmap(chi2_whitened, (None, 0, 0))(emu, s, W_ref)
    np.testing.assert_allclose(W, W_ref, rtol=1e-4, atol=1e-4 * float(jnp.abs(W_ref).max()))
    np.testing.assert_allclose(chi, chi_ref, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(R, jax.vmap(lambda t: emu(t)[1])(stars.theta), rtol=1e-6)
