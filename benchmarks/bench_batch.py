"""Survey-scale throughput: 1 vs 2 Dask workers, the compile cache, a projection to N machines.

    python benchmarks/bench_batch.py --stars 8000 --partitions 40 [--method laplace]
        [--batch-size 256] [--engine module:function] [--write FILE]
    python benchmarks/bench_batch.py --svi     # training step cost, for docs/scaling.md

The engine is the real one (``bayesdsm.batch.infer_partition`` → ``bayesdsm.infer``), flat θ
prior, ``--method`` (default ``laplace``: MAP + Laplace + PSIS, no MCMC). The catalog is
simulated (flat-θ / volume prior, truth from a freshly initialised emulator, all bands
observed) and split into equal Parquet partitions. Three runs, each of the whole catalog
into a fresh output directory on a fresh LocalCluster, all with one persistent XLA
compilation cache directory (``compile_cache=``, new and empty at the start):

1. 1 worker, cold cache: its first partition compiles the engine;
2. 1 worker, warm cache: a new worker process loads the compiled engine from the cache;
3. 2 workers, warm cache.

The 1 vs 2 worker ratio compares runs 2 and 3 (same cache state); runs 1 and 2 give the
first-partition cost without and with the cache. The projection to N machines of W
workers each uses the measured steady per-partition time t_p (partitions after each
worker's first), the first-partition overhead t_0 (imports + compilation, paid once per
worker; the cold one, as for a machine with an empty cache), and the per-task scheduling
overhead t_s = (wall - Σ t_p / W) / n_partitions:

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
    from bayesdsm.catalog import write_catalog
    from bayesdsm.emulator import init_emulator

    emu = init_emulator(jax.random.PRNGKey(0))
    post = infer.build_posterior(emu, infer.InferConfig(theta_prior="flat"))
    rng = np.random.default_rng(3)
    theta, mu, ebv = infer.draw_prior_truth(post, n_stars, rng)
    s = infer.simulate_stars(post, theta, mu, ebv, rng)
    cat = infer.simulated_catalog(emu.bands, s, np.arange(1, n_stars + 1))
    directory.mkdir(parents=True, exist_ok=True)
    for i, idx in enumerate(np.array_split(np.arange(n_stars), n_parts)):
        write_catalog(cat.subset(idx), directory / f"part-{i:05d}.parquet")
    return emu


def run_once(emu, cat_dir, out_dir, workers, engine, config, cache):
    from bayesdsm import batch

    load = os.getloadavg()[0]
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
        compile_cache=cache,
    )
    total = time.perf_counter() - t0
    recs = json.loads((Path(out_dir) / "manifest.json").read_text())["partitions"]
    first, steady, seen = [], [], set()
    for r in sorted(recs.values(), key=lambda r: r["started"]):  # each worker's first
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
        "compiles": sum(s.compiles.values()),
        "cache_hits": sum(s.cache_hits.values()),
        "load": (load, os.getloadavg()[0]),
    }


def time_svi_step(batch_size: int = 1024, n_steps: int = 1000) -> float:
    """Seconds per jitted ``svi.update`` of the emulator fit (docs/scaling.md, training)."""
    import jax
    import optax
    from numpyro.infer import SVI, Trace_ELBO
    from numpyro.infer.autoguide import AutoDelta

    from bayesdsm.emulator import init_emulator
    from bayesdsm.emulator_model import emulator_model
    from bayesdsm.likelihood import StarData

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


def project(row, t_first, size, n_stars, n_machines, workers_per_machine=2) -> float:
    """Seconds for ``n_stars`` on ``n_machines`` (the docstring's formula)."""
    parts = n_stars / size
    t_p, t_s = row["t_part_s"], row["sched_s"]
    w = workers_per_machine * n_machines
    return row["startup_s"] + t_first + parts * (t_p / w + t_s / n_machines)


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
    cache = work / "xla"
    plan = [(1, "cold"), (1, "warm"), (2, "warm")]
    try:
        emu = make_catalog(args.stars, args.partitions, work / "cat")
        rows = []
        for i, (w, state) in enumerate(plan):
            r = run_once(emu, work / "cat", work / f"out{i}", w, args.engine, config, cache)
            rows.append({**r, "cache": state})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(rows), flush=True)  # raw numbers first
    cold, one, two = rows
    size = args.stars // args.partitions
    lines = [
        f"`python benchmarks/bench_batch.py --stars {args.stars} --partitions "
        f"{args.partitions} --method {args.method} --batch-size {args.batch_size}` "
        f"(engine `{args.engine}`, {os.cpu_count()} cores; load average (1/5/15 min) "
        f"{load_start} at the start, {_load()} at the end)",
        "",
        "| workers | compile cache | stars/s (whole run) | wall (s) | start-up (s) | "
        "first partition (s) | XLA compiles / cache loads | steady partition (s) | "
        "steady stars/s | scheduling per task (s) | load (1 min) start → end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        steady = r["workers"] * size / r["t_part_s"]
        lines.append(
            f"| {r['workers']} | {r['cache']} | {r['stars_per_s']:.1f} | {r['wall_s']:.1f} | "
            f"{r['startup_s']:.1f} | {r['t_first_s']:.2f} | {r['compiles']} / "
            f"{r['cache_hits']} | {r['t_part_s']:.3f} | {steady:.0f} | {r['sched_s']:.3f} | "
            f"{r['load'][0]:.1f} → {r['load'][1]:.1f} |"
        )
    ratio = two["stars_per_s"] / one["stars_per_s"]
    steady_ratio = 2 * one["t_part_s"] / two["t_part_s"]
    lines += [
        "",
        f"First partition of a new worker process: {cold['t_first_s']:.1f} s with an empty "
        f"compile cache, {one['t_first_s']:.1f} s with the cache filled by the previous "
        f"cluster ({cold['t_first_s'] / one['t_first_s']:.1f}x faster).",
        "",
        f"2-worker / 1-worker throughput ratio (same run, both warm cache): **{ratio:.2f}** "
        f"whole run, **{steady_ratio:.2f}** steady state (after each worker's first partition)",
        "",
    ]
    per_star = two["t_part_s"] / size
    lines.append(
        f"Projection (W = 2 workers per machine like this one, steady {per_star * 1e3:.2f} ms "
        f"per star per worker, t_0 = {cold['t_first_s']:.1f} s (cold cache), "
        f"{two['sched_s'] * 1e3:.1f} ms scheduling per task, partitions of {size} stars):"
    )
    lines += ["", "| machines | stars | hours |", "|---|---|---|"]
    for n_mach in (1, 10, 100):
        for n_stars in (2.9e6, 3e8):
            t = project(two, cold["t_first_s"], size, n_stars, n_mach)
            lines.append(f"| {n_mach} | {n_stars:.3g} | {t / 3600:.3g} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        with open(args.write, "a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
