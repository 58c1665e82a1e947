"""The per-star posterior p(θ, μ, E | m̂, ϖ̂, Ê) and its NumPyro model.

Parameterisation (unconstrained, well conditioned), z = (θ_n (3), m₀, e), and with a
two-component extinction model (K = 2, ``emulator.n_components``) z = (θ_n, m₀, e, ξ):

* θ_n = (θ − median)/std, the emulator's own normalisation (so z[:3] is O(1));
* m₀ = μ + M_ref(θ) + E R_ref(θ), the model's apparent magnitude in the reference band
  (G) [mag]; μ = m₀ − M_ref(θ) − E R_ref(θ) (unit Jacobian). The photometry pins m₀ to
  ~σ_G directly, which straightens the tight, curved θ–μ–E ridge that a μ
  parameterisation has (measured on real stars: whitened s.d. up to 13 in its stiff
  direction with μ, ~1 with m₀);
* e with E = |e| ≥ 0 [mag]: the posterior is *folded* onto e ∈ ℝ (p(e) ∝ p(E = |e|), a
  measure-preserving fold, no Jacobian). Every physical quantity is identical on the two
  mirror halves, so chains need not cross e = 0, and the shape near E = 0 stays close to
  Gaussian in e (a log or softplus map gives E ≈ 0 stars an exponential tail that the
  Laplace whitening cannot see; measured: whitened s.d. up to 26 and kurtosis 25).
* ξ (K = 2 only), the weight of the second extinction component: the star's extinction
  vector is R(θ) + ξ R₁(θ) (:func:`bayesdsm.emulator.extinction_vector`), with prior
  ξ ~ N(0, 1), a least-squares term of :meth:`Posterior.residuals`. It is unconstrained
  and needs no fold (the target is symmetric in e at fixed ξ).

:attr:`Posterior.ndim` is the length of z (5 or 6) and :attr:`Posterior.params` the
reported physical parameters (:data:`PARAMS`, plus ``xi`` for K = 2).

Likelihood (observed bands only; ``mask``):
m̂_b ~ N(M_b(θ) + μ + A_b(θ, E, ξ), σ_b² + σ_emu,b²), A = E (R + ξ R₁) (plus the
curvature term if fitted; ξ = 0 for K = 1), and, where ``plx_mask``,
ϖ̂ − zp ~ N(10^((10 − μ)/5) mas, σ_ϖ²) (negative ϖ̂ are valid data).
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.conventions import b_matrix_inverse
from bayesdsm.emulator import Emulator, extinction_variation, reddening
from bayesdsm.galaxy import log_galactic_prior
from bayesdsm.infer._priors import (
    FLAT_THETA_WALL,
    ThetaDensityPrior,
    log_ebv_prior,
    log_flat_theta_prior,
    log_volume_prior,
)

__all__ = ["StarArrays", "Posterior", "PARAMS", "PARAMS_XI", "star_model"]

#: Reported parameters of a one-component (K = 1) model, in this order.
PARAMS = ("teff", "logg", "feh", "mu", "dist_pc", "ebv")

#: Reported parameters of a two-component (K = 2) model: :data:`PARAMS` and ξ.
PARAMS_XI = PARAMS + ("xi",)


class StarArrays(NamedTuple):
    """Per-star inputs as arrays (leading axis = stars, or none for one star).

    Unobserved entries hold finite dummies and a False mask, so no NaN enters JAX.
    """

    mag: jax.Array  # (B,) apparent magnitudes
    var: jax.Array  # (B,) σ_m² + σ_emu² [mag²]
    mask: jax.Array  # (B,) bool, band used
    plx: jax.Array  # () ϖ̂ − zp [mas]
    plx_err: jax.Array  # () σ_ϖ [mas]
    plx_mask: jax.Array  # () bool
    ebv: jax.Array  # () Ê [mag]
    ebv_err: jax.Array  # () σ_E [mag]
    ebv_mask: jax.Array  # () bool: Gaussian prior (else flat)
    l: jax.Array  # () Galactic longitude [deg] (0 if unknown)
    b: jax.Array  # () Galactic latitude [deg]
    lb_mask: jax.Array  # () bool: (l, b) known (else the galactic prior falls back to volume)

    def take(self, index) -> StarArrays:
        """The stars ``index`` (NumPy arrays)."""
        return StarArrays(*(np.asarray(a)[index] for a in self))

    def astype(self, dtype) -> StarArrays:
        """JAX arrays for the engines: floats in ``dtype`` (the posterior's), masks bool."""
        as_jax = lambda a: jnp.asarray(a) if np.asarray(a).dtype == bool else jnp.asarray(a, dtype)  # noqa: E731
        return StarArrays(*(as_jax(a) for a in self))


class Posterior(eqx.Module):
    """ln p(z | star) for one star (see module doc), with the emulator and priors.

    Attributes:
        emulator: the emulator (its normaliser defines θ_n).
        theta_prior: a :class:`ThetaDensityPrior`, or None for flat.
        theta_lo, theta_hi: the flat θ prior's box (K, dex, dex).
        prior: ``"volume"`` or ``"galactic"`` (:func:`bayesdsm.galaxy.log_galactic_prior`; static).
        volume_length_pc, ebv_max: see :class:`InferConfig`.
    """

    emulator: Emulator
    theta_prior: ThetaDensityPrior | None
    theta_lo: jax.Array
    theta_hi: jax.Array
    prior: str = eqx.field(static=True)
    volume_length_pc: float = eqx.field(static=True)
    ebv_max: float = eqx.field(static=True)

    @property
    def dtype(self):
        return self.theta_lo.dtype

    @property
    def has_xi(self) -> bool:
        """Whether the model has a second extinction component (K = 2), so z holds ξ."""
        return self.emulator.n_components == 2

    @property
    def ndim(self) -> int:
        """The length of z: 5, or 6 with ξ (K = 2)."""
        return 6 if self.has_xi else 5

    @property
    def params(self) -> tuple[str, ...]:
        """The physical parameters :meth:`physical` returns: :data:`PARAMS`, or
        :data:`PARAMS_XI` for K = 2."""
        return PARAMS_XI if self.has_xi else PARAMS

    def theta(self, z):
        return self.emulator.normalizer.inverse(z[..., :3])

    def ebv(self, z):
        return jnp.abs(z[..., 4])

    def _extinction(self, th, r, xi):
        """The star's extinction vector R (+ ξ R₁ for K = 2) at θ, given R(θ)."""
        if not self.has_xi:
            return r
        return r + xi * extinction_variation(self.emulator, th, r)

    def _parts(self, z):
        """(θ, μ, E, predicted m (B,), ξ or None) for one star."""
        th = self.theta(z)
        bm, r = self.emulator(th)
        mabs = jnp.asarray(b_matrix_inverse(self.emulator.n_bands), bm.dtype) @ bm
        ebv = self.ebv(z)
        xi = z[5] if self.has_xi else None
        # E R (E (R + ξ R₁) for K = 2), plus the curvature if fitted
        a = reddening(self.emulator, self._extinction(th, r, xi), ebv)[0]
        mu = z[3] - mabs[0] - a[0]
        return th, mu, ebv, mabs + mu + a, xi

    def z_from(self, theta, mu, ebv, xi=None):
        """z (:attr:`ndim`,) from physical θ (3,), μ and E ≥ 0 (and ξ for K = 2; None
        means 0), for one star.

        Raises:
            ValueError: ξ given for a one-component (K = 1) model.
        """
        th = jnp.asarray(theta, self.dtype)
        bm, r = self.emulator(th)
        if self.has_xi:
            xi = jnp.zeros((), self.dtype) if xi is None else jnp.asarray(xi, self.dtype)
        elif xi is not None:
            raise ValueError("xi given, but the model has one extinction component (K = 1)")
        m0 = mu + bm[0] + reddening(self.emulator, self._extinction(th, r, xi), ebv)[0][0]
        tail = [m0, ebv] if xi is None else [m0, ebv, xi]
        return jnp.concatenate([self.emulator.normalizer(th), jnp.stack(tail).astype(self.dtype)])

    def physical(self, z):
        """Physical parameters (:attr:`params`: teff, logg, feh, mu, dist_pc, ebv, and xi
        for K = 2) from z (:attr:`ndim`,)."""
        return self._physical(self._parts(z))

    @staticmethod
    def _physical(parts):
        th, mu, ebv, _, xi = parts
        rest = [mu, 10.0 ** (mu / 5.0 + 1.0), ebv] + ([] if xi is None else [xi])
        return jnp.concatenate([th, jnp.stack(rest)])

    def predicted(self, z):
        """M(θ) + μ + A (B,) for one star: A = E R(θ), or E (R(θ) + ξ R₁(θ)) for K = 2
        (plus the curvature term if fitted)."""
        return self._parts(z)[3]

    def residuals(self, z, star: StarArrays):
        """Whitened residuals (B + 2,): bands, parallax, Gaussian reddening prior (0 where
        masked), and for K = 2 ξ itself (its N(0, 1) prior; B + 3 in all), so that
        ln p = −½ |r|² + :meth:`log_prior_rest`."""
        return self._residuals(self._parts(z), star)

    def _residuals(self, parts, star):
        _, mu, ebv, pred, xi = parts
        resid = jnp.where(star.mask, (star.mag - pred) / jnp.sqrt(star.var), 0.0)
        plx_model = 10.0 ** ((10.0 - mu) / 5.0)
        r_plx = jnp.where(star.plx_mask, (star.plx - plx_model) / star.plx_err, 0.0)
        r_ebv = jnp.where(star.ebv_mask, (ebv - star.ebv) / star.ebv_err, 0.0)
        rest = [r_plx, r_ebv] + ([] if xi is None else [xi])
        return jnp.concatenate([resid, jnp.stack(rest)])

    def log_prior_rest(self, z, star: StarArrays):
        """The non-Gaussian prior terms: θ prior, distance prior, flat-E wall, Jacobian."""
        return self._prior_rest(self._parts(z), star)

    def _prior_rest(self, parts, star):
        th, mu, ebv, _, _ = parts
        if self.theta_prior is None:
            lp = log_flat_theta_prior(th, self.theta_lo, self.theta_hi)
        else:
            lp = self.theta_prior(th)
        vol = log_volume_prior(mu, self.volume_length_pc)
        if self.prior == "galactic":
            gal = log_galactic_prior(mu, th[2], star.l, star.b)
            lp = lp + jnp.where(star.lb_mask, gal, vol)
        else:
            lp = lp + vol
        # keep μ in a physical range (−5 .. 25 mag: 1 pc .. 1 Mpc)
        lp = lp - 0.5 * (jnp.maximum(-5.0 - mu, 0.0) ** 2 + jnp.maximum(mu - 25.0, 0.0) ** 2)
        flat = log_ebv_prior(ebv, star.ebv, star.ebv_err, False, self.ebv_max)
        lp = lp + jnp.where(star.ebv_mask, 0.0, flat)
        return lp

    def wall_curvature(self, z):
        """(:attr:`ndim`,) curvature of −ln p along each axis of z due to the flat θ
        prior's walls alone at z: (std_i / width_i)² where θ_i is beyond the box, else 0
        (and 0 under the density θ prior). A mode pressed against a wall has the wall's
        curvature on one side only; the Laplace widths leave it out (see
        :mod:`._laplace`)."""
        if self.theta_prior is not None:
            return jnp.zeros(self.ndim, self.dtype)
        th = self.theta(z)
        beyond = (th < self.theta_lo) | (th > self.theta_hi)
        c = (self.emulator.normalizer.std / jnp.asarray(FLAT_THETA_WALL, self.dtype)) ** 2
        return jnp.concatenate([jnp.where(beyond, c, 0.0), jnp.zeros(self.ndim - 3, self.dtype)])

    def __call__(self, z, star: StarArrays):
        """ln p(z | star) up to a star-dependent constant."""
        return self.log_prob_and_physical(z, star)[0]

    def log_prob_and_physical(self, z, star: StarArrays):
        """(ln p(z | star), :meth:`physical`) from one emulator evaluation."""
        parts = self._parts(z)
        r = self._residuals(parts, star)
        lp = -0.5 * jnp.sum(r**2) + self._prior_rest(parts, star)
        return lp, self._physical(parts)

    def chi2(self, z, star: StarArrays):
        """(χ², n_obs): photometric χ² over observed bands (parallax included) at z."""
        _, mu, _, pred, _ = self._parts(z)
        resid = jnp.where(star.mask, star.mag - pred, 0.0)
        c = jnp.sum(resid**2 / star.var)
        plx_model = 10.0 ** ((10.0 - mu) / 5.0)
        c = c + jnp.where(star.plx_mask, ((star.plx - plx_model) / star.plx_err) ** 2, 0.0)
        return c, jnp.sum(star.mask) + star.plx_mask.astype(jnp.int32)


def star_model(posterior: Posterior, star: StarArrays):
    """NumPyro model of one star: sites ``z`` (:attr:`Posterior.ndim`, unconstrained;
    E = |z[4]|, ξ = z[5] for K = 2) and deterministic ``teff``, ``logg``, ``feh``, ``mu``,
    ``dist_pc``, ``ebv`` (and ``xi``): :attr:`Posterior.params`.

    The density is :class:`Posterior` (priors and likelihood in one factor), so the same
    function drives NumPyro's NUTS and the batched engines.
    """
    import numpyro
    import numpyro.distributions as dist

    shape = (posterior.ndim,)
    z = numpyro.sample("z", dist.ImproperUniform(dist.constraints.real_vector, (), shape))
    numpyro.factor("log_post", posterior(z, star))
    phys = posterior.physical(z)
    for i, name in enumerate(posterior.params):
        numpyro.deterministic(name, phys[i])
