"""Simulated spectroscopic x photometric surveys with a known truth.

``simulate_survey(config, truth=None)`` draws stars from a Galactic model, observes them the way
LAMOST/APOGEE/GALAH x Gaia/PS1/2MASS/unWISE do (Green et al. 2021, §3 and Table 1) and returns
a :class:`bayesdsm.catalog.Catalog` whose ``extra`` holds the noise-free truth:

* ``true_teff, true_logg, true_feh`` (θ), ``true_mass`` [Msun], ``true_log_age`` [log10 yr],
  ``true_population`` (thin/thick/halo);
* ``true_M_<band>`` absolute magnitudes (bayesdsm's photometric systems);
* ``true_R_<band>`` = A_band/E in the low-extinction limit (E = 0.01) at the star's own
  R(V); ``true_A_<band>`` the extinction actually applied (nonlinear in E for the MIST
  truth); ``true_dR_dRV_<band>`` = ∂A_band/∂R(V) per unit E at E → 0 at the star's θ and R(V)
  (only when R(V) varies: the table it comes from needs the passbands, ``bayesdsm[sim]``);
* ``true_RV`` the star's R(V), ``true_RV_field`` its sight line's;
* ``true_mu`` distance modulus, ``true_ebv`` E to the star (SFD scale), ``true_av`` =
  ``av_per_ebv``·E·R(V)/3.1, ``true_ebv_column`` the full SFD-like column; ``ebv_source``
  (sfd/bayestar/none).

So ``m_true = true_M + true_mu + true_A``. E is on the SFD scale through A_V = ``av_per_ebv`` · E
(default 3.1) at R(V) = 3.1.

**R(V).** Each field (sight line) draws R(V) ~ N(3.1, 0.18) and each star adds N(0, 0.05)
(``SimConfig.rv_*``). The truths' extinction is R(V) = 3.1 only, so each band's A is the
truth's times the passband × blackbody × F99 ratio A(R(V))/A(3.1) at the star's Teff and E
(:mod:`._rv`, from :mod:`bayesdsm.passband_extinction`); E stays on the E(B-V) scale. With
``rv_sigma = rv_star_sigma = 0`` (R(V) = 3.1) the survey is that of earlier versions, bit for
bit: R(V) has its own random stream.

**Truth.** By default :class:`StellarModelTruth`: MIST isochrones give (Teff, log g, [Fe/H],
M_bol) and MIST bolometric corrections give M and the true A(A_V) (see
:mod:`bayesdsm.mist`; needs ``bayesdsm[sim]`` + ``pip install --no-deps
astrolachesis``). Any object following :class:`Truth` works instead, e.g. an emulator through
:class:`EmulatorTruth`; with ``population_source="parametric"`` no stellar-model package is
needed.

**Selection.** Each spectroscopic survey is magnitude limited in one band inside its
declination range. Stars are drawn by rejection sampling from n(x)·φ(star) restricted to the
volume where the star is visible, along the survey's fields (random sight lines).

Modules: :mod:`._config` (settings), :mod:`._truth` (what stars look like), :mod:`._rv`
(R(V) draws and each band's extinction at R(V)), :mod:`._draw` (drawing stars in each
survey's visible volume), :mod:`._survey` (observing them, :func:`simulate_survey`),
:mod:`._io` (the command line and :func:`write_compact`).

Remake the bundled demo: ``python -m bayesdsm.simulate --n-stars 30000 --seed 1
--out data/demo_survey.parquet``. The bundled file predates R(V) variation: to remake it as
it is, pass ``--config`` a JSON file with ``{"rv_sigma": 0, "rv_star_sigma": 0}``.
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
