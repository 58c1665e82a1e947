"""The released Green et al. (2020) model: known values, import, real-star χ² (§4)."""

from __future__ import annotations

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesdsm.catalog import Catalog
from bayesdsm.conventions import BANDS
from bayesdsm.emulator import predict_colours
from bayesdsm.evaluate import evaluate_catalog
from bayesdsm.green2020 import load_green2020_emulator
from bayesdsm.model_file import import_green2020, load_model, save_model
from bayesdsm.validity import from_green2020

SUN = (5780.0, 4.44, 0.0)
# The authors' tutorial (gregreen/green2020-stellar-model), quoted in PAPER.md "Known
# values": B(M + E R) at θ = (5780 K, 4.44, 0.0), E = 1, and R at the same θ.
KNOWN_BMR = [7.2703, 1.1075, -1.1918, 1.5101, 0.0518, -0.7712, -1.2629, -1.5788,
             -2.9126, -3.5782, -3.8257, -1.3119, -0.6578]  # fmt: skip
KNOWN_R = [2.673, 3.465, 1.960, 3.882, 2.794, 2.060, 1.579, 1.263, 0.763, 0.399, 0.207,
           0.054, 0.000]  # fmt: skip


def _check_known(emu):
    got = predict_colours(emu, jnp.array(SUN, jnp.float64), 1.0)
    np.testing.assert_allclose(got, KNOWN_BMR, atol=1e-4)
    np.testing.assert_allclose(emu(jnp.array(SUN, jnp.float64))[1], KNOWN_R, atol=5e-4)


def test_known_values(green2020_dir):
    with jax.enable_x64(True):
        _check_known(load_green2020_emulator(green2020_dir, jnp.float64))


def test_imported_model_file_keeps_known_values(green2020_dir, tmp_path):
    save_model(import_green2020(green2020_dir), tmp_path / "g.bdsm")
    model = load_model(tmp_path / "g.bdsm")
    assert model.meta["source"] == "green2020"
    with jax.enable_x64(True):
        _check_known(model.emulator.astype(jnp.float64))
    grid = model.validity_grid
    assert grid.names == (*BANDS, "parallax")
    assert grid.density.shape == (14, 50, 50, 50)
    np.testing.assert_allclose(grid.density.reshape(14, -1).max(1), 1.0)
    # the Sun is well inside the training set; a 2000 K dwarf is off the grid
    assert float(model.validity(np.array(SUN), "r")) > 1e-2
    assert float(model.validity(np.array([2000.0, 5.0, 0.0]), "G")) == 0.0


def test_validity_grid_axes(green2020_dir):
    grid = from_green2020(green2020_dir)
    assert grid.axes[0][0] == 2500.0 and grid.axes[0][-1] == 9000.0
    assert grid.axes[1][0] == -2.0 and grid.axes[1][-1] == 7.0
    assert grid.axes[2][0] == -2.5 and grid.axes[2][-1] == 1.0


def dev_catalog(green2020_dir) -> Catalog:
    """The 5,000 released test stars; floors are in the file, the parallax rule is ours."""
    d = h5py.File(green2020_dir / "green2020_test_data_dev.h5", "r")["data"][:]
    plx, plx_err = d["parallax"].astype(float), d["parallax_err"].astype(float)
    return Catalog.from_arrays(
        bands=BANDS, mag=d["mag"], mag_err=d["mag_err"], theta=d["atm_param"],
        theta_cov=d["atm_param_cov"], parallax=plx, parallax_err=plx_err,
        parallax_ok=plx / plx_err >= 5.0, ebv=d["r"], ebv_err=d["r_err"],
    )  # fmt: skip


def test_real_star_chi2_matches_the_paper(green2020_dir):
    """§4: ⟨χ²/dof⟩ = 0.87 over χ²/dof ≤ 5 and 2.7% above 5 on the test set."""
    model = import_green2020(green2020_dir)
    with pytest.warns(Warning, match="standard deviations"):  # a few θ̂ far from the median
        res = evaluate_catalog(model, dev_catalog(green2020_dir))
    s = res.summary
    assert s["n_stars"] >= 4990
    assert s["mean_chi2_dof_below5"] == pytest.approx(0.87, abs=0.01)
    assert s["frac_chi2_dof_above5"] == pytest.approx(0.027, abs=0.003)
    assert not np.any(np.isnan(res.columns["chi2"]))
