"""The state between iterations, its checkpoint file and the training-input hash.

A checkpoint (``.npz``, no pickle, written atomically after each iteration) holds the SVI
state (weights, Adam moments, step, RNG key), the reddening estimates, the parallax
terms, the exclusion mask, the next iteration's index and the history. Every random draw
of the run is derived from the seed and (iteration, epoch), so a resumed run reproduces
an uninterrupted one bit for bit.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm._util import atomic_path
from bayesdsm.config import to_dict
from bayesdsm.errors import TrainingError
from bayesdsm.likelihood import StarData

__all__ = [
    "TrainState",
    "checkpoint_config",
    "hash_inputs",
    "load_checkpoint",
    "restore",
    "save_checkpoint",
]


class TrainState(NamedTuple):
    """Everything that changes between iterations (and a checkpoint holds).

    Attributes:
        svi_state: the SVI state (weights, Adam moments and learning rates, RNG key).
        ebv, ebv_err: (N,) current reddening estimates E′, σ_E′ (mag).
        excluded: (N,) bool, excluded from the next iteration.
        chi2_dof: (N,) χ²/dof after the last rebuild.
        parallax: (μ, σ_μ, has_parallax) of every star, (N,) each.
        iteration: the next iteration to run.
        history: one record per iteration run.
    """

    svi_state: Any
    ebv: np.ndarray
    ebv_err: np.ndarray
    excluded: np.ndarray
    chi2_dof: np.ndarray
    parallax: tuple
    iteration: int
    history: list


def hash_inputs(stars: StarData, config, bands) -> str:
    """SHA-256 of the training inputs (every StarData array), the config and the bands."""
    h = hashlib.sha256()
    for a in stars:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(json.dumps({"config": to_dict(config), "bands": list(bands)}).encode())
    return h.hexdigest()


def checkpoint_config(config) -> dict:
    """Config fields that change results (progress settings may differ on resume)."""
    d = to_dict(config)
    d.pop("validate_every_epoch")
    d.pop("chunk_size")
    return d


def save_checkpoint(path, state: TrainState, meta: dict) -> None:
    """Write ``state`` and ``meta`` to ``path`` atomically (fsynced, then renamed)."""
    leaves = jax.tree_util.tree_leaves(state.svi_state)
    arrays = {f"svi_{i:04d}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays.update(
        ebv=state.ebv,
        ebv_err=state.ebv_err,
        excluded=state.excluded,
        chi2_dof=state.chi2_dof,
        mu=state.parallax[0],
        sigma_mu=state.parallax[1],
        has_parallax=state.parallax[2],
        meta=np.array(json.dumps({**meta, "iteration": state.iteration, "history": state.history})),
    )
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_checkpoint(path) -> tuple[dict, dict[str, np.ndarray]]:
    """(meta, arrays) of a training checkpoint (for inspection; no pickle)."""
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    return meta, arrays


def restore(path: Path, template_state, meta_expected: dict) -> TrainState:
    """The :class:`TrainState` of the checkpoint at ``path``, its SVI state in the
    structure and dtypes of ``template_state``.

    Raises:
        TrainingError: the checkpoint was written for another catalogue or config, or
            for another model's shapes.
    """
    meta, arrays = load_checkpoint(path)
    for key in ("training_hash", "config"):
        if meta.get(key) != meta_expected[key]:
            raise TrainingError(
                f"checkpoint {path} was written for a different catalog or config ({key} "
                "differs); delete it or run without --resume"
            )
    leaves, treedef = jax.tree_util.tree_flatten(template_state)
    saved = [arrays[f"svi_{i:04d}"] for i in range(len(leaves))]
    for a, b in zip(leaves, saved):
        if np.shape(a) != np.shape(b):
            raise TrainingError(f"checkpoint {path} does not match this model's shapes")
    svi_state = jax.tree_util.tree_unflatten(
        treedef, [jnp.asarray(b, dtype=a.dtype) for a, b in zip(leaves, saved)]
    )
    return TrainState(
        svi_state,
        arrays["ebv"],
        arrays["ebv_err"],
        arrays["excluded"].astype(bool),
        arrays["chi2_dof"],
        (arrays["mu"], arrays["sigma_mu"], arrays["has_parallax"]),
        int(meta["iteration"]),
        list(meta["history"]),
    )
