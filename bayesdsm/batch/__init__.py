"""Survey-scale inference on Dask: resumable, fault-tolerant, one file per partition.

:func:`infer_partitions` runs the per-star engine (:mod:`bayesdsm.infer`) over every
partition of a catalog directory (Parquet files, or a HATS catalog read through
``hats``) on a Dask scheduler (``"sync"`` in-process, ``"local[:N]"``, or an address).
The default ``partition_fn`` is :func:`infer_partition`, the adapter of
:func:`bayesdsm.infer.infer_arrays` (config: an ``InferConfig``, or a dict of its fields
plus ``keep_draws``):

* each partition is one task: read, infer, write ``OUT_DIR/partitions/<name>.parquet``
  through a temporary file and ``os.replace`` (a killed worker leaves no partial file);
* ``OUT_DIR/manifest.json`` (atomic) records what is done; re-running skips it, and also
  adopts result files that a worker finished after its client died;
* the model's bytes are scattered to every worker once (``broadcast=True``) and loaded
  once per worker process; with fixed batch shapes the engine compiles once per process,
  and a worker plugin points every worker at a persistent XLA compilation cache
  (``compile_cache=``), so later worker processes load the compiled engine instead;
* an empty partition gives a zero-row file with the engine's columns (one schema);
* a bad partition (corrupt file, missing columns, engine error) fails alone, with its
  name and reason in the :class:`BatchSummary`; the others finish.

``bayesdsm infer MODEL CATALOG_DIR --out OUT_DIR --scheduler local:2`` is the command-line
form (:func:`run_cli`). See ``docs/scaling.md`` for throughput and the path to many
machines.
"""

from __future__ import annotations

from bayesdsm.batch._cache import configure_compile_cache
from bayesdsm.batch._cli import add_scheduler_arguments, run_cli
from bayesdsm.batch._engine import engine_config, infer_partition
from bayesdsm.batch._errors import BatchError
from bayesdsm.batch._lsdb import open_results_lsdb
from bayesdsm.batch._scheduler import (
    DEFAULT_ENGINE,
    LOCAL_WORKER_ENV,
    BatchRun,
    BatchSummary,
    connect,
    infer_partitions,
    open_results,
)
from bayesdsm.batch._store import Manifest, Partition, discover_partitions

__all__ = [
    "infer_partitions",
    "open_results",
    "open_results_lsdb",
    "connect",
    "BatchRun",
    "BatchSummary",
    "BatchError",
    "Manifest",
    "Partition",
    "discover_partitions",
    "infer_partition",
    "engine_config",
    "add_scheduler_arguments",
    "run_cli",
    "configure_compile_cache",
    "DEFAULT_ENGINE",
    "LOCAL_WORKER_ENV",
]
