"""§4 step 2: the SVI epochs of one iteration on the active training stars.

Each epoch is one :func:`~bayesdsm.train._svi.run_steps` scan over a fresh permutation of
the active stars, seeded by (seed, iteration, epoch) alone, so a resumed run draws the
same minibatches.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.errors import TrainingError
from bayesdsm.likelihood import StarData
from bayesdsm.train._checkpoint import TrainState
from bayesdsm.train._config import TrainConfig, decayed, learning_rate
from bayesdsm.train._passes import eval_loss, prior_constant
from bayesdsm.train._setup import Run
from bayesdsm.train._svi import run_steps, set_learning_rates

__all__ = ["Active", "Frozen", "run_epochs"]


class Frozen(NamedTuple):
    """Step 1: the fitted stars and their frozen whitening."""

    stars_train: StarData
    stars_val: StarData
    stars_fit: StarData  # the SVI's stars: stars_train, or (n_train, L) components
    W_fit: object  # the SVI's frozen terms (bayesdsm.likelihood.chi2_frozen)
    W_train: np.ndarray  # (n_train, n_bands, 5) marginal, at θ̂ (the reported losses)
    W_val: np.ndarray  # (n_val, n_bands, 5) marginal, at θ̂


class Active(NamedTuple):
    """The training stars of this iteration."""

    excluded: np.ndarray  # (n_train,) bool, excluded by the last iteration
    rows: np.ndarray  # positions in the training split of the others
    rule: str  # the rule that excluded them


def _batches(seed: int, k: int, e: int, active: np.ndarray, batch: int) -> np.ndarray:
    """Minibatch rows (n_batches, batch) of epoch e of iteration k: a permutation of
    ``active`` seeded by (seed, k, e) alone, the last batch filled from its start (every
    star is seen at least once an epoch, at most ``batch - 1`` twice)."""
    perm = active[np.random.default_rng([seed, k, e]).permutation(active.size)]
    n_b = -(-active.size // batch)
    rows = np.resize(perm, n_b * batch).reshape(n_b, batch)
    return np.sort(rows, axis=1).astype(np.int32)


def _learning_rates(config: TrainConfig, k: int) -> dict[str, float]:
    """Iteration k's learning rate of each optimiser group
    (:func:`~bayesdsm.train._svi.param_group`)."""
    lr = learning_rate(config, k)
    ext = config.extinction_learning_rate
    return {
        "weights": lr,
        "extinction": lr if ext is None else decayed(config, ext, k),
    }


def run_epochs(run: Run, state: TrainState, frozen: Frozen, active: Active):
    """Step 2: ``config.epochs`` epochs of SVI on the active stars; the new SVI state.

    Every epoch runs the same number of minibatch rows (that of all training stars,
    padded), so the epoch compiles once for the run, not once per iteration.
    """
    from tqdm.auto import tqdm

    config, fitter, k = run.config, run.fitter, state.iteration
    n_train = run.train_idx.size
    batch = min(config.batch_size, active.rows.size)
    n_rows = -(-n_train // batch)
    svi_state = set_learning_rates(state.svi_state, _learning_rates(config, k))
    data = jax.tree_util.tree_map(jnp.asarray, (frozen.stars_fit, frozen.W_fit))
    n_total = {"n_total": jnp.asarray(active.rows.size, frozen.stars_train.mag.dtype)}
    c0 = prior_constant(fitter.template, active.rows.size, config)
    inner = tqdm(range(config.epochs), desc=f"iteration {k}", leave=False, unit="epoch",
                 disable=not run.progress, dynamic_ncols=True)  # fmt: skip
    for e in inner:
        batches = _batches(config.seed, k, e, active.rows, batch)
        n_steps = batches.shape[0]
        padded = np.concatenate([batches, np.repeat(batches[-1:], n_rows - n_steps, axis=0)])
        new_state, losses, bad = run_steps(
            fitter.svi, svi_state, jnp.asarray(padded), jnp.asarray(n_steps, jnp.int32), data,
            (fitter.template,), n_total,
        )  # fmt: skip
        if int(bad) >= 0:
            raise _non_finite(run.train_idx[batches[int(bad)]], k, e, int(bad))
        svi_state = new_state
        if run.progress:
            losses = np.asarray(losses)[:n_steps]
            post = {"loss": f"{(float(losses.mean()) - c0) / active.rows.size:.4f}"}
            val_keep = ~state.excluded[run.val_idx]
            if config.validate_every_epoch and val_keep.any():
                emu = fitter.emulator(svi_state)
                val = eval_loss(emu, frozen.stars_val, frozen.W_val, val_keep, config)
                post["val"] = f"{val:.4f}"
            post["excluded"] = int(active.excluded.sum())
            inner.set_postfix(post)
    inner.close()
    return svi_state


def _non_finite(rows: np.ndarray, k: int, e: int, step: int) -> TrainingError:
    """The error of a non-finite step, carrying the batch's catalogue ``rows``."""
    err = TrainingError(
        f"non-finite loss in iteration {k}, epoch {e}, step {step}: the batch holds "
        f"catalog rows {np.unique(rows)[:20].tolist()}... (see .rows); the "
        "weights before this step are kept. Check those stars' inputs."
    )
    err.rows = np.unique(rows)
    err.iteration, err.epoch = k, e
    return err
