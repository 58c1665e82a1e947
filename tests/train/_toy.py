"""A quick toy survey whose truth is an emulator, and the tiny training schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm.catalog import Catalog
from bayesdsm.emulator import batched, init_emulator, predict_magnitudes
from bayesdsm.train import TrainConfig

TINY = TrainConfig(n_iterations=2, epochs=1, batch_size=64, seed=3, chunk_size=512)


def toy_catalog(n, seed=0, truth=None, theta_err=(60.0, 0.08, 0.05)) -> Catalog:
    """A quick survey whose truth is an emulator (random weights), with honest noise."""
    rng = np.random.default_rng(seed)
    truth = truth if truth is not None else init_emulator(jax.random.PRNGKey(99))
    theta = np.stack(
        [rng.uniform(4000, 7000, n), rng.uniform(1.5, 4.8, n), rng.normal(-0.2, 0.3, n)], 1
    )
    e_true = rng.exponential(0.2, n)
    m_abs = np.asarray(
        batched(predict_magnitudes)(
            truth, jnp.asarray(theta, jnp.float32), jnp.asarray(e_true, jnp.float32)
        ),
        np.float64,
    )
    dist_kpc = rng.uniform(0.2, 3.0, n)
    nb = m_abs.shape[1]
    err = rng.uniform(0.02, 0.05, (n, nb))
    mag = m_abs + (10 + 5 * np.log10(dist_kpc))[:, None] + rng.normal(size=(n, nb)) * err
    obs = rng.uniform(size=(n, nb)) > 0.15
    obs[:, 0] = True
    plx_err = 0.05 / dist_kpc * rng.uniform(0.5, 3, n)
    ebv_err = 0.04 + 0.1 * e_true
    sig = np.asarray(theta_err)
    return Catalog.from_arrays(
        bands=truth.bands,
        mag=np.where(obs, mag, np.nan),
        mag_err=np.where(obs, err, np.nan),
        theta=theta + rng.normal(size=(n, 3)) * sig,
        theta_cov=np.broadcast_to(np.diag(sig**2), (n, 3, 3)).copy(),
        parallax=1 / dist_kpc + rng.normal(size=n) * plx_err,
        parallax_err=plx_err,
        ebv=e_true + rng.normal(size=n) * ebv_err,
        ebv_err=ebv_err,
        extra={"true_ebv": e_true, "true_theta": theta},
    )


def assert_same_fit(a, b) -> None:
    """Two training results have bit-identical weights and reddenings."""
    from bayesdsm.emulator import emulator_arrays

    wa, wb = emulator_arrays(a.emulator), emulator_arrays(b.emulator)
    for name in wa:
        np.testing.assert_array_equal(np.asarray(wa[name]), np.asarray(wb[name]), err_msg=name)
    np.testing.assert_array_equal(a.ebv, b.ebv)
