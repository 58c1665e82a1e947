"""Compare the arrays of two model files: are two fits the same, bit for bit?

Used to check that a behaviour-preserving change keeps the default fit's weights:

    bayesdsm fit data/demo_survey.parquet --out before.bdsm   # on the old commit
    bayesdsm fit data/demo_survey.parquet --out after.bdsm    # on the new one
    python benchmarks/same_weights.py before.bdsm after.bdsm

Prints, per array, whether it is bit-identical and else the largest relative difference;
exits 1 if any array differs by more than ``--rtol`` (default 0: bit-identical).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from bayesdsm.model_file import load_model


def _leaves(path) -> dict[str, np.ndarray]:
    import jax

    model = load_model(path)
    flat, _ = jax.tree_util.tree_flatten_with_path(model.emulator)
    out = {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat if hasattr(v, "shape")}
    grid, _ = jax.tree_util.tree_flatten_with_path(model.validity_grid)
    out.update({"validity" + jax.tree_util.keystr(k): np.asarray(v) for k, v in grid})
    return {k: v for k, v in out.items() if np.issubdtype(v.dtype, np.number)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--rtol", type=float, default=0.0)
    args = p.parse_args(argv)
    a, b = _leaves(args.a), _leaves(args.b)
    worst = 0.0
    for k in sorted(set(a) | set(b)):
        if k not in a or k not in b or a[k].shape != b[k].shape:
            print(f"{k}: missing or shape differs")
            worst = np.inf
            continue
        same = np.array_equal(a[k], b[k], equal_nan=True)
        scale = np.maximum(np.abs(a[k]), np.abs(b[k]))
        rel = float(np.nanmax(np.abs(a[k] - b[k]) / np.where(scale > 0, scale, 1.0), initial=0))
        worst = max(worst, rel)
        print(f"{k}: {'identical' if same else f'max rel diff {rel:.3g}'}")
    print(f"largest relative difference: {worst:.3g}")
    return 0 if worst <= args.rtol else 1


if __name__ == "__main__":
    sys.exit(main())
