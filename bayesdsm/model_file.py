"""Self-describing model files: a JSON header plus raw arrays, no pickle.

A :class:`StellarModel` is what ``bayesdsm fit`` writes and ``evaluate``/``predict``/
``infer`` read: the emulator, its validity density, the training history and config,
metadata, and optional epistemic samples and residual floors.

File layout (``FORMAT_NAME`` version ``FORMAT_VERSION``), all integers little-endian::

    b"BDSMODEL"                       8-byte magic
    uint64 H                          length of the header in bytes
    H bytes                           UTF-8 JSON header (see below)
    zero padding to a multiple of 64
    array bytes                       each array C-contiguous, 64-byte aligned
    b"BDSMEND1" + 32 bytes            SHA-256 of every byte before this trailer

The header holds ``format``, ``format_version``, ``package_version``, ``created``,
``bands``, ``B`` (the magnitude-to-colour matrix), ``normalizer`` (θ median and std),
``emulator`` (architecture), ``config``, ``history``, ``meta`` (incl.
``training_set_hash``), ``validity`` (component names, or null) and ``arrays``: for
each array its ``dtype`` (NumPy ``str``), ``shape``, ``offset`` (from the start of the
data block), ``nbytes`` and ``sha256``. Array names: ``emulator/<name>`` (names of
:func:`bayesdsm.emulator.emulator_arrays`), ``validity/teff|logg|feh|density``,
``epistemic/<name>`` and ``residual_floor``.

Files are written atomically (temporary file in the same folder, fsync, ``os.replace``).
:func:`load_model` refuses a file with a wrong magic, a newer format version, a
truncated body or any changed byte (:class:`~bayesdsm.errors.ModelFileError`).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

from bayesdsm._util import atomic_path
from bayesdsm.conventions import b_matrix
from bayesdsm.emulator import Emulator, EmulatorConfig, emulator_arrays, emulator_from_arrays
from bayesdsm.errors import ConfigError, ModelFileError
from bayesdsm.validity import ValidityGrid, validity_at

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "StellarModel",
    "save_model",
    "load_model",
    "read_header",
    "hash_arrays",
    "import_green2020",
]

FORMAT_NAME = "bayesdsm-model"
FORMAT_VERSION = 1
_MAGIC = b"BDSMODEL"
_TRAILER = b"BDSMEND1"
_ALIGN = 64


@dataclass(frozen=True, eq=False)
class StellarModel:
    """A trained emulator with everything needed to use and audit it.

    Attributes:
        emulator: the :class:`~bayesdsm.emulator.Emulator`.
        validity_grid: training density (§6), or None.
        history: one JSON-able dict per training iteration (losses, cuts, lr, ...).
        config: the configuration the model was trained with (JSON-able dict).
        meta: further metadata, e.g. ``training_set_hash`` (see :func:`hash_arrays`),
            ``source``. ``package_version``, ``bands``, ``B`` and ``normalizer`` are
            written from the emulator itself when saving.
        epistemic: weight samples for a predictive spread: ``{site name: (S, ...)}``
            with names of :func:`bayesdsm.emulator.emulator_arrays` and S ≥ 2 draws
            from the weight posterior (e.g. an SVI guide); sites not given keep the
            point estimate of ``emulator``. None when the model has none.
        residual_floor: (n_bands,) extra magnitude scatter (mag) per band, or None.
    """

    emulator: Emulator
    validity_grid: ValidityGrid | None = None
    history: list[dict] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    epistemic: dict[str, np.ndarray] | None = None
    residual_floor: np.ndarray | None = None

    def __post_init__(self):
        if self.residual_floor is not None:
            rf = np.asarray(self.residual_floor, np.float64)
            if rf.shape != (self.emulator.n_bands,):
                raise ConfigError(
                    f"residual_floor has shape {rf.shape}, expected ({self.emulator.n_bands},)"
                )
            object.__setattr__(self, "residual_floor", rf)
        if self.epistemic is not None:
            ref = emulator_arrays(self.emulator)
            for name, arr in self.epistemic.items():
                if name not in ref or np.shape(arr)[1:] != np.shape(ref[name]):
                    raise ConfigError(
                        f"epistemic sample {name!r} of shape {np.shape(arr)} does not match an "
                        "emulator array (S, *shape); names: " + ", ".join(ref)
                    )

    @property
    def bands(self) -> tuple[str, ...]:
        return self.emulator.bands

    def validity(self, theta, band: str):
        """Validity density of ``band`` (or ``"parallax"``) at θ (..., 3); JAX-traceable."""
        if self.validity_grid is None:
            raise ConfigError("this model has no validity density (validity_grid is None)")
        return validity_at(self.validity_grid, theta, band)

    def epistemic_emulators(self) -> list[Emulator]:
        """One emulator per epistemic weight sample (empty without samples)."""
        if not self.epistemic:
            return []
        n = {len(v) for v in self.epistemic.values()}
        if len(n) != 1:
            raise ConfigError(f"epistemic samples have different lengths {sorted(n)}")
        base = {k: np.asarray(v) for k, v in emulator_arrays(self.emulator).items()}
        out = []
        for s in range(n.pop()):
            arrays = dict(base)
            arrays.update({k: np.asarray(v[s]) for k, v in self.epistemic.items()})
            out.append(_numpy_emulator(self.emulator.config, arrays))
        return out


def hash_arrays(*arrays) -> str:
    """SHA-256 (hex) of arrays' dtypes, shapes and bytes: a training-set fingerprint."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray | tuple):
        return np.asarray(obj).tolist()
    if hasattr(obj, "__array__"):
        return np.asarray(obj).tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")


def _collect_arrays(model: StellarModel) -> dict[str, np.ndarray]:
    arrays = {f"emulator/{k}": np.asarray(v) for k, v in emulator_arrays(model.emulator).items()}
    if model.validity_grid is not None:
        for name, ax in zip(("teff", "logg", "feh"), model.validity_grid.axes):
            arrays[f"validity/{name}"] = np.asarray(ax)
        arrays["validity/density"] = np.asarray(model.validity_grid.density)
    for k, v in (model.epistemic or {}).items():
        arrays[f"epistemic/{k}"] = np.asarray(v)
    if model.residual_floor is not None:
        arrays["residual_floor"] = np.asarray(model.residual_floor)
    return arrays


def save_model(model: StellarModel, path) -> Path:
    """Write ``model`` to ``path`` atomically (see the module docstring for the layout)."""
    from bayesdsm import __version__

    path = Path(path)
    emu = model.emulator
    arrays = {k: np.ascontiguousarray(v) for k, v in _collect_arrays(model).items()}
    index, offset = {}, 0
    for name, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise ConfigError(f"array {name!r} has dtype {a.dtype}: only numbers are stored")
        index[name] = {
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "offset": offset,
            "nbytes": a.nbytes,
            "sha256": hashlib.sha256(a.tobytes()).hexdigest(),
        }
        offset += -(-a.nbytes // _ALIGN) * _ALIGN
    cfg = emu.config
    header = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "bands": list(emu.bands),
        "B": b_matrix(emu.n_bands).tolist(),
        "normalizer": {
            "median": np.asarray(emu.normalizer.median, np.float64).tolist(),
            "std": np.asarray(emu.normalizer.std, np.float64).tolist(),
        },
        "emulator": {
            "bands": list(cfg.bands),
            "hidden": list(cfg.hidden),
            "activation": cfg.activation,
            "n_components": cfg.n_components,
        },
        "config": model.config,
        "history": list(model.history),
        "meta": model.meta,
        "validity": None if model.validity_grid is None else list(model.validity_grid.names),
        "data_nbytes": offset,
        "arrays": index,
    }
    hbytes = json.dumps(header, default=_json_default, ensure_ascii=False).encode("utf-8")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        digest = hashlib.sha256()

        def write(b):
            fh.write(b)
            digest.update(b)

        write(_MAGIC)
        write(struct.pack("<Q", len(hbytes)))
        write(hbytes)
        write(b"\0" * (-(len(_MAGIC) + 8 + len(hbytes)) % _ALIGN))
        for a in arrays.values():
            b = a.tobytes()
            write(b)
            write(b"\0" * (-len(b) % _ALIGN))
        fh.write(_TRAILER + digest.digest())
        fh.flush()
        os.fsync(fh.fileno())
    return path


def _bad(path, what: str) -> ModelFileError:
    return ModelFileError(
        f"{path}: {what}; the file is damaged or not a bayesdsm model: write it again "
        "(bayesdsm fit / import-green2020) or restore it from a copy"
    )


def _parse(path, blob: bytes) -> tuple[dict, int]:
    if len(blob) < 16 or blob[:8] != _MAGIC:
        raise _bad(path, "not a bayesdsm model file (wrong magic bytes)")
    (hlen,) = struct.unpack("<Q", blob[8:16])
    if 16 + hlen > len(blob):
        raise _bad(path, "truncated header")
    try:
        header = json.loads(blob[16 : 16 + hlen].decode("utf-8"))
        fmt, version = header["format"], int(header["format_version"])
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise _bad(path, f"unreadable header ({exc})") from None
    if fmt != FORMAT_NAME:
        raise _bad(path, f"format {fmt!r} is not {FORMAT_NAME!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path}: model file format version {version} is newer than this bayesdsm "
            f"reads (≤ {FORMAT_VERSION}); upgrade bayesdsm to load it"
        )
    return header, 16 + hlen + (-(16 + hlen) % _ALIGN)


def read_header(path) -> dict:
    """The JSON header of a model file (checks magic and version, not the arrays)."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(16)
        if len(head) == 16 and head[:8] == _MAGIC:
            head += fh.read(struct.unpack("<Q", head[8:16])[0])
    return _parse(path, head)[0]


def load_model(path, dtype=None) -> StellarModel:
    """Read a model file written by :func:`save_model`.

    Args:
        path: the file.
        dtype: cast the emulator's arrays to this dtype (JAX arrays). By default the
            emulator's leaves are the stored NumPy arrays, bit for bit (float64 for an
            imported model); JAX converts them on use (to float32 unless x64 is enabled),
            and ``model.emulator.astype(jnp.float64)`` inside ``jax.enable_x64(True)``
            gives the exact float64 emulator.

    Raises:
        ModelFileError: missing file, wrong magic, newer format version, truncation,
            or any byte changed (SHA-256 mismatch).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    blob = path.read_bytes()
    header, start = _parse(path, blob)
    try:
        end = start + int(header["data_nbytes"])
    except (KeyError, TypeError, ValueError):
        raise _bad(path, "header without a valid data size") from None
    if end < start or len(blob) != end + len(_TRAILER) + 32:
        raise _bad(path, f"size {len(blob)} bytes does not match its header (truncated?)")
    if blob[end : end + 8] != _TRAILER:
        raise _bad(path, "missing end marker (truncated?)")
    if hashlib.sha256(blob[:end]).digest() != blob[end + 8 :]:
        raise _bad(path, "SHA-256 checksum mismatch (changed or corrupted bytes)")
    arrays = {}
    for name, info in header["arrays"].items():
        a0 = start + info["offset"]
        raw = blob[a0 : a0 + info["nbytes"]]
        if hashlib.sha256(raw).hexdigest() != info["sha256"]:
            raise _bad(path, f"SHA-256 mismatch in array {name!r}")
        arrays[name] = np.frombuffer(raw, np.dtype(info["dtype"])).reshape(info["shape"]).copy()
    emu = _emulator(path, header["emulator"], arrays, dtype)
    grid = None
    if header.get("validity") is not None:
        grid = ValidityGrid(
            tuple(arrays[f"validity/{n}"] for n in ("teff", "logg", "feh")),
            arrays["validity/density"],
            tuple(header["validity"]),
        )
    epi = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("epistemic/")}
    return StellarModel(
        emulator=emu,
        validity_grid=grid,
        history=header["history"],
        config=header["config"],
        meta={**header["meta"], "package_version": header["package_version"],
              "created": header["created"], "format_version": header["format_version"]},
        epistemic=epi or None,
        residual_floor=arrays.get("residual_floor"),
    )  # fmt: skip


def _emulator(path, e: dict, arrays: dict, dtype) -> Emulator:
    """The emulator of a file's header ``e`` and arrays; refuses an unsupported K or an
    array of the wrong shape with a :class:`~bayesdsm.errors.ModelFileError`."""
    n_comp = e.get("n_components", 1)  # files before K existed have one component
    if n_comp not in (1, 2):
        raise ModelFileError(
            f"{path}: the model has n_components={n_comp!r} extinction components; this "
            "bayesdsm reads K = 1 or 2. Upgrade bayesdsm, or refit with n_components ≤ 2"
        )
    emu_arrays = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("emulator/")}
    try:
        config = EmulatorConfig(bands=tuple(e["bands"]), hidden=tuple(e["hidden"]),
                                activation=e["activation"], n_components=n_comp)  # fmt: skip
        if dtype is None:
            return _numpy_emulator(config, emu_arrays)
        return emulator_from_arrays(config, emu_arrays, dtype)
    except ConfigError as exc:
        raise ModelFileError(f"{path}: the emulator does not match its header: {exc}") from None


def _numpy_emulator(config: EmulatorConfig, arrays) -> Emulator:
    """An emulator whose leaves are the NumPy arrays themselves (lossless, any dtype)."""
    with jax.enable_x64(True):
        emu = emulator_from_arrays(config, arrays)
    return jax.tree_util.tree_map(np.asarray, emu)


def import_green2020(directory) -> StellarModel:
    """The released Green et al. (2020) model as a :class:`StellarModel`.

    Reads ``green2020_nn_model.h5`` (emulator), ``green2020_theta_normalization.json``
    and ``green2020_input_density.h5`` (as the validity grid) from ``directory``.
    """
    from bayesdsm.green2020 import FILES, load_green2020_emulator
    from bayesdsm.validity import from_green2020

    directory = Path(directory)
    with jax.enable_x64(True):
        emu = jax.tree_util.tree_map(np.asarray, load_green2020_emulator(directory, np.float64))
    files = {k: directory / v for k, v in FILES.items()}
    meta = {
        "source": "green2020",
        "reference": "Green et al. 2021, ApJ 907, 57; doi:10.5281/zenodo.3902382 (MIT)",
        "source_files": {k: {"name": p.name, "sha256": _file_sha(p)} for k, p in files.items()},
        "training_set_hash": None,
    }
    return StellarModel(
        emulator=emu,
        validity_grid=from_green2020(directory),
        history=[],
        config={"imported_from": "green2020", "hidden": [32, 32], "activation": "sigmoid"},
        meta=meta,
    )


def _file_sha(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
