"""Catalog <-> astropy Table in the canonical schema (:mod:`bayesdsm.catalog._schema`).

:func:`catalog_from_table` validates at the boundary (:mod:`bayesdsm.catalog._validate`);
:func:`catalog_to_table` is its inverse, used by the writers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bayesdsm.catalog._catalog import Catalog
from bayesdsm.catalog._presets import apply_preset
from bayesdsm.catalog._schema import (
    COV_COLUMNS,
    META_KEY,
    THETA_COLUMNS,
    THETA_ERR_COLUMNS,
    UNITS,
    column_array,
    require_columns,
    unit_convert,
)
from bayesdsm.catalog._validate import (
    Checker,
    read_parallax,
    read_photometry,
    read_reddening,
    read_theta,
    table_bands,
)
from bayesdsm.conventions import validate_bands
from bayesdsm.errors import CatalogError

__all__ = ["catalog_from_table", "catalog_to_table"]


def _table_meta(table) -> tuple[dict, list | None]:
    meta = {}
    for k, v in table.meta.items():
        if k == META_KEY:
            continue
        meta[str(k)] = v
    stored = table.meta.get(META_KEY)
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
        preset: optional preset (name, path or :class:`~bayesdsm.catalog.Preset`) that maps
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
        table = apply_preset(table, preset)
    table = table if isinstance(table, Table) else Table(table)
    meta, meta_bands = _table_meta(table)
    if bands is None:
        bands = table_bands(table, meta_bands)
    bands = validate_bands(bands)
    check = Checker(strict, len(table))
    mag, mag_err, observed = read_photometry(table, bands, check)
    theta, theta_cov = read_theta(table, check)
    parallax, parallax_err, parallax_ok = read_parallax(table, check)
    ebv, ebv_err = read_reddening(table, check)
    n = len(table)
    kw: dict[str, Any] = {}
    for a, b_ in (("ra", "dec"), ("l", "b")):
        if a in table.colnames or b_ in table.colnames:
            require_columns(table, (a, b_), "sky position")
            kw[a] = unit_convert(table, a, column_array(table, a))
            kw[b_] = unit_convert(table, b_, column_array(table, b_))
    survey = (
        np.char.lower(column_array(table, "survey", "str"))
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
                extra[c] = column_array(table, c)
            elif data.dtype.kind in "SU":
                extra[c] = column_array(table, c, "str")
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
        flags=check.flags,
        **kw,
    )


def catalog_to_table(cat: Catalog):
    """The catalog as an astropy Table in the canonical schema (see ``_schema``)."""
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
    for name, unit in UNITS.items():
        if name in t.colnames:
            t[name].unit = unit
    t.meta[META_KEY] = json.dumps({**cat.meta, "__bands__": list(cat.bands)}, default=str)
    return t
