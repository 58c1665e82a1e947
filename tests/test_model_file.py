"""Model files: round trip, atomic write, and refusal of damaged or newer files."""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesdsm.emulator import emulator_arrays, init_emulator
from bayesdsm.errors import ModelFileError
from bayesdsm.model_file import (
    FORMAT_VERSION,
    StellarModel,
    hash_arrays,
    load_model,
    read_header,
    save_model,
)
from bayesdsm.validity import compute_validity


def small_model() -> StellarModel:
    emu = init_emulator(jax.random.PRNGKey(3))
    rng = np.random.default_rng(0)
    theta = np.stack([rng.normal(5500, 400, 50), rng.normal(4, 0.5, 50), rng.normal(0, 0.2, 50)], 1)
    grid = compute_validity(
        theta, np.ones((50, 13), bool), np.ones(50, bool), emu.bands,
        grid=((4000.0, 7000.0, 6), (2.0, 5.0, 5), (-1.0, 0.5, 4)),
    )  # fmt: skip
    epi = {"R_bias": np.stack([np.asarray(emu.extinction.bias) + d for d in (0.0, 0.1, -0.1)])}
    return StellarModel(
        emulator=emu,
        validity_grid=grid,
        history=[{"iteration": 0, "loss": np.float32(0.5), "chi2_p50": 0.9}],
        config={"train": {"epochs": 25, "lr": 1e-3}},
        meta={"training_set_hash": hash_arrays(theta)},
        epistemic=epi,
        residual_floor=np.full(13, 0.01),
    )


@pytest.fixture(scope="module")
def saved():
    d = tempfile.TemporaryDirectory()
    path = Path(d.name) / "m.bdsm"
    model = small_model()
    save_model(model, path)
    yield model, path, path.read_bytes()
    d.cleanup()


def test_round_trip(saved):
    model, path, _ = saved
    back = load_model(path)
    for k, v in emulator_arrays(model.emulator).items():
        w = emulator_arrays(back.emulator)[k]
        assert w.dtype == v.dtype
        np.testing.assert_array_equal(w, v)
    np.testing.assert_array_equal(back.validity_grid.density, model.validity_grid.density)
    assert back.validity_grid.names == model.validity_grid.names
    assert back.history == [{"iteration": 0, "loss": 0.5, "chi2_p50": 0.9}]
    assert back.config == model.config
    assert back.meta["training_set_hash"] == model.meta["training_set_hash"]
    np.testing.assert_array_equal(back.residual_floor, model.residual_floor)
    np.testing.assert_array_equal(back.epistemic["R_bias"], model.epistemic["R_bias"])
    assert len(back.epistemic_emulators()) == 3
    theta = np.array([5500.0, 4.0, 0.0])
    assert float(back.validity(theta, "BP")) == pytest.approx(float(model.validity(theta, "BP")))
    head = read_header(path)
    assert head["format_version"] == FORMAT_VERSION
    assert head["bands"][0] == "G" and len(head["B"]) == 13
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_overwrite_is_atomic_and_leaves_no_temp(tmp_path):
    path = tmp_path / "m.bdsm"
    save_model(small_model(), path)
    save_model(small_model(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["m.bdsm"]


def _load_bytes(blob: bytes):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.bdsm"
        p.write_bytes(blob)
        return load_model(p)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_changed_byte_is_refused(saved, data):
    _, _, blob = saved
    pos = data.draw(st.integers(0, len(blob) - 1))
    flip = data.draw(st.integers(1, 255))
    bad = bytearray(blob)
    bad[pos] ^= flip
    with pytest.raises(ModelFileError):
        _load_bytes(bytes(bad))


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_truncated_file_is_refused(saved, data):
    _, _, blob = saved
    n = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(ModelFileError):
        _load_bytes(blob[:n])


def test_newer_format_version_is_refused(saved):
    _, _, blob = saved
    (hlen,) = struct.unpack("<Q", blob[8:16])
    header = json.loads(blob[16 : 16 + hlen])
    header["format_version"] = FORMAT_VERSION + 1
    new = json.dumps(header).encode()
    pad = -(16 + len(new)) % 64
    body = blob[16 + hlen + (-(16 + hlen) % 64) : -40]
    out = blob[:8] + struct.pack("<Q", len(new)) + new + b"\0" * pad + body
    out += b"BDSMEND1" + hashlib.sha256(out).digest()
    with pytest.raises(ModelFileError, match="newer"):
        _load_bytes(out)


def test_not_a_model_file(tmp_path):
    p = tmp_path / "x.bdsm"
    p.write_text("hello")
    with pytest.raises(ModelFileError, match="magic"):
        load_model(p)
    with pytest.raises(ModelFileError, match="no such"):
        load_model(tmp_path / "missing.bdsm")
