"""Per-star posteriors p(θ, μ, E | photometry, parallax, reddening prior).

Layers: :mod:`bayesdsm.priors` (pure log densities) → :class:`Posterior` (one star, JAX)
and :func:`star_model` (NumPyro) → batched engines (:func:`find_modes`,
:func:`importance_sample`, :func:`refit_proposal`, :func:`kernel_proposal`, :func:`whitened_hmc`,
:func:`whitened_nuts`) → drivers (:func:`infer_arrays` per partition,
:func:`infer_catalog`, :func:`run_inference` with chunked, resumable output).
The same code runs on GPU (JAX picks the device; set ``JAX_PLATFORMS=cuda``), where larger
``batch_size`` pays.
"""

from bayesdsm.infer._config import InferConfig
from bayesdsm.infer._driver import (
    FLAGS,
    build_posterior,
    infer_arrays,
    star_arrays,
    star_keys,
    warm_up,
)
from bayesdsm.infer._laplace import STARTS, LaplaceModes, find_modes
from bayesdsm.infer._posterior import PARAMS, Posterior, StarArrays, star_model
from bayesdsm.infer._prior_draws import (
    draw_density_theta,
    draw_prior_truth,
    simulate_stars,
    simulated_catalog,
)
from bayesdsm.infer._run import infer_catalog, nuts_one_star, run_inference
from bayesdsm.infer._sample import (
    importance_sample,
    kernel_proposal,
    mcmc_diagnostics,
    psis,
    refit_proposal,
    whitened_hmc,
    whitened_nuts,
)

__all__ = [
    "InferConfig",
    "FLAGS",
    "PARAMS",
    "STARTS",
    "Posterior",
    "StarArrays",
    "LaplaceModes",
    "star_model",
    "build_posterior",
    "star_arrays",
    "star_keys",
    "find_modes",
    "importance_sample",
    "psis",
    "refit_proposal",
    "kernel_proposal",
    "whitened_hmc",
    "whitened_nuts",
    "mcmc_diagnostics",
    "infer_arrays",
    "warm_up",
    "infer_catalog",
    "run_inference",
    "nuts_one_star",
    "draw_density_theta",
    "draw_prior_truth",
    "simulate_stars",
    "simulated_catalog",
]
