"""Execute the tutorial notebooks (``notebooks/NN_name.py``, jupytext percent format).

Each notebook is converted to ``nbformat`` with jupytext and run top to bottom in a fresh
kernel with nbclient, under ``BAYESDSM_NOTEBOOK_SMALL=1`` (small settings, a few minutes
each on 2 cores). A notebook fails the test if any cell raises, or if it shows no figure.

The notebooks run in one shared working folder in pipeline order (pytest-xdist
``--dist loadfile`` keeps this file on one worker), so a later notebook may reuse what an
earlier one wrote there (e.g. 03 reuses the model fitted by 02); each one also runs on
its own.

Notebooks that need the released Green 2020 files run their real-data cells only when
``BAYESDSM_GREEN2020_DIR`` is set; otherwise they print how to get the files and skip
those cells (the test then only checks that they run).

Notebooks in ``PENDING`` are written against APIs that are still landing and are not
executed yet; ``SLOW`` ones run with ``--runslow``. Both are empty now: every notebook
runs in CI.

To run one by hand: ``pytest tests/test_notebooks.py -k 06``.
To get an ``.ipynb``: ``jupytext --to ipynb notebooks/06_green2020_model.py``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"

#: Notebooks run in CI, in pipeline order, with their timeout (s) under small settings.
#: Notebooks not listed here are still being written against APIs that are landing.
NOTEBOOKS = {
    "01_data": 900,
    "02_fit_emulator": 900,
    "03_validate": 900,
    "04_star_posteriors": 900,
    "05_survey_scale": 900,
    "06_green2020_model": 900,
}
#: Written against APIs still landing; not run yet (see the module docstring).
PENDING: set[str] = set()
#: Notebooks that need the released Green 2020 files for their main content.
NEEDS_GREEN2020 = {"06_green2020_model"}
#: Notebooks too slow for CI even under small settings (run with ``--runslow``).
SLOW: set[str] = set()


def _params():
    out = []
    for name in NOTEBOOKS:
        marks = [pytest.mark.slow] if name in SLOW else []
        if name in NEEDS_GREEN2020:
            marks.append(pytest.mark.green2020)
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """One working folder for all notebooks of this module (pipeline order)."""
    return tmp_path_factory.mktemp("notebooks")


def test_every_notebook_is_listed_or_pending():
    """Every notebook file is run here, or knowingly listed as pending."""
    found = {p.stem for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py")}
    assert set(NOTEBOOKS) <= found, f"listed but missing: {set(NOTEBOOKS) - found}"
    assert found <= set(NOTEBOOKS) | PENDING, f"not listed: {found - set(NOTEBOOKS) - PENDING}"


def _images(nb) -> int:
    n = 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if "image/png" in out.get("data", {}):
                n += 1
    return n


@pytest.mark.parametrize("name", _params())
def test_notebook_runs(name, workdir, monkeypatch):
    monkeypatch.setenv("BAYESDSM_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = jupytext.read(NOTEBOOK_DIR / f"{name}.py")
    client = nbclient.NotebookClient(
        nb,
        timeout=NOTEBOOKS[name],
        kernel_name="python3",
        resources={"metadata": {"path": str(workdir)}},
    )
    t0 = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - t0
    print(f"{name}: {elapsed:.0f} s")
    d = os.environ.get("BAYESDSM_GREEN2020_DIR")
    have_files = bool(d) and Path(d).is_dir()  # .ci/run sets it even where shared/ is absent
    if name not in NEEDS_GREEN2020 or have_files:
        assert _images(nb) >= 1, f"{name} showed no figure"
