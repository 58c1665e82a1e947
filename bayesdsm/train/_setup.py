"""A run's fixed inputs (:class:`Run`): the usable stars, the split, the initial network
and the SVI with its initial state."""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm._util import take
from bayesdsm.emulator import EmulatorConfig, emulator_arrays, init_emulator
from bayesdsm.emulator_model import weight_priors
from bayesdsm.errors import BayesDSMError, TrainingError
from bayesdsm.likelihood import StarData, stardata_from_catalog
from bayesdsm.train._checkpoint import checkpoint_config, hash_inputs
from bayesdsm.train._config import TrainConfig, split_indices
from bayesdsm.train._svi import Fitter, init_state, make_svi

__all__ = ["MAX_PRIOR_EBV_ERR", "Run", "start"]

#: A reddening prior with σ_E at or above this (mag) carries no information on R's scale.
MAX_PRIOR_EBV_ERR = 1.0


class Run(NamedTuple):
    """What stays fixed during a run.

    Attributes:
        config: the settings.
        fitter: the SVI and the emulator template.
        stars: (N) the catalogue's stars: θ̂, photometry, the reddening prior (Ê, σ₀)
            and the catalogue's (inverted) parallax terms.
        split: (N,) int8, 0 = train, 1 = validation, 2 = test.
        train_idx, val_idx: the training and validation stars (sorted).
        plx_obs: (ϖ, σ_ϖ), (N,) float64 each (mas), for the linearised parallax terms.
        consts: (ebv_range lo, hi, ebv_err_floor, ebv_err_frac) of the reddening update.
        progress: show progress bars.
        mixture: ``deconvolved``: each star's posterior θ components (weights (N, L),
            means (N, L, 3), Cholesky factors (N, L, 3, 3)); ``stars`` then hold the
            posterior's mean and covariance in place of θ̂ and C_θ. Otherwise None.
    """

    config: TrainConfig
    fitter: Fitter
    stars: StarData
    split: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    plx_obs: tuple
    consts: jax.Array
    progress: bool
    mixture: tuple | None = None


def start(cat, config: TrainConfig, progress: bool, cut_report):
    """(Run, initial SVI state, checkpoint meta, the catalogue's usable rows).

    Raises:
        TrainingError: no usable star, no usable reddening prior (none, or every
            σ_E ≥ :data:`MAX_PRIOR_EBV_ERR`), too few for the split, an unobserved band,
            or every training star excluded by ``max_ebv_err_first``.
    """
    cat = _usable(cat, cut_report)
    _check_reddening_prior(cat)
    dtype = np.dtype(config.dtype)
    stars = stardata_from_catalog(cat, dtype)
    n = len(cat)
    train_idx, val_idx, test_idx = split_indices(n, config)
    _check_inputs(cat, stars, train_idx, cut_report)
    if np.all(stars.ebv_err[train_idx] > config.max_ebv_err_first):
        raise TrainingError(
            f"iteration 0: all {train_idx.size} training stars are excluded by the rule "
            f"max_ebv_err_first (σ_E > {config.max_ebv_err_first:g}); the reddening "
            "prior errors are too large (or missing: σ_E = 10 means no prior)"
        )
    mixture = None
    if config.method == "deconvolved":
        stars, mixture = _posterior_theta(cat, stars, train_idx, config)
    split = np.zeros(n, np.int8)
    split[val_idx], split[test_idx] = 1, 2
    base_key = jax.random.PRNGKey(config.seed)
    init_emu = _initial_emulator(
        jax.random.fold_in(base_key, 1_000_003), stars, train_idx, config, cat.bands, dtype
    )
    n_train = train_idx.size
    svi = make_svi(config.regularization, config.n_components)
    first = np.arange(min(config.batch_size, n_train), dtype=np.int32)
    state = init_state(
        svi, jax.random.fold_in(base_key, 2), init_emu, take(stars, train_idx[first]),
        jnp.zeros((first.size, len(cat.bands), 5), dtype), jnp.asarray(first),
        init_params=_initial_params(init_emu, n_train, config, dtype),
        n_total=n_train,
    )  # fmt: skip
    meta = {
        "training_hash": hash_inputs(stars, config, cat.bands),
        "config": checkpoint_config(config),
        "bands": list(cat.bands),
        "n_stars": n,
    }
    plx_obs = (np.asarray(cat.parallax, np.float64), np.asarray(cat.parallax_err, np.float64))
    consts = jnp.asarray(
        [config.ebv_range[0], config.ebv_range[1], config.ebv_err_floor, config.ebv_err_frac],
        dtype,
    )
    run = Run(config, Fitter(svi, init_emu), stars, split, train_idx, val_idx, plx_obs, consts,
              progress, mixture)  # fmt: skip
    return run, state, meta, cat


def _posterior_theta(cat, stars: StarData, train_idx, config: TrainConfig):
    """(stars at their posterior θ's mean and covariance, the posterior's largest
    components) under the training stars' deconvolved θ density."""
    from bayesdsm.deconvolve import fit_theta_density, posterior

    theta, cov = np.asarray(cat.theta, np.float64), np.asarray(cat.theta_cov, np.float64)
    # at least 10 training stars per component: fewer components for a small catalogue
    n_comp = max(1, min(config.theta_density_components, train_idx.size // 10))
    density = fit_theta_density(
        theta[train_idx], cov[train_idx], n_components=n_comp, seed=config.seed
    )
    n_keep = min(config.posterior_components, n_comp)
    (mean, post_cov), (w, m, S) = posterior(density, theta, cov, n_keep)
    dtype = stars.mag.dtype
    stars = stars._replace(
        theta=mean.astype(dtype), theta_chol=np.linalg.cholesky(post_cov).astype(dtype)
    )
    mixture = (np.maximum(w, 1e-30), m.astype(dtype), np.linalg.cholesky(S).astype(dtype))
    return stars, mixture


def _initial_params(init_emu, n_train: int, config: TrainConfig, dtype) -> dict:
    """The SVI's starting values: the initial network's weights."""
    fitted = weight_priors(init_emu, n_train, config.regularization)
    params = {
        f"{name}_auto_loc": jnp.asarray(value, dtype)
        for name, value in emulator_arrays(init_emu).items()
        if name in fitted
    }
    return params


def _usable(cat, cut_report):
    """The stars with θ̂ and the reference band."""
    if len(cat) == 0:
        _check_inputs(cat, None, None, cut_report)
    rows = np.flatnonzero(cat.has_theta & np.asarray(cat.observed[:, 0], bool))
    if rows.size == 0:
        raise TrainingError(
            f"all {len(cat)} stars lack θ̂ or the reference band {cat.bands[0]!r} "
            "(rules: require_theta, require_reference_band)"
        )
    return cat.subset(rows) if rows.size < len(cat) else cat


def _check_reddening_prior(cat) -> None:
    """Raise unless some star has a usable reddening prior (finite Ê, σ_E < 1 mag).

    E and R enter the photometry only as the product E·R(θ), so without a prior on E
    the overall scale of R is not identified.
    """
    ebv, err = np.asarray(cat.ebv, np.float64), np.asarray(cat.ebv_err, np.float64)
    if np.any(np.isfinite(ebv) & np.isfinite(err) & (err < MAX_PRIOR_EBV_ERR)):
        return
    missing = ~np.isfinite(err) | ((err >= 10.0) & (np.nan_to_num(ebv) == 0.0))
    if missing.all():
        what = "no star has one (Ê = 0 ± 10 mag, the value for a missing prior)"
    else:
        smallest = float(np.min(err[~missing]))
        what = f"every σ_E is ≥ {MAX_PRIOR_EBV_ERR:g} mag (smallest {smallest:.3g} mag)"
    raise TrainingError(
        f"no usable reddening prior in the catalog's {len(cat)} stars: {what}. "
        "R's scale cannot be learned from this catalog: extinction enters only as E·R(θ), "
        "and only a prior on E fixes the scale of R. Looked for the reddening-prior "
        f"columns {_prior_columns(cat)}; give some stars Ê and σ_E < "
        f"{MAX_PRIOR_EBV_ERR:g} mag (e.g. from SFD or Bayestar)."
    )


def _prior_columns(cat) -> str:
    """The reddening-prior columns read into ``cat``: canonical, and the preset's."""
    canonical = "'ebv' and 'ebv_err'"
    preset = cat.meta.get("preset")
    if not preset:
        return canonical
    try:
        from bayesdsm.catalog import load_preset

        cols = load_preset(preset).columns
    except (BayesDSMError, OSError):  # an unreadable preset must not hide the real error
        return f"{canonical} (preset {preset!r})"
    src = (cols.get("ebv", "ebv"), cols.get("ebv_err", "ebv_err"))
    return f"'{src[0]}' and '{src[1]}' (preset {preset!r}; canonical {canonical})"


def _check_inputs(cat, stars: StarData, train_idx, cut_report) -> None:
    if len(cat) == 0:
        removed = ""
        if cut_report is not None:
            rules = [r for r in cut_report.rules if r.action == "removed" and r.count > 0]
            removed = "; ".join(f"{r.rule} removed {r.count} of {r.of}" for r in rules)
        raise TrainingError(
            "no stars left to train on: every star was removed by the §3 cuts"
            + (f" ({removed})" if removed else "")
            + ". Check the catalog columns and the CutsConfig thresholds."
        )
    seen = stars.mask[train_idx].sum(axis=0)
    for b, band in enumerate(cat.bands):
        if seen[b] == 0:
            raise TrainingError(
                f"band {band!r} is observed by no training star (rule: every band needs "
                "data); drop it, e.g. cat.select_bands([...]) without it, or check its "
                "columns and the max_mag_err cut"
            )


def _initial_emulator(key, stars: StarData, train_idx, config: TrainConfig, bands, dtype):
    """A random network with the normaliser at the training θ̂ and, with
    ``init_bias_from_data``, B·M(median θ̂) at the training stars' median M_G (from the
    parallaxes) and colours, dereddened with the initial R and Ê."""
    theta = np.asarray(stars.theta[train_idx], np.float64)
    med = np.median(theta, axis=0)
    std = np.std(theta, axis=0)
    std = np.where(std > 0, std, 1.0)
    ecfg = EmulatorConfig(bands=tuple(bands), hidden=config.hidden, activation=config.activation,
                          n_components=config.n_components)  # fmt: skip
    emu = init_emulator(key, ecfg, theta_median=med, theta_std=std, dtype=dtype)
    if not config.init_bias_from_data:
        return emu
    s = take(stars, train_idx)
    bm0, r0 = (np.asarray(x, np.float64) for x in emu(jnp.asarray(med, dtype)))
    m_abs = s.mag - s.ebv[:, None] * r0 - s.mu[:, None]
    target = bm0.copy()
    obs = s.mask > 0
    g_ok = obs[:, 0] & (s.has_parallax > 0)
    if g_ok.any():
        target[0] = np.median(m_abs[g_ok, 0])
    for b in range(1, len(bands)):
        ok = obs[:, b] & obs[:, 0]
        if ok.any():
            target[b] = np.median(m_abs[ok, b] - m_abs[ok, 0])
    last = emu.stellar.layers[-1]
    new_bias = jnp.asarray(np.asarray(last.bias) + target - bm0, dtype)
    return eqx.tree_at(lambda e: e.stellar.layers[-1].bias, emu, new_bias)
