"""The second extinction component R₁ (K = 2): its sign convention and its geometry.

With A = E (R₀(θ) + ξ R₁(θ)) and ξ ~ N(0, 1), the likelihood is unchanged by
(R₁, ξ) → (-R₁, -ξ). Training fixes the sign by one rule (:func:`orient_variation`):
ξ > 0 means less extinction in the bluest band (the largest R₀) relative to the mean
curve's shape, which is what a larger R(V) gives in the Fitzpatrick (1999) family (at
fixed E(B-V), ∂A/∂R(V) has its most negative part orthogonal to R₀ in the bluest bands).

Only the part of R₁ orthogonal to R₀ (:func:`orthogonal_part`) changes the colours; the
parallel part trades with E and is pinned by the reddening prior and the parallaxes.
"""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
import numpy as np

from bayesdsm.emulator import Emulator, extinction_variation

__all__ = ["orthogonal_part", "angle_deg", "orient_variation", "theory_variation"]


def orthogonal_part(v, r0) -> np.ndarray:
    """The part of ``v`` orthogonal to ``r0`` (last axis: bands)."""
    v, r0 = np.asarray(v, np.float64), np.asarray(r0, np.float64)
    coef = np.sum(v * r0, -1, keepdims=True) / np.sum(r0 * r0, -1, keepdims=True)
    return v - coef * r0


def angle_deg(a, b) -> float:
    """The angle between two vectors, in degrees (0-180)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cos = np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def orient_variation(emu: Emulator, theta=None) -> Emulator:
    """``emu`` with R₁ (kernel and bias) negated if, at ``theta`` (default: the
    normaliser's median θ), R₁'s part orthogonal to R₀ is positive in the band of the
    largest R₀. A K = 1 emulator is returned unchanged."""
    if emu.variation is None:
        return emu
    th = emu.normalizer.median if theta is None else theta
    th = jnp.asarray(th, jnp.asarray(emu.normalizer.median).dtype)
    r0 = np.asarray(emu(th)[1])
    perp = orthogonal_part(np.asarray(extinction_variation(emu, th)), r0)
    if perp[int(np.argmax(r0))] <= 0:
        return emu
    v = emu.variation
    return eqx.tree_at(lambda e: e.variation, emu, type(v)(-v.weight, -v.bias))


def theory_variation(bands, teff: float, *, r_v: float = 3.1, d_rv: float = 0.1):
    """(R, ∂R/∂R(V)) (n_bands,) of the passband × blackbody × F99 theory at ``teff`` [K]
    and R(V) = ``r_v``, per unit E(B-V) at E → 0 (:func:`bayesdsm.passband_extinction.
    band_R_grid`; the derivative by a centred difference of ± ``d_rv``).

    Raises:
        ConfigError: a band unknown to :mod:`bayesdsm.passband_extinction`;
        ImportError: its optional dependencies (speclite, extinction) are missing.
    """
    from bayesdsm.passband_extinction import band_R_grid

    rv = [r_v - d_rv, r_v, r_v + d_rv]
    grid = np.stack([band_R_grid(np.array([float(teff)]), b, r_v=rv)[0] for b in bands])
    return grid[:, 1], (grid[:, 2] - grid[:, 0]) / (2.0 * d_rv)
