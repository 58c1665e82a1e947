"""Fixtures shared by the simulator's tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def mist():
    """The MIST truth (isochrones loaded); skips without the sim extra."""
    from bayesdsm.simulate import StellarModelTruth

    try:
        truth = StellarModelTruth()
        truth.isochrones  # noqa: B018
    except ImportError as exc:
        pytest.skip(f"needs the sim extra: {exc}")
    return truth
