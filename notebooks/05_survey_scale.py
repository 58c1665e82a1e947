# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 05 · Survey scale: thousands of posteriors, calibration, real stars, Dask
#
# Notebook 04 sampled single stars with NumPyro's NUTS, about a second each. A survey has
# millions. bayesdsm's batched engine (`bayesdsm.infer`) treats every star independently
# but vectorises them: a multi-start MAP with a Laplace approximation per mode, importance
# sampling (PSIS) from those modes, and fixed-length HMC, then NUTS, for the stars where
# that is not good enough. This notebook
#
# 1. infers a few thousand demo stars from photometry, parallax and reddening prior only;
# 2. checks **calibration** against the truth: interval coverage and rank histograms;
# 3. compares with **real stars'** spectroscopic labels (needs `BAYESDSM_GREEN2020_DIR`);
# 4. runs the same engine over a partitioned catalog on a **Dask LocalCluster**.

# %%
import os

SMALL = os.environ.get("BAYESDSM_NOTEBOOK_SMALL") == "1"  # set by the test suite
if SMALL:
    # The Dask workers of section 4 run XLA single-threaded (bayesdsm.batch's
    # LOCAL_WORKER_ENV). With the same flags here, before JAX starts, they load this
    # kernel's compiled programs from the persistent XLA cache instead of compiling them
    # again: minutes saved on a busy 2-core test machine.
    os.environ.setdefault(
        "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    )

import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import arviz as az  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import bayesdsm  # noqa: E402
from bayesdsm.catalog import read_catalog, write_catalog  # noqa: E402
from bayesdsm.cuts import prepare  # noqa: E402
from bayesdsm.data import demo_path  # noqa: E402
from bayesdsm.demo import quick_model  # noqa: E402
from bayesdsm.infer import InferConfig, infer_catalog, run_inference  # noqa: E402
from bayesdsm.model_file import import_green2020  # noqa: E402

# %matplotlib inline
WORK = Path("bayesdsm_work")
WORK.mkdir(exist_ok=True)
N_STARS = 512 if SMALL else 3000
print("bayesdsm", bayesdsm.__version__, "| small settings:", SMALL, "| stars:", N_STARS)


# %% [markdown]
# ## The model and the stars
#
# The model of `02_fit_emulator` (a quick fit is made if it is missing), and a random set
# of demo stars. Inference does not look at the spectroscopic θ̂: only at the magnitudes,
# the parallax and the reddening prior (Ê, σ_E).

# %%
demo = read_catalog(demo_path())
cat, _ = prepare(demo)
model_path = WORK / "demo_model.bdsm"
model = quick_model(cat, model_path)  # 02_fit_emulator's model, or a quick fit if missing
rows = np.sort(np.random.default_rng(5).choice(len(cat), N_STARS, replace=False))
stars = cat.subset(rows)
ex = stars.extra
truth = {
    "teff": ex["true_teff"],
    "logg": ex["true_logg"],
    "feh": ex["true_feh"],
    "mu": ex["true_mu"],
    "dist_pc": 10 ** (ex["true_mu"] / 5 + 1),
    "ebv": ex["true_ebv"],
}

# %% [markdown]
# ## 1. Batch inference
#
# `run_inference` is `bayesdsm infer` in Python: results stream to disk in chunks (an
# interrupted run resumes), and with `idata_dir` each chunk's posterior draws are written
# as ArviZ InferenceData.
#
# The default `method="auto"` escalates every star that importance sampling cannot
# certify to HMC, then NUTS. Under the small settings of the test suite we stop at the
# first tier, `method="laplace"` (multi-start MAP, Laplace approximation per mode, PSIS):
# compiling the MCMC tiers alone would take minutes on 2 cores. `batch_size` is the
# number of stars vectorised together; the Dask section below uses partitions of the
# same size, so it reuses the compiled programs.

# %%
if SMALL:
    config = InferConfig(method="laplace", n_importance=512, batch_size=256, chunk_size=256)
else:
    config = InferConfig(batch_size=1024, chunk_size=1024)
out_dir = Path(tempfile.mkdtemp(prefix="bayesdsm_nb05_"))
t0 = time.perf_counter()
table = run_inference(
    model, stars, out_dir / "posteriors.parquet", config, idata_dir=out_dir / "idata"
)
dt = time.perf_counter() - t0
print(f"{len(table)} stars in {dt:.0f} s ({len(table) / dt:.1f} stars/s, compilation included)")
methods, counts = np.unique(np.asarray(table["method"]), return_counts=True)
print("sampler used:", dict(zip(methods.tolist(), counts.tolist())))
flags = np.asarray(table["flags"])
print(
    "flagged:",
    int(np.sum(flags != "")),
    "stars;",
    {
        f: int(sum(f in s.split(",") for s in flags))
        for f in ("outside_validity", "chi2", "multimodal", "not_converged", "prior_dominated")
    },
)

# %% [markdown]
# ## 2. Calibration against the truth
#
# If the posteriors are honest, the central 68% interval [p16, p84] contains the truth
# 68% of the time, for every parameter. We also look at the rank of the truth among each
# star's posterior draws: calibrated posteriors give a flat rank histogram
# (simulation-based calibration, Talts et al. 2018). The demo stars were not drawn from
# the inference prior, so this is a calibration check in the spirit of SBC rather than
# the exact test; flat histograms are what we want to see.

# %%
clean = flags == ""
print(f"{'parameter':>9} {'coverage of 68% (all)':>22} {'(unflagged)':>12}")
for p in ("teff", "logg", "feh", "mu", "ebv"):
    inside = (np.asarray(table[f"{p}_p16"]) <= truth[p]) & (
        truth[p] <= np.asarray(table[f"{p}_p84"])
    )
    print(f"{p:>9} {inside.mean():22.3f} {inside[clean].mean():12.3f}")

# one InferenceData per chunk, dims (chain=1, draw, star); the chunks are in input order
idatas = [az.from_netcdf(f) for f in sorted((out_dir / "idata").glob("chunk_*.nc"))]
print(idatas[0].posterior)
fig, axes = plt.subplots(1, 5, figsize=(15, 2.8), sharey=True)
for ax, p in zip(axes, ("teff", "logg", "feh", "mu", "ebv")):
    draws = np.concatenate([i.posterior[p].values[0] for i in idatas], axis=1)  # (draw, star)
    ranks = np.mean(draws < truth[p][None, :], axis=0)
    ax.hist(ranks[clean], bins=20, range=(0, 1), color="0.3")
    ax.axhline(clean.sum() / 20, color="C3")
    ax.set(xlabel=f"rank of true {p}", yticks=[])
axes[0].set_ylabel("stars (red: uniform)")
fig.tight_layout()
plt.show()

# %%
fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
for ax, p, lim in zip(axes, ("teff", "logg", "feh"), ((3500, 8000), (0, 5.2), (-2, 0.6))):
    x, y = truth[p], np.asarray(table[f"{p}_p50"])
    err = [y - np.asarray(table[f"{p}_p16"]), np.asarray(table[f"{p}_p84"]) - y]
    ax.errorbar(
        x[clean],
        y[clean],
        yerr=[e[clean] for e in err],
        fmt=".",
        ms=2,
        lw=0.3,
        alpha=0.5,
        label="unflagged",
    )
    ax.plot(x[~clean], y[~clean], "x", color="C3", ms=3, label="flagged")
    ax.plot(lim, lim, "k", lw=0.6)
    ax.set(xlim=lim, ylim=lim, xlabel=f"true {p}", ylabel=f"posterior median {p}")
axes[0].legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Real stars (needs `BAYESDSM_GREEN2020_DIR`)
#
# The authors' released model on their real dev stars. The spectroscopic labels are
# hidden from the inference (it uses the 13-band photometry, the parallax and the
# reddening prior) and compared afterwards, for stars with ϖ/σ_ϖ > 5. The z-score
# Δ/√(σ_post² + σ_spec²) should be within ±1 for about 68% of the stars.

# %%
GREEN2020_DIR = os.environ.get("BAYESDSM_GREEN2020_DIR")
if GREEN2020_DIR and Path(GREEN2020_DIR, "green2020_test_data_dev.h5").is_file():
    g20 = import_green2020(GREEN2020_DIR)
    real, _ = prepare(
        read_catalog(Path(GREEN2020_DIR, "green2020_test_data_dev.h5"), preset="green2020")
    )
    real = real.subset(np.arange(min(len(real), 256 if SMALL else 5000)))
    t0 = time.perf_counter()
    res = infer_catalog(g20, real, config)
    print(f"{len(real)} real stars in {time.perf_counter() - t0:.0f} s")
    good = np.asarray(real.parallax / real.parallax_err > 5)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for j, (ax, p, lim) in enumerate(
        zip(axes, ("teff", "logg", "feh"), ((3500, 8000), (0, 5.2), (-2, 0.6)))
    ):
        spec = real.theta[:, j]
        med = np.asarray(res[f"{p}_p50"])
        sig_post = 0.5 * (np.asarray(res[f"{p}_p84"]) - np.asarray(res[f"{p}_p16"]))
        z = (med - spec) / np.sqrt(sig_post**2 + real.theta_cov[:, j, j])
        print(
            f"{p:>5}: median |Δ| = {np.median(np.abs(med - spec)[good]):.3g}, "
            f"|z| < 1 for {100 * np.mean(np.abs(z[good]) < 1):.0f}% (ϖ/σ > 5)"
        )
        ax.scatter(spec[good], med[good], s=3, alpha=0.5)
        ax.plot(lim, lim, "k", lw=0.6)
        ax.set(xlim=lim, ylim=lim, xlabel=f"spectroscopic {p}", ylabel=f"photometric {p}")
    fig.suptitle("released Green 2020 model: photometric θ vs spectroscopic θ (ϖ/σ > 5)")
    fig.tight_layout()
    plt.show()
else:
    print(
        "BAYESDSM_GREEN2020_DIR not set: skipping the real stars "
        "(files: Zenodo doi:10.5281/zenodo.3902382)."
    )

# %% [markdown]
# ## 4. The same on Dask
#
# For a survey, the catalog is a directory of Parquet partitions (or a HATS catalog).
# `bayesdsm.batch.infer_partitions` sends one task per partition to a Dask cluster; the
# model is shipped to each worker once, results are written one file per partition,
# atomically, and a manifest lets a re-run skip what is done. On the command line:
#
# ```bash
# bayesdsm infer model.bdsm catalog_dir/ --out results/ --scheduler local:2
# ```
#
# Here a LocalCluster on this machine: 2 worker processes, or 1 under the small settings
# (each new worker process compiles the engine once, a minute or two on a busy 2-core
# machine; the persistent XLA cache lets later workers load those programs instead).

# %%
from bayesdsm.batch import infer_partitions, open_results  # noqa: E402

cat_dir = out_dir / "partitions_in"
cat_dir.mkdir()
n_parts = max(2, int(np.ceil(len(stars) / config.batch_size)))
for k, part in enumerate(np.array_split(np.arange(len(stars)), n_parts)):
    write_catalog(stars.subset(part), cat_dir / f"part_{k:03d}.parquet")
n_workers = 1 if SMALL else 2
t0 = time.perf_counter()
run = infer_partitions(
    model_path,
    cat_dir,
    out_dir / "dask_out",
    scheduler=f"local:{n_workers}",
    config=config,
    progress=False,
    dashboard=False,
)
print(
    f"{n_parts} partitions on {n_workers} worker(s) in {time.perf_counter() - t0:.0f} s "
    "(start-up and compilation included)"
)
print(run.summary)
df = open_results(out_dir / "dask_out")
print(df)
dask_tab = df.compute()
print(
    f"{len(dask_tab)} rows; median Teff (Dask) vs in memory: "
    f"{np.median(dask_tab['teff_p50']):.0f} K vs {np.median(table['teff_p50']):.0f} K"
)

# %% [markdown]
# The Dask result is a lazy DataFrame: join it with other columns, filter on the flags,
# or write it out, without loading the survey into memory.
