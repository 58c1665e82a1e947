"""Steady-state throughput of the `auto` engine under InferConfig variants, same run.

The stars of ``bench_infer.py`` (simulated from the released Green 2020 model). The
engine is warmed once (a batch per variant, then :func:`bayesdsm.infer.warm_up`); then the
same stars are timed under the default config and each variant, alternating, ``--repeat``
times, so every variant has its baseline in the same run. Variants may only change
host-side settings that compile nothing new (e.g. ``pareto_k_max``, ``ess_min``).

    BAYESDSM_GREEN2020_DIR=/work/shared/green2020 python benchmarks/bench_infer_variants.py \\
        'k05={"pareto_k_max": 0.5}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="*", help='NAME={"field": value, ...}')
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_infer import _stars, green2020_setup

    from bayesdsm.infer import InferConfig, infer_arrays, warm_up

    cfg = InferConfig(batch_size=args.batch)
    post, dev = green2020_setup(cfg)
    stars = _stars(post, args.n, np.random.default_rng(0), dev)
    variants = {"default": cfg}
    for spec in args.variants:
        name, fields = spec.split("=", 1)
        variants[name] = replace(cfg, **json.loads(fields))
    t = time.time()
    first = np.arange(min(args.batch, args.n))
    for c in variants.values():
        infer_arrays(post, stars.take(first), first, c)
    warm_up(post, stars.take(np.arange(64)), cfg, (8, 32))
    print(json.dumps({"warm_up_s": round(time.time() - t, 1)}), flush=True)
    for rep in range(args.repeat):
        for name, c in variants.items():
            t, methods = time.time(), []
            for lo in range(0, args.n, args.batch):
                rows = np.arange(lo, min(lo + args.batch, args.n))
                methods += list(infer_arrays(post, stars.take(rows), rows, c)["method"])
            dt = time.time() - t
            kinds, counts = np.unique(np.asarray(methods).astype(str), return_counts=True)
            out = {
                "repeat": rep,
                "variant": name,
                "seconds": round(dt, 1),
                "stars_per_s": round(args.n / dt, 1),
                "methods": dict(zip(kinds.tolist(), counts.tolist())),
                "load_avg_1min": round(os.getloadavg()[0], 1),
            }
            print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
