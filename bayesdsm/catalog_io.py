"""Catalog files and tables: schema, validation at the boundary, and I/O with astropy.

Files and tables: the canonical flat schema
-------------------------------------------
:func:`read_catalog`, :func:`write_catalog`, :func:`catalog_to_table` and
:func:`catalog_from_table` use one flat column schema (FITS, Parquet, ECSV, CSV, HDF5):

=====================================  ====================================================
column(s)                              meaning (units)
=====================================  ====================================================
``source_id``                          int64 cross-match id (Gaia DR3 ``source_id``)
``survey``                             spectroscopic survey of θ̂ (``apogee``, ``galah``, ...)
``ra``, ``dec``, ``l``, ``b``          degrees (optional; in pairs)
``teff``, ``logg``, ``feh``            θ̂ (K, dex, dex)
``cov_teff_teff`` ... ``cov_feh_feh``  the 6 independent entries of C_θ (written always);
                                       on input ``teff_err``, ``logg_err``, ``feh_err``
                                       (1σ, diagonal C_θ) may be given instead
``mag_<band>``, ``mag_err_<band>``     magnitude and 1σ error per band (NaN = unobserved)
``observed_<band>``                    optional bool: False masks a band that has values
``parallax``, ``parallax_err``         mas, as measured
``parallax_ok``                        optional bool
``ebv``, ``ebv_err``                   reddening prior Ê, σ_E (mag)
anything else                          passes through into ``Catalog.extra``
                                       (truth columns are named ``true_*``)
=====================================  ====================================================

``Catalog.meta`` and the band order are stored as JSON under the table meta key
``BDSMMETA`` (not kept by CSV, which then gives the paper's band order).

Validation at the boundary (:func:`catalog_from_table`)
-------------------------------------------------------
Structural problems always raise :class:`~bayesdsm.errors.CatalogError` with ``column``,
``rows`` and ``rule`` set: a missing column (``rule="missing_column"``: a ``mag_<b>``
without ``mag_err_<b>``, an incomplete θ̂ / covariance / parallax / reddening / position
group, or no band at all) and an unknown band (``rule="unknown_band"``: a ``mag_<x>``
column whose ``x`` is not in :data:`~bayesdsm.conventions.BANDS`; pass ``bands=`` to use
a superset on purpose). Bad values are, by default, masked and reported; with
``strict=True`` they raise a ``CatalogError`` instead:

=========================  ===================================  =========================
rule                       when                                 default masking
=========================  ===================================  =========================
``mag_nonfinite``          mag is ±inf, or NaN with a finite    band unobserved for that
                           error                                star (mag, err set NaN)
``mag_err_nonfinite``      finite mag, non-finite error         same
``mag_err_nonpositive``    error ≤ 0                            same
``theta_nonfinite``        θ̂ partly NaN or ±inf                 θ̂ and C_θ set NaN (star
``theta_err_nonfinite``    an error / C_θ entry not finite      kept without θ̂;
``theta_err_nonpositive``  a σ or C_θ diagonal ≤ 0              :func:`bayesdsm.cuts.prepare`
``theta_cov_not_pd``       C_θ not positive definite            then removes it)
``parallax_nonfinite``     ϖ̂ = ±inf                             ``parallax_ok = False``,
``parallax_err_nonfinite`` ϖ̂ finite, σ_ϖ not finite             bad value set NaN
``parallax_err_nonpositive`` σ_ϖ ≤ 0                            same
``ebv_nonfinite``,         Ê or σ_E not finite, or σ_E ≤ 0      uninformative prior
``ebv_err_nonfinite``,                                          Ê = 0, σ_E = 10
``ebv_err_nonpositive``
=========================  ===================================  =========================

A star with NaN in *both* a magnitude and its error is simply unobserved in that band,
and NaN in both Ê and σ_E means "no prior" (``ebv_missing``, recorded but not warned).
Every masking is counted in ``Catalog.meta["validation"]`` (rule, column, count, first
rows, action), a :class:`~bayesdsm.errors.BayesDSMWarning` summarises them, and
:func:`bayesdsm.cuts.prepare` repeats them in its report. Nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from bayesdsm.catalog import Catalog
from bayesdsm.conventions import BANDS, validate_bands
from bayesdsm.errors import BayesDSMWarning, CatalogError

__all__ = [
    "COV_COLUMNS",
    "THETA_COLUMNS",
    "read_catalog",
    "write_catalog",
    "read_table",
    "catalog_to_table",
    "catalog_from_table",
    "merge_catalogs",
]

# ========================================================================================
# Canonical table schema, validation and file I/O (astropy stays at this edge)

THETA_COLUMNS: tuple[str, str, str] = ("teff", "logg", "feh")
THETA_ERR_COLUMNS: tuple[str, str, str] = ("teff_err", "logg_err", "feh_err")
#: (column, i, j) of the 6 independent entries of C_θ.
COV_COLUMNS: tuple[tuple[str, int, int], ...] = tuple(
    (f"cov_{THETA_COLUMNS[i]}_{THETA_COLUMNS[j]}", i, j) for i in range(3) for j in range(i, 3)
)
_META_KEY = "BDSMMETA"
_UNITS = {"teff": "K", "parallax": "mas", "parallax_err": "mas"} | {
    c: "deg" for c in ("ra", "dec", "l", "b")
}
#: Validation rules that are recorded but not warned about.
_INFO_RULES = frozenset({"ebv_missing"})
_FORMATS = {
    ".fits": "fits",
    ".fit": "fits",
    ".fts": "fits",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".ecsv": "ascii.ecsv",
    ".csv": "ascii.csv",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".he5": "hdf5",
}
_HDF5_PATH = "catalog"


def _guess_format(path: Path, format: str | None) -> str:
    if format is not None:
        return {"csv": "ascii.csv", "ecsv": "ascii.ecsv", "h5": "hdf5"}.get(format, format)
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    if suffixes and suffixes[-1] in _FORMATS:
        return _FORMATS[suffixes[-1]]
    raise CatalogError(
        f"cannot tell the format of {path.name!r} from its extension; pass format= one of "
        "'fits', 'parquet', 'ecsv', 'csv', 'hdf5'",
        rule="format",
    )


def _column_array(table, name: str, kind: str = "float") -> np.ndarray:
    """A table column as a plain array: floats (masked -> NaN), bools or strings."""
    col = table[name]
    data = np.asarray(col)
    mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), bool)
    if kind == "float":
        if data.dtype.kind in "SUO":
            raise CatalogError(
                f"column {name!r} must be numeric, it holds {data.dtype} values",
                column=name,
                rule="dtype",
            )
        out = np.array(data, dtype=np.float64)
        if mask.any():
            out[np.broadcast_to(mask, out.shape)] = np.nan
        return out
    if kind == "bool":
        if data.dtype.kind in "SU":  # CSV writes True/False as text
            text = np.char.lower(np.char.strip(data.astype(str)))
            return np.isin(text, ["true", "1", "t", "yes"])
        return np.array(data, dtype=bool) & ~mask
    if kind == "str":
        if data.dtype.kind == "S":
            data = np.char.decode(data, "utf-8")
        return np.char.strip(np.asarray(data).astype(str))
    raise ValueError(kind)


def _unit_convert(table, name: str, values: np.ndarray) -> np.ndarray:
    unit = getattr(table[name], "unit", None)
    if unit is None or name not in _UNITS:
        return values
    from astropy import units as u

    try:
        return (values * u.Unit(unit)).to_value(_UNITS[name])
    except (u.UnitConversionError, ValueError) as exc:
        raise CatalogError(
            f"column {name!r} has unit {unit}, which cannot be converted to {_UNITS[name]}",
            column=name,
            rule="unit",
        ) from exc


class _Checker:
    """Collects (or, when strict, raises) the value rules of the module docstring."""

    def __init__(self, strict: bool):
        self.strict = strict
        self.issues: list[dict[str, Any]] = []

    def __call__(self, mask, column: str, rule: str, action: str, what: str) -> np.ndarray:
        mask = np.asarray(mask, bool)
        if not mask.any():
            return mask
        rows = np.flatnonzero(mask)
        if self.strict and rule not in _INFO_RULES:
            raise CatalogError(
                f"column {column!r}: {rows.size} row(s) break rule {rule!r} ({what}); "
                f"first rows: {rows[:10].tolist()}. Fix the input, or read with strict=False "
                f"to {action}.",
                column=column,
                rows=rows,
                rule=rule,
            )
        self.issues.append(
            {
                "rule": rule,
                "column": column,
                "count": int(rows.size),
                "rows": rows[:20].tolist(),
                "action": action,
            }
        )
        return mask

    def warn(self):
        bad = [i for i in self.issues if i["rule"] not in _INFO_RULES]
        if bad:
            summary = "; ".join(f"{i['column']}: {i['count']} x {i['rule']}" for i in bad[:8])
            warnings.warn(
                f"catalog: masked bad values ({summary}{'; ...' if len(bad) > 8 else ''}). "
                "Details in Catalog.meta['validation']; read with strict=True to raise instead.",
                BayesDSMWarning,
                stacklevel=3,
            )


def _require(table, names, group: str):
    missing = [n for n in names if n not in table.colnames]
    if missing:
        raise CatalogError(
            f"missing column {missing[0]!r}: the {group} needs all of {list(names)} "
            f"(the table has {len(table.colnames)} columns: {table.colnames[:12]}...)",
            column=missing[0],
            rule="missing_column",
        )


def _table_bands(table, meta_bands) -> tuple[str, ...]:
    found = [c[4:] for c in table.colnames if c.startswith("mag_") and not c.startswith("mag_err_")]
    unknown = [b for b in found if b not in BANDS]
    if unknown:
        raise CatalogError(
            f"unknown band {unknown[0]!r} (column 'mag_{unknown[0]}'); known bands are "
            f"{list(BANDS)}. Rename the column, or pass bands=[...] to use it on purpose.",
            column=f"mag_{unknown[0]}",
            rule="unknown_band",
        )
    if not found:
        raise CatalogError(
            "no photometry: the table has no 'mag_<band>' column. A spectroscopic-only "
            "table (e.g. an APOGEE preset) is a partial catalog: read it with read_table() "
            "and combine it with photometric tables using merge_catalogs().",
            column="mag_<band>",
            rule="missing_column",
        )
    if meta_bands and set(meta_bands) == set(found):
        return tuple(meta_bands)
    return tuple(b for b in BANDS if b in found)


def _read_photometry(table, bands, check: _Checker):
    n = len(table)
    mag = np.full((n, len(bands)), np.nan)
    err = np.full((n, len(bands)), np.nan)
    observed = np.zeros((n, len(bands)), bool)
    for k, band in enumerate(bands):
        cm, ce = f"mag_{band}", f"mag_err_{band}"
        _require(table, (cm, ce), f"band {band!r}")
        m, e = _column_array(table, cm), _column_array(table, ce)
        absent = np.isnan(m) & np.isnan(e)
        act = "mark the band unobserved for those stars"
        bad = check(~np.isfinite(m) & ~absent, cm, "mag_nonfinite", act, "NaN or inf magnitude")
        bad |= check(np.isfinite(m) & ~np.isfinite(e), ce, "mag_err_nonfinite", act, "NaN/inf")
        bad |= check(
            np.isfinite(m) & np.isfinite(e) & (e <= 0), ce, "mag_err_nonpositive", act, "error <= 0"
        )
        m[bad | absent], e[bad | absent] = np.nan, np.nan
        mag[:, k], err[:, k] = m, e
        observed[:, k] = np.isfinite(m)
        if f"observed_{band}" in table.colnames:
            observed[:, k] &= _column_array(table, f"observed_{band}", "bool")
    return mag, err, observed


def _read_theta(table, check: _Checker):
    n = len(table)
    theta = np.full((n, 3), np.nan)
    cov = np.full((n, 3, 3), np.nan)
    if not any(c in table.colnames for c in THETA_COLUMNS):
        return theta, cov
    _require(table, THETA_COLUMNS, "spectroscopic θ̂")
    for k, c in enumerate(THETA_COLUMNS):
        theta[:, k] = _unit_convert(table, c, _column_array(table, c))
    present = ~np.all(np.isnan(theta), axis=1)
    act = "drop θ̂ for those stars (prepare() then removes them)"
    bad = np.zeros(n, bool)
    for k, c in enumerate(THETA_COLUMNS):
        bad |= check(present & ~np.isfinite(theta[:, k]), c, "theta_nonfinite", act, "NaN/inf")
    cov_names = [c for c, _, _ in COV_COLUMNS]
    if any(c in table.colnames for c in cov_names):
        _require(table, cov_names, "θ̂ covariance")
        for c, i, j in COV_COLUMNS:
            v = _column_array(table, c)
            cov[:, i, j] = cov[:, j, i] = v
            bad |= check(present & ~np.isfinite(v), c, "theta_err_nonfinite", act, "NaN/inf")
            if i == j:
                bad |= check(
                    present & np.isfinite(v) & (v <= 0),
                    c,
                    "theta_err_nonpositive",
                    act,
                    "variance <= 0",
                )
    else:
        _require(table, THETA_ERR_COLUMNS, "θ̂ errors (or the 6 cov_* columns)")
        for k, c in enumerate(THETA_ERR_COLUMNS):
            s = _column_array(table, c)
            cov[:, k, k] = s**2
            bad |= check(present & ~np.isfinite(s), c, "theta_err_nonfinite", act, "NaN/inf")
            bad |= check(
                present & np.isfinite(s) & (s <= 0), c, "theta_err_nonpositive", act, "sigma <= 0"
            )
        off = ~np.eye(3, dtype=bool)
        cov[:, off] = np.where(np.isfinite(cov[:, 0, 0])[:, None], 0.0, np.nan)
    ok = present & ~bad
    if ok.any():
        eig = np.linalg.eigvalsh(cov[ok])
        npd = np.zeros(n, bool)
        npd[ok] = eig[:, 0] <= 1e-12 * np.abs(eig[:, -1])
        bad |= check(npd, "theta_cov", "theta_cov_not_pd", act, "C_θ not positive definite")
    theta[bad | ~present], cov[bad | ~present] = np.nan, np.nan
    return theta, cov


def _read_parallax(table, check: _Checker):
    n = len(table)
    if "parallax" not in table.colnames and "parallax_err" not in table.colnames:
        return np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)
    _require(table, ("parallax", "parallax_err"), "parallax")
    p = _unit_convert(table, "parallax", _column_array(table, "parallax"))
    e = _unit_convert(table, "parallax_err", _column_array(table, "parallax_err"))
    act = "set parallax_ok = False for those stars"
    p[check(np.isinf(p), "parallax", "parallax_nonfinite", act, "inf")] = np.nan
    fin = np.isfinite(p)
    e[check(fin & ~np.isfinite(e), "parallax_err", "parallax_err_nonfinite", act, "NaN/inf")] = (
        np.nan
    )
    e[check(fin & (e <= 0), "parallax_err", "parallax_err_nonpositive", act, "<= 0")] = np.nan
    ok = fin & np.isfinite(e)
    if "parallax_ok" in table.colnames:
        ok &= _column_array(table, "parallax_ok", "bool")
    return p, e, ok


def _read_reddening(table, check: _Checker):
    n = len(table)
    if "ebv" not in table.colnames and "ebv_err" not in table.colnames:
        return np.zeros(n), np.full(n, 10.0)
    _require(table, ("ebv", "ebv_err"), "reddening prior")
    v, e = _column_array(table, "ebv"), _column_array(table, "ebv_err")
    act = "use the uninformative prior E = 0 +- 10 mag for those stars"
    missing = check(np.isnan(v) & np.isnan(e), "ebv", "ebv_missing", act, "no prior given")
    bad = check(~np.isfinite(v) & ~missing, "ebv", "ebv_nonfinite", act, "NaN/inf")
    bad |= check(~np.isfinite(e) & ~missing, "ebv_err", "ebv_err_nonfinite", act, "NaN/inf")
    bad |= check(np.isfinite(e) & (e <= 0), "ebv_err", "ebv_err_nonpositive", act, "<= 0")
    v[bad | missing], e[bad | missing] = 0.0, 10.0
    return v, e


def _table_meta(table) -> tuple[dict, list | None]:
    meta = {}
    for k, v in table.meta.items():
        if k == _META_KEY:
            continue
        meta[str(k)] = v
    stored = table.meta.get(_META_KEY)
    bands = None
    if stored:
        try:
            decoded = json.loads(stored)
        except (TypeError, json.JSONDecodeError):
            decoded = {}
        bands = decoded.pop("__bands__", None)
        meta.update(decoded)
    return meta, bands


def catalog_from_table(table, preset=None, *, bands=None, strict: bool = False) -> Catalog:
    """A :class:`Catalog` from an astropy Table in the canonical schema (or a preset's).

    Args:
        table: an ``astropy.table.Table`` (or anything ``Table(...)`` accepts).
        preset: optional preset (name, path or :class:`bayesdsm.presets.Preset`) that maps
            an archive's columns to the canonical schema first.
        bands: the bands to read, first = reference. Default: the known bands present,
            in the stored order (or the paper's order).
        strict: raise :class:`CatalogError` on bad values instead of masking them.

    Returns:
        The catalog; value problems are listed in ``meta["validation"]``.

    Raises:
        CatalogError: on a missing column, an unknown band, or (``strict``) a bad value.
    """
    from astropy.table import Table

    if preset is not None:
        from bayesdsm.presets import apply_preset

        table = apply_preset(table, preset)
    table = table if isinstance(table, Table) else Table(table)
    meta, meta_bands = _table_meta(table)
    if bands is None:
        bands = _table_bands(table, meta_bands)
    bands = validate_bands(bands)
    check = _Checker(strict)
    mag, mag_err, observed = _read_photometry(table, bands, check)
    theta, theta_cov = _read_theta(table, check)
    parallax, parallax_err, parallax_ok = _read_parallax(table, check)
    ebv, ebv_err = _read_reddening(table, check)
    n = len(table)
    kw: dict[str, Any] = {}
    for a, b_ in (("ra", "dec"), ("l", "b")):
        if a in table.colnames or b_ in table.colnames:
            _require(table, (a, b_), "sky position")
            kw[a] = _unit_convert(table, a, _column_array(table, a))
            kw[b_] = _unit_convert(table, b_, _column_array(table, b_))
    survey = (
        np.char.lower(_column_array(table, "survey", "str"))
        if "survey" in table.colnames
        else np.full(n, "unknown")
    )
    survey = np.where(survey == "", "unknown", survey)
    if "source_id" in table.colnames:
        sid = table["source_id"]
        if np.asarray(sid).dtype.kind not in "iu" or np.any(getattr(sid, "mask", False)):
            raise CatalogError(
                "column 'source_id' must hold integers with no missing values "
                f"(it holds {np.asarray(sid).dtype})",
                column="source_id",
                rule="source_id",
            )
        source_id = np.asarray(sid, dtype=np.int64)
    else:
        source_id = np.arange(n, dtype=np.int64)
    used = {"survey", "source_id", "ra", "dec", "l", "b", "parallax_ok"}
    used |= {"parallax", "parallax_err", "ebv", "ebv_err", *THETA_COLUMNS, *THETA_ERR_COLUMNS}
    used |= {c for c, _, _ in COV_COLUMNS}
    used |= {f"{p}{b}" for b in bands for p in ("mag_", "mag_err_", "observed_")}
    extra = {}
    for c in table.colnames:
        if c not in used:
            data = np.asarray(table[c])
            if data.dtype.kind in "fc":
                extra[c] = _column_array(table, c)
            elif data.dtype.kind in "SU":
                extra[c] = _column_array(table, c, "str")
            else:
                extra[c] = np.array(data)
    meta["validation"] = list(meta.get("validation", [])) + check.issues
    check.warn()
    return Catalog(
        bands=bands,
        theta=theta,
        theta_cov=theta_cov,
        mag=mag,
        mag_err=mag_err,
        observed=observed,
        parallax=parallax,
        parallax_err=parallax_err,
        parallax_ok=parallax_ok,
        ebv=ebv,
        ebv_err=ebv_err,
        survey=survey,
        source_id=source_id,
        extra=extra,
        meta=meta,
        **kw,
    )


def catalog_to_table(cat: Catalog):
    """The catalog as an astropy Table in the canonical schema (see the module docstring)."""
    from astropy.table import Table

    t = Table()
    t["source_id"] = np.asarray(cat.source_id, dtype=np.int64)
    t["survey"] = np.asarray(cat.survey).astype(str)
    for name in ("ra", "dec", "l", "b"):
        if getattr(cat, name) is not None:
            t[name] = np.asarray(getattr(cat, name), np.float64)
    for k, c in enumerate(THETA_COLUMNS):
        t[c] = cat.theta[:, k]
    for c, i, j in COV_COLUMNS:
        t[c] = cat.theta_cov[:, i, j]
    for k, band in enumerate(cat.bands):
        t[f"mag_{band}"] = cat.mag[:, k]
        t[f"mag_err_{band}"] = cat.mag_err[:, k]
        t[f"mag_{band}"].unit = t[f"mag_err_{band}"].unit = "mag"
    for k, band in enumerate(cat.bands):
        t[f"observed_{band}"] = np.asarray(cat.observed[:, k], bool)
    t["parallax"] = cat.parallax
    t["parallax_err"] = cat.parallax_err
    t["parallax_ok"] = np.asarray(cat.parallax_ok, bool)
    t["ebv"] = cat.ebv
    t["ebv_err"] = cat.ebv_err
    for name, arr in cat.extra.items():
        t[name] = arr
    for name, unit in _UNITS.items():
        if name in t.colnames:
            t[name].unit = unit
    t.meta[_META_KEY] = json.dumps({**cat.meta, "__bands__": list(cat.bands)}, default=str)
    return t


def read_table(path, preset=None, format: str | None = None):
    """Read a file into an astropy Table in the canonical schema (no validation yet).

    With ``preset`` the file is read in the preset's own schema and mapped (this is
    how spectroscopic-only, "partial" tables are read before :func:`merge_catalogs`).
    """
    from astropy.table import Table

    path = Path(path)
    if not path.exists():
        raise CatalogError(f"no such catalog file: {path}", rule="missing_file")
    if preset is not None:
        from bayesdsm.presets import read_preset_table

        return read_preset_table(path, preset, format=format)
    fmt = _guess_format(path, format)
    kwargs = {"path": _HDF5_PATH} if fmt == "hdf5" else {}
    if fmt == "hdf5":
        import h5py

        with h5py.File(path, "r") as f:
            if _HDF5_PATH not in f:
                raise CatalogError(
                    f"{path.name} has no '{_HDF5_PATH}' table (it has {list(f)}); for an "
                    "archive's own layout pass preset=... (e.g. preset='green2020')",
                    column=_HDF5_PATH,
                    rule="missing_column",
                )
    return Table.read(path, format=fmt, **kwargs)


def read_catalog(path, preset=None, format: str | None = None, *, bands=None, strict=False):
    """Read a catalog file (FITS, Parquet, ECSV, CSV or HDF5) into a :class:`Catalog`.

    Args:
        path: the file. The format follows the extension unless ``format`` is given.
        preset: a column preset (name such as ``"green2020"``, ``"apogee_dr17"``, a path
            to a TOML/JSON preset file, or a :class:`bayesdsm.presets.Preset`).
        format: ``"fits"``, ``"parquet"``, ``"ecsv"``, ``"csv"`` or ``"hdf5"``.
        bands, strict: see :func:`catalog_from_table`.
    """
    return catalog_from_table(read_table(path, preset, format), bands=bands, strict=strict)


def write_catalog(cat: Catalog, path, format: str | None = None) -> Path:
    """Write a catalog in the canonical schema, atomically (temporary file + rename).

    HDF5 files hold the table at ``/catalog``; the whole file is replaced. CSV keeps
    neither ``meta`` nor multi-dimensional ``extra`` columns (a CatalogError says so).
    """
    path = Path(path)
    fmt = _guess_format(path, format)
    table = catalog_to_table(cat)
    if fmt == "ascii.csv":
        multi = [c for c in table.colnames if table[c].ndim > 1]
        if multi:
            raise CatalogError(
                f"CSV cannot hold the multi-dimensional column {multi[0]!r}; use ECSV, FITS, "
                "Parquet or HDF5",
                column=multi[0],
                rule="csv_multidim",
            )
    kwargs = {"path": _HDF5_PATH, "serialize_meta": True} if fmt == "hdf5" else {}
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        table.write(tmp, format=fmt, overwrite=True, **kwargs)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def merge_catalogs(base, *others, on: str = "source_id", bands=None, strict: bool = False):
    """Cross-match tables by ``source_id`` and build one :class:`Catalog`.

    Args:
        base: the spectroscopic table(s): a Table/Catalog or a list of them (stacked;
            rows of several surveys may share a ``source_id``, as zero points need).
        *others: photometric tables/catalogs (e.g. Gaia, PS1, 2MASS, unWISE presets),
            each with unique ``source_id`` values. Their columns are added to the rows of
            ``base`` with the same id; a column already present is kept from the left.
            Rows without a match get NaN (so those bands are unobserved).
        on: the id column.
        bands, strict: see :func:`catalog_from_table`.

    The match counts are recorded in ``meta["merge"]``.
    """
    from astropy.table import Table, vstack

    def as_table(x):
        return catalog_to_table(x) if isinstance(x, Catalog) else Table(x, copy=False)

    bases = base if isinstance(base, list | tuple) else [base]
    tables = [as_table(b) for b in bases]
    for t in tables:
        _require(t, (on,), "cross-match id")
    merged = (
        vstack(tables, join_type="outer", metadata_conflicts="silent")
        if len(tables) > 1
        else tables[0].copy()
    )
    ids = np.asarray(merged[on])
    report = []
    for k, other in enumerate(others):
        other = as_table(other)
        _require(other, (on,), "cross-match id")
        oid = np.asarray(other[on])
        order = np.argsort(oid, kind="stable")
        dup = np.flatnonzero(np.diff(oid[order]) == 0)
        if dup.size:
            raise CatalogError(
                f"table {k + 1} of the photometric tables repeats {on} values "
                f"(e.g. {oid[order][dup[0]]}); a cross-match needs unique ids",
                column=on,
                rows=order[dup],
                rule="duplicate_source_id",
            )
        pos = np.clip(np.searchsorted(oid[order], ids), 0, max(len(oid) - 1, 0))
        hit = (oid[order][pos] == ids) if len(oid) else np.zeros(len(ids), bool)
        idx = order[pos]
        for c in other.colnames:
            if c == on or c in merged.colnames:
                continue
            data = _column_array(
                other,
                c,
                "str"
                if np.asarray(other[c]).dtype.kind in "SU"
                else "float"
                if np.asarray(other[c]).dtype.kind in "fiu"
                else "bool",
            )
            picked = data[idx] if len(oid) else np.zeros((len(ids),) + data.shape[1:], data.dtype)
            if picked.dtype.kind == "f":
                picked = np.where(hit.reshape((-1,) + (1,) * (picked.ndim - 1)), picked, np.nan)
            elif picked.dtype.kind == "b":
                picked = picked & hit
            else:
                picked = np.where(hit, picked, "")
            merged[c] = picked
        report.append({"table": k + 1, "matched": int(hit.sum()), "unmatched": int((~hit).sum())})
    cat = catalog_from_table(merged, bands=bands, strict=strict)
    cat.meta["merge"] = report
    return cat
