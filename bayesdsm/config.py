"""Configuration: frozen dataclasses with physical defaults, and JSON/TOML round trips.

Every configuration object of bayesdsm is a frozen dataclass whose defaults are the
paper's values (Green et al. 2021). The helpers below work for any of them:

* :func:`to_dict` / :func:`from_dict` convert to and from plain dicts. Unknown keys raise
  :class:`~bayesdsm.errors.ConfigError` naming the key; lists become tuples again;
  nested dataclass fields are rebuilt recursively.
* :func:`to_json` / :func:`from_json` and :func:`to_toml` / :func:`from_toml` wrap them.
  TOML has no null, so a ``None`` field is only written when its default is ``None``
  (it is then simply left out).

>>> cfg = CutsConfig(min_parallax_snr=3.0)
>>> from_json(CutsConfig, to_json(cfg)) == cfg
True
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import typing
from dataclasses import dataclass
from typing import Any

from bayesdsm.errors import ConfigError

__all__ = [
    "CutsConfig",
    "PAPER_ZERO_POINTS",
    "to_dict",
    "from_dict",
    "to_json",
    "from_json",
    "to_toml",
    "from_toml",
]

#: Offsets (ΔTeff [K], Δlog g [dex], Δ[Fe/H] [dex]) *added* to each survey's θ̂ to put it
#: on the GALAH (DR2) scale (Green et al. 2021, §3.1).
PAPER_ZERO_POINTS: dict[str, tuple[float, float, float]] = {
    "lamost": (-3.6, -0.014, 0.068),
    "apogee": (-26.6, -0.026, 0.018),
}


@dataclass(frozen=True)
class CutsConfig:
    """Thresholds of the §3 data preparation (:func:`bayesdsm.cuts.prepare`).

    Attributes:
        mag_err_floor: added in quadrature to every photometric error (mag).
        max_mag_err: a band whose (floored) error exceeds this is unobserved (mag).
        min_parallax_snr: ϖ̂/σ_ϖ below this sets ``parallax_ok = False`` (values kept).
        theta_err_floor: σ floors (Teff [K], log g [dex], [Fe/H] [dex]); their squares
            are added to the diagonal of the θ̂ covariance.
        max_theta_err: stars with a (floored) σ above these are removed.
        ebv_err_floor: added in quadrature to σ_E (mag).
        require_theta: remove stars without a usable spectroscopic θ̂.
        require_reference_band: remove stars not observed in the reference (first) band,
            G in the paper.
        zero_points: survey zero points on θ̂: ``"paper"`` (the paper's LAMOST and APOGEE
            offsets to GALAH DR2), ``"estimate"`` (from stars shared by surveys, see
            :func:`bayesdsm.cuts.estimate_zero_points`), ``"none"``, or a mapping
            survey -> (ΔTeff, Δlog g, Δ[Fe/H]) added to that survey's θ̂.
        zero_point_reference: the survey whose θ scale the others are matched to.
        zero_point_pivot: when estimating, match every survey to this one first and chain
            (the paper used LAMOST); ``""`` matches each survey to the reference directly.
        duplicates: ``"keep"`` every row, or ``"best"``: of rows sharing a ``source_id``
            keep the one with the smallest det(C_θ) (after zero points).
    """

    mag_err_floor: float = 0.02
    max_mag_err: float = 0.2
    min_parallax_snr: float = 5.0
    theta_err_floor: tuple[float, float, float] = (10.0, 0.05, 0.03)
    max_theta_err: tuple[float, float, float] = (200.0, 0.5, 0.5)
    ebv_err_floor: float = 0.02
    require_theta: bool = True
    require_reference_band: bool = True
    zero_points: str | dict[str, tuple[float, float, float]] = "paper"
    zero_point_reference: str = "galah"
    zero_point_pivot: str = ""
    duplicates: str = "keep"

    def __post_init__(self):
        for name in ("mag_err_floor", "max_mag_err", "min_parallax_snr", "ebv_err_floor"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"CutsConfig.{name} must be a finite number >= 0, got {v!r}")
        for name in ("theta_err_floor", "max_theta_err"):
            v = tuple(float(x) for x in getattr(self, name))
            if len(v) != 3 or not all(math.isfinite(x) and x >= 0 for x in v):
                raise ConfigError(f"CutsConfig.{name} must be 3 finite numbers >= 0, got {v}")
            object.__setattr__(self, name, v)
        zp = self.zero_points
        if isinstance(zp, str):
            if zp not in ("paper", "estimate", "none"):
                raise ConfigError(
                    f"CutsConfig.zero_points must be 'paper', 'estimate', 'none' or a mapping "
                    f"survey -> (dTeff, dlogg, dFeH); got {zp!r}"
                )
        else:
            clean = {}
            for survey, off in dict(zp).items():
                off = tuple(float(x) for x in off)
                if len(off) != 3 or not all(math.isfinite(x) for x in off):
                    raise ConfigError(f"zero point of survey {survey!r} must be 3 numbers: {off}")
                clean[str(survey).lower()] = off
            object.__setattr__(self, "zero_points", clean)
        if self.duplicates not in ("keep", "best"):
            raise ConfigError(
                f"CutsConfig.duplicates must be 'keep' or 'best', not {self.duplicates!r}"
            )

    def zero_point_offsets(self) -> dict[str, tuple[float, float, float]] | None:
        """The given offsets (``"paper"`` resolved), or None for ``"estimate"``/``"none"``."""
        if self.zero_points == "paper":
            return dict(PAPER_ZERO_POINTS)
        if isinstance(self.zero_points, str):
            return None
        return dict(self.zero_points)


# ----------------------------------------------------------------------------------------
# generic dataclass <-> dict


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _frozen(value):
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: _frozen(v) for k, v in value.items()}
    return value


def to_dict(obj) -> dict[str, Any]:
    """A dataclass instance as a dict of plain Python values (tuples become lists)."""
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise ConfigError(f"to_dict needs a dataclass instance, got {type(obj).__name__}")
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def from_dict(cls, data: dict[str, Any]):
    """Build the dataclass ``cls`` from a dict made by :func:`to_dict` (or by hand).

    Missing keys take their defaults. Raises :class:`ConfigError` on an unknown key
    (naming it and listing the known ones) or on a value the class rejects.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{cls.__name__} needs a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {unknown[0]!r} for {cls.__name__}"
            + (f" (and {unknown[1:]})" if len(unknown) > 1 else "")
            + f"; known keys: {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
            kwargs[name] = from_dict(hint, value)
        else:
            kwargs[name] = _frozen(value)
    try:
        return cls(**kwargs)
    except TypeError as exc:  # wrong value types caught by the constructor
        raise ConfigError(f"cannot build {cls.__name__}: {exc}") from exc


def to_json(obj, **kwargs) -> str:
    """JSON text of a dataclass instance (see :func:`to_dict`)."""
    return json.dumps(to_dict(obj), **({"indent": 2} | kwargs))


def from_json(cls, text: str):
    """Inverse of :func:`to_json`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"invalid JSON for {cls.__name__}: {exc}") from exc
    return from_dict(cls, data)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise ConfigError(f"cannot write a value of type {type(v).__name__} to TOML: {v!r}")


def to_toml(obj) -> str:
    """TOML text of a dataclass instance (nested dataclasses become tables)."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    defaults = {f.name: f.default for f in dataclasses.fields(obj)}
    for name, value in to_dict(obj).items():
        if value is None:
            if defaults.get(name) is None:
                continue
            raise ConfigError(f"field {name!r} is None but its default is not: use JSON instead")
        sub = getattr(obj, name)
        if dataclasses.is_dataclass(sub) and not isinstance(sub, type):
            tables.append((name, sub))
        else:
            lines.append(f"{name} = {_toml_value(value)}")
    for name, sub in tables:
        body = to_toml(sub).replace("\n[", f"\n[{name}.")
        lines.append(f"\n[{name}]\n{body}")
    return "\n".join(lines) + "\n"


def from_toml(cls, text: str):
    """Inverse of :func:`to_toml`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML for {cls.__name__}: {exc}") from exc
    return from_dict(cls, data)
