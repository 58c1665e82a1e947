"""The default per-partition engine: :func:`bayesdsm.infer.infer_arrays` behind the batch
layer's ``(model, catalog, config, seed) -> table`` contract.

:func:`infer_partition` turns one partition's :class:`~bayesdsm.catalog.Catalog` into the
engine's arrays (:func:`bayesdsm.infer.star_arrays`), runs :func:`~bayesdsm.infer.infer_arrays`
in blocks of ``config.batch_size`` stars, and returns an astropy Table with one row per
star in input order: ``source_id``, every column the engine returns (percentiles,
diagnostics, ``method``, ``converged``, ``flags`` as a comma-separated string) and, with
``keep_draws`` > 0, ``<p>_draws`` (N, keep_draws) equal-weight posterior draws per
parameter.

Randomness: each star's PRNG key is ``fold_in(PRNGKey(seed), source_id)`` inside the engine,
so its summaries do not depend on the worker or the number of workers. The engine picks
the ``keep_draws`` draws with one generator per block (``default_rng(seed)``), so the
draws also depend on which stars share the block: they are reproducible for the same
partitioning (any scheduler, any worker count), not across re-partitionings.

Per-process state (documented exception to "no global state"): :data:`_POSTERIORS` holds
the :class:`~bayesdsm.infer.Posterior` of the last (model object, config) seen by this
process, so a worker builds it (and smooths the training density) once, not per
partition. The engine's jitted functions see the same shapes for equal-size partitions
(blocks of ``batch_size``, the remainder padded to a power of two), so a worker compiles
once; partitions of varying sizes add at most ``log2(batch_size)`` shapes.
"""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

__all__ = ["infer_partition", "engine_config", "engine_columns", "BATCH_KEYS"]

#: Keys of a dict ``config`` that belong to the adapter, not to :class:`InferConfig`.
BATCH_KEYS = ("keep_draws",)

_POSTERIORS: dict[tuple, object] = {}  # (id(model), config) -> Posterior (this process)


def engine_config(config=None, seed: int = 0):
    """(:class:`~bayesdsm.infer.InferConfig` with ``seed``, keep_draws) from ``config``.

    Args:
        config: None (defaults), an ``InferConfig``, or a dict of ``InferConfig`` fields
            plus optionally ``keep_draws`` (equal-weight draws per star to write, default 0).
        seed: the run's seed; it replaces ``config.seed``.
    """
    from bayesdsm.infer import InferConfig

    keep = 0
    if config is None:
        cfg = InferConfig()
    elif isinstance(config, InferConfig):
        cfg = config
    elif isinstance(config, dict):
        fields = {k: v for k, v in config.items() if k not in BATCH_KEYS}
        keep = int(config.get("keep_draws", 0))
        cfg = InferConfig(**fields)
    else:
        raise TypeError(
            f"config must be an InferConfig, a dict of its fields or None, not {type(config)}"
        )
    return dataclasses.replace(cfg, seed=int(seed)), keep


def engine_columns(params=None) -> list[tuple[str, str]]:
    """(name, NumPy dtype) of the columns :func:`~bayesdsm.infer.infer_arrays` returns, in
    its order (``method`` and ``flags`` as strings), for the posterior's ``params``
    (default :data:`~bayesdsm.infer.PARAMS`; with K = 2 ``Posterior.params`` adds ξ).

    An empty partition never reaches the engine, so it gets these columns with zero rows:
    every result file has the same schema. ``tests/test_batch.py`` compares them with a
    real partition's, so a change of the engine's columns fails there until this follows.
    """
    from bayesdsm.infer import PARAMS

    params = PARAMS if params is None else params
    cols = [(f"{p}_{q}", "f8") for p in params for q in ("p16", "p50", "p84")]
    cols += [(name, "f8") for name in ("rhat_max", "ess_min")]
    cols += [("n_divergent", "i8"), ("pareto_k", "f8"), ("n_modes", "i8")]
    cols += [(name, "f8") for name in ("mode_weight_2", "chi2_dof", "validity")]
    return cols + [("method", "U"), ("flags", "U"), ("converged", "?")]


def _posterior(model, cfg):
    from bayesdsm.infer import build_posterior

    key = (id(model), cfg)
    post = _POSTERIORS.get(key)
    if post is None:
        post = build_posterior(model, cfg)
        _POSTERIORS.clear()  # one (model, config) at a time
        _POSTERIORS[key] = post
    return post


def star_ids(source_id) -> np.ndarray:
    """int64 PRNG ids from ``source_id``: integers as they are, anything else hashed."""
    sid = np.asarray(source_id)
    if sid.dtype.kind in "iu":
        return sid.astype(np.int64)
    return np.array(
        [
            int.from_bytes(hashlib.blake2b(str(s).encode(), digest_size=8).digest(), "little") >> 1
            for s in sid
        ],
        np.int64,
    )


def infer_partition(model, catalog, config=None, seed: int = 0):
    """Per-star posterior summaries of one partition (see the module docstring).

    Args:
        model: an :class:`~bayesdsm.emulator.Emulator`, or a loaded model file (an object
            with ``.emulator`` and optionally ``.validity_grid``, needed for
            ``theta_prior="density"``).
        catalog: a :class:`~bayesdsm.catalog.Catalog` (one partition).
        config: see :func:`engine_config`.
        seed: the run's seed.

    Returns:
        astropy Table, one row per star in input order.
    """
    from astropy.table import Table

    from bayesdsm.infer import infer_arrays, star_arrays

    cfg, keep = engine_config(config, seed)
    post = _posterior(model, cfg)
    params = post.params  # ξ too with K = 2
    stars, flags = star_arrays(catalog, cfg, getattr(post.emulator, "bands", None))
    ids = star_ids(catalog.source_id)
    n, bs = len(ids), int(cfg.batch_size)
    cols: dict[str, list] = {}
    draws = []
    for start in range(0, n, bs):
        rows = np.arange(start, min(start + bs, n))
        res = infer_arrays(
            post, stars.take(rows), ids[rows], cfg, [flags[r] for r in rows], keep_draws=keep
        )
        block, d = res if keep else (res, None)
        for name, col in block.items():
            cols.setdefault(name, []).append(np.asarray(col))
        if keep:
            draws.append(np.asarray(d))
    if not cols:  # an empty partition: the engine's columns with zero rows
        cols = {name: [np.zeros(0, dtype)] for name, dtype in engine_columns(params)}
    t = Table()
    t["source_id"] = np.asarray(catalog.source_id)
    for name, parts in cols.items():
        col = np.concatenate(parts)
        t[name] = col.astype(str) if col.dtype == object else col
    if keep:
        d = np.concatenate(draws) if draws else np.zeros((0, keep, len(params)))
        for j, p in enumerate(params):
            t[f"{p}_draws"] = d[:, :, j]
    return t
