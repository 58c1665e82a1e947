"""Validity density (§6): grid KDE against a direct sum of Gaussians; interpolation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm.validity import compute_validity, validity_at

BANDS = ("G", "BP", "RP")
GRID = ((4000.0, 7000.0, 16), (0.0, 5.0, 11), (-1.5, 0.5, 9))


def direct_kde(theta, weights, axes, h):
    """O(N · nodes) reference: Σ_n w_n Π_j exp(-(x_j - θ_nj)² / 2h_j²) at every node."""
    T, G, F = np.meshgrid(*axes, indexing="ij")
    out = np.zeros(T.shape)
    for th, w in zip(theta, weights):
        out += w * np.exp(
            -0.5
            * (((T - th[0]) / h[0]) ** 2 + ((G - th[1]) / h[1]) ** 2 + ((F - th[2]) / h[2]) ** 2)
        )
    return out / out.max()


@pytest.fixture(scope="module")
def sample():
    rng = np.random.default_rng(4)
    n = 300
    theta = np.stack(
        [rng.normal(5500, 500, n), rng.normal(3.5, 1.0, n), rng.normal(-0.4, 0.3, n)], 1
    )
    observed = rng.random((n, 3)) > 0.3
    observed[:, 0] = True
    return theta, observed, rng.random(n) > 0.5


@pytest.mark.parametrize(("bandwidth", "truncate", "tol"), [
    # truncation at t σ drops at most exp(-t²/2) of a star's kernel
    ((250.0, 0.4, 0.2), 7.0, 1e-9),
    ((50.0, 0.05, 0.05), 7.0, 1e-9),
    ((250.0, 0.4, 0.2), 4.0, 2e-3),
])  # fmt: skip
def test_grid_kde_matches_direct_sum(sample, bandwidth, truncate, tol):
    theta, observed, plx = sample
    grid = compute_validity(theta, observed, plx, BANDS, bandwidth, GRID, truncate=truncate)
    assert grid.names == (*BANDS, "parallax")
    assert grid.density.shape == (4, 16, 11, 9)
    for c, w in enumerate([*observed.T, plx]):
        want = direct_kde(theta, w.astype(float), grid.axes, bandwidth)
        np.testing.assert_allclose(grid.density[c], want, atol=tol)
        assert grid.density[c].max() == pytest.approx(1.0)


def test_interpolation_is_exact_at_nodes_and_zero_outside(sample):
    theta, observed, plx = sample
    grid = compute_validity(theta, observed, plx, BANDS, (250.0, 0.4, 0.2), GRID)
    i, j, k = 5, 4, 3
    node = jnp.array([grid.axes[0][i], grid.axes[1][j], grid.axes[2][k]])
    with jax.enable_x64(True):
        got = validity_at(grid, node.astype(jnp.float64), "BP")
    assert float(got) == pytest.approx(grid.density[1, i, j, k], rel=1e-12)
    mid = (node + jnp.array([grid.axes[0][i + 1], grid.axes[1][j], grid.axes[2][k]])) / 2
    want = 0.5 * (grid.density[1, i, j, k] + grid.density[1, i + 1, j, k])
    assert float(validity_at(grid, mid, "BP")) == pytest.approx(want, rel=1e-5)
    outside = jnp.array([[3000.0, 3.0, 0.0], [5000.0, 6.0, 0.0], [5000.0, 3.0, 0.8]])
    np.testing.assert_array_equal(validity_at(grid, outside, "G"), 0.0)
    f = jax.jit(jax.vmap(lambda t: validity_at(grid, t, "parallax")))
    assert f(jnp.asarray(theta[:5], jnp.float32)).shape == (5,)
    g = jax.grad(lambda t: validity_at(grid, t, "G"))(mid)
    assert np.all(np.isfinite(g))
