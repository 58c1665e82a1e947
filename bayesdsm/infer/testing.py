"""Internal hooks for bayesdsm's own tests and benchmarks: NOT part of the API.

The engine's steps below the public drivers, named here so that tests can check one step
at a time (a PSIS round on MCMC draws, the summary table, the search for modes from
chains) and benchmarks can time one tier, without reaching into private modules. They
may change or go away in any release; use :mod:`bayesdsm.infer` instead.

* :class:`Result`, :func:`weighted_quantiles`: the output columns of a batch.
* :func:`psis_on_mcmc`: the PSIS round on an MCMC tier's failed chains.
* :data:`TIERS`, :func:`run_mcmc`: the MCMC tiers, and one tier on a subset of stars.
* :func:`chain_modes`: modes found from where failed chains ended.
* :func:`pad_size`: the padded size of a batch (fixed shapes: one compilation each).
* :func:`mode_groups`: the mode finder's grouping of maxima by the dip between them.
* :func:`mixture_log_q`: the folded Student-t mixture density of the proposals.
* :func:`compiled_programs`: the engine's jitted programs (to count compilations).
* :func:`recording_importance_rounds`: records every PSIS-tier round.
* :func:`with_variation`: a two-component (K = 2) copy of a one-component emulator.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np

from bayesdsm.infer import _psis
from bayesdsm.infer._laplace import _groups as mode_groups
from bayesdsm.infer._laplace import _modes_from_jit
from bayesdsm.infer._mcmc import TIERS, chain_modes, run_mcmc
from bayesdsm.infer._padding import pad_size
from bayesdsm.infer._psis import psis_on_mcmc
from bayesdsm.infer._result import Result, weighted_quantiles
from bayesdsm.infer._sample import _mixture_log_q as mixture_log_q
from bayesdsm.infer._sample import importance_sample, whitened_hmc, whitened_nuts

__all__ = [
    "Result",
    "weighted_quantiles",
    "psis_on_mcmc",
    "TIERS",
    "run_mcmc",
    "chain_modes",
    "pad_size",
    "mode_groups",
    "mixture_log_q",
    "compiled_programs",
    "recording_importance_rounds",
    "variation_bias",
    "with_variation",
]


def compiled_programs() -> dict:
    """The sampler programs of the tiers, by name (jitted functions: each one's
    ``_cache_size()`` counts its compilations)."""
    return {
        "whitened_hmc": whitened_hmc,
        "whitened_nuts": whitened_nuts,
        "importance_sample": importance_sample,
        "modes_from_starts": _modes_from_jit,
    }


@contextlib.contextmanager
def recording_importance_rounds() -> Iterator[list]:
    """Within the block, every importance-sampling round of the cascade appends
    (star indices, k̂, ESS) of its stars to the yielded list, in order."""
    records = []
    original = _psis.is_round

    def spy(post, stars, prop, keys, idx, *args):
        out = original(post, stars, prop, keys, idx, *args)
        records.append((idx.copy(), out[2], out[3]))
        return out

    _psis.is_round = spy
    try:
        yield records
    finally:
        _psis.is_round = original


def variation_bias(n_bands: int, amplitude: float = 0.3) -> np.ndarray:
    """(n_bands,) a smooth relative variation ρ with both signs: ``amplitude`` · cos(π t),
    t = 0 .. 1 from the first band to the last (for 13 bands: 0.30, 0.29, 0.26, ...,
    −0.26, −0.29, −0.30; the middle band's is 0); R₁ = R ρ."""
    return amplitude * np.cos(np.pi * np.linspace(0.0, 1.0, n_bands))


def with_variation(emu, r1_bias=None, r1_kernel=None):
    """A two-component (K = 2) copy of the one-component emulator ``emu``: the same
    stellar and extinction layers, and R₁(θ) = R(θ) (``r1_kernel`` θ_n + ``r1_bias``)
    (:func:`bayesdsm.emulator.extinction_variation`).

    Args:
        emu: an :class:`~bayesdsm.emulator.Emulator` with K = 1.
        r1_bias: (n_bands,), default :func:`variation_bias`.
        r1_kernel: (n_bands, 3), default 0.1 × ``r1_bias`` in the log g column (R₁ varies
            with θ, as a trained one does).
    """
    from bayesdsm.emulator import emulator_arrays, emulator_from_arrays

    dtype = np.asarray(emu.normalizer.std).dtype
    bias = variation_bias(emu.n_bands) if r1_bias is None else np.asarray(r1_bias, np.float64)
    if r1_kernel is None:
        r1_kernel = np.zeros((emu.n_bands, 3))
        r1_kernel[:, 1] = 0.1 * bias
    arrays = dict(emulator_arrays(emu), R1_bias=bias, R1_kernel=np.asarray(r1_kernel))
    config = dataclasses.replace(emu.config, n_components=2)
    return emulator_from_arrays(config, arrays, dtype)
