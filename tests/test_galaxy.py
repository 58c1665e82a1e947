"""The Milky Way of bayesdsm.galaxy: its two parameter sets, the simulator's densities, dust,
and the inference prior built on the same components."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from bayesdsm import galaxy
from bayesdsm.galaxy import BRUTUS, JURIC2008, DustModel, GalaxyModel, log_galactic_prior


@pytest.mark.parametrize(
    "model, population, R, Z, value",
    [
        # brutus (Speagle et al. 2025) normalisations: thin disk 0 at the Sun, weights there
        (BRUTUS, "thin", 8200.0, 25.0, 0.0),
        (BRUTUS, "thick", 8200.0, 25.0, np.log(0.04)),
        (BRUTUS, "halo", 8200.0, 25.0, np.log(0.005)),
        (BRUTUS, "thin", 8200.0, 325.0, -1.0),  # one scale height up
        # Jurić et al. 2008, Table 10: f_thick = 0.12 at the Sun, f_halo = 0.0051 where the
        # halo's (cored) radius is R_sun = 8 kpc, in the plane
        (JURIC2008, "thin", 8000.0, 25.0, 0.0),
        (JURIC2008, "thick", 8000.0, 25.0, np.log(0.12)),
        (JURIC2008, "thick", 11600.0, 25.0, np.log(0.12) - 1.0),  # one scale length out
        (JURIC2008, "halo", np.sqrt(8000.0**2 - 500.0**2), 0.0, np.log(0.0051)),
    ],
)
def test_known_values(model, population, R, Z, value):
    assert float(model.logn(population, R, Z)) == pytest.approx(value, abs=1e-12)


def test_simulator_densities_match_juric_closed_forms():
    """JURIC2008 through the shared components equals Jurić et al.'s formulas as the
    simulator wrote them (z relative to the Sun, densities not logs) to rounding."""
    rng = np.random.default_rng(0)
    R, z = rng.uniform(0, 30000, 1000), rng.uniform(-20000, 20000, 1000)
    zz = np.abs(z + 25.0)
    ref = {
        "thin": np.exp(-(R - 8000) / 2600 - zz / 300 + 25 / 300),
        "thick": 0.12 * np.exp(-(R - 8000) / 3600 - zz / 900 + 25 / 900),
        "halo": 0.0051 * (8000 / np.sqrt(R**2 + ((z + 25) / 0.64) ** 2 + 500.0**2)) ** 2.77,
    }
    for pop, want in ref.items():
        np.testing.assert_allclose(JURIC2008.density(pop, R, z + 25.0), want, rtol=1e-12)
    with pytest.raises(ValueError, match="unknown population"):
        JURIC2008.density("bulge", R, z)


def test_dust_column_at_the_pole_is_the_analytic_integral():
    # ∫_0^∞ e0 exp(−(25 pc + s)/H) ds = e0 H e^(−25/H), e0 = 0.3 mag/kpc, H = 120 pc
    col = DustModel().column([30.0], [90.0])[0]
    assert col == pytest.approx(0.3e-3 * 120.0 * np.exp(-25.0 / 120.0), rel=1e-3)


def test_parameter_sets_round_trip_through_json():
    for model in (BRUTUS, JURIC2008):
        assert GalaxyModel(**json.loads(json.dumps(dataclasses.asdict(model)))) == model
    assert GalaxyModel() == JURIC2008  # the simulator's default


def test_galactic_prior_equals_the_numpy_components_in_pc():
    """The JAX prior (kpc, float32) is the same density as the NumPy components with the
    parameter set in pc: logsumexp_c [ln n_c + ln N([Fe/H] | c)] + 3 ln d + const."""
    rng = np.random.default_rng(1)
    mu, feh = rng.uniform(5, 18, 200), rng.uniform(-2.5, 0.5, 200)
    l, b = rng.uniform(0, 360, 200), rng.uniform(-90, 90, 200)
    got = np.asarray(jax.vmap(log_galactic_prior)(mu, feh, l, b), np.float64)
    R, Z = BRUTUS.galactocentric(l, b, 10 ** (mu / 5 + 1))
    terms = [
        BRUTUS.logn(c, R, Z) + galaxy.logp_feh(feh, *getattr(BRUTUS, f"feh_{c}"))
        for c in galaxy.POPULATIONS
    ]
    ref = np.logaddexp.reduce(terms, axis=0) + 3 * np.log(10) * mu / 5
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def test_galactic_prior_finite_and_halo_metal_poor():
    g = jax.grad(lambda m: log_galactic_prior(m, -0.2, 30.0, 60.0))(12.0)
    assert np.isfinite(g)
    # far above the plane, metal-poor stars are favoured relative to solar
    far = log_galactic_prior(17.0, -1.6, 0.0, 90.0) - log_galactic_prior(17.0, 0.0, 0.0, 90.0)
    near = log_galactic_prior(7.0, -1.6, 0.0, 0.0) - log_galactic_prior(7.0, 0.0, 0.0, 0.0)
    assert far > 0 > near
    assert log_galactic_prior(30.0, -0.2, 0, 0) < log_galactic_prior(20.0, -0.2, 0, 0)
    with pytest.raises(ValueError, match=r"\[Fe/H\]"):
        log_galactic_prior(12.0, -0.2, 30.0, 60.0, galaxy=JURIC2008)
