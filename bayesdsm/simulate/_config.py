"""Settings of a simulated survey: spectroscopic surveys, populations, photometric noise
and :class:`SimConfig`; the photometric and parallax error laws."""

from __future__ import annotations

import dataclasses
import json
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayesdsm.conventions import BANDS, validate_bands
from bayesdsm.errors import ConfigError
from bayesdsm.galaxy import JURIC2008, DustModel, GalaxyModel
from bayesdsm.simulate._rv import RV_RANGE, RV_REF


@dataclass(frozen=True)
class SpecSurvey:
    """A magnitude-limited spectroscopic survey (selection, footprint and θ errors).

    Magnitude limits are in ``selection_band``'s native survey system (2MASS Vega etc.).
    ``theta_err`` = (σ_Teff [K], σ_logg, σ_[Fe/H]) for a typical star, ``theta_corr`` =
    (ρ_Teff,logg, ρ_Teff,[Fe/H], ρ_logg,[Fe/H]); ``theta_offset`` is added to θ̂ (a survey
    zero point; Green et al. 2021 §3.1 remove the opposite).
    """

    name: str
    fraction: float
    selection_band: str
    bright: float
    faint: float
    dec_min: float = -90.0
    dec_max: float = 90.0
    n_fields: int = 1000
    theta_err: tuple[float, float, float] = (60.0, 0.10, 0.06)
    theta_corr: tuple[float, float, float] = (0.0, 0.0, 0.0)
    theta_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Population:
    """A stellar population: Gaussian [Fe/H] and ages uniform in [age_min, age_max] Gyr."""

    name: str
    feh_mean: float
    feh_sigma: float
    age_min_gyr: float
    age_max_gyr: float
    proposal: float = 1.0 / 3.0


@dataclass(frozen=True)
class BandNoise:
    """Photometric noise of one band: σ = floor ⊕ 1.0857/5 · 10^(0.4 (m - m5)).

    ``m5`` (5σ depth) and ``bright`` (saturation) are in the band's native survey system;
    ``loss`` is the probability that a detected star fails the quality cuts.
    """

    floor: float
    m5: float
    bright: float
    loss: float


#: Default photometric noise per band (native systems). Depths: Gaia EDR3 documentation;
#: PS1 single-epoch (Chambers et al. 2016); 2MASS 10σ 15.8/15.1/14.3 (Skrutskie et al. 2006);
#: unWISE (Schlafly et al. 2019). Losses tuned so the observed fractions resemble Table 1.
DEFAULT_BAND_NOISE: dict[str, BandNoise] = {
    "G": BandNoise(0.0003, 21.5, 3.0, 0.0),
    "BP": BandNoise(0.001, 20.8, 3.0, 0.001),
    "RP": BandNoise(0.001, 20.3, 3.0, 0.001),
    "g": BandNoise(0.01, 22.0, 14.0, 0.05),
    "r": BandNoise(0.01, 21.8, 14.3, 0.05),
    "i": BandNoise(0.01, 21.5, 14.5, 0.05),
    "z": BandNoise(0.01, 20.9, 13.8, 0.05),
    "y": BandNoise(0.01, 19.7, 12.8, 0.05),
    "J": BandNoise(0.02, 16.55, 4.0, 0.04),
    "H": BandNoise(0.02, 15.85, 4.0, 0.05),
    "Ks": BandNoise(0.02, 15.05, 4.0, 0.07),
    "W1": BandNoise(0.01, 17.5, 8.0, 0.65),
    "W2": BandNoise(0.015, 16.3, 6.7, 0.30),
}

_DEFAULT_SURVEYS = (
    SpecSurvey(
        "lamost",
        0.90,
        "G",
        9.0,
        16.5,
        -10.0,
        90.0,
        1500,
        (60.0, 0.10, 0.06),
        theta_offset=(3.6, 0.014, -0.068),
    ),  # fmt: skip
    SpecSurvey(
        "apogee",
        0.06,
        "H",
        7.0,
        12.2,
        -90.0,
        90.0,
        400,
        (80.0, 0.08, 0.03),
        (0.5, 0.3, 0.4),
        (26.6, 0.026, -0.018),
    ),  # fmt: skip
    SpecSurvey("galah", 0.04, "G", 9.0, 14.5, -90.0, 10.0, 400, (90.0, 0.15, 0.08)),
)
_DEFAULT_POPULATIONS = (
    Population("thin", -0.1, 0.2, 1.0, 10.0, 0.6),
    Population("thick", -0.6, 0.25, 10.0, 12.0, 0.3),
    Population("halo", -1.5, 0.4, 11.0, 13.0, 0.1),
)


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines a simulated survey; physical defaults, JSON round trip.

    Attributes (units): ``n_stars`` rows (including repeat observations); ``seed``;
    ``bands``; ``imf`` ("kroupa" or "chabrier"); ``population_source`` ("isochrones" or
    "parametric"); ``teff_range`` [K], ``logg_range`` [dex] the spectroscopic pipelines' range;
    ``av_per_ebv`` (A_V/E, SFD scale); ``dust_clumpiness`` (lognormal σ per field);
    ``field_radius_deg``; ``overlap_fraction`` (stars re-observed by a second survey);
    ``ebv_z_threshold`` [pc] above which the prior is the SFD-like column with fractional
    error ``sfd_frac_err``; below it, north of ``bayestar_dec_min`` [deg], a Bayestar-like
    value at the true distance with error U(bayestar_err) ⊕ ``bayestar_frac_err``·E, else
    Ê = 0 ± column. Parallax σ [mas] = (floor ⊕ ref·10^(slope (G - 17)))·LogNormal(scatter)
    (Gaia EDR3: 0.02-0.03 at G < 15, 0.07 at 17, 0.5 at 20). PS1 covers δ > ``ps1_dec_min``.

    Unreported errors: like real catalogues, the simulated ones understate their errors.
    The noise actually drawn has, in quadrature beyond the catalogued error,
    ``unreported_mag_err`` [mag] per band (calibration), ``unreported_theta_err``
    (Teff [K], log g, [Fe/H]) and ``unreported_ebv_err`` [mag]. The defaults equal the
    paper's §3 floors, so after :func:`bayesdsm.cuts.prepare` the errors are honest; set
    them to 0 for a catalogue whose errors are honest as written.

    R(V) of the dust (issue 20; :mod:`bayesdsm.simulate._rv`): each field (sight line) of
    each survey draws R(V) ~ N(``rv_mean``, ``rv_sigma``), and each star adds
    N(0, ``rv_star_sigma``); values are clipped to F99's range [2, 6]. Each band's
    extinction then follows F99 at the star's R(V), with E on the E(B-V) scale (A_V =
    R_V·E). ``rv_sigma = rv_star_sigma = 0`` with ``rv_mean = 3.1`` is the single-curve
    survey of earlier versions, bit for bit.
    """

    n_stars: int = 40000
    seed: int = 1
    bands: tuple[str, ...] = BANDS
    imf: str = "kroupa"
    population_source: str = "isochrones"
    populations: tuple[Population, ...] = _DEFAULT_POPULATIONS
    surveys: tuple[SpecSurvey, ...] = _DEFAULT_SURVEYS
    band_noise: dict[str, BandNoise] = field(default_factory=lambda: dict(DEFAULT_BAND_NOISE))
    galaxy: GalaxyModel = JURIC2008
    dust: DustModel = field(default_factory=DustModel)
    teff_range: tuple[float, float] = (3800.0, 8000.0)
    logg_range: tuple[float, float] = (0.0, 5.0)
    av_per_ebv: float = 3.1
    dust_clumpiness: float = 0.3
    field_radius_deg: float = 1.5
    overlap_fraction: float = 0.02
    ebv_z_threshold: float = 400.0
    sfd_frac_err: float = 0.12
    bayestar_err: tuple[float, float] = (0.02, 0.05)
    bayestar_frac_err: float = 0.1
    bayestar_dec_min: float = -30.0
    ps1_dec_min: float = -30.0
    parallax_floor: float = 0.02
    parallax_ref: float = 0.07
    parallax_slope: float = 0.3
    parallax_scatter: float = 0.15
    theta_err_scatter: float = 0.25
    unreported_mag_err: float = 0.02
    unreported_theta_err: tuple[float, float, float] = (10.0, 0.05, 0.03)
    unreported_ebv_err: float = 0.02
    batch_size: int = 100_000
    cluster_size: int = 128
    #: mean R(V) = A_V/E(B-V) of the sight lines; 3.1 is the truths' tables' curve.
    rv_mean: float = 3.1
    #: σ of R(V) between sight lines (fields): Schlafly et al. (2016) measure 0.18 across
    #: the sky (brutus's prior N(3.32, 0.18) is the same number).
    rv_sigma: float = 0.18
    #: extra σ of R(V) per star about its sight line's value (the dust along one line and
    #: within one 1.5° field is not one cloud). Not measured star by star; 0.05 keeps it
    #: small beside ``rv_sigma`` (total σ 0.187, within 4% of the S16 sky scatter) while
    #: making a star's R(V) not purely its field's.
    rv_star_sigma: float = 0.05

    def __post_init__(self):
        object.__setattr__(self, "bands", validate_bands(self.bands))
        if self.bands[0] != "G" and "G" not in self.bands:
            raise ConfigError("the simulator needs the Gaia G band (for parallax errors)")
        if self.imf not in ("kroupa", "chabrier"):
            raise ConfigError(f"imf must be 'kroupa' or 'chabrier', got {self.imf!r}")
        if self.population_source not in ("isochrones", "parametric"):
            raise ConfigError("population_source must be 'isochrones' or 'parametric'")
        if self.n_stars < 1:
            raise ConfigError(f"n_stars must be positive, got {self.n_stars}")
        missing = [b for b in self.bands if b not in self.band_noise]
        if missing:
            raise ConfigError(f"no band_noise entry for bands {missing}")
        if abs(sum(s.fraction for s in self.surveys) - 1.0) > 1e-6:
            raise ConfigError("survey fractions must sum to 1")
        self._validate_rv()

    def _validate_rv(self):
        lo, hi = RV_RANGE
        if not lo <= _as_float(self.rv_mean) <= hi:
            raise ConfigError(
                f"rv_mean must lie in [{lo}, {hi}], the R(V) range of the F99 curve the "
                f"simulator uses; got {self.rv_mean!r}"
            )
        for name in ("rv_sigma", "rv_star_sigma"):
            v = getattr(self, name)
            if not (np.isfinite(_as_float(v)) and _as_float(v) >= 0):
                raise ConfigError(
                    f"{name} must be a finite σ >= 0 (0 turns this R(V) scatter off); got {v!r}"
                )

    @property
    def rv_varies(self) -> bool:
        """True unless every star has R(V) = 3.1 (the earlier versions' single curve)."""
        return (self.rv_mean, self.rv_sigma, self.rv_star_sigma) != (RV_REF, 0.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SimConfig:
        d = dict(d)
        conv = {
            "populations": lambda v: tuple(Population(**x) for x in v),
            "surveys": lambda v: tuple(
                SpecSurvey(**{k: tuple(x) if isinstance(x, list) else x for k, x in s.items()})
                for s in v
            ),
            "band_noise": lambda v: {k: BandNoise(**x) for k, x in v.items()},
            "galaxy": lambda v: GalaxyModel(**v),
            "dust": lambda v: DustModel(**v),
        }
        for k, v in d.items():
            d[k] = conv[k](v) if k in conv else tuple(v) if isinstance(v, list) else v
        return cls(**d)


# ---------------------------------------------------------------------------- truth


def _as_float(v) -> float:
    """``v`` as a float if it is a real number (not a bool), else NaN (to be refused)."""
    if isinstance(v, numbers.Real) and not isinstance(v, bool):
        return float(v)
    return float("nan")


def photometric_error(mag_native, noise: BandNoise):
    """1σ error (mag) at native magnitude ``mag_native`` (see :class:`BandNoise`)."""
    snr_term = 1.0857 / 5.0 * 10 ** (0.4 * (np.asarray(mag_native) - noise.m5))
    return np.hypot(noise.floor, snr_term)


def parallax_error(g_mag, cfg: SimConfig):
    """Typical Gaia-EDR3-like parallax error (mas) at G (no per-star scatter)."""
    return np.hypot(
        cfg.parallax_floor, cfg.parallax_ref * 10 ** (cfg.parallax_slope * (g_mag - 17))
    )


# ---------------------------------------------------------------------------- populations
