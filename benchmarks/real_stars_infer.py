"""Acceptance on real stars: infer θ of the 5,000 Green 2020 dev stars from photometry.

The released model, 13-band photometry + parallax + reddening prior (r, r_err), prior
``volume``, the training-density θ prior; the spectroscopic θ is hidden (only used to
score). Prints median |Δ| and z-score coverage for stars with ϖ/σ_ϖ > 5, the fraction
flagged multimodal and not converged, and the throughput.

    BAYESDSM_GREEN2020_DIR=/work/shared/green2020 python benchmarks/real_stars_infer.py [--n 5000]

On a loaded machine, run shards that stream resumable chunks, in parallel, and score
whatever chunks are done (a prefix of each shard):

    python benchmarks/real_stars_infer.py --rows 0:2500 --parts /tmp/rs   # and 2500:5000
    python benchmarks/real_stars_infer.py --score /tmp/rs
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--method", default="auto")
    ap.add_argument("--theta-prior", default="density")
    ap.add_argument("--out", default=None, help="optional table of per-star results")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--rows", default=None, help="START:STOP, a shard of the catalog")
    ap.add_argument("--parts", default=None, help="stream chunks of --chunk stars under here")
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--score", default=None, help="only score the chunks done under this dir")
    args = ap.parse_args(argv)

    import jax.numpy as jnp

    from bayesdsm.catalog import read_catalog
    from bayesdsm.green2020 import load_green2020_density, load_green2020_emulator
    from bayesdsm.infer import InferConfig, infer_catalog

    d = os.environ.get("BAYESDSM_GREEN2020_DIR", "/work/shared/green2020")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = read_catalog(os.path.join(d, "green2020_test_data_dev.h5"), preset="green2020")
    if args.score:
        res = score(cat, *_collect(args.score))
        print(json.dumps(res, indent=1), flush=True)
        return res
    start, stop = (int(v) for v in args.rows.split(":")) if args.rows else (0, args.n)
    rows = np.arange(start, min(stop, len(cat)))
    cat = cat.subset(rows)
    truth, cov = cat.theta.copy(), cat.theta_cov.copy()
    hidden = cat.replace(theta=np.full_like(truth, np.nan), theta_cov=np.full_like(cov, np.nan))
    emu = load_green2020_emulator(d, jnp.float32)
    cfg = InferConfig(prior="volume", theta_prior=args.theta_prior, method=args.method,
                      batch_size=args.batch, chunk_size=args.chunk)  # fmt: skip
    t0 = time.time()
    if args.parts:
        from bayesdsm.infer import run_inference

        def log(m):
            print(f"{time.time() - t0:.0f}s {m}", flush=True)

        parts = os.path.join(args.parts, f"rows_{start}_{stop}")
        tab = run_inference(emu, hidden, os.path.join(parts, "all.parquet"), cfg,
                            theta_density=load_green2020_density(d), parts_dir=parts,
                            log=log)  # fmt: skip
    else:
        tab = infer_catalog(emu, hidden, cfg, theta_density=load_green2020_density(d))
    dt = time.time() - t0
    if args.out:
        tab.write(args.out, overwrite=True)
    res = score(cat, tab, np.arange(len(tab)))
    res.update(seconds=round(dt, 1), stars_per_s=round(len(tab) / dt, 2))
    print(json.dumps(res, indent=1))
    return res


def _collect(root):
    """(table, global rows) of every finished chunk under ``root``/rows_<start>_<stop>."""
    import glob

    from astropy.table import Table, vstack

    tabs, rows = [], []
    for p in sorted(glob.glob(os.path.join(root, "rows_*_*", "chunk_*.parquet"))):
        start = int(os.path.basename(os.path.dirname(p)).split("_")[1])
        t = Table.read(p)
        tabs.append(t)
        rows.append(start + np.asarray(t["row"]))
    return vstack(tabs), np.concatenate(rows)


def score(cat, tab, rows):
    """Accuracy, z-score coverage and flag fractions of ``tab`` against rows of ``cat``."""
    truth, cov = cat.theta[rows], cat.theta_cov[rows]
    cat = cat.subset(rows)
    hi = np.asarray(cat.parallax / cat.parallax_err > 5)
    res = {"n": len(tab), "n_high_snr": int(hi.sum())}
    flags = np.asarray(tab["flags"]).astype(str)
    for j, p in enumerate(("teff", "logg", "feh")):
        med = np.asarray(tab[f"{p}_p50"])
        sig = 0.5 * (np.asarray(tab[f"{p}_p84"]) - np.asarray(tab[f"{p}_p16"]))
        delta = med - truth[:, j]
        z = delta / np.sqrt(sig**2 + cov[:, j, j])
        res[f"median_abs_d{p}"] = round(float(np.median(np.abs(delta[hi]))), 4)
        res[f"frac_abs_z_lt1_{p}"] = round(float(np.mean(np.abs(z[hi]) < 1)), 3)
        res[f"frac_abs_z_lt1_{p}_all"] = round(float(np.mean(np.abs(z) < 1)), 3)
    mm = np.array(["multimodal" in f.split(",") for f in flags])
    nc = np.array(["not_converged" in f.split(",") for f in flags])
    res["frac_multimodal_high_snr"] = round(float(mm[hi].mean()), 4)
    res["frac_multimodal_all"] = round(float(mm.mean()), 4)
    res["frac_not_converged_high_snr"] = round(float(nc[hi].mean()), 4)
    res["frac_not_converged_all"] = round(float(nc.mean()), 4)
    # the convergence rule: every star meets the ESS/R̂ bar or is flagged multimodal
    met = np.asarray(tab["converged"]).astype(bool)
    for tag, s in (("all", slice(None)), ("high_snr", hi)):
        res[f"frac_met_bar_{tag}"] = round(float(met[s].mean()), 4)
        res[f"frac_failed_bar_multimodal_{tag}"] = round(float((~met & mm)[s].mean()), 4)
        res[f"frac_failed_bar_unflagged_multimodal_{tag}"] = round(float((~met & ~mm)[s].mean()), 4)
    meth, cnt = np.unique(np.asarray(tab["method"]).astype(str), return_counts=True)
    res["methods"] = dict(zip(meth.tolist(), cnt.tolist()))
    return res


if __name__ == "__main__":
    main()
