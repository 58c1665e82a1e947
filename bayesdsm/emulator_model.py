"""The emulator as a NumPyro model whose MAP is the paper's penalised likelihood (Eq. 15).

Sample sites are the emulator's weights (names from
:func:`bayesdsm.emulator.emulator_arrays`):

* ``hidden_<i>_kernel`` ~ Normal(0, σ_s) with σ_s = 1 / √(2 N λ_s): the L2 penalty
  λ_s Σ w² per star on the stellar network's hidden kernels (released: λ_s = 1e-4);
* ``R_kernel`` ~ Laplace(0, b_r) with b_r = 1 / (N λ_r): the L1 penalty λ_r Σ |w| per star
  on the extinction kernel (λ_r = 1e-2); with K = 2 the variation's ``R1_kernel`` too;
* ``R1_bias`` (K = 2): Normal(0, ``variation_scale``): at the median θ (θ_n = 0) it is
  ρ = R₁/R, the extinction curve's relative change per unit σ of ξ (F99 with
  σ(R(V)) = 0.18 gives |ρ| ≈ 0.06 in every band), so that directions the data barely
  constrain stay near zero instead of taking up misfit;
* the other biases and the output kernel: flat (improper) priors, as in the released model.

The likelihood term is ``factor(-χ²_n / n_bands)`` for each star n, with the covariance
frozen for the iteration (:func:`bayesdsm.likelihood.chi2_whitened`). So

    -log p(w, data) = Σ_n [χ²_n / n_bands] + N λ_s Σ w_s² + N λ_r Σ |w_r| + const
                    = Σ_n L_n (Eq. 15 summed over stars) + const,

and SVI with :class:`~numpyro.infer.autoguide.AutoDelta` is exactly the paper's fit
(Adam on minibatches: a batch's terms are scaled by N / batch size).

``posterior_scale`` multiplies the whole log density (a temperature); MAP is unchanged.
With ``posterior_scale = n_bands / 2`` the likelihood becomes the Gaussian exp(-χ²/2),
which is what a variational guide for weight uncertainty should use.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from bayesdsm.emulator import Emulator, emulator_arrays, emulator_from_arrays
from bayesdsm.likelihood import StarData, chi2_frozen

__all__ = [
    "RegularizationConfig",
    "weight_priors",
    "emulator_model",
    "emulator_from_params",
]

_FIXED = ("theta_median", "theta_std")


@dataclass(frozen=True)
class RegularizationConfig:
    """Penalties of Eq. 15 (per star), and the likelihood normalisation.

    Attributes:
        l2_stellar: λ_s on the hidden-layer kernels of the stellar network.
        l1_extinction: λ_r on the extinction kernel.
        n_bands_norm: the n_bands dividing χ² (default: the emulator's band count, 13).
        fit_curvature: fit the extinction's second-order term c (A = A₁ + c A₁²,
            A₁ = E R; prior N(0, ``curvature_scale``²) per band); otherwise c stays at
            the template's value (zero: the paper).
        curvature_scale: the prior width of c (per mag; Appendix B gives -0.04 for Gaia
            G, the widest band). In this form a common offset of the bands' A ∝ E²
            (a distance bias) or an A ∝ E² R (a rescaling of E), which the photometry
            alone cannot tell from curvature, costs c ∝ 1/R or 1/R² in the narrow
            infrared bands, which the prior forbids.
        variation_scale: the prior width of ρ = R₁/R per band at the median θ (K = 2).
    """

    l2_stellar: float = 1e-4
    l1_extinction: float = 1e-2
    n_bands_norm: int | None = None
    fit_curvature: bool = False
    curvature_scale: float = 0.1
    variation_scale: float = 0.1


def weight_priors(template: Emulator, n_total: int, reg: RegularizationConfig, scale=1.0):
    """The prior distribution of every sampled weight, by site name."""
    priors = {}
    for name, arr in emulator_arrays(template).items():
        if name in _FIXED or (name == "R_curvature" and not reg.fit_curvature):
            continue
        shape = jnp.shape(arr)
        if name.startswith("hidden_") and name.endswith("_kernel") and reg.l2_stellar > 0:
            sigma = 1.0 / jnp.sqrt(2.0 * n_total * reg.l2_stellar * scale)
            priors[name] = dist.Normal(jnp.zeros(shape, arr.dtype), sigma).to_event(len(shape))
        elif name == "R_curvature":
            priors[name] = dist.Normal(jnp.zeros(shape, arr.dtype), reg.curvature_scale).to_event(1)
        elif name == "R1_bias":
            priors[name] = dist.Normal(jnp.zeros(shape, arr.dtype), reg.variation_scale).to_event(1)
        elif name in ("R_kernel", "R1_kernel") and reg.l1_extinction > 0:
            b = 1.0 / (n_total * reg.l1_extinction * scale)
            priors[name] = dist.Laplace(jnp.zeros(shape, arr.dtype), b).to_event(len(shape))
        else:
            priors[name] = dist.ImproperUniform(constraints.real, (), shape)
    return priors


def emulator_from_params(template: Emulator, params: dict) -> Emulator:
    """Rebuild an emulator from sampled weights (the normaliser comes from ``template``)."""
    arrays = dict(emulator_arrays(template))
    arrays.update({k: v for k, v in params.items() if k in arrays and k not in _FIXED})
    return emulator_from_arrays(template.config, arrays)


def emulator_model(
    template: Emulator,
    stars: StarData,
    W,
    *,
    n_total: int,
    reg: RegularizationConfig = RegularizationConfig(),
    posterior_scale: float = 1.0,
):
    """NumPyro model of the emulator fit for a batch of stars.

    Args:
        template: an emulator giving the architecture, dtype and θ normaliser.
        stars: :class:`~bayesdsm.likelihood.StarData` of the batch (stars on axis 0).
        W: the batch's frozen terms (:func:`~bayesdsm.likelihood.chi2_frozen`): the
            (batch, n_bands, 5) whitened covariances, a
            :class:`~bayesdsm.likelihood.ReddeningProfile` (each star's reddening profiled
            out with its prior) or a :class:`~bayesdsm.likelihood.ThetaMixture` (a mixture
            over each star's posterior θ; ``stars`` then (batch, L)).
        n_total: N, the number of training stars (the batch is scaled by N / batch).
        reg: penalties.
        posterior_scale: temperature multiplying the whole log density.
    """
    priors = weight_priors(template, n_total, reg, posterior_scale)
    params = {name: numpyro.sample(name, prior) for name, prior in priors.items()}
    emu = emulator_from_params(template, params)
    n_norm = reg.n_bands_norm or template.n_bands
    batch = stars.mag.shape[0]
    # The batch stands for all N stars: scale its terms by N / batch. (A subsampling
    # plate would do the same but draws an unused permutation of N at every step.)
    with numpyro.plate("stars", batch), numpyro.handlers.scale(scale=n_total / batch):
        chi = jax.vmap(chi2_frozen, in_axes=(None, 0, 0))(emu, stars, W)
        numpyro.factor("chi2", -posterior_scale * chi / n_norm)
