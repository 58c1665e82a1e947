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
# # 06 · The authors' released model inside bayesdsm
#
# Green et al. (2021) released their trained network (Keras 2.2.4 `.h5`), the θ
# normalisation, the training density and 5,000 real test stars. Current Keras cannot load
# that file; bayesdsm reads it with `h5py` alone and turns it into a native model file.
#
# This notebook
#
# 1. imports the released model (`bayesdsm import-green2020` in Python),
# 2. reproduces the numbers of the authors' tutorial: B(M + E R) and R at the Sun's θ,
# 3. draws the model's stellar locus and its extinction vector R(θ),
# 4. evaluates χ² on the real stars, which should give the paper's test-set figures
#    (⟨χ²/dof⟩ = 0.87 over stars with χ²/dof ≤ 5, and 2.7% of stars above 5).
#
# **Data needed.** The released files (`green2020_nn_model.h5`,
# `green2020_theta_normalization.json`, `green2020_input_density.h5`,
# `green2020_test_data_dev.h5`) from Zenodo, [doi:10.5281/zenodo.3902382](https://doi.org/10.5281/zenodo.3902382),
# or GitHub, `gregreen/green2020-stellar-model`. Put them in one folder and set
# `BAYESDSM_GREEN2020_DIR=/path/to/folder` before starting Jupyter. Without it, this
# notebook says so and skips the steps that need the files.

# %%
import os
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import bayesdsm
from bayesdsm.catalog import read_catalog
from bayesdsm.cuts import prepare
from bayesdsm.evaluate import evaluate_catalog, predict_table
from bayesdsm.model_file import import_green2020, load_model, save_model

# %matplotlib inline
print("bayesdsm", bayesdsm.__version__)

GREEN2020_DIR = os.environ.get("BAYESDSM_GREEN2020_DIR")
HAVE_FILES = bool(GREEN2020_DIR) and Path(GREEN2020_DIR, "green2020_nn_model.h5").is_file()
if HAVE_FILES:
    GREEN2020_DIR = Path(GREEN2020_DIR)
    print("released files in", GREEN2020_DIR)
else:
    print(
        "BAYESDSM_GREEN2020_DIR is not set (or holds no green2020_nn_model.h5), so the cells "
        "below are skipped.\nGet the files from Zenodo (doi:10.5281/zenodo.3902382) or GitHub "
        "(gregreen/green2020-stellar-model), put them in one folder and set\n"
        "    export BAYESDSM_GREEN2020_DIR=/path/to/folder\nthen restart the notebook."
    )

# %% [markdown]
# ## 1. Import the released model
#
# `import_green2020` reads the three model files and returns a `StellarModel`: the emulator
# (2 × 32 sigmoid hidden layers → B·M, and R = exp(W θₙ + b)), and the released training
# density as the model's validity grid. `save_model` writes a self-describing file (JSON
# header + arrays + SHA-256, no pickle). On the command line the same is
#
# ```bash
# bayesdsm import-green2020 $BAYESDSM_GREEN2020_DIR --out green2020.bdsm
# ```

# %%
if HAVE_FILES:
    workdir = Path(tempfile.mkdtemp(prefix="bayesdsm_nb06_"))
    path = save_model(import_green2020(GREEN2020_DIR), workdir / "green2020.bdsm")
    model = load_model(path)
    print(f"wrote and re-read {path} ({path.stat().st_size / 1e3:.0f} kB)")
    print("bands:", " ".join(model.bands))
    print("hidden layers:", model.emulator.hidden, "| validity components:",
          len(model.validity_grid.names))

# %% [markdown]
# ## 2. The tutorial's numbers
#
# At θ = (5780 K, 4.44, 0.0) and E = 1 the authors' tutorial prints B(M + E R), i.e.
# (M_G, BP − G, RP − G, g − G, …, W2 − G) of a reddened Sun, and R. We compare with their
# values (copied from the tutorial, see `PAPER.md`, "Known values").

# %%
TUTORIAL_BMR = [7.2703, 1.1075, -1.1918, 1.5101, 0.0518, -0.7712, -1.2629, -1.5788,
                -2.9126, -3.5782, -3.8257, -1.3119, -0.6578]
TUTORIAL_R = [2.673, 3.465, 1.960, 3.882, 2.794, 2.060, 1.579, 1.263, 0.763, 0.399, 0.207,
              0.054, 0.000]

if HAVE_FILES:
    sun = predict_table(model, [[5780.0, 4.44, 0.0]], ebv=1.0)
    comps = model.emulator.component_names
    bmr = np.array([sun[f"{c}_red"][0] for c in comps])
    r = np.array([sun[f"R_{b}"][0] for b in model.bands])
    print(f"{'component':>9} {'bayesdsm':>9} {'tutorial':>9} {'diff':>9} | {'R':>6} {'tutorial':>8}")
    for c, x, y, rr, ry in zip(comps, bmr, TUTORIAL_BMR, r, TUTORIAL_R):
        print(f"{c:>9} {x:9.4f} {y:9.4f} {x - y:9.1e} | {rr:6.3f} {ry:8.3f}")
    print(f"max |Δ B(M+ER)| = {np.max(np.abs(bmr - TUTORIAL_BMR)):.1e} mag, "
          f"max |Δ R| = {np.max(np.abs(r - TUTORIAL_R)):.1e}")
    assert np.allclose(bmr, TUTORIAL_BMR, atol=1e-4)
    assert np.allclose(r, TUTORIAL_R, atol=5e-4)

# %% [markdown]
# The learned R_W2 collapsed to ≈ 0: the L1 penalty on the extinction layer removed a
# component that the data could barely constrain (the paper discusses this).
#
# ## 3. The stellar locus and R(θ)
#
# `predict_table` evaluates the model on any table of θ (the `bayesdsm predict` command
# does the same from a CSV). Here: the zero-extinction colour–magnitude locus along a dwarf
# and a giant sequence at three metallicities, the validity density that says where the
# model was trained, and R(Teff) relative to R at the Sun.

# %%
if HAVE_FILES:
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2))
    teff = np.linspace(3500, 7500, 200)
    for feh, ls in zip((-1.0, -0.5, 0.0), (":", "--", "-")):
        for name, logg_of, col in (
            ("dwarfs", lambda t: 4.6 - 0.2 * (t - 3500) / 4000, "C0"),
            ("giants", lambda t: 0.8 + 2.2 * (t - 3500) / 1700, "C3"),
        ):
            t = teff if name == "dwarfs" else teff[teff < 5200]
            p = predict_table(model, np.c_[t, logg_of(t), np.full_like(t, feh)])
            trusted = p["validity_G"] >= 1e-2
            bprp = p["BP_G"] - p["RP_G"]
            axes[0].plot(bprp, p["M_G"], ls, color=col, alpha=0.3)
            axes[0].plot(np.where(trusted, bprp, np.nan), p["M_G"], ls, color=col,
                         label=f"{name} [Fe/H]={feh:+.1f}")
    axes[0].invert_yaxis()
    axes[0].set(xlabel="BP − RP (E = 0)", ylabel="M_G",
                title="locus (faint: validity < 1e-2)")
    axes[0].legend(fontsize=7)

    # validity density of G at solar metallicity: where the training stars were
    grid = model.validity_grid
    tt, gg = np.meshgrid(np.linspace(3000, 8500, 220), np.linspace(-0.5, 5.5, 220))
    rho = np.asarray(model.validity(np.stack([tt, gg, np.zeros_like(tt)], -1), "G"))
    im = axes[1].pcolormesh(tt, gg, np.log10(np.maximum(rho, 1e-5)), cmap="viridis",
                            vmin=-4, vmax=0, shading="auto")
    axes[1].contour(tt, gg, rho, levels=[1e-3, 1e-2], colors=["w", "k"], linewidths=1)
    axes[1].set(xlim=(8500, 3000), ylim=(5.5, -0.5), xlabel="Teff [K]", ylabel="log g",
                title="training density (G), [Fe/H]=0")
    fig.colorbar(im, ax=axes[1], label="log10 density (contours 1e-3, 1e-2)")

    sun_r = predict_table(model, [[5780.0, 4.44, 0.0]])
    p = predict_table(model, np.c_[teff, np.full_like(teff, 4.4), np.zeros_like(teff)])
    for b in ("G", "BP", "RP", "g", "r", "J", "W1"):
        axes[2].plot(teff, p[f"R_{b}"] / sun_r[f"R_{b}"][0] - 1, label=b)
    axes[2].axhline(0, color="k", lw=0.5)
    axes[2].set(xlabel="Teff [K] (log g = 4.4, [Fe/H] = 0)", ylabel="R(θ)/R(Sun) − 1",
                title="extinction vector vs Teff")
    axes[2].legend(ncol=2, fontsize=7)
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 4. χ² on the real stars
#
# The released test data carry the paper's §3 preparation already (error floors, θ cuts,
# survey zero points); `prepare` applies what is left, the parallax rule (ϖ/σ_ϖ < 5 → the
# parallax is not used) and prints what each rule did. `evaluate_catalog` (the
# `bayesdsm evaluate` command) then computes each star's χ² in colour space (Eq. 6) at the
# spectroscopic θ̂ with the catalog's reddening prior, its degrees of freedom and the
# residual score of every colour (Eq. 18).

# %%
if HAVE_FILES:
    raw = read_catalog(GREEN2020_DIR / "green2020_test_data_dev.h5", preset="green2020")
    cat, report = prepare(raw)
    print(report)

# %%
if HAVE_FILES:
    ev = evaluate_catalog(model, cat)
    s = ev.summary
    print(f"stars evaluated: {s['n_stars']}")
    print(f"<chi2/dof> over chi2/dof <= 5 : {s['mean_chi2_dof_below5']:.3f}   (paper: 0.87)")
    print(f"fraction with chi2/dof > 5    : {100 * s['frac_chi2_dof_above5']:.2f}%  (paper: 2.7%)")
    print("residual score 16/50/84th percentiles:",
          np.round(s["score_p16_p50_p84"], 2), "(ideal: -1, 0, +1)")

# %%
if HAVE_FILES:
    cols = ev.columns
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    x = cols["chi2_dof"][np.isfinite(cols["chi2_dof"])]
    axes[0].hist(np.clip(x, 0, 10), bins=80, histtype="step", color="k")
    axes[0].axvline(5, color="C3", ls="--", label="outlier cut (χ²/dof = 5)")
    axes[0].set(xlabel="χ²/dof (clipped at 10)", ylabel="stars", yscale="log",
                title=f"{s['n_stars']} real stars, released model")
    axes[0].legend()
    score_cols = [k for k in cols if k.startswith("score_")]
    pct = np.array([np.nanpercentile(cols[k], [16, 50, 84]) for k in score_cols])
    xs = np.arange(len(score_cols))
    axes[1].errorbar(xs, pct[:, 1], yerr=[pct[:, 1] - pct[:, 0], pct[:, 2] - pct[:, 1]],
                     fmt="o", capsize=3)
    for y in (-1, 0, 1):
        axes[1].axhline(y, color="0.6", lw=0.8, ls="--" if y else "-")
    axes[1].set_xticks(xs, [k[len("score_"):].replace("_", "−") for k in score_cols],
                       rotation=60)
    axes[1].set(ylabel="residual score (16/50/84%)", title="per-colour residual scores")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# The numbers above come out of the code, not out of the paper: the imported model, the
# catalog preset, the cuts and the likelihood are all bayesdsm's. Where next:
#
# * `03_validate` draws the paper's §5–6 figures (residual trends with E, ΔR/R against
#   theory, validity) for a model, including this one;
# * `04_star_posteriors` uses a model like this one to infer θ, distance and reddening of
#   stars from their photometry alone.
