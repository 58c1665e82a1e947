"""The emulator of Green et al. (2021): θ ↦ (B·M(θ), R(θ)) as Equinox modules.

* :class:`ThetaNormalizer` maps θ = (Teff [K], log g, [Fe/H]) to θ_n = (θ - median) / std.
* :class:`StellarMLP` maps θ_n to B·M = (M_ref, colours X - ref) (Eq. 5): hidden layers of
  configurable width and activation (default 2×32 sigmoid, as released), linear output.
* :class:`ExtinctionLayer` gives R(θ) = exp(W θ_n + b) > 0 (A_band = E · R_band).
* With ``n_components=2`` (the paper's Eq. 20 with K = 2), a second, linear layer gives
  the relative variation ρ(θ) = W₁ θ_n + b₁ (any sign) and R₁(θ) = R(θ) ρ(θ), and
  A = E (R(θ) + ξ R₁(θ)) with a per-star ξ of prior N(0, 1): R is the population's mean
  curve and R₁ its spread per unit σ of ξ. Relative, because extinction curves vary by a
  fraction of A in every band; an absolute R₁ let the data's weak constraint in the
  infrared bands (small R) fill R₁ with infrared terms (BENCHMARKS.md, issue 20).
* :class:`Emulator` bundles them; ``emu(theta) -> (BM, R)`` is for ONE star. Batches go
  through :func:`batched`, the one place where the emulator is vmapped.

All functions take plain arrays in the units of :mod:`bayesdsm.conventions` and follow the
dtype of their inputs and weights (float32 or float64).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.conventions import b_matrix_inverse, colour_names, validate_bands
from bayesdsm.errors import ConfigError, ValidityWarning

__all__ = [
    "EmulatorConfig",
    "ThetaNormalizer",
    "Linear",
    "StellarMLP",
    "ExtinctionLayer",
    "Emulator",
    "init_emulator",
    "batched",
    "absolute_magnitudes",
    "predict_magnitudes",
    "predict_colours",
    "check_theta_range",
    "extinction_variation",
    "extinction_vector",
    "reddening",
    "emulator_arrays",
    "emulator_from_arrays",
]

_ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "silu": jax.nn.silu,
}


@dataclass(frozen=True)
class EmulatorConfig:
    """Architecture of the emulator.

    Attributes:
        bands: band names; the first is the reference band (G in the paper).
        hidden: widths of the stellar network's hidden layers (released: (32, 32)).
        activation: hidden-layer activation, one of sigmoid, tanh, relu, gelu, softplus, silu.
        n_components: K, the extinction vectors: 1 (R(θ), the paper's model) or 2
            (R(θ) and the variation R₁(θ) = R(θ) ρ(θ), with a per-star ξ ~ N(0, 1)).
    """

    bands: tuple[str, ...] = ("G", "BP", "RP", "g", "r", "i", "z", "y", "J", "H", "Ks", "W1", "W2")
    hidden: tuple[int, ...] = (32, 32)
    activation: str = "sigmoid"
    n_components: int = 1

    def __post_init__(self):
        object.__setattr__(self, "bands", validate_bands(self.bands))
        if self.n_components not in (1, 2):
            raise ConfigError(
                f"n_components (K, extinction vectors) must be 1 or 2, got {self.n_components!r}"
            )
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.activation not in _ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {self.activation!r}; choose one of {sorted(_ACTIVATIONS)}"
            )
        if any(h < 1 for h in self.hidden):
            raise ConfigError(f"hidden widths must be positive, got {self.hidden}")


class ThetaNormalizer(eqx.Module):
    """θ_n = (θ - median) / std, per component. ``median`` and ``std`` have shape (3,)."""

    median: jax.Array
    std: jax.Array

    def __call__(self, theta):
        return (theta - self.median) / self.std

    def inverse(self, theta_n):
        return theta_n * self.std + self.median


class Linear(eqx.Module):
    """y = W x + b with W of shape (out, in) and b of shape (out,)."""

    weight: jax.Array
    bias: jax.Array

    def __call__(self, x):
        return self.weight @ x + self.bias


class StellarMLP(eqx.Module):
    """θ_n (3,) ↦ B·M (n_bands,): hidden layers with ``activation``, then a linear layer."""

    layers: tuple[Linear, ...]
    activation: str = eqx.field(static=True)

    def __call__(self, theta_n):
        act = _ACTIVATIONS[self.activation]
        x = theta_n
        for layer in self.layers[:-1]:
            x = act(layer(x))
        return self.layers[-1](x)


class ExtinctionLayer(eqx.Module):
    """R(θ) = exp(W θ_n + b), shape (n_bands,); W is (n_bands, 3).

    ``curvature`` c (n_bands,) is the second-order term of the extinction in the form of
    Appendix B, A = A₁ + c A₁² with A₁ = E R(θ) (beyond the paper, whose A is linear in
    E; zero unless fitted, see :func:`reddening`). A wide band's A grows slower than
    linearly: c ≈ -0.04 per mag in Gaia G, smaller for narrower bands.
    """

    weight: jax.Array
    bias: jax.Array
    curvature: jax.Array

    def __call__(self, theta_n):
        return jnp.exp(self.weight @ theta_n + self.bias)


class Emulator(eqx.Module):
    """The full emulator. ``emu(theta)`` returns ``(BM, R)`` for one star.

    Attributes:
        normalizer: θ normaliser.
        stellar: the stellar network, θ_n ↦ B·M.
        extinction: the extinction layer, θ_n ↦ R.
        bands: band names (static); the first is the reference band.
        variation: the second extinction component's linear layer, θ_n ↦ ρ with
            R₁ = R ρ (K = 2), or None (K = 1); see :func:`extinction_variation`.
    """

    normalizer: ThetaNormalizer
    stellar: StellarMLP
    extinction: ExtinctionLayer
    bands: tuple[str, ...] = eqx.field(static=True)
    variation: Linear | None = None

    def __call__(self, theta):
        theta_n = self.normalizer(theta)
        return self.stellar(theta_n), self.extinction(theta_n)

    @property
    def n_bands(self) -> int:
        return len(self.bands)

    @property
    def n_components(self) -> int:
        """K, the number of extinction vectors (1 or 2)."""
        return 1 if self.variation is None else 2

    @property
    def hidden(self) -> tuple[int, ...]:
        return tuple(int(layer.bias.shape[0]) for layer in self.stellar.layers[:-1])

    @property
    def config(self) -> EmulatorConfig:
        return EmulatorConfig(
            bands=self.bands,
            hidden=self.hidden,
            activation=self.stellar.activation,
            n_components=self.n_components,
        )

    @property
    def component_names(self) -> list[str]:
        """Names of the B·M components: ``M_G, BP_G, ...``."""
        return colour_names(self.bands)

    def absolute_magnitudes(self, theta):
        """M(θ) (n_bands,) for one star: B⁻¹ (B·M)."""
        return absolute_magnitudes(self, theta)

    def astype(self, dtype) -> Emulator:
        """A copy with every array leaf cast to ``dtype`` (e.g. jnp.float64)."""
        return jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), self)


def init_emulator(
    key,
    config: EmulatorConfig = EmulatorConfig(),
    *,
    theta_median: Sequence[float] = (5372.0, 4.07, -0.246),
    theta_std: Sequence[float] = (903.0, 0.889, 0.374),
    dtype=jnp.float32,
) -> Emulator:
    """A freshly initialised emulator (Glorot-uniform kernels, zero biases, as Keras).

    The extinction layer starts at W = 0 and b = log(R₀) with a smooth, positive R₀ that
    falls with wavelength, so that training starts from a plausible reddening vector.
    With K = 2 the relative variation ρ starts at W₁ = 0 and b₁ = 0.01 · (a zero-mean
    linear ramp over the bands): small, but not zero, since R₁ = 0 is a stationary point
    of the ξ-marginal likelihood (:func:`bayesdsm.likelihood.chi2_profiled`).
    Defaults of the normaliser are the released model's (``green2020_theta_normalization``).
    """
    n_out = len(config.bands)
    widths = (3, *config.hidden, n_out)
    keys = jax.random.split(key, len(widths))
    layers = []
    for k, (n_in, n_o) in zip(keys[:-1], zip(widths[:-1], widths[1:])):
        lim = np.sqrt(6.0 / (n_in + n_o))
        w = jax.random.uniform(k, (n_o, n_in), dtype, -lim, lim)
        layers.append(Linear(w, jnp.zeros(n_o, dtype)))
    r0 = jnp.linspace(3.0, 0.2, n_out, dtype=dtype)
    variation = None
    if config.n_components == 2:
        ramp = 0.01 * jnp.linspace(-1.0, 1.0, n_out, dtype=dtype)
        variation = Linear(jnp.zeros((n_out, 3), dtype), ramp)
    return Emulator(
        normalizer=ThetaNormalizer(jnp.asarray(theta_median, dtype), jnp.asarray(theta_std, dtype)),
        stellar=StellarMLP(tuple(layers), config.activation),
        extinction=ExtinctionLayer(
            jnp.zeros((n_out, 3), dtype), jnp.log(r0), jnp.zeros(n_out, dtype)
        ),
        bands=config.bands,
        variation=variation,
    )


def absolute_magnitudes(emu: Emulator, theta):
    """M(θ) for one star, shape (n_bands,): M_ref = (B·M)_0, M_i = (B·M)_i + (B·M)_0."""
    bm, _ = emu(theta)
    return jnp.asarray(b_matrix_inverse(emu.n_bands), bm.dtype) @ bm


def extinction_variation(emu: Emulator, theta, R=None):
    """R₁(θ) = R(θ) ρ(θ) (n_bands,) for one star: the second extinction component
    (K = 2), ρ = W₁ θ_n + b₁ its relative size per band; ``R`` = R(θ) if already computed.

    Raises:
        ConfigError: the emulator has one component (K = 1).
    """
    if emu.variation is None:
        raise ConfigError("this emulator has one extinction component (K = 1): no R₁")
    theta_n = emu.normalizer(theta)
    return (emu.extinction(theta_n) if R is None else R) * emu.variation(theta_n)


def reddening(emu: Emulator, R, ebv):
    """(A, ∂A/∂E) (n_bands,) at reddening E for R = R(θ): A = E R + c (E R)².

    c = ``emu.extinction.curvature`` (zero for the paper's linear extinction), so
    ∂A/∂E = R (1 + 2 c E R) is the reddening vector at E; at E = 0 it is R. For K = 2
    pass R = R₀ + ξ R₁ (:func:`extinction_vector`).
    """
    c = emu.extinction.curvature
    a1 = ebv * R
    return a1 + c * a1**2, R * (1.0 + 2.0 * c * a1)


def extinction_vector(emu: Emulator, theta, xi):
    """R₀(θ) + ξ R₁(θ) (n_bands,) for one star: the star's extinction vector (K = 2)."""
    R = emu(theta)[1]
    return R + xi * extinction_variation(emu, theta, R)


def predict_magnitudes(emu: Emulator, theta, ebv):
    """M(θ) + A(E, θ) (n_bands,) for one star: absolute magnitudes reddened by E."""
    bm, r = emu(theta)
    return jnp.asarray(b_matrix_inverse(emu.n_bands), bm.dtype) @ bm + reddening(emu, r, ebv)[0]


def predict_colours(emu: Emulator, theta, ebv):
    """B(M + A) (n_bands,) for one star: (M_ref + A_ref, reddened colours)."""
    bm, r = emu(theta)
    a = reddening(emu, r, ebv)[0]
    return bm + a - a[0] * (jnp.arange(r.shape[0]) > 0)


def batched(fn):
    """vmap a one-star function ``fn(emu, theta, *args)`` over stars; ``emu`` is shared.

    This is the single place where the emulator is vectorised over stars.
    """

    def vectorised(emu, *args):
        return jax.vmap(lambda *a: fn(emu, *a))(*args)

    return vectorised


def check_theta_range(emu: Emulator, theta, n_sigma: float = 4.0) -> np.ndarray:
    """Warn (:class:`ValidityWarning`) when θ lies far outside the normaliser's range.

    Returns the (N,) bool array of stars more than ``n_sigma`` standard deviations from
    the training median in any component. They are still evaluated; the validity
    density is the finer check.
    """
    theta = np.atleast_2d(np.asarray(theta, dtype=np.float64))
    z = np.abs((theta - np.asarray(emu.normalizer.median)) / np.asarray(emu.normalizer.std))
    outside = np.any(z > n_sigma, axis=1)
    if outside.any():
        warnings.warn(
            f"{int(outside.sum())} of {len(theta)} stars have θ more than {n_sigma} standard "
            "deviations from the training median; they are evaluated anyway, but check "
            "the validity density before trusting them",
            ValidityWarning,
            stacklevel=2,
        )
    return outside


def emulator_arrays(emu: Emulator) -> dict[str, jax.Array]:
    """The emulator's arrays by stable names (model files, NumPyro sample sites).

    Names: ``theta_median``, ``theta_std``, ``hidden_<i>_kernel``/``_bias`` for the
    hidden layers, ``output_kernel``/``_bias`` (the B·M layer), ``R_kernel``/``R_bias``,
    ``R_curvature``, and with K = 2 ``R1_kernel``/``R1_bias`` (of ρ, R₁ = R ρ). Kernels are
    (out, in).
    """
    out = {"theta_median": emu.normalizer.median, "theta_std": emu.normalizer.std}
    *hidden, last = emu.stellar.layers
    for i, layer in enumerate(hidden):
        out[f"hidden_{i}_kernel"] = layer.weight
        out[f"hidden_{i}_bias"] = layer.bias
    out["output_kernel"] = last.weight
    out["output_bias"] = last.bias
    out["R_kernel"] = emu.extinction.weight
    out["R_bias"] = emu.extinction.bias
    out["R_curvature"] = emu.extinction.curvature
    if emu.variation is not None:
        out["R1_kernel"] = emu.variation.weight
        out["R1_bias"] = emu.variation.bias
    return out


def emulator_from_arrays(config: EmulatorConfig, arrays, dtype=None) -> Emulator:
    """Inverse of :func:`emulator_arrays`; checks every array's shape against ``config``.

    ``R_curvature`` may be absent (models with linear extinction, e.g. the released Green
    2020 model and files written before it existed): it is then zero. ``R1_kernel`` and
    ``R1_bias`` must be present exactly when ``config.n_components`` is 2.
    """
    n_out = len(config.bands)
    if "R_curvature" not in arrays:
        arrays = {**arrays, "R_curvature": np.zeros(n_out, np.asarray(arrays["R_bias"]).dtype)}
    widths = (3, *config.hidden, n_out)
    expected = {"theta_median": (3,), "theta_std": (3,)}
    for i, (n_in, n_o) in enumerate(zip(widths[:-2], widths[1:-1])):
        expected[f"hidden_{i}_kernel"] = (n_o, n_in)
        expected[f"hidden_{i}_bias"] = (n_o,)
    expected["output_kernel"] = (n_out, widths[-2])
    expected["output_bias"] = (n_out,)
    expected["R_kernel"] = (n_out, 3)
    expected["R_bias"] = (n_out,)
    expected["R_curvature"] = (n_out,)
    if config.n_components == 2:
        expected["R1_kernel"] = (n_out, 3)
        expected["R1_bias"] = (n_out,)
    elif "R1_kernel" in arrays or "R1_bias" in arrays:
        raise ConfigError(
            "emulator arrays hold a second extinction component (R1_*) but the "
            "configuration says n_components=1"
        )
    for name, shape in expected.items():
        if name not in arrays:
            raise ConfigError(f"emulator array {name!r} is missing")
        if tuple(np.shape(arrays[name])) != shape:
            raise ConfigError(
                f"emulator array {name!r} has shape {tuple(np.shape(arrays[name]))}, "
                f"expected {shape} for bands={len(config.bands)} and hidden={config.hidden}"
            )

    def a(name):
        return jnp.asarray(arrays[name], dtype)

    layers = [
        Linear(a(f"hidden_{i}_kernel"), a(f"hidden_{i}_bias")) for i in range(len(config.hidden))
    ]
    layers.append(Linear(a("output_kernel"), a("output_bias")))
    variation = Linear(a("R1_kernel"), a("R1_bias")) if config.n_components == 2 else None
    return Emulator(
        normalizer=ThetaNormalizer(a("theta_median"), a("theta_std")),
        stellar=StellarMLP(tuple(layers), config.activation),
        extinction=ExtinctionLayer(a("R_kernel"), a("R_bias"), a("R_curvature")),
        bands=config.bands,
        variation=variation,
    )
