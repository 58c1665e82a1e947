"""A smooth Milky Way for the simulator: stellar number density and a 3-D dust disk.

Stellar density (Jurić et al. 2008, ApJ 673, 864, Table 10, bias-corrected fit), in stars per
pc³ relative to the thin disk at the Sun:

* thin disk: exp(-(R - R0)/L1 - |z + Z0|/H1), L1 = 2600 pc, H1 = 300 pc;
* thick disk: f_thick · exp(-(R - R0)/L2 - |z + Z0|/H2), L2 = 3600 pc, H2 = 900 pc,
  f_thick = 0.12;
* halo: f_halo · (R0 / sqrt(R² + (z/q)²))^n, f_halo = 0.0051, q = 0.64, n = 2.77
  (softened inside 500 pc).

R0 = 8000 pc; the Sun is Z0 = 25 pc above the plane. Coordinates: distance d [pc] along
Galactic (l, b) [deg].

Dust: an exponential disk, dE/ds = e0 · exp(-(R - R0)/L_d - |z + Z0|/H_d) [mag/pc], with E on
the SFD scale; e0 = ``e_per_kpc``/1000 (default 0.3 mag/kpc in the plane at the Sun),
H_d = 120 pc, L_d = 3000 pc (of the order of Drimmel & Spergel 2001). The "SFD-like" column is
the integral to 50 kpc.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["GalaxyModel", "DustModel", "POPULATIONS", "galactocentric"]

POPULATIONS = ("thin", "thick", "halo")

_R0 = 8000.0
_Z0 = 25.0


def galactocentric(l_deg, b_deg, d_pc):
    """Cylindrical (R, z) [pc] of points at distance d along (l, b); z relative to the Sun."""
    l_rad, b_rad = np.deg2rad(l_deg), np.deg2rad(b_deg)
    x = d_pc * np.cos(b_rad) * np.cos(l_rad)
    y = d_pc * np.cos(b_rad) * np.sin(l_rad)
    z = d_pc * np.sin(b_rad)
    R = np.sqrt((_R0 - x) ** 2 + y**2)
    return R, z


@dataclass(frozen=True)
class GalaxyModel:
    """Jurić et al. (2008) thin disk + thick disk + halo number densities (see module doc)."""

    thin_scale_length: float = 2600.0
    thin_scale_height: float = 300.0
    thick_scale_length: float = 3600.0
    thick_scale_height: float = 900.0
    thick_fraction: float = 0.12
    halo_fraction: float = 0.0051
    halo_flattening: float = 0.64
    halo_index: float = 2.77

    def density(self, population: str, R, z):
        """Number density of ``population`` at (R, z) [pc], relative to the thin disk at the Sun."""
        zz = np.abs(z + _Z0)
        if population == "thin":
            return np.exp(
                -(R - _R0) / self.thin_scale_length
                - zz / self.thin_scale_height
                + _Z0 / self.thin_scale_height
            )
        if population == "thick":
            return self.thick_fraction * np.exp(
                -(R - _R0) / self.thick_scale_length
                - zz / self.thick_scale_height
                + _Z0 / self.thick_scale_height
            )
        if population == "halo":
            r = np.sqrt(R**2 + ((z + _Z0) / self.halo_flattening) ** 2 + 500.0**2)
            return self.halo_fraction * (_R0 / r) ** self.halo_index
        raise ValueError(f"unknown population {population!r}; use one of {POPULATIONS}")

    def cumulative_counts(self, population, l_deg, b_deg, d_grid):
        """(F, D) ∫_0^d n(s) s² ds along each sight line (F,) at distances ``d_grid`` (D,)."""
        R, z = galactocentric(l_deg[:, None], b_deg[:, None], d_grid[None, :])
        f = self.density(population, R, z) * d_grid[None, :] ** 2
        steps = 0.5 * (f[:, 1:] + f[:, :-1]) * np.diff(d_grid)[None, :]
        return np.concatenate([np.zeros((len(l_deg), 1)), np.cumsum(steps, axis=1)], axis=1)


@dataclass(frozen=True)
class DustModel:
    """Exponential dust disk; E on the SFD scale (see module doc)."""

    e_per_kpc: float = 0.3
    scale_height: float = 120.0
    scale_length: float = 3000.0
    n_steps: int = 400

    def _rate(self, l_deg, b_deg, s):
        R, z = galactocentric(l_deg, b_deg, s)
        return (
            self.e_per_kpc
            / 1000.0
            * np.exp(-(R - _R0) / self.scale_length - np.abs(z + _Z0) / self.scale_height)
        )

    def reddening(self, l_deg, b_deg, d_pc):
        """(N,) E out to distance d [pc] along (l, b), by the trapezoid rule in log distance."""
        l_deg, b_deg, d_pc = (
            np.atleast_1d(np.asarray(a, np.float64)) for a in (l_deg, b_deg, d_pc)
        )
        u = np.linspace(0.0, 1.0, self.n_steps)[None, :]
        s = d_pc[:, None] * (np.expm1(u * 6.0) / np.expm1(6.0))  # dense near the Sun
        f = self._rate(l_deg[:, None], b_deg[:, None], s)
        return np.sum(0.5 * (f[:, 1:] + f[:, :-1]) * np.diff(s, axis=1), axis=1)

    def column(self, l_deg, b_deg):
        """(N,) the SFD-like full column: E integrated to 50 kpc."""
        l_deg = np.atleast_1d(np.asarray(l_deg, np.float64))
        return self.reddening(l_deg, b_deg, np.full(l_deg.shape, 5.0e4))
