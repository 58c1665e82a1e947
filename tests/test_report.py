"""bayesdsm.report and ``bayesdsm report``: files written, bad input, real-star findings."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_diagnostics import simulate

from bayesdsm.emulator import init_emulator
from bayesdsm.report import make_report


@pytest.fixture(scope="module")
def emu():
    return init_emulator(jax.random.PRNGKey(3), dtype=jnp.float32)


@pytest.fixture(scope="module")
def model(emu):
    from bayesdsm.model_file import StellarModel
    from bayesdsm.validity import ValidityGrid

    axes = (np.linspace(4000, 7000, 16), np.linspace(1.5, 5.0, 15), np.linspace(-1.0, 0.5, 7))
    t, g, f = np.meshgrid(*axes, indexing="ij")
    dens = np.exp(-(((t - 5500) / 700) ** 2) - ((g - 3.5) / 1.2) ** 2 - ((f + 0.2) / 0.5) ** 2)
    names = (*emu.bands, "parallax")
    grid = ValidityGrid(axes, np.broadcast_to(dens, (len(names), *dens.shape)).copy(), names)
    history = [
        {"iteration": k, "train_loss": 1.0 / (k + 1), "val_loss": 1.1 / (k + 1),
         "n_excluded": 10 * k, "lr": 1e-3 * np.exp(-k / 5), "mean_R": list(np.linspace(3, 0.2, 13))}
        for k in range(4)
    ]  # fmt: skip
    return StellarModel(emulator=emu, validity_grid=grid, history=history)


def test_full_report(model, tmp_path):
    cat = simulate(model.emulator, 400, seed=11)
    res = make_report(model, cat, tmp_path, progress=False)
    assert res.skipped == {}, res.skipped
    assert len(res.figures) == 11
    for p in res.figures.values():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["catalog"]["n_stars"] == 400
    assert set(summary["score_percentiles_16_50_84"]) >= {"r-G", "g-r"}
    assert "R_W2_over_R_W1" in summary["w2_collapse"] and summary["findings"]
    d = summary["delta_R_over_R_G"]
    assert d["teff_ref_K"] == pytest.approx(res.summary["theta_mean"][0], rel=1e-3)
    assert d["learned_1_99pct"][0] <= d["learned_1_99pct"][1]
    assert "(c) In G" in summary["findings"]
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 11
    assert "src='http" not in html and 'src="http' not in html  # self-contained


def test_missing_bands_and_parallaxes_still_report(emu, tmp_path):
    cat = simulate(emu, 300, seed=12).select_bands(("G", "BP", "RP", "g", "r", "i"))
    cat = cat.replace(parallax_ok=np.zeros(len(cat), bool))
    res = make_report(emu, cat, tmp_path, progress=False)
    assert "fig06_cmd" in res.skipped and "parallax" in res.skipped["fig06_cmd"]
    assert "validity" in res.skipped["fig13_validity"]
    assert "history" in res.skipped["training_history"]
    assert {"fig07_cmd_mean_theta", "fig10_delta_R", "fig12_residual_trends"} <= set(res.figures)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["skipped"] == res.skipped
    assert "J" in summary["catalog"]["model_bands_missing_from_catalog"]
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Figures not made</h2>" in html and res.skipped["fig06_cmd"] in html


def test_cli_report(model, tmp_path, capsys, monkeypatch):
    """The command's plumbing (figures are covered above: two are enough here)."""
    from bayesdsm import report
    from bayesdsm.catalog import write_catalog
    from bayesdsm.cli import main
    from bayesdsm.model_file import save_model

    steps = report._figure_steps
    monkeypatch.setattr(report, "_figure_steps", lambda *a: steps(*a)[9:])
    mpath = save_model(model, tmp_path / "model.bdsm")
    cpath = write_catalog(simulate(model.emulator, 200, seed=13), tmp_path / "cat.fits")
    out = tmp_path / "rep"
    argv = ["report", str(mpath), str(cpath), "--out", str(out), "--no-prepare", "--no-progress"]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["figures"] == ["fig13_validity", "training_history"]
    assert line["skipped"] == {} and (out / "report.html").is_file()


@pytest.mark.slow
@pytest.mark.green2020
def test_report_real_stars(green2020_dir, tmp_path):
    """The released model on the 5,000 real dev stars shows the paper's two findings."""
    from bayesdsm.catalog import read_catalog
    from bayesdsm.config import CutsConfig
    from bayesdsm.cuts import prepare

    cat = read_catalog(green2020_dir / "green2020_test_data_dev.h5", preset="green2020")
    cat = prepare(cat, CutsConfig())[0]
    res = make_report(green2020_dir, cat, tmp_path, progress=False)
    assert set(res.skipped) == {"training_history"}
    g = res.summary["g_band_trend"]
    assert g["mean_slope_colours_with_G"] < -0.2 < 0.1 > abs(g["mean_slope_colours_without_G"])
    assert g["n_colours_with_G_slope_below_minus_2sigma"] >= 8
    w = res.summary["w2_collapse"]
    assert w["R_W2_over_R_W1"] < 0.01 and w["theory_R_W2_over_R_W1_F99_blackbody"] > 0.5
    # §6: "R varies the most (by ±15%) in Gaia G", roughly matching the blackbody theory,
    # and "R differs by ~7% for 4000 K dwarfs and giants". Measured with this model on
    # these stars: -11.5% .. +14.8% (1st-99th percentiles, Teff 3959-8242 K), 1.29× the
    # blackbody curve's span over the same Teff, and giants - dwarfs = -6.7% near 4000 K.
    d = res.summary["delta_R_over_R_G"]
    lo, hi = d["learned_1_99pct"]
    assert -0.15 < lo < -0.10 and 0.12 < hi < 0.17
    th_lo, th_hi = d["theory_at_teff_1_99pct"]
    assert th_lo < -0.08 and th_hi > 0.08  # the theory has the same sign and scale ...
    assert 1.1 < d["learned_over_theory_span"] < 1.5  # ... but the learned R varies more
    assert -0.09 < d["near_4000K_giants_minus_dwarfs"] < -0.05
    assert "collapsed" in res.summary["findings"] and "(c) In G" in res.summary["findings"]
