"""TrainConfig, its schedules (§4), the split and the config file."""

from __future__ import annotations

import numpy as np
import pytest

from bayesdsm.config import from_dict, from_json, from_toml, to_json, to_toml
from bayesdsm.errors import ConfigError, TrainingError
from bayesdsm.train import (
    TrainConfig,
    chi2_threshold,
    learning_rate,
    read_train_config,
    split_indices,
)


@pytest.mark.parametrize(
    "k, expected",
    [(0, 100.0), (14, 5.0), (15, 5.0), (19, 5.0), (7, 100.0 * (5 / 100) ** 0.5)],
)
def test_chi2_threshold_schedule(k, expected):
    # §4: 100 after the first iteration, geometric to 5 by the 15th, then 5
    assert chi2_threshold(TrainConfig(), k) == pytest.approx(expected)


def test_threshold_is_geometric():
    t = np.array([chi2_threshold(TrainConfig(), k) for k in range(15)])
    assert np.allclose(t[1:] / t[:-1], t[1] / t[0])


def test_learning_rate_schedule():
    # §4: 1e-3 · e^(-k/5); bayesdsm's default starts the stellar network at 1e-2
    assert learning_rate(TrainConfig.paper(), 0) == pytest.approx(1e-3)
    assert learning_rate(TrainConfig.paper(), 5) == pytest.approx(1e-3 * np.exp(-1))
    assert learning_rate(TrainConfig(), 5) == pytest.approx(1e-2 * np.exp(-1))


def test_paper_defaults():
    c = TrainConfig()
    assert (c.n_iterations, c.epochs, c.batch_size) == (20, 25, 256)
    assert TrainConfig.paper().batch_size == 1024
    assert c.split == (0.7, 0.2, 0.1) and c.max_ebv_err_first == 0.2
    assert c.ebv_range == (0.0, 10.0) and (c.ebv_err_floor, c.ebv_err_frac) == (0.02, 0.1)


def test_paper_procedure_by_name():
    c = TrainConfig.paper()
    assert (c.method, c.parallax) == ("paper", "inverted")
    assert not c.extinction_curvature and not c.profile_reddening and c.l2_stellar == 1e-4
    assert c.learning_rate == 1e-3 and c.extinction_learning_rate is None
    assert TrainConfig.paper(seed=4).seed == 4
    d = TrainConfig()  # the defaults go beyond the paper (BENCHMARKS.md, issue 4)
    assert (d.method, d.parallax) == ("deconvolved", "linearized")
    assert d.extinction_curvature and d.profile_reddening


def test_config_round_trip():
    c = TrainConfig(method="paper", hidden=(16, 8), n_iterations=3, posterior_components=3)
    assert from_json(TrainConfig, to_json(c)) == c
    assert from_toml(TrainConfig, to_toml(c)) == c


@pytest.mark.parametrize(
    "kw",
    [
        {"method": "nope"},
        {"split": (0.5, 0.2, 0.2)},
        {"epochs": 0},
        {"parallax": "x"},
        {"extinction_learning_rate": -1e-3},
    ],
)
def test_config_rejects(kw):
    with pytest.raises(ConfigError):
        TrainConfig(**kw)


def test_removed_experiments_are_unknown_keys():
    # the off-by-default experiments were deleted: a config file naming one is an error
    with pytest.raises(ConfigError, match="unknown key 'distance_step'"):
        from_dict(TrainConfig, {"distance_step": False})


def test_split_is_seeded_and_disjoint():
    a = split_indices(1000, TrainConfig(seed=1))
    b = split_indices(1000, TrainConfig(seed=1))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert [len(x) for x in a] == [700, 200, 100]
    assert len(np.unique(np.concatenate(a))) == 1000


def test_split_needs_min_stars():
    with pytest.raises(TrainingError, match="too few stars for the split"):
        split_indices(4, TrainConfig(min_split_stars=2))


@pytest.mark.parametrize("suffix", [".toml", ".json"])
def test_read_train_config_flat_and_tables(tmp_path, suffix):
    flat, tables = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
    if suffix == ".toml":
        flat.write_text("epochs = 3\n")
        tables.write_text("[train]\nepochs = 4\n[cuts]\n")
    else:
        flat.write_text('{"epochs": 3}')
        tables.write_text('{"train": {"epochs": 4}, "cuts": {}}')
    assert read_train_config(flat)[0] == TrainConfig(epochs=3)
    assert read_train_config(tables)[0] == TrainConfig(epochs=4)
    bad = tmp_path / f"c{suffix}"
    bad.write_text("[train]\n[other]\n" if suffix == ".toml" else '{"train": {}, "other": {}}')
    with pytest.raises(ConfigError, match="unknown table 'other'"):
        read_train_config(bad)
