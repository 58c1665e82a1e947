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
# # 01 · Data: a survey catalog and the paper's §3 preparation
#
# bayesdsm learns stellar photometry from stars that have **spectroscopic labels**
# θ = (Teff, log g, [Fe/H]) and **photometry** in up to 13 bands (Gaia G/BP/RP, PS1
# grizy, 2MASS JHKs, unWISE W1/W2), plus a parallax and a reddening prior Ê ± σ_E.
# Everything lives in one container, `bayesdsm.catalog.Catalog`, of plain NumPy arrays.
#
# This notebook
#
# 1. loads the bundled **demo survey** (simulated from real stellar models, with the
#    truth kept), and the authors' **real dev stars** when `BAYESDSM_GREEN2020_DIR` is set;
# 2. applies the §3 preparation (`bayesdsm.cuts.prepare`) and prints its report;
# 3. plots the data: a colour–magnitude diagram, a Kiel diagram and the coverage by band.
#
# Your own survey: `read_catalog(path, preset=...)` reads FITS/Parquet/ECSV/CSV/HDF5, with
# presets for APOGEE DR17, GALAH DR3, LAMOST DD-Payne, Gaia DR3, PS1, 2MASS and unWISE
# (`bayesdsm.catalog.list_presets()`), or the canonical column names (see
# `bayesdsm.catalog._schema`).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import bayesdsm
from bayesdsm.catalog import list_presets, read_catalog
from bayesdsm.config import CutsConfig
from bayesdsm.cuts import prepare
from bayesdsm.data import demo_path

# %matplotlib inline
SMALL = os.environ.get("BAYESDSM_NOTEBOOK_SMALL") == "1"  # set by the test suite
print("bayesdsm", bayesdsm.__version__, "| small settings:", SMALL)
print("presets:", ", ".join(list_presets()))


# %% [markdown]
# ## 1. The demo survey
#
# The demo survey was made by `bayesdsm.simulate` (the command is in its docstring and in
# `data/PROVENANCE.md`): MIST isochrones and bolometric corrections give the true
# photometry, a Galactic model and a 3-D dust model give distances and reddenings, and
# LAMOST/APOGEE/GALAH-like selections, Gaia-like parallaxes and survey-like photometric
# errors and missing bands are applied. `bayesdsm.data.demo_path()` finds the file: it ships
# with the package (an installed wheel has it too), or set `BAYESDSM_DATA_DIR` to a folder.

# %%
demo = read_catalog(demo_path())
print(f"read {len(demo)} stars from {demo_path().name}")
if SMALL and len(demo) > 10000:
    demo = demo.subset(np.random.default_rng(0).choice(len(demo), 10000, replace=False))
    print("small settings: using a random 10,000 of them")

print("bands:", " ".join(demo.bands))
names, counts = np.unique(demo.survey, return_counts=True)
print("surveys:", ", ".join(f"{n} {c}" for n, c in zip(names, counts)))
print("truth columns:", ", ".join(k for k in sorted(demo.extra) if k.startswith("true_"))[:300], "...")

# %% [markdown]
# Every field is a plain array in documented units: `theta` (N, 3), `theta_cov` (N, 3, 3),
# `mag`/`mag_err` (N, 13) with `observed` as the mask of usable bands, `parallax` and
# `parallax_err` in mas, and the reddening prior `ebv`, `ebv_err` on the SFD scale.

# %%
i = 0
print("θ̂ =", demo.theta[i], "± diag", np.sqrt(np.diag(demo.theta_cov[i])).round(3))
print("mag =", np.round(demo.mag[i], 3))
print("observed =", demo.observed[i].astype(int))
print(f"parallax = {demo.parallax[i]:.3f} ± {demo.parallax_err[i]:.3f} mas, "
      f"E = {demo.ebv[i]:.3f} ± {demo.ebv_err[i]:.3f}")

# %% [markdown]
# ## 2. The §3 preparation
#
# `prepare(cat, CutsConfig())` applies, with the paper's values as defaults: a 0.02 mag
# error floor on every band; bands with σ > 0.2 mag become unobserved; stars with a
# parallax SNR < 5 keep their parallax but it is not used (`parallax_ok = False`); θ
# variance floors of (10 K)², (0.05)², (0.03)² and cuts at σ > (200 K, 0.5, 0.5); a
# 0.02 mag floor on σ_E; the G band is required; and survey zero points on θ (LAMOST and
# APOGEE shifted to the GALAH scale). Each threshold is a field of `CutsConfig`. The
# report counts what every rule did, so nothing disappears silently.

# %%
cat, report = prepare(demo, CutsConfig())
print(report)

# %% [markdown]
# ## 3. Looking at the data
#
# Three views of the prepared catalog:
#
# * a **colour–magnitude diagram**, with the absolute magnitude from the parallax
#   (stars with a usable parallax), coloured by the reddening prior: the reddened stars
#   are pushed down and to the right along the extinction vector;
# * a **Kiel diagram** of the spectroscopic labels, coloured by [Fe/H];
# * the **coverage** of each band, by survey: PS1 misses the southern sky and saturates
#   on bright stars, unWISE W2 is often too noisy, and so on.


# %%
def data_figure(cat, title):
    b = {name: j for j, name in enumerate(cat.bands)}
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.3))

    ok = cat.parallax_ok & cat.observed[:, b["BP"]] & cat.observed[:, b["RP"]]
    mu = 10 - 5 * np.log10(cat.parallax[ok])
    bprp = cat.mag[ok, b["BP"]] - cat.mag[ok, b["RP"]]
    sc = axes[0].scatter(bprp, cat.mag[ok, b["G"]] - mu, c=cat.ebv[ok], s=2, cmap="magma_r",
                         vmin=0, vmax=np.percentile(cat.ebv[ok], 95), rasterized=True)
    axes[0].set(xlabel="BP − RP (observed)", ylabel="G − μ(ϖ)",
                title=f"CMD, {ok.sum()} stars with ϖ/σ ≥ 5", xlim=(0, 3.5))
    axes[0].invert_yaxis()
    fig.colorbar(sc, ax=axes[0], label="Ê (prior)")

    sc = axes[1].scatter(cat.theta[:, 0], cat.theta[:, 1], c=cat.theta[:, 2], s=2,
                         cmap="viridis", vmin=-1.5, vmax=0.5, rasterized=True)
    axes[1].set(xlabel="Teff [K]", ylabel="log g", title="Kiel diagram (θ̂)")
    axes[1].invert_xaxis()
    axes[1].invert_yaxis()
    fig.colorbar(sc, ax=axes[1], label="[Fe/H]")

    surveys = np.unique(cat.survey)
    width = 0.8 / len(surveys)
    x = np.arange(len(cat.bands))
    for k, s in enumerate(surveys):
        sel = cat.survey == s
        axes[2].bar(x + (k - (len(surveys) - 1) / 2) * width, cat.observed[sel].mean(0),
                    width, label=f"{s} ({sel.sum()})")
    axes[2].set_xticks(x, cat.bands)
    axes[2].set(ylabel="fraction observed (σ ≤ 0.2)", ylim=(0, 1.05), title="coverage by band")
    axes[2].legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


data_figure(cat, f"demo survey (simulated), {len(cat)} stars after §3")
plt.show()

# %% [markdown]
# The demo survey also knows the truth, so we can check its error bars: θ̂ − θ_true
# divided by the catalogue's σ (after the floors) should be close to a unit normal. The
# reddening prior's normalised error comes out narrower than N(0, 1): its σ_E, with the
# 0.02 mag floor added, is conservative for the low-reddening stars.

# %%
if "true_teff" in cat.extra:
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.2))
    z_bins = np.linspace(-5, 5, 61)
    zz = np.linspace(-5, 5, 200)
    for j, (name, col) in enumerate((("Teff", "true_teff"), ("log g", "true_logg"),
                                     ("[Fe/H]", "true_feh"), ("E", "true_ebv"))):
        if col == "true_ebv":
            z = (cat.ebv - cat.extra[col]) / cat.ebv_err
        else:
            z = (cat.theta[:, j] - cat.extra[col]) / np.sqrt(cat.theta_cov[:, j, j])
        axes[j].hist(z, bins=z_bins, density=True, histtype="step", color="k")
        axes[j].plot(zz, np.exp(-zz**2 / 2) / np.sqrt(2 * np.pi), "C3", lw=1)
        axes[j].set(xlabel=f"({name} obs − true) / σ", yticks=[])
    axes[0].set_ylabel("density (red: N(0, 1))")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 4. The real dev stars (needs `BAYESDSM_GREEN2020_DIR`)
#
# The authors released 5,000 real stars from their test set (LAMOST, APOGEE and GALAH ×
# Gaia DR2 × PS1 × 2MASS × unWISE), in `green2020_test_data_dev.h5`. The `green2020` preset
# reads them; their §3 floors, cuts and zero points are already applied (recorded in the
# catalog's `meta`), so `prepare` only applies the parallax rule and reports the rest as
# skipped. Get the files from Zenodo (doi:10.5281/zenodo.3902382) or GitHub
# (`gregreen/green2020-stellar-model`) and set `BAYESDSM_GREEN2020_DIR` to their folder.

# %%
GREEN2020_DIR = os.environ.get("BAYESDSM_GREEN2020_DIR")
dev_file = Path(GREEN2020_DIR or ".", "green2020_test_data_dev.h5")
if GREEN2020_DIR and dev_file.is_file():
    real, real_report = prepare(read_catalog(dev_file, preset="green2020"))
    print(real_report)
    data_figure(real, f"real dev stars (Green et al. 2021 release), {len(real)} stars")
    plt.show()
else:
    print("BAYESDSM_GREEN2020_DIR is not set (or has no green2020_test_data_dev.h5): "
          "skipping the real stars. Get the files from Zenodo, doi:10.5281/zenodo.3902382.")

# %% [markdown]
# Compare the two coverage panels: the demo survey was simulated with the missing-band
# rates of the paper's Table 1, so it should resemble the real stars.
#
# **Next:** `02_fit_emulator` trains the emulator on the prepared demo survey.
