"""End-to-end training throughput (star-epochs/s) of bayesdsm.train, §4 procedure.

Runs ``train`` for 2 iterations on N synthetic stars (truth: a random emulator, 13 bands,
15% missing bands) and times iteration 1, which is compiled and steady: its epochs
(SVI scan, per-epoch validation loss as shown by the progress bar) and its rebuild
(reddening update and covariance rebuild with one Jacobian per star, χ², losses, over
all N stars; the next iteration reuses the rebuilt covariances). The exclusion
thresholds are set out of reach so the number of active stars, hence the compiled
shapes, stays fixed. Prints one JSON line per N (with the machine's load average at the
end: the machine is shared) and the extrapolation to the paper's 2.9M stars × 20
iterations × 25 epochs.

    python benchmarks/bench_train.py            # N = 1e4, 1e5
    python benchmarks/bench_train.py --big      # also N = 1e6
    python benchmarks/bench_train.py --sizes 100000 --baseline --set 'method="paper"'

``--set FIELD=JSON`` sets TrainConfig fields (repeatable); ``--baseline`` first runs
``TrainConfig()`` on the same catalogue in the same process, for a comparison on the same
machine state. ``setup_s`` is the time before iteration 0 (input checks, the split, the
deconvolved θ density of ``method="deconvolved"``); the extrapolation adds it once.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from bayesdsm.catalog import Catalog  # noqa: E402
from bayesdsm.emulator import batched, init_emulator, predict_magnitudes  # noqa: E402
from bayesdsm.train import TrainConfig, train  # noqa: E402


def synthetic_catalog(n: int, seed: int = 0) -> Catalog:
    rng = np.random.default_rng(seed)
    truth = init_emulator(jax.random.PRNGKey(99))
    theta = np.stack(
        [rng.uniform(4000, 7000, n), rng.uniform(1.5, 4.8, n), rng.normal(-0.2, 0.3, n)], 1
    )
    e = rng.exponential(0.2, n)
    f32 = jnp.float32
    m = np.asarray(batched(predict_magnitudes)(truth, jnp.asarray(theta, f32), jnp.asarray(e, f32)))
    m = m.astype(np.float64)
    d = rng.uniform(0.2, 3.0, n)
    err = rng.uniform(0.02, 0.05, m.shape)
    mag = m + (10 + 5 * np.log10(d))[:, None] + rng.normal(size=m.shape) * err
    obs = rng.uniform(size=m.shape) > 0.15
    obs[:, 0] = True
    sig = np.array([60.0, 0.08, 0.05])
    return Catalog.from_arrays(
        bands=truth.bands, mag=np.where(obs, mag, np.nan), mag_err=np.where(obs, err, np.nan),
        theta=theta + rng.normal(size=(n, 3)) * sig,
        theta_cov=np.broadcast_to(np.diag(sig**2), (n, 3, 3)).copy(),
        parallax=1 / d * (1 + 0.05 * rng.normal(size=n)), parallax_err=0.05 / d,
        ebv=e + 0.04 * rng.normal(size=n), ebv_err=np.full(n, 0.04),
    )  # fmt: skip


def bench(cat, epochs: int, fields: dict) -> dict:
    n = len(cat)
    cfg = TrainConfig(**{**fields, "n_iterations": 2, "epochs": epochs, "chi2_start": 1e30,
                         "chi2_end": 1e30, "max_ebv_err_first": 1e30})  # fmt: skip
    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        stderr, sys.stderr = sys.stderr, devnull
        try:
            res = train(cat, cfg, progress=True)
        finally:
            sys.stderr = stderr
    total = time.perf_counter() - t0
    h = res.history[1]
    n_train = h["n_train_active"]
    t_it = h["time_epochs_s"] + h["time_rebuild_s"]
    return {
        "N": n,
        "config": fields,
        "epochs": epochs,
        "star_epochs_per_s_fit": n_train * epochs / h["time_epochs_s"],
        "rebuild_s_per_1e6_stars": h["time_rebuild_s"] / n * 1e6,
        "star_epochs_per_s_end_to_end": n_train * epochs / t_it,
        "iteration_s": t_it,
        "first_iteration_s_incl_compile": res.history[0]["elapsed_s"],
        "setup_s": total - res.history[-1]["elapsed_s"],
        "total_s": total,
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip


def extrapolate(r: dict, n: int = 2_900_000, iterations: int = 20, epochs: int = 25) -> float:
    """Wall time (s) of the paper's run from one measurement's per-star costs."""
    per_epoch = 0.7 * n / r["star_epochs_per_s_fit"]
    rebuild = r["rebuild_s_per_1e6_stars"] * n / 1e6
    return iterations * (epochs * per_epoch + rebuild) + r["setup_s"] * n / r["N"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big", action="store_true", help="also N = 1e6")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="TrainConfig field (repeatable)",
    )
    ap.add_argument("--baseline", action="store_true", help="first run TrainConfig()")
    ap.add_argument("--sizes", type=int, nargs="*", default=None)
    args = ap.parse_args(argv)
    fields = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set needs FIELD=JSON, got {item!r}")
        fields[key] = json.loads(value)
    sizes = args.sizes or ([10_000, 100_000] + ([1_000_000] if args.big else []))
    for n in sizes:
        cat = synthetic_catalog(n)
        for cfg in ([{}] if args.baseline else []) + [fields]:
            r = bench(cat, args.epochs, cfg)
            # setup is charged per star (conservative: the θ density fit is capped at max_stars)
            r["extrapolated_2.9M_x_500_epochs_h"] = extrapolate(r) / 3600
            print(json.dumps(r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
