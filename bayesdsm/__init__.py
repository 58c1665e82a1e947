"""bayesdsm: Bayesian data-driven stellar models.

The Green et al. (2021, ApJ 907, 57) emulator of stellar photometry from spectroscopic
labels, as a NumPyro/JAX model, and per-star posteriors p(θ, μ, E | photometry).

The names a user needs are here (``bayesdsm.read_catalog``, ``bayesdsm.prepare``,
``bayesdsm.TrainConfig``, ``bayesdsm.infer_catalog``, ...), and every submodule is an
attribute (``bayesdsm.evaluate``, ``bayesdsm.green2020``, ...). ``bayesdsm.train`` is the
training subpackage: the §4 procedure itself is ``bayesdsm.train.train(catalog, config)``.
Everything is imported lazily, on first use, so that ``import bayesdsm`` stays cheap.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

__bibtex__ = r"""@article{Green2021,
  author  = {Green, Gregory M. and Rix, Hans-Walter and Tschesche, Leon and Finkbeiner, Douglas
             and Zucker, Catherine and Schlafly, Edward F. and Rybizki, Jan and Fouesneau, Morgan
             and Andrae, Ren{\'e} and Speagle, Joshua},
  title   = {A Data-driven Model of Stellar Photometry},
  journal = {The Astrophysical Journal},
  year    = {2021},
  volume  = {907},
  number  = {1},
  pages   = {57},
  doi     = {10.3847/1538-4357/abd1dd}
}
@software{bayesdsm,
  title   = {bayesdsm: Bayesian data-driven stellar models in NumPyro/JAX},
  author  = {{bayesdsm developers}},
  year    = {2026},
  version = {0.1.0}
}"""

#: The public names, each with the submodule that defines it (data flow order).
_API = {
    "Catalog": "catalog",
    "read_catalog": "catalog",
    "write_catalog": "catalog",
    "prepare": "cuts",
    "CutsConfig": "config",
    "SimConfig": "simulate",
    "simulate_survey": "simulate",
    "TrainConfig": "train",
    "to_stellar_model": "train",
    "fit_catalog": "pipeline",
    "StellarModel": "model_file",
    "save_model": "model_file",
    "load_model": "model_file",
    "import_green2020": "model_file",
    "InferConfig": "infer",
    "infer_catalog": "infer",
    "run_inference": "infer",
    "evaluate_catalog": "evaluate",
    "predict_table": "evaluate",
    "make_report": "report",
    "demo_path": "data",
}

_SUBMODULES = (
    "batch",
    "catalog",
    "cli",
    "config",
    "conventions",
    "covariance",
    "cuts",
    "data",
    "demo",
    "diagnostics",
    "emulator",
    "emulator_model",
    "epistemic",
    "errors",
    "evaluate",
    "galaxy",
    "green2020",
    "infer",
    "likelihood",
    "mist",
    "model_file",
    "passband_extinction",
    "pipeline",
    "plotting",
    "report",
    "simulate",
    "train",
    "validity",
)

__all__ = ["__version__", "__bibtex__", *_API, *_SUBMODULES]


def __getattr__(name):
    if name in _API:
        return getattr(importlib.import_module(f"bayesdsm.{_API[name]}"), name)
    if name in _SUBMODULES:
        return importlib.import_module(f"bayesdsm.{name}")
    raise AttributeError(f"module 'bayesdsm' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
