"""bayesdsm: Bayesian data-driven stellar models.

The Green et al. (2021, ApJ 907, 57) emulator of stellar photometry from spectroscopic
labels, as a NumPyro/JAX model, and per-star posteriors p(θ, μ, E | photometry).

Submodules are imported lazily so that ``import bayesdsm`` stays cheap.
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
    "epistemic",
    "errors",
    "infer",
    "likelihood",
    "emulator_model",
    "model_file",
    "plotting",
    "priors",
    "report",
    "simulate",
    "mist",
    "galaxy",
    "passband_extinction",
    "train",
    "validity",
)

__all__ = ["__version__", "__bibtex__", *_SUBMODULES]


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"bayesdsm.{name}")
    raise AttributeError(f"module 'bayesdsm' has no attribute {name!r}")
