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
# # 04 · Posteriors of single stars with NUTS
#
# With a trained emulator, the photometry of a star *without* a spectrum constrains its
# θ = (Teff, log g, [Fe/H]), its distance modulus μ and its reddening E:
#
# p(θ, μ, E | m̂, ϖ̂, Ê) ∝ N(m̂ | M(θ) + μ + E R(θ), σ²) · N(ϖ̂ | 10^((10−μ)/5), σ_ϖ²)
# · p(E | Ê, σ_E) · p(θ) · p(μ)
#
# (§7 of the paper). p(θ) is the model's training density (smoothed), which keeps θ on
# the stellar locus; p(μ) is a volume prior with an exponential cut-off (or a Galactic
# thin/thick disk + halo prior when (l, b) are known).
#
# This notebook samples a handful of demo stars with NumPyro's NUTS and looks at the
# result the way a Bayesian should: ArviZ summary (R̂, ESS), trace and rank plots, and
# corner plots with the truth marked. The stars: a well-measured dwarf, a giant, the
# same dwarf **without its parallax**, and a star **outside the validity region**, with
# what bayesdsm's flags say about each.

# %%
import os
from pathlib import Path

import arviz as az
import corner
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display
from numpyro.infer import MCMC, NUTS

import bayesdsm
from bayesdsm.catalog import read_catalog
from bayesdsm.cuts import prepare
from bayesdsm.data import demo_path
from bayesdsm.demo import quick_model
from bayesdsm.infer import (
    PARAMS,
    InferConfig,
    StarArrays,
    build_posterior,
    find_modes,
    infer_catalog,
    star_arrays,
    star_model,
)

# %matplotlib inline
SMALL = os.environ.get("BAYESDSM_NOTEBOOK_SMALL") == "1"  # set by the test suite
WORK = Path("bayesdsm_work")
WORK.mkdir(exist_ok=True)
print("bayesdsm", bayesdsm.__version__, "| small settings:", SMALL)


# %% [markdown]
# ## The model and the stars
#
# The model fitted in `02_fit_emulator` (a quick fit is made here if it is missing). The
# demo survey knows every star's true θ, μ and E, so we can see whether the posteriors
# cover the truth.

# %%
demo = read_catalog(demo_path())
cat, _ = prepare(demo)

model_path = WORK / "demo_model.bdsm"
model = quick_model(cat, model_path)  # 02_fit_emulator's model, or a quick fit if missing

# %% [markdown]
# Pick the stars. "Validity" is the training density at the star's true θ (1 at the peak;
# the paper trusts colours above 1e-3 and absolute magnitudes above 1e-2).

# %%
ex = cat.extra
true = np.c_[
    ex["true_teff"],
    ex["true_logg"],
    ex["true_feh"],
    ex["true_mu"],
    10 ** (ex["true_mu"] / 5 + 1),
    ex["true_ebv"],
]
rho = np.asarray(model.validity(true[:, :3].astype(np.float32), cat.bands[0]))
snr = cat.parallax / cat.parallax_err
n_obs = cat.observed.sum(1)
good = (n_obs >= 11) & (rho > 0.05)
dwarf = int(np.flatnonzero(good & (true[:, 1] > 4.3) & (snr > 30) & (true[:, 5] < 0.1))[0])
giant = int(np.flatnonzero(good & (true[:, 1] < 2.6) & (snr > 8))[0])
outside = int(np.argmin(np.where(n_obs >= 8, rho, np.inf)))
rows = [dwarf, giant, dwarf, outside]
labels = ["dwarf", "giant", "dwarf, parallax removed", "outside validity"]
sel = cat.subset(np.array(rows))
sel = sel.replace(
    parallax=np.where(np.arange(4) == 2, np.nan, sel.parallax),
    parallax_ok=np.where(np.arange(4) == 2, False, sel.parallax_ok),
)
for k, (r, lab) in enumerate(zip(rows, labels)):
    print(
        f"{lab:>24}: true Teff {true[r, 0]:6.0f} K, log g {true[r, 1]:.2f}, "
        f"[Fe/H] {true[r, 2]:+.2f}, d {true[r, 4]:6.0f} pc, E {true[r, 5]:.3f} | "
        f"{n_obs[r]} bands, ϖ/σ = {sel.parallax[k] / sel.parallax_err[k]:.1f}, "
        f"validity {rho[r]:.1e}"
    )

# %% [markdown]
# ## First the modes: MAP + Laplace
#
# `build_posterior` turns the model and an `InferConfig` into a JAX log density
# (`Posterior`) over z, an unconstrained version of (θ, μ, E); `star_arrays` converts
# catalog rows into its inputs. `find_modes` climbs the posterior from several starts
# (dwarf-like and giant-like) for all stars at once and keeps each local maximum with its
# Laplace weight. Photometry alone often allows a dwarf *and* a giant solution: the
# parallax is what decides between them.

# %%
config = InferConfig(prior="volume", theta_prior="density")
post = build_posterior(model, config)
stars, _ = star_arrays(sel, config, model.bands)
# the batched engine pads a batch to a power of two (at least 8 stars): padding the same
# way lets `infer_catalog` below reuse this compiled function instead of compiling its own
padded = stars.take(np.arange(8) % len(sel)).astype(post.dtype)  # JAX arrays, as the engine
modes = find_modes(post, padded, config.n_starts, config.map_steps, config.mode_barrier)
for k, lab in enumerate(labels):
    w = np.exp(np.asarray(modes.log_weight[k]))
    print(f"{lab}:")
    for j in np.argsort(-w):
        if np.asarray(modes.valid[k, j]) and w[j] > 1e-3:
            teff, logg, feh, mu, d, e = np.asarray(post.physical(modes.z[k, j]))
            print(
                f"    mode weight {w[j]:.3f}: Teff {teff:6.0f} K, log g {logg:.2f}, "
                f"[Fe/H] {feh:+.2f}, d {d:6.0f} pc, E {e:.3f}"
            )

# %% [markdown]
# ## NUTS, one star at a time
#
# `star_model` is the NumPyro model of one star: a site `z` (unconstrained θ, μ, E) whose
# density is the posterior above, and the physical parameters as deterministic sites. We
# run NumPyro's `MCMC(NUTS)` on it (dense mass matrix, 2 chains), each star started at its
# highest mode. One `MCMC` object serves all four stars: with `jit_model_args=True` the
# star is an argument of the compiled sampler, so NUTS is compiled once, not once per
# star (`bayesdsm.infer.nuts_one_star` does the same for a single star). NumPyro's NUTS
# is the reference path: exact, but about a second per star; notebook 05 uses the
# batched engine for thousands of stars.

# %%
n_warm, n_draw = (200, 200) if SMALL else (1000, 1000)  # per chain
mcmc = MCMC(
    NUTS(star_model, dense_mass=True),
    num_warmup=n_warm,
    num_samples=n_draw,
    num_chains=2,
    chain_method="sequential",
    jit_model_args=True,
    progress_bar=False,
)
idatas = []
for k, lab in enumerate(labels):
    star = StarArrays(*(jnp.asarray(np.asarray(a)[k]) for a in stars))
    best = int(np.argmax(np.asarray(modes.log_weight[k])))
    init = {"z": jnp.broadcast_to(modes.z[k, best], (2, 5))}  # one start per chain
    mcmc.run(jax.random.PRNGKey(k), post, star, init_params=init)
    idatas.append(az.from_numpyro(mcmc))
    print(f"{lab}: {mcmc.num_samples} draws x {mcmc.num_chains} chains")

# %% [markdown]
# ## ArviZ: summary, R̂ and ESS
#
# R̂ compares the chains (≤ 1.01 is converged); the bulk and tail effective sample sizes
# say how many independent draws the chains are worth (≥ 200 or so for stable 16/84th
# percentiles). Both chains start at the highest mode, so a second mode shows up only if
# NUTS finds it; the batched engine of notebook 05 splits its chains over the modes.

# %%
for lab, idata in zip(labels, idatas):
    print(f"--- {lab}")
    display(
        az.summary(idata, var_names=list(PARAMS), round_to=3)[
            ["mean", "sd", "hdi_3%", "hdi_97%", "ess_bulk", "ess_tail", "r_hat"]
        ]
    )

# %% [markdown]
# Trace and rank plots of the giant: the rank plots should be flat histograms, one per
# chain; a chain stuck elsewhere shows up as a tilted histogram.

# %%
az.plot_trace(
    idatas[1], var_names=["teff", "logg", "feh", "mu", "ebv"], compact=False, figsize=(11, 8)
)
plt.tight_layout()
plt.show()
az.plot_rank(idatas[1], var_names=["teff", "logg", "feh", "mu", "ebv"], figsize=(13, 2.6))
plt.show()

# %% [markdown]
# ## Corner plots, with the truth
#
# Blue lines mark the true values, the orange the spectroscopic θ̂ of the catalog (which
# the inference did not see).


# %%
def corner_plot(idata, r, k, title):
    names = ["teff", "logg", "feh", "dist_pc", "ebv"]
    draws = np.column_stack([idata.posterior[n].values.ravel() for n in names])
    fig = corner.corner(
        draws,
        labels=["Teff", "log g", "[Fe/H]", "d [pc]", "E"],
        truths=[true[r, 0], true[r, 1], true[r, 2], true[r, 4], true[r, 5]],
        quantiles=[0.16, 0.5, 0.84],
        show_titles=True,
        title_fmt=".2f",
        title_kwargs={"fontsize": 8},
        label_kwargs={"fontsize": 9},
    )
    axes = np.array(fig.axes).reshape(5, 5)
    for j in range(3):
        axes[j, j].axvline(sel.theta[k, j], color="C1", ls="--")
    fig.suptitle(title, y=1.02)
    plt.show()


for k, (r, lab) in enumerate(zip(rows, labels)):
    corner_plot(idatas[k], r, k, lab)

# %% [markdown]
# ## What the flags say
#
# `infer_catalog` (the `bayesdsm infer` command) runs the same posterior through the
# batched engine and reports, per star, percentiles, R̂, ESS, the sampler it needed,
# and flags: `outside_validity` (training density at the MAP below 1e-3: the model is
# extrapolating), `chi2` (the best fit is poor), `multimodal` (e.g. dwarf vs giant),
# `not_converged`, `prior_dominated` (too few bands).
#
# Under the small settings of the test suite the engine stops at its first tier,
# `method="laplace"` (multi-start MAP, Laplace per mode, PSIS: no R̂ then), because
# compiling its HMC and NUTS tiers would take minutes; the flags are computed the same
# way. The default, `method="auto"`, escalates to HMC and NUTS where PSIS is not enough.

# %%
config_b = InferConfig(method="laplace") if SMALL else InferConfig()
table = infer_catalog(model, sel, config_b)
table["label"] = labels
table["true_teff"], table["true_logg"] = true[rows, 0], true[rows, 1]
show = [
    "label",
    "teff_p50",
    "true_teff",
    "logg_p50",
    "true_logg",
    "dist_pc_p50",
    "ebv_p50",
    "rhat_max",
    "ess_min",
    "method",
    "validity",
    "chi2_dof",
    "flags",
]
display(
    table[show]
    .to_pandas()
    .round(
        {
            "teff_p50": 0,
            "true_teff": 0,
            "logg_p50": 2,
            "true_logg": 2,
            "dist_pc_p50": 0,
            "ebv_p50": 3,
            "rhat_max": 3,
            "ess_min": 0,
            "validity": 4,
            "chi2_dof": 2,
        }
    )
)

# %% [markdown]
# Reading the table: the dwarf and the giant should come out clean, with the truth inside
# their intervals. Without its parallax the same dwarf's photometry alone hardly tells a
# dwarf from a subgiant: the engine either finds both solutions (`multimodal`, with
# `mode_weight_2` the weight of the second) or settles on one, with a much wider
# distance posterior; compare its corner plot with the first one. The last star's true θ
# lies where the model saw no training stars: the density prior pulls the posterior back
# onto the training locus, and `validity` (the training density at the MAP; the paper
# trusts absolute magnitudes above 1e-2 and colours above 1e-3) and the flags are what
# say not to trust it. (Under the small test settings the model is a quick fit, so the
# details vary.)
#
# **Next:** `05_survey_scale` infers thousands of stars at once, checks calibration, and
# runs the same code on a Dask cluster.
