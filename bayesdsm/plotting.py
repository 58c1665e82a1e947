"""Matplotlib figures of §5-6 (Figs. 6-13) from the arrays of :mod:`bayesdsm.diagnostics`.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``, so
nothing global changes (no backend switch, no rcParams, no open-figure registry); save it
with ``fig.savefig(path)``. Labels follow the paper's figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "new_figure",
    "colour_of",
    "plot_cmd",
    "plot_cmd_mean_theta",
    "plot_colour_colour",
    "plot_delta_r",
    "plot_reddening_slopes",
    "plot_residual_trends",
    "plot_trend_summary",
    "plot_score_percentiles",
    "plot_validity",
    "plot_history",
]

_LABEL = {
    "teff": r"$T_{\rm eff}$ (K)",
    "logg": r"$\log g$ (dex)",
    "feh": "[Fe/H] (dex)",
    "E": r"$E$ (mag)",
}
_PCT_COLOUR = "tab:blue"
_ARROW = dict(arrowstyle="-|>", color="tab:red", lw=1.5, mutation_scale=12)


def new_figure(width: float, height: float, dpi: int = 110, **adjust):
    """A Figure with an Agg canvas attached (no pyplot state).

    Margins are fixed with ``subplots_adjust(**adjust)`` rather than a layout engine:
    constrained layout measures every tick label on each draw, which dominated the
    report's run time.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(**{"left": 0.08, "right": 0.97, "bottom": 0.12, "top": 0.92, **adjust})
    return fig


def _mag_label(band: str) -> str:
    sub = {"Ks": r"K_s", "W1": r"W_1", "W2": r"W_2"}.get(band, band)
    return sub


def _colour_label(x: str, y: str) -> str:
    return f"${_mag_label(x)} - {_mag_label(y)}$ (mag)"


def colour_of(mags, bands: Sequence[str], x: str, y: str) -> np.ndarray:
    """Colour x - y (N,) from magnitudes (N, B) in ``bands``."""
    return mags[:, bands.index(x)] - mags[:, bands.index(y)]


def _lims(*arrays, lo=0.5, hi=99.5, pad=0.05):
    v = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    v = v[np.isfinite(v)]
    if v.size == 0:
        return (0.0, 1.0)
    a, b = np.percentile(v, [lo, hi])
    d = (b - a) or 1.0
    return (a - pad * d, b + pad * d)


def _reddening_arrow(ax, dx1, dy1, ebv=0.5, corner="upper left", max_frac=0.3):
    """Draw the reddening vector (dx1, dy1) per unit E as an arrow inside the axes.

    E is lowered from ``ebv`` (0.5, 0.25, 0.1, 0.05) until the arrow spans at most
    ``max_frac`` of the axes; it starts near ``corner`` so that it stays inside.
    Call after the limits are set.
    """
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    e = ebv
    for cand in (ebv, 0.5, 0.25, 0.1, 0.05):
        e = cand
        if (
            cand <= ebv
            and abs(dx1 * cand / (x1 - x0)) <= max_frac
            and abs(dy1 * cand / (y1 - y0)) <= max_frac
        ):
            break
    fx, fy = dx1 * e / (x1 - x0), dy1 * e / (y1 - y0)  # axes fractions (handles inversion)
    left, upper = "left" in corner, "upper" in corner
    sx = 0.07 + max(-fx, 0) if left else 0.93 - max(fx, 0)
    sy = 0.93 - max(fy, 0) if upper else 0.07 + max(-fy, 0)
    xs, ys = x0 + sx * (x1 - x0), y0 + sy * (y1 - y0)
    ax.annotate("", xy=(xs + dx1 * e, ys + dy1 * e), xytext=(xs, ys), arrowprops=_ARROW, zorder=5)
    ax.annotate(
        f"E = {e:g}",
        xy=(xs, ys),
        fontsize=7,
        color="tab:red",
        zorder=5,
        xytext=(0, -10 if fy > 0 else 4),  # on the side of the tail away from the head
        textcoords="offset points",
    )


def _hist2d(ax, x, y, xlim, ylim, bins=120, cmap="Greys"):
    from matplotlib.colors import LogNorm

    ok = np.isfinite(x) & np.isfinite(y)
    h, xe, ye = np.histogram2d(x[ok], y[ok], bins=bins, range=[sorted(xlim), sorted(ylim)])
    h = np.where(h > 0, h, np.nan)
    vmax = max(np.nanmax(h), 2.0) if np.isfinite(h).any() else 2.0
    return ax.pcolormesh(xe, ye, h.T, cmap=cmap, norm=LogNorm(1, vmax), rasterized=True)


def plot_cmd(
    obs_abs, pred_abs, bands, R0, *, ebv_arrow: float = 0.5, colour=("BP", "RP"), mag: str = "G"
):
    """Fig. 6: observed vs zero-extinction predicted colour-magnitude diagram.

    Args:
        obs_abs: (N, B) observed m - μ̂ (NaN without a usable parallax), as observed.
        pred_abs: (N, B) predicted M(θ̂) at E = 0.
        R0: (B,) mean reddening vector; an arrow shows E = ``ebv_arrow`` mag of it.
    """
    x_o, y_o = colour_of(obs_abs, bands, *colour), obs_abs[:, bands.index(mag)]
    x_p, y_p = colour_of(pred_abs, bands, *colour), pred_abs[:, bands.index(mag)]
    xlim, ylim = _lims(x_o, x_p), _lims(y_o, y_p)
    fig = new_figure(8.0, 4.4, left=0.08, right=0.93, wspace=0.06)
    axes = fig.subplots(1, 2, sharex=True, sharey=True)
    titles = (
        f"observed, $m - \\hat\\mu$ ({np.isfinite(x_o * y_o).sum()} stars with ϖ/σ ≥ 5)",
        f"predicted from θ̂ at E = 0 ({np.isfinite(x_p * y_p).sum()} stars)",
    )
    for ax, x, y, t in zip(axes, (x_o, x_p), (y_o, y_p), titles):
        m = _hist2d(ax, x, y, xlim, ylim)
        ax.set_title(t, fontsize=9)
        ax.set_xlabel(_colour_label(*colour))
    axes[0].set_xlim(xlim)
    axes[0].set_ylim(ylim[::-1])
    for ax in axes:
        _reddening_arrow(
            ax,
            R0[bands.index(colour[0])] - R0[bands.index(colour[1])],
            R0[bands.index(mag)],
            ebv_arrow,
            corner="lower left",
        )
    axes[0].set_ylabel(f"$M_{{{_mag_label(mag)}}}$ (mag)")
    fig.colorbar(m, ax=axes, label="stars per pixel", shrink=0.8, fraction=0.03, pad=0.02)
    return fig


def plot_cmd_mean_theta(
    pred_abs, bands, theta, *, colour=("BP", "RP"), mag="G", bins=60, min_count=3
):
    """Fig. 7: mean Teff, log g and [Fe/H] of stars in each pixel of the predicted CMD."""
    from bayesdsm.diagnostics import binned_mean_image

    x, y = colour_of(pred_abs, bands, *colour), pred_abs[:, bands.index(mag)]
    xlim, ylim = _lims(x), _lims(y)
    xe, ye = np.linspace(*xlim, bins + 1), np.linspace(*ylim, bins + 1)
    fig = new_figure(11.0, 4.0, left=0.06, right=0.98, top=0.8, wspace=0.08)
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    for ax, k, key, cmap in zip(
        axes, range(3), ("teff", "logg", "feh"), ("RdYlBu", "viridis_r", "plasma")
    ):
        _, mean = binned_mean_image(x, y, theta[:, k], xe, ye, min_count=min_count)
        m = ax.pcolormesh(xe, ye, mean.T, cmap=cmap, rasterized=True)
        fig.colorbar(m, ax=ax, label=f"mean {_LABEL[key]}", location="top", shrink=0.9)
        ax.set_xlabel(
            f"${_mag_label(colour[0])} - {_mag_label(colour[1])}$ (mag, predicted at E = 0)"
        )
    axes[0].set_ylim(ylim[::-1])
    axes[0].set_ylabel(f"$M_{{{_mag_label(mag)}}}$ (mag, predicted)")
    return fig


def plot_colour_colour(
    obs_mag,
    pred_abs,
    bands,
    panels,
    c,
    clabel,
    R0,
    *,
    ebv_arrow: float = 0.5,
    cmap="viridis_r",
    max_points=10000,
    seed=0,
):
    """Figs. 8-9: colour-colour diagrams, observed (top) and predicted at E = 0 (bottom).

    Args:
        obs_mag: (N, B) observed magnitudes (NaN unobserved); pred_abs: (N, B) M(θ̂).
        panels: list of ((x1, x2), (y1, y2)) band pairs, e.g. (("g", "r"), ("r", "i")).
        c: (N,) colouring quantity (log g for Fig. 8, [Fe/H] for Fig. 9).
        R0: (B,) mean reddening vector; arrows show E = ``ebv_arrow``.
    """
    rng = np.random.default_rng(seed)
    n = len(c)
    sel = rng.permutation(n)[: min(n, max_points)]
    vmin, vmax = np.nanpercentile(c, [1, 99])
    fig = new_figure(
        3.0 * len(panels) + 1.0,
        6.2,
        left=0.06,
        right=0.94,
        hspace=0.35,
        wspace=0.45,
        bottom=0.09,
        top=0.95,
    )
    axes = fig.subplots(2, len(panels), squeeze=False)
    for j, (cx, cy) in enumerate(panels):
        xs = [colour_of(a[sel], bands, *cx) for a in (obs_mag, pred_abs)]
        ys = [colour_of(a[sel], bands, *cy) for a in (obs_mag, pred_abs)]
        xlim, ylim = _lims(*xs, lo=1, hi=99), _lims(*ys, lo=1, hi=99)
        for i, (x, y) in enumerate(zip(xs, ys)):
            ax = axes[i, j]
            ok = np.isfinite(x) & np.isfinite(y)
            m = ax.scatter(
                x[ok],
                y[ok],
                c=c[sel][ok],
                s=1.5,
                lw=0,
                cmap=cmap,
                vmin=vmin,
                vmax=vmax,
                rasterized=True,
            )
            ax.set_xlim(xlim)
            ax.set_ylim(ylim)
            ax.set_xlabel(_colour_label(*cx))
            ax.set_ylabel(_colour_label(*cy))
            _reddening_arrow(
                ax,
                R0[bands.index(cx[0])] - R0[bands.index(cx[1])],
                R0[bands.index(cy[0])] - R0[bands.index(cy[1])],
                ebv_arrow,
            )
            ax.set_title(
                ("observed" if i == 0 else "predicted from θ̂ at E = 0") + f", {ok.sum()} stars",
                fontsize=8,
            )
    fig.colorbar(m, ax=axes, label=clabel, shrink=0.8, fraction=0.03, pad=0.02)
    return fig


def plot_delta_r(
    teff,
    dR,
    logg,
    bands,
    *,
    show=None,
    theory=None,
    teff_grid=None,
    xedges=None,
    min_count=10,
    ylim_min=0.02,
    r0=None,
):
    """Fig. 10: ΔR/R (Eq. 17) against Teff, pixels coloured by mean log g.

    Args:
        dR: (N, B) ΔR/R; show: bands to draw (default all).
        theory: {band: curve on ``teff_grid``} (grey), e.g. from
            :func:`bayesdsm.diagnostics.theory_delta_r`.
        min_count: pixels with fewer stars stay white (the paper's 10).
        ylim_min: smallest half-range of a panel's y axis (each panel has its own).
        r0: (B,) R₀; a band whose R₀ is below 10⁻³ of the largest is marked
            "R₀ ≈ 0" (its ΔR/R is a ratio of two near-zero numbers).
    """
    from bayesdsm.diagnostics import binned_mean_image

    show = list(bands if show is None else show)
    ncol = min(5, len(show))
    nrow = int(np.ceil(len(show) / ncol))
    fig = new_figure(
        2.5 * ncol + 0.8,
        2.2 * nrow + 0.3,
        left=0.07,
        right=0.93,
        wspace=0.5,
        hspace=0.3,
        bottom=0.08,
        top=0.94,
    )
    axes = np.atleast_1d(fig.subplots(nrow, ncol, sharex=True, squeeze=False)).ravel()
    xedges = np.linspace(*_lims(teff, lo=0.5, hi=99.5, pad=0), 61) if xedges is None else xedges
    m = None
    for ax, b in zip(axes, show):
        y = dR[:, bands.index(b)]
        curves = [y] + ([theory[b]] if theory is not None and b in theory else [])
        lo, hi = _lims(*curves, lo=0.5, hi=99.5, pad=0.15)
        half = max(ylim_min, 0.5 * (hi - lo))
        mid = 0.5 * (lo + hi)
        lo, hi = min(mid - half, -0.005), max(mid + half, 0.005)
        yedges = np.linspace(lo, hi, 41)
        _, mean = binned_mean_image(teff, y, logg, xedges, yedges, min_count=min_count)
        m = ax.pcolormesh(
            xedges, yedges, mean.T, cmap="viridis_r", vmin=1.0, vmax=5.0, rasterized=True
        )
        if theory is not None and b in theory:
            ax.plot(teff_grid, theory[b], color="0.45", lw=2.0, alpha=0.8, label="blackbody × F99")
        ax.axhline(0.0, color="0.7", lw=0.6, zorder=0)
        ax.set_ylim(lo, hi)
        title = f"${_mag_label(b)}$"
        if r0 is not None and abs(r0[bands.index(b)]) < 1e-3 * np.max(np.abs(r0)):
            title += rf"  ($R_0$ = {r0[bands.index(b)]:.1g} ≈ 0)"
        ax.set_title(title, fontsize=9)
    for ax in axes[len(show) :]:
        ax.set_visible(False)
    for ax in axes[::ncol]:
        ax.set_ylabel(r"$\Delta R / R$")
    for ax in axes[max(len(show) - ncol, 0) : len(show)]:
        ax.set_xlabel(_LABEL["teff"])
        ax.tick_params(labelbottom=True)
    if m is not None:
        fig.colorbar(
            m, ax=axes.tolist(), label=r"mean $\log g$ (dex)", shrink=0.8, fraction=0.03, pad=0.02
        )
    if theory:
        axes[0].legend(fontsize=7, loc="upper left", frameon=False)
    return fig


def plot_reddening_slopes(
    learned: Mapping[str, np.ndarray],
    learned_mean: Mapping[str, float],
    s16: Mapping[float, Mapping[str, float]] | None = None,
    theory: Mapping[str, float] | None = None,
):
    """Fig. 11: reddening slopes E(a-b)/E(b-c) of adjacent triplets.

    Args:
        learned: {label: (16, 50, 84) percentiles over stars} (grey band).
        learned_mean: {label: slope at the catalogue-mean θ} (black).
        s16: {R_V: {label: slope}} Schlafly et al. (2016) curves (coloured by R_V).
        theory: {label: slope} of the blackbody × passband × F99 model (dashed).
    """
    from matplotlib import colormaps

    labels = list(learned_mean)
    x = np.arange(len(labels))
    fig = new_figure(8.2, 4.2, left=0.08, right=0.7, bottom=0.13, top=0.96)
    ax = fig.subplots()
    if s16:
        rvs = sorted(s16)
        cmap = colormaps["plasma"]
        for k, rv in enumerate(rvs):
            y = [s16[rv].get(lab, np.nan) for lab in labels]
            frac = 0.85 * k / max(len(rvs) - 1, 1)  # plasma's yellow end is hard to see
            ax.plot(
                x,
                y,
                color=cmap(frac),
                lw=2.0 if abs(rv - 3.3) < 1e-6 else 0.9,
                label=f"S16, $R_V$ = {rv:.1f}" + (" (mean)" if abs(rv - 3.3) < 1e-6 else ""),
            )
    if learned:
        q = np.array([learned.get(lab, [np.nan] * 3) for lab in labels])
        ax.fill_between(x, q[:, 0], q[:, 2], color="0.6", alpha=0.5, label="this model, 16-84%")
    if theory:
        ax.plot(
            x,
            [theory.get(lab, np.nan) for lab in labels],
            "k--",
            lw=1,
            label="blackbody × passband × F99",
        )
    ax.plot(x, [learned_mean[lab] for lab in labels], "ko-", ms=4, label="this model, mean θ")
    ax.set_xticks(x, labels)
    ax.set_xlabel("band triplet a b c (K = $K_s$, 1 = $W_1$, 2 = $W_2$)")
    ax.set_ylabel("reddening slope E(a-b) / E(b-c)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return fig


def plot_residual_trends(
    diag, trends, colours: Sequence[str], *, variables=("teff", "logg", "feh", "E"), score_lim=4.0
):
    """Fig. 12: score distributions against Teff, log g, [Fe/H] and E, with 16/50/84% lines.

    Args:
        diag: :class:`~bayesdsm.diagnostics.StarDiagnostics`.
        trends: :func:`~bayesdsm.diagnostics.residual_trends` output.
        colours: colour names to draw (rows), e.g. ``["g-r", "r-G"]``.
    """
    xs = dict(zip(("teff", "logg", "feh", "E"), (*diag.theta.T, diag.ebv)))
    fig = new_figure(
        2.6 * len(variables) + 0.4,
        1.9 * len(colours) + 0.5,
        left=0.08,
        right=0.98,
        wspace=0.08,
        hspace=0.3,
        bottom=0.6 / (1.9 * len(colours) + 0.5),
        top=1 - 0.15 / (1.9 * len(colours) + 0.5),
    )
    axes = fig.subplots(len(colours), len(variables), squeeze=False, sharey=True)
    for i, name in enumerate(colours):
        y = diag.scores[:, diag.pair_names.index(name)]
        for j, v in enumerate(variables):
            ax = axes[i, j]
            b = trends[name][v]
            _hist2d(
                ax,
                xs[v],
                np.clip(y, -score_lim, score_lim),
                (b.edges[0], b.edges[-1]),
                (-score_lim, score_lim),
                bins=(40, 40),
            )
            for k in range(b.values.shape[1]):
                ax.plot(
                    b.centres,
                    b.values[:, k],
                    color=_PCT_COLOUR,
                    lw=1.6 if k == 1 else 1.0,
                    label="16/50/84%" if (i, j, k) == (0, 0, 1) else None,
                )
            for h in (-1, 0, 1):
                ax.axhline(h, color="0.5", lw=0.5, ls=":" if h else "-")
            ax.set_xlim(b.edges[0], b.edges[-1])
            ax.set_ylim(-score_lim, score_lim)
            if i == len(colours) - 1:
                ax.set_xlabel(_LABEL[v])
        x, yb = name.split("-")
        axes[i, 0].set_ylabel(rf"$\Delta({_mag_label(x)} - {_mag_label(yb)}) / \sigma$")
    axes[0, 0].legend(fontsize=7, loc="upper right", frameon=False)
    return fig


def plot_trend_summary(slopes: Mapping[str, tuple[float, float]], ref: str = "G"):
    """Slope of the median score against E for every colour (finding (a) of §6).

    Colours involving the reference band (wide Gaia G) in orange, the others in blue.
    """
    names = list(slopes)
    s = np.array([slopes[n][0] for n in names])
    e = np.array([slopes[n][1] for n in names])
    with_ref = np.array([ref in n.split("-") for n in names])
    fig = new_figure(8.0, 3.4, left=0.1, bottom=0.2, top=0.96)
    ax = fig.subplots()
    x = np.arange(len(names))
    for mask, col, lab in (
        (with_ref, "tab:orange", f"colours with {ref}"),
        (~with_ref, "tab:blue", f"colours without {ref}"),
    ):
        ax.bar(x[mask], s[mask], yerr=e[mask], color=col, label=lab, capsize=2)
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xticks(x, names, rotation=60, fontsize=7)
    ax.set_ylabel(r"d(median score) / d$E$  (mag$^{-1}$)")
    ax.set_xlabel("colour X - Y (score of Eq. 18)")
    ax.legend(fontsize=8)
    return fig


def plot_score_percentiles(names: Sequence[str], pct):
    """16/50/84th percentiles of each colour's score over all stars, against ±1."""
    pct = np.asarray(pct)
    fig = new_figure(8.0, 3.2, left=0.1, bottom=0.22, top=0.96)
    ax = fig.subplots()
    x = np.arange(len(names))
    ax.fill_between([-0.5, len(names) - 0.5], -1, 1, color="0.9", label="expected 16-84%")
    ax.errorbar(
        x,
        pct[:, 1],
        yerr=[pct[:, 1] - pct[:, 0], pct[:, 2] - pct[:, 1]],
        fmt="o",
        color=_PCT_COLOUR,
        ms=3,
        capsize=2,
        label="16/50/84%",
    )
    ax.axhline(0.0, color="k", lw=0.6)
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_xticks(x, names, rotation=60, fontsize=7)
    ax.set_ylabel(r"score $\Delta(X - Y)/\sigma$")
    ax.set_xlabel("colour X - Y")
    ax.legend(fontsize=8)
    return fig


def plot_validity(vt, *, score_lim=4.0, thresholds=(1e-3, 1e-2)):
    """Fig. 13: scores against the log10 training density of each component.

    Args:
        vt: :func:`~bayesdsm.diagnostics.validity_trends` output,
            {component: (log10 density, score, BinnedPercentiles)}.
    """
    names = list(vt)
    fig = new_figure(
        2.7 * len(names) + 0.3, 2.8, left=0.07, right=0.98, wspace=0.14, bottom=0.17, top=0.9
    )
    axes = np.atleast_1d(fig.subplots(1, len(names), sharey=True, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        logd, score, b = vt[name]
        y = b.values
        _hist2d(
            ax,
            logd,
            np.clip(score, -score_lim, score_lim),
            (b.edges[0], b.edges[-1]),
            (-score_lim, score_lim),
            bins=(40, 40),
        )
        filled = np.flatnonzero(b.count > 0)
        lo = b.edges[filled[0]] if filled.size else b.edges[0]
        ax.set_xlim(min(lo, np.log10(min(thresholds))) - 0.25, b.edges[-1])
        ax.set_ylim(-score_lim, score_lim)
        ax.axhline(0, color="0.5", lw=0.5)
        for h in (-1, 1):
            ax.axhline(h, color="0.5", lw=0.5, ls=":")
        for t in thresholds:
            ax.axvline(np.log10(t), color="tab:red", lw=0.6, ls="--")
        for k in range(y.shape[1]):
            ax.plot(b.centres, y[:, k], color=_PCT_COLOUR, lw=1.6 if k == 1 else 1.0)
        if name.startswith("M_"):
            ax.set_xlabel(r"$\log_{10}$ density (parallax)")
            ax.set_title(rf"$\Delta M_{{{_mag_label(name[2:])}}}/\sigma$", fontsize=9)
        else:
            x, yb = name.split("-")
            ax.set_xlabel(rf"$\log_{{10}}$ density (${_mag_label(x)}$)")
            ax.set_title(rf"$\Delta({_mag_label(x)} - {_mag_label(yb)})/\sigma$", fontsize=9)
    axes[0].set_ylabel("score")
    return fig


def plot_history(h: Mapping[str, np.ndarray], bands: Sequence[str] | None = None):
    """Training history: losses, exclusions, learning rate and mean R per iteration.

    ``h`` is :func:`~bayesdsm.diagnostics.history_arrays` output; panels are drawn for
    whichever of these keys exist (by substring: ``loss``, ``exclu``, ``lr``, ``R``).
    """
    keys = list(h)
    loss = [k for k in keys if "loss" in k.lower() and h[k].ndim == 1]
    excl = [k for k in keys if "exclu" in k.lower() and h[k].ndim == 1]
    lr = [k for k in keys if k.lower() in ("lr", "learning_rate") and h[k].ndim == 1]
    rk = [k for k in keys if ("mean_r" in k.lower() or k == "R") and h[k].ndim == 2]
    chi = [k for k in keys if "chi2" in k.lower() and h[k].ndim in (1, 2)]
    panels = [
        p
        for p in (
            (loss, "loss", True),
            (chi, r"$\chi^2$/dof", True),
            (excl, "stars excluded", False),
            (lr, "learning rate", True),
            (rk, "mean R", False),
        )
        if p[0]
    ]
    from matplotlib import colormaps

    wide = any(h[k].ndim == 2 for ks, _, _ in panels for k in ks)
    n = max(len(panels), 1)
    fig = new_figure(
        3.2 * n + (0.9 if wide else 0.0),
        3.0,
        wspace=0.45,
        bottom=0.15,
        right=1 - (1.0 if wide else 0.1) / (3.2 * n + (0.9 if wide else 0.0)),
    )
    axes = np.atleast_1d(fig.subplots(1, n, squeeze=False)).ravel()
    for ax, (ks, label, log) in zip(axes, panels):
        per_band = False
        for k in ks:
            v = h[k]
            it = np.arange(len(v))
            if v.ndim == 1:
                ax.plot(it, v, "o-", ms=3, label=k)
            else:
                per_band = True
                names = bands if bands is not None and len(bands) == v.shape[1] else None
                cols = colormaps["turbo"](np.linspace(0.05, 0.95, v.shape[1]))  # blue → red
                for c in range(v.shape[1]):
                    ax.plot(
                        it,
                        v[:, c],
                        lw=1,
                        color=cols[c],
                        label=(names[c] if names else f"{k}[{c}]") if v.shape[1] <= 13 else None,
                    )
        if log and all(np.nanmin(h[k]) > 0 for k in ks):
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        if per_band:
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
        else:
            ax.legend(fontsize=6)
    return fig
