"""Matplotlib figures of the K = 2 report (issue 20), from :mod:`bayesdsm.report_variation`.

As :mod:`bayesdsm.plotting`: each function returns a Figure built without ``pyplot``.
R₀, R₁ in mag per mag of E; ξ dimensionless; E in the catalogue's units (mag).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bayesdsm import report_variation as RV
from bayesdsm.plotting import new_figure

__all__ = [
    "CAPTIONS",
    "plot_variation_r1",
    "plot_slopes_across_xi",
    "plot_xi_vs_e",
    "figure_steps",
]

#: Captions of the figures in report.html.
CAPTIONS = {
    "variation_R1": "K = 2: the learned extinction variation R₁ (black: at the catalogue-mean "
    "θ̂; grey: 16-84% over the stars' θ̂), its part orthogonal to the learned R₀ (blue) and "
    f"the F99 direction ∂A/∂R(V) at R(V) = {RV.RV_REF} per unit E (blackbody × passband at the "
    f"mean Teff, centred difference) times σ(R(V)) = {RV.SIGMA_RV}, orthogonalised against the "
    "learned R₀ (red dashed). Only the orthogonal parts change colours; the angle between "
    "them and the ratio of their lengths (learned / F99) are in the panel and summary.json.",
    "fig11_slopes_across_xi": "K = 2: Fig. 11's reddening slopes E(a-b)/E(b-c) of "
    "R = R₀ + ξ R₁ at the mean θ̂ for ξ = -2 … 2 (blue to red), against the Schlafly et al. "
    "(2016) family for a range of R_V (grey; thick: their mean, R_V = 3.3).",
    "xi_vs_E": "K = 2: each star's posterior-mean ξ̂ (the (E, ξ) update from the catalogue's "
    "reddening prior at θ̂) against E, with the binned median and 16-84% band (blue); right, "
    f"where the catalog carries the true R(V): ξ̂ against it for E ≥ {RV.E_MIN_PEARSON:g} "
    "(Pearson r shown).",
}


def plot_variation_r1(bands: Sequence[str], geo: Mapping, *, sigma_rv: float = RV.SIGMA_RV):
    """R₁ per band at the mean θ̂ (black; grey: its 16-84% over stars), its part
    orthogonal to R₀ (blue) and the F99 ∂A/∂R(V) × σ(R(V)) orthogonal part (red dashed),
    with their angle and length ratio; ``geo`` is :func:`report_variation.r1_geometry`'s."""
    x = np.arange(len(bands))
    fig = new_figure(8.2, 4.2, left=0.09, right=0.7, bottom=0.12, top=0.95)
    ax = fig.subplots()
    ax.axhline(0.0, color="0.7", lw=0.8)
    if geo.get("R1_pct") is not None:
        q = np.asarray(geo["R1_pct"])
        ax.fill_between(x, q[0], q[2], color="0.6", alpha=0.5, label="learned R₁, 16-84% of stars")
    ax.plot(x, geo["R1"], "ko-", ms=4, label="learned R₁, mean θ̂")
    ax.plot(x, geo["R1_perp"], "o-", color="tab:blue", ms=4, label="learned R₁ ⊥ R₀")
    if geo.get("theory_perp") is not None:
        ax.plot(x, geo["theory_perp"], "s--", color="tab:red", ms=4,
                label=f"F99 ∂A/∂R(V) × {sigma_rv:g}, ⊥ R₀")  # fmt: skip
        text = (
            f"angle(learned ⊥, F99 ⊥) = {geo['angle_deg']:.1f}°\n"
            f"|learned ⊥| / |F99 ⊥| = {geo['length_ratio']:.3g}"
        )
    else:
        text = "F99 direction not computed:\n" + str(geo.get("theory_reason", ""))[:80]
    ax.text(1.02, 0.02, text, transform=ax.transAxes, fontsize=8, va="bottom")
    ax.set_xticks(x, list(bands))
    ax.set_xlabel("band")
    ax.set_ylabel("R₁ (mag per mag of E, per unit ξ)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_slopes_across_xi(
    slopes: Mapping[float, Mapping[str, float]],
    s16: Mapping[float, Mapping[str, float]] | None = None,
):
    """Fig. 11 for R = R₀ + ξ R₁: ``slopes`` {ξ: {label: E(a-b)/E(b-c)}} (blue → red with
    ξ) against the Schlafly et al. (2016) ``s16`` {R_V: {label: slope}} (grey)."""
    from matplotlib import colormaps

    xis = sorted(slopes)
    labels = list(slopes[xis[0]])
    x = np.arange(len(labels))
    fig = new_figure(8.2, 4.2, left=0.08, right=0.7, bottom=0.13, top=0.96)
    ax = fig.subplots()
    for rv in sorted(s16 or {}):
        mean = abs(rv - 3.3) < 1e-6
        ax.plot(x, [s16[rv].get(lab, np.nan) for lab in labels], color="0.55" if mean else "0.75",
                lw=2.0 if mean else 0.9, zorder=1,
                label=f"S16, $R_V$ = {rv:.1f}" + (" (mean)" if mean else ""))  # fmt: skip
    cmap = colormaps["coolwarm"]
    span = max(max(abs(v) for v in xis), 1e-9)
    for xi in xis:
        ax.plot(x, [slopes[xi][lab] for lab in labels], "o-", ms=3.5, zorder=2,
                color=cmap(0.5 + 0.5 * xi / span), lw=2.0 if xi == 0 else 1.2,
                label=f"this model, ξ = {xi:+g}")  # fmt: skip
    ax.set_xticks(x, labels)
    ax.set_xlabel("band triplet a b c (K = $K_s$, 1 = $W_1$, 2 = $W_2$)")
    ax.set_ylabel("reddening slope E(a-b) / E(b-c)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def _binned(x, y, n_bins: int = 12, min_count: int = 10):
    """(centres, (K, 3) 16/50/84% of y in quantile bins of x; NaN below ``min_count``),
    by :func:`bayesdsm.diagnostics.binned_percentiles` (the top edge nudged up so that
    the largest x falls in the last bin)."""
    from bayesdsm.diagnostics import binned_percentiles

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < min_count:
        return np.zeros(0), np.zeros((0, 3))
    edges = np.unique(np.percentile(x, np.linspace(0, 100, n_bins + 1)))
    centres = 0.5 * (edges[1:] + edges[:-1])
    edges[-1] = np.nextafter(edges[-1], np.inf)
    return centres, binned_percentiles(x, y, edges, min_count=min_count).values


def plot_xi_vs_e(e, xi, truth: Mapping | None = None):
    """ξ̂ against E (points or, above 3000 stars, a hexbin density; blue: binned median and
    16-84%); with ``truth`` (keys true_RV, E, E_source, stats), a second panel of ξ̂
    against the true R(V) for E ≥ 0.5, with the Pearson r."""
    e, xi = np.asarray(e, np.float64), np.asarray(xi, np.float64)
    two = truth is not None
    fig = new_figure(10.0 if two else 6.0, 4.0, left=0.08, right=0.97, bottom=0.13, top=0.9,
                     wspace=0.28)  # fmt: skip
    axes = np.atleast_1d(fig.subplots(1, 2 if two else 1))
    ok = np.isfinite(e) & np.isfinite(xi)
    ax = axes[0]
    if ok.sum() > 3000:
        ax.hexbin(e[ok], xi[ok], gridsize=60, bins="log", cmap="Greys", mincnt=1)
    else:
        ax.plot(e[ok], xi[ok], ".", color="0.4", ms=2, alpha=0.6)
    c, q = _binned(e, xi)
    if len(c):
        ax.fill_between(c, q[:, 0], q[:, 2], color="tab:blue", alpha=0.25, label="16-84%")
        ax.plot(c, q[:, 1], "-", color="tab:blue", lw=2, label="median")
        ax.legend(fontsize=7, loc="upper right")
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xlabel("posterior-mean $E$ (mag)")
    ax.set_ylabel(r"posterior-mean $\hat\xi$")
    ax.set_title(f"{int(ok.sum())} stars", fontsize=9)
    if two:
        ax = axes[1]
        rv, et = (np.asarray(truth[k], np.float64) for k in ("true_RV", "E"))
        big = (et >= RV.E_MIN_PEARSON) & np.isfinite(rv) & np.isfinite(xi)
        ax.plot(rv[big], xi[big], ".", color="0.3", ms=3, alpha=0.7)
        r = truth["stats"].get(f"pearson_r_E_ge_{RV.E_MIN_PEARSON:g}")
        r = "n/a" if r is None else f"{r:.3f}"
        head = f"E ≥ {RV.E_MIN_PEARSON:g} ({truth['E_source']})"
        ax.set_title(f"{head}: {int(big.sum())} stars, Pearson r = {r}", fontsize=9)
        ax.set_xlabel("true $R(V)$")
        ax.set_ylabel(r"posterior-mean $\hat\xi$")
    return fig


def figure_steps(v: dict[str, Any], skip: type[Exception]) -> list[tuple[str, Any]]:
    """(name, make) pairs of the K = 2 figures from ``v``, the dict of
    :func:`bayesdsm.report_variation.variation_context`; ``make()`` returns a Figure or
    raises ``skip(reason)`` (the report's skip exception)."""

    def r1():
        return plot_variation_r1(v["bands"], v["geo"], sigma_rv=RV.SIGMA_RV)

    def slopes():
        if not any(v["slopes"].values()):
            raise skip(
                "the model has no adjacent triplet of the S16 bands (g r i z y J H Ks W1 W2)"
            )
        return plot_slopes_across_xi(v["slopes"], v["s16"])

    def xi_e():
        p = v["post"]
        if np.isfinite(p["xi"]).sum() < 10:
            raise skip("fewer than 10 stars have a finite ξ̂")
        return plot_xi_vs_e(p["E"], p["xi"], v["truth"])

    return [("variation_R1", r1), ("fig11_slopes_across_xi", slopes), ("xi_vs_E", xi_e)]
