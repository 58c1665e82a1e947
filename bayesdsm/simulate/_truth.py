"""What the simulated stars truly look like: the :class:`Truth` protocol, MIST
(:class:`StellarModelTruth`) or an emulator (:class:`EmulatorTruth`), and the isochrones."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from bayesdsm.conventions import BANDS, b_matrix_inverse
from bayesdsm.errors import ConfigError
from bayesdsm.mist import SIM_EXTRA_HINT


@runtime_checkable
class Truth(Protocol):
    """A source of noise-free photometry for N stars (plain NumPy arrays).

    ``theta`` is (N, 3) = (Teff [K], log g, [Fe/H]); ``mbol`` (N,) is the bolometric magnitude
    when the population comes from isochrones (NaN otherwise); ``ebv`` (N,) is E (SFD scale).
    """

    bands: tuple[str, ...]

    def absolute_magnitudes(self, theta: np.ndarray, mbol: np.ndarray | None = None) -> np.ndarray:
        """(N, B) absolute magnitudes."""
        ...

    def extinction(self, theta: np.ndarray, ebv: np.ndarray) -> np.ndarray:
        """(N, B) A_band in mag at reddening E, for R(V) = 3.1 (the simulator scales it to
        each star's R(V): :mod:`bayesdsm.simulate._rv`)."""
        ...


class StellarModelTruth:
    """MIST isochrones + MIST bolometric corrections (real stellar models from PyPI)."""

    needs_mbol = True

    def __init__(self, bands=BANDS, *, av_per_ebv: float = 3.1, gaia: str = "EDR3"):
        from bayesdsm.mist import MISTBolometricCorrections

        self.bands = tuple(bands)
        self.av_per_ebv = av_per_ebv
        self.bc = MISTBolometricCorrections(self.bands, gaia=gaia)
        self._iso = None
        self.meta = {**self.bc.meta, "truth": "mist"}

    @property
    def isochrones(self):
        if self._iso is None:
            from bayesdsm.mist import MISTIsochrones

            self._iso = MISTIsochrones()
            self.meta.update(self._iso.meta)
        return self._iso

    def valid(self, theta) -> np.ndarray:
        return self.bc.in_range(theta[:, 0], theta[:, 1], theta[:, 2])

    def absolute_magnitudes(self, theta, mbol=None):
        if mbol is None or not np.all(np.isfinite(mbol)):
            raise ConfigError("StellarModelTruth needs M_bol: use population_source='isochrones'")
        return self.bc.absolute_magnitudes(theta[:, 0], theta[:, 1], theta[:, 2], mbol)

    @property
    def ebv_max(self) -> float:
        """Largest E the tables cover (A_V ≤ 6 mag); beyond it A would be clamped."""
        return float(self.bc.av[-1]) / self.av_per_ebv

    def extinction(self, theta, ebv):
        av = self.av_per_ebv * np.asarray(ebv, np.float64)
        return self.bc.extinction(theta[:, 0], theta[:, 1], theta[:, 2], av)


class EmulatorTruth:
    """Any emulator as the truth: ``emu(theta_one_star) -> (B·M, R)`` vmapped over stars.

    ``B·M`` = (M_ref, colours X − ref) as in :mod:`bayesdsm.conventions`; extinction is
    linear, A = E·R. ``bands`` defaults to ``emulator.bands`` or :data:`BANDS`.
    """

    needs_mbol = False

    def __init__(self, emulator, bands=None):
        import jax

        self.emulator = emulator
        self.bands = tuple(bands or getattr(emulator, "bands", BANDS))
        self._f = jax.jit(jax.vmap(emulator))
        self.meta = {"truth": f"emulator:{type(emulator).__name__}"}

    def _eval(self, theta):
        import jax.numpy as jnp

        bm, r = self._f(jnp.asarray(theta, dtype=jnp.float32))
        return np.asarray(bm, np.float64), np.asarray(r, np.float64)

    def absolute_magnitudes(self, theta, mbol=None):
        bm, _ = self._eval(theta)
        return bm @ b_matrix_inverse(len(self.bands)).T

    def extinction(self, theta, ebv):
        _, r = self._eval(theta)
        return np.asarray(ebv, np.float64)[:, None] * r


# ---------------------------------------------------------------------------- noise models


def system_name(band):
    from bayesdsm.conventions import PHOTOMETRIC_SYSTEM

    return PHOTOMETRIC_SYSTEM[band]


def load_isochrones():
    try:
        from bayesdsm.mist import MISTIsochrones

        return MISTIsochrones()
    except ImportError as exc:
        raise ImportError(
            f"population_source='isochrones' needs the MIST isochrones ({exc}); "
            f"{SIM_EXTRA_HINT}, or use population_source='parametric'"
        ) from exc
