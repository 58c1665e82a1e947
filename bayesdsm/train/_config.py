"""Settings of the §4 procedure (:class:`TrainConfig`), its schedules and the data split."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayesdsm.emulator import EmulatorConfig
from bayesdsm.emulator_model import RegularizationConfig
from bayesdsm.errors import ConfigError, TrainingError

__all__ = [
    "TrainConfig",
    "chi2_threshold",
    "decayed",
    "learning_rate",
    "read_train_config",
    "split_indices",
]

METHODS = ("paper", "deconvolved")
PARALLAX_MODES = ("inverted", "linearized")


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the §4 procedure. The schedule's defaults are the paper's but for the
    batch; eight defaults go beyond it (``method``, ``batch_size``, ``parallax``,
    ``extinction_curvature``, ``profile_reddening``, ``l2_stellar``, ``learning_rate``,
    ``extinction_learning_rate``); :meth:`paper` gives the paper's procedure.

    Attributes:
        method: ``"deconvolved"``: regression calibration, each star's likelihood a
            mixture over its posterior θ given θ̂ under the training stars' deconvolved θ
            density (:mod:`bayesdsm.deconvolve`), with the posterior's covariances in
            place of C_θ; ``"paper"``: M at θ̂, with the θ̂ errors in the covariance
            (Eq. 4), the flat-density case.
        seed: seeds the split, the initial weights and every minibatch permutation.
        split: fractions (train, validation, test).
        n_iterations: iterations (covariance and reddening rebuilds).
        epochs: epochs per iteration.
        batch_size: stars per minibatch (the paper: 1024; 4× the steps per epoch
            converge much further on surveys of 10⁴–10⁵ stars, BENCHMARKS.md).
        learning_rate: Adam learning rate of the stellar network in iteration 0 (the
            paper: 1e-3).
        extinction_learning_rate: Adam learning rate of the extinction layer (R kernel,
            R bias, curvature) in iteration 0; None: ``learning_rate``.
        lr_decay: iteration k's learning rates are iteration 0's times exp(-k / lr_decay).
        max_ebv_err_first: iteration 0 excludes stars with σ_E above this (mag).
        chi2_start, chi2_end, chi2_end_iteration: the outlier threshold on χ²/dof, see
            :func:`chi2_threshold`.
        ebv_range: clip of the re-estimated ⟨E′⟩ (mag).
        ebv_err_floor, ebv_err_frac: σ²_E′ ≥ ebv_err_floor² + (ebv_err_frac · E′)².
        hidden, activation: architecture of the stellar network.
        l2_stellar, l1_extinction: λ_s and λ_r of Eq. 15, per star (the paper: 1e-4, 1e-2).
        n_bands_norm: the n_bands dividing χ² in Eq. 15 (None: the number of bands).
        chunk_size: stars per jitted chunk in covariance rebuilds and evaluations.
        dtype: ``"float32"`` or ``"float64"`` (needs ``jax_enable_x64``).
        validate_every_epoch: compute the validation loss after every epoch (progress
            display); otherwise only after each iteration.
        min_split_stars: each of the three splits must get at least this many stars.
        init_bias_from_data: start the output layer's bias at the training stars' median
            M_G (from parallaxes) and colours (the paper starts at zero).
        parallax: ``"inverted"`` (the paper: μ̂ = 10 - 5 log10 ϖ̂ for stars passing the SNR
            cut) or ``"linearized"``: from iteration 1 on every finite parallax enters as a
            Gaussian in ϖ linearised at the previous network's photometric distance.
        extinction_curvature: fit a second-order extinction term per band, A = A₁ + c A₁²
            with A₁ = E R(θ) and prior c ~ N(0, 0.1²) (the paper's A is linear in E).
        n_components: K, the extinction vectors (the paper's Eq. 20): 1 (R(θ)) or 2
            (also R₁(θ), the variation of the extinction curve, with a per-star
            ξ ~ N(0, 1) integrated out; needs ``profile_reddening``).
    """

    method: str = "deconvolved"
    seed: int = 0
    split: tuple[float, float, float] = (0.7, 0.2, 0.1)
    n_iterations: int = 20
    epochs: int = 25
    batch_size: int = 256
    learning_rate: float = 1e-2
    extinction_learning_rate: float | None = 1e-3
    lr_decay: float = 5.0
    max_ebv_err_first: float = 0.2
    chi2_start: float = 100.0
    chi2_end: float = 5.0
    chi2_end_iteration: int = 15
    ebv_range: tuple[float, float] = (0.0, 10.0)
    ebv_err_floor: float = 0.02
    ebv_err_frac: float = 0.1
    hidden: tuple[int, ...] = (32, 32)
    activation: str = "sigmoid"
    l2_stellar: float = 1e-5
    l1_extinction: float = 1e-2
    n_bands_norm: int | None = None
    chunk_size: int = 16384
    dtype: str = "float32"
    validate_every_epoch: bool = True
    min_split_stars: int = 1
    init_bias_from_data: bool = True
    parallax: str = "linearized"
    extinction_curvature: bool = True
    theta_density_components: int = 12
    posterior_components: int = 2
    profile_reddening: bool = True
    n_components: int = 1

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(f"TrainConfig.method must be one of {METHODS}, not {self.method!r}")
        split = tuple(float(x) for x in self.split)
        if len(split) != 3 or min(split) < 0 or abs(sum(split) - 1.0) > 1e-6:
            raise ConfigError(f"TrainConfig.split must be 3 fractions summing to 1, got {split}")
        object.__setattr__(self, "split", split)
        object.__setattr__(self, "ebv_range", tuple(float(x) for x in self.ebv_range))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        for name in ("n_iterations", "epochs", "batch_size", "chunk_size", "chi2_end_iteration",
                     "theta_density_components", "posterior_components"):  # fmt: skip
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"TrainConfig.{name} must be ≥ 1, got {getattr(self, name)}")
        if self.parallax not in PARALLAX_MODES:
            raise ConfigError(
                f"TrainConfig.parallax must be one of {PARALLAX_MODES}, not {self.parallax!r}"
            )
        if self.dtype not in ("float32", "float64"):
            raise ConfigError("TrainConfig.dtype must be 'float32' or 'float64'")
        lrs = (self.learning_rate, self.extinction_learning_rate)
        if any(lr is not None and not lr >= 0 for lr in lrs):
            raise ConfigError(f"TrainConfig learning rates must be ≥ 0, got {lrs}")
        if not (self.chi2_start > 0 and self.chi2_end > 0):
            raise ConfigError("TrainConfig.chi2_start and chi2_end must be positive")
        EmulatorConfig(hidden=self.hidden, activation=self.activation,
                       n_components=self.n_components)  # validates  # fmt: skip
        if self.n_components == 2 and not self.profile_reddening:
            raise ConfigError(
                "TrainConfig.n_components=2 needs profile_reddening=True: the variation's ξ "
                "is integrated out in the profiled objective only"
            )

    @classmethod
    def paper(cls, **changes) -> TrainConfig:
        """The paper's procedure (§4, the released model): M at θ̂, batch 1024, inverted
        parallaxes, linear extinction, the network fitted at each iteration's E′,
        λ_s = 1e-4, one learning rate 1e-3; ``changes`` set any other field."""
        base = dict(method="paper", batch_size=1024, parallax="inverted",
                    extinction_curvature=False, profile_reddening=False, l2_stellar=1e-4,
                    learning_rate=1e-3, extinction_learning_rate=None)  # fmt: skip
        return cls(**{**base, **changes})

    @property
    def regularization(self) -> RegularizationConfig:
        """Eq. 15's penalties (and the curvature prior) as the NumPyro model takes them."""
        return RegularizationConfig(
            self.l2_stellar, self.l1_extinction, self.n_bands_norm, self.extinction_curvature
        )


def learning_rate(config: TrainConfig, k: int) -> float:
    """Adam learning rate of the stellar network in iteration k: lr · exp(-k / lr_decay)."""
    return float(config.learning_rate * math.exp(-k / config.lr_decay))


def decayed(config: TrainConfig, lr0: float, k: int) -> float:
    """A learning rate ``lr0`` of iteration 0 in iteration k: lr0 · exp(-k / lr_decay)."""
    return float(lr0 * math.exp(-k / config.lr_decay))


def chi2_threshold(config: TrainConfig, k: int) -> float:
    """χ²/dof threshold applied after iteration k (0-based) to select iteration k+1.

    ``chi2_start`` after the first iteration (k = 0), falling geometrically to
    ``chi2_end`` after iteration ``chi2_end_iteration`` (1-based, i.e. k = 14 by
    default), constant afterwards.
    """
    n = max(config.chi2_end_iteration - 1, 1)
    f = min(k, n) / n
    return float(config.chi2_start * (config.chi2_end / config.chi2_start) ** f)


def split_indices(n: int, config: TrainConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded random (train, validation, test) star indices, each sorted."""
    n_val = int(round(config.split[1] * n))
    n_test = int(round(config.split[2] * n))
    n_train = n - n_val - n_test
    sizes = (n_train, n_val, n_test)
    if min(sizes) < config.min_split_stars:
        raise TrainingError(
            f"too few stars for the split {config.split}: {n} stars give "
            f"{n_train}/{n_val}/{n_test} train/validation/test, and every split needs at "
            f"least {config.min_split_stars} (rule: min_split_stars). Use more stars."
        )
    perm = np.random.default_rng(config.seed).permutation(n)
    return (
        np.sort(perm[:n_train]),
        np.sort(perm[n_train : n_train + n_val]),
        np.sort(perm[n_train + n_val :]),
    )


def read_train_config(path) -> tuple[TrainConfig, Any]:
    """(TrainConfig, CutsConfig) from a TOML or JSON file.

    The file is either a flat :class:`TrainConfig` or has tables ``train`` and ``cuts``.
    """
    import tomllib

    from bayesdsm.config import CutsConfig, from_dict

    path = Path(path)
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot parse the config file {path}: {exc}") from exc
    if "train" in data or "cuts" in data:
        extra = sorted(set(data) - {"train", "cuts"})
        if extra:
            raise ConfigError(f"unknown table {extra[0]!r} in {path}; use 'train' and 'cuts'")
        return from_dict(TrainConfig, data.get("train", {})), from_dict(
            CutsConfig, data.get("cuts", {})
        )
    return from_dict(TrainConfig, data), CutsConfig()
