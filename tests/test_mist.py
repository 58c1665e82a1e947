"""MIST grids from PyPI: file discovery, photometric systems, filled cells, extinction trend."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from bayesdsm import mist as sm

pytestmark = pytest.mark.skipif(importlib.util.find_spec("h5py") is None, reason="needs h5py")


def _bc_or_skip():
    try:
        return sm.MISTBolometricCorrections()
    except ImportError as exc:
        pytest.skip(f"needs the MIST BC tables ({exc})")


@pytest.fixture(scope="module")
def bc():
    return _bc_or_skip()


def test_missing_package_names_the_extra():
    with pytest.raises(ImportError, match="bayesdsm\\[sim\\]"):
        sm.find_package_file("no-such-dist-bayesdsm", "x.h5")


# Solar absolute magnitudes in native systems, Willmer (2018, ApJS 236, 47), Table 3;
# tolerance covers MIST vs the solar SED (~0.05 mag).
SUN = [("J", "Vega", 3.67), ("H", "Vega", 3.32), ("Ks", "Vega", 3.27), ("W1", "Vega", 3.26)]


@pytest.mark.parametrize(("band", "system", "value"), SUN)
def test_solar_magnitudes_confirm_mist_systems(bc, band, system, value):
    M = bc.absolute_magnitudes([5772.0], [4.438], [0.0], [4.74])[0]
    k = bc.bands.index(band)
    native = M[k] - sm.system_offset(band, sm.MIST_SYSTEM[band])
    assert sm.MIST_SYSTEM[band] == system
    assert native == pytest.approx(value, abs=0.06)


def test_filled_cells_detected(bc):
    # At 4750 K the tables stop at log g = 5.0: 5.5 and above repeat the 5.0 values.
    it = list(bc.teff).index(4750.0)
    ig = list(bc.logg).index(5.0)
    jf = list(bc.feh).index(0.0)
    assert not bc.filled[jf, it, ig]
    assert bc.filled[jf, it, ig + 1]
    assert bc.in_filled_region([4750.0], [5.2], [0.0])[0]
    assert not bc.in_filled_region([4750.0], [4.6], [0.0])[0]


# A_G/A_V as A_V -> 0, from the raw table: (BC(0) - BC(0.05))/0.05 at log g = 4.5, [Fe/H] = 0,
# interpolated linearly in Teff between grid nodes (provenance: bc_tables.h5, Gaia_G_EDR3).
@pytest.mark.parametrize(("teff", "lo", "hi"), [(3800.0, 0.72, 0.77), (5800.0, 0.85, 0.90)])
def test_low_extinction_ratio_matches_raw_table(bc, teff, lo, hi):
    import h5py

    with h5py.File(bc.path, "r") as h:
        names = [x.decode() for x in h["UBVRIplus/band_names"][:]]
        d = h["UBVRIplus/data"][:]
    col = 5 + names.index("Gaia_G_EDR3")
    ifeh = list(d[:, 0, 2]).index(0.0)
    rows = d[ifeh]
    ratio = {}
    for t in np.unique(rows[:, 0]):
        sel = (rows[:, 0] == t) & (rows[:, 1] == 4.5)
        bc0 = rows[sel & (rows[:, 3] == 0.0), col][0]
        bc1 = rows[sel & (rows[:, 3] == 0.05), col][0]
        ratio[t] = (bc0 - bc1) / 0.05
    ts = np.array(sorted(ratio))
    raw = np.interp(teff, ts, [ratio[t] for t in ts])
    ours = bc.extinction([teff], [4.5], [0.0], [0.05])[0, bc.bands.index("G")] / 0.05
    assert ours == pytest.approx(raw, abs=2e-4)
    assert lo < raw < hi
    # Nonlinearity: the ratio falls with A_V (Appendix B of Green et al. 2021).
    big = bc.extinction([teff], [4.5], [0.0], [2.0])[0, 0] / 2.0
    assert big < ours


def test_isochrone_interpolation_reproduces_nodes():
    try:
        iso = sm.MISTIsochrones()
    except ImportError as exc:
        pytest.skip(f"needs the MIST isochrones ({exc})")
    i, j = list(iso.feh).index(0.0), list(iso.log_age).index(9.5)
    node = iso.node(i, j)
    r = iso.interpolate(0.0, 9.5)
    np.testing.assert_allclose(r["Mbol"], node["Mbol"], atol=1e-6)
    np.testing.assert_allclose(r["Teff"], node["Teff"], rtol=1e-6)
    assert set(np.unique(r["phase"])) <= {0.0, 2.0, 3.0, 4.0}
