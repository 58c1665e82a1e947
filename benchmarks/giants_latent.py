"""Where a trained model's M_G error sits, by true log g (issue 4 diagnostic).

For a run saved by ``accept_train.py --save PREFIX`` on a simulated catalog, prints one
row per true-log g bin:

* test split: the learned M_G minus the truth at the true θ (the acceptance item; at the
  end also at θ̂, the θ the network was trained on, as RMS and bias), and
  the part of the learned (M_G, colours) error that lies along the reddening vector
  (R_G s, with s the star's least-squares slide fitted to its colour errors alone), with
  the colour RMS before and after that slide is removed;
* training split (with ``theta_latent`` saved): the mean latent θ minus the true θ, the
  mean θ̂ minus the true θ, and the learned M_G minus the truth at the latent θ and at
  the true θ.

    python benchmarks/giants_latent.py --catalog /tmp/sim200k_f.parquet --run /tmp/runs/NAME \
        [--true-theta]   # as the run was trained
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from accept_train import for_training, predict_zero_extinction, true_theta  # noqa: E402

BINS = ((0.5, 1.0), (1.0, 1.5), (1.5, 2.0), (2.0, 2.3), (2.3, 2.6), (2.6, 3.0), (3.0, 3.4),
        (3.4, 3.8), (3.8, 4.1), (4.1, 4.4), (4.4, 4.8))  # fmt: skip


def reddening_slide(d: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per star, the s minimising |d_c − s v_c|² over the observed colours (columns 1:)."""
    ok = np.isfinite(d[:, 1:])
    dc, vc = np.where(ok, d[:, 1:], 0.0), np.where(ok, v[:, 1:], 0.0)
    return (dc * vc).sum(1) / (vc * vc).sum(1)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--catalog", required=True, help="the simulated catalog of the run")
    ap.add_argument("--run", required=True, help="PREFIX of accept_train.py --save PREFIX")
    ap.add_argument("--true-theta", action="store_true",
                    help="the run was trained with accept_train.py --true-theta")  # fmt: skip
    args = ap.parse_args(argv)

    from bayesdsm.catalog import read_catalog
    from bayesdsm.model_file import load_model
    from bayesdsm.validity import validity_at

    cat = for_training(read_catalog(args.catalog), exact_theta=args.true_theta)
    model = load_model(args.run + ".bdsm")
    emu = model.emulator
    saved = np.load(args.run + ".npz")
    split = saved["split"]
    col = lambda name: np.asarray(cat.extra[name], np.float64)  # noqa: E731
    th = true_theta(cat)
    M = np.stack([col(f"true_M_{b}") for b in cat.bands], 1)
    R = np.stack([col(f"true_R_{b}") for b in cat.bands], 1)
    d = predict_zero_extinction(emu, th) - np.concatenate([M[:, :1], M[:, 1:] - M[:, :1]], 1)
    v = np.concatenate([R[:, :1], R[:, 1:] - R[:, :1]], 1)  # reddening vector, (M_G, X−G)
    s = reddening_slide(d, v)
    dc = np.where(np.isfinite(d[:, 1:]), d[:, 1:], 0.0)
    rest = dc - s[:, None] * np.where(np.isfinite(d[:, 1:]), v[:, 1:], 0.0)
    latent = saved["theta_latent"] if "theta_latent" in saved.files else None
    train = (split == 0) & (np.isfinite(latent).all(1) if latent is not None else False)
    if latent is not None:
        m_lat = np.full(len(cat), np.nan)
        m_lat[train] = predict_zero_extinction(emu, latent[train])[:, 0] - M[train, 0]
    theta_hat = np.asarray(cat.theta, np.float64)

    print("log g      | test: n  dM_G   R_G·s  colour RMS → after slide | "
          "train: n  latent−true Teff logg  θ̂−true Teff logg  dM_G@latent  dM_G@true")  # fmt: skip
    for lo, hi in BINS:
        b = (th[:, 1] >= lo) & (th[:, 1] < hi)
        te, tr = b & (split == 2), b & train
        if te.sum() < 20:
            continue
        row = (f"{lo:.1f}–{hi:.1f}  | {te.sum():6d} {d[te, 0].mean():+.3f} "
               f"{(v[te, 0] * s[te]).mean():+.3f}  {np.sqrt((dc[te] ** 2).mean()):.4f} → "
               f"{np.sqrt((rest[te] ** 2).mean()):.4f}")  # fmt: skip
        if latent is not None and tr.sum() >= 20:
            dl, dh = (latent[tr] - th[tr]).mean(0), (theta_hat[tr] - th[tr]).mean(0)
            row += (f" | {tr.sum():6d} {dl[0]:+6.1f} {dl[1]:+.3f}  {dh[0]:+6.1f} {dh[1]:+.3f}"
                    f"  {m_lat[tr].mean():+.3f}  {d[tr, 0].mean():+.3f}")  # fmt: skip
        print(row)
    valid = np.asarray(validity_at(model.validity_grid, jnp.asarray(th, jnp.float32), "parallax"))
    at_hat = predict_zero_extinction(emu, theta_hat)[:, 0] - M[:, 0]
    for name, sel in (("giants", th[:, 1] < 3.8), ("dwarfs", th[:, 1] >= 3.8)):
        sel = sel & (split == 2) & (valid >= 1e-2)
        corr = np.corrcoef(d[sel, 0], v[sel, 0] * s[sel])[0, 1]
        print(f"{name} (test, validity ≥ 1e-2): RMS dM_G at the true θ "
              f"{np.sqrt(np.mean(d[sel, 0] ** 2)):.3f} (bias {d[sel, 0].mean():+.3f}), at θ̂ "
              f"{np.sqrt(np.mean(at_hat[sel] ** 2)):.3f} (bias {at_hat[sel].mean():+.3f}); "
              f"corr(dM_G, R_G·s) {corr:+.2f}")  # fmt: skip
    if latent is not None:
        for name, sel in (("giants", th[:, 1] < 3.8), ("dwarfs", th[:, 1] >= 3.8)):
            sel = sel & train
            print(f"{name} (train): RMS dM_G at latent θ {np.sqrt(np.mean(m_lat[sel] ** 2)):.3f},"
                  f" at true θ {np.sqrt(np.mean(d[sel, 0] ** 2)):.3f}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
