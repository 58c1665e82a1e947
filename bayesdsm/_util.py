"""Three small helpers shared by the layers: a chunked map over stars, take, atomic write.

Nothing here knows about stars' meaning: ``chunked_map`` and ``take`` act on the leading
axis of any pytree of arrays, and ``atomic_path`` on any file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import numpy as np

__all__ = ["atomic_path", "chunked_map", "take"]


def chunked_map(fn: Callable, n: int, chunk: int, *trees, progress: str | None = None):
    """``fn(*chunks)`` over the leading axis of ``trees``, in padded chunks, as NumPy.

    The chunk size is ``min(chunk, 2**ceil(log2 n))``, so a small input compiles a small
    program and every chunk of one call has the same shape (the last is padded by
    repeating its final row, and the padding is dropped from the output).

    Args:
        fn: a (jitted) function of one chunk of each tree, returning a pytree of arrays
            whose leading axis is the chunk's.
        n: the number of rows (the trees' common leading length); must be > 0.
        chunk: the largest chunk.
        *trees: pytrees of arrays with leading axis ``n``.
        progress: a label for a tqdm progress bar over the chunks (None: no bar).

    Returns:
        ``fn``'s output pytree with leading axis ``n``, as NumPy arrays.
    """
    if n <= 0:
        raise ValueError("chunked_map needs at least one row")
    size = min(chunk, 1 << max(n - 1, 1).bit_length())
    starts = range(0, n, size)
    if progress is not None:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=progress, unit="chunk")
    outs = []
    for start in starts:
        m = min(size, n - start)

        def piece(a, start=start, m=m):
            a = a[start : start + m]
            if m < size:
                a = np.concatenate([a, np.repeat(a[-1:], size - m, axis=0)])
            return a

        out = fn(*jax.tree_util.tree_map(piece, trees))
        outs.append(jax.tree_util.tree_map(lambda x, m=m: np.asarray(x)[:m], out))
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *outs)


def take(tree, idx):
    """The rows ``idx`` of every leaf of ``tree`` (leading axis)."""
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


@contextlib.contextmanager
def atomic_path(path, *, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces ``path`` when the block succeeds.

    Write the file to the yielded path; on a clean exit it is renamed onto ``path``
    (``os.replace``, atomic on one file system), so a reader sees the old file or the
    whole new one, never a part. On an error the temporary file is removed. The parent
    folder is created if needed. The temporary name keeps ``path``'s suffix, so writers
    that pick a format from the extension still do.

    Args:
        path: the final file.
        fsync: flush the temporary file to disk before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex[:12]}-{path.name}")
    try:
        yield tmp
        if fsync and tmp.exists():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
