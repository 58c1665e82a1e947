"""``bayesdsm fit`` (bayesdsm.pipeline.fit_catalog): read, cut, train, save; SIGKILL and
resume through the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bayesdsm.emulator import emulator_arrays
from bayesdsm.train import TrainConfig, load_checkpoint

from ._toy import toy_catalog


def test_fit_catalog_writes_the_model_and_checkpoint(tmp_path):
    from bayesdsm.catalog import write_catalog
    from bayesdsm.model_file import load_model
    from bayesdsm.pipeline import fit_catalog

    write_catalog(toy_catalog(300, seed=4), tmp_path / "cat.ecsv")
    cfg = TrainConfig(n_iterations=1, epochs=1, batch_size=64, chunk_size=256)
    res, path = fit_catalog(tmp_path / "cat.ecsv", tmp_path / "m.bdsm", config=cfg,
                            progress=False)  # fmt: skip
    model = load_model(path)
    assert path == tmp_path / "m.bdsm" and len(model.history) == 1
    assert model.meta["catalog"] == str(tmp_path / "cat.ecsv") and "cuts" in model.meta
    assert model.meta["training_set_hash"] == res.training_hash
    assert load_checkpoint(tmp_path / "m.bdsm.ckpt.npz")[0]["iteration"] == 1


def _fit(cat_path, out, cfg_path, env, resume=False):
    cmd = [sys.executable, "-m", "bayesdsm.cli", "fit", str(cat_path), "--out", str(out),
           "--config", str(cfg_path), "--quiet"] + (["--resume"] if resume else [])  # fmt: skip
    log = Path(str(out) + ".log")
    with open(log, "wb") as f:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=f)


def _log(out) -> str:
    return Path(str(out) + ".log").read_text()[-2000:]


@pytest.mark.slow
def test_cli_fit_sigkill_and_resume(tmp_path):
    from bayesdsm.catalog import write_catalog
    from bayesdsm.model_file import load_model

    cat_path = tmp_path / "cat.ecsv"
    write_catalog(toy_catalog(600, seed=2), cat_path)
    cfg_path = tmp_path / "fit.toml"
    cfg_path.write_text("n_iterations = 4\nepochs = 3\nbatch_size = 64\nchunk_size = 1024\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jc"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")  # fmt: skip
    ref = _fit(cat_path, tmp_path / "ref.bdsm", cfg_path, env)
    assert ref.wait(timeout=900) == 0, _log(tmp_path / "ref.bdsm")

    out = tmp_path / "m.bdsm"
    ckpt = tmp_path / "m.bdsm.ckpt.npz"
    proc = _fit(cat_path, out, cfg_path, env)
    t0 = time.time()
    while time.time() - t0 < 900:  # kill mid-run: after the second checkpoint
        if ckpt.exists() and load_checkpoint(ckpt)[0]["iteration"] >= 2:
            break
        assert proc.poll() is None, _log(out)
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists()
    done = _fit(cat_path, out, cfg_path, env, resume=True)
    assert done.wait(timeout=900) == 0, _log(out)
    a = emulator_arrays(load_model(out).emulator)
    b = emulator_arrays(load_model(tmp_path / "ref.bdsm").emulator)
    for name in a:
        np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=name)
    assert len(load_model(out).history) == 4
