"""Survey-scale throughput: 1 vs 2 local Dask workers in one run, and a projection to N machines.

    python benchmarks/bench_batch.py --stars 8000 --partitions 40 [--method laplace]
        [--batch-size 256] [--engine module:function] [--write FILE]
    python benchmarks/bench_batch.py --svi     # training step cost, for docs/scaling.md

The engine is the real one (``bayesdsm.batch.infer_partition`` → ``bayesdsm.infer``), flat θ
prior, ``--method`` (default ``laplace``: MAP + Laplace + PSIS, no MCMC). The catalog is
simulated (flat-θ / volume prior, truth from a freshly initialised emulator, all bands
observed) and split into equal Parquet partitions. Each worker count runs the whole
catalog into a fresh output directory on a fresh LocalCluster. The projection to N
machines of W workers each uses the measured steady per-partition time t_p (partitions
after each worker's first), the first-partition overhead t_0 (imports + JIT, paid once
per worker), and the per-task scheduling overhead t_s = (wall - Σ t_p / W) / n_partitions:

    T(P partitions, N machines × W workers) ≈ t_start + t_0 + P · (t_p / (N·W) + t_s / N)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def make_catalog(n_stars: int, n_parts: int, directory: Path):
    """Simulate ``n_stars`` (flat-θ / volume prior, emulator truth) into ``n_parts`` files."""
    import jax

    from bayesdsm import infer
    from bayesdsm.catalog import Catalog, write_catalog
    from bayesdsm.emulator import init_emulator

    emu = init_emulator(jax.random.PRNGKey(0))
    post = infer.build_posterior(emu, infer.InferConfig(theta_prior="flat"))
    rng = np.random.default_rng(3)
    theta, mu, ebv = infer.draw_prior_truth(post, n_stars, rng)
    s = infer.simulate_stars(post, theta, mu, ebv, rng)
    n = n_stars
    cat = Catalog(
        bands=tuple(emu.bands),
        theta=np.full((n, 3), np.nan),
        theta_cov=np.full((n, 3, 3), np.nan),
        mag=np.asarray(s.mag),
        mag_err=np.sqrt(s.var),
        observed=np.asarray(s.mask),
        parallax=s.plx,
        parallax_err=s.plx_err,
        parallax_ok=np.ones(n, bool),
        ebv=s.ebv,
        ebv_err=s.ebv_err,
        survey=np.array(["sim"] * n),
        source_id=np.arange(1, n + 1, dtype=np.int64),
    )
    directory.mkdir(parents=True, exist_ok=True)
    for i, idx in enumerate(np.array_split(np.arange(n), n_parts)):
        write_catalog(cat.subset(idx), directory / f"part-{i:05d}.parquet")
    return emu


def run_once(emu, cat_dir, out_dir, workers, engine, config):
    from bayesdsm import batch

    t0 = time.perf_counter()
    run = batch.infer_partitions(
        emu,
        cat_dir,
        out_dir,
        scheduler=f"local:{workers}",
        config=config,
        seed=1,
        partition_fn=engine,
        progress=False,
        dashboard=False,
    )
    total = time.perf_counter() - t0
    recs = json.loads((Path(out_dir) / "manifest.json").read_text())["partitions"]
    first, steady, seen = [], [], set()
    for name in sorted(recs):
        r = recs[name]
        (steady if r["worker"] in seen else first).append(r["seconds"])
        seen.add(r["worker"])
    s = run.summary
    return {
        "workers": workers,
        "stars_per_s": s.stars_per_second,
        "wall_s": s.seconds,
        "startup_s": s.startup_seconds,
        "total_s": total,
        "t_first_s": float(np.mean(first)),
        "t_part_s": float(np.median(steady)) if steady else float("nan"),
        "sched_s": max(s.seconds - sum(steady + first) / workers, 0.0) / len(recs),
        "n_stars": s.n_stars,
        "failed": s.n_failed,
    }


def time_svi_step(batch_size: int = 1024, n_steps: int = 1000) -> float:
    """Seconds per jitted ``svi.update`` of the emulator fit (docs/scaling.md, training)."""
    import jax
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta

    from bayesdsm.emulator import init_emulator
    from bayesdsm.likelihood import StarData
    from bayesdsm.model import emulator_model

    emu = init_emulator(jax.random.PRNGKey(0))
    rng, nb, f, b = np.random.default_rng(0), 13, np.float32, batch_size
    stars = StarData(
        mag=rng.normal(15, 1, (b, nb)).astype(f),
        mask=np.ones((b, nb), f),
        mag_err=np.full((b, nb), 0.03, f),
        theta=np.tile(np.array([5500, 4.2, -0.2], f), (b, 1)),
        theta_chol=np.tile(np.diag([50, 0.1, 0.05]).astype(f), (b, 1, 1)),
        mu=np.full(b, 10.0, f),
        sigma_mu=np.full(b, 0.1, f),
        has_parallax=np.ones(b, f),
        ebv=np.full(b, 0.1, f),
        ebv_err=np.full(b, 0.03, f),
    )
    w = np.tile(np.eye(nb, 5, dtype=f), (b, 1, 1))
    svi = SVI(emulator_model, AutoDelta(emulator_model), optax.adam(1e-3), Trace_ELBO())
    state = svi.init(jax.random.PRNGKey(1), emu, stars, w, n_total=2_900_000)
    step = jax.jit(lambda st: svi.update(st, emu, stars, w, n_total=2_900_000))
    state, loss = step(state)
    jax.block_until_ready(loss)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        state, loss = step(state)
    jax.block_until_ready(loss)
    return (time.perf_counter() - t0) / n_steps


def _load() -> str:
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())


def main():
    from bayesdsm.batch import DEFAULT_ENGINE

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stars", type=int, default=8000)
    ap.add_argument("--partitions", type=int, default=40)
    ap.add_argument("--method", default="laplace", help="InferConfig.method (default laplace)")
    ap.add_argument("--batch-size", type=int, default=256, help="InferConfig.batch_size")
    ap.add_argument("--engine", default=DEFAULT_ENGINE, help="partition_fn (module:function)")
    ap.add_argument("--write", metavar="FILE", help="append the markdown table to FILE")
    ap.add_argument("--svi", action="store_true", help="only time the training step")
    args = ap.parse_args()
    if args.svi:
        for b in (1024, 4096):
            dt = time_svi_step(b)
            print(f"batch {b}: {dt * 1e3:.2f} ms/step, {dt / b * 1e6:.2f} us per star-step")
        return
    config = {"theta_prior": "flat", "method": args.method, "batch_size": args.batch_size}
    load_start = _load()
    work = Path(tempfile.mkdtemp(prefix="bench_batch_"))
    try:
        emu = make_catalog(args.stars, args.partitions, work / "cat")
        rows = [
            run_once(emu, work / "cat", work / f"out{w}", w, args.engine, config) for w in (1, 2)
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    one, two = rows
    size = args.stars // args.partitions
    lines = [
        f"`python benchmarks/bench_batch.py --stars {args.stars} --partitions "
        f"{args.partitions} --method {args.method} --batch-size {args.batch_size}` "
        f"(engine `{args.engine}`, {os.cpu_count()} cores; load average (1/5/15 min) "
        f"{load_start} at the start, {_load()} at the end)",
        "",
        "| workers | stars/s (whole run) | wall (s) | start-up (s) | first partition (s) | "
        "steady partition (s) | steady stars/s | scheduling per task (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steady = r["workers"] * size / r["t_part_s"]
        lines.append(
            f"| {r['workers']} | {r['stars_per_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['startup_s']:.1f} | {r['t_first_s']:.2f} | {r['t_part_s']:.3f} | "
            f"{steady:.0f} | {r['sched_s']:.3f} |"
        )
    ratio = two["stars_per_s"] / one["stars_per_s"]
    steady_ratio = 2 * one["t_part_s"] / two["t_part_s"]
    lines += [
        "",
        f"2-worker / 1-worker throughput ratio (same run): **{ratio:.2f}** whole run, "
        f"**{steady_ratio:.2f}** steady state (after each worker's first partition)",
        "",
    ]
    per_star = two["t_part_s"] / size
    lines.append(
        f"Projection (W = 2 workers per machine, steady {per_star * 1e3:.2f} ms per star "
        f"per worker, {two['sched_s'] * 1e3:.1f} ms scheduling per task, partitions of "
        f"{size} stars):"
    )
    lines += ["", "| machines | stars | hours |", "|---|---|---|"]
    for n_mach in (1, 10, 100):
        for n_stars in (2.9e6, 3e8):
            parts = n_stars / size
            t = (
                two["startup_s"]
                + two["t_first_s"]
                + parts * (two["t_part_s"] / (2 * n_mach) + two["sched_s"] / max(n_mach, 1))
            )
            lines.append(f"| {n_mach} | {n_stars:.3g} | {t / 3600:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
