"""Bands, photometric systems, units and the magnitude-to-colour matrix B.

Conventions used throughout bayesdsm (Green et al. 2021, ApJ 907, 57, §2-3):

* θ = (Teff [K], log g [dex, cgs], [Fe/H] [dex]).
* Magnitudes are in each band's native system, as the paper's training data were:
  Gaia G/BP/RP and 2MASS JHKs are Vega (as the surveys report them), PS1 grizy AB, and
  unWISE W1/W2 AB. unWISE reports Vega, so readers add :data:`VEGA_TO_AB` (W1 +2.699,
  W2 +3.339 mag). The released model confirms this: for the Sun it predicts
  G - Ks ≈ +1.36 (Vega; AB would be ≈ -0.45) and W1 - G ≈ +1.31 (AB).
* Parallax ϖ in mas; distance modulus μ = 10 - 5 log10(ϖ / mas).
* Reddening E on the SFD / Bayestar19 scale (≈ E(B-V)); A_band = E · R_band.
* The first band of a band list is the *reference* band (G by default). The model
  predicts B·M = (M_ref, M_1 - M_ref, ..., M_{n-1} - M_ref) (Eq. 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bayesdsm.errors import ConfigError

__all__ = [
    "BANDS",
    "PHOTOMETRIC_SYSTEM",
    "VEGA_TO_AB",
    "BAND_SURVEY",
    "b_matrix",
    "b_matrix_inverse",
    "validate_bands",
    "colour_names",
]

#: The 13 bands of Green et al. (2021), in the paper's order. G is the reference.
BANDS: tuple[str, ...] = ("G", "BP", "RP", "g", "r", "i", "z", "y", "J", "H", "Ks", "W1", "W2")

#: Photometric system of each band's magnitudes as bayesdsm stores them.
PHOTOMETRIC_SYSTEM: dict[str, str] = {
    "G": "Vega",
    "BP": "Vega",
    "RP": "Vega",
    "g": "AB",
    "r": "AB",
    "i": "AB",
    "z": "AB",
    "y": "AB",
    "J": "Vega",
    "H": "Vega",
    "Ks": "Vega",
    "W1": "AB",
    "W2": "AB",
}

#: Survey each band comes from.
BAND_SURVEY: dict[str, str] = {
    "G": "gaia",
    "BP": "gaia",
    "RP": "gaia",
    "g": "ps1",
    "r": "ps1",
    "i": "ps1",
    "z": "ps1",
    "y": "ps1",
    "J": "2mass",
    "H": "2mass",
    "Ks": "2mass",
    "W1": "unwise",
    "W2": "unwise",
}

#: Vega-to-AB offsets (mag) added to unWISE Vega magnitudes (paper §3; Jarrett et al. 2011).
VEGA_TO_AB: dict[str, float] = {"W1": 2.699, "W2": 3.339}


def validate_bands(bands: Sequence[str]) -> tuple[str, ...]:
    """Check a band list and return it as a tuple.

    Any subset or superset of :data:`BANDS` is allowed, in any order; the first band
    is the reference band. Names must be unique non-empty strings.

    Raises:
        ConfigError: on an empty list, duplicates or non-string names.
    """
    bands = tuple(bands)
    if len(bands) == 0:
        raise ConfigError("the band list is empty: give at least one band (the reference band)")
    for b in bands:
        if not isinstance(b, str) or not b:
            raise ConfigError(f"band names must be non-empty strings, got {b!r}")
    dup = sorted({b for b in bands if bands.count(b) > 1})
    if dup:
        raise ConfigError(f"band names must be unique; repeated: {dup}")
    return bands


def b_matrix(n_bands: int) -> np.ndarray:
    """The magnitude-to-colour matrix B of Eq. 5, shape (n_bands, n_bands).

    Row 0 is e_0 (the reference magnitude); row i is e_i - e_0 (colour band_i - ref).
    So ``B @ m = (m_0, m_1 - m_0, ..., m_{n-1} - m_0)``.
    """
    if n_bands < 1:
        raise ConfigError("B needs at least one band")
    B = np.eye(n_bands)
    B[1:, 0] = -1.0
    return B


def b_matrix_inverse(n_bands: int) -> np.ndarray:
    """Inverse of :func:`b_matrix`: m = B⁻¹ c, with m_0 = c_0 and m_i = c_i + c_0."""
    Binv = np.eye(n_bands)
    Binv[1:, 0] = 1.0
    return Binv


def colour_names(bands: Sequence[str]) -> list[str]:
    """Names of the components of B·m: ``M_<ref>`` then ``<band>_<ref>`` colours.

    >>> colour_names(["G", "BP", "RP"])
    ['M_G', 'BP_G', 'RP_G']
    """
    ref = bands[0]
    return [f"M_{ref}"] + [f"{b}_{ref}" for b in bands[1:]]
