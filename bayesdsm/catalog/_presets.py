"""Column presets: map an archive's own schema onto bayesdsm's canonical columns.

A preset is a small TOML (or JSON) mapping, read into the frozen dataclass
:class:`Preset`. Shipped presets live in ``bayesdsm/catalog/presets/*.toml`` (read with
:mod:`importlib.resources`); users pass their own file by path::

    cat = read_catalog("my_survey.fits", preset="my_preset.toml")

A preset is applied in this order (:func:`apply_preset`), every step optional:

1. ``reject``: row rejections on the raw table, each counted in
   ``meta["preset_rejected"]`` (never silent). Kinds: ``bits`` (drop rows with any of
   ``bits`` set in ``column``), ``equals`` (keep rows whose ``column`` equals ``value``),
   ``any_greater`` (keep rows where any of ``columns`` exceeds ``value``).
2. ``columns``: canonical name -> source column (source names match case-insensitively).
3. ``split``: a vector source column -> a list of canonical names; ``covariance``: a
   (N, 3, 3) source column -> the six ``cov_*`` columns.
4. ``missing_values``: sentinels (e.g. PS1's -999) set to NaN in the mapped columns.
5. ``flux_to_mag``: ``mag = zero_point - 2.5 log10(F)``, ``σ_m = 2.5/ln10 · σ_F/F``;
   F ≤ 0 or non-finite gives an unobserved band (counted in ``meta["nonpositive_flux"]``).
6. ``offsets``: constants added to canonical columns (unWISE Vega -> AB).
7. ``survey``: a constant survey label, unless ``columns`` maps one; ``keep``: source
   columns passed through unchanged into ``Catalog.extra``; ``meta``: added to the
   catalog's meta (e.g. ``floors_applied = true``).

Shipped presets (``list_presets()``): ``green2020`` (the released test-data HDF5, read
with h5py: §3 floors, θ cuts and zero points already applied), ``apogee_dr17``,
``galah_dr3``, ``lamost_ddpayne`` (spectroscopic, partial), ``gaia_dr3``, ``ps1``,
``twomass``, ``unwise`` (photometric, partial). Partial tables are combined with
:func:`bayesdsm.catalog.merge_catalogs`. The photometric presets expect a ``source_id``
column holding the Gaia DR3 id of the cross-match (e.g. from the Gaia archive's
best-neighbour tables).

Photometric systems: Gaia is Vega; PS1 is AB; unWISE is converted from Vega to AB
(+2.699 W1, +3.339 W2, :data:`bayesdsm.conventions.VEGA_TO_AB`). 2MASS magnitudes are
passed through **as reported** (2MASS's own, Vega-based system): this is what the paper
did (§3.2 converts only unWISE) and what the released ``green2020`` data hold (its solar
analogues have G - Ks ≈ +1.4, a Vega colour; AB would give ≈ -0.4). Note that
:data:`bayesdsm.conventions.PHOTOMETRIC_SYSTEM` labels J, H, Ks as "AB".
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bayesdsm.catalog._schema import COV_COLUMNS, column_array, guess_format, reading_file
from bayesdsm.config import from_dict
from bayesdsm.errors import CatalogError, ConfigError

__all__ = [
    "Preset",
    "list_presets",
    "load_preset",
    "apply_preset",
    "read_preset_table",
    "flux_to_mag",
]

_KINDS = ("catalog", "spectroscopic", "photometric")
_READERS = ("astropy", "h5py_compound")


@dataclass(frozen=True)
class Preset:
    """A column mapping from an archive schema to the canonical one (module docstring)."""

    name: str
    description: str = ""
    kind: str = "catalog"
    reader: str = "astropy"
    format: str = ""
    dataset: str = "data"
    extra_datasets: tuple[str, ...] = ()
    survey: str = ""
    columns: dict[str, str] = field(default_factory=dict)
    split: dict[str, tuple[str, ...]] = field(default_factory=dict)
    covariance: str = ""
    missing_values: tuple[float, ...] = ()
    flux_to_mag: tuple[dict[str, Any], ...] = ()
    offsets: dict[str, float] = field(default_factory=dict)
    reject: tuple[dict[str, Any], ...] = ()
    keep: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ConfigError(f"preset {self.name!r}: kind must be one of {_KINDS}")
        if self.reader not in _READERS:
            raise ConfigError(f"preset {self.name!r}: reader must be one of {_READERS}")
        for rule in self.reject:
            if rule.get("kind") not in ("bits", "equals", "any_greater"):
                raise ConfigError(
                    f"preset {self.name!r}: reject kind must be bits/equals/any_greater: {rule}"
                )
        for conv in self.flux_to_mag:
            missing = {"band", "flux", "flux_err", "zero_point"} - set(conv)
            if missing:
                raise ConfigError(f"preset {self.name!r}: flux_to_mag entry lacks {missing}")


def _preset_dir():
    return resources.files("bayesdsm.catalog") / "presets"


def list_presets() -> list[str]:
    """Names of the presets shipped with bayesdsm."""
    return sorted(p.name[:-5] for p in _preset_dir().iterdir() if p.name.endswith(".toml"))


def load_preset(preset) -> Preset:
    """A :class:`Preset` from a shipped name, a TOML/JSON file path, a dict or a Preset."""
    if isinstance(preset, Preset):
        return preset
    if isinstance(preset, dict):
        return from_dict(Preset, preset)
    text = None
    path = Path(str(preset))
    if path.suffix.lower() in (".toml", ".json") or path.exists():
        if not path.exists():
            raise ConfigError(f"preset file not found: {path}")
        text, is_json = path.read_text(), path.suffix.lower() == ".json"
    else:
        res = _preset_dir() / f"{preset}.toml"
        if not res.is_file():
            raise ConfigError(
                f"unknown preset {preset!r}; shipped presets: {list_presets()}, or pass the "
                "path of a .toml/.json preset file"
            )
        text, is_json = res.read_text(), False
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot parse preset {preset}: {exc}") from exc
    return from_dict(Preset, data)


def flux_to_mag(flux, flux_err, zero_point: float):
    """Magnitude and error from a flux: m = zp - 2.5 log10 F, σ_m = 2.5/ln10 · σ_F / F.

    Non-positive or non-finite fluxes give NaN (unobserved).
    """
    flux = np.asarray(flux, np.float64)
    flux_err = np.asarray(flux_err, np.float64)
    good = np.isfinite(flux) & (flux > 0)
    safe = np.where(good, flux, 1.0)
    mag = np.where(good, zero_point - 2.5 * np.log10(safe), np.nan)
    err = np.where(good, 2.5 / math.log(10.0) * flux_err / safe, np.nan)
    return mag, err


class _Source:
    """Case-insensitive access to the raw table's columns, with clear errors."""

    def __init__(self, table, preset: Preset):
        self.table = table
        self.preset = preset
        self.lower = {c.lower(): c for c in table.colnames}

    def name(self, col: str) -> str:
        actual = self.lower.get(col.lower())
        if actual is None:
            raise CatalogError(
                f"preset {self.preset.name!r} needs column {col!r}, which is not in the table "
                f"(its first columns: {self.table.colnames[:15]}). Check the file, or write "
                "your own preset (see bayesdsm.catalog.Preset).",
                column=col,
                rule="missing_column",
            )
        return actual

    def values(self, col: str):
        name = self.name(col)
        kind = np.asarray(self.table[name]).dtype.kind
        if kind in "SU":
            return column_array(self.table, name, "str")
        if kind == "b":
            return column_array(self.table, name, "bool")
        if kind in "iu":
            data = np.asarray(self.table[name])
            if np.any(getattr(self.table[name], "mask", False)):
                return column_array(self.table, name)
            return data
        return column_array(self.table, name)


def _rejections(src: _Source, preset: Preset) -> tuple[np.ndarray, list[dict]]:
    keep = np.ones(len(src.table), bool)
    log = []
    for rule in preset.reject:
        kind = rule["kind"]
        if kind == "bits":
            col = src.name(rule["column"])
            raw = src.table[col]
            flags = np.asarray(np.ma.filled(raw, 0) if hasattr(raw, "mask") else raw)
            mask = np.int64(sum(1 << int(b) for b in rule["bits"]))
            ok = (flags.astype(np.int64) & mask) == 0
            what = f"{rule['column']} has bit(s) {list(rule['bits'])} {rule.get('names', '')}"
        elif kind == "equals":
            v = src.values(rule["column"])
            target = rule["value"]
            ok = (v == str(target)) if v.dtype.kind == "U" else (v == target)
            what = f"{rule['column']} != {target!r}"
        else:
            vals = [src.values(c) for c in rule["columns"]]
            ok = np.any([np.nan_to_num(v, nan=-np.inf) > rule["value"] for v in vals], axis=0)
            what = f"none of {list(rule['columns'])} > {rule['value']}"
        removed = keep & ~ok
        log.append({"rule": kind, "why": what, "removed": int(removed.sum())})
        keep &= ok
    return keep, log


def apply_preset(table, preset):
    """Map a raw archive table to a canonical-schema astropy Table (see module docstring).

    Raises:
        CatalogError: when a column the preset needs is missing (``rule="missing_column"``).
    """
    from astropy.table import Table

    preset = load_preset(preset)
    table = table if isinstance(table, Table) else Table(table)
    src = _Source(table, preset)
    keep, rejected = _rejections(src, preset)
    out = Table()
    for canon, col in preset.columns.items():
        out[canon] = src.values(col)[keep]
    for col, names in preset.split.items():
        vec = src.values(col)[keep]
        if vec.ndim != 2 or vec.shape[1] != len(names):
            raise CatalogError(
                f"preset {preset.name!r}: column {col!r} has shape {vec.shape[1:]}, "
                f"expected ({len(names)},) to split into {list(names)}",
                column=col,
                rule="shape",
            )
        for k, canon in enumerate(names):
            out[canon] = vec[:, k]
    if preset.covariance:
        cov = src.values(preset.covariance)[keep]
        if cov.shape[1:] != (3, 3):
            raise CatalogError(
                f"preset {preset.name!r}: {preset.covariance!r} must be (N, 3, 3), got {cov.shape}",
                column=preset.covariance,
                rule="shape",
            )
        for c, i, j in COV_COLUMNS:
            out[c] = cov[:, i, j]
    for c in out.colnames:
        if out[c].dtype.kind == "f":
            for sentinel in preset.missing_values:
                out[c][np.asarray(out[c]) == sentinel] = np.nan
    nonpositive = {}
    for conv in preset.flux_to_mag:
        flux = src.values(conv["flux"])[keep]
        mag, err = flux_to_mag(flux, src.values(conv["flux_err"])[keep], conv["zero_point"])
        band = conv["band"]
        out[f"mag_{band}"], out[f"mag_err_{band}"] = mag, err
        nonpositive[band] = int(np.sum(np.isfinite(flux) & (flux <= 0)))
    for c, offset in preset.offsets.items():
        if c not in out.colnames:
            raise ConfigError(f"preset {preset.name!r}: offset for unmapped column {c!r}")
        out[c] = np.asarray(out[c], np.float64) + offset
    if "survey" not in out.colnames and preset.survey:
        out["survey"] = np.full(int(keep.sum()), preset.survey)
    for col in preset.keep:
        if col.lower() in src.lower:
            out[col] = src.values(col)[keep]
    out.meta.update(dict(preset.meta))
    out.meta["preset"] = preset.name
    out.meta["preset_rejected"] = rejected
    if nonpositive:
        out.meta["nonpositive_flux"] = nonpositive
    return out


def _read_h5py_compound(path: Path, preset: Preset):
    import h5py
    from astropy.table import Table

    with reading_file(path, "hdf5"), h5py.File(path, "r") as f:
        if preset.dataset not in f:
            raise CatalogError(
                f"{path} has no dataset {preset.dataset!r} (it has {list(f)}); is this "
                f"the file preset {preset.name!r} is for?",
                column=preset.dataset,
                rule="missing_column",
            )
        data = f[preset.dataset]
        if not isinstance(data, h5py.Dataset) or data.dtype.names is None:
            raise CatalogError(
                f"{path}: {preset.dataset!r} is not a table (a compound dataset of named "
                f"fields); is this the file preset {preset.name!r} is for?",
                column=preset.dataset,
                rule="layout",
            )
        table = Table(data[:])
        for name in preset.extra_datasets:
            if name in f and f[name].shape[:1] == (len(table),):
                table[name] = f[name][:]
    return table


def read_preset_table(path, preset, format: str | None = None):
    """Read ``path`` in the preset's schema and map it (see :func:`apply_preset`)."""
    from astropy.table import Table

    preset = load_preset(preset)
    path = Path(path)
    if preset.reader == "h5py_compound":
        raw = _read_h5py_compound(path, preset)
    else:
        fmt = guess_format(path, format or preset.format or None)
        with reading_file(path, fmt):
            raw = Table.read(path, format=fmt)
    try:
        return apply_preset(raw, preset)
    except CatalogError as exc:
        raise CatalogError(
            f"{path}: {exc}", column=exc.column, rows=exc.rows, rule=exc.rule
        ) from exc
