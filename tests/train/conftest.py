"""One toy survey and one tiny training run, shared by the tests of a worker (the jitted
passes compile once)."""

from __future__ import annotations

import pytest

from bayesdsm.train import train

from ._toy import TINY, toy_catalog


@pytest.fixture(scope="session")
def cat():
    return toy_catalog(400, seed=1)


@pytest.fixture(scope="session")
def run(cat):
    return train(cat, TINY)
