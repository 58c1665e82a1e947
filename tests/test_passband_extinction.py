"""Tests of bayesdsm.passband_extinction: blackbody × passband × dust law (Fig. 10, 11, App. B)."""

from __future__ import annotations

import numpy as np
import pytest

speclite_filters = pytest.importorskip(
    "speclite.filters",
    reason="bayesdsm.passband_extinction needs speclite: pip install 'bayesdsm[sim]'",
)
extinction = pytest.importorskip(
    "extinction",
    reason="bayesdsm.passband_extinction needs extinction: pip install 'bayesdsm[sim]'",
)

from bayesdsm import passband_extinction as th  # noqa: E402
from bayesdsm.conventions import BANDS  # noqa: E402
from bayesdsm.errors import ConfigError  # noqa: E402

T_PAPER = np.linspace(4000.0, 7500.0, 36)  # the Teff range of the paper's Fig. 10 statement


@pytest.mark.parametrize("band", BANDS)
def test_every_band_has_a_speclite_passband(band):
    pb = th.passband(band)
    assert pb.wavelength.ndim == 1 and pb.wavelength.shape == pb.response.shape
    assert np.all(np.diff(pb.wavelength) > 0) and pb.response.max() > 0
    r = th.band_R(th.DEFAULT_TEFF_REF, band)
    assert np.isfinite(r) and r > 0


# Known values of OUR computation (blackbody × speclite 1.0 "gaiadr2-G", the ESA DR2
# passband of 2018-03-16 × `extinction` 0.4.9 F99 at R_V = 3.1), pinned so that a change
# of integration, passband or law shows up; the integrals themselves are checked against
# an independent reference in test_vectorised_integration_matches_slow_loop.
DR_G_4000_7500 = (-0.0925, +0.0890)  # ΔR/R of G at 4000 K and 7500 K, relative to 5372 K
C_FIT_G_6000 = -0.0478  # Appendix B coefficient c (ΔA ≈ c A_G²) at 6000 K
DA_G_6000_AT_1 = -0.0497  # ΔA_G [mag] at A_G = 1 mag, 6000 K (the paper's Eq. B19 check)

# The paper (Green et al. 2021): §6 / Fig. 10, "The reddening vector varies the most (by
# ±15%) in Gaia G", describing the learned R over its stars; Appendix B: ν0 = 640 nm,
# Δν = 144 nm, γ = 1.31, ΔA_G ≈ -0.040 A_G² (Eq. B31), and ΔA_G = -0.037 mag at A_G = 1.
PAPER_DR_G = 0.15
PAPER_B = dict(lambda0=6400.0, dlambda=1440.0, gamma=1.31, c_b31=-0.040, da_at_1=-0.037)

# A real-atmosphere cross-check: dA_G/dA0 at A0 -> 0 (A0 = extinction at 550 nm), and the
# quadratic coefficient c2/R² of A_G(A0) in units of A_G², from a cubic fit over A0 = 0-4
# mag (the same fit is applied to our blackbody below) to dustapprox 0.2.0 (PyPI),
# file dustapprox/data/precomputed/grids/kurucz_gaiaedr3_small_a0_grid.csv, rows
# passband GAIA_GAIA3.G, [Fe/H] = 0: Kurucz atmospheres × Gaia EDR3 G × F99 (R0 = 3.1, as
# the F99 models dustapprox fits to its grids state in their metadata).
KURUCZ_G = {  # (log g, Teff): (dA_G/dA0, c2/R²)
    (4.5, 4000.0): (0.7787, -0.0419),
    (4.5, 5500.0): (0.8957, -0.0445),
    (4.5, 6000.0): (0.9221, -0.0454),
    (4.5, 7500.0): (0.9863, -0.0453),
    (2.5, 4000.0): (0.7844, -0.0400),
    (2.5, 5500.0): (0.8958, -0.0443),
    (2.5, 6000.0): (0.9256, -0.0453),
    (2.5, 7500.0): (1.0059, -0.0451),
}


def test_grid_integrals_match_the_one_star_ones():
    teff, ebv, rvs = np.array([3500.0, 5800.0, 12000.0]), np.array([0.1, 1.5]), [2.5, 4.2]
    for band in ("G", "g", "W2"):
        a = th.band_extinction_grid(teff, ebv, band, r_v=rvs)
        assert a.shape == (3, 2, 2)
        for j, rv in enumerate(rvs):
            ref = th.band_extinction(teff[:, None], ebv[None], band, r_v=rv)
            np.testing.assert_allclose(a[..., j], ref, rtol=1e-12)
            np.testing.assert_allclose(th.band_R_grid(teff, band, r_v=rv),
                                       th.band_R(teff, band, r_v=rv), rtol=1e-12)  # fmt: skip
        assert th.band_extinction_grid(teff, ebv, band).shape == (3, 2)


def test_delta_R_over_R_gaia_G_against_paper():
    d = th.delta_R_over_R(T_PAPER, "G")
    ptp = {b: np.ptp(th.delta_R_over_R(T_PAPER, b)) for b in ("G", "BP", "RP", "g")}
    print("ΔR/R(G) at 4000, 7500 K:", d[0], d[-1], " peak-to-peak 4000-7500 K:", ptp)
    np.testing.assert_allclose([d[0], d[-1]], DR_G_4000_7500, atol=0.002)
    assert np.all(np.diff(d) > 0), "hotter stars are bluer, so R rises with Teff"
    assert abs(th.delta_R_over_R(th.DEFAULT_TEFF_REF, "G")) < 1e-12
    # The paper's ±15% is the LEARNED variation over its stars. A blackbody curve over
    # 4000-7500 K reaches only ~60% of it at each end (the released model's learned
    # ΔR/R_G spans -11.5%..+14.8% over the dev stars: tests/test_report.py), so the
    # statement is reproduced only as the paper makes it: "roughly matches".
    assert 0.5 < abs(d[0]) / PAPER_DR_G < 0.7 and 0.5 < d[-1] / PAPER_DR_G < 0.7
    # The (E)DR3 passband (speclite "gaiadr3-G") moves the curve by < 0.5 percentage points.
    d3 = th.delta_R_over_R(T_PAPER, "gaiadr3-G")
    assert np.max(np.abs(d3 - d)) < 0.005
    # wider passbands vary more: G is the widest, and the optical bands vary more than g
    assert ptp["G"] > ptp["BP"] > ptp["RP"] and ptp["G"] > ptp["g"]
    for b in ("J", "H", "Ks", "W1", "W2"):
        assert np.ptp(th.delta_R_over_R(T_PAPER, b)) < 0.01


@pytest.mark.parametrize("logg", [4.5, 2.5])
def test_blackbody_vs_kurucz_gaia_G(logg):
    """A blackbody under-predicts the Teff dependence of R_G by 10-40% relative to Kurucz
    atmospheres, and gives nearly the same Appendix B coefficient."""
    k = {t: v for (g, t), v in KURUCZ_G.items() if g == logg}
    kur = np.array([k[4000.0][0], k[7500.0][0]]) / k[5500.0][0] - 1.0
    bb = th.delta_R_over_R(np.array([4000.0, 7500.0]), "gaiadr3-G", teff_ref=5500.0)
    print(f"log g {logg}: ΔR/R at 4000, 7500 K (ref 5500 K): Kurucz {kur}, blackbody {bb}")
    assert np.all(np.sign(bb) == np.sign(kur))
    assert np.all((0.6 < bb / kur) & (bb / kur < 0.9))
    # the same cubic fit of A_G(A0) on A0 = 0..4 mag as was applied to the Kurucz grid
    k55 = float(th.dust_law(np.array([5500.0]))[0])
    a0 = np.arange(0.0, 5.0)
    coef = np.polyfit(a0, th.band_extinction(6000.0, a0 / k55, "gaiadr3-G"), 3)[::-1]
    c_bb = coef[2] / coef[1] ** 2
    print(f"c2/R² at 6000 K: Kurucz {k[6000.0][1]}, blackbody {c_bb:.4f}")
    assert c_bb / k[6000.0][1] == pytest.approx(1.0, abs=0.05)


def test_gaia_G_nonlinearity_against_appendix_b():
    c_fit = float(th.nonlinearity_coefficient("G", 6000.0, method="fit"))
    c_mom = float(th.nonlinearity_coefficient("G", 6000.0, method="moments"))
    c_pow = float(th.nonlinearity_coefficient("G", 6000.0, method="powerlaw"))
    da1 = float(th.extinction_nonlinearity(1.0, "G", 6000.0))
    p = th.appendix_b_parameters("G", variable="wavelength")
    print(f"G at 6000 K: c_fit={c_fit:.4f} c_moments={c_mom:.4f} c_B31={c_pow:.4f} dA(1)={da1:.4f}")
    print(f"G moments [Å]: {p.lambda0:.0f} ± {p.dlambda:.0f}, gamma {p.gamma:.3f}")
    assert c_fit == pytest.approx(C_FIT_G_6000, abs=0.001)
    assert da1 == pytest.approx(DA_G_6000_AT_1, abs=0.001)
    assert abs(c_mom / c_fit - 1) < 0.02, "exact leading order vs the fitted quadratic"
    assert abs(c_pow / c_fit - 1) < 0.05, "Gaussian/power-law approximation (Eq. B31)"
    # Our c is ~20% more negative than the paper's. The paper's -0.040 follows from its
    # own (λ0, Δλ, γ) through Eq. B31; its passband moments agree with ours (5%), but
    # its γ = 1.31 does not: F99 at R_V = 3.1 has γ = 1.49 over the same λ0 ± Δλ.
    lam0, dlam, gam = PAPER_B["lambda0"], PAPER_B["dlambda"], PAPER_B["gamma"]
    b31 = -(np.log(10) / 5) * (dlam / lam0) ** 2 * gam**2
    assert b31 == pytest.approx(PAPER_B["c_b31"], abs=0.0005)
    assert p.lambda0 == pytest.approx(lam0, rel=0.05)
    assert p.dlambda == pytest.approx(dlam, rel=0.05)
    assert 1.45 < p.gamma < 1.52
    # γ² carries the difference: (γ_paper/γ_ours)² matches the paper/ours ratio of the
    # numerical ΔA(A_G = 1) to within 5%.
    assert PAPER_B["da_at_1"] / da1 == pytest.approx((gam / p.gamma) ** 2, rel=0.05)
    # What does not explain it: the passband version (DR2 vs (E)DR3) ...
    c_dr3 = float(th.nonlinearity_coefficient("gaiadr3-G", 6000.0))
    assert abs(c_dr3 / c_fit - 1) < 0.03
    # ... nor the source (blackbody vs Kurucz: < 5%, test_blackbody_vs_kurucz_gaia_G);
    # a greyer F99 would: R_V ≈ 3.9 gives the paper's γ and ΔA(1).
    p39 = th.appendix_b_parameters("G", variable="wavelength", r_v=3.9)
    assert p39.gamma == pytest.approx(gam, abs=0.02)
    da1_39 = float(th.extinction_nonlinearity(1.0, "G", 6000.0, r_v=3.9))
    assert da1_39 == pytest.approx(PAPER_B["da_at_1"], abs=0.003)
    # "The numerical result only varies by 20% for source temperatures between 4000 K
    # and 8000 K."
    c_t = th.nonlinearity_coefficient("G", np.array([4000.0, 6000.0, 8000.0]))
    assert np.ptp(c_t) / abs(c_t.mean()) < 0.20


def _slow_band_extinction(teff, ebv, name, r_v=3.1):
    """An independent reference: Planck's law, speclite and extinction used directly,
    and a plain Python trapezoid loop."""
    f = speclite_filters.load_filter(name)
    wl = np.array(f.wavelength, dtype=float)
    resp = np.array(f.response, dtype=float)
    h, c, kb = 6.62607015e-27, 2.99792458e10, 1.380649e-16  # cgs
    lam_cm = wl * 1e-8
    planck = 2 * h * c**2 / lam_cm**5 / (np.exp(h * c / (lam_cm * kb * teff)) - 1)
    a_lam = extinction.fitzpatrick99(wl, ebv * r_v, r_v)
    num = den = 0.0
    for i in range(len(wl) - 1):
        dx = wl[i + 1] - wl[i]
        y0 = planck[i] * resp[i] * wl[i]
        y1 = planck[i + 1] * resp[i + 1] * wl[i + 1]
        den += 0.5 * dx * (y0 + y1)
        num += 0.5 * dx * (y0 * 10 ** (-0.4 * a_lam[i]) + y1 * 10 ** (-0.4 * a_lam[i + 1]))
    return -2.5 * np.log10(num / den)


@pytest.mark.parametrize("band", ["G", "g", "Ks"])
def test_vectorised_integration_matches_slow_loop(band):
    teff = np.array([3500.0, 5372.0, 9000.0])
    ebv = np.array([0.3, 1.0, 2.5])
    fast = th.band_extinction(teff, ebv, band)
    name = th.SPECLITE_NAMES[band]
    slow = np.array([_slow_band_extinction(t, e, name) for t, e in zip(teff, ebv)])
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-10)
    # R = dA/dE at E -> 0, against a finite difference of the slow reference
    eps = 1e-6
    fd = np.array([_slow_band_extinction(t, eps, name) / eps for t in teff])
    np.testing.assert_allclose(th.band_R(teff, band), fd, rtol=1e-5)


@pytest.mark.parametrize("centre", [4000.0, 5500.0, 8000.0, 20000.0])
def test_narrow_band_gives_monochromatic_extinction(centre):
    # Eq. B20: an infinitely narrow band sees A = E·k(λ0), whatever the source.
    wl = np.linspace(centre - 10.0, centre + 10.0, 41)
    resp = np.where(np.abs(wl - centre) < 9.9, 1.0, 0.0)
    pb = th.Passband(f"tophat-{centre:g}", wl, resp)
    k0 = th.dust_law(np.array([centre]))[0]
    k_ref = th.dust_law(np.array([5500.0]))[0]

    def flat(w, t):
        return np.ones(np.shape(t) + w.shape)

    for source, teff in ((flat, 5000.0), (None, 1e5)):
        a = th.band_extinction(teff, 0.5, pb, source=source)
        a_ref = 0.5 * k_ref
        assert a / a_ref == pytest.approx(k0 / k_ref, rel=0.01)


def test_batched_equals_per_star_and_broadcasts():
    teff = np.array([[4000.0], [5000.0], [6500.0]])
    ebv = np.array([0.0, 0.1, 1.0, 3.0])
    a = th.band_extinction(teff, ebv, "BP")
    assert a.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert a[i, j] == pytest.approx(th.band_extinction(teff[i, 0], ebv[j], "BP"), abs=1e-12)
    assert np.all(a[:, 0] == 0.0)
    assert th.band_R(teff, "BP").shape == (3, 1)
    assert th.nonlinearity_coefficient("G", teff, method="moments").shape == (3, 1)


def test_nonlinearity_solver_hits_the_target_extinction():
    pb = th.passband("G")
    k = th.dust_law(pb.wavelength)
    e = th._ebv_for_A(np.array([0.5, 2.0]), np.array([6000.0, 6000.0]), pb, k, None)
    np.testing.assert_allclose(th.band_extinction(6000.0, e, "G"), [0.5, 2.0], atol=1e-10)


def test_reddening_slopes_close_to_schlafly2016():
    # Fig. 11 compares with S16's mean vector (R(V) ≈ 3.3); S16 measured it on ~4500 K
    # giants. A blackbody with F99 (R_V = 3.1) should land within 20% in every triplet.
    ours = th.reddening_slopes(4500.0)
    s16 = th.schlafly2016_slopes(r_v=3.3)
    assert list(ours) == ["gri", "riz", "izy", "zyJ", "yJH", "JHK", "HK1", "K12"]
    for lab in ours:
        print(f"{lab}: theory {float(ours[lab]):.3f}  S16 {s16[lab]:.3f}")
        assert float(ours[lab]) == pytest.approx(s16[lab], rel=0.20)
    # the lookup is by band name: gri from the published R values by hand
    r = {b: v[0] for b, v in th.SCHLAFLY2016["vector"].items()}
    assert s16["gri"] == pytest.approx((r["g"] - r["r"]) / (r["r"] - r["i"]), rel=1e-12)
    # higher R(V) means greyer dust: the optical slope E(g-r)/E(r-i) falls
    assert th.schlafly2016_slopes([("g", "r", "i")], r_v=3.6)["gri"] < s16["gri"]


def test_bad_input_is_refused_with_a_reason():
    with pytest.raises(ConfigError, match="unknown band"):
        th.passband("Q")
    with pytest.raises(ConfigError, match="defined for"):
        th.band_R(5000.0, "W1", law="CCM89")
    with pytest.raises(ConfigError, match="unknown dust law"):
        th.band_R(5000.0, "G", law="G23")
    with pytest.raises(ConfigError, match="unknown method"):
        th.nonlinearity_coefficient("G", method="cubic")
    with pytest.raises(ConfigError, match="S16 has no bands"):
        th.schlafly2016_slopes([("G", "BP", "RP")])


def test_missing_optional_dependency_names_the_extra(monkeypatch):
    def refuse(name, *args, **kwargs):
        raise ImportError(f"No module named {name!r}")

    monkeypatch.setattr(th.importlib, "import_module", refuse)
    with pytest.raises(ImportError, match=r"bayesdsm\[sim\]"):
        th._import("speclite.filters")
