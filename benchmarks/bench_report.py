"""Wall time of ``bayesdsm report`` (:func:`bayesdsm.report.make_report`) on a large catalog.

The catalog is the 5,000 real dev stars of the Green 2020 release, resampled with
replacement to ``--n`` stars (θ̂ jittered by its own errors so rows differ), run through
the §3 cuts, and reported with the released model (with its validity grid). Everything
is timed in one process from a cold start, so JAX compilation is included.

Usage::

    BAYESDSM_GREEN2020_DIR=/path/to/green2020 python benchmarks/bench_report.py
    python benchmarks/bench_report.py --n 100000 --out /tmp/bench_report
    python benchmarks/bench_report.py --write BENCHMARKS.md   # append a row

The per-step times (diagnostics, shared context, each figure) come from
``summary.json``'s ``timing_s``.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402


def big_catalog(directory: Path, n: int, seed: int = 0):
    from bayesdsm.catalog import read_catalog
    from bayesdsm.config import CutsConfig
    from bayesdsm.cuts import prepare

    cat = read_catalog(directory / "green2020_test_data_dev.h5", preset="green2020")
    cat = prepare(cat, CutsConfig())[0]
    rng = np.random.default_rng(seed)
    big = cat.subset(rng.integers(0, len(cat), n))
    jitter = np.einsum("nij,nj->ni", np.linalg.cholesky(big.theta_cov), rng.standard_normal((n, 3)))
    return big.replace(theta=big.theta + jitter)


def _load() -> str:
    """The load average (1, 5, 15 min) as "a / b / c", or "n/a"."""
    if not hasattr(os, "getloadavg"):
        return "n/a"
    return " / ".join(f"{v:.1f}" for v in os.getloadavg())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="stars in the catalog")
    ap.add_argument("--out", default=None, help="report folder (default: a temporary one)")
    ap.add_argument("--write", default=None, help="append the result to this Markdown file")
    args = ap.parse_args(argv)
    directory = Path(os.environ.get("BAYESDSM_GREEN2020_DIR", "../shared/green2020"))
    load0 = _load()
    t0 = time.perf_counter()
    cat = big_catalog(directory, args.n)
    t_cat = time.perf_counter() - t0
    from bayesdsm.report import make_report

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        t1 = time.perf_counter()
        res = make_report(directory, cat, out, progress=False)
        wall = time.perf_counter() - t1
    timing = res.summary["timing_s"]
    figs = sum(v for k, v in timing.items() if k not in ("diagnostics", "context", "total"))
    load1 = _load()
    row = (
        f"| {args.n:,} | {wall:.1f} | {timing['diagnostics']:.1f} | {timing['context']:.1f} | "
        f"{figs:.1f} | {len(res.figures)} | {os.cpu_count()} CPU, load (1/5/15 min) "
        f"{load0} at start, {load1} at end, {platform.machine()} |"
    )
    print(f"catalog built in {t_cat:.1f} s (not part of the report)")
    print(
        "| stars | report wall (s) | diagnostics (s) | context (s) | figures (s) | "
        "figures | machine |"
    )
    print("|---|---|---|---|---|---|---|")
    print(row)
    print(res.summary["findings"])
    if args.write:
        with open(args.write, "a") as fh:
            fh.write(row + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
