"""The report of a K = 2 model (issue 20 item 5): R₁ against the F99 R(V) direction, the
slopes across ξ, ξ̂ against E and the true R(V); a K = 1 report has none of it."""

from __future__ import annotations

import json
from html import escape

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_diagnostics import SIG_THETA

from bayesdsm import plot_variation as PV
from bayesdsm import report
from bayesdsm import report_variation as RV
from bayesdsm.catalog import Catalog
from bayesdsm.emulator import (
    EmulatorConfig,
    emulator_arrays,
    emulator_from_arrays,
    extinction_vector,
    init_emulator,
)
from bayesdsm.variation import orthogonal_part

NEW = ("variation_R1", "fig11_slopes_across_xi", "xi_vs_E")


def k2_emulator(r1, key=3):
    """The K = 1 test emulator's weights with a constant R₁ = ``r1`` (W₁ = 0; R is
    constant too, W = 0, so ρ = r1 / R)."""
    emu = init_emulator(jax.random.PRNGKey(key), EmulatorConfig(n_components=2))
    arrays = dict(emulator_arrays(emu))
    arrays["R1_kernel"] = jnp.zeros_like(arrays["R1_kernel"])
    rho = np.asarray(r1) / np.exp(np.asarray(arrays["R_bias"], np.float64))
    arrays["R1_bias"] = jnp.asarray(rho, jnp.float32)
    return emulator_from_arrays(EmulatorConfig(n_components=2), arrays, jnp.float32)


def simulate_k2(n, seed=0):
    """(emulator, catalog): stars with A = E (R₀ + ξ R₁), ξ = (R(V) - 3.1) / 0.18 exactly,
    R(V) ~ N(3.1, 0.18²) in ``extra["true_RV"]`` (and ``true_ebv``); R₁ is the F99
    ∂A/∂R(V) × 0.18 at the catalogue-mean θ̂'s Teff (so the learned and F99 orthogonal
    parts coincide there)."""
    rng = np.random.default_rng(seed)
    theta = np.column_stack(
        [rng.uniform(4500, 6500, n), rng.uniform(2.0, 4.6, n), rng.uniform(-0.8, 0.3, n)]
    )
    theta_hat = theta + SIG_THETA * rng.standard_normal((n, 3))
    bands = EmulatorConfig().bands
    emu = k2_emulator(RV.theory_direction(bands, float(np.mean(theta_hat[:, 0]))))
    ebv = rng.uniform(0.0, 1.5, n)
    rv = 3.1 + RV.SIGMA_RV * rng.standard_normal(n)
    xi = (rv - 3.1) / RV.SIGMA_RV
    plx = rng.uniform(0.5, 3.0, n)
    with jax.enable_x64(True):
        e64 = emu.astype(jnp.float64)
        one = lambda t, e, x: e64.absolute_magnitudes(t) + e * extinction_vector(e64, t, x)  # noqa: E731
        m = np.asarray(jax.vmap(one)(theta, ebv, xi)) + (10.0 - 5.0 * np.log10(plx))[:, None]
    nb = len(bands)
    mag_err = rng.uniform(0.01, 0.02, (n, nb))
    plx_err = plx / rng.uniform(8.0, 30.0, n)
    ebv_err = rng.uniform(0.03, 0.1, n)
    cat = Catalog.from_arrays(
        bands=bands,
        mag=m + mag_err * rng.standard_normal((n, nb)),
        mag_err=mag_err,
        theta=theta_hat,
        theta_cov=np.broadcast_to(np.diag(SIG_THETA**2), (n, 3, 3)).copy(),
        parallax=plx + plx_err * rng.standard_normal(n),
        parallax_err=plx_err,
        ebv=ebv + ebv_err * rng.standard_normal(n),
        ebv_err=ebv_err,
        extra={"true_RV": rv, "true_ebv": ebv},
    )
    return emu, cat


@pytest.fixture(scope="module")
def k2_report(tmp_path_factory):
    emu, cat = simulate_k2(300, seed=21)
    out = tmp_path_factory.mktemp("k2")
    return report.make_report(emu, cat, out, progress=False), out


def _finite(tree) -> bool:
    if isinstance(tree, dict):
        return all(_finite(v) for k, v in tree.items() if k != "missing_reason")
    if isinstance(tree, list):
        return all(_finite(v) for v in tree)
    if isinstance(tree, float):
        return bool(np.isfinite(tree))
    return tree is not None


def test_k2_report_writes_the_variation_figures_and_summary(k2_report):
    res, out = k2_report
    assert not set(NEW) & set(res.skipped), res.skipped
    for name in NEW:
        assert res.figures[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    v = json.loads((out / "summary.json").read_text())["variation"]
    assert v["K"] == 2 and v["n_stars"] == 300 and _finite(v)
    assert v["theory"]["missing_reason"] is None and v["theory"]["sigma_RV"] == 0.18
    assert set(v["slopes_across_xi"]) == {"-2", "-1", "+0", "+1", "+2"}
    assert 0.0 <= v["fraction_xi_sd_above_0.9"] <= 1.0
    lo, mid, hi = v["xi_percentiles_16_50_84"]
    assert lo < mid < hi
    # R₁ was set to the F99 direction at the mean θ̂: the report finds angle ~0, ratio ~1
    assert v["angle_deg"] < 0.5
    assert v["length_ratio_learned_over_theory"] == pytest.approx(1, abs=2e-3)
    html = (out / "report.html").read_text()
    for name in NEW:
        assert escape(PV.CAPTIONS[name]) in html
    assert "σ(R(V)) = 0.18" in html


def test_xi_correlates_with_the_true_rv(k2_report):
    t = k2_report[0].summary["variation"]["xi_vs_true_RV"]
    assert t["E_source"] == "true_ebv" and t["n_E_ge_0.5"] > 150
    assert t["pearson_r_E_ge_0.5"] > 0.5 and t["p_value"] < 1e-6
    assert t["by_E"]["1-inf"]["r"] > t["by_E"]["0-0.1"]["r"]  # ξ is seen through E R₁


def test_k1_report_has_no_variation(tmp_path, monkeypatch):
    from test_diagnostics import simulate

    emu = init_emulator(jax.random.PRNGKey(3), dtype=jnp.float32)
    monkeypatch.setattr(report, "_figure_steps", lambda *a: [])  # the K = 1 figures: test_report
    res = report.make_report(emu, simulate(emu, 100, seed=5), tmp_path, progress=False)
    assert not set(NEW) & (set(res.figures) | set(res.skipped))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "variation" not in summary and "variation_R1" not in summary["theory_curves_missing"]
    assert not any((tmp_path / f"{n}.png").exists() for n in NEW)


def test_angle_is_zero_only_along_the_theory_direction():
    theta0 = np.array([5600.0, 3.8, -0.1])
    bands = EmulatorConfig().bands
    d = RV.theory_direction(bands, theta0[0])
    g = RV.r1_geometry(k2_emulator(d), theta0)
    assert g["angle_deg"] < 0.2 and g["length_ratio"] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(g["theory_perp"], orthogonal_part(d, g["R0"]), rtol=1e-9)
    # adding any multiple of R₀ changes nothing; the opposite sign is 180°; 2x is ratio 2
    g = RV.r1_geometry(k2_emulator(2 * d + 0.3 * g["R0"]), theta0)
    assert g["angle_deg"] < 0.2 and g["length_ratio"] == pytest.approx(2.0, rel=1e-3)
    assert RV.r1_geometry(k2_emulator(-d), theta0)["angle_deg"] > 179.8
    other = np.random.default_rng(0).normal(0.0, 0.03, len(bands))
    assert RV.r1_geometry(k2_emulator(other), theta0)["angle_deg"] > 20.0
    # the sign convention: F99's ⊥ part is most negative-leaning in the bluest band
    assert g["theory_perp"][int(np.argmax(g["R0"]))] < 0


def test_missing_theory_plots_the_learned_curve_alone(monkeypatch):
    import bayesdsm.passband_extinction as pe
    from bayesdsm.plot_variation import plot_variation_r1

    def broken(*a, **k):
        raise ImportError("no module named 'extinction'")

    monkeypatch.setattr(pe, "band_R_grid", broken)
    theta0 = np.array([5600.0, 3.8, -0.1])
    g = RV.r1_geometry(k2_emulator(np.linspace(-0.05, 0.05, 13)), theta0, theta0[None] + 1.0)
    assert g["theory_perp"] is None and "ImportError" in g["theory_reason"]
    assert np.isnan(g["angle_deg"]) and g["R1_pct"].shape == (3, 13)
    fig = plot_variation_r1(EmulatorConfig().bands, g)
    assert len(fig.axes[0].lines) == 3  # zero line, R₁, R₁ ⊥ R₀


def test_cli_report_of_a_k2_model_file(tmp_path, capsys, monkeypatch):
    """A K = 2 model file and a catalog file with ``true_RV`` through ``bayesdsm report``."""
    from bayesdsm.catalog import write_catalog
    from bayesdsm.cli import main
    from bayesdsm.model_file import StellarModel, save_model

    emu, cat = simulate_k2(120, seed=3)
    monkeypatch.setattr(report, "_figure_steps", lambda *a: [])  # the K = 1 figures: test_report
    mpath = save_model(StellarModel(emulator=emu), tmp_path / "k2.bdsm")
    cpath = write_catalog(cat, tmp_path / "cat.fits")
    out = tmp_path / "rep"
    argv = ["report", str(mpath), str(cpath), "--out", str(out), "--no-prepare", "--no-progress"]
    assert main(argv) == 0
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert sorted(line["figures"]) == sorted(NEW) and line["skipped"] == {}
    v = json.loads((out / "summary.json").read_text())["variation"]
    assert v["angle_deg"] < 0.5 and v["xi_vs_true_RV"]["pearson_r_E_ge_0.5"] > 0.5


def test_plots_without_truth_or_s16_and_with_many_stars():
    rng = np.random.default_rng(1)
    e, xi = rng.uniform(0, 2, 5000), rng.standard_normal(5000)
    fig = PV.plot_xi_vs_e(e, xi, None)  # a density above 3000 stars, one panel
    assert len(fig.axes) == 1 and len(fig.axes[0].collections) == 2  # hexbin, 16-84% band
    fig = PV.plot_slopes_across_xi({x: {"gri": 1.0 + 0.1 * x, "riz": 1.0} for x in RV.XI_VALUES})
    assert len(fig.axes[0].lines) == len(RV.XI_VALUES)
