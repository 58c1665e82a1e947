"""The surveys of ``benchmarks/recovery_suite.py`` (issue 19): definitions and loaders.

* three variants of :mod:`bayesdsm.simulate` (:data:`SIM_SURVEYS`), none with the demo's
  seed (1), the 195k benchmark's (7) or the MIST survey's (11); each differs in its
  reddening prior, its selection and its amount of dust;
* the external MIST survey (``../shared/mist_survey``, or
  ``$BAYESDSM_MIST_SURVEY_DIR``), with its truth attached as the
  ``true_*`` columns :mod:`accept_train`'s metrics read (a check only: never tune to it);
* the 5,000 real dev stars of the Green 2020 release, for cross-validation.

Simulated surveys are cached as Parquet under ``<work>/sim/`` (file name: survey, size and
a hash of the :class:`~bayesdsm.simulate.SimConfig`), so reruns do not resimulate.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = [
    "SIM_SURVEYS",
    "SimSurvey",
    "load_mist",
    "load_real",
    "load_simulated",
    "sim_config",
]

MIST_DIR = Path(
    os.environ.get(
        "BAYESDSM_MIST_SURVEY_DIR", Path(__file__).resolve().parents[2] / "shared" / "mist_survey"
    )
)


@dataclass(frozen=True)
class SimSurvey:
    """A :mod:`bayesdsm.simulate` variant.

    Attributes:
        name: the suite's name for it (``--only``).
        description: what it varies, for the table's notes.
        config: :class:`~bayesdsm.simulate.SimConfig` fields other than ``n_stars``, as
            a function (so that the simulator is imported only when needed).
        prior_scale: the catalogue's Ê and σ_E are multiplied by this after simulation
            (a prior biased by a constant factor, as SFD's is by ≈ 1.14): the truth's R
            on the prior's scale is then R_true / prior_scale.
    """

    name: str
    description: str
    config: object = field(repr=False)
    prior_scale: float = 1.0


def _maglim():
    """A magnitude-limited, all-sky survey in G (10-17), LAMOST-like θ̂ errors."""
    from bayesdsm.simulate import SpecSurvey

    return SpecSurvey("maglim", 1.0, "G", 10.0, 17.0, -90.0, 90.0, 1500, (70.0, 0.10, 0.06))


def _lamost_only():
    """The default LAMOST-like survey alone (G 9-16.5, δ > -10°, with its zero point)."""
    from bayesdsm.simulate import SimConfig

    return dataclasses.replace(SimConfig().surveys[0], fraction=1.0)


# Issue 19's surveys have one extinction curve (R(V) = 3.1 for every star), as they had
# before the simulator drew R(V): pinned here so that SimConfig's R(V) defaults do not
# change them (they are the recovery suite's fixed references).
_ONE_CURVE = dict(rv_mean=3.1, rv_sigma=0.0, rv_star_sigma=0.0)


def _bayestar():
    from bayesdsm.galaxy import DustModel

    # every star in the Bayestar branch: per-star E at its true distance, honest errors
    return dict(seed=21, ebv_z_threshold=1e9, bayestar_dec_min=-90.0, surveys=(_maglim(),),
                dust=DustModel(e_per_kpc=0.5), **_ONE_CURVE)  # fmt: skip


def _sfd():
    from bayesdsm.galaxy import DustModel

    # SFD-like full column (±15%) beyond 300 pc from the plane; no Bayestar anywhere, so
    # stars nearer the plane get Ê = 0 ± the column (no informative prior)
    return dict(seed=22, ebv_z_threshold=300.0, bayestar_dec_min=90.0, sfd_frac_err=0.15,
                dust=DustModel(e_per_kpc=0.2), **_ONE_CURVE)  # fmt: skip


def _scaled():
    from bayesdsm.galaxy import DustModel

    # the default prior mix (Bayestar-like near the plane, SFD-like beyond 400 pc), later
    # scaled by 1.14; LAMOST-only selection, more and clumpier dust
    return dict(seed=23, surveys=(_lamost_only(),), dust_clumpiness=0.5,
                dust=DustModel(e_per_kpc=0.4), **_ONE_CURVE)  # fmt: skip


SIM_SURVEYS = (
    SimSurvey("sim_bayestar", "Bayestar-like per-star prior everywhere (honest σ_E); "
              "magnitude-limited G 10-17 all sky; dusty (0.5 mag/kpc)", _bayestar),
    SimSurvey("sim_sfd", "SFD-like full column ±15% beyond 300 pc from the plane, "
              "Ê = 0 ± column below; default LAMOST/APOGEE/GALAH selection; little dust "
              "(0.2 mag/kpc)", _sfd),
    SimSurvey("sim_scaled114", "default prior mix with every Ê, σ_E × 1.14 (R scored "
              "against R_true / 1.14); LAMOST-only selection; clumpy dust (0.4 mag/kpc, "
              "σ_ln 0.5)", _scaled, prior_scale=1.14),
)  # fmt: skip


def sim_config(survey: SimSurvey, n_stars: int):
    """The :class:`~bayesdsm.simulate.SimConfig` of ``survey`` with ``n_stars`` rows."""
    from bayesdsm.simulate import SimConfig

    return SimConfig(n_stars=n_stars, **survey.config())


def _cache_key(cfg) -> str:
    """A hash of the config's JSON, the cache file's key.

    A survey without R(V) variation (``not cfg.rv_varies``: R(V) = 3.1 for every star) is
    bit for bit what the simulator made before it had R(V) fields (issue 20), so its key
    leaves the ``rv_*`` fields out: files cached before them are still found. Files from
    before lack the truth's ``true_RV*`` and ``true_dR_dRV_*`` columns, which the suite
    does not read.
    """
    d = cfg.to_dict()
    if not cfg.rv_varies:
        d = {k: v for k, v in d.items() if not k.startswith("rv_")}
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def load_simulated(survey: SimSurvey, n_stars: int, work: Path, log=print):
    """(catalog with ``true_*`` columns, seconds spent simulating or reading).

    The raw simulation is cached; ``prior_scale`` is applied to the returned catalog.
    """
    from bayesdsm.catalog import read_catalog
    from bayesdsm.simulate import simulate_survey, write_compact

    cfg = sim_config(survey, n_stars)
    key = _cache_key(cfg)
    path = Path(work) / "sim" / f"{survey.name}_n{n_stars}_{key}.parquet"
    t0 = time.perf_counter()
    if not path.exists():
        log(f"[{survey.name}] simulating {n_stars} stars -> {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        write_compact(simulate_survey(cfg), path)
    cat = read_catalog(path)
    if survey.prior_scale != 1.0:
        cat = cat.replace(ebv=cat.ebv * survey.prior_scale,
                          ebv_err=cat.ebv_err * survey.prior_scale)  # fmt: skip
    return cat, time.perf_counter() - t0


def load_mist(subset: int | None, seed: int = 0, directory: Path = MIST_DIR):
    """(catalog with ``true_*`` columns, truth grid dict, seconds).

    ``subset``: that many rows drawn at random (seeded), or every row. The grid holds
    ``theta`` (N, 3) and ``M`` (N, B), the noise-free stars the README says to score at.
    """
    from bayesdsm.catalog import read_catalog

    t0 = time.perf_counter()
    cat = read_catalog(directory / "mist_survey.h5", preset="green2020")
    z = np.load(directory / "mist_survey_truth.npz")
    bands = tuple(str(b) for b in z["bands"])
    if len(cat) != len(z["E"]) or tuple(cat.bands) != bands:
        raise RuntimeError(f"mist_survey: {len(cat)} rows / bands {cat.bands} do not match the "
                           f"truth's {len(z['E'])} / {bands}")  # fmt: skip
    extra = dict(cat.extra)
    for k, c in enumerate(("teff", "logg", "feh")):
        extra[f"true_{c}"] = z["theta"][:, k].astype(np.float64)
    for k, b in enumerate(bands):
        extra[f"true_M_{b}"] = z["M"][:, k].astype(np.float64)
        extra[f"true_R_{b}"] = z["R0"][:, k].astype(np.float64)
    extra["true_ebv"], extra["true_mu"] = z["E"].astype(np.float64), z["mu"].astype(np.float64)
    cat = cat.replace(extra=extra)
    if subset is not None and subset < len(cat):
        rows = np.sort(np.random.default_rng(seed).choice(len(cat), subset, replace=False))
        cat = cat.subset(rows)
    grid = {"theta": z["grid_theta"].astype(np.float64), "M": z["grid_M"].astype(np.float64)}
    return cat, grid, time.perf_counter() - t0


def load_real(directory: Path | None = None):
    """(the 5,000 real dev stars after the §3 cuts, seconds)."""
    from bayesdsm.catalog import read_catalog
    from bayesdsm.cuts import prepare

    directory = Path(directory or os.environ["BAYESDSM_GREEN2020_DIR"])
    t0 = time.perf_counter()
    cat, _ = prepare(read_catalog(directory / "green2020_test_data_dev.h5", preset="green2020"))
    rows = np.flatnonzero(cat.has_theta & np.asarray(cat.observed[:, 0], bool))
    return cat.subset(rows), time.perf_counter() - t0
