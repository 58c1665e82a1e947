"""Cost and quality of the θ density fit (bayesdsm.deconvolve) against max_stars and tol.

    python benchmarks/bench_deconvolve.py [--components 12] [--pool 200000] [--seeds 2]
        [--tols 1e-3 1e-4 1e-5 1e-6] [--sizes 10000 ... 200000] [--tol T]

Single-threaded NumPy; the default run takes ~4 min.

Stars: θ from a 4-component population (main-sequence dwarfs, turn-off/subgiants, red
giant branch, red clump), observed with LAMOST-like correlated errors (σ_Teff 60-100 K,
σ_logg 0.07-0.13, σ_[Fe/H] 0.035-0.065 dex, correlations 0.3-0.4). A pool is fitted and
50,000 other stars are held out. Two tables:

1. ``fit_theta_density`` on 100,000 stars with each tol: EM iterations, wall time, mean
   log-likelihood per star (nats, θ in K, dex, dex) on the fitted and on the held-out stars;
2. at the function's default tol (or --tol), max_stars from 10,000 to the whole pool: EM
   iterations, wall time and held-out log-likelihood per star, means over ``--seeds`` seeds
   (subset and initialisation).

The true population's log-likelihoods are printed first, as the ceiling. The held-out
log-likelihood is log Σ_k π_k N(θ̂; μ_k, V_k + C) per star: how well the deconvolved
density, convolved with each star's own errors, predicts new stars.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.special import logsumexp

import bayesdsm.deconvolve as dec

W = np.array([0.45, 0.2, 0.2, 0.15])
MU = np.array([[5800, 4.3, -0.15], [6000, 3.8, -0.25], [4700, 2.6, -0.3], [4750, 2.45, -0.1]])
SD = np.array([[500, 0.2, 0.25], [300, 0.25, 0.25], [250, 0.5, 0.3], [80, 0.08, 0.2]])
CORR = np.array(
    [
        [[1, -0.5, 0.2], [-0.5, 1, 0], [0.2, 0, 1]],
        [[1, 0.3, 0], [0.3, 1, 0], [0, 0, 1]],
        [[1, 0.8, 0.4], [0.8, 1, 0.3], [0.4, 0.3, 1]],
        [[1, 0.3, 0], [0.3, 1, 0], [0, 0, 1]],
    ]
)
V = CORR * SD[:, :, None] * SD[:, None, :]
ERR_CORR = np.array([[1, 0.4, 0.3], [0.4, 1, 0.3], [0.3, 0.3, 1]])


def draw(n: int, rng):
    """θ̂ (n, 3) and C (n, 3, 3) of n stars of the population."""
    label = rng.choice(len(W), n, p=W)
    true = MU[label] + np.einsum(
        "nij,nj->ni", np.linalg.cholesky(V)[label], rng.normal(size=(n, 3))
    )
    sd = rng.uniform([60, 0.07, 0.035], [100, 0.13, 0.065], (n, 3))
    C = ERR_CORR * sd[:, :, None] * sd[:, None, :]
    return true + np.einsum("nij,nj->ni", np.linalg.cholesky(C), rng.normal(size=(n, 3))), C


def mean_loglike(weights, means, covs, x, C) -> float:
    """Mean over stars of log Σ_k π_k N(x; μ_k, V_k + C)."""
    total = 0.0
    for i in range(0, len(x), 8192):
        logp = dec._terms(means, covs, x[i : i + 8192], C[i : i + 8192])[0]
        total += logsumexp(logp + np.log(weights)[:, None], axis=0).sum()
    return total / len(x)


def timed_fit(x, C, **kw):
    """(density, EM steps, wall seconds) of one fit_theta_density call."""
    steps = []
    em_step = dec._em_step

    def counted(*args):
        steps.append(1)
        return em_step(*args)

    dec._em_step = counted
    try:
        t0 = time.perf_counter()
        density = dec.fit_theta_density(x, C, **kw)
        return density, len(steps), time.perf_counter() - t0
    finally:
        dec._em_step = em_step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--components", type=int, default=12)
    ap.add_argument("--pool", type=int, default=200_000, help="stars available to the fit")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per max_stars row")
    ap.add_argument("--tols", type=float, nargs="*", default=[1e-3, 1e-4, 1e-5, 1e-6])
    ap.add_argument(
        "--sizes", type=int, nargs="*", default=[10_000, 20_000, 30_000, 50_000, 100_000, 200_000]
    )
    ap.add_argument("--tol", type=float, help="tol of table 2 (default: the function's)")
    args = ap.parse_args()
    rng = np.random.default_rng(2024)
    x, C = draw(args.pool, rng)
    hx, hC = draw(50_000, rng)
    K = args.components
    print(f"K = {K}, pool {args.pool:,} stars, 50,000 held out")
    truth = [mean_loglike(W, MU, V, a, b) for a, b in ((x[:100_000], C[:100_000]), (hx, hC))]
    print(
        "true population's logL/star: first 100,000 of the pool {:.4f}, held out {:.4f}\n".format(
            *truth
        )
    )

    print("| tol | n fitted | EM steps | wall [s] | train logL/star | held-out logL/star |")
    print("|---|---|---|---|---|---|")
    for tol in args.tols:
        d, steps, wall = timed_fit(
            x[:100_000], C[:100_000], n_components=K, max_stars=100_000, tol=tol
        )
        train = mean_loglike(d.weights, d.means, d.covs, x[:100_000], C[:100_000])
        held = mean_loglike(d.weights, d.means, d.covs, hx, hC)
        print(
            f"| {tol:g} | 100,000 | {steps} | {wall:.1f} | {train:.4f} | {held:.4f} |", flush=True
        )

    print("\n| max_stars | EM steps | wall [s] | held-out logL/star | per seed |")
    print("|---|---|---|---|---|")
    kw = {} if args.tol is None else {"tol": args.tol}
    for size in args.sizes:
        rows = [
            timed_fit(x, C, n_components=K, max_stars=size, seed=s, **kw) for s in range(args.seeds)
        ]
        held = [mean_loglike(d.weights, d.means, d.covs, hx, hC) for d, _, _ in rows]
        steps = np.mean([r[1] for r in rows])
        wall = np.mean([r[2] for r in rows])
        each = ", ".join(f"{h:.4f}" for h in held)
        print(f"| {size:,} | {steps:.0f} | {wall:.1f} | {np.mean(held):.4f} | {each} |", flush=True)


if __name__ == "__main__":
    main()
