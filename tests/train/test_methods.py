"""Training's θ and reddening treatments: ``method="deconvolved"`` (regression calibration
under a deconvolved θ density; the default, as TINY's) and ``profile_reddening`` (each
star's E profiled out with its prior in the network's objective; the default)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bayesdsm.train import train
from bayesdsm.train._setup import start

from ._toy import TINY, toy_catalog

DECONVOLVED = dataclasses.replace(
    TINY, method="deconvolved", theta_density_components=4, posterior_components=2
)


@pytest.fixture(scope="module")
def wide():
    """A toy survey with θ̂ errors as large as the giants' (log g 0.25 dex)."""
    return toy_catalog(1500, seed=5, theta_err=(150.0, 0.25, 0.1))


def test_deconvolved_stars_sit_at_their_posterior_theta(wide):
    run = start(wide, DECONVOLVED, False, None)[0]
    w, m, chol = run.mixture
    assert w.shape == (len(wide), 2) and m.shape == (len(wide), 2, 3)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-9)
    assert np.all(w[:, 0] >= w[:, 1])
    # regression calibration: the posterior mean is nearer the truth than θ̂, per label
    # (the toy's θ is uniform over wide ranges, so the gain is modest: 4-12%)
    true = np.asarray(wide.extra["true_theta"])
    err_hat = np.mean((np.asarray(wide.theta) - true) ** 2, axis=0)
    err_post = np.mean((np.asarray(run.stars.theta, np.float64) - true) ** 2, axis=0)
    assert np.all(err_post < 0.98 * err_hat) and np.all(err_post[1:] < 0.92 * err_hat[1:]), (
        err_post / err_hat
    )
    # … and its covariance is narrower than C_θ
    post_var = np.einsum("nij,nij->ni", run.stars.theta_chol, run.stars.theta_chol)
    assert np.all(np.median(post_var, axis=0) < np.diag(np.asarray(wide.theta_cov[0])))


@pytest.mark.parametrize("profile", [False, True], ids=["at_E", "profiled"])
def test_deconvolved_training_runs(wide, profile):
    cfg = dataclasses.replace(DECONVOLVED, profile_reddening=profile)
    res = train(wide, cfg)
    assert len(res.history) == cfg.n_iterations
    assert all(np.isfinite(h["train_loss"]) and np.isfinite(h["val_loss"]) for h in res.history)


@pytest.mark.parametrize("profile", [False, True], ids=["at_E", "profiled"])
def test_paper_method_runs(cat, profile):
    cfg = dataclasses.replace(TINY, method="paper", profile_reddening=profile)
    res = train(cat, cfg)
    assert all(np.isfinite(h["val_loss"]) for h in res.history)
