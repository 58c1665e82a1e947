"""What training returns (:class:`TrainResult`), its summaries and its model file."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from bayesdsm.config import to_dict
from bayesdsm.emulator import Emulator

__all__ = ["TrainResult", "held_out_summary", "percentiles", "to_stellar_model", "validity"]


class TrainResult(NamedTuple):
    """What :func:`~bayesdsm.train.train` returns.

    Attributes:
        emulator: the trained :class:`~bayesdsm.emulator.Emulator`.
        history: one dict per iteration (losses, χ²/dof percentiles, exclusions, learning
            rate, mean R, …) and the final test-set summary under ``history[-1]["test"]``.
        validity: the §6 :class:`~bayesdsm.validity.ValidityGrid` of the training θ.
        ebv, ebv_err: (N,) re-estimated reddenings of every star (mag).
        excluded: (N,) bool, excluded by the last iteration's χ² cut.
        chi2_dof: (N,) final χ²/dof of every star.
        split: (N,) int8, 0 = train, 1 = validation, 2 = test.
        config: the :class:`~bayesdsm.train.TrainConfig` used.
        training_hash: SHA-256 of the training inputs and config.
    """

    emulator: Emulator
    history: list[dict[str, Any]]
    validity: Any
    ebv: np.ndarray
    ebv_err: np.ndarray
    excluded: np.ndarray
    chi2_dof: np.ndarray
    split: np.ndarray
    config: Any
    training_hash: str


def percentiles(x: np.ndarray) -> dict[str, float]:
    """The 16/50/84/95/99th percentiles of ``x`` as ``{"p16": …}`` ({} if empty)."""
    if x.size == 0:
        return {}
    q = np.percentile(x, [16, 50, 84, 95, 99])
    return {f"p{p}": float(v) for p, v in zip((16, 50, 84, 95, 99), q)}


def held_out_summary(chi2_dof, split, dof) -> dict:
    """The test split's final χ²/dof: mean of those ≤ 5, fraction > 5, percentiles."""
    test = (split == 2) & (dof > 0)
    x = chi2_dof[test]
    if x.size == 0:
        return {}
    keep = x <= 5.0
    return {
        "n": int(x.size),
        "mean_chi2_dof_le5": float(x[keep].mean()) if keep.any() else float("nan"),
        "fraction_gt5": float(1.0 - keep.mean()),
        **percentiles(x),
    }


def validity(theta, mask, has_parallax, bands, use):
    """The §6 validity grid of the ``use`` stars (the active training stars)."""
    from bayesdsm.validity import compute_validity

    return compute_validity(theta[use], mask[use] > 0, has_parallax[use] > 0, bands)


def to_stellar_model(result: TrainResult, meta: dict | None = None):
    """The :class:`~bayesdsm.model_file.StellarModel` of a training result."""
    from bayesdsm.model_file import StellarModel

    return StellarModel(
        emulator=result.emulator,
        validity_grid=result.validity,
        history=result.history,
        config={"train": to_dict(result.config)},
        meta={
            "training_set_hash": result.training_hash,
            "source": "bayesdsm.train",
            "method": result.config.method,
            **(meta or {}),
        },
    )
