"""What runs on a Dask worker: load the model once, run one partition, write its file.

Per-process state (documented exception to "no global state"): :data:`_MODELS` is an empty
dict at import and is filled lazily, on a worker's first task, with the model loaded from
the scattered bytes, keyed by their sha256. Later tasks on that process reuse the same
Python object, so the engine's ``jax.jit`` cache (keyed by function and shapes) hits and
the process compiles once. :data:`_COMPILES` counts, via ``jax.monitoring`` (listeners
registered on the first task), the XLA programs this process built: ``backend`` every
compilation request that reached XLA, ``hits`` those served from the persistent
compilation cache (:mod:`bayesdsm.batch._cache`) instead of compiled.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import socket
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayesdsm.batch._store import META_KEY, Partition, result_path, write_parquet_atomic

__all__ = ["ModelPayload", "model_payload", "load_payload", "PartitionTask", "run_partition"]

_MODELS: dict[str, Any] = {}  # sha256 of model bytes -> loaded model (this process)
_COMPILES = {"backend": 0, "hits": 0, "listening": False}
_BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # compiled or loaded
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


@dataclass(frozen=True)
class ModelPayload:
    """The model as bytes, shipped to each worker once.

    Attributes:
        data: a model file's bytes (``kind="modelfile"``) or an emulator's ``.npz``
            arrays with a JSON config (``kind="emulator"``).
        sha256: hash of ``data``; the per-worker cache key and part of the run identity.
        kind: how to load ``data``.
    """

    data: bytes
    sha256: str
    kind: str


def _emulator_bytes(emu) -> bytes:
    from bayesdsm.emulator import emulator_arrays

    buf = io.BytesIO()
    arrays = {k: np.asarray(v) for k, v in emulator_arrays(emu).items()}
    cfg = emu.config
    header = {"bands": list(cfg.bands), "hidden": list(cfg.hidden), "activation": cfg.activation}
    if cfg.n_components != 1:  # K = 1 payloads (and their run identities) as before
        header["n_components"] = cfg.n_components
    np.savez(buf, __config__=np.array(json.dumps(header)), **arrays)
    return buf.getvalue()


def model_payload(model) -> ModelPayload:
    """Bytes of ``model``: a model-file path, a loaded model (saved through
    ``bayesdsm.model_file.save_model``), or a bare :class:`~bayesdsm.emulator.Emulator`."""
    from bayesdsm.emulator import Emulator

    if isinstance(model, str | os.PathLike):
        data, kind = Path(model).read_bytes(), "modelfile"
    elif isinstance(model, Emulator):
        data, kind = _emulator_bytes(model), "emulator"
    else:
        from bayesdsm.model_file import save_model

        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / "model"
            written = save_model(model, path)
            data, kind = Path(written or path).read_bytes(), "modelfile"
    return ModelPayload(data, hashlib.sha256(data).hexdigest(), kind)


def _load(payload: ModelPayload):
    if payload.kind == "emulator":
        from bayesdsm.emulator import EmulatorConfig, emulator_from_arrays

        with np.load(io.BytesIO(payload.data)) as z:
            header = json.loads(str(z["__config__"]))
            arrays = {k: z[k] for k in z.files if k != "__config__"}
        return emulator_from_arrays(EmulatorConfig(**header), arrays)
    from bayesdsm.model_file import load_model

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "model"
        path.write_bytes(payload.data)
        return load_model(path)


def load_payload(payload: ModelPayload):
    """The model of ``payload``, loaded once per process (see the module docstring)."""
    model = _MODELS.get(payload.sha256)
    if model is None:
        model = _load(payload)
        _MODELS.clear()  # one run's model at a time
        _MODELS[payload.sha256] = model
    return model


def _count_compiles() -> tuple[int, int]:
    """(XLA programs built, of those loaded from the persistent cache) in this process."""
    if not _COMPILES["listening"]:
        import jax

        def on_duration(event, duration, **kwargs):
            if event == _BACKEND_COMPILE_EVENT:
                _COMPILES["backend"] += 1

        def on_event(event, **kwargs):
            if event == _CACHE_HIT_EVENT:
                _COMPILES["hits"] += 1

        jax.monitoring.register_event_duration_secs_listener(on_duration)
        jax.monitoring.register_event_listener(on_event)
        _COMPILES["listening"] = True
    return _COMPILES["backend"], _COMPILES["hits"]


@dataclass(frozen=True)
class PartitionTask:
    """Everything a worker needs for one partition, besides the model.

    Attributes:
        partition: the input partition.
        out_dir: the run's output directory.
        identity: the run identity (written into the result file's metadata).
        partition_fn: ``"module:function"`` of the per-partition engine, or the callable.
        config: the engine's config, passed through unchanged.
        seed: the run's seed.
        preset: column preset for reading the input (see :func:`bayesdsm.catalog.read_catalog`).
        passthrough: input columns copied into the result (those present).
    """

    partition: Partition
    out_dir: str
    identity: dict
    partition_fn: Any
    config: Any
    seed: int
    preset: Any = None
    passthrough: tuple[str, ...] = ("ra", "dec", "_healpix_29")


def resolve(fn):
    """A callable from ``"module:function"`` (or a callable, returned as is)."""
    if callable(fn):
        return fn
    module, _, attr = str(fn).partition(":")
    return getattr(importlib.import_module(module), attr)


def _to_arrow(result, catalog, passthrough):
    import pyarrow as pa

    if hasattr(result, "colnames"):  # astropy Table
        cols = {name: np.asarray(result[name]) for name in result.colnames}
    elif hasattr(result, "to_numpy"):  # pandas DataFrame
        cols = {name: result[name].to_numpy() for name in result.columns}
    else:
        cols = dict(result)
    n = len(catalog)
    for name, col in cols.items():
        if len(col) != n:
            raise ValueError(f"engine returned {len(col)} rows in {name!r} for {n} stars")
    if "source_id" not in cols:
        cols = {"source_id": np.asarray(catalog.source_id), **cols}
    elif not np.array_equal(cols["source_id"], catalog.source_id):
        raise ValueError("engine returned rows out of input order (source_id differs)")
    for name in passthrough:
        src = getattr(catalog, name, None) if name in ("ra", "dec") else catalog.extra.get(name)
        if src is not None and name not in cols:
            cols[name] = np.asarray(src)
    arrays = {}
    for name, col in cols.items():
        col = np.asarray(col)
        if col.ndim == 2:
            flat = pa.array(col.reshape(-1))
            arrays[name] = pa.FixedSizeListArray.from_arrays(flat, col.shape[1])
        else:
            arrays[name] = pa.array(col)
    return pa.table(arrays)


def count_flagged(table) -> int:
    """Stars with a non-zero ``flags`` column, or any true ``flag_*`` column."""
    names = table.column_names
    if "flags" in names:
        f = table.column("flags").to_numpy(zero_copy_only=False)
        return int(np.count_nonzero(f))
    bits = [table.column(c).to_numpy(zero_copy_only=False) for c in names if c.startswith("flag_")]
    return int(np.count_nonzero(np.any(np.stack(bits), axis=0))) if bits else 0


def run_partition(task: PartitionTask, payload: ModelPayload) -> dict:
    """Read, infer and write one partition; never raises for a bad partition.

    Returns:
        The manifest record: ``status`` ("done" or "failed"), ``fingerprint``, ``n_stars``,
        ``n_flagged``, ``started`` (Unix time), ``seconds``, ``infer_seconds``,
        ``compiles`` (XLA compilations in this task), ``cache_hits`` (programs loaded from
        the persistent compilation cache instead), ``worker`` (host:pid), ``warnings``
        and, if failed, ``reason``.
    """
    from bayesdsm.catalog import read_catalog

    t0 = time.perf_counter()
    part = task.partition
    rec = {"fingerprint": part.fingerprint, "worker": f"{socket.gethostname()}:{os.getpid()}"}
    rec["started"] = time.time()
    c0 = _count_compiles()
    try:
        model = load_payload(payload)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cat = read_catalog(part.path, preset=task.preset, format="parquet")
            t1 = time.perf_counter()
            result = resolve(task.partition_fn)(model, cat, task.config, task.seed)
            rec["infer_seconds"] = time.perf_counter() - t1
        table = _to_arrow(result, cat, task.passthrough)
        ident = {**task.identity, "partition": part.name, "fingerprint": part.fingerprint}
        ident["n_stars"] = len(cat)
        meta = {**(table.schema.metadata or {}), META_KEY: json.dumps(ident).encode()}
        write_parquet_atomic(
            table.replace_schema_metadata(meta), result_path(task.out_dir, part.name)
        )
        rec.update(status="done", n_stars=len(cat), n_flagged=count_flagged(table))
        rec["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})[:5]
    except Exception as err:  # noqa: BLE001 - one bad partition must not stop the run
        rec.update(status="failed", reason=f"{type(err).__name__}: {err}")
        rec["traceback"] = traceback.format_exc(limit=4)[-2000:]
    c1 = _count_compiles()
    rec["compiles"] = (c1[0] - c1[1]) - (c0[0] - c0[1])
    rec["cache_hits"] = c1[1] - c0[1]
    rec["seconds"] = time.perf_counter() - t0
    return rec
