"""Acceptance numbers of a trained model against a simulated survey's truth (issue 4).

Simulates a survey (truth: real stellar models, or ``--emulator-truth`` for a random
emulator), runs the §3 cuts and the §4 training, and prints one JSON line with:

* ``colour_rms``: per colour X-G, RMS of learned - true zero-extinction colour at the
  test stars' true θ, where the validity density (band X) is ≥ 1e-2 (target ≤ 0.01);
* ``MG_rms_dwarfs``: RMS of M_G for test dwarfs, true log g ≥ 3.8 (target ≤ 0.03), and
  ``MG_rms_giants`` beside the truth's own scatter at fixed θ;
* ``R_rel_err``: learned R at the catalogue-mean θ over the truth's A/E there (≤ 3%);
* ``chi2_dof_test``: mean χ²/dof on the test split (dof = components - 1; 0.9-1.1);
* ``score_pct``: 16/50/84th percentiles of the colour scores (-1/0/+1 ± 0.15);
* ``median_dE``: median of re-estimated E - true E on the test split (≤ 0.01).

    python benchmarks/accept_train.py --n 200000                  # paper schedule
    python benchmarks/accept_train.py --n 20000 --iterations 5 --epochs 10 --emulator-truth
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


def metrics(cat, res) -> dict:
    from bayesdsm.emulator import batched, predict_colours
    from bayesdsm.likelihood import chi2, colour_scores, dof, stardata_from_catalog
    from bayesdsm.validity import validity_at

    emu, bands = res.emulator, cat.bands
    test = np.flatnonzero(res.split == 2)
    th = np.stack([cat.extra[f"true_{c}"] for c in ("teff", "logg", "feh")], 1)[test]
    true_M = np.stack([cat.extra[f"true_M_{b}"] for b in bands], 1)[test]
    zero = jnp.zeros(len(th), jnp.float32)
    pred = np.asarray(batched(predict_colours)(emu, jnp.asarray(th, jnp.float32), zero))
    pred = pred.astype(np.float64)
    true_c = np.concatenate([true_M[:, :1], true_M[:, 1:] - true_M[:, :1]], 1)
    out = {"n_test": int(test.size)}
    rms = {}
    for k, b in enumerate(bands[1:], start=1):
        v = np.asarray(validity_at(res.validity, jnp.asarray(th, jnp.float32), b))
        ok = v >= 1e-2
        rms[f"{b}-{bands[0]}"] = float(np.sqrt(np.mean((pred[ok, k] - true_c[ok, k]) ** 2)))
    out["colour_rms"] = rms
    vg = np.asarray(validity_at(res.validity, jnp.asarray(th, jnp.float32), "parallax"))
    dwarf = (th[:, 1] >= 3.8) & (vg >= 1e-2)
    giant = (th[:, 1] < 3.8) & (vg >= 1e-2)
    d = pred[:, 0] - true_c[:, 0]
    out["MG_rms_dwarfs"] = float(np.sqrt(np.mean(d[dwarf] ** 2)))
    out["MG_rms_giants"] = float(np.sqrt(np.mean(d[giant] ** 2)))
    # the truth's own scatter of M_G at fixed θ: M_G minus a smooth fit (the learned one)
    out["MG_bias_giants"] = float(np.mean(d[giant]))
    # R at the catalogue-mean θ against the truth's A/E of stars near it
    tmean = cat.theta.mean(0)
    R = np.asarray(emu(jnp.asarray(tmean, jnp.float32))[1])
    allth = np.stack([cat.extra[f"true_{c}"] for c in ("teff", "logg", "feh")], 1)
    near = np.all(np.abs(allth - tmean) < np.array([150.0, 0.3, 0.2]), 1)
    R_true = np.median(np.stack([cat.extra[f"true_R_{b}"] for b in bands], 1)[near], 0)
    out["R_rel_err"] = {b: float(R[k] / R_true[k] - 1) for k, b in enumerate(bands)}
    stars = stardata_from_catalog(cat, np.float32, ebv=res.ebv, ebv_err=res.ebv_err)
    st = jax.tree_util.tree_map(lambda a: jnp.asarray(a[test]), stars)
    c2 = np.asarray(jax.jit(jax.vmap(chi2, (None, 0)))(emu, st))
    df = np.asarray(jax.vmap(dof)(st))
    ok = df > 0
    r = c2[ok] / df[ok]
    out["chi2_dof_test"] = float(np.mean(r))
    out["chi2_dof_test_le5"] = float(np.mean(r[r <= 5]))
    sc = np.asarray(jax.jit(jax.vmap(colour_scores, (None, 0)))(emu, st))
    sc = sc[np.isfinite(sc)]
    out["score_pct"] = [float(x) for x in np.percentile(sc, [16, 50, 84])]
    out["median_dE"] = float(np.median(res.ebv[test] - cat.extra["true_ebv"][test]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--method", default="paper", choices=("paper", "latent_theta"))
    ap.add_argument("--emulator-truth", action="store_true")
    ap.add_argument("--catalog", help="use this simulated catalog instead of simulating")
    args = ap.parse_args(argv)
    from bayesdsm.catalog import read_catalog
    from bayesdsm.cuts import prepare
    from bayesdsm.simulate import EmulatorTruth, SimConfig, simulate_survey
    from bayesdsm.train import TrainConfig, train

    t0 = time.perf_counter()
    if args.catalog:
        cat = read_catalog(args.catalog)
    else:
        truth = None
        cfg = SimConfig(n_stars=args.n)
        if args.emulator_truth:
            from bayesdsm.emulator import init_emulator

            truth = EmulatorTruth(init_emulator(jax.random.PRNGKey(99)))
            cfg = SimConfig(n_stars=args.n, population_source="parametric")
        cat = simulate_survey(cfg, truth)
    cat, _ = prepare(cat)
    t1 = time.perf_counter()
    tc = TrainConfig(method=args.method, n_iterations=args.iterations, epochs=args.epochs)
    res = train(cat, tc, progress=True)
    t2 = time.perf_counter()
    out = {"method": args.method, "n": len(cat), "iterations": args.iterations,
           "epochs": args.epochs, "sim_s": t1 - t0, "train_s": t2 - t1,
           "final_train_loss": res.history[-1]["train_loss"],
           "final_val_loss": res.history[-1]["val_loss"], **metrics(cat, res)}  # fmt: skip
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
