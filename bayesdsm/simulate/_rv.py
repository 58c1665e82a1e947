"""R(V) of the simulated dust: draws per sight line and per star, and each band's
extinction at a star's R(V) as a ratio to R(V) = 3.1 (issue 20).

The truths' extinction tables are R(V) = 3.1 only (MIST's bolometric corrections), so the
dependence on R(V) comes from :mod:`bayesdsm.passband_extinction` (passband × blackbody ×
F99):

    A_band(θ, E, R_V) = A_truth(θ, E) · ratio_band(Teff, E, R_V),
    ratio_band = A_band(Teff, E, R_V) / A_band(Teff, E, 3.1),

with E on the E(B-V) scale throughout (A_V = R_V·E). At E → 0 the ratio is the ratio of
the low-extinction R's, ``band_R(R_V) / band_R(3.1)``. :class:`RVTable` tabulates the
ratio once per band set on (log10 Teff, E, R_V) and interpolates multilinearly; the table
holds ratio − 1, which is exactly 0 on the R_V = 3.1 slice, so a star at R_V = 3.1 gets
ratio 1.0 exactly and the truth's tables are reproduced bit for bit.

R(V) draws use their own random stream (:func:`rv_stream`), so that a survey without
R(V) variation draws exactly the stars it drew before R(V) existed.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

#: The truths' tables' R(V) (MIST's bolometric corrections assume R_V = 3.1).
RV_REF = 3.1
#: R(V) range of the curves: the ``Rv_range`` that ``dust_extinction`` declares for F99
#: (and CCM89, O94). Drawn values are clipped into it.
RV_RANGE = (2.0, 6.0)

#: Grid axes of :class:`RVTable`. log10 Teff: 2500-50000 K (clamped beyond; the ratio
#: flattens towards Rayleigh-Jeans). E: denser at low E where most stars are, to E = 4
#: (the MIST truth stops at E = 6/3.1 = 1.94; clamped beyond). R_V: steps of 0.1 with
#: 3.1 a node. Interpolation error against the direct integral (tests/simulate/test_rv.py):
#: ≤ 8e-5 relative over Teff 3000-20000 K, E ≤ 2, R_V 2.4-4.0; ≤ 1.1e-3 over the grid.
LOG_TEFF_GRID = np.linspace(np.log10(2500.0), np.log10(50000.0), 25)
EBV_GRID = np.array([0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0])
RV_GRID = np.arange(20, 61) / 10.0
_DRV = 0.01  # half-step of the central difference in R_V for ∂ratio/∂R_V


def _interpolator(axes, table):
    """scipy's multilinear interpolation of ``table`` (*grid, B) on ``axes``, inputs
    clamped into the grid: ``f(points)`` with ``points`` a tuple of (N,) → (N, B)."""
    from scipy.interpolate import RegularGridInterpolator

    rgi = RegularGridInterpolator(axes, table, method="linear")

    def f(points):
        x = [np.clip(np.asarray(p, np.float64), ax[0], ax[-1]) for p, ax in zip(points, axes)]
        return rgi(np.stack(x, axis=-1))

    return f


class RVTable:
    """ratio_band(Teff, E, R_V) and its R_V slope at E → 0, tabulated for ``bands``.

    Attributes:
        bands: the bands (names :mod:`bayesdsm.passband_extinction` knows).
        delta: (n_T, n_E, n_RV, B) ratio − 1 on the grid (0 on the R_V = 3.1 slice).
        slope: (n_T, n_RV, B) ∂ratio/∂R_V at E → 0, by central differences of ``band_R``.
    """

    def __init__(self, bands, *, law: str = "F99"):
        from bayesdsm.passband_extinction import band_extinction_grid, band_R_grid

        self.bands, self.law = tuple(bands), law
        teff, ebv = 10**LOG_TEFF_GRID, EBV_GRID[1:]
        i_ref = int(np.flatnonzero(RV_GRID == RV_REF)[0])
        self.delta = np.zeros((len(teff), len(EBV_GRID), len(RV_GRID), len(self.bands)))
        self.slope = np.zeros((len(teff), len(RV_GRID), len(self.bands)))
        for b, band in enumerate(self.bands):
            r = band_R_grid(teff, band, law=law, r_v=RV_GRID)  # (n_T, n_RV)
            a = band_extinction_grid(teff, ebv, band, law=law, r_v=RV_GRID)  # (n_T, n_E, n_RV)
            self.delta[:, 0, :, b] = r / r[:, i_ref, None] - 1.0
            self.delta[:, 1:, :, b] = a / a[:, :, i_ref, None] - 1.0
            up, lo = (band_R_grid(teff, band, law=law, r_v=RV_GRID + s * _DRV) for s in (1, -1))
            self.slope[:, :, b] = (up - lo) / (2 * _DRV) / r[:, i_ref, None]
        self.delta[:, :, i_ref] = 0.0  # x / x - 1 is 0 already; stated, not relied on
        self.delta.flags.writeable = self.slope.flags.writeable = False
        self._ratio = _interpolator((LOG_TEFF_GRID, EBV_GRID, RV_GRID), self.delta)
        self._slope = _interpolator((LOG_TEFF_GRID, RV_GRID), self.slope)

    def ratio(self, teff, ebv, rv) -> np.ndarray:
        """(N, B) A_band at R_V over A_band at 3.1, for (N,) Teff [K], E and R_V."""
        return 1.0 + self._ratio((np.log10(teff), ebv, rv))

    def dratio_drv(self, teff, rv) -> np.ndarray:
        """(N, B) ∂ratio/∂R_V at E → 0, for (N,) Teff [K] and R_V."""
        return self._slope((np.log10(teff), rv))

    @property
    def meta(self) -> dict:
        """Provenance of the table (for the catalog's meta)."""
        return {
            "curve": f"{self.law} (package 'extinction') x passband x blackbody, "
            "bayesdsm.passband_extinction; A = A_truth(R_V=3.1) x ratio(Teff, E, R_V)",
            "interpolation": "multilinear in (log10 Teff, E, R_V), clamped to the grid",
            "teff_grid": [2500.0, 50000.0, len(LOG_TEFF_GRID)],
            "ebv_grid": EBV_GRID.tolist(),
            "rv_grid": [float(RV_GRID[0]), float(RV_GRID[-1]), len(RV_GRID)],
            "rv_ref": RV_REF,
        }


@lru_cache(maxsize=4)
def rv_table(bands: tuple[str, ...], law: str = "F99") -> RVTable:
    """The (read-only) :class:`RVTable` of ``bands``, built once per process (~1 s)."""
    return RVTable(bands, law=law)


def rv_stream(seed: int) -> np.random.Generator:
    """The random stream of the R(V) draws: a child of the survey's seed, independent of
    the main stream (which then draws the same stars with or without R(V) variation)."""
    return np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])


def draw_field_rv(rng, n_fields: int, cfg) -> np.ndarray:
    """(n_fields,) R(V) of each sight line: N(rv_mean, rv_sigma), clipped to RV_RANGE."""
    return np.clip(cfg.rv_mean + cfg.rv_sigma * rng.normal(size=n_fields), *RV_RANGE)


def draw_star_rv(rng, field_rv, cfg) -> np.ndarray:
    """(N,) R(V) of each star: its sight line's value + N(0, rv_star_sigma), clipped."""
    field_rv = np.asarray(field_rv, np.float64)
    return np.clip(field_rv + cfg.rv_star_sigma * rng.normal(size=len(field_rv)), *RV_RANGE)
