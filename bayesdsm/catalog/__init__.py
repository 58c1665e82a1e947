"""Survey catalogs: the :class:`Catalog` container, its files, and archive column presets.

Astropy tables and units stay at this edge; a :class:`Catalog` holds plain NumPy arrays
in documented units. The modules, each importing only those above it:

* ``_schema``: the canonical flat column schema, format names, column helpers and
  :func:`reading_file` (a bad file becomes a CatalogError naming it);
* ``_catalog``: :class:`Catalog`, N stars in B bands (fields and units), and its
  per-star ``flags`` (:func:`add_flag`, :func:`flag_counts`);
* ``_validate``: the value rules applied at the boundary (masked and reported, or raised);
* ``_presets``: :class:`Preset` column mappings of archive schemas (``presets/*.toml``);
* ``_table``: :func:`catalog_from_table` and :func:`catalog_to_table`;
* ``_io``: :func:`read_catalog`, :func:`write_catalog`, :func:`read_table`,
  :func:`merge_catalogs` (FITS, Parquet, ECSV, CSV, HDF5; atomic writes).

Example::

    from bayesdsm.catalog import read_catalog, write_catalog

    cat = read_catalog("green2020_test_data_dev.h5", preset="green2020")
    write_catalog(cat, "green2020.parquet")
"""

from __future__ import annotations

from bayesdsm.catalog._catalog import Catalog, add_flag, flag_counts
from bayesdsm.catalog._io import (
    merge_catalogs,
    read_catalog,
    read_table,
    require_rows,
    write_catalog,
)
from bayesdsm.catalog._presets import (
    Preset,
    apply_preset,
    flux_to_mag,
    list_presets,
    load_preset,
    read_preset_table,
)
from bayesdsm.catalog._schema import (
    COV_COLUMNS,
    THETA_COLUMNS,
    THETA_ERR_COLUMNS,
    check_readable,
    reading_file,
)
from bayesdsm.catalog._table import catalog_from_table, catalog_to_table

__all__ = [
    "Catalog",
    "COV_COLUMNS",
    "THETA_COLUMNS",
    "THETA_ERR_COLUMNS",
    "read_catalog",
    "require_rows",
    "write_catalog",
    "read_table",
    "catalog_to_table",
    "catalog_from_table",
    "merge_catalogs",
    "Preset",
    "list_presets",
    "load_preset",
    "apply_preset",
    "read_preset_table",
    "flux_to_mag",
    "add_flag",
    "flag_counts",
    "check_readable",
    "reading_file",
]
