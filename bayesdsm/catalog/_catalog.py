"""The in-memory survey catalog: plain NumPy arrays in documented units.

A :class:`Catalog` holds, for N stars and the bands ``bands`` (first = reference):

========================  ===========  =====================================================
field                     shape        meaning (units)
========================  ===========  =====================================================
``theta``                 (N, 3)       spectroscopic θ̂ = (Teff [K], log g [dex], [Fe/H] [dex])
``theta_cov``             (N, 3, 3)    covariance of θ̂
``mag``                   (N, B)       apparent magnitudes (NaN where unobserved)
``mag_err``               (N, B)       1σ magnitude errors (mag)
``observed``              (N, B) bool  True where the band is observed and usable
``parallax``              (N,)         ϖ̂ (mas), as measured (may be negative; NaN if none)
``parallax_err``          (N,)         σ_ϖ (mas)
``parallax_ok``           (N,) bool    True where ϖ̂ enters the emulator likelihood
``ebv``, ``ebv_err``      (N,)         reddening prior Ê, σ_E (mag, SFD scale)
``ra``, ``dec``           (N,) | None  ICRS degrees (optional)
``l``, ``b``              (N,) | None  Galactic degrees (optional)
``survey``                (N,) str     spectroscopic source survey (e.g. ``apogee``)
``source_id``             (N,) int64   identifier used to cross-match surveys
``flags``                 (N,) str     why a value of the star was masked or the star
                                       flagged (comma-separated, e.g.
                                       ``mag_err_nonpositive:mag_err_BP,min_parallax_snr``;
                                       ``""`` when none; see :meth:`Catalog.flagged`)
``extra``                 dict         any further columns, e.g. ``true_*`` truth columns
``meta``                  dict         provenance, e.g. ``{"floors_applied": True}``
========================  ===========  =====================================================

Stars without a spectroscopic θ (pure photometric catalogs for inference) carry NaN in
``theta`` and ``theta_cov``.

``flags`` records what happened to each star in memory: the reader adds
``<rule>:<column>`` where it masked a bad value (:mod:`bayesdsm.catalog._validate`), and
:func:`bayesdsm.cuts.prepare` adds the rules that masked a band or flagged the star. The
per-star tables of the CLI start their ``flags`` column from it. It is not written to
catalog files (the masked values are, as NaN).

Files and tables (:func:`~bayesdsm.catalog.read_catalog` and friends) are in
:mod:`bayesdsm.catalog._io` and :mod:`bayesdsm.catalog._table`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayesdsm.conventions import validate_bands

__all__ = ["Catalog", "add_flag", "flag_counts"]

_PER_STAR_FIELDS = (
    "theta",
    "theta_cov",
    "mag",
    "mag_err",
    "observed",
    "parallax",
    "parallax_err",
    "parallax_ok",
    "ebv",
    "ebv_err",
    "survey",
    "source_id",
)
_OPTIONAL_FIELDS = ("ra", "dec", "l", "b")


def add_flag(flags, mask, token: str) -> np.ndarray:
    """A copy of ``flags`` ((N,) str) with ``token`` appended (comma-separated) where ``mask``.

    ``mask`` is a boolean (N,) array or an index array.
    """
    out = np.array(flags, dtype=object)
    rows = np.flatnonzero(mask) if np.asarray(mask).dtype == bool else np.asarray(mask, int)
    for i in rows:
        out[i] = f"{out[i]},{token}" if out[i] else token
    return out


def flag_counts(flags) -> dict[str, int]:
    """How many rows carry each flag of a comma-separated (N,) flags column, sorted by name."""
    counts: dict[str, int] = {}
    values, n = np.unique(np.asarray(flags).astype(str), return_counts=True)
    for f, k in zip(values, n):
        for token in set(str(f).split(",")) - {""}:
            counts[token] = counts.get(token, 0) + int(k)
    return dict(sorted(counts.items()))


@dataclass(frozen=True, eq=False)
class Catalog:
    """A survey catalog of N stars in B bands. See the module docstring for fields."""

    bands: tuple[str, ...]
    theta: np.ndarray
    theta_cov: np.ndarray
    mag: np.ndarray
    mag_err: np.ndarray
    observed: np.ndarray
    parallax: np.ndarray
    parallax_err: np.ndarray
    parallax_ok: np.ndarray
    ebv: np.ndarray
    ebv_err: np.ndarray
    survey: np.ndarray
    source_id: np.ndarray
    ra: np.ndarray | None = None
    dec: np.ndarray | None = None
    l: np.ndarray | None = None
    b: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    flags: np.ndarray | None = None

    def __post_init__(self):
        object.__setattr__(self, "bands", validate_bands(self.bands))
        n = len(self.theta)
        flags = np.full(n, "", object) if self.flags is None else np.asarray(self.flags, object)
        object.__setattr__(self, "flags", flags)
        nb = len(self.bands)
        shapes = {
            "theta": (n, 3),
            "theta_cov": (n, 3, 3),
            "mag": (n, nb),
            "mag_err": (n, nb),
            "observed": (n, nb),
        }
        for name, shape in shapes.items():
            arr = getattr(self, name)
            if np.shape(arr) != shape:
                raise ValueError(f"Catalog.{name} has shape {np.shape(arr)}, expected {shape}")
        for name in _PER_STAR_FIELDS[5:] + _OPTIONAL_FIELDS + ("flags",):
            arr = getattr(self, name)
            if arr is not None and np.shape(arr)[:1] != (n,):
                raise ValueError(f"Catalog.{name} has length {np.shape(arr)[:1]}, expected {n}")
        for name, arr in self.extra.items():
            if np.shape(arr)[:1] != (n,):
                raise ValueError(f"Catalog.extra[{name!r}] has length {len(arr)}, expected {n}")

    def __len__(self) -> int:
        return len(self.theta)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def has_theta(self) -> np.ndarray:
        """(N,) bool: True where a spectroscopic θ̂ is present."""
        return np.all(np.isfinite(self.theta), axis=1)

    def subset(self, index) -> Catalog:
        """A new catalog with the rows selected by a boolean mask or an index array."""
        index = np.asarray(index)
        kw = {}
        for name in _PER_STAR_FIELDS + _OPTIONAL_FIELDS:
            arr = getattr(self, name)
            kw[name] = None if arr is None else arr[index]
        kw["extra"] = {k: v[index] for k, v in self.extra.items()}
        return dataclasses.replace(self, **kw, flags=self.flags[index], meta=dict(self.meta))

    def flagged(self, mask, token: str) -> Catalog:
        """A copy with ``token`` added to the ``flags`` of the stars selected by ``mask``."""
        return dataclasses.replace(self, flags=add_flag(self.flags, mask, token))

    def replace(self, **changes) -> Catalog:
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def select_bands(self, bands) -> Catalog:
        """A copy restricted (and re-ordered) to ``bands``; the first is the new reference."""
        bands = validate_bands(bands)
        missing = [b for b in bands if b not in self.bands]
        if missing:
            raise ValueError(f"bands {missing} are not in this catalog (it has {list(self.bands)})")
        idx = [self.bands.index(b) for b in bands]
        return dataclasses.replace(
            self,
            bands=bands,
            mag=self.mag[:, idx],
            mag_err=self.mag_err[:, idx],
            observed=self.observed[:, idx],
        )

    @classmethod
    def from_arrays(
        cls,
        *,
        bands,
        mag,
        mag_err,
        theta=None,
        theta_cov=None,
        parallax=None,
        parallax_err=None,
        ebv=None,
        ebv_err=None,
        survey=None,
        source_id=None,
        observed=None,
        parallax_ok=None,
        **kwargs,
    ) -> Catalog:
        """Build a catalog from arrays, filling defaults for what is not given.

        Missing θ̂ become NaN; missing parallaxes NaN (and ``parallax_ok`` False);
        a missing reddening prior becomes Ê = 0 with σ_E = 10 mag (uninformative);
        ``observed`` defaults to finite magnitudes with finite, positive errors.
        """
        mag = np.asarray(mag, dtype=np.float64)
        mag_err = np.asarray(mag_err, dtype=np.float64)
        n = mag.shape[0]
        nan = np.full(n, np.nan)
        theta = np.full((n, 3), np.nan) if theta is None else np.asarray(theta, np.float64)
        theta_cov = (
            np.full((n, 3, 3), np.nan) if theta_cov is None else np.asarray(theta_cov, np.float64)
        )
        parallax = nan.copy() if parallax is None else np.asarray(parallax, np.float64)
        parallax_err = nan.copy() if parallax_err is None else np.asarray(parallax_err, np.float64)
        if observed is None:
            observed = np.isfinite(mag) & np.isfinite(mag_err) & (mag_err > 0)
        if parallax_ok is None:
            parallax_ok = np.isfinite(parallax) & np.isfinite(parallax_err) & (parallax_err > 0)
        ebv = np.zeros(n) if ebv is None else np.asarray(ebv, np.float64)
        ebv_err = np.full(n, 10.0) if ebv_err is None else np.asarray(ebv_err, np.float64)
        survey = np.full(n, "unknown") if survey is None else np.asarray(survey).astype(str)
        source_id = np.arange(n, dtype=np.int64) if source_id is None else np.asarray(source_id)
        return cls(
            bands=tuple(bands),
            theta=theta,
            theta_cov=theta_cov,
            mag=mag,
            mag_err=mag_err,
            observed=np.asarray(observed, bool),
            parallax=parallax,
            parallax_err=parallax_err,
            parallax_ok=np.asarray(parallax_ok, bool),
            ebv=ebv,
            ebv_err=ebv_err,
            survey=survey,
            source_id=source_id,
            **kwargs,
        )
