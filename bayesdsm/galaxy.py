"""The Milky Way: one set of density components, two parameter sets.

Components (each a function of one point, for NumPy or, with ``xp=jax.numpy``, JAX; any
one length unit, as long as the parameters share it):

* :func:`logn_disk`: an exponential disk, ln n = −(R − R_ref)/L − (|Z| − |Z_ref|)/H,
  0 at (R_ref, Z_ref). The thin disk is the unit of density; the thick disk adds
  ln f_thick; the dust disk of :class:`DustModel` is one too.
* :func:`halo_radius`: the halo's effective radius √(R² + (Z/q)² + core²), whose
  flattening is constant or goes from q_centre at the centre to q far out; the halo is a
  power law in it, n = f_halo (r_eff / r_ref)^−index.
* :func:`logp_feh`: a Gaussian [Fe/H] per component.

Coordinates (:func:`galactocentric`): distance d along Galactic (l, b) [deg] to the
Galactocentric radius R and the height Z above the plane; the Sun is at (R_sun, Z_sun).

Parameter sets (:class:`GalaxyModel`, lengths in pc):

* :data:`JURIC2008`: the simulator's (:mod:`bayesdsm.simulate`). Jurić et al. 2008, ApJ
  673, 864, Table 10 (bias-corrected fit): R_sun = 8000, Z_sun = 25; thin disk L = 2600,
  H = 300; thick disk L = 3600, H = 900, f = 0.12; halo f = 0.0051 at r_eff = R_sun,
  q = 0.64, index 2.77, softened by a 500 pc core. The simulator draws [Fe/H] per
  :class:`~bayesdsm.simulate.Population`, so this set has none.
* :data:`BRUTUS`: the inference prior's (:func:`log_galactic_prior`). brutus (Speagle et
  al. 2025, arXiv:2503.02227, ``brutus.priors`` ``gal_lnprior`` defaults, partly from
  Bland-Hawthorn & Gerhard 2016): R_sun = 8200, Z_sun = 25; thin disk L = 2600, H = 300;
  thick disk L = 2000, H = 900, f = 0.04; halo f = 0.005 at the Sun, index 4.2, q from
  0.2 at the centre to 0.8 far out (scale 6000), core 1000; [Fe/H] ~ N(−0.2, 0.3) thin,
  N(−0.7, 0.4) thick, N(−1.6, 0.5) halo.

Dust (:class:`DustModel`, simulator): dE/ds = e0 exp(−(R − R_sun)/L_d − |Z|/H_d)
[mag/pc] on the SFD scale, e0 = ``e_per_kpc``/1000 (default 0.3 mag/kpc in the plane at
R_sun), H_d = 120 pc, L_d = 3000 pc (of the order of Drimmel & Spergel 2001); the
"SFD-like" column is the integral to 50 kpc.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

__all__ = [
    "POPULATIONS",
    "GalaxyModel",
    "JURIC2008",
    "BRUTUS",
    "DustModel",
    "galactocentric",
    "logn_disk",
    "halo_radius",
    "logp_feh",
    "log_galactic_prior",
]

#: The density components, in this order.
POPULATIONS = ("thin", "thick", "halo")

_LN10 = float(np.log(10.0))


def galactocentric(l_deg, b_deg, d, r_sun, z_sun, *, xp=np):
    """(R, Z): Galactocentric radius and height above the plane of the point at distance
    ``d`` along Galactic (l, b) [deg], for the Sun at (``r_sun``, ``z_sun``) (d's unit)."""
    l_rad, b_rad = xp.deg2rad(l_deg), xp.deg2rad(b_deg)
    x = r_sun - d * xp.cos(b_rad) * xp.cos(l_rad)
    y = d * xp.cos(b_rad) * xp.sin(l_rad)
    return xp.sqrt(x**2 + y**2), z_sun + d * xp.sin(b_rad)


def logn_disk(R, Z, r_ref, z_ref, length, height):
    """ln n of an exponential disk of scale ``length`` and ``height``, 0 at (r_ref, z_ref)."""
    return -(R - r_ref) / length - (abs(Z) - abs(z_ref)) / height


def halo_radius(R, Z, q, core, q_centre=None, r_q=None, *, xp=np):
    """The halo's effective radius √(R² + (Z/q)² + core²). With ``q_centre``, the
    flattening varies: q(r) = q − (q − q_centre) exp(1 − r/r_q), r = √(R² + Z² + r_q²)."""
    if q_centre is not None:
        r = xp.sqrt(R**2 + Z**2 + r_q**2)
        q = q - (q - q_centre) * xp.exp(1.0 - r / r_q)
    return xp.sqrt(R**2 + (Z / q) ** 2 + core**2)


def logp_feh(feh, mean, sigma, *, xp=np):
    """ln N([Fe/H] | mean, sigma), normalised (dex⁻¹)."""
    return -0.5 * ((feh - mean) / sigma) ** 2 - xp.log(sigma) - 0.5 * np.log(2 * np.pi)


@dataclass(frozen=True)
class GalaxyModel:
    """Thin disk + thick disk + halo number densities, relative to the thin disk at the
    Sun (see the module doc). Lengths in pc; the defaults are :data:`JURIC2008`.

    Attributes:
        r_sun, z_sun: the Sun's Galactocentric radius and height above the plane.
        thin_scale_length, thin_scale_height, thick_scale_length, thick_scale_height.
        thick_fraction: thick-disk density at the Sun.
        halo_fraction: halo density where r_eff = ``halo_ref_radius``.
        halo_index: n_halo ∝ r_eff^−index.
        halo_flattening: q (far out, where it varies).
        halo_flattening_centre, halo_flattening_scale: q at the centre and the scale r_q of
            its change (None: q constant).
        halo_core: core radius of r_eff.
        halo_ref_radius: see ``halo_fraction`` (None: the Sun's r_eff).
        feh_thin, feh_thick, feh_halo: ([Fe/H] mean, s.d.) per component, or None.
    """

    r_sun: float = 8000.0
    z_sun: float = 25.0
    thin_scale_length: float = 2600.0
    thin_scale_height: float = 300.0
    thick_scale_length: float = 3600.0
    thick_scale_height: float = 900.0
    thick_fraction: float = 0.12
    halo_fraction: float = 0.0051
    halo_index: float = 2.77
    halo_flattening: float = 0.64
    halo_flattening_centre: float | None = None
    halo_flattening_scale: float | None = None
    halo_core: float = 500.0
    halo_ref_radius: float | None = 8000.0
    feh_thin: tuple[float, float] | None = None
    feh_thick: tuple[float, float] | None = None
    feh_halo: tuple[float, float] | None = None

    def __post_init__(self):
        for name in ("feh_thin", "feh_thick", "feh_halo"):  # JSON gives lists
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, tuple(v))

    def galactocentric(self, l_deg, b_deg, d, *, xp=np):
        """(R, Z) [pc] of the point at distance d [pc] along (l, b) [deg]."""
        return galactocentric(l_deg, b_deg, d, self.r_sun, self.z_sun, xp=xp)

    def logn(self, population: str, R, Z, *, xp=np):
        """ln n of ``population`` (thin, thick or halo) at (R, Z) [pc]."""
        if population == "thin":
            return logn_disk(
                R, Z, self.r_sun, self.z_sun, self.thin_scale_length, self.thin_scale_height
            )
        if population == "thick":
            return xp.log(self.thick_fraction) + logn_disk(
                R, Z, self.r_sun, self.z_sun, self.thick_scale_length, self.thick_scale_height
            )
        if population == "halo":
            q = (self.halo_flattening, self.halo_core)
            q += (self.halo_flattening_centre, self.halo_flattening_scale)
            r_ref = self.halo_ref_radius
            if r_ref is None:
                r_ref = halo_radius(self.r_sun, self.z_sun, *q, xp=xp)
            r_eff = halo_radius(R, Z, *q, xp=xp)
            return xp.log(self.halo_fraction) - self.halo_index * (xp.log(r_eff) - xp.log(r_ref))
        raise ValueError(f"unknown population {population!r}; use one of {POPULATIONS}")

    def density(self, population: str, R, Z):
        """n of ``population`` at (R, Z) [pc], relative to the thin disk at the Sun."""
        return np.exp(self.logn(population, R, Z))

    def cumulative_counts(self, population, l_deg, b_deg, d_grid):
        """(F, D) ∫_0^d n(s) s² ds along each sight line (F,) at distances ``d_grid`` (D,)."""
        R, Z = self.galactocentric(l_deg[:, None], b_deg[:, None], d_grid[None, :])
        f = self.density(population, R, Z) * d_grid[None, :] ** 2
        steps = 0.5 * (f[:, 1:] + f[:, :-1]) * np.diff(d_grid)[None, :]
        return np.concatenate([np.zeros((len(l_deg), 1)), np.cumsum(steps, axis=1)], axis=1)


#: The simulator's Galaxy: Jurić et al. (2008), see the module doc.
JURIC2008 = GalaxyModel()

#: The inference prior's Galaxy: brutus defaults (Speagle et al. 2025), see the module doc.
BRUTUS = GalaxyModel(
    r_sun=8200.0,
    z_sun=25.0,
    thin_scale_length=2600.0,
    thin_scale_height=300.0,
    thick_scale_length=2000.0,
    thick_scale_height=900.0,
    thick_fraction=0.04,
    halo_fraction=0.005,
    halo_index=4.2,
    halo_flattening=0.8,
    halo_flattening_centre=0.2,
    halo_flattening_scale=6000.0,
    halo_core=1000.0,
    halo_ref_radius=None,
    feh_thin=(-0.2, 0.3),
    feh_thick=(-0.7, 0.4),
    feh_halo=(-1.6, 0.5),
)

_LENGTHS = (
    "r_sun",
    "z_sun",
    "thin_scale_length",
    "thin_scale_height",
    "thick_scale_length",
    "thick_scale_height",
    "halo_flattening_scale",
    "halo_core",
    "halo_ref_radius",
)


def _in_kpc(galaxy: GalaxyModel) -> GalaxyModel:
    """``galaxy`` with its lengths in kpc (x / 1000 is exact to the last bit for whole pc:
    8200 / 1000 is the double nearest 8.2)."""
    kpc = {k: getattr(galaxy, k) / 1000.0 for k in _LENGTHS if getattr(galaxy, k) is not None}
    return dataclasses.replace(galaxy, **kpc)


def log_galactic_prior(mu, feh, l_deg, b_deg, mu_max=20.0, galaxy: GalaxyModel = BRUTUS):
    """ln p(μ, [Fe/H] | l, b) for one star (JAX): logsumexp over the components of
    ln n_c(R, Z) + ln N([Fe/H] | c), plus 3 ln d (the volume element d² dd, with dd/dμ =
    d ln10 / 5), up to a constant. A soft wall (0.5 mag) beyond ``mu_max`` keeps it proper
    (the halo term falls only as d^(3 − index)). Computed in kpc.

    Args:
        mu: distance modulus [mag]; feh: [Fe/H] [dex]; l_deg, b_deg: Galactic (l, b) [deg].
        galaxy: the parameter set; it needs [Fe/H] components (default :data:`BRUTUS`).
    """
    import jax
    import jax.numpy as jnp

    if None in (galaxy.feh_thin, galaxy.feh_thick, galaxy.feh_halo):
        raise ValueError("log_galactic_prior needs a GalaxyModel with [Fe/H] (feh_thin, ...)")
    g = _in_kpc(galaxy)
    d_kpc = 10.0 ** (mu / 5.0 - 2.0)
    R, Z = g.galactocentric(l_deg, b_deg, d_kpc, xp=jnp)

    def term(c):  # ln n_c + ln N([Fe/H] | c)
        mean, sigma = getattr(g, f"feh_{c}")
        return g.logn(c, R, Z, xp=jnp) + logp_feh(feh, mean, sigma, xp=jnp)

    comps = jnp.stack([term(c) for c in POPULATIONS])
    wall = -0.5 * jnp.maximum(mu - mu_max, 0.0) ** 2 / 0.5**2
    return jax.nn.logsumexp(comps) + 3.0 * _LN10 * mu / 5.0 + wall


@dataclass(frozen=True)
class DustModel:
    """Exponential dust disk; E on the SFD scale (see the module doc). Lengths in pc."""

    e_per_kpc: float = 0.3
    scale_height: float = 120.0
    scale_length: float = 3000.0
    n_steps: int = 400
    r_sun: float = JURIC2008.r_sun
    z_sun: float = JURIC2008.z_sun

    def _rate(self, l_deg, b_deg, s):
        R, Z = galactocentric(l_deg, b_deg, s, self.r_sun, self.z_sun)
        logn = logn_disk(R, Z, self.r_sun, 0.0, self.scale_length, self.scale_height)
        return self.e_per_kpc / 1000.0 * np.exp(logn)

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
