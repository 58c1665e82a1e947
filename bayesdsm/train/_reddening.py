"""The reddening scale (``TrainConfig.reddening_scale``): E′ → u E′ + v E′², R → R/u.

The photometry constrains only A(E, R, c) = E R + c (E R)², so the reddenings and the
extinction layer can slide together along an exact degeneracy; after each reddening
update (§4 step 3) the network and the reddenings are moved along it to where the
catalogue's reddening prior holds on average (:func:`reddening_rescaling`).
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from bayesdsm.train._svi import Fitter, with_params

__all__ = ["reddening_rescaling", "rescale_reddening"]


def reddening_rescaling(
    ebv, prior_mean, prior_err, *, quadratic=False, curvature=None
) -> tuple[float, float]:
    """(u, v) of E″ = u E′ + v E′²: the rescaling of the reddenings that the prior asks for.

    The photometry constrains only A(E, R, c) = E R + c (E R)², so R → R/u, E′ → u E′
    leaves every χ² unchanged, and with a fitted curvature so does E′ → u E′ + v E′²,
    R → R/u, c → c - v/(u R) (to second order in E). Only the prior terms change:
    Σ w (E″ - E₀)² (w = 1/σ₀²) and, with ``curvature``, Σ_b (c_b - v/R_b)²/s² (the
    curvature prior, with u ≈ 1 there); (u, v) is their weighted least-squares minimum.
    At the truth, with E′ the posterior mean of Eq. 8-9 and an honest prior
    E₀ ~ N(E, σ₀²), E[E₀ | E′] = E′ for every star (the prior's and the posterior's
    errors share their covariance), so E[(u, v)] = (1, 0), also when E′ is clipped at 0.

    Args:
        ebv: (n,) re-estimated reddenings E′ of the stars that set the scale (mag).
        prior_mean, prior_err: (n,) the catalog's prior (E₀, σ₀) of the same stars (mag).
        quadratic: also fit v (only a fitted curvature can absorb it); else v = 0.
        curvature: (c, R, s) of the fitted curvature: c and R (n_bands,) at the mean
            θ, s the prior width of c; adds the curvature prior's terms (quadratic only).

    Returns:
        (u, v); (1, 0) if the stars carry no information on them.
    """
    e = np.asarray(ebv, np.float64)
    w = 1.0 / np.asarray(prior_err, np.float64) ** 2
    e0 = np.asarray(prior_mean, np.float64)
    X = np.stack([e, e * e], 1) if quadratic else e[:, None]
    A = X.T @ (w[:, None] * X)
    b = X.T @ (w * e0)
    if quadratic and curvature is not None:
        c, R, width = (np.asarray(x, np.float64) for x in curvature)
        # residuals (c_b - v/R_b)/s: rows (0, -1/(R_b s)), targets -c_b/s
        A[1, 1] += np.sum(1.0 / (R * width) ** 2)
        b[1] += np.sum(c / (R * width**2))
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b)) and np.linalg.det(A) > 0):
        return 1.0, 0.0
    coef = np.linalg.solve(A, b)
    u, v = float(coef[0]), float(coef[1]) if quadratic else 0.0
    return (u, v) if u > 0 else (1.0, 0.0)


def rescale_reddening(fitter: Fitter, svi_state, theta, ebv, prior_mean, prior_err, use, config):
    """Move the network of ``svi_state`` along E″ = u E′ + v E′²: R's bias by -ln u and,
    with a fitted curvature, c → c - v/(u R) (R at the mean θ̂ of the ``use`` stars).

    Args:
        fitter: the run's SVI and template.
        svi_state: the state after this iteration's epochs.
        theta: (N, 3) θ̂ of every star.
        ebv: (N,) the reddenings just re-estimated at ``svi_state``'s network.
        prior_mean, prior_err: (N,) the catalogue's reddening prior.
        use: the stars that set the scale (the active training stars).
        config: the :class:`~bayesdsm.train.TrainConfig`.

    Returns:
        (new SVI state, u, v). The caller re-estimates the reddenings at the moved network.
    """
    emu = fitter.emulator(svi_state)
    params = fitter.svi.get_params(svi_state)
    dtype = np.asarray(theta).dtype
    R_mean = np.asarray(emu(jnp.asarray(np.mean(theta[use], 0), dtype))[1])
    curv = None
    if config.extinction_curvature:
        width = config.regularization.curvature_scale
        curv = (np.asarray(params["R_curvature_auto_loc"]), R_mean, width)
    u, v = reddening_rescaling(
        ebv[use], prior_mean[use], prior_err[use], quadratic=config.extinction_curvature,
        curvature=curv,
    )  # fmt: skip
    moved = {"R_bias_auto_loc": params["R_bias_auto_loc"] - math.log(u)}
    if v != 0.0:
        moved["R_curvature_auto_loc"] = params["R_curvature_auto_loc"] - v / (u * R_mean)
    return with_params(svi_state, moved), u, v
