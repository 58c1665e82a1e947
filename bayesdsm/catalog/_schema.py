"""The canonical flat column schema of catalog files and tables, and column helpers.

:func:`~bayesdsm.catalog.read_catalog`, :func:`~bayesdsm.catalog.write_catalog`,
:func:`~bayesdsm.catalog.catalog_to_table` and :func:`~bayesdsm.catalog.catalog_from_table`
use one flat column schema (FITS, Parquet, ECSV, CSV, HDF5):

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

The helpers here (:func:`guess_format`, :func:`column_array`, :func:`unit_convert`,
:func:`require_columns`, :func:`reading_file`) are shared by the reader, the writer and the
presets.

Reading a file fails with a :class:`~bayesdsm.errors.CatalogError` that names the file
and what to do, never with the error of the library underneath (:func:`reading_file`): a
missing file (``rule="missing_file"``), a directory or an unreadable one
(``"unreadable"``), or a file that is not what its extension says or is damaged
(``"unreadable"``).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from bayesdsm.errors import BayesDSMError, CatalogError

__all__ = [
    "THETA_COLUMNS",
    "THETA_ERR_COLUMNS",
    "COV_COLUMNS",
    "META_KEY",
    "UNITS",
    "guess_format",
    "column_array",
    "unit_convert",
    "require_columns",
    "check_readable",
    "reading_file",
]

THETA_COLUMNS: tuple[str, str, str] = ("teff", "logg", "feh")
THETA_ERR_COLUMNS: tuple[str, str, str] = ("teff_err", "logg_err", "feh_err")
#: (column, i, j) of the 6 independent entries of C_θ.
COV_COLUMNS: tuple[tuple[str, int, int], ...] = tuple(
    (f"cov_{THETA_COLUMNS[i]}_{THETA_COLUMNS[j]}", i, j) for i in range(3) for j in range(i, 3)
)
#: Table meta key holding ``Catalog.meta`` and the band order as JSON.
META_KEY = "BDSMMETA"
#: Units of the canonical columns that carry one (others are converted to these on input).
UNITS = {"teff": "K", "parallax": "mas", "parallax_err": "mas"} | {
    c: "deg" for c in ("ra", "dec", "l", "b")
}
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


def guess_format(path: Path, format: str | None) -> str:
    """The astropy format name for ``path``: from ``format`` if given, else the extension."""
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


def column_array(table, name: str, kind: str = "float") -> np.ndarray:
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


def unit_convert(table, name: str, values: np.ndarray) -> np.ndarray:
    """``values`` of column ``name`` converted from the column's unit to :data:`UNITS`."""
    unit = getattr(table[name], "unit", None)
    if unit is None or name not in UNITS:
        return values
    from astropy import units as u

    try:
        return (values * u.Unit(unit)).to_value(UNITS[name])
    except (u.UnitConversionError, ValueError) as exc:
        raise CatalogError(
            f"column {name!r} has unit {unit}, which cannot be converted to {UNITS[name]}",
            column=name,
            rule="unit",
        ) from exc


def require_columns(table, names, group: str) -> None:
    """Raise a ``missing_column`` :class:`CatalogError` unless ``table`` has all ``names``."""
    missing = [n for n in names if n not in table.colnames]
    if missing:
        raise CatalogError(
            f"missing column {missing[0]!r}: the {group} needs all of {list(names)} "
            f"(the table has {len(table.colnames)} columns: {table.colnames[:12]}...)",
            column=missing[0],
            rule="missing_column",
        )


_FORMAT_NAMES = {"ascii.csv": "CSV", "ascii.ecsv": "ECSV", "hdf5": "HDF5"}
_EXTENSIONS = "(.fits, .parquet, .ecsv, .csv, .h5)"


def check_readable(path: Path, what: str = "catalog file") -> None:
    """Raise a :class:`CatalogError` naming ``path`` unless it is a readable file."""
    path = Path(path)
    if not path.exists():
        raise CatalogError(f"no such {what}: {path}; check the path", rule="missing_file")
    if path.is_dir():
        raise CatalogError(
            f"{path}: is a directory, not a {what}; give the path of the file", rule="unreadable"
        )
    if not os.access(path, os.R_OK):
        raise CatalogError(
            f"{path}: permission denied; make the {what} readable (chmod u+r) or copy it",
            rule="unreadable",
        )


@contextmanager
def reading_file(path: Path, format: str, what: str = "catalog file"):
    """Check ``path`` (:func:`check_readable`), then turn what the reader inside the block
    raises on a bad file (OSError, ValueError, ...) into a :class:`CatalogError` that names
    the file, the format and what to do. bayesdsm's own errors pass unchanged."""
    path = Path(path)
    check_readable(path, what)
    try:
        yield
    except BayesDSMError:
        raise
    except (OSError, ValueError, TypeError, KeyError, IndexError, EOFError) as exc:
        name = _FORMAT_NAMES.get(format, format.upper())
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        if isinstance(exc, PermissionError):
            msg = f"{path}: permission denied; make the {what} readable or copy it"
        elif format == "hdf5" and "signature" in reason:
            msg = (
                f"{path}: not an HDF5 file ({reason}); check the file, or give it the "
                f"extension of its format {_EXTENSIONS}"
            )
        else:
            msg = (
                f"{path}: cannot be read as {name} ({reason}); check that it is a complete "
                f"{name} file, or give it the extension of its format {_EXTENSIONS}"
            )
        raise CatalogError(msg, rule="unreadable") from exc
