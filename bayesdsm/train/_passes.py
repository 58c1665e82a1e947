"""Per-star passes over the catalogue (§4 steps 1 and 3) and the Eq. 15 loss.

Each pass is a one-star function of :mod:`bayesdsm.likelihood`, vmapped and jitted over a
chunk of stars here, and run over all stars in fixed-size chunks
(:func:`bayesdsm._util.chunked_map`), so the program compiles once per chunk size.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm._util import chunked_map, take
from bayesdsm.emulator import Emulator, emulator_arrays
from bayesdsm.likelihood import (
    StarData,
    chi2_whitened,
    frozen_terms,
    frozen_whitening,
    linearized_parallax,
    rebuild_star,
)

__all__ = [
    "dof",
    "eval_loss",
    "mixture_terms",
    "parallax_terms",
    "penalty",
    "prior_constant",
    "rebuild",
    "whitening",
]


@partial(jax.jit, static_argnames=("gradients", "extinction"))
def _whiten_chunk(emu, stars, *, gradients, extinction):
    f = partial(frozen_whitening, gradients=gradients, extinction=extinction)
    return jax.vmap(f, in_axes=(None, 0))(emu, stars)


@partial(jax.jit, static_argnames=("gradients", "extinction"))
def _terms_chunk(emu, stars, *, gradients, extinction):
    f = partial(frozen_terms, gradients=gradients, extinction=extinction)
    return jax.vmap(f, in_axes=(None, 0))(emu, stars)


@jax.jit
def _loss_chunk(emu, stars, W):
    return jax.vmap(chi2_whitened, in_axes=(None, 0, 0))(emu, stars, W)


@jax.jit
def _parallax_chunk(emu, stars, plx, plx_err):
    return jax.vmap(linearized_parallax, in_axes=(None, 0, 0, 0))(emu, stars, plx, plx_err)


@jax.jit
def _rebuild_chunk(emu, stars, prior_mean, prior_err, consts):
    return jax.vmap(rebuild_star, in_axes=(None, 0, 0, 0, None))(
        emu, stars, prior_mean, prior_err, consts
    )


def whitening(emu: Emulator, stars: StarData, chunk: int, *, gradients: bool, extinction: bool):
    """Frozen whitened covariances W (n, n_bands, 5) of ``stars``
    (:func:`bayesdsm.likelihood.frozen_whitening`)."""
    return chunked_map(
        lambda s: _whiten_chunk(emu, s, gradients=gradients, extinction=extinction),
        len(stars.mag), chunk, stars,
    )  # fmt: skip


def mixture_terms(
    emu: Emulator, stars: StarData, mixture, chunk: int, *, gradients: bool, extinction: bool
):
    """Each star's posterior θ components as (n, L) StarData, their frozen whitenings W
    (n, L, n_bands, 5) and log weights log w_l - ½ log|C_l| (n, L)
    (:func:`bayesdsm.likelihood.frozen_terms`).

    Args:
        mixture: (weights (n, L), means (n, L, 3), Cholesky factors (n, L, 3, 3)).
    """
    w, m, chol = mixture
    n, n_comp = w.shape
    rows = take(stars, np.repeat(np.arange(n), n_comp))
    rows = rows._replace(theta=m.reshape(n * n_comp, 3), theta_chol=chol.reshape(-1, 3, 3))
    W, logdet = chunked_map(
        lambda s: _terms_chunk(emu, s, gradients=gradients, extinction=extinction),
        len(rows.mag), chunk, rows,
    )  # fmt: skip
    log_w = np.log(w.reshape(-1)) - 0.5 * np.asarray(logdet, np.float64)
    split = partial(_unflatten, n, n_comp)
    dtype = stars.mag.dtype
    return jax.tree_util.tree_map(split, rows), split(W), split(log_w).astype(dtype)


def _unflatten(n: int, n_comp: int, a):
    a = np.asarray(a)
    return a.reshape(n, n_comp, *a.shape[1:])


def rebuild(emu: Emulator, stars: StarData, prior_mean, prior_err, consts, chunk: int):
    """§4 step 3 for every star, with one Jacobian per star
    (:func:`bayesdsm.likelihood.rebuild_star`): the reddening update from the prior
    (``prior_mean``, ``prior_err``), clipped and floored as ``consts`` say, the rebuilt
    W and χ² at it, and R.

    Returns:
        (ebv (n,), ebv_err (n,), W (n, n_bands, 5), χ² (n,), R (n, n_bands)).
    """
    return chunked_map(
        lambda s, m, e: _rebuild_chunk(emu, s, m, e, consts),
        len(stars.mag), chunk, stars, prior_mean, prior_err,
    )  # fmt: skip


def parallax_terms(emu: Emulator, stars: StarData, plx, plx_err, chunk: int) -> tuple:
    """(μ, σ_μ, has_parallax) of every star, each (n,): its parallax linearised at the
    photometric distance of ``emu`` (:func:`bayesdsm.likelihood.linearized_parallax`)."""
    out = chunked_map(
        lambda s, a, b: _parallax_chunk(emu, s, a, b), len(stars.mag), chunk, stars, plx, plx_err
    )
    return tuple(np.asarray(a) for a in out)


def dof(stars: StarData) -> np.ndarray:
    """(n,) degrees of freedom of each star's χ² (§4): observed bands − 1."""
    return stars.mask.sum(axis=1) - 1.0


def penalty(emu: Emulator, l2_stellar: float, l1_extinction: float) -> float:
    """Eq. 15's weight penalties per star: λ_s Σ w_s² + λ_r Σ |w_r| (w_r: the kernels of
    R and, with K = 2, of R₁)."""
    arrays = emulator_arrays(emu)
    l2 = sum(
        float(jnp.sum(v**2))
        for k, v in arrays.items()
        if k.startswith("hidden_") and k.endswith("_kernel")
    )
    l1 = sum(float(jnp.sum(jnp.abs(arrays[k]))) for k in ("R_kernel", "R1_kernel") if k in arrays)
    return l2_stellar * l2 + l1_extinction * l1


def eval_loss(emu: Emulator, stars: StarData, W, keep, config) -> float:
    """Eq. 15 loss per star (mean χ²/n_bands + penalties) of the ``keep`` stars."""
    if not np.any(keep):
        return float("nan")
    idx = np.flatnonzero(keep)
    chi = chunked_map(
        lambda s, w: _loss_chunk(emu, s, w), idx.size, config.chunk_size, take(stars, idx), W[idx]
    )
    n_norm = config.n_bands_norm or emu.n_bands
    return float(np.mean(chi) / n_norm + penalty(emu, config.l2_stellar, config.l1_extinction))


def prior_constant(template: Emulator, n_total: int, config) -> float:
    """-Σ log p(w = 0) of the weight priors: the constant in SVI's loss (display only)."""
    arrays = emulator_arrays(template)
    n_s = sum(v.size for k, v in arrays.items() if k.startswith("hidden_") and k[-7:] == "_kernel")
    n_r = sum(arrays[k].size for k in ("R_kernel", "R1_kernel") if k in arrays)
    tot = 0.0
    if config.l2_stellar > 0:
        sigma = 1.0 / math.sqrt(2.0 * n_total * config.l2_stellar)
        tot += n_s * math.log(sigma * math.sqrt(2.0 * math.pi))
    if config.l1_extinction > 0:
        tot += n_r * math.log(2.0 / (n_total * config.l1_extinction))
    return tot
