"""The validity region of a trained model (Green et al. 2021, §6, Fig. 13).

The training set's θ = (Teff, log g, [Fe/H]) density, smoothed with a Gaussian kernel of
bandwidth (50 K, 0.05 dex, 0.05 dex) and normalised so that its peak is 1, one density per
band (the stars observed in that band) and one for parallax (stars whose parallax entered
the likelihood). The paper trusts absolute magnitudes where the density is ≥ 1e-2 and
colours where it is ≥ 1e-3 (:data:`TRUST_ABSOLUTE`, :data:`TRUST_COLOURS`).

The density lives on a regular grid (default 50³ over Teff 2500-9000 K, log g -2-7,
[Fe/H] -2.5-1.0, the grid of the released model). :func:`compute_validity` evaluates the
kernel density *exactly at the grid nodes* (up to the kernel truncation ``truncate`` σ):
the kernel is separable, so each star touches only the few nodes within ``truncate``
bandwidths along each axis, and the sum is a scatter-add (``np.bincount``) of those
small outer products, O(N · k³) with k ≈ 2 · truncate · h / Δ + 2. There is no O(N²) or
O(N · grid) loop. :func:`validity_at` interpolates trilinearly between nodes (0 outside
the grid) and works inside ``jit``/``vmap``/``grad``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from bayesdsm.errors import ConfigError

__all__ = [
    "ValidityGrid",
    "DEFAULT_BANDWIDTH",
    "DEFAULT_GRID",
    "TRUST_ABSOLUTE",
    "TRUST_COLOURS",
    "default_axes",
    "compute_validity",
    "validity_at",
    "trilinear",
    "from_green2020",
]

#: Kernel bandwidth (Teff [K], log g [dex], [Fe/H] [dex]) of the paper (§6).
DEFAULT_BANDWIDTH: tuple[float, float, float] = (50.0, 0.05, 0.05)
#: (start, stop, n) per axis: the grid of the released ``green2020_input_density.h5``.
DEFAULT_GRID: tuple[tuple[float, float, int], ...] = (
    (2500.0, 9000.0, 50),
    (-2.0, 7.0, 50),
    (-2.5, 1.0, 50),
)
#: Density above which the paper trusts absolute magnitudes.
TRUST_ABSOLUTE = 1e-2
#: Density above which the paper trusts colours.
TRUST_COLOURS = 1e-3


class ValidityGrid(NamedTuple):
    """Peak-normalised training densities on a regular (Teff, log g, [Fe/H]) grid.

    Attributes:
        axes: (teff, logg, feh) uniformly spaced, increasing 1-D node coordinates
            (K, dex, dex), of lengths (nt, ng, nf).
        density: (n_components, nt, ng, nf) density per component, peak 1 (all zeros
            for a component without stars).
        names: component names, ``(*bands, "parallax")``.
    """

    axes: tuple[np.ndarray, np.ndarray, np.ndarray]
    density: np.ndarray
    names: tuple[str, ...]

    def index(self, name: str) -> int:
        """Position of component ``name`` in :attr:`density`."""
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(
                f"the validity grid has no component {name!r}; it has {list(self.names)}"
            ) from None


def default_axes(grid=DEFAULT_GRID) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Node coordinates from ``((start, stop, n), ...)``, as ``np.linspace``."""
    return tuple(np.linspace(float(a), float(b), int(n)) for a, b, n in grid)


def _check_axes(axes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    axes = tuple(np.asarray(a, np.float64) for a in axes)
    if len(axes) != 3:
        raise ConfigError(f"a validity grid needs 3 axes (Teff, log g, [Fe/H]), got {len(axes)}")
    for name, a in zip(("teff", "logg", "feh"), axes):
        if a.ndim != 1 or a.size < 2:
            raise ConfigError(f"validity axis {name} must be 1-D with ≥ 2 nodes, got {a.shape}")
        step = np.diff(a)
        if not (np.all(step > 0) and np.allclose(step, step[0], rtol=1e-6, atol=0)):
            raise ConfigError(f"validity axis {name} must be increasing and uniformly spaced")
    return axes


def _axis_weights(x, axis, h, truncate):
    """Per-star node indices (N, k) and Gaussian kernel values (N, k) along one axis."""
    x0, dx = axis[0], axis[1] - axis[0]
    u = (x - x0) / dx
    half = int(np.ceil(truncate * h / dx)) + 1
    offsets = np.arange(-half, half + 1)
    idx = np.floor(u).astype(np.int64)[:, None] + offsets[None, :]
    d = (axis[0] + idx * dx - x[:, None]) / h
    w = np.exp(-0.5 * d**2)
    w = np.where((np.abs(d) <= truncate) & (idx >= 0) & (idx < axis.size), w, 0.0)
    return np.clip(idx, 0, axis.size - 1), w


def compute_validity(
    theta,
    observed,
    parallax_ok,
    bands: Sequence[str],
    bandwidth: Sequence[float] = DEFAULT_BANDWIDTH,
    grid=DEFAULT_GRID,
    *,
    axes=None,
    truncate: float = 4.0,
    chunk: int = 8192,
) -> ValidityGrid:
    """Kernel density of the training θ on a grid, per band and for parallax (§6).

    Args:
        theta: (N, 3) training θ̂ (Teff [K], log g [dex], [Fe/H] [dex]); rows with a
            non-finite entry are ignored.
        observed: (N, n_bands) bool, True where the star is observed in the band.
        parallax_ok: (N,) bool, True where the star's parallax was used.
        bands: the n_bands band names (first = reference).
        bandwidth: Gaussian kernel σ per axis (K, dex, dex).
        grid: ``((start, stop, n), ...)`` per axis (Teff, log g, [Fe/H]).
        axes: three uniformly spaced 1-D node arrays; overrides ``grid``.
        truncate: the kernel is cut at this many σ (relative error ≲ exp(-truncate²/2)).
        chunk: stars scattered at a time (bounds memory at ~chunk · k³ · 16 bytes).

    Returns:
        A :class:`ValidityGrid` with names ``(*bands, "parallax")``, each density peak 1.
    """
    theta = np.asarray(theta, np.float64)
    observed = np.asarray(observed, bool)
    parallax_ok = np.asarray(parallax_ok, bool)
    bands = tuple(bands)
    if theta.ndim != 2 or theta.shape[1] != 3:
        raise ConfigError(f"theta must have shape (N, 3), got {theta.shape}")
    if observed.shape != (len(theta), len(bands)) or parallax_ok.shape != (len(theta),):
        raise ConfigError(
            f"observed {observed.shape} / parallax_ok {parallax_ok.shape} do not match "
            f"{len(theta)} stars and {len(bands)} bands"
        )
    h = np.asarray(bandwidth, np.float64)
    if h.shape != (3,) or not np.all(h > 0):
        raise ConfigError(f"bandwidth must be 3 positive numbers, got {bandwidth}")
    axes = _check_axes(default_axes(grid) if axes is None else axes)
    shape = tuple(a.size for a in axes)
    n_cells = int(np.prod(shape))
    weights = np.concatenate([observed, parallax_ok[:, None]], axis=1).astype(np.float64)
    good = np.all(np.isfinite(theta), axis=1)
    theta, weights = theta[good], weights[good]
    n_comp = weights.shape[1]
    dens = np.zeros((n_comp, n_cells))
    for start in range(0, len(theta), chunk):
        th = theta[start : start + chunk]
        (it, wt), (ig, wg), (if_, wf) = (
            _axis_weights(th[:, j], axes[j], h[j], truncate) for j in range(3)
        )
        cell = (it[:, :, None, None] * shape[1] + ig[:, None, :, None]) * shape[2] + if_[
            :, None, None, :
        ]
        kern = wt[:, :, None, None] * wg[:, None, :, None] * wf[:, None, None, :]
        cell, kern = cell.reshape(len(th), -1), kern.reshape(len(th), -1)
        keep = kern > 0
        flat_cell = cell[keep]
        star = np.broadcast_to(np.arange(len(th))[:, None], keep.shape)[keep]
        flat_kern = kern[keep]
        for c in range(n_comp):
            wc = weights[start : start + chunk, c]
            if wc.any():
                dens[c] += np.bincount(flat_cell, flat_kern * wc[star], minlength=n_cells)
    peak = dens.max(axis=1, keepdims=True)
    dens = np.where(peak > 0, dens / np.where(peak > 0, peak, 1.0), 0.0)
    return ValidityGrid(axes, dens.reshape((n_comp, *shape)), (*bands, "parallax"))


def validity_at(grid: ValidityGrid, theta, name: str):
    """Trilinearly interpolated density of component ``name`` at θ; 0 outside the grid.

    JAX-traceable (usable inside ``jit``, ``vmap`` and ``grad``); ``grid`` and ``name``
    are static (the component's density becomes a constant of the trace).

    Args:
        grid: a :class:`ValidityGrid`.
        theta: (..., 3) θ = (Teff [K], log g [dex], [Fe/H] [dex]).
        name: a band name or ``"parallax"``.

    Returns:
        (...,) density in [0, 1], in the dtype of ``theta``.
    """
    theta = jnp.asarray(theta)
    dens = jnp.asarray(grid.density[grid.index(name)], theta.dtype)
    origin = [float(a[0]) for a in grid.axes]
    step = [float(a[1] - a[0]) for a in grid.axes]
    out, inside = trilinear(dens, origin, step, theta)
    return jnp.where(inside, out, jnp.zeros((), theta.dtype))


def trilinear(density, origin, step, theta):
    """Trilinear interpolation of a density on a regular grid at θ (..., 3), θ clamped to
    the grid (so constant beyond its edges), and whether θ lies inside it. JAX-traceable.

    Args:
        density: (n0, n1, n2) values at the nodes; origin, step: (3,) first node and
            spacing per axis.
    Returns:
        ((...,) values in the dtype of ``density``, (...,) bool inside).
    """
    n = density.shape
    lo, frac, inside = [], [], True
    for j in range(3):
        u = (theta[..., j] - origin[j]) / step[j]
        inside = inside & (u >= 0) & (u <= n[j] - 1)
        u = jnp.clip(u, 0.0, n[j] - 1.0)
        i0 = jnp.clip(jnp.floor(u), 0, n[j] - 2).astype(jnp.int32)
        lo.append(i0)
        frac.append(u - i0)
    out = jnp.zeros(theta.shape[:-1], density.dtype)
    for dt in (0, 1):
        wt = frac[0] if dt else 1.0 - frac[0]
        for dg in (0, 1):
            wg = frac[1] if dg else 1.0 - frac[1]
            for df in (0, 1):
                wf = frac[2] if df else 1.0 - frac[2]
                out = out + wt * wg * wf * density[lo[0] + dt, lo[1] + dg, lo[2] + df]
    return out, inside


def from_green2020(directory) -> ValidityGrid:
    """The released model's input density (``green2020_input_density.h5``) as a grid.

    Components are ``(G, BP, ..., W2, "parallax")``; G, which every training star has,
    is the maximum over the released bands (see
    :func:`bayesdsm.green2020.load_green2020_density`).
    """
    from bayesdsm.green2020 import load_green2020_density

    d = load_green2020_density(directory)
    return ValidityGrid(_check_axes(d["grid"]), np.asarray(d["density"]), tuple(d["bands"]))
