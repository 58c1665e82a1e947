"""Per-star posteriors p(θ, μ, E | photometry, parallax, reddening prior), and of ξ, the
weight of the second extinction component, for a two-component model (K = 2).

Layers: prior pieces (:class:`ThetaDensityPrior`, :func:`log_volume_prior`, ...; the
Galactic prior is :func:`bayesdsm.galaxy.log_galactic_prior`) → :class:`Posterior` (one
star, JAX) and :func:`star_model` (NumPyro) → batched engines (:func:`find_modes`,
:func:`importance_sample`, :func:`refit_proposal`, :func:`kernel_proposal`,
:func:`whitened_hmc`, :func:`whitened_nuts`) → the cascade of tiers (:func:`infer_arrays`
per partition) → drivers (:func:`infer_catalog`, :func:`run_inference` with chunked,
resumable output). The same code runs on GPU (JAX picks the device; set
``JAX_PLATFORMS=cuda``), where larger ``batch_size`` pays.

:mod:`bayesdsm.infer.testing` holds internal hooks for the package's own tests and
benchmarks; it is not part of the API.
"""

from bayesdsm.infer._cascade import infer_arrays, warm_up
from bayesdsm.infer._config import InferConfig
from bayesdsm.infer._inputs import build_posterior, star_arrays, star_keys
from bayesdsm.infer._laplace import STARTS, LaplaceModes, find_modes
from bayesdsm.infer._posterior import PARAMS, PARAMS_XI, Posterior, StarArrays, star_model
from bayesdsm.infer._prior_draws import (
    draw_density_theta,
    draw_prior_truth,
    simulate_stars,
    simulated_catalog,
)
from bayesdsm.infer._priors import (
    FLAT_THETA_WALL,
    ThetaDensityPrior,
    log_ebv_prior,
    log_flat_theta_prior,
    log_volume_prior,
)
from bayesdsm.infer._result import FLAGS, XI_PRIOR_SD
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
    # configuration and the one-star model
    "InferConfig",
    "PARAMS",
    "PARAMS_XI",
    "FLAGS",
    "XI_PRIOR_SD",
    "Posterior",
    "StarArrays",
    "star_model",
    # prior pieces
    "ThetaDensityPrior",
    "log_flat_theta_prior",
    "FLAT_THETA_WALL",
    "log_volume_prior",
    "log_ebv_prior",
    # inputs
    "build_posterior",
    "star_arrays",
    "star_keys",
    # batched engines
    "STARTS",
    "LaplaceModes",
    "find_modes",
    "importance_sample",
    "psis",
    "refit_proposal",
    "kernel_proposal",
    "whitened_hmc",
    "whitened_nuts",
    "mcmc_diagnostics",
    # drivers
    "infer_arrays",
    "warm_up",
    "infer_catalog",
    "run_inference",
    "nuts_one_star",
    # simulated stars with known truth
    "draw_density_theta",
    "draw_prior_truth",
    "simulate_stars",
    "simulated_catalog",
]
