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
# # 03 · Validating a model: the paper's §5–6 figures
#
# A learned model earns trust by being looked at. This notebook draws, for the model
# fitted in `02_fit_emulator`, the figures of Green et al. (2021) §5–6:
#
# 1. zero-extinction colour–magnitude diagrams beside the observed ones (Figs. 6–7);
# 2. residual scores, binned in Teff, log g, [Fe/H] and E (Fig. 12);
# 3. the variation of the extinction vector, ΔR/R(θ), beside the theory curve of a
#    blackbody × passband × F99 (Fig. 10);
# 4. the validity region: scores against the training density (Fig. 13).
#
# Because the demo survey is simulated, we can also compare the model with the **truth**.
#
# Under the small settings of the test suite (`BAYESDSM_NOTEBOOK_SMALL=1`) the model of
# notebook 02 is trained on 3,000 stars for a few hundred steps, and these figures are
# correspondingly rough (colours good to a few 0.01 mag, R(θ) poorly constrained). Run
# notebook 02 with the full settings to validate the converged model.
# At the end, `make_report` (the `bayesdsm report` command) writes all the figures at
# once, and does the same for the authors' released model on real stars when
# `BAYESDSM_GREEN2020_DIR` is set.
#
# The functions in `bayesdsm.diagnostics` return arrays; `bayesdsm.plotting` draws them
# and returns matplotlib `Figure`s (no pyplot state), shown here with `display`.

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display

import bayesdsm
from bayesdsm import diagnostics as D
from bayesdsm import plotting as P
from bayesdsm.catalog import read_catalog
from bayesdsm.cuts import prepare
from bayesdsm.data import demo_path
from bayesdsm.evaluate import predict_table
from bayesdsm.model_file import load_model, save_model
from bayesdsm.report import make_report
from bayesdsm.validity import TRUST_ABSOLUTE, TRUST_COLOURS

# %matplotlib inline
SMALL = os.environ.get("BAYESDSM_NOTEBOOK_SMALL") == "1"  # set by the test suite
WORK = Path("bayesdsm_work")
WORK.mkdir(exist_ok=True)
print("bayesdsm", bayesdsm.__version__, "| small settings:", SMALL)


# %% [markdown]
# ## The model and the data
#
# The model written by `02_fit_emulator` (`bayesdsm_work/demo_model.bdsm`). If it is not
# there, a quick fit is run here with small settings, so this notebook also runs alone.

# %%
demo = read_catalog(demo_path())
cat, report = prepare(demo)
if SMALL and len(cat) > 3000:
    cat = cat.subset(np.sort(np.random.default_rng(0).choice(len(cat), 3000, replace=False)))

model_path = WORK / "demo_model.bdsm"
if not model_path.is_file():
    from bayesdsm.train import TrainConfig, to_stellar_model, train

    print(f"{model_path} not found (run 02_fit_emulator first for a better model): "
          "fitting a quick one")
    quick = TrainConfig(n_iterations=4, epochs=20, batch_size=128, learning_rate=1e-2,
                        chi2_end_iteration=4, validate_every_epoch=False)
    save_model(to_stellar_model(train(cat, quick)), model_path)
model = load_model(model_path)
emu = model.emulator
print(f"model {model_path}: {len(model.history)} training iterations; "
      f"catalog: {len(cat)} stars")

# %% [markdown]
# ## Per-star diagnostics
#
# `star_diagnostics` computes, for every star with θ̂, in one jitted pass: the best-fit
# reddening (Eq. 8–9), the residual score of each colour (Eq. 18), the absolute-magnitude
# score (stars with a usable parallax), χ² and its dof, R(θ̂) and the zero-extinction
# magnitudes M(θ̂).

# %%
diag = D.star_diagnostics(emu, cat)
chi2_dof = diag.chi2 / np.maximum(diag.dof, 1)
pct = np.nanpercentile(diag.scores, [16, 50, 84])
print(f"median χ²/dof = {np.median(chi2_dof):.3f}; "
      f"{100 * np.mean(chi2_dof > 5):.1f}% of stars above 5")
print(f"scores, all colours: 16/50/84% = {pct.round(2)}  (ideal -1/0/+1)")

# %% [markdown]
# ## 1. Zero-extinction colour–magnitude diagrams (Figs. 6–7)
#
# Left: the observed CMD (absolute magnitudes from parallaxes, reddened and noisy, as
# observed) with the mean reddening vector R(⟨θ⟩) for E = 0.5. Right: the model's
# prediction M(θ̂) at E = 0 for the same stars: dust and photometric noise are gone, what
# remains is the spread from θ̂ errors. The second figure colours the predicted CMD by
# the mean θ in each pixel.

# %%
obs_abs = D.observed_absolute_magnitudes(cat, diag)
dR, R0, theta0 = D.delta_r_over_r(emu, diag)
display(P.plot_cmd(obs_abs, diag.M0, diag.bands, R0))
display(P.plot_cmd_mean_theta(diag.M0, diag.bands, diag.theta))

# %% [markdown]
# ### Against the truth
#
# The demo survey was drawn from MIST models, so the model can be checked directly: its
# zero-extinction colours at the *true* θ against the true colours, where the training
# density says the model is trustworthy (≥ 1e-2).

# %%
if "true_teff" in cat.extra:
    true_theta = np.c_[cat.extra["true_teff"], cat.extra["true_logg"], cat.extra["true_feh"]]
    pred = predict_table(model, true_theta)
    ref = cat.bands[0]
    ok = pred[f"validity_{ref}"] >= TRUST_ABSOLUTE
    rms = {}
    for b in cat.bands[1:]:
        d = pred[f"{b}_{ref}"] - (cat.extra[f"true_M_{b}"] - cat.extra[f"true_M_{ref}"])
        rms[f"{b}−{ref}"] = np.sqrt(np.mean(d[ok] ** 2))
    dwarf = ok & (true_theta[:, 1] >= 3.8)
    d_mg = pred[f"M_{ref}"] - cat.extra[f"true_M_{ref}"]
    rms[f"M_{ref} (dwarfs)"] = np.sqrt(np.mean(d_mg[dwarf] ** 2))
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.bar(range(len(rms)), list(rms.values()))
    ax.set_xticks(range(len(rms)), list(rms), rotation=45)
    ax.axhline(0.01, color="C3", ls="--", lw=1, label="0.01 mag")
    ax.set(ylabel="RMS (model − truth) [mag]",
           title=f"zero-extinction photometry at the true θ, {ok.sum()} stars in the "
                 "validity region")
    ax.legend()
    plt.show()

# %% [markdown]
# ## 2. Residual scores (Fig. 12)
#
# Score = (observed − predicted colour) / σ. For a calibrated model its 16/50/84th
# percentiles are −1/0/+1 everywhere. Binned in Teff, log g, [Fe/H] and E, trends show
# where the model (or the error model) is off. The paper found that colours with the wide
# Gaia G band trend with E, because extinction in a wide band is nonlinear (Appendix B).

# %%
trends = D.residual_trends(diag, n_bins=10 if SMALL else 20)
names = [n for n in ("g-r", "r-G", "BP-RP", "J-H", "W1-G")
         if n in diag.pair_names
         and np.isfinite(diag.scores[:, diag.pair_names.index(n)]).sum() >= 50]
display(P.plot_residual_trends(diag, trends, names))
pct = np.nanpercentile(diag.scores, [16, 50, 84], axis=0).T
display(P.plot_score_percentiles(diag.pair_names, pct))

# %% [markdown]
# ## 3. How R varies with θ (Fig. 10)
#
# ΔR/R = R(θ̂)/R₀ − 1, with R₀ the extinction vector at the catalogue-mean θ, against
# Teff and coloured by log g, beside the curve that a blackbody seen through each real
# passband behind an F99 dust law gives (`bayesdsm.passband_extinction`, computed, not typed in).
# In G it should vary by about ±15% over 4000–7500 K.

# %%
teff_grid = np.linspace(*np.percentile(diag.theta[:, 0], [0.5, 99.5]), 40)
theory, missing = D.theory_delta_r(teff_grid, diag.bands, teff_ref=float(theta0[0]))
if missing:
    print("no theory curve for:", missing)
display(P.plot_delta_r(diag.theta[:, 0], dR, diag.theta[:, 1], diag.bands, theory=theory,
                       teff_grid=teff_grid))
if "true_R_G" in cat.extra:
    r_true = np.array([np.mean(cat.extra[f"true_R_{b}"]) for b in diag.bands])
    print("band        " + " ".join(f"{b:>6}" for b in diag.bands))
    print("R(⟨θ⟩) model " + " ".join(f"{x:6.3f}" for x in R0))
    print("⟨A/E⟩ truth  " + " ".join(f"{x:6.3f}" for x in r_true))

# %% [markdown]
# ## 4. The validity region (Fig. 13)
#
# The model is only as good as its training set is dense. The validity grid stored in the
# model is the kernel density of the training θ (bandwidth 50 K, 0.05, 0.05), one per band
# and one for parallax, peak-normalised. The paper trusts absolute magnitudes where it is
# ≥ 1e-2 and colours where it is ≥ 1e-3. Below, the scores against the density: the
# spread grows as the density falls.

# %%
ref = diag.bands[0]
comps = [f"M_{ref}"] + [f"{b}-{ref}" for b in ("r", "J", "W1") if b in diag.bands]
vt = D.validity_trends(diag, model.validity_grid, components=comps,
                       min_count=10 if SMALL else 20)
display(P.plot_validity(vt))

fig, ax = plt.subplots(figsize=(5.5, 4))
tt, gg = np.meshgrid(np.linspace(3500, 8000, 150), np.linspace(0, 5.5, 150))
rho = np.asarray(model.validity(np.stack([tt, gg, np.full_like(tt, -0.2)], -1), ref))
ax.contourf(tt, gg, np.log10(np.maximum(rho, 1e-6)), levels=np.linspace(-4, 0, 9),
            cmap="Blues")
ax.contour(tt, gg, rho, levels=[TRUST_COLOURS, TRUST_ABSOLUTE], colors=["C1", "C3"])
ax.scatter(diag.theta[:, 0], diag.theta[:, 1], s=0.5, c="k", alpha=0.3)
ax.set(xlim=(8000, 3500), ylim=(5.5, 0), xlabel="Teff [K]", ylabel="log g",
       title="training density at [Fe/H] = −0.2\n(orange 1e-3: colours, red 1e-2: M)")
plt.show()

# %% [markdown]
# ## One command: `bayesdsm report`
#
# Everything above (and the colour–colour diagrams, reddening slopes against Schlafly et
# al. 2016 and the training history) in one call, written as PNGs, `summary.json` and a
# self-contained `report.html`:
#
# ```bash
# bayesdsm report bayesdsm_work/demo_model.bdsm data/demo_survey.parquet --out report/
# ```

# %%
rep = make_report(model, cat, WORK / "report_demo", progress=False, title="demo model")
print("figures:", ", ".join(rep.figures))
print("skipped:", rep.skipped or "none")
print(rep.summary["findings"])

# %% [markdown]
# ### The released model on real stars (needs `BAYESDSM_GREEN2020_DIR`)
#
# The same report for the authors' model on their 5,000 real dev stars. The paper's two
# qualitative findings should show up: residuals of colours with G trend with E, and the
# W2 extinction component collapsed to ≈ 0. Get the files from Zenodo
# (doi:10.5281/zenodo.3902382) and set `BAYESDSM_GREEN2020_DIR` if this is skipped.

# %%
GREEN2020_DIR = os.environ.get("BAYESDSM_GREEN2020_DIR")
if GREEN2020_DIR and Path(GREEN2020_DIR, "green2020_test_data_dev.h5").is_file():
    real, _ = prepare(read_catalog(Path(GREEN2020_DIR, "green2020_test_data_dev.h5"),
                                   preset="green2020"))
    rep_real = make_report(GREEN2020_DIR, real, WORK / "report_green2020", progress=False,
                           title="Green 2020 release, real dev stars")
    print(rep_real.summary["findings"])
    for name in ("fig12_residual_trends", "fig10_delta_R"):
        if name in rep_real.figures:
            display(Image(filename=str(rep_real.figures[name])))
else:
    print("BAYESDSM_GREEN2020_DIR not set: skipping the released model on real stars.")

# %% [markdown]
# **Next:** `04_star_posteriors` uses a model to infer θ, distance and reddening of single
# stars from photometry alone, with NUTS.
