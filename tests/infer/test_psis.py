"""The PSIS tier of the cascade: its rounds, and PSIS on failed MCMC chains."""

from __future__ import annotations

from dataclasses import replace

import jax
import numpy as np
import pytest

from bayesdsm import infer
from bayesdsm.infer import InferConfig
from bayesdsm.infer.testing import psis_on_mcmc, recording_importance_rounds

from ._helpers import FAST, Banana, banana_mode, make_catalog


def test_psis_on_unmixed_mcmc_draws_corrects_them(key):
    """A star whose chains failed: two chains sample the banana, two are stuck on its
    z₀ > 0 arm (their pooled mean of z₀ is +0.4, not 0). One PSIS round from a kernel
    mixture on those draws gets k̂ < 0.7 and the exact means back."""
    rng = np.random.default_rng(3)
    c, d = 4, 300
    z0 = rng.normal(size=(c, d))
    z0[2:] = np.abs(z0[2:])  # the stuck chains
    zs = np.stack(
        [z0, 0.8 * z0**2 - 1 + 0.3 * rng.normal(size=(c, d)), rng.normal(size=(c, d)),
         rng.normal(size=(c, d)), rng.choice([-1, 1], (c, d)) * (3 + rng.normal(size=(c, d)))],
        axis=-1,
    )[None]  # fmt: skip
    assert zs[0, ..., 0].mean() > 0.3  # the draws alone are biased
    modes = banana_mode()
    keys = np.asarray(jax.random.split(key, 1))
    cfg = InferConfig(n_importance_mcmc=16384)
    w_draw = np.full((1, c * d), 1.0 / (c * d))
    ok, phys, w, khat, ess, slot = psis_on_mcmc(
        Banana(), None, modes, keys, cfg, np.arange(1), zs, w_draw, np.zeros((1, c), int), 40
    )
    assert ok[0] and khat[0] < 0.7 and ess[0] > 1000 and np.all(slot == 0)
    mean = np.sum(w[0][:, None] * phys[0], axis=0)
    # 4 Monte Carlo errors: posterior s.d. (1, √(0.64·2 + 0.09), 1, 1) / √ESS (seeds 0-5
    # gave errors ≤ 0.07 in z₁, whose tail z₀² is heavy; the stuck chains' bias is 0.4)
    sd = np.array([1.0, np.sqrt(0.64 * 2 + 0.09), 1.0, 1.0])
    np.testing.assert_array_less(np.abs(mean[:4] - [0.0, -0.2, 0.0, 0.0]), 4 * sd / np.sqrt(ess[0]))


def test_first_round_bar_holds_stars_for_one_refitted_round(setup):
    """``pareto_k_first``: a star whose first (Laplace-proposal) round meets the bar with
    pareto_k_first < k̂ is held for one refitted round, whose draws stand if they meet
    the bar (else the first round's do). With pareto_k_first = −∞ every star that meets
    the plain bar (pareto_k_first = pareto_k_max) in the first round is held: it still
    meets the bar, it ends after the refitted round, and the stars whose refitted round
    met the bar report that round's k̂; the other stars are unchanged."""
    emu, dens = setup
    cfg = InferConfig(method="laplace", pareto_k_first=0.7, **dict(FAST, ess_min=50.0))
    post = infer.build_posterior(emu, cfg, theta_density=dens)
    cat, _, _ = make_catalog(post, 12, np.random.default_rng(5))
    stars, flags = infer.star_arrays(cat, cfg)
    ids = np.asarray(cat.source_id)
    with recording_importance_rounds() as rounds:  # (the stars, their k̂ and ESS) per round
        plain = infer.infer_arrays(post, stars, ids, cfg, flags)
        n_plain = len(rounds)
        held = infer.infer_arrays(post, stars, ids, replace(cfg, pareto_k_first=-np.inf), flags)
    first = plain["converged"] & (plain["pareto_k"] == rounds[0][1])  # met it in round 0
    assert first.sum() >= 3
    idx1, k1, ess1 = rounds[n_plain + 1]  # the held run's refitted round
    assert set(np.nonzero(first)[0]) <= set(idx1)
    later = [set(idx) for idx, _, _ in rounds[n_plain + 2 :]]
    assert all(not (s & set(np.nonzero(first)[0])) for s in later)  # no further rounds
    assert np.all(held["converged"][first])
    met1 = dict(zip(idx1, (k1 <= 0.7) & (ess1 >= 50)))
    k_refit = dict(zip(idx1, k1))
    for r in np.nonzero(first)[0]:
        expect = k_refit[r] if met1[r] else plain["pareto_k"][r]
        assert held["pareto_k"][r] == pytest.approx(expect, abs=1e-4)
    assert any(held["pareto_k"][r] != plain["pareto_k"][r] for r in np.nonzero(first)[0])
    # (float32 rounds of another batch composition differ in the last digits)
    np.testing.assert_allclose(held["teff_p50"][~first], plain["teff_p50"][~first], rtol=1e-4)
