"""Fixed batch shapes: every jitted engine sees a few star counts only, so it compiles once
per count and process.

A partition's batch is padded to :func:`pad_size` stars (a power of two, at least 8); the
later tiers' subsets of stars, compacted, to :func:`bucket` stars (8 × 4^k). Padding rows
repeat real stars and are dropped from the results.
"""

from __future__ import annotations

import numpy as np

__all__ = ["pad_size", "bucket", "padded", "subset", "rows"]


def pad_size(n: int, minimum: int = 8) -> int:
    """The padded size of a first batch of n stars: the next power of two, ≥ ``minimum``."""
    return max(minimum, 1 << int(np.ceil(np.log2(max(n, 1)))))


def bucket(n: int) -> int:
    """Padded size of a later tier's subset of stars: 8 × 4^k ≥ n. Each size compiles
    once per function; powers of 4 instead of 2 halve the number of sizes (and of
    compilations during a run, which cost more than the padding: measured on 4,096
    stars, 26.5 s while new sizes compiled against 22.0 s once all had)."""
    size = 8
    while size < n:
        size *= 4
    return size


def padded(n: int):
    """(bucket(n),) positions 0..n−1, then 0 repeated: a subset of n padded to its bucket."""
    return np.concatenate([np.arange(n), np.zeros(bucket(n) - n, int)])


def rows(modes, idx):
    """The rows ``idx`` of a NumPy :class:`LaplaceModes`-like tuple (None fields kept)."""
    return type(modes)(*(None if a is None else np.asarray(a)[idx] for a in modes))


def subset(tree, sel):
    """The rows ``sel`` of every leaf of ``tree``, as JAX arrays."""
    import jax
    import jax.numpy as jnp

    return jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a)[sel]), tree)
