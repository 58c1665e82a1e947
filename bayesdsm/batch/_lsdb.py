"""Results of a HATS input as a lazy LSDB catalog (input columns joined with results)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["open_results_lsdb"]

_PASSTHROUGH = ("ra", "dec", "_healpix_29")


def _attach(df, pixel, catalog_dir: str, out_dir: str, result_columns):
    import pandas as pd
    from hats.io import paths

    from bayesdsm.batch._store import hats_main_catalog, result_path

    base = hats_main_catalog(catalog_dir)[1]
    rel = Path(str(paths.pixel_catalog_file(base, pixel))).relative_to(catalog_dir)
    path = result_path(out_dir, rel.with_suffix("").as_posix())
    if path.exists():
        res = pd.read_parquet(path, columns=["source_id", *result_columns])
    else:  # not done (yet): empty results, NaN columns
        res = pd.DataFrame({"source_id": pd.Series([], dtype="int64")})
    res = res.drop_duplicates("source_id").set_index("source_id")
    return df.join(res.reindex(columns=list(result_columns)), on="source_id")


def open_results_lsdb(out_dir, catalog_dir=None, *, columns=None):
    """The HATS input catalog with the per-star results joined on ``source_id``, lazily.

    Args:
        out_dir: a batch output directory whose input was a HATS catalog.
        catalog_dir: the HATS catalog (default: the manifest's input).
        columns: input columns to load (default: all).

    Returns:
        An LSDB catalog with the input's partitioning; cross-match or join it with other
        LSDB catalogs before computing. Stars of unfinished partitions get NaN results.
    """
    import lsdb
    import pyarrow.parquet as pq

    from bayesdsm.batch._store import result_path

    manifest = json.loads((Path(out_dir) / "manifest.json").read_text())
    catalog_dir = str(catalog_dir or manifest["input"])
    cat = lsdb.read_hats(catalog_dir, columns=columns)
    done = sorted(n for n, r in manifest["partitions"].items() if r.get("status") == "done")
    schema = pq.read_schema(result_path(out_dir, done[0]))
    result_columns = [c for c in schema.names if c not in ("source_id", *_PASSTHROUGH)]
    empty = schema.empty_table().to_pandas()[result_columns]
    meta = cat.meta.join(empty)
    return cat.map_partitions(
        _attach, catalog_dir, str(out_dir), result_columns, include_pixel=True, meta=meta
    )
