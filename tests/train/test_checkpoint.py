"""Checkpoints: a resumed run reproduces an uninterrupted one bit for bit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bayesdsm.emulator import emulator_arrays
from bayesdsm.errors import TrainingError
from bayesdsm.train import TrainConfig, load_checkpoint, train

from ._toy import TINY, assert_same_fit


def test_deterministic_and_resume_in_process(cat, run, tmp_path):
    ckpt = tmp_path / "c.npz"
    part = train(cat, TINY, checkpoint=ckpt, stop_after=1)
    assert len(part.history) == 1
    meta, arrays = load_checkpoint(ckpt)
    assert meta["iteration"] == 1 and "ebv" in arrays and "excluded" in arrays
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left
    assert_same_fit(train(cat, TINY, checkpoint=ckpt, resume=True), run)


def test_linearized_parallax_takes_every_parallax_and_resumes(cat, run, tmp_path):
    cfg = dataclasses.replace(TINY, parallax="linearized")
    assert cfg == TINY  # the default: ``run`` is the uninterrupted fit
    ckpt = tmp_path / "lin.npz"
    part = train(cat, cfg, checkpoint=ckpt, stop_after=1)
    _, arrays = load_checkpoint(ckpt)
    rows = np.flatnonzero(cat.has_theta & np.asarray(cat.observed[:, 0], bool))
    plx = np.asarray(cat.parallax)[rows]
    assert (plx / np.asarray(cat.parallax_err)[rows] < 5).any(), "the toy has low-SNR stars"
    np.testing.assert_array_equal(arrays["has_parallax"], np.isfinite(plx).astype(float))
    assert np.all(np.isfinite(arrays["mu"])) and np.all(arrays["sigma_mu"] > 0)
    assert part.history[0]["iteration"] == 0
    assert_same_fit(train(cat, cfg, checkpoint=ckpt, resume=True), run)
    # and it is not the inverted-parallax fit
    a = emulator_arrays(run.emulator)
    inv = emulator_arrays(train(cat, dataclasses.replace(TINY, parallax="inverted")).emulator)
    assert any(not np.array_equal(np.asarray(a[k]), np.asarray(inv[k])) for k in a)


def test_paper_procedure_resumes_bit_for_bit(cat, tmp_path):
    # the paper's method at E′ (the default's resume is tested above)
    cfg = TrainConfig.paper(n_iterations=2, epochs=1, batch_size=64, seed=3, chunk_size=512,
                            extinction_curvature=True)  # fmt: skip
    ckpt = tmp_path / "rs.npz"
    train(cat, cfg, checkpoint=ckpt, stop_after=1)
    assert_same_fit(train(cat, cfg, checkpoint=ckpt, resume=True), train(cat, cfg))


def test_resume_refuses_other_config(cat, tmp_path):
    ckpt = tmp_path / "c.npz"
    train(cat, TINY, checkpoint=ckpt, stop_after=1)
    other = TrainConfig(n_iterations=2, epochs=1, batch_size=64, seed=4, chunk_size=512)
    with pytest.raises(TrainingError, match="different catalog or config"):
        train(cat, other, checkpoint=ckpt, resume=True)
