"""Real stellar models installed from PyPI: MIST isochrones and MIST bolometric corrections.

This module reads two data files shipped inside PyPI packages (the ``bayesdsm[sim]``
extra). Neither package is imported: the files are located through the installed
distributions' metadata, and read with h5py.

* **Isochrones** -- ``lachesis_grids/grids/mist_v2.5_vvcrit0.4.h5`` from ``lachesis-grids``
  (MIST v2.5, v/vcrit = 0.4; 15 initial [Fe/H] x 107 log10(age/yr) nodes, columns per EEP).
  The package declares no licence: it is an install-time dependency, never vendored.
* **Bolometric corrections** -- ``lachesis/Datafiles/BC_tables/bc_tables.h5`` from
  ``astrolachesis`` (MIT). Its own dependencies are heavy (numba, dynesty, dustmaps, ...)
  and not needed here: install it with ``pip install --no-deps astrolachesis``.
  The tables give BC(Teff, log g, [Fe/H], A_V) at R_V = 3.1 on a regular grid
  (70 Teff x 26 log g x 18 [Fe/H] x 13 A_V).

Photometric systems: MIST BCs are Vega for Gaia, 2MASS and WISE and AB for Pan-STARRS1
(MIST documentation; checked here against solar absolute magnitudes, Willmer 2018). Magnitudes
are converted to :data:`bayesdsm.conventions.PHOTOMETRIC_SYSTEM` with :data:`VEGA_TO_AB`
(W1/W2 from conventions, Jarrett et al. 2011; 2MASS from Blanton & Roweis 2007, Table 1).

Absolute magnitudes: ``M_band = M_bol - BC_band(Teff, logg, feh, A_V=0)``. Extinction:
``A_band(A_V) = BC_band(A_V=0) - BC_band(A_V)`` (nonlinear and Teff-dependent).

Filled values: where model atmospheres are missing, the MIST tables repeat the values of the
nearest computed grid point. :attr:`MISTBolometricCorrections.filled` marks those cells
(runs of identical BC vectors along log g, and cells identical to a [Fe/H] neighbour);
:meth:`MISTBolometricCorrections.in_filled_region` flags any star whose interpolation touches
one, and the simulator keeps its truth out of them.
"""

from __future__ import annotations

import importlib.metadata
from functools import cached_property
from pathlib import Path

import numpy as np

from bayesdsm.conventions import PHOTOMETRIC_SYSTEM
from bayesdsm.conventions import VEGA_TO_AB as _CONV_VEGA_TO_AB
from bayesdsm.errors import ConfigError

__all__ = [
    "SIM_EXTRA_HINT",
    "MIST_SYSTEM",
    "VEGA_TO_AB",
    "find_package_file",
    "bc_table_path",
    "mist_isochrone_path",
    "MISTBolometricCorrections",
    "MISTIsochrones",
    "system_offset",
]

SIM_EXTRA_HINT = (
    "install the simulation extra: pip install 'bayesdsm[sim]' && "
    "pip install --no-deps astrolachesis"
)

#: Vega-to-AB offsets (mag), added to a Vega magnitude to get AB. W1/W2 follow
#: bayesdsm.conventions (Jarrett et al. 2011); 2MASS J/H/Ks are Blanton & Roweis (2007, AJ 133,
#: 734, Table 1).
VEGA_TO_AB: dict[str, float] = {"J": 0.91, "H": 1.39, "Ks": 1.85, **_CONV_VEGA_TO_AB}

#: (BC-table group, column name, MIST photometric system) of each bayesdsm band. Gaia bands
#: use the EDR3 (= DR3) passbands by default (see :class:`MISTBolometricCorrections`).
_MIST_COLUMNS: dict[str, tuple[str, str, str]] = {
    "G": ("UBVRIplus", "Gaia_G_{gaia}", "Vega"),
    "BP": ("UBVRIplus", "Gaia_BP_{gaia}", "Vega"),
    "RP": ("UBVRIplus", "Gaia_RP_{gaia}", "Vega"),
    "g": ("PanSTARRS", "PS_g", "AB"),
    "r": ("PanSTARRS", "PS_r", "AB"),
    "i": ("PanSTARRS", "PS_i", "AB"),
    "z": ("PanSTARRS", "PS_z", "AB"),
    "y": ("PanSTARRS", "PS_y", "AB"),
    "J": ("UBVRIplus", "2MASS_J", "Vega"),
    "H": ("UBVRIplus", "2MASS_H", "Vega"),
    "Ks": ("UBVRIplus", "2MASS_Ks", "Vega"),
    "W1": ("WISE", "WISE_W1", "Vega"),
    "W2": ("WISE", "WISE_W2", "Vega"),
}
MIST_SYSTEM: dict[str, str] = {b: v[2] for b, v in _MIST_COLUMNS.items()}

_BC_FILE = ("astrolachesis", "lachesis/Datafiles/BC_tables/bc_tables.h5")
_ISO_FILE = ("lachesis-grids", "lachesis_grids/grids/mist_v2.5_vvcrit0.4.h5")

#: MIST evolutionary phases kept as stars: MS, RGB, core-He burning, early AGB.
_KEPT_PHASES = (0.0, 2.0, 3.0, 4.0)


def system_offset(band: str, native: str) -> float:
    """Magnitude offset to add to a ``native``-system magnitude to reach bayesdsm's system."""
    target = PHOTOMETRIC_SYSTEM[band]
    if native == target:
        return 0.0
    if band not in VEGA_TO_AB:
        raise ConfigError(f"no Vega/AB offset known for band {band!r} ({native} -> {target})")
    return VEGA_TO_AB[band] if target == "AB" else -VEGA_TO_AB[band]


def find_package_file(dist: str, relpath: str) -> Path:
    """Path of a data file inside an installed distribution, without importing it.

    Raises:
        ImportError: if the distribution or the file is missing (names the extra to install).
    """
    try:
        d = importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError as exc:
        raise ImportError(f"the data package {dist!r} is not installed: {SIM_EXTRA_HINT}") from exc
    for f in d.files or ():
        if str(f).replace("\\", "/") == relpath:
            return Path(d.locate_file(f)).resolve()
    p = Path(d.locate_file(relpath))
    if p.is_file():
        return p.resolve()
    raise ImportError(f"{dist!r} is installed but has no file {relpath!r}: {SIM_EXTRA_HINT}")


def bc_table_path() -> Path:
    """The MIST bolometric-correction tables shipped by ``astrolachesis``."""
    return find_package_file(*_BC_FILE)


def mist_isochrone_path() -> Path:
    """The MIST v2.5 isochrone grid shipped by ``lachesis-grids``."""
    return find_package_file(*_ISO_FILE)


def _dist_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _plateau_mask(v: np.ndarray, axis: int) -> np.ndarray:
    """Cells repeated along ``axis`` (identical BC vectors), except each run's inner end.

    ``v`` has the band axis last. A run touching the low edge keeps its last cell, one touching
    the high edge keeps its first, an interior run keeps its first.
    """
    v = np.moveaxis(v, axis, -2)
    eq = np.all(v[..., 1:, :] == v[..., :-1, :], axis=-1)  # (..., n-1)
    n = v.shape[-2]
    filled = np.zeros(v.shape[:-1], bool)
    it = np.ndindex(eq.shape[:-1])
    for idx in it:
        e = eq[idx]
        k = 0
        while k < n - 1:
            if not e[k]:
                k += 1
                continue
            j = k
            while j < n - 1 and e[j]:
                j += 1
            run = np.arange(k, j + 1)  # cells k..j identical
            keep = run[-1] if k == 0 else run[0]
            filled[idx + (run[run != keep],)] = True
            k = j + 1
    return np.moveaxis(filled, -1, axis)


class MISTBolometricCorrections:
    """MIST bolometric corrections for bayesdsm's bands, interpolated linearly.

    Args:
        bands: band names (keys of :data:`MIST_SYSTEM`); default all 13.
        gaia: Gaia passband set in the tables: ``"EDR3"`` (= DR3, default), ``"DR2Rev"``.
        path: the ``bc_tables.h5`` file; default from the installed ``astrolachesis``.

    Valid ranges (grid): Teff 2500-1e6 K, log g -4..9.5, [Fe/H] -4..0.75, A_V 0-6 mag.
    """

    def __init__(self, bands=None, *, gaia: str = "EDR3", path=None):
        import h5py

        from bayesdsm.conventions import BANDS

        self.bands = tuple(BANDS if bands is None else bands)
        unknown = [b for b in self.bands if b not in _MIST_COLUMNS]
        if unknown:
            raise ConfigError(f"no MIST bolometric corrections for bands {unknown}")
        self.path = Path(path) if path is not None else bc_table_path()
        cols = []
        with h5py.File(self.path, "r") as h:
            cache = {}
            for b in self.bands:
                group, name, _ = _MIST_COLUMNS[b]
                name = name.format(gaia=gaia)
                if group not in cache:
                    names = [x.decode() for x in h[f"{group}/band_names"][:]]
                    cache[group] = (names, h[f"{group}/data"][:])
                names, data = cache[group]
                if name not in names:
                    raise ConfigError(f"column {name!r} not in MIST group {group} ({names})")
                cols.append(data[..., 5 + names.index(name)])
            feh = h["UBVRIplus/feh_values"][:].astype(np.float64)
            first = cache[_MIST_COLUMNS[self.bands[0]][0]][1]
        n_feh = len(feh)
        # Row order inside each [Fe/H] slab: A_V slowest, then Teff, then log g.
        axes = first[0, :, :4].astype(np.float64)
        self.teff = np.unique(axes[:, 0])
        self.logg = np.unique(axes[:, 1])
        self.av = np.unique(axes[:, 3])
        self.feh = feh
        shape = (n_feh, len(self.av), len(self.teff), len(self.logg))
        expect = np.stack(np.meshgrid(self.av, self.teff, self.logg, indexing="ij"), -1)
        if not np.array_equal(axes[:, [3, 0, 1]], expect.reshape(-1, 3)):
            raise ConfigError(f"unexpected row order in {self.path}")
        bc = np.stack(cols, -1).astype(np.float64).reshape(*shape, len(self.bands))
        self.table = bc  # (feh, av, teff, logg, band)
        self.offsets = np.array([system_offset(b, MIST_SYSTEM[b]) for b in self.bands])
        self.gaia = gaia
        self.meta = {
            "bc_file": _BC_FILE[1],
            "bc_package": f"astrolachesis=={_dist_version('astrolachesis')}",
            "gaia_passbands": gaia,
            "rv": 3.1,
        }

    @cached_property
    def filled(self) -> np.ndarray:
        """(feh, teff, logg) bool: cells holding MIST's filled-in (not computed) values."""
        v = self.table[:, 0]  # A_V = 0, (feh, teff, logg, band)
        f = _plateau_mask(v, axis=2)
        same_feh = np.all(v[1:] == v[:-1], axis=-1)
        f[1:] |= same_feh
        f[:-1] |= same_feh
        return f

    def _locate(self, x, grid):
        x = np.asarray(x, np.float64)
        i = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2)
        w = np.clip((x - grid[i]) / (grid[i + 1] - grid[i]), 0.0, 1.0)
        return i, w

    def in_range(self, teff, logg, feh) -> np.ndarray:
        """(N,) bool: inside the grid box and away from filled-in cells."""
        teff, logg, feh = (np.asarray(a, np.float64) for a in (teff, logg, feh))
        box = (
            (teff >= self.teff[0])
            & (teff <= self.teff[-1])
            & (logg >= self.logg[0])
            & (logg <= self.logg[-1])
            & (feh >= self.feh[0])
            & (feh <= self.feh[-1])
        )
        return box & ~self.in_filled_region(teff, logg, feh)

    def in_filled_region(self, teff, logg, feh) -> np.ndarray:
        """(N,) bool: True where any interpolation corner with weight > 0 is a filled cell."""
        (it, wt), (ig, wg), (jf, wf) = (
            self._locate(teff, self.teff),
            self._locate(logg, self.logg),
            self._locate(feh, self.feh),
        )
        out = np.zeros(np.shape(it), bool)
        for df, fw in ((0, 1 - wf), (1, wf)):
            for dt, tw in ((0, 1 - wt), (1, wt)):
                for dg, gw in ((0, 1 - wg), (1, wg)):
                    out |= (fw * tw * gw > 0) & self.filled[jf + df, it + dt, ig + dg]
        return out

    def bc(self, teff, logg, feh, av=0.0) -> np.ndarray:
        """(N, B) bolometric corrections in MIST's native systems, multilinear interpolation."""
        teff, logg, feh = (np.atleast_1d(np.asarray(a, np.float64)) for a in (teff, logg, feh))
        av = np.broadcast_to(np.asarray(av, np.float64), teff.shape)
        idx = [
            self._locate(feh, self.feh),
            self._locate(av, self.av),
            self._locate(teff, self.teff),
            self._locate(logg, self.logg),
        ]
        out = np.zeros(teff.shape + (len(self.bands),))
        for corner in np.ndindex(2, 2, 2, 2):
            w = np.ones(teff.shape)
            ii = []
            for (i, wi), c in zip(idx, corner):
                w = w * (wi if c else 1.0 - wi)
                ii.append(i + c)
            out += w[:, None] * self.table[ii[0], ii[1], ii[2], ii[3]]
        return out

    def absolute_magnitudes(self, teff, logg, feh, mbol) -> np.ndarray:
        """(N, B) absolute magnitudes in bayesdsm's systems: M_bol - BC(A_V=0) + offset."""
        mbol = np.atleast_1d(np.asarray(mbol, np.float64))
        return mbol[:, None] - self.bc(teff, logg, feh, 0.0) + self.offsets

    def extinction(self, teff, logg, feh, av) -> np.ndarray:
        """(N, B) A_band = BC(A_V=0) - BC(A_V), the true nonlinear extinction (mag)."""
        return self.bc(teff, logg, feh, 0.0) - self.bc(teff, logg, feh, av)


class MISTIsochrones:
    """MIST v2.5 isochrones (``lachesis-grids``), interpolated in ([Fe/H], log age) at fixed EEP.

    Columns kept per EEP: initial mass [Msun], Teff [K], log g [dex], M_bol [mag], phase.
    Only MS, RGB, core-He-burning and early-AGB points (MIST phases 0, 2, 3, 4) are kept.
    """

    COLUMNS = ("initial_mass", "Teff", "log_g", "Mbol", "phase")

    def __init__(self, path=None):
        import h5py

        self.path = Path(path) if path is not None else mist_isochrone_path()
        with h5py.File(self.path, "r") as h:
            attrs_cols = [str(c) for c in h.attrs["columns"]]
            shape = tuple(int(s) for s in h.attrs["shape"])
            if str(h.attrs.get("storage", "")) != "sparse_v1":
                raise ConfigError(f"unsupported isochrone storage in {self.path}")
            values = h["values"][:]
            offsets = h["offsets"][:]
            lengths = h["lengths"][:]
            self.feh = h["feh_values"][:].astype(np.float64)
            self.log_age = h["age_values"][:].astype(np.float64)
        sel = [attrs_cols.index(c) for c in self.COLUMNS]
        n_slice, n_eep = shape[0] * shape[1], shape[2]
        dense = np.full((n_slice, n_eep, len(sel)), np.nan)
        pos = 0
        for i in range(n_slice):  # sparse_v1: each slice's rows start at EEP index offsets[i]
            n = int(lengths[i])
            dense[i, offsets[i] : offsets[i] + n] = values[pos : pos + n][:, sel]
            pos += n
        dense = dense.reshape(shape[0], shape[1], n_eep, len(sel))
        keep = np.isin(dense[..., 4], _KEPT_PHASES)
        dense[~keep] = np.nan
        self.grid = dense  # (feh, age, eep, col)
        self.meta = {
            "isochrone_file": _ISO_FILE[1],
            "isochrone_package": f"lachesis-grids=={_dist_version('lachesis-grids')}",
        }

    def node(self, i_feh: int, i_age: int) -> dict[str, np.ndarray]:
        """The raw grid isochrone at node (i_feh, i_age), valid EEPs only."""
        g = self.grid[i_feh, i_age]
        ok = np.all(np.isfinite(g), axis=-1)
        return {c: g[ok, k] for k, c in enumerate(self.COLUMNS)}

    def interpolate(self, feh: float, log_age: float) -> dict[str, np.ndarray]:
        """The isochrone at (feh, log_age): bilinear in the node values at common EEPs.

        Returns a dict of 1-D arrays over the EEPs valid at all four corners, with the keys
        of :attr:`COLUMNS` plus ``eep``. Teff is interpolated in log10.
        """
        i, wf = _bracket(self.feh, feh)
        j, wa = _bracket(self.log_age, log_age)
        g = self.grid[i : i + 2, j : j + 2].copy()
        g[..., 1] = np.log10(g[..., 1])
        w = np.array([[(1 - wf) * (1 - wa), (1 - wf) * wa], [wf * (1 - wa), wf * wa]])
        used = w > 0
        ok = np.all(np.isfinite(g[used]), axis=(0, -1))
        out = np.einsum("ab,abec->ec", w, np.where(used[..., None, None], g, 0.0))[ok]
        res = {c: out[:, k] for k, c in enumerate(self.COLUMNS)}
        res["Teff"] = 10 ** res["Teff"]
        res["phase"] = np.max(np.where(used[..., None], g[..., 4], -np.inf), axis=(0, 1))[ok]
        res["eep"] = np.nonzero(ok)[0].astype(np.float64)
        return res


def _bracket(grid: np.ndarray, x: float) -> tuple[int, float]:
    if not grid[0] <= x <= grid[-1]:
        raise ConfigError(f"value {x} outside the grid range [{grid[0]}, {grid[-1]}]")
    i = int(np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2))
    return i, float((x - grid[i]) / (grid[i + 1] - grid[i]))
