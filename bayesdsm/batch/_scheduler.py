"""The driver: connect to Dask, submit one task per pending partition, keep the manifest."""

from __future__ import annotations

import dataclasses
import os
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from bayesdsm.batch._errors import BatchError
from bayesdsm.batch._store import (
    Manifest,
    Partition,
    discover_partitions,
    is_hats,
    json_hash,
    remove_temporaries,
)
from bayesdsm.batch._worker import PartitionTask, model_payload, run_partition

__all__ = ["BatchSummary", "BatchRun", "connect", "infer_partitions", "open_results"]

#: The per-partition engine used unless ``partition_fn`` says otherwise.
DEFAULT_ENGINE = "bayesdsm.batch:infer_partition"
#: Environment of local worker processes: one XLA thread each (one process per core is
#: faster than threads for the engine's small operations, issue 5).
LOCAL_WORKER_ENV = {
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
    "OMP_NUM_THREADS": "1",
}


@dataclass(frozen=True)
class BatchSummary:
    """What one invocation did.

    Attributes:
        n_partitions: partitions in the catalog.
        n_done: partitions finished in this invocation.
        n_skipped: partitions already done before (manifest, or an adopted orphan file).
        n_failed: partitions that failed; ``failures`` has ``(name, reason)`` for each.
        n_stars, n_flagged: stars written, and of those flagged, in this invocation.
        seconds: wall time from the first submission to the last result (s).
        startup_seconds: connecting / starting the cluster and shipping the model (s).
        stars_per_second: ``n_stars / seconds``.
        n_workers: Dask workers (0 for the in-process ``"sync"`` scheduler).
        compiles: XLA compilations by worker (``host:pid``) during this invocation.
        dashboard: the Dask dashboard link, if any.
        cache_hits: XLA programs loaded from the persistent compilation cache instead of
            compiled, by worker.
    """

    n_partitions: int
    n_done: int
    n_skipped: int
    n_failed: int
    n_stars: int
    n_flagged: int
    seconds: float
    startup_seconds: float
    stars_per_second: float
    n_workers: int
    compiles: dict[str, int]
    failures: tuple[tuple[str, str], ...]
    dashboard: str | None = None
    cache_hits: dict[str, int] = dataclasses.field(default_factory=dict)

    def __str__(self) -> str:
        lines = [
            f"partitions: {self.n_done} done, {self.n_skipped} skipped (already done), "
            f"{self.n_failed} failed, of {self.n_partitions}",
            f"stars: {self.n_stars} done, {self.n_flagged} flagged",
            f"throughput: {self.stars_per_second:.1f} stars/s over {self.seconds:.1f} s on "
            f"{self.n_workers or 'no'} worker(s) (+{self.startup_seconds:.1f} s start-up)",
            f"XLA compilations per worker: {sorted(self.compiles.values()) or 'none'} "
            f"(+ {sum(self.cache_hits.values())} loaded from the compilation cache)",
        ]
        lines += [f"FAILED {name}: {reason}" for name, reason in self.failures]
        return "\n".join(lines)


class BatchRun(NamedTuple):
    """Result of :func:`infer_partitions`.

    Attributes:
        results: lazy Dask DataFrame of every done partition's per-star results (one
            row per input star; join on ``source_id``); None if no partition is done.
        summary: the :class:`BatchSummary` of this invocation.
        manifest: path of the manifest.
    """

    results: Any
    summary: BatchSummary
    manifest: Path


def _local_cluster(n_workers: int, dashboard: bool):
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",  # a free port (None would mean 8787, maybe taken)
        scheduler_kwargs={"dashboard": dashboard},
        env=dict(LOCAL_WORKER_ENV),
    )


def connect(scheduler, *, timeout: float = 5.0, dashboard: bool = True):
    """A Dask client for ``scheduler``; returns ``(client, cluster)``.

    Args:
        scheduler: ``"sync"`` (no Dask: run in this process; returns ``(None, None)``),
            ``"local"`` / ``"local:N"`` (a LocalCluster of N single-threaded worker
            processes; N defaults to the CPU count), a scheduler address
            (``tcp://host:8786`` or ``host:8786``), or a ``distributed.Client``.
        timeout: seconds to wait for a remote scheduler.
        dashboard: start the dashboard of a local cluster (on a free port).

    Raises:
        BatchError: the scheduler cannot be reached within ``timeout`` seconds.
    """
    if scheduler is None or scheduler == "sync":
        return None, None
    from distributed import Client

    if isinstance(scheduler, Client):
        return scheduler, None
    spec = str(scheduler)
    if spec == "local" or spec.startswith("local:"):
        n = int(spec.partition(":")[2] or os.cpu_count() or 1)
        if n < 1:
            raise BatchError(f"--scheduler {spec}: the number of workers must be >= 1")
        cluster = _local_cluster(n, dashboard)
        return Client(cluster), cluster
    address = spec if "://" in spec else f"tcp://{spec}"
    try:
        return Client(address, timeout=timeout), None
    except (OSError, TimeoutError) as err:
        raise BatchError(
            f"could not reach the Dask scheduler at {address} within {timeout:g} s ({err}). "
            "Check the address and that `dask scheduler` is running there, or use "
            "--scheduler local[:N] to start workers on this machine"
        ) from err


def _use_compile_cache(client, compile_cache) -> None:
    """Point the workers (or, for ``"sync"``, this process) at the persistent XLA cache."""
    from bayesdsm.batch._cache import configure_compile_cache, resolve_cache_arg

    directory = resolve_cache_arg(compile_cache)
    if directory is None:
        return
    if client is None:  # this process: only when the caller named a directory
        if directory:
            configure_compile_cache(directory)
        return
    from bayesdsm.batch._plugin import PLUGIN_NAME, CompileCachePlugin

    client.register_plugin(CompileCachePlugin(directory), name=PLUGIN_NAME)


def _identity(payload, config, seed, partition_fn) -> dict:
    fn = (
        partition_fn
        if isinstance(partition_fn, str)
        else (f"{partition_fn.__module__}:{partition_fn.__qualname__}")
    )
    plain = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else config
    return {
        "model_sha256": payload.sha256,
        "config_sha256": json_hash(plain),
        "seed": int(seed),
        "partition_fn": fn,
    }


def _pending(parts, manifest: Manifest, out_dir) -> tuple[list[Partition], int]:
    todo, skipped = [], 0
    for p in parts:
        if manifest.is_done(p, out_dir):
            skipped += 1
            continue
        ident = manifest.adoptable(p, out_dir)
        if ident is not None:  # written by a worker after its client died: keep it
            manifest.record(
                p.name,
                {
                    "status": "done",
                    "fingerprint": p.fingerprint,
                    "n_stars": ident.get("n_stars"),
                    "adopted": True,
                },
            )
            skipped += 1
            continue
        todo.append(p)
    return todo, skipped


def _results_iter(client, tasks, payload):
    """Yield ``(name, record)`` as partitions finish (in this process for ``client=None``)."""
    if client is None:
        for t in tasks:
            yield t.partition.name, run_partition(t, payload)
        return
    from distributed import as_completed

    run_id = uuid.uuid4().hex[:8]
    payload_f = client.scatter(payload, broadcast=True, hash=False)
    futures = {}
    for i, t in enumerate(tasks):
        key = f"bayesdsm-partition-{run_id}-{i:06d}"
        futures[client.submit(run_partition, t, payload_f, key=key, pure=False)] = t
    for fut in as_completed(futures):
        t = futures.pop(fut)
        try:
            rec = fut.result()
        except Exception as err:  # noqa: BLE001 - e.g. KilledWorker after repeated deaths
            rec = {
                "status": "failed",
                "fingerprint": t.partition.fingerprint,
                "reason": f"{type(err).__name__}: {err}",
            }
        fut.release()
        yield t.partition.name, rec


def _summarise(records, n_parts, skipped, seconds, startup, client) -> BatchSummary:
    done = [r for r in records.values() if r["status"] == "done"]
    failures = tuple(sorted((n, r["reason"]) for n, r in records.items() if r["status"] != "done"))
    compiles: dict[str, int] = {}
    hits: dict[str, int] = {}
    for r in records.values():
        if "worker" in r:
            compiles[r["worker"]] = compiles.get(r["worker"], 0) + int(r.get("compiles", 0))
            hits[r["worker"]] = hits.get(r["worker"], 0) + int(r.get("cache_hits", 0))
    n_stars = sum(int(r["n_stars"]) for r in done)
    n_workers = len(client.scheduler_info(n_workers=-1)["workers"]) if client else 0
    return BatchSummary(
        n_partitions=n_parts,
        n_done=len(done),
        n_skipped=skipped,
        n_failed=len(failures),
        n_stars=n_stars,
        n_flagged=sum(int(r.get("n_flagged", 0)) for r in done),
        seconds=seconds,
        startup_seconds=startup,
        stars_per_second=n_stars / seconds if seconds > 0 else 0.0,
        n_workers=n_workers,
        compiles=compiles,
        failures=failures,
        dashboard=getattr(client, "dashboard_link", None) if client else None,
        cache_hits=hits,
    )


def infer_partitions(
    model,
    catalog,
    out_dir,
    *,
    scheduler="sync",
    config=None,
    seed: int = 0,
    partition_fn=DEFAULT_ENGINE,
    preset=None,
    connect_timeout: float = 5.0,
    progress: bool = True,
    dashboard: bool = True,
    compile_cache=True,
) -> BatchRun:
    """Run the per-star engine over every partition of a catalog, resumably.

    Each pending partition becomes one task: read the Parquet file, call
    ``partition_fn(model, catalog, config, seed)``, write ``OUT_DIR/partitions/<name>.parquet``
    atomically. The manifest (``OUT_DIR/manifest.json``) records each outcome; re-running
    with the same model, config and seed skips the done partitions and retries the rest.
    The model is scattered to every worker once; each worker process loads it once.

    Args:
        model: a model-file path, a loaded model, or an :class:`~bayesdsm.emulator.Emulator`.
        catalog: a directory of Parquet files (one partition each), a HATS catalog
            directory, or a Dask DataFrame / LSDB catalog (staged to
            ``OUT_DIR/input`` first, see :func:`stage_input`).
        out_dir: output directory (created).
        scheduler: see :func:`connect` (default ``"sync"``: in this process, no Dask).
        config: the engine's config, passed to ``partition_fn`` (hashed into the identity).
        seed: the run's seed; a star's result depends only on it and the star's row.
        partition_fn: ``"module:function"`` or an importable callable with the signature
            ``(model, catalog, config, seed) -> table`` (one row per star, input order).
        preset: column preset used to read each partition.
        connect_timeout: seconds to wait for a remote scheduler.
        progress: show a progress bar (stderr) and the dashboard link.
        dashboard: start a dashboard for ``"local"`` clusters.
        compile_cache: persistent XLA compilation cache of the workers, so a new worker
            process loads the engine's compiled programs instead of compiling them:
            True (default: each worker's ``$BAYESDSM_COMPILE_CACHE``, else the directory
            JAX is configured with, else ``~/.cache/bayesdsm/jax``), a directory, or
            False. With ``scheduler="sync"`` this process's JAX settings are changed only
            when a directory is given.

    Returns:
        :class:`BatchRun` (lazy results, summary, manifest path).

    Raises:
        BatchError: unreachable scheduler, or an output directory of a different run.
    """
    out_dir = Path(out_dir)
    if not isinstance(catalog, str | os.PathLike):
        from bayesdsm.batch._stage import stage_input

        catalog = stage_input(catalog, out_dir / "input")
    parts = discover_partitions(catalog)
    payload = model_payload(model)
    identity = _identity(payload, config, seed, partition_fn)
    manifest = Manifest.open(out_dir, identity, input=str(catalog))
    remove_temporaries(out_dir)
    todo, skipped = _pending(parts, manifest, out_dir)
    manifest.save()
    tasks = [
        PartitionTask(p, str(out_dir), identity, partition_fn, config, seed, preset) for p in todo
    ]
    t0 = time.perf_counter()
    client, cluster = connect(scheduler, timeout=connect_timeout, dashboard=dashboard)
    records: dict[str, dict] = {}
    try:
        _use_compile_cache(client, compile_cache)
        startup = time.perf_counter() - t0
        if progress and client is not None and client.dashboard_link:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), unit="partition", disable=not progress, file=sys.stderr)
        t1 = time.perf_counter()
        for name, rec in _results_iter(client, tasks, payload):
            records[name] = rec
            manifest.record(name, rec)
            manifest.save(every=1.0)
            bar.update(1)
            bar.set_postfix(failed=sum(r["status"] != "done" for r in records.values()))
        bar.close()
        summary = _summarise(
            records, len(parts), skipped, time.perf_counter() - t1, startup, client
        )
        manifest.runs.append(
            {"scheduler": str(scheduler), "finished": time.time(), **dataclasses.asdict(summary)}
        )
    finally:
        manifest.save()
        remove_temporaries(out_dir)
        if cluster is not None:
            client.close()
            cluster.close()
    results = open_results(out_dir) if manifest.done_files(out_dir) else None
    return BatchRun(results, summary, manifest.path)


def open_results(out_dir):
    """The done partitions of ``out_dir`` as a lazy Dask DataFrame (name order)."""
    import json

    import dask.dataframe as dd

    from bayesdsm.batch._store import result_path

    path = Path(out_dir) / "manifest.json"
    if not path.exists():
        raise BatchError(f"{out_dir} has no manifest.json: not a bayesdsm batch output")
    data = json.loads(path.read_text())
    names = sorted(n for n, r in data["partitions"].items() if r.get("status") == "done")
    files = [str(result_path(out_dir, n)) for n in names]
    if not files:
        raise BatchError(f"{out_dir} has no finished partition yet")
    meta = _read_result(files[0]).iloc[:0]
    return dd.from_map(_read_result, files, meta=meta, enforce_metadata=False)


def _read_result(path):
    """One result file as a pandas DataFrame (pyarrow directly: one file, one partition).

    List columns (posterior draws) become ``pd.ArrowDtype`` columns, which Dask keeps as
    they are (it would turn object columns into strings).
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    def mapper(t):
        return pd.ArrowDtype(t) if pa.types.is_fixed_size_list(t) or pa.types.is_list(t) else None

    return pq.read_table(path).to_pandas(types_mapper=mapper)


def input_is_hats(catalog) -> bool:
    """True when ``catalog`` is a HATS directory."""
    return isinstance(catalog, str | os.PathLike) and is_hats(catalog)
