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
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

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
