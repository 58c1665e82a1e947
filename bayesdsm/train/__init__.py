"""The iterative training procedure of Green et al. (2021), §4, as a driver around NumPyro SVI.

One iteration k = 0 … n_iterations-1:

1. freeze every star's covariance (iteration 0: ∇M = 0 and R = 0; afterwards rebuilt with
   the previous iteration's network), as whitening matrices W
   (:func:`bayesdsm.likelihood.frozen_whitening`);
2. run ``epochs`` epochs of SVI (:class:`~numpyro.infer.autoguide.AutoDelta`, Adam with
   learning rate ``lr · exp(-k / lr_decay)``, batch 256; the paper's 1024) on the *active*
   training stars.
   The model is :func:`bayesdsm.emulator_model.emulator_model`, so minimising -log p is the
   paper's Eq. 15 loss. Each epoch is one ``jax.lax.scan`` over pre-permuted minibatches;
   the last, partial batch is filled up with stars from the start of the same permutation;
3. re-estimate every star's reddening (Eq. 8–9, prior fixed at the catalog's (Ê, σ₀)),
   clip ⟨E′⟩ to ``ebv_range`` and floor σ²_E′ at 0.02² + (0.1 E′)²; rebuild the
   covariances with the new network and E′; compute χ²/dof (dof = observed bands − 1);
4. exclude from the next iteration every star with χ²/dof above :func:`chi2_threshold`
   (100 after iteration 0, falling geometrically to 5 by the 15th iteration, then 5).
   Iteration 0 instead excludes σ_E > 0.2.

Two treatments of the θ̂ errors share this loop (``TrainConfig.method``):

* ``"deconvolved"`` (the default; regression calibration): the density of the true θ is
  fitted to the training stars' θ̂ and C_θ by extreme deconvolution
  (:mod:`bayesdsm.deconvolve`), and each star's likelihood is a mixture over the largest
  components of its posterior θ given θ̂ under it, each with its posterior covariance in
  place of C_θ (:class:`bayesdsm.likelihood.ThetaMixture`). Reddening updates, χ² and the
  reported losses use the posterior's mean and covariance.
* ``"paper"``: M is evaluated at the noisy θ̂; the θ̂ errors enter the covariance as
  J C_θ Jᵀ (Eq. 4). It is the flat-density case of the above.

With ``profile_reddening`` (the default) the network's objective has each star's
reddening profiled out with the catalogue's prior (E₀, σ₀)
(:func:`bayesdsm.likelihood.chi2_profiled`): network and reddenings are fitted jointly,
so the reddenings' scale and zero point, which the photometry leaves free, sit where the
prior puts them. The paper fits the network at the last update's E′ instead.

The other defaults beyond the paper (``parallax``, ``extinction_curvature``,
``l2_stellar``, the learning rates) are listed on :class:`TrainConfig`;
:meth:`TrainConfig.paper` is the paper's procedure.

Checkpoints (:func:`load_checkpoint`) are written after each iteration, and a resumed run
reproduces an uninterrupted one bit for bit.

Modules: ``_config`` (settings, schedules, split), ``_setup`` (a run's fixed inputs),
``_svi`` (model, guide, optimiser, epoch scan), ``_passes`` (per-star passes, loss),
``_epochs`` (step 2), ``_checkpoint``, ``_result``
and ``_loop`` (:func:`train`, steps 1, 3 and 4).
"""

from bayesdsm.train._checkpoint import load_checkpoint
from bayesdsm.train._config import (
    TrainConfig,
    chi2_threshold,
    learning_rate,
    read_train_config,
    split_indices,
)
from bayesdsm.train._loop import train
from bayesdsm.train._result import TrainResult, to_stellar_model

__all__ = [
    "TrainConfig",
    "TrainResult",
    "chi2_threshold",
    "learning_rate",
    "load_checkpoint",
    "read_train_config",
    "split_indices",
    "to_stellar_model",
    "train",
]
