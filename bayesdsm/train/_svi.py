"""The SVI of the emulator fit (§4 step 2): model, guide, optimiser and the epoch scan.

The guide is :class:`~numpyro.infer.autoguide.AutoDelta` (the fit is a MAP, Eq. 15). The
optimiser is one Adam per parameter group (the stellar network's weights, the extinction
layer), each wrapped in :func:`optax.inject_hyperparams` so that
the driver sets the learning rates of every iteration in the optimiser state
(:func:`set_learning_rates`, with :func:`optax.tree_utils.tree_set`). The starting
weights are set through :meth:`~numpyro.infer.SVI.init`'s ``init_params``.

:func:`init_state` and :func:`run_steps` are generic (any model and guide whose
arguments end with the stars' rows); :mod:`bayesdsm.epistemic` uses them too.
"""

from __future__ import annotations

from functools import lru_cache, partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from numpyro.infer import SVI, Trace_ELBO
from numpyro.infer.autoguide import AutoDelta
from numpyro.infer.initialization import init_to_uniform
from optax.tree_utils import tree_get_all_with_path, tree_set

from bayesdsm._util import take
from bayesdsm.emulator import Emulator
from bayesdsm.emulator_model import RegularizationConfig, emulator_from_params, emulator_model
from bayesdsm.errors import TrainingError

__all__ = [
    "Fitter",
    "init_state",
    "make_svi",
    "param_group",
    "run_steps",
    "set_learning_rates",
]

_LOC = "_auto_loc"


def _model(reg, template, stars, W, idx, *, n_total):
    del idx  # no per-star parameters: the batch's rows are not needed
    emulator_model(template, stars, W, n_total=n_total, reg=reg)


def param_group(name: str) -> str:
    """Optimiser group of an SVI parameter: the extinction layers (R kernel, R bias,
    curvature; R₁ kernel and bias with K = 2) or the stellar network's weights."""
    return "extinction" if name.startswith(("R_", "R1_")) else "weights"


@lru_cache(maxsize=8)
def make_svi(reg: RegularizationConfig, n_components: int = 1) -> SVI:
    """The SVI (model, guide, optimiser) of the emulator fit; cached, so that runs with
    the same penalties reuse the compiled epoch. The guide learns its sites on first
    use, so emulators with other sites (``n_components``, K) get their own SVI.

    The model's arguments are ``(template, stars, W, idx)`` with the keyword
    ``n_total``; the emulator template (and so the θ normaliser) is traced. ``W`` is the
    batch's frozen terms (:func:`bayesdsm.likelihood.chi2_frozen`).
    """
    model = partial(_model, reg)
    guide = AutoDelta(model, init_loc_fn=init_to_uniform)  # init_params replace its start
    optim = optax.multi_transform(
        {
            "weights": optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
            "extinction": optax.inject_hyperparams(optax.adam)(learning_rate=1e-3),
        },
        lambda params: {k: param_group(k) for k in params},
    )
    return SVI(model, guide, optim, Trace_ELBO())


class Fitter(NamedTuple):
    """The SVI of one run and its emulator template (architecture, θ normaliser)."""

    svi: SVI
    template: Emulator

    def emulator(self, state) -> Emulator:
        """The emulator at the weights of SVI ``state``."""
        params = self.svi.get_params(state)
        weights = {k[: -len(_LOC)]: v for k, v in params.items() if k.endswith(_LOC)}
        return emulator_from_params(self.template, weights)


def init_state(svi: SVI, key, *args, init_params=None, **static_kwargs):
    """``svi.init`` under :func:`jax.jit`: the model is traced once (one compilation
    instead of one per primitive). ``init_params`` (by param site, e.g.
    ``"hidden_0_kernel_auto_loc"``) replace the guide's initial values; ``static_kwargs``
    are passed to the model as Python values."""
    return _init_jit(svi, key, args, init_params, tuple(sorted(static_kwargs.items())))


@partial(jax.jit, static_argnums=(0, 4))
def _init_jit(svi, key, args, init_params, static_kwargs):
    return svi.init(key, *args, init_params=init_params, **dict(static_kwargs))


def set_learning_rates(state, rates: dict[str, float]):
    """``state`` with the Adam learning rate of each optimiser group in ``rates``
    (``{"weights": …, "extinction": …}``) replaced; moments and step counts
    carry over. Groups are the keys of :func:`optax.multi_transform`'s state."""
    for group, value in rates.items():

        def in_group(path, _value, group=group):
            return any(getattr(k, "key", None) == group for k in path)

        (_, old), *more = tree_get_all_with_path(state, "learning_rate", in_group)
        if more:
            raise TrainingError(f"internal: optimiser group {group!r} has several learning rates")
        state = tree_set(state, in_group, learning_rate=jnp.asarray(value, old.dtype))
    return state


def _all_finite(tree) -> jax.Array:
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _float_dtype(tree):
    return next(
        x.dtype for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)
    )


@partial(jax.jit, static_argnames=("svi", "static_kwargs"))
def run_steps(svi, state, batches, n_steps, data, lead=(), kwargs=None, *, static_kwargs=()):
    """Minibatch SVI steps in one :func:`jax.lax.scan`, stopping at a non-finite one.

    Step i < ``n_steps`` is ``svi.update(state, *lead, *take(data, rows), rows,
    **kwargs, **static_kwargs)`` with ``rows = batches[i]``; the later rows are padding,
    so that a varying number of steps (and traced ``kwargs``) do not recompile. A step
    whose loss or new state is not finite is not applied, nor is any later one.

    Args:
        svi: the SVI (static).
        state: its state.
        batches: (n_rows, batch) int32 star rows of ``data``.
        n_steps: the number of real rows (traced).
        data: a pytree of arrays with the stars on axis 0 (e.g. ``(stars, W)``).
        lead: model arguments before the batch's data.
        kwargs: traced keyword arguments of the model.
        static_kwargs: ``((name, value), …)`` Python keyword arguments of the model.

    Returns:
        (state, losses (n_rows,), index of the first bad step or -1); the padding rows'
        losses are 0.
    """
    kwargs = {} if kwargs is None else kwargs

    def update(st, idx):
        new, loss = svi.update(st, *lead, *take(data, idx), idx, **kwargs, **dict(static_kwargs))
        return new, loss, jnp.isfinite(loss) & _all_finite(new.optim_state)

    def skip(st, idx):
        del idx
        return st, jnp.zeros((), _float_dtype(data)), jnp.asarray(True)

    def step(carry, xs):
        st, bad = carry
        i, idx = xs
        new, loss, ok = jax.lax.cond(i < n_steps, update, skip, st, idx)
        ok = jnp.logical_and(~bad, ok)
        st = jax.tree_util.tree_map(lambda x, y: jnp.where(ok, x, y), new, st)
        return (st, bad | ~ok), (loss, ok)

    steps = jnp.arange(batches.shape[0])
    (state, _), (losses, oks) = jax.lax.scan(step, (state, jnp.asarray(False)), (steps, batches))
    first_bad = jnp.where(jnp.all(oks), -1, jnp.argmin(oks))
    return state, losses, first_bad
