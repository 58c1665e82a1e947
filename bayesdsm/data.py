"""Where the bundled demo survey lives.

The demo survey (``data/demo_survey.parquet`` in the repository, made by
:mod:`bayesdsm.simulate`; see ``data/PROVENANCE.md``) ships as package data,
``bayesdsm/_demo/demo_survey.parquet`` (in a clone, a symlink to the file in ``data/``; in a
wheel, the file itself). :func:`demo_path` looks, in this order, in the folder named by the
environment variable ``BAYESDSM_DATA_DIR``, in the package data (through
:mod:`importlib.resources`, so it works for wheel, editable and source-tree installs alike)
and in the ``data/`` folder of the repository around the package (for a checkout where the
symlink came out as a plain text file, as git does on Windows without symlink support).
"""

from __future__ import annotations

import atexit
import contextlib
import os
from importlib import resources
from pathlib import Path

from bayesdsm.errors import BayesDSMError

__all__ = ["DEMO_FILE", "demo_path"]

DEMO_FILE = "demo_survey.parquet"
_PACKAGE = "bayesdsm._demo"
_MAGIC = b"PAR1"
_extracted = contextlib.ExitStack()  # holds a package-data file extracted from a zip import
atexit.register(_extracted.close)


def _is_parquet(path: Path) -> bool:
    """True when ``path`` is a file that starts with the Parquet magic bytes (a symlink that
    git checked out as a text file holding its target is not)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == _MAGIC
    except OSError:
        return False


def _package_file() -> Path | None:
    """The demo survey from the package data, as a file on disk (None when absent)."""
    try:
        resource = resources.files(_PACKAGE) / DEMO_FILE
    except ModuleNotFoundError:
        return None
    if not resource.is_file():
        return None
    if isinstance(resource, Path):
        return resource
    # e.g. a zip import: extract once, removed at exit.
    return Path(_extracted.enter_context(resources.as_file(resource)))


def demo_path() -> Path:
    """Path of the bundled demo survey.

    Raises:
        BayesDSMError: when it cannot be found, saying where it was looked for.
    """
    candidates: list[Path] = []
    looked: list[str] = []
    env = os.environ.get("BAYESDSM_DATA_DIR")
    if env:
        candidates.append(Path(env) / DEMO_FILE)
        looked.append(str(candidates[-1]))
    packaged = _package_file()
    if packaged is not None:
        candidates.append(packaged)
    looked.append(f"package data {_PACKAGE}")
    candidates.append(Path(__file__).resolve().parent.parent / "data" / DEMO_FILE)
    looked.append(str(candidates[-1]))
    for path in candidates:
        if _is_parquet(path):
            return path.resolve()  # in a clone: data/demo_survey.parquet, not the symlink
    raise BayesDSMError(
        f"the demo survey {DEMO_FILE} was not found (looked in: "
        f"{', '.join(looked)}); reinstall bayesdsm (the wheel ships it), "
        "or set BAYESDSM_DATA_DIR to a folder holding it, or remake it with "
        "`python -m bayesdsm.simulate --n-stars 30000 --seed 1 --out demo_survey.parquet`"
    )
