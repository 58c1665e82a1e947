"""The SVI plumbing: parameters and learning rates are set through public API only, and
the epoch scan skips padding and stops at a non-finite step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from optax.tree_utils import tree_get_all_with_path

from bayesdsm._util import take
from bayesdsm.emulator import init_emulator
from bayesdsm.likelihood import StarData
from bayesdsm.train import TrainConfig
from bayesdsm.train._svi import (
    init_state,
    make_svi,
    param_group,
    run_steps,
    set_learning_rates,
)

N = 8  # stars in the plate
B = 4  # stars per batch


def _stars(n=N, nb=13, bad_row=None) -> StarData:
    rng = np.random.default_rng(0)
    mag = rng.normal(10.0, 1.0, (n, nb))
    if bad_row is not None:
        mag[bad_row, 2] = np.nan
    return StarData(
        mag=jnp.asarray(mag, jnp.float32), mask=jnp.ones((n, nb)), mag_err=jnp.full((n, nb), 0.05),
        theta=jnp.tile(jnp.asarray([[5000.0, 3.0, -0.2]]), (n, 1)),
        theta_chol=jnp.tile(jnp.diag(jnp.asarray([100.0, 0.1, 0.05]))[None], (n, 1, 1)),
        mu=jnp.full(n, 10.0), sigma_mu=jnp.full(n, 0.1), has_parallax=jnp.ones(n),
        ebv=jnp.full(n, 0.1), ebv_err=jnp.full(n, 0.05),
    )  # fmt: skip


@pytest.fixture(scope="module")
def fit():
    template = init_emulator(jax.random.PRNGKey(0))
    # an SVI of its own (make_svi is cached): its guide is set up by this init alone
    svi = make_svi.__wrapped__(TrainConfig().regularization)
    W = jnp.zeros((N, template.n_bands, 5))
    start = {"output_bias_auto_loc": jnp.full(13, 0.5), "R_bias_auto_loc": jnp.zeros(13)}
    first = jnp.arange(B)  # the guide records the batch size of its first call
    state = init_state(svi, jax.random.PRNGKey(1), template, take(_stars(), first), W[:B], first,
                       init_params=start, n_total=N)  # fmt: skip
    return svi, template, W, state


def _steps(fit, state, stars, n_steps, rows=4):
    svi, template, W, _ = fit
    batches = jnp.asarray(np.tile(np.arange(B, dtype=np.int32), (rows, 1)))
    return run_steps(svi, state, batches, jnp.asarray(n_steps, jnp.int32), (stars, W),
                     (template,), {"n_total": jnp.asarray(N, jnp.float32)})  # fmt: skip


def _leaves(state):
    return jax.tree_util.tree_flatten_with_path(state)


def test_init_params_set_the_start(fit):
    svi, _, _, state = fit
    params = svi.get_params(state)
    np.testing.assert_array_equal(params["output_bias_auto_loc"], np.full(13, 0.5))
    np.testing.assert_array_equal(params["R_bias_auto_loc"], np.zeros(13))
    assert params["R_bias_auto_loc"].dtype == jnp.float32


def test_set_learning_rates_per_group(fit):
    _, _, _, state = fit
    new = set_learning_rates(state, {"weights": 0.1, "extinction": 0.2})
    for group, value in (("weights", 0.1), ("extinction", 0.2)):
        (path, lr), *_ = tree_get_all_with_path(
            new, "learning_rate", lambda p, v, g=group: any(getattr(k, "key", None) == g for k in p)
        )
        assert lr.dtype == jnp.float32 and float(lr) == pytest.approx(value)
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)


def test_a_zero_learning_rate_freezes_its_group(fit):
    svi, _, _, state = fit
    frozen = set_learning_rates(state, {"weights": 1e-2, "extinction": 0.0})
    after, _, _ = _steps(fit, frozen, _stars(), 3)
    before, moved = svi.get_params(frozen), svi.get_params(after)
    for name in before:
        same = np.array_equal(before[name], moved[name])
        assert same == (param_group(name) == "extinction"), name


def test_run_steps_skips_padding_and_stops_at_a_bad_step(fit):
    svi, _, _, state = fit
    two, losses, bad = _steps(fit, state, _stars(), 2)
    assert int(bad) == -1 and np.all(np.asarray(losses)[2:] == 0)
    assert np.all(np.isfinite(np.asarray(losses)[:2]))
    # a NaN magnitude in the batch: the first step is bad and nothing is applied
    kept, losses, bad = _steps(fit, state, _stars(bad_row=1), 4)
    assert int(bad) == 0
    for (_, a), (_, b) in zip(_leaves(kept)[0], _leaves(state)[0]):
        np.testing.assert_array_equal(a, b)
