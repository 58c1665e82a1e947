"""Throughput (stars/s) of the training objective's loss + gradient.

Variants, each timed for float32 and float64 at several batch sizes in one run:

* ``lowrank-frozen``: what training differentiates. The negative log density of
  :func:`bayesdsm.emulator_model.emulator_model` (χ²/13 with the frozen whitened covariance,
  :func:`bayesdsm.likelihood.chi2_whitened`, plus the Normal/Laplace weight priors),
  through ``numpyro.infer.util.log_density`` as SVI with AutoDelta does.
* ``dense-frozen``: the straightforward baseline. The same residual and priors, but the
  covariance is held as a dense 13×13 colour-space matrix C_c = B C_m Bᵀ per star
  (built once), and every step Cholesky-factorises and solves it. Unused components
  (unobserved colours; c₀ without a parallax) are masked exactly: their rows/columns
  are replaced by the identity and their residual by 0.
* ``lowrank-rebuilt`` / ``dense-rebuilt``: the covariance is rebuilt at every step from
  a stop-gradient snapshot of the network (J by ``jax.jacfwd``), then used as above.

Usage::

    python benchmarks/bench_objective.py                   # default, ≈ 2-3 min
    python benchmarks/bench_objective.py --batches 1024 4096 --repeats 3
    python benchmarks/bench_objective.py --write BENCHMARKS.md

The stars are synthetic (θ spread over the training range, 13 bands with ~15% missing,
85% with a usable parallax); the network has the released architecture (2×32 sigmoid).
Timings are medians over ``--repeats`` calls after a warm-up (compile) call.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
from jax.scipy.linalg import solve_triangular  # noqa: E402
from numpyro.infer.util import log_density  # noqa: E402

from bayesdsm.conventions import b_matrix  # noqa: E402
from bayesdsm.emulator import EmulatorConfig, emulator_arrays, init_emulator  # noqa: E402
from bayesdsm.emulator_model import RegularizationConfig, emulator_from_params, emulator_model  # noqa: E402
from bayesdsm.likelihood import (  # noqa: E402
    StarData,
    chi2_whitened,
    frozen_whitening,
    model_magnitudes,
    star_covariance,
)

N_BANDS = 13
SECTION = "## Training objective: loss + gradient throughput (issue 3)"


def make_stars(n: int, dtype, seed: int = 0) -> StarData:
    """Synthetic stars (NumPy arrays) with realistic masks and errors."""
    rng = np.random.default_rng(seed)
    theta = np.stack(
        [rng.uniform(3800, 7000, n), rng.uniform(1.0, 4.8, n), rng.uniform(-1.5, 0.4, n)], 1
    )
    sig = np.array([60.0, 0.1, 0.06])
    chol = np.zeros((n, 3, 3))
    chol[:, [0, 1, 2], [0, 1, 2]] = sig * rng.uniform(0.5, 2.0, (n, 3))
    mask = (rng.random((n, N_BANDS)) > 0.15).astype(float)
    mask[:, 0] = 1.0
    err = rng.uniform(0.02, 0.15, (n, N_BANDS))
    mag = rng.normal(12.0, 0.05, (n, N_BANDS)) * mask
    has = (rng.random(n) < 0.85).astype(float)
    return StarData(
        mag=mag.astype(dtype),
        mask=mask.astype(dtype),
        mag_err=err.astype(dtype),
        theta=theta.astype(dtype),
        theta_chol=chol.astype(dtype),
        mu=np.where(has > 0, rng.uniform(7, 12, n), 0.0).astype(dtype),
        sigma_mu=np.where(has > 0, rng.uniform(0.01, 0.4, n), 1.0).astype(dtype),
        has_parallax=has.astype(dtype),
        ebv=rng.uniform(0.0, 0.5, n).astype(dtype),
        ebv_err=rng.uniform(0.02, 0.1, n).astype(dtype),
    )


# ------------------------------------------------------------------------- dense baseline


def dense_colour_cov(emu, star: StarData):
    """(C_c, mask_c): dense colour-space covariance of one star, and its used components."""
    B = jnp.asarray(b_matrix(N_BANDS), star.mag.dtype)
    cov = star_covariance(emu, star)
    s = jnp.where(cov.sinv[:4] > 0, 1.0 / cov.sinv[:4], 0.0)
    Cm = jnp.diag(star.mag_err**2) + (cov.U[:, :4] * s[None, :]) @ cov.U[:, :4].T
    Cc = B @ Cm @ B.T
    Cc = Cc.at[0, 0].add(star.sigma_mu**2 * star.has_parallax)
    mc = jnp.concatenate([star.has_parallax[None], star.mask[1:] * star.mask[0]])
    Cc = Cc * mc[:, None] * mc[None, :] + jnp.diag(1.0 - mc)
    return Cc, mc


def chi2_dense(emu, star: StarData, Cc, mc):
    """χ² of one star by a dense Cholesky solve in colour space."""
    B = jnp.asarray(b_matrix(N_BANDS), star.mag.dtype)
    m, _ = model_magnitudes(emu, star.theta, star.ebv)
    r = (star.mag - m - star.mu) * star.mask
    dc = (B @ r) * mc
    L = jnp.linalg.cholesky(Cc)
    z = solve_triangular(L, dc, lower=True)
    return jnp.sum(z**2)


# ------------------------------------------------------------------------- objectives


def penalties(params, n_total, reg: RegularizationConfig):
    """N λ_s Σ w_s² + N λ_r Σ |w_r| (the priors' negative log density up to a constant)."""
    out = 0.0
    for name, w in params.items():
        if name.startswith("hidden_") and name.endswith("_kernel"):
            out = out + n_total * reg.l2_stellar * jnp.sum(w**2)
        elif name == "R_kernel":
            out = out + n_total * reg.l1_extinction * jnp.sum(jnp.abs(w))
    return out


def make_objectives(template, n_total: int):
    reg = RegularizationConfig()

    def lowrank_frozen(params, stars, W):
        model = numpyro.handlers.seed(emulator_model, rng_seed=0)
        lp, _ = log_density(model, (template, stars, W), {"n_total": n_total}, params)
        return -lp

    def scaled(params, chi):
        return n_total / chi.shape[0] * jnp.sum(chi) / N_BANDS + penalties(params, n_total, reg)

    def lowrank_frozen_direct(params, stars, W):
        emu = emulator_from_params(template, params)
        chi = jax.vmap(chi2_whitened, in_axes=(None, 0, 0))(emu, stars, W)
        return scaled(params, chi)

    def dense_frozen(params, stars, Cc, mc):
        emu = emulator_from_params(template, params)
        chi = jax.vmap(chi2_dense, in_axes=(None, 0, 0, 0))(emu, stars, Cc, mc)
        return scaled(params, chi)

    def lowrank_rebuilt(params, stars):
        emu = emulator_from_params(template, params)
        snap = jax.lax.stop_gradient(emu)
        W = jax.vmap(frozen_whitening, in_axes=(None, 0))(snap, stars)
        chi = jax.vmap(chi2_whitened, in_axes=(None, 0, 0))(emu, stars, W)
        return scaled(params, chi)

    def dense_rebuilt(params, stars):
        emu = emulator_from_params(template, params)
        snap = jax.lax.stop_gradient(emu)
        Cc, mc = jax.vmap(dense_colour_cov, in_axes=(None, 0))(snap, stars)
        chi = jax.vmap(chi2_dense, in_axes=(None, 0, 0, 0))(emu, stars, Cc, mc)
        return scaled(params, chi)

    return {
        "lowrank-frozen": lowrank_frozen,
        "lowrank-frozen-direct": lowrank_frozen_direct,
        "dense-frozen": dense_frozen,
        "lowrank-rebuilt": lowrank_rebuilt,
        "dense-rebuilt": dense_rebuilt,
    }


def time_call(fn, args, repeats: int) -> float:
    out = fn(*args)
    jax.block_until_ready(out)  # warm-up: compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run(batches, dtypes, repeats: int, variants=None):
    rows = []
    for dtype_name in dtypes:
        dtype = {"float32": np.float32, "float64": np.float64}[dtype_name]
        with jax.enable_x64(dtype_name == "float64"):
            template = init_emulator(jax.random.PRNGKey(0), EmulatorConfig(), dtype=dtype)
            params = {
                k: v
                for k, v in emulator_arrays(template).items()
                if k not in ("theta_median", "theta_std")
            }
            objectives = make_objectives(template, n_total=2_900_000)
            for n in batches:
                stars = jax.tree_util.tree_map(jnp.asarray, make_stars(n, dtype))
                W = jax.jit(jax.vmap(frozen_whitening, in_axes=(None, 0)))(template, stars)
                Cc, mc = jax.jit(jax.vmap(dense_colour_cov, in_axes=(None, 0)))(template, stars)
                extra = {
                    "lowrank-frozen": (W,),
                    "lowrank-frozen-direct": (W,),
                    "dense-frozen": (Cc, mc),
                    "lowrank-rebuilt": (),
                    "dense-rebuilt": (),
                }
                for name, obj in objectives.items():
                    if variants and name not in variants:
                        continue
                    fn = jax.jit(jax.value_and_grad(obj))
                    t = time_call(fn, (params, stars, *extra[name]), repeats)
                    rows.append((name, dtype_name, n, n / t))
                    print(
                        f"{name:16s} {dtype_name} {n:6d}  {n / t / 1e3:8.1f} k stars/s",
                        file=sys.stderr,
                        flush=True,
                    )
    return rows


def table(rows) -> str:
    variants = list(dict.fromkeys(r[0] for r in rows))
    keys = list(dict.fromkeys((r[1], r[2]) for r in rows))
    rate = {(r[0], r[1], r[2]): r[3] for r in rows}
    head = "| dtype | batch | " + " | ".join(variants)
    if "lowrank-frozen" in variants and "dense-frozen" in variants:
        head += " | frozen: low-rank / dense"
    if "lowrank-rebuilt" in variants and "dense-rebuilt" in variants:
        head += " | rebuilt: low-rank / dense"
    lines = [head + " |", "|" + "---|" * (head.count("|") - 0)]
    for dt, n in keys:
        cells = [f"{rate.get((v, dt, n), float('nan')) / 1e3:.0f}k" for v in variants]
        line = f"| {dt} | {n} | " + " | ".join(cells)
        for a, b in (("lowrank-frozen", "dense-frozen"), ("lowrank-rebuilt", "dense-rebuilt")):
            if a in variants and b in variants:
                line += f" | {rate[(a, dt, n)] / rate[(b, dt, n)]:.1f}×"
        lines.append(line + " |")
    return "\n".join(lines)


def write_section(path: Path, text: str) -> None:
    """Replace (or append) this benchmark's section in BENCHMARKS.md."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    start = old.find(SECTION)
    if start >= 0:
        nxt = old.find("\n## ", start + len(SECTION))
        old = old[:start].rstrip("\n") + ("\n\n" + old[nxt + 1 :] if nxt >= 0 else "\n")
    path.write_text(old.rstrip("\n") + "\n\n" + text.rstrip("\n") + "\n")


def main(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--batches", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--variants",
        nargs="+",
        default=["lowrank-frozen", "dense-frozen", "lowrank-rebuilt", "dense-rebuilt"],
        help="also available: lowrank-frozen-direct (the same χ² without NumPyro)",
    )
    p.add_argument("--write", default=None, help="update this Markdown file (BENCHMARKS.md)")
    args = p.parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args.batches, args.dtypes, args.repeats, args.variants)
    md = table(rows)
    print(md)
    if args.write:
        cmd = "python benchmarks/bench_objective.py " + " ".join(
            argv if argv is not None else sys.argv[1:]
        )
        info = (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"jax {jax.__version__}, run took {time.perf_counter() - t0:.0f} s"
        )
        write_section(
            Path(args.write),
            f"{SECTION}\n\nCommand: `{cmd.strip()}` ({info}).\n\n{md}\n",
        )


if __name__ == "__main__":
    main()
