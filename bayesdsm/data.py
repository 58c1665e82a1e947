"""Where the bundled demo survey lives.

The demo survey (``data/demo_survey.parquet`` in the repository, made by
:mod:`bayesdsm.simulate`; see ``data/PROVENANCE.md``) is found, in this order, in the
folder named by the environment variable ``BAYESDSM_DATA_DIR`` and in the ``data/`` folder
beside the installed package (a clone installed with ``pip install -e .``).
"""

from __future__ import annotations

import os
from pathlib import Path

from bayesdsm.errors import BayesDSMError

__all__ = ["DEMO_FILE", "demo_path"]

DEMO_FILE = "demo_survey.parquet"


def demo_path() -> Path:
    """Path of the bundled demo survey.

    Raises:
        BayesDSMError: when it cannot be found, saying where it was looked for.
    """
    candidates = []
    env = os.environ.get("BAYESDSM_DATA_DIR")
    if env:
        candidates.append(Path(env) / DEMO_FILE)
    candidates.append(Path(__file__).resolve().parent.parent / "data" / DEMO_FILE)
    for path in candidates:
        if path.is_file():
            return path
    raise BayesDSMError(
        f"the demo survey {DEMO_FILE} was not found (looked in: "
        f"{', '.join(str(p) for p in candidates)}); work from a clone of the repository "
        "installed with `pip install -e .`, or set BAYESDSM_DATA_DIR to a folder holding it, "
        "or remake it with `python -m bayesdsm.simulate --n-stars 30000 --seed 1 "
        "--out demo_survey.parquet`"
    )
