"""Training with a second extinction component (K = 2, issue 20)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bayesdsm.emulator import emulator_arrays, extinction_variation
from bayesdsm.errors import ConfigError
from bayesdsm.train import TrainConfig, train
from bayesdsm.variation import orthogonal_part

from ._toy import TINY, assert_same_fit

K2 = dataclasses.replace(TINY, n_components=2)


@pytest.fixture(scope="module")
def run_k2(cat):
    return train(cat, K2)


def test_k2_config_is_checked():
    with pytest.raises(ConfigError, match="profile_reddening"):
        TrainConfig(n_components=2, profile_reddening=False)
    with pytest.raises(ConfigError, match="1 or 2"):
        TrainConfig(n_components=3)
    with pytest.raises(ConfigError, match="profile_reddening"):
        TrainConfig.paper(n_components=2)


def test_k2_trains_learns_r1_and_orients_it(cat, run, run_k2):
    emu = run_k2.emulator
    assert emu.n_components == 2 and run.emulator.n_components == 1
    arrays = emulator_arrays(emu)
    assert all(np.all(np.isfinite(np.asarray(arrays[k]))) for k in ("R1_kernel", "R1_bias"))
    # the training moved R₁ off its starting ramp
    ramp = 0.01 * np.linspace(-1.0, 1.0, emu.n_bands)
    assert np.max(np.abs(np.asarray(arrays["R1_bias"]) - ramp)) > 1e-3
    # the sign convention: R₁'s part orthogonal to R₀ is ≤ 0 in the band of largest R₀
    th = emu.normalizer.median
    r0 = np.asarray(emu(th)[1])
    perp = orthogonal_part(np.asarray(extinction_variation(emu, th)), r0)
    assert perp[np.argmax(r0)] <= 0
    for h in run_k2.history:
        assert np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"])
    assert np.all(np.isfinite(run_k2.ebv)) and np.all(run_k2.ebv_err > 0)


def test_k2_model_file_round_trip(run_k2, tmp_path):
    from bayesdsm.model_file import load_model, save_model
    from bayesdsm.train import to_stellar_model

    path = save_model(to_stellar_model(run_k2), tmp_path / "k2.bdsm")
    back = load_model(path)
    assert back.emulator.n_components == 2
    stored = emulator_arrays(back.emulator)
    for name, a in emulator_arrays(run_k2.emulator).items():
        np.testing.assert_array_equal(np.asarray(stored[name]), np.asarray(a), err_msg=name)


def test_k2_resumes_bit_for_bit(cat, run_k2, tmp_path):
    ckpt = tmp_path / "k2.npz"
    train(cat, K2, checkpoint=ckpt, stop_after=1)
    resumed = train(cat, K2, checkpoint=ckpt, resume=True)
    assert_same_fit(resumed, run_k2)
