"""Catalog files: read and write FITS, Parquet, ECSV, CSV and HDF5, and cross-match tables.

Files use the canonical schema of :mod:`bayesdsm.catalog._schema`; an archive's own
schema is read through a column preset (:mod:`bayesdsm.catalog._presets`). Writes are
atomic (:func:`bayesdsm._util.atomic_path`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bayesdsm.catalog._catalog import Catalog
from bayesdsm.catalog._presets import read_preset_table
from bayesdsm.catalog._schema import (
    check_readable,
    column_array,
    guess_format,
    reading_file,
    require_columns,
)
from bayesdsm.catalog._table import catalog_from_table, catalog_to_table
from bayesdsm.errors import CatalogError

__all__ = ["read_table", "read_catalog", "require_rows", "write_catalog", "merge_catalogs"]

#: Where HDF5 catalog files hold their table.
_HDF5_PATH = "catalog"


def read_table(path, preset=None, format: str | None = None):
    """Read a file into an astropy Table in the canonical schema (no validation yet).

    With ``preset`` the file is read in the preset's own schema and mapped (this is
    how spectroscopic-only, "partial" tables are read before :func:`merge_catalogs`).

    Raises:
        CatalogError: naming the file, for a missing, unreadable or damaged file, a file
            that is not of its extension's format, or an HDF5 file without the table.
    """
    from astropy.table import Table

    path = Path(path)
    check_readable(path)
    if preset is not None:
        return read_preset_table(path, preset, format=format)
    fmt = guess_format(path, format)
    kwargs = {"path": _HDF5_PATH} if fmt == "hdf5" else {}
    with reading_file(path, fmt):
        if fmt == "hdf5":
            import h5py

            with h5py.File(path, "r") as f:
                if _HDF5_PATH not in f:
                    raise CatalogError(
                        f"{path} has no '{_HDF5_PATH}' table (it has {list(f)}); for an "
                        "archive's own layout pass preset=... (e.g. preset='green2020')",
                        column=_HDF5_PATH,
                        rule="missing_column",
                    )
        return Table.read(path, format=fmt, **kwargs)


def require_rows(cat: Catalog, path, preset=None, task: str = "nothing to do") -> Catalog:
    """``cat`` if it has a star; else a :class:`~bayesdsm.errors.CatalogError` naming the
    file ``path`` it was read from (and ``preset``), saying ``task`` ("nothing to do")."""
    if len(cat) == 0:
        raise CatalogError(
            f"{path}: the catalog has no rows; {task}. Check the file"
            + (f" and the preset {preset!r}" if preset else ""),
            rule="empty",
        )
    return cat


def read_catalog(path, preset=None, format: str | None = None, *, bands=None, strict=False):
    """Read a catalog file (FITS, Parquet, ECSV, CSV or HDF5) into a :class:`Catalog`.

    Args:
        path: the file. The format follows the extension unless ``format`` is given.
        preset: a column preset (name such as ``"green2020"``, ``"apogee_dr17"``, a path
            to a TOML/JSON preset file, or a :class:`~bayesdsm.catalog.Preset`).
        format: ``"fits"``, ``"parquet"``, ``"ecsv"``, ``"csv"`` or ``"hdf5"``.
        bands, strict: see :func:`catalog_from_table`.
    """
    table = read_table(path, preset, format)
    try:
        return catalog_from_table(table, bands=bands, strict=strict)
    except CatalogError as exc:
        raise _naming(exc, path) from exc


def _naming(exc: CatalogError, path) -> CatalogError:
    """``exc`` with the file named at the front of its message."""
    return CatalogError(f"{path}: {exc}", column=exc.column, rows=exc.rows, rule=exc.rule)


def write_catalog(cat: Catalog, path, format: str | None = None) -> Path:
    """Write a catalog in the canonical schema, atomically (temporary file + rename).

    HDF5 files hold the table at ``/catalog``; the whole file is replaced. CSV keeps
    neither ``meta`` nor multi-dimensional ``extra`` columns (a CatalogError says so).
    """
    from bayesdsm._util import atomic_path  # here: bayesdsm._util imports jax

    path = Path(path)
    fmt = guess_format(path, format)
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
    with atomic_path(path) as tmp:
        table.write(tmp, format=fmt, overwrite=True, **kwargs)
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
        require_columns(t, (on,), "cross-match id")
    merged = (
        vstack(tables, join_type="outer", metadata_conflicts="silent")
        if len(tables) > 1
        else tables[0].copy()
    )
    ids = np.asarray(merged[on])
    report = []
    for k, other in enumerate(others):
        other = as_table(other)
        require_columns(other, (on,), "cross-match id")
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
            data = column_array(
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
