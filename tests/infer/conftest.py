"""Fixtures of the inference tests."""

from __future__ import annotations

import jax.numpy as jnp
import pytest


@pytest.fixture(scope="module")
def setup(green2020_dir):
    """The released Green 2020 emulator (float32) and its training density."""
    from bayesdsm.green2020 import load_green2020_density, load_green2020_emulator

    emu = load_green2020_emulator(green2020_dir, jnp.float32)
    dens = load_green2020_density(green2020_dir)
    return emu, dens
