"""Acceptance on real stars: infer θ of the 5,000 Green 2020 dev stars from photometry.

The released model, 13-band photometry + parallax + reddening prior (r, r_err), prior
``volume``, the training-density θ prior; the spectroscopic θ is hidden (only used to
score). Prints median |Δ| and z-score coverage for stars with ϖ/σ_ϖ > 5, the fraction
flagged multimodal and not converged, and the throughput.

    BAYESDSM_GREEN2020_DIR=/work/shared/green2020 python benchmarks/real_stars_infer.py [--n 5000]
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
    args = ap.parse_args(argv)

    import jax.numpy as jnp

    from bayesdsm.catalog import read_catalog
    from bayesdsm.green2020 import load_green2020_density, load_green2020_emulator
    from bayesdsm.infer import InferConfig, infer_catalog

    d = os.environ.get("BAYESDSM_GREEN2020_DIR", "/work/shared/green2020")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cat = read_catalog(os.path.join(d, "green2020_test_data_dev.h5"), preset="green2020")
    cat = cat.subset(np.arange(min(args.n, len(cat))))
    truth, cov = cat.theta.copy(), cat.theta_cov.copy()
    hidden = cat.replace(theta=np.full_like(truth, np.nan), theta_cov=np.full_like(cov, np.nan))
    emu = load_green2020_emulator(d, jnp.float32)
    cfg = InferConfig(prior="volume", theta_prior=args.theta_prior, method=args.method,
                      batch_size=1024)  # fmt: skip
    t0 = time.time()
    tab = infer_catalog(emu, hidden, cfg, theta_density=load_green2020_density(d))
    dt = time.time() - t0
    if args.out:
        tab.write(args.out, overwrite=True)
    hi = np.asarray(cat.parallax / cat.parallax_err > 5)
    res = {"n": len(tab), "seconds": round(dt, 1), "stars_per_s": round(len(tab) / dt, 2),
           "n_high_snr": int(hi.sum())}  # fmt: skip
    flags = np.asarray(tab["flags"]).astype(str)
    for j, p in enumerate(("teff", "logg", "feh")):
        med = np.asarray(tab[f"{p}_p50"])
        sig = 0.5 * (np.asarray(tab[f"{p}_p84"]) - np.asarray(tab[f"{p}_p16"]))
        delta = med - truth[:, j]
        z = delta / np.sqrt(sig**2 + cov[:, j, j])
        res[f"median_abs_d{p}"] = round(float(np.median(np.abs(delta[hi]))), 4)
        res[f"frac_abs_z_lt1_{p}"] = round(float(np.mean(np.abs(z[hi]) < 1)), 3)
        res[f"frac_abs_z_lt1_{p}_all"] = round(float(np.mean(np.abs(z) < 1)), 3)
    mm = np.array(["multimodal" in f for f in flags])
    nc = np.array(["not_converged" in f for f in flags])
    res["frac_multimodal_high_snr"] = round(float(mm[hi].mean()), 4)
    res["frac_multimodal_all"] = round(float(mm.mean()), 4)
    res["frac_not_converged_high_snr"] = round(float(nc[hi].mean()), 4)
    res["frac_not_converged_all"] = round(float(nc.mean()), 4)
    meth, cnt = np.unique(np.asarray(tab["method"]).astype(str), return_counts=True)
    res["methods"] = dict(zip(meth.tolist(), cnt.tolist()))
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
