"""Issue 20's numbers that are not on a simulated survey: the real dev stars, and speed.

``--real``: 5-fold cross-validation on the 5,000 real Green 2020 dev stars (as
``recovery_suite.py``'s ``real`` row) with K = 1 and K = 2 in the same run, and one K = 2
fit on all of them: its R₁ at the stars' mean θ̂, the part orthogonal to R₀, against the
passband × blackbody × F99 ∂A/∂R(V) at that Teff (orthogonalised against the learned
R₀, times σ(R(V)) = 0.18): the angle and the length ratio. No tuning: today's defaults
with ``n_components`` set.

``--speed``: training cost per star-epoch, K = 2 against K = 1, in one process on the same
stars, interleaved (K = 1, K = 2, K = 1, K = 2): the epochs' wall time of iterations ≥ 1
(iteration 0 has no R term and includes compilation) over active stars × epochs.

    BAYESDSM_GREEN2020_DIR=../shared/green2020 python benchmarks/bench_variation.py --real
    python benchmarks/bench_variation.py --speed --catalog /tmp/sim.parquet --n 20000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def direction_vs_f99(emu, theta0) -> dict:
    """The learned R₁'s part orthogonal to R₀ at θ₀ against F99's (× σ(R(V)) = 0.18):
    :func:`bayesdsm.report_variation.r1_geometry`."""
    from bayesdsm.report_variation import r1_geometry

    geo = r1_geometry(emu, theta0)
    return {"R1_perp": dict(zip(emu.bands, np.round(geo["R1_perp"], 4).tolist())),
            "F99_perp_x0.18": dict(zip(emu.bands, np.round(geo["theory_perp"], 4).tolist())),
            "angle_deg": geo["angle_deg"], "length_ratio": geo["length_ratio"]}  # fmt: skip


def real(folds: int) -> dict:
    from recovery_suite import fit, score_real
    from suite_surveys import load_real

    from bayesdsm.train import TrainConfig

    cat, _ = load_real()
    out = {}
    for k in (1, 2):
        log(f"[real] K = {k}: {folds}-fold CV")
        r = score_real(cat, TrainConfig(n_components=k), folds)
        pooled = r.get("pooled", {})
        keys = ("n_stars", "mean_chi2_dof_below5", "frac_chi2_dof_above5")
        out[f"K{k}"] = {"status": r["status"], "train_s": r["train_s"],
                        **{key: pooled.get(key) for key in keys}}  # fmt: skip
    log("[real] K = 2 on all stars")
    res, st = fit(cat, TrainConfig(n_components=2))
    if res is not None:
        out["K2_all"] = direction_vs_f99(res.emulator, np.mean(cat.theta, 0))
    else:
        out["K2_all"] = st
    return out


def speed(catalog: str, n: int, iterations: int, epochs: int) -> dict:
    from accept_train import for_training

    from bayesdsm.catalog import read_catalog
    from bayesdsm.train import TrainConfig, train

    cat = read_catalog(catalog)
    cat = for_training(cat.subset(np.arange(min(n, len(cat)))))
    base = TrainConfig(n_iterations=iterations, epochs=epochs)
    per = {1: [], 2: []}
    for k in (1, 2, 1, 2):
        t0 = time.perf_counter()
        res = train(cat, dataclasses.replace(base, n_components=k))
        log(f"[speed] K = {k}: {time.perf_counter() - t0:.1f} s")
        for h in res.history[1:]:
            per[k].append(h["time_epochs_s"] / (h["n_train_active"] * h["epochs"]))
    us = {k: 1e6 * float(np.median(v)) for k, v in per.items()}
    return {"n": len(cat), "iterations": iterations, "epochs": epochs,
            "us_per_star_epoch": us, "ratio_K2_K1": us[2] / us[1]}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--real", action="store_true")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--speed", action="store_true")
    ap.add_argument("--catalog", help="a simulated catalog (for --speed)")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--iterations", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=5)
    args = ap.parse_args(argv)
    out = {}
    if args.speed:
        out["speed"] = speed(args.catalog, args.n, args.iterations, args.epochs)
    if args.real:
        out["real"] = real(args.folds)
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
