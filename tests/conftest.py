"""Shared pytest set-up: CPU only, strict JAX promotion, PRNG key, data locations."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

GREEN2020_ENV = "BAYESDSM_GREEN2020_DIR"
GREEN2020_HOWTO = (
    f"set {GREEN2020_ENV} to a folder with the released Green 2020 files "
    "(green2020_nn_model.h5, green2020_theta_normalization.json, green2020_input_density.h5, "
    "green2020_test_data_dev.h5), from gregreen/green2020-stellar-model or Zenodo "
    "doi:10.5281/zenodo.3902382"
)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("BAYESDSM_FULL_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or BAYESDSM_FULL_TESTS=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def key():
    return jax.random.PRNGKey(20210107)


@pytest.fixture
def x64():
    """Double precision for the test (the dense NumPy references are float64)."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(scope="session")
def green2020_dir() -> Path:
    d = os.environ.get(GREEN2020_ENV)
    if not d or not Path(d).is_dir():
        pytest.skip(f"needs the released Green 2020 files: {GREEN2020_HOWTO}")
    return Path(d)


def pytest_configure(config):
    # A persistent XLA compilation cache shared by the xdist workers and notebook kernels
    # of one run: the same small programs are compiled in several processes.
    cache = Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax"
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(cache))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )
