"""Fixtures of the CLI tests: a tiny model file made in a second, the green2020 files, and
``run_cli`` (``main(argv)`` with its exit status, stdout and stderr)."""

from __future__ import annotations

import json
from typing import NamedTuple

import jax
import numpy as np
import pytest
from _reference import random_emulator

from bayesdsm.cli import main
from bayesdsm.conventions import BANDS
from bayesdsm.model_file import StellarModel, save_model
from bayesdsm.validity import ValidityGrid

from ._malformed import real_rows


class CliRun(NamedTuple):
    code: int
    out: str
    err: str

    @property
    def summary(self) -> dict:
        """The last stdout line, parsed as strict JSON (no NaN)."""
        return json.loads(self.out.strip().splitlines()[-1], parse_constant=_no_constant)


def _no_constant(name):
    raise ValueError(f"not strict JSON: {name}")


@pytest.fixture
def run_cli(capsys):
    """``run_cli(*argv)``: ``main(argv)`` as a :class:`CliRun`; asserts no traceback."""

    def run(*argv) -> CliRun:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        cap = capsys.readouterr()
        if "--debug" not in argv:
            assert "Traceback" not in cap.err, cap.err
        return CliRun(code, cap.out, cap.err)

    return run


def tiny_validity_grid() -> ValidityGrid:
    """A coarse density grid, peak 1 at the Sun, falling to ~1e-6 at 2000 K from it."""
    axes = (np.linspace(3000, 9000, 13), np.linspace(0.0, 5.5, 12), np.linspace(-2.5, 1.0, 8))
    t, g, f = np.meshgrid(*axes, indexing="ij")
    bump = np.exp(-0.5 * (((t - 5500) / 400) ** 2 + ((g - 3.5) / 0.8) ** 2 + (f / 0.5) ** 2))
    names = (*BANDS, "parallax")
    return ValidityGrid(axes, np.repeat(bump[None], len(names), 0), names)


@pytest.fixture(scope="session")
def tiny_model_path(tmp_path_factory):
    """A random emulator with a validity grid and two epistemic draws, as a model file."""
    emu = random_emulator(jax.random.PRNGKey(1), np.float32)
    bias = np.asarray(emu.extinction.bias)
    model = StellarModel(
        emulator=emu,
        validity_grid=tiny_validity_grid(),
        epistemic={"R_bias": np.stack([bias, bias + 0.05])},
    )
    return save_model(model, tmp_path_factory.mktemp("model") / "tiny.bdsm")


@pytest.fixture(scope="session")
def green2020_rows(green2020_dir):
    """The first 200 released test stars (skips without BAYESDSM_GREEN2020_DIR)."""
    return real_rows(green2020_dir / "green2020_test_data_dev.h5", 200)


@pytest.fixture(scope="session")
def green2020_model_path(green2020_dir, tmp_path_factory):
    """The released model as a bayesdsm model file (skips without the files)."""
    from bayesdsm.model_file import import_green2020

    path = tmp_path_factory.mktemp("green2020") / "g.bdsm"
    return save_model(import_green2020(green2020_dir), path)
