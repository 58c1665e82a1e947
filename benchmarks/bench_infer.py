"""Throughput of per-star inference, all tiers in one run (compile time excluded: a warm-up
batch, then :func:`bayesdsm.infer.warm_up` for the rare tiers; ``--no-warm`` times it too).

Stars are simulated from the released Green 2020 model (truth known): θ from the real
dev stars, d ~ Gamma(3, 1.35 kpc), E ~ |N(0.2, 0.1)|, σ_m = 0.03, σ_ϖ = 0.05 mas.
A star counts as "done" when it meets the bar (PSIS: k̂ ≤ 0.7 and ESS ≥ 200; MCMC:
R̂ ≤ 1.01 and bulk/tail ESS ≥ 200 for every parameter) or is flagged multimodal.

    BAYESDSM_GREEN2020_DIR=/work/shared/green2020 python benchmarks/bench_infer.py --n 10000

Tiers: ``laplace`` (batched multi-start MAP + Laplace), ``auto`` (the batched engine:
MAP+Laplace → PSIS rounds → whitened HMC → longer HMC → NUTS, or flag ``multimodal``),
``vmap_nuts`` (baseline: whitened NUTS vmapped over stars, 2 chains × (400 + 600)),
``mcmc_per_star`` (baseline: one numpyro MCMC per star).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def green2020_setup(cfg):
    """(posterior, θ of the dev stars): the released Green 2020 model as a
    :class:`~bayesdsm.infer.Posterior` under ``cfg`` with its training-density θ prior,
    and the 5,000 dev stars' spectroscopic θ (N, 3) that simulated stars are drawn at."""
    import h5py
    import jax.numpy as jnp

    from bayesdsm.green2020 import load_green2020_density, load_green2020_emulator
    from bayesdsm.infer import build_posterior

    d = os.environ.get("BAYESDSM_GREEN2020_DIR", "/work/shared/green2020")
    with h5py.File(os.path.join(d, "green2020_test_data_dev.h5")) as f:
        dev = np.asarray(f["data"]["atm_param"], np.float64)
    emu = load_green2020_emulator(d, jnp.float32)
    return build_posterior(emu, cfg, theta_density=load_green2020_density(d)), dev


def _stars(post, n, rng, dev):
    from bayesdsm.infer import simulate_stars

    theta = dev[rng.integers(0, len(dev), n)]
    mu = 5 * np.log10(rng.gamma(3.0, 1350.0, n) / 10)
    ebv = np.abs(rng.normal(0.2, 0.1, n))
    s = simulate_stars(post, theta, mu, ebv, rng)
    return s._replace(
        ebv=np.clip(ebv + 0.05 * rng.normal(size=n), 0, None), ebv_err=np.full(n, 0.05)
    )


def _map_worker(rank, n_procs, n, batch, barrier, out):
    """One process per core (the batch layer's layout): pinned, one XLA thread, MAP +
    Laplace on its share of the same n stars, timed from a common start (barrier)."""
    from bayesdsm.batch import LOCAL_WORKER_ENV

    os.environ.update(LOCAL_WORKER_ENV)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {rank % os.cpu_count()})
    import jax

    from bayesdsm.infer import InferConfig, find_modes

    cfg = InferConfig(batch_size=batch)
    post, dev = green2020_setup(cfg)
    stars = _stars(post, n, np.random.default_rng(0), dev)
    mine = np.array_split(np.arange(n), n_procs)[rank]
    chunks = [mine[i : i + batch] for i in range(0, len(mine), batch)]

    def run(rows):
        rows = np.concatenate([rows, np.full(batch - len(rows), rows[0])])  # one shape
        js = stars.take(rows).astype(post.dtype)
        return find_modes(post, js, cfg.n_starts, cfg.map_steps, cfg.mode_barrier)

    jax.block_until_ready(run(chunks[0]))  # compile
    barrier.wait()
    t = time.time()
    for rows in chunks:
        jax.block_until_ready(run(rows))
    out.put((rank, time.time() - t, len(mine)))


def map_per_core(n, batch, n_procs=None):
    """Stars/s of MAP + Laplace with one pinned single-threaded process per core."""
    import multiprocessing as mp

    n_procs = n_procs or os.cpu_count()
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(n_procs), ctx.Queue()
    procs = [
        ctx.Process(target=_map_worker, args=(r, n_procs, n, batch, barrier, out))
        for r in range(n_procs)
    ]
    for p in procs:
        p.start()
    res = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return n / max(r[1] for r in res), n_procs


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--n-baseline", type=int, default=64)
    ap.add_argument("--n-per-star", type=int, default=3)
    ap.add_argument(
        "--second-pass",
        action="store_true",
        help="time the engine on the same stars again (every program compiled: steady state)",
    )
    ap.add_argument(
        "--no-warm",
        action="store_true",
        help="time the batched engine including its compilation (no warm-up batch)",
    )
    ap.add_argument(
        "--warm-tiers",
        default="8,32",
        help="after the warm-up batch, compile every tier for subsets of these sizes "
        "(infer.warm_up); '' for the warm-up batch only",
    )
    ap.add_argument(
        "--map-procs",
        type=int,
        default=0,
        help="also time MAP+Laplace with this many pinned 1-thread processes (0: one per "
        "core, 1: skip)",
    )
    args = ap.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from bayesdsm.infer import InferConfig, find_modes, infer_arrays, nuts_one_star, warm_up
    from bayesdsm.infer.testing import TIERS, pad_size, run_mcmc

    cfg = InferConfig(batch_size=args.batch)
    post, dev = green2020_setup(cfg)
    rng = np.random.default_rng(0)
    stars = _stars(post, args.n, rng, dev)
    ids = np.arange(args.n)
    res = {"n": args.n, "batch": args.batch, "cpu_count": os.cpu_count()}

    def batches():
        for s in range(0, args.n, args.batch):
            yield np.arange(s, min(s + args.batch, args.n))

    # --- tier: MAP + Laplace
    def js(rows):
        m = pad_size(len(rows)) if len(rows) < args.batch else len(rows)
        return stars.take(np.concatenate([rows, np.full(m - len(rows), rows[0])])).astype(
            post.dtype
        )

    jax.block_until_ready(
        find_modes(post, js(np.arange(args.batch)), cfg.n_starts, cfg.map_steps, cfg.mode_barrier)
    )
    t, cpu = time.time(), time.process_time()
    for rows in batches():
        jax.block_until_ready(
            find_modes(post, js(rows), cfg.n_starts, cfg.map_steps, cfg.mode_barrier)
        )
    res["laplace_stars_per_s"] = round(args.n / (time.time() - t), 1)
    res["laplace_stars_per_cpu_s"] = round(args.n / (time.process_time() - cpu), 1)
    if args.map_procs != 1:  # the same tier, one pinned process per core (batch layout)
        rate, n_procs = map_per_core(args.n, args.batch, args.map_procs or None)
        res[f"laplace_stars_per_s_{n_procs}_procs"] = round(rate, 1)
    print(json.dumps(res), flush=True)

    # --- tier: the batched engine (warm-up: compile on the first batch, then every tier
    # at the small subset sizes of the rare tiers, then timed)
    if not args.no_warm:
        t = time.time()
        infer_arrays(post, stars.take(np.arange(min(args.batch, args.n))), ids[: args.batch], cfg)
        sizes = tuple(int(s) for s in args.warm_tiers.split(",") if s)
        if sizes:
            warm_up(post, stars.take(np.arange(64)), cfg, sizes)
        res["warm_up_s"] = round(time.time() - t, 1)
        res["warm_tiers"] = list(sizes)
    res["auto_includes_compile"] = bool(args.no_warm)
    t, cpu = time.time(), time.process_time()
    cols = [infer_arrays(post, stars.take(r), ids[r], cfg) for r in batches()]
    dt = time.time() - t
    # under load from other jobs, stars per CPU-second is the steadier measure
    res["auto_cpu_s"] = round(time.process_time() - cpu, 1)
    res["load_avg_1min"] = round(os.getloadavg()[0], 1)
    flags = np.concatenate([c["flags"] for c in cols]).astype(str)
    meth = np.concatenate([c["method"] for c in cols]).astype(str)
    conv = np.concatenate([c["converged"] for c in cols]).astype(bool)
    mm = np.array(["multimodal" in f for f in flags])
    done = conv | mm  # the convergence rule: met the bar, or flagged multimodal
    res["auto_stars_per_s"] = round(args.n / dt, 1)
    res["auto_frac_done"] = round(float(done.mean()), 4)
    res["auto_methods"] = {m: int((meth == m).sum()) for m in np.unique(meth)}
    res["auto_frac_met_bar"] = round(float(conv.mean()), 4)
    res["auto_frac_multimodal"] = round(float(mm.mean()), 4)
    nc = ["not_converged" in f.split(",") for f in flags]
    res["auto_frac_not_converged"] = round(float(np.mean(nc)), 4)
    if args.second_pass:  # the same stars again: nothing left to compile
        t = time.time()
        for r in batches():
            infer_arrays(post, stars.take(r), ids[r], cfg)
        res["auto_stars_per_s_second_pass"] = round(args.n / (time.time() - t), 1)
    print(json.dumps(res), flush=True)

    # --- baseline: vmapped NUTS (whitened, from the MAP) on n_baseline stars
    nb = args.n_baseline
    rows = np.arange(nb)
    sub = js(rows)
    modes = find_modes(post, sub, cfg.n_starts, cfg.map_steps)
    mass = np.exp(np.asarray(modes.log_weight, np.float64))
    from bayesdsm.infer import star_keys

    keys = star_keys(0, np.arange(len(rows)))
    ncfg = InferConfig(n_chains=2, nuts_warmup=400, nuts_samples=600)
    nuts = TIERS["nuts"]
    run_mcmc(nuts, post, sub, modes, mass, keys, ncfg, np.arange(nb))  # compile (same shape)
    t, cpu = time.time(), time.process_time()
    _, ok, *_ = run_mcmc(nuts, post, sub, modes, mass, keys, ncfg, np.arange(nb))
    res["vmap_nuts_stars_per_s"] = round(nb / (time.time() - t), 2)
    res["vmap_nuts_stars_per_cpu_s"] = round(nb / (time.process_time() - cpu), 2)
    res["vmap_nuts_frac_ok"] = round(float(np.mean(ok)), 3)
    print(json.dumps(res), flush=True)

    # --- baseline: one numpyro MCMC per star
    t = time.time()
    for i in range(args.n_per_star):
        star = jax.tree_util.tree_map(lambda a, i=i: jnp.asarray(a)[i], sub)
        nuts_one_star(post, star, num_warmup=500, num_samples=500, init_z=modes.z[i, 0])
    res["mcmc_per_star_stars_per_s"] = round(args.n_per_star / (time.time() - t), 3)
    res["speedup_auto_vs_vmap_nuts"] = round(
        res["auto_stars_per_s"] / res["vmap_nuts_stars_per_s"], 1
    )
    res["speedup_auto_vs_vmap_nuts_cpu"] = round(
        args.n / res["auto_cpu_s"] / res["vmap_nuts_stars_per_cpu_s"], 1
    )
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
