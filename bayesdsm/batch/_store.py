"""On-disk side of a batch run: partition discovery, atomic Parquet files, the manifest.

Layout of an output directory::

    OUT_DIR/
      manifest.json              what is done (written atomically by the driver)
      partitions/<name>.parquet  one result file per input partition (atomic)

A partition's ``name`` is its input file's path relative to the catalog directory, without
the ``.parquet`` suffix (``part-00003``, or ``Norder=1/Dir=0/Npix=44`` for HATS), so result
files mirror the input layout. Every result file carries, in its Parquet schema metadata
under :data:`META_KEY`, the run identity (model and config hashes, seed) and the input
file's fingerprint, so a file written by a worker whose client died can be adopted.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bayesdsm._util import atomic_path

__all__ = ["Partition", "discover_partitions", "is_hats", "Manifest", "META_KEY"]

META_KEY = b"bayesdsm.batch"
MANIFEST_FORMAT = "bayesdsm-batch-1"
#: Prefix of the temporary files of :func:`bayesdsm._util.atomic_path` (a killed worker
#: may leave one behind; :func:`remove_temporaries` deletes them).
TMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class Partition:
    """One input partition.

    Attributes:
        name: stable name (relative path without suffix); also names the result file.
        path: the input Parquet file.
        fingerprint: size and modification time of ``path`` ("<bytes>:<mtime_ns>").
    """

    name: str
    path: str
    fingerprint: str


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


def is_hats(directory) -> bool:
    """True when ``directory`` is a HATS catalog (it has HATS ``properties``)."""
    d = Path(directory)
    names = ("properties", "hats.properties", "collection.properties")
    return any((d / n).is_file() for n in names)


def hats_main_catalog(directory):
    """The HATS catalog of ``directory`` (the main catalog of a collection) and its path."""
    import hats

    cat = hats.read_hats(directory)
    cat = getattr(cat, "main_catalog", cat)
    return cat, Path(str(cat.catalog_path))


def _hats_files(directory: Path) -> list[Path]:
    from hats.io import paths

    cat, base = hats_main_catalog(directory)
    return [Path(str(paths.pixel_catalog_file(base, p))) for p in cat.get_healpix_pixels()]


def discover_partitions(directory) -> list[Partition]:
    """The partitions of a catalog directory: its Parquet files, or a HATS catalog's pixels.

    Files and directories whose name starts with ``.`` or ``_`` are skipped (Dask's
    ``_metadata``, temporary files).

    Raises:
        FileNotFoundError: the directory does not exist or holds no Parquet file.
    """
    d = Path(directory)
    if not d.is_dir():
        raise FileNotFoundError(f"catalog directory {d} does not exist")
    if is_hats(d):
        files = _hats_files(d)
    else:
        files = sorted(
            p
            for p in d.rglob("*.parquet")
            if not any(part.startswith((".", "_")) for part in p.relative_to(d).parts)
        )
    if not files:
        raise FileNotFoundError(
            f"no Parquet files in {d}; expected one file per partition (e.g. part-00000.parquet"
            " as written by dask.dataframe.to_parquet) or a HATS catalog"
        )
    out = []
    for f in files:
        name = f.relative_to(d).with_suffix("").as_posix()
        out.append(Partition(name, str(f), _fingerprint(f) if f.exists() else "missing"))
    return out


def result_path(out_dir, name: str) -> Path:
    """Where the result file of partition ``name`` goes."""
    return Path(out_dir) / "partitions" / f"{name}.parquet"


def write_parquet_atomic(table, path: Path) -> None:
    """Write a pyarrow Table to ``path`` through a temporary file and ``os.replace``."""
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_file_identity(path: Path) -> dict | None:
    """The :data:`META_KEY` metadata of a result file, or None if unreadable/absent."""
    import pyarrow.parquet as pq

    try:
        meta = pq.read_schema(path).metadata or {}
        return json.loads(meta[META_KEY])
    except Exception:  # noqa: BLE001 - any unreadable file simply is not adopted
        return None


def remove_temporaries(out_dir) -> int:
    """Delete temporary files left by killed workers; returns how many."""
    n = 0
    root = Path(out_dir) / "partitions"
    if root.is_dir():
        for p in root.rglob(f"{TMP_PREFIX}*"):
            p.unlink(missing_ok=True)
            n += 1
    return n


def json_hash(obj: Any) -> str:
    """sha256 of the canonical JSON of ``obj``."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    raise TypeError(f"not JSON serialisable: {type(v).__name__}")


class Manifest:
    """What a batch run has done, kept in ``OUT_DIR/manifest.json``.

    ``identity`` (model sha256, config sha256, seed, partition function) is fixed for an
    output directory; ``partitions`` maps a name to its last record (``status`` is
    ``"done"`` or ``"failed"``, plus stars, flags, seconds, worker, reason...); ``runs``
    lists each invocation's summary. Saves are atomic (temporary file + ``os.replace``).
    """

    def __init__(self, out_dir, identity: dict, *, input: str):
        self.path = Path(out_dir) / "manifest.json"
        self.identity = dict(identity)
        self.input = input
        self.partitions: dict[str, dict] = {}
        self.runs: list[dict] = []
        self._last_save = 0.0

    @classmethod
    def open(cls, out_dir, identity: dict, *, input: str) -> Manifest:
        """Load the manifest of ``out_dir`` (or start one); the identity must match."""
        from bayesdsm.batch._errors import BatchError

        m = cls(out_dir, identity, input=input)
        if m.path.exists():
            data = json.loads(m.path.read_text())
            if data.get("format") != MANIFEST_FORMAT:
                raise BatchError(f"{m.path} is not a bayesdsm batch manifest")
            old = data.get("identity", {})
            diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            if diff:
                raise BatchError(
                    f"{m.path.parent} holds results of a different run (differs in "
                    f"{', '.join(diff)}); use a new output directory, or delete this one"
                )
            m.partitions = dict(data.get("partitions", {}))
            m.runs = list(data.get("runs", []))
        return m

    def is_done(self, part: Partition, out_dir) -> bool:
        """Done in this manifest, from the same input file, and the result file exists."""
        rec = self.partitions.get(part.name)
        return bool(
            rec
            and rec.get("status") == "done"
            and rec.get("fingerprint") == part.fingerprint
            and result_path(out_dir, part.name).exists()
        )

    def adoptable(self, part: Partition, out_dir) -> dict | None:
        """The identity of an orphan result file written for this run and input, if any."""
        path = result_path(out_dir, part.name)
        if not path.exists():
            return None
        ident = read_file_identity(path)
        if not ident:
            return None
        same = all(ident.get(k) == v for k, v in self.identity.items())
        return ident if same and ident.get("fingerprint") == part.fingerprint else None

    def record(self, name: str, rec: dict) -> None:
        self.partitions[name] = rec

    def save(self, *, every: float = 0.0) -> None:
        """Write atomically; with ``every`` > 0, at most once per ``every`` seconds."""
        now = time.monotonic()
        if every and now - self._last_save < every:
            return
        data = {
            "format": MANIFEST_FORMAT,
            "identity": self.identity,
            "input": self.input,
            "partitions": dict(sorted(self.partitions.items())),
            "runs": self.runs,
        }
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(data, indent=1, default=_plain))
        self._last_save = now

    def done_files(self, out_dir, names=None) -> list[Path]:
        """Result files of the done partitions (all, or those in ``names``), in name order."""
        keep = [
            n
            for n, r in sorted(self.partitions.items())
            if r.get("status") == "done" and (names is None or n in names)
        ]
        return [result_path(out_dir, n) for n in keep]
