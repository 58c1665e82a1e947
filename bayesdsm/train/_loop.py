"""The driver of the §4 procedure: :func:`train`, one function per step of an iteration.

An iteration k (:func:`_iteration`):

1. :func:`_freeze_covariances`: every star's covariance as whitening matrices W
   (iteration 0: ∇M = 0 and R = 0; afterwards the previous rebuild's);
2. :func:`~bayesdsm.train._epochs.run_epochs`: ``epochs`` epochs of SVI on the active
   training stars, the learning rates decayed as ``exp(-k / lr_decay)``;
3. :func:`_rebuild`: the parallax terms (``parallax="linearized"``), the reddening update
   (Eq. 8–9, prior at the catalogue's (Ê, σ₀), clipped and floored), the rebuilt
   covariances and χ²;
4. :func:`_exclude_and_record`: exclude from the next iteration every star with χ²/dof
   above :func:`~bayesdsm.train.chi2_threshold` (iteration 0 instead excludes σ_E > 0.2)
   and record the iteration.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm._util import take
from bayesdsm.emulator import Emulator
from bayesdsm.errors import ConfigError, TrainingError
from bayesdsm.likelihood import ReddeningProfile, StarData, ThetaMixture
from bayesdsm.train._checkpoint import TrainState, restore, save_checkpoint
from bayesdsm.train._config import TrainConfig, chi2_threshold, learning_rate
from bayesdsm.train._epochs import Active, Frozen, run_epochs
from bayesdsm.train._passes import (
    dof,
    eval_loss,
    mixture_terms,
    parallax_terms,
    rebuild,
    whitening,
)
from bayesdsm.train._result import TrainResult, held_out_summary, percentiles, validity
from bayesdsm.train._setup import Run, start
from bayesdsm.variation import orient_variation

__all__ = ["train"]


class _Rebuilt(NamedTuple):
    """Step 3: the moved network and every star's new reddening, parallax terms and χ²."""

    svi_state: object
    emulator: Emulator
    parallax: tuple  # (μ, σ_μ, has_parallax), (N,) each
    ebv: np.ndarray
    ebv_err: np.ndarray
    chi2: np.ndarray
    R: np.ndarray  # (N, n_bands)


def train(
    cat,
    config: TrainConfig = TrainConfig(),  # noqa: B008 (frozen, so shared safely)
    *,
    checkpoint=None,
    resume: bool = False,
    progress: bool = False,
    cut_report=None,
    stop_after: int | None = None,
    deadline: float | None = None,
) -> TrainResult:
    """Train an emulator on a prepared catalog by the §4 procedure.

    Args:
        cat: a :class:`~bayesdsm.catalog.Catalog` after :func:`bayesdsm.cuts.prepare`
            (stars without θ̂ or without the reference band are dropped here too).
        config: the procedure's settings.
        checkpoint: path of the ``.npz`` checkpoint written after each iteration.
        resume: continue from ``checkpoint`` if it exists (same catalog and config).
        progress: show tqdm bars (per iteration and per epoch) on stderr.
        cut_report: the :class:`~bayesdsm.cuts.CutReport`, to name the rules in errors.
        stop_after: stop after this many iterations in total (for tests and benchmarks).
        deadline: a :func:`time.time` after which no new iteration is started if the
            last one's duration says it would not finish in time (long benchmarks); the
            schedule (learning rates, thresholds) stays that of ``config``.

    Returns:
        A :class:`~bayesdsm.train.TrainResult`.

    Raises:
        TrainingError: too few stars, an unobserved band, everyone excluded, or a
            non-finite loss (naming the batch's catalog rows; the weights are those
            before the bad step).
    """
    if config.dtype == "float64" and not jax.config.jax_enable_x64:
        raise ConfigError("TrainConfig.dtype='float64' needs jax_enable_x64")
    run, fresh, meta, cat = start(cat, config, progress, cut_report)
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if resume and ckpt is not None and ckpt.exists():
        state = restore(ckpt, fresh, meta)
    else:
        stars = run.stars
        excluded = np.asarray(stars.ebv_err > config.max_ebv_err_first)
        plx0 = (stars.mu.copy(), stars.sigma_mu.copy(), stars.has_parallax.copy())
        state = TrainState(fresh, stars.ebv.copy(), stars.ebv_err.copy(), excluded,
                           np.zeros(len(cat)), plx0, 0, [])  # fmt: skip
    last = config.n_iterations if stop_after is None else min(stop_after, config.n_iterations)
    state = _iterate(run, state, last, deadline, ckpt, meta)
    return _result(run, state, cat, meta["training_hash"])


def _iterate(run: Run, state: TrainState, last: int, deadline, ckpt, meta) -> TrainState:
    """Iterations ``state.iteration`` … ``last - 1``, each checkpointed."""
    from tqdm.auto import tqdm

    stars_cur = _with_state(run.stars, state)
    t_start = time.perf_counter()
    cache: dict = {}
    outer = tqdm(total=run.config.n_iterations, initial=state.iteration, desc="iterations",
                 unit="it", disable=not run.progress, dynamic_ncols=True)  # fmt: skip
    try:
        while state.iteration < last:
            if deadline is not None and state.history:
                dur = state.history[-1]["time_epochs_s"] + state.history[-1]["time_rebuild_s"]
                if time.time() + 1.1 * dur > deadline:
                    break
            state, stars_cur = _iteration(run, state, stars_cur, cache)
            state.history[-1]["elapsed_s"] = time.perf_counter() - t_start
            if ckpt is not None:
                save_checkpoint(ckpt, state, meta)
            h = state.history[-1]
            outer.set_postfix(loss=f"{h['train_loss']:.4f}", val=f"{h['val_loss']:.4f}",
                              excluded=h["n_excluded_next"])  # fmt: skip
            outer.update(1)
    finally:
        outer.close()
    return state


def _result(run: Run, state: TrainState, cat, training_hash: str) -> TrainResult:
    stars, train_idx = run.stars, run.train_idx
    history = list(state.history)
    if history:
        summary = held_out_summary(state.chi2_dof, run.split, dof(stars))
        history[-1] = {**history[-1], "test": summary}
    use = train_idx[~state.excluded[train_idx]]
    return TrainResult(
        emulator=orient_variation(run.fitter.emulator(state.svi_state)),
        history=history,
        validity=validity(cat.theta, stars.mask, stars.has_parallax, cat.bands, use),
        ebv=np.asarray(state.ebv),
        ebv_err=np.asarray(state.ebv_err),
        excluded=np.asarray(state.excluded),
        chi2_dof=np.asarray(state.chi2_dof),
        split=run.split,
        config=run.config,
        training_hash=training_hash,
    )


def _with_state(stars: StarData, state: TrainState) -> StarData:
    """``stars`` at the state's E′ and parallax terms."""
    dtype = stars.mag.dtype
    mu, sigma_mu, has = (np.asarray(a).astype(dtype) for a in state.parallax)
    return stars._replace(
        ebv=np.asarray(state.ebv).astype(dtype),
        ebv_err=np.asarray(state.ebv_err).astype(dtype),
        mu=mu, sigma_mu=sigma_mu, has_parallax=has,
    )  # fmt: skip


def _at_prior(run: Run, state: TrainState) -> StarData:
    """The catalogue's stars (reddening prior Ê, σ₀) with the state's parallax terms."""
    dtype = run.stars.mag.dtype
    mu, sigma_mu, has = (np.asarray(a).astype(dtype) for a in state.parallax)
    return run.stars._replace(mu=mu, sigma_mu=sigma_mu, has_parallax=has)


def _iteration(run: Run, state: TrainState, stars_cur: StarData, cache: dict):
    """Run iteration ``state.iteration``; return the new state and its StarData.

    ``stars_cur`` is the StarData of ``state`` (:func:`_with_state`). ``cache`` carries
    the rebuilt whitening W of all stars (key ``"W"``) to the next iteration (key
    ``"iteration"``), so that each iteration computes the Jacobians once.
    """
    frozen = _freeze_covariances(run, state, stars_cur, cache)
    active = _active_stars(run, state)
    t0 = time.perf_counter()
    svi_state = run_epochs(run, state, frozen, active)
    t1 = time.perf_counter()
    # the end-of-iteration losses, with this iteration's frozen covariances
    emu = run.fitter.emulator(svi_state)
    val_keep = ~state.excluded[run.val_idx]
    losses = (
        eval_loss(emu, frozen.stars_train, frozen.W_train, ~active.excluded, run.config),
        eval_loss(emu, frozen.stars_val, frozen.W_val, val_keep, run.config),
    )
    rebuilt = _rebuild(run, state, svi_state, stars_cur, cache)
    times = (t1 - t0, time.perf_counter() - t1)
    new = _exclude_and_record(run, state, active, rebuilt, losses, times)
    return new, _with_state(run.stars, new)


def _freeze_covariances(run: Run, state: TrainState, stars_cur, cache: dict) -> Frozen:
    """Step 1: the frozen covariances of the training and validation stars.

    The marginal ones (at θ̂, or the posterior θ's mean for ``deconvolved``) serve the
    reported losses; the SVI's (:func:`_fit_terms`) are the same, or with
    ``profile_reddening`` without the σ_E² R Rᵀ term and with the reddening prior, and for
    ``deconvolved`` one per posterior component. After iteration 0 they are the previous
    rebuild's (same network, same E′); after a resume that rebuild is repeated (same
    jitted pass and inputs: same bits).
    """
    k, chunk = state.iteration, run.config.chunk_size
    emu = run.fitter.emulator(state.svi_state)
    fit_idx = np.concatenate([run.train_idx, run.val_idx])
    if k == 0:
        W_eval = whitening(emu, take(stars_cur, fit_idx), chunk, gradients=False, extinction=False)
    else:
        if cache.get("iteration") != k:
            cache["W"] = rebuild(emu, _at_prior(run, state), run.stars.ebv, run.stars.ebv_err,
                                 run.consts, chunk)[2]  # fmt: skip
        W_eval = cache.pop("W")[fit_idx]
        cache.clear()
    n_train = run.train_idx.size
    stars_train = take(stars_cur, run.train_idx)
    stars_fit, W_fit = _fit_terms(run, emu, stars_train, W_eval[:n_train], k)
    return Frozen(stars_train, take(stars_cur, run.val_idx), stars_fit, W_fit, W_eval[:n_train],
                   W_eval[n_train:])  # fmt: skip


def _fit_terms(run: Run, emu, stars_train: StarData, W_marginal, k: int):
    """The SVI's stars and frozen terms (:func:`bayesdsm.likelihood.chi2_frozen`) of the
    training stars at iteration k: W (the marginal ``W_marginal``), a
    :class:`~bayesdsm.likelihood.ReddeningProfile` (``profile_reddening``), each within a
    :class:`~bayesdsm.likelihood.ThetaMixture` over the posterior θ's components
    (``deconvolved``, the stars then (n_train, L))."""
    chunk, profile = run.config.chunk_size, run.config.profile_reddening
    if run.mixture is not None:
        mixture = take(run.mixture, run.train_idx)
        stars_fit, W, log_w = mixture_terms(emu, stars_train, mixture, chunk, gradients=k > 0,
                                            extinction=k > 0 and not profile)  # fmt: skip
    elif profile and k > 0:
        stars_fit = stars_train
        W = whitening(emu, stars_train, chunk, gradients=True, extinction=False)
    else:  # iteration 0's W has no R term
        stars_fit, W = stars_train, W_marginal
    if profile:
        prior = take((run.stars.ebv, run.stars.ebv_err), run.train_idx)
        if run.mixture is not None:
            prior = tuple(np.repeat(p[:, None], log_w.shape[1], axis=1) for p in prior)
        W = ReddeningProfile(W, *prior)
    return stars_fit, (W if run.mixture is None else ThetaMixture(W, log_w))


def _active_stars(run: Run, state: TrainState) -> Active:
    """The training stars that the last iteration did not exclude."""
    k, config = state.iteration, run.config
    excluded = state.excluded[run.train_idx]
    rows = np.flatnonzero(~excluded)
    if k == 0:
        rule = f"max_ebv_err_first (σ_E > {config.max_ebv_err_first:g})"
    else:
        rule = f"chi2 threshold (χ²/dof > {chi2_threshold(config, k - 1):g})"
    if rows.size == 0:
        raise TrainingError(
            f"iteration {k}: all {run.train_idx.size} training stars are excluded by the rule "
            f"{rule}; check the reddening errors and the photometry"
        )
    return Active(excluded, rows, rule)


def _rebuild(run: Run, state: TrainState, svi_state, stars_cur, cache: dict):
    """Step 3: parallax terms, reddening update, covariances and χ² of every star at the
    network of ``svi_state``."""
    config, chunk = run.config, run.config.chunk_size
    prior = (run.stars.ebv, run.stars.ebv_err)
    emu = run.fitter.emulator(svi_state)
    stars = _at_prior(run, state)
    plx = state.parallax
    if config.parallax == "linearized":
        # linearised at this network's distances (E′ of the last rebuild), before the
        # rebuild so that the new covariances carry the new σ_μ
        dtype = stars.mag.dtype
        at = stars._replace(ebv=stars_cur.ebv)
        plx = parallax_terms(emu, at, run.plx_obs[0].astype(dtype),
                             run.plx_obs[1].astype(dtype), chunk)  # fmt: skip
        stars = stars._replace(mu=plx[0], sigma_mu=plx[1], has_parallax=plx[2])
    ebv, ebv_err, cache["W"], chi, R = rebuild(emu, stars, *prior, run.consts, chunk)
    cache["iteration"] = state.iteration + 1
    return _Rebuilt(svi_state, emu, plx, ebv, ebv_err, chi, R)


def _exclude_and_record(run: Run, state, active: Active, new: _Rebuilt, losses, times):
    """Step 4: χ²/dof, the exclusions for the next iteration and the iteration's record."""
    config, k, train_idx = run.config, state.iteration, run.train_idx
    n_dof = dof(run.stars)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2_dof = np.where(n_dof > 0, new.chi2 / np.where(n_dof > 0, n_dof, 1.0), 0.0)
    threshold = chi2_threshold(config, k)
    excluded = chi2_dof > threshold
    theta_mean = np.mean(run.stars.theta[train_idx], axis=0)
    R0 = np.asarray(new.emulator(jnp.asarray(theta_mean, run.stars.mag.dtype))[1])
    tr = train_idx[~active.excluded]
    prior_mean = run.stars.ebv
    record = {
        "iteration": k,
        "learning_rate": learning_rate(config, k),
        "epochs": config.epochs,
        "n_train_active": int(active.rows.size),
        "n_excluded": int(active.excluded.sum()),
        "exclusion_rule": active.rule,
        "train_loss": losses[0],
        "val_loss": losses[1],
        "chi2_dof_train": percentiles(chi2_dof[tr]),
        "chi2_dof_val": percentiles(chi2_dof[run.val_idx]),
        "threshold_next": threshold,
        "n_excluded_next": int(excluded[train_idx].sum()),
        "mean_R": [float(x) for x in new.R[train_idx].mean(axis=0)],
        "R_at_mean_theta": [float(x) for x in R0],
        "median_ebv_shift": float(np.median(new.ebv[train_idx] - prior_mean[train_idx])),
        "time_epochs_s": times[0],
        "time_rebuild_s": times[1],
    }
    return TrainState(new.svi_state, new.ebv, new.ebv_err, excluded, chi2_dof, new.parallax,
                      k + 1, [*state.history, record])  # fmt: skip
