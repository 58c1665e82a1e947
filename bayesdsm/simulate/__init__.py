"""Simulated spectroscopic x photometric surveys with a known truth.

``simulate_survey(config, truth=None)`` draws stars from a Galactic model, observes them the way
LAMOST/APOGEE/GALAH x Gaia/PS1/2MASS/unWISE do (Green et al. 2021, §3 and Table 1) and returns
a :class:`bayesdsm.catalog.Catalog` whose ``extra`` holds the noise-free truth:

* ``true_teff, true_logg, true_feh`` (θ), ``true_mass`` [Msun], ``true_log_age`` [log10 yr],
  ``true_population`` (thin/thick/halo);
* ``true_M_<band>`` absolute magnitudes (bayesdsm's photometric systems);
* ``true_R_<band>`` = A_band/E in the low-extinction limit (E = 0.01); ``true_A_<band>`` the
  extinction actually applied (nonlinear in E for the MIST truth);
* ``true_mu`` distance modulus, ``true_ebv`` E to the star (SFD scale), ``true_av`` = ratio·E,
  ``true_ebv_column`` the full SFD-like column; ``ebv_source`` (sfd/bayestar/none).

So ``m_true = true_M + true_mu + true_A``. E is on the SFD scale through A_V = ``av_per_ebv`` · E
(default 3.1).

**Truth.** By default :class:`StellarModelTruth`: MIST isochrones give (Teff, log g, [Fe/H],
M_bol) and MIST bolometric corrections give M and the true A(A_V) (see
:mod:`bayesdsm.mist`; needs ``bayesdsm[sim]`` + ``pip install --no-deps
astrolachesis``). Any object following :class:`Truth` works instead, e.g. an emulator through
:class:`EmulatorTruth`; with ``population_source="parametric"`` no stellar-model package is
needed.

**Selection.** Each spectroscopic survey is magnitude limited in one band inside its
declination range. Stars are drawn by rejection sampling from n(x)·φ(star) restricted to the
volume where the star is visible, along the survey's fields (random sight lines).

Modules: :mod:`._config` (settings), :mod:`._truth` (what stars look like), :mod:`._draw`
(drawing stars in each survey's visible volume), :mod:`._survey` (observing them,
:func:`simulate_survey`), :mod:`._io` (the command line and :func:`write_compact`).

Remake the bundled demo: ``python -m bayesdsm.simulate --n-stars 40000 --seed 1
--out data/demo_survey.parquet``.
"""

from bayesdsm.simulate._config import (
    BandNoise,
    Population,
    SimConfig,
    SpecSurvey,
    parallax_error,
    photometric_error,
)
from bayesdsm.simulate._io import main, write_compact
from bayesdsm.simulate._survey import simulate_survey
from bayesdsm.simulate._truth import EmulatorTruth, StellarModelTruth, Truth

__all__ = [
    "SpecSurvey",
    "Population",
    "BandNoise",
    "SimConfig",
    "Truth",
    "StellarModelTruth",
    "EmulatorTruth",
    "simulate_survey",
    "write_compact",
    "photometric_error",
    "parallax_error",
    "main",
]
