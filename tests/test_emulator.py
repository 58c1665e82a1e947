"""Emulator modules: shapes, batching, B algebra, dtype, range warning, array names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _reference import forward, np_weights, random_emulator

from bayesdsm.conventions import b_matrix
from bayesdsm.emulator import (
    EmulatorConfig,
    absolute_magnitudes,
    batched,
    check_theta_range,
    emulator_arrays,
    emulator_from_arrays,
    init_emulator,
    predict_colours,
    predict_magnitudes,
    reddening,
)
from bayesdsm.errors import ConfigError, ValidityWarning

SUN = jnp.array([5780.0, 4.44, 0.0])


@pytest.mark.parametrize(
    ("bands", "hidden"),
    [(("G", "BP", "RP"), (8,)), (EmulatorConfig().bands, (32, 32)), (("G", "J"), (4, 5, 6))],
)
def test_shapes(key, bands, hidden):
    emu = init_emulator(key, EmulatorConfig(bands=bands, hidden=hidden))
    bm, r = emu(SUN)
    assert bm.shape == r.shape == (len(bands),)
    assert emu.hidden == hidden
    assert np.all(np.asarray(r) > 0)


@pytest.mark.parametrize("n", [1, 7, 64])
def test_batched_equals_per_star(key, n):
    emu = random_emulator(key, jnp.float32)
    theta = jnp.stack(
        [jnp.linspace(4000, 7000, n), jnp.linspace(1.0, 4.8, n), jnp.linspace(-1, 0.3, n)], 1
    )
    ebv = jnp.linspace(0.0, 1.0, n)
    out = batched(predict_colours)(emu, theta, ebv)
    assert out.shape == (n, 13)
    for i in range(n):
        np.testing.assert_allclose(
            out[i], predict_colours(emu, theta[i], ebv[i]), rtol=1e-5, atol=1e-6
        )


def test_colour_algebra(key):
    """B(M + E R) from predict_colours equals B @ predict_magnitudes; M = B⁻¹(BM)."""
    with jax.enable_x64(True):
        emu = random_emulator(key, jnp.float64)
        B = b_matrix(13)
        m = np.asarray(predict_magnitudes(emu, SUN, 0.7))
        np.testing.assert_allclose(predict_colours(emu, SUN, 0.7), B @ m, rtol=1e-13)
        bm, _ = emu(SUN)
        np.testing.assert_allclose(B @ np.asarray(absolute_magnitudes(emu, SUN)), bm, rtol=1e-13)


def test_matches_numpy_forward(key):
    with jax.enable_x64(True):
        emu = random_emulator(key, jnp.float64)
        bm, r = emu(SUN)
        bm_ref, r_ref, dbm_ref, dr_ref = forward(np_weights(emu), np.asarray(SUN))
        np.testing.assert_allclose(bm, bm_ref, rtol=1e-13)
        np.testing.assert_allclose(r, r_ref, rtol=1e-13)
        jac = jax.jacfwd(lambda t: emu(t)[0])(SUN)
        np.testing.assert_allclose(jac, dbm_ref, rtol=1e-10, atol=1e-14)


def test_float64_emulator(key):
    with jax.enable_x64(True):
        emu = init_emulator(key, dtype=jnp.float64)
        bm, r = emu(SUN.astype(jnp.float64))
        assert bm.dtype == r.dtype == jnp.float64
        emu32 = emu.astype(jnp.float32)
        assert emu32.stellar.layers[0].weight.dtype == jnp.float32


def test_check_theta_range_warns(key):
    emu = init_emulator(key)
    theta = np.array([[5780.0, 4.44, 0.0], [20000.0, 4.0, 0.0]])
    with pytest.warns(ValidityWarning, match="1 of 2 stars"):
        outside = check_theta_range(emu, theta)
    assert outside.tolist() == [False, True]
    with pytest.warns(ValidityWarning):  # still evaluates, finite
        out = batched(predict_colours)(emu, jnp.asarray(theta, jnp.float32), jnp.zeros(2))
        check_theta_range(emu, theta)
    assert np.all(np.isfinite(out))


def test_arrays_round_trip_and_shape_check(key):
    emu = init_emulator(key)
    arrays = emulator_arrays(emu)
    back = emulator_from_arrays(emu.config, arrays)
    for a, b in zip(jax.tree_util.tree_leaves(emu), jax.tree_util.tree_leaves(back)):
        np.testing.assert_array_equal(a, b)
    bad = dict(arrays, output_kernel=jnp.zeros((13, 31)))
    with pytest.raises(ConfigError, match="output_kernel"):
        emulator_from_arrays(emu.config, bad)


def test_config_validation():
    with pytest.raises(ConfigError, match="activation"):
        EmulatorConfig(activation="swishy")
    with pytest.raises(ConfigError):
        EmulatorConfig(bands=("G", "G"))


@pytest.mark.usefixtures("x64")
def test_extinction_curvature_known_values(key):
    """A = A₁ + c A₁² with A₁ = E R and ∂A/∂E = R (1 + 2 c E R); c = 0 is the paper."""
    emu = random_emulator(key, jnp.float64)
    theta = jnp.asarray([5600.0, 4.2, -0.3])
    bm, R = emu(theta)
    M = jnp.asarray(np.linalg.inv(b_matrix(emu.n_bands))) @ bm
    np.testing.assert_allclose(predict_magnitudes(emu, theta, 0.4), M + 0.4 * R, rtol=1e-12)
    c = jnp.linspace(-0.04, 0.0, emu.n_bands)  # Appendix B: -0.04 per mag in Gaia G
    arrays = {**emulator_arrays(emu), "R_curvature": c}
    curved = emulator_from_arrays(emu.config, arrays, jnp.float64)
    m = M + 0.4 * R + c * (0.4 * R) ** 2
    np.testing.assert_allclose(predict_magnitudes(curved, theta, 0.4), m, rtol=1e-12)
    a, slope = reddening(curved, R, 0.4)
    np.testing.assert_allclose(slope, jax.jacfwd(lambda e: reddening(curved, R, e)[0])(0.4))
    np.testing.assert_allclose(a, m - M, rtol=1e-10)
    c_pred = predict_colours(curved, theta, 0.4)
    np.testing.assert_allclose(
        c_pred, jnp.asarray(b_matrix(emu.n_bands)) @ m, rtol=1e-10, atol=1e-12
    )


@pytest.mark.usefixtures("x64")
def test_arrays_without_curvature_load_as_linear(key):
    """Model files and the Keras import predate the curvature: it is zero."""
    emu = random_emulator(key)
    arrays = dict(emulator_arrays(emu))
    arrays.pop("R_curvature")
    back = emulator_from_arrays(emu.config, arrays)
    np.testing.assert_array_equal(back.extinction.curvature, np.zeros(emu.n_bands))
    with pytest.raises(ConfigError, match="R_curvature"):
        emulator_from_arrays(emu.config, {**arrays, "R_curvature": np.zeros(3)})
