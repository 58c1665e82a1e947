"""The report's K = 2 part (issue 20): the learned extinction variation R₁ against the
F99 R(V) direction, Fig. 11's slopes across ξ, and each star's ξ̂ against E (and R(V)).

With A = E (R₀(θ) + ξ R₁(θ)), ξ ~ N(0, 1), the R₁ of a model trained on dust whose
R(V) varies should point along ∂A/∂R(V) × σ(R(V)) once both are made orthogonal to R₀
(only that part changes colours; :mod:`bayesdsm.variation`). :func:`make_report`
(:mod:`bayesdsm.report`) calls :func:`variation_context`, adds the figures of
:mod:`bayesdsm.plot_variation` and writes :func:`variation_summary` as
``summary["variation"]``. Units: R₀, R₁ and the
theory direction in mag per mag of E; ξ dimensionless; E in the catalogue's units.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayesdsm.diagnostics import finite_percentiles, learned_reddening_slopes
from bayesdsm.diagnostics import summary_number as _fmt

__all__ = [
    "SIGMA_RV",
    "RV_REF",
    "XI_VALUES",
    "XI_SD_PRIOR_DOMINATED",
    "E_MIN_PEARSON",
    "E_EDGES",
    "theory_direction",
    "theory_perp_direction",
    "r1_geometry",
    "xi_posteriors",
    "xi_vs_truth",
    "variation_context",
    "variation_summary",
]

#: σ(R(V)) scaling the F99 ∂A/∂R(V) direction (the Galactic scatter of R(V)).
SIGMA_RV = 0.18
#: R(V) at which the F99 derivative is taken, and the half-step of its centred difference.
RV_REF = 3.1
#: ξ values of the slopes figure.
XI_VALUES = (-2.0, -1.0, 0.0, 1.0, 2.0)
#: A ξ posterior sd above this is prior-dominated (the prior is N(0, 1)).
XI_SD_PRIOR_DOMINATED = 0.9
#: E ≥ this for the headline Pearson r of ξ̂ with the true R(V); bin edges of E.
E_MIN_PEARSON, E_EDGES = 0.5, (0.0, 0.1, 0.25, 0.5, 1.0, np.inf)
_MIN_STARS = 10


def theory_direction(bands, teff: float, *, sigma_rv: float = SIGMA_RV) -> np.ndarray:
    """F99 ∂A/∂R(V) at R(V) = 3.1 per unit E(B-V) (B,) [mag per mag of E per unit R(V)],
    times ``sigma_rv``: passband × blackbody at ``teff`` [K]
    (:func:`bayesdsm.variation.theory_variation`).

    Raises whatever :mod:`bayesdsm.passband_extinction` raises for an unknown band or a
    missing optional dependency.
    """
    from bayesdsm.variation import theory_variation

    return theory_variation(bands, teff, r_v=RV_REF)[1] * sigma_rv


def theory_perp_direction(bands, teff: float, r0, *, sigma_rv: float = SIGMA_RV) -> np.ndarray:
    """:func:`theory_direction` orthogonalised against ``r0`` (B,): the part of the R₁
    that R(V) ~ N(3.1, σ²) dust would teach which changes colours."""
    from bayesdsm.variation import orthogonal_part

    return orthogonal_part(theory_direction(bands, teff, sigma_rv=sigma_rv), r0)


def r1_geometry(emu, theta0, thetas=None) -> dict[str, Any]:
    """R₁ at ``theta0`` (3,) and (16, 50, 84)% over ``thetas`` (N, 3); its part
    orthogonal to R₀(θ₀); the F99 direction (:func:`theory_perp_direction`, at θ₀'s Teff) with
    the angle [deg] and length ratio (learned / F99) of the two orthogonal parts.

    Keys: R0, R1, R1_pct (3, B) or None, R1_perp, theory_perp or None, angle_deg,
    length_ratio, theory_reason (None if the theory was computed).
    """
    import jax
    import jax.numpy as jnp

    from bayesdsm.emulator import extinction_variation
    from bayesdsm.variation import angle_deg, orthogonal_part

    e32 = emu.astype(jnp.float32)
    th = jnp.asarray(theta0, jnp.float32)
    R = e32(th)[1]
    r0 = np.asarray(R, np.float64)
    r1 = np.asarray(extinction_variation(e32, th, R), np.float64)
    pct = None
    if thetas is not None and len(thetas):
        per = jax.jit(jax.vmap(lambda t: extinction_variation(e32, t)))
        pct = np.percentile(np.asarray(per(jnp.asarray(thetas, jnp.float32))), [16, 50, 84], 0)
    perp = orthogonal_part(r1, r0)
    out = dict(R0=r0, R1=r1, R1_pct=pct, R1_perp=perp, theory_perp=None, theory_reason=None)
    out.update(angle_deg=np.nan, length_ratio=np.nan)
    try:
        th_perp = theory_perp_direction(emu.bands, float(theta0[0]), r0)
    except Exception as err:  # noqa: BLE001 - unknown band, optional dependencies
        out["theory_reason"] = f"{type(err).__name__}: {err}"
        return out
    out.update(
        theory_perp=th_perp,
        angle_deg=angle_deg(perp, th_perp),
        length_ratio=float(np.linalg.norm(perp) / np.linalg.norm(th_perp)),
    )
    return out


def _post_chunk(emu, stars):
    import jax

    from bayesdsm.likelihood import extinction_posterior

    post = jax.vmap(extinction_posterior, (None, 0, 0, 0))
    return post(emu, stars, stars.ebv, stars.ebv_err)


def xi_posteriors(emu, cat_sub, *, chunk_size: int = 8192) -> dict[str, np.ndarray]:
    """Each star's (E, ξ) posterior (:func:`bayesdsm.likelihood.extinction_posterior`)
    from the catalogue's reddening prior at θ̂. ``cat_sub``: the catalog aligned to the
    model's bands, stars with θ̂ only. Returns E, xi, xi_sd, E_sd (N,), float64."""
    import equinox as eqx
    import jax.numpy as jnp

    from bayesdsm._util import chunked_map
    from bayesdsm.likelihood import stardata_from_catalog

    stars = stardata_from_catalog(cat_sub, dtype=np.float32)
    e32, fn = emu.astype(jnp.float32), eqx.filter_jit(_post_chunk)
    e, xi, (v11, _, v22) = chunked_map(lambda c: fn(e32, c), len(cat_sub), chunk_size, stars)
    sd = lambda v: np.sqrt(np.maximum(np.asarray(v, np.float64), 0.0))  # noqa: E731
    return dict(E=np.asarray(e, np.float64), xi=np.asarray(xi, np.float64),
                xi_sd=sd(v22), E_sd=sd(v11))  # fmt: skip


def _pearson(x, y) -> tuple[float, float, int]:
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < _MIN_STARS or np.std(x[ok]) == 0 or np.std(y[ok]) == 0:
        return np.nan, np.nan, int(ok.sum())
    from scipy.stats import pearsonr

    r, p = pearsonr(x[ok], y[ok])
    return float(r), float(p), int(ok.sum())


def xi_vs_truth(xi, true_rv, e) -> dict[str, Any]:
    """Pearson r (and its two-sided p) of ξ̂ with the true R(V) for E ≥ 0.5 and in bins
    of E (:data:`E_EDGES`; bins with ≥ 10 stars)."""
    r, p, n = _pearson(xi[e >= E_MIN_PEARSON], true_rv[e >= E_MIN_PEARSON])
    by = {}
    for lo, hi in zip(E_EDGES[:-1], E_EDGES[1:]):
        m = (e >= lo) & (e < hi)
        if m.sum() >= _MIN_STARS:
            rb, pb, nb = _pearson(xi[m], true_rv[m])
            by[f"{lo:g}-{hi:g}"] = {"r": _fmt(rb), "p": _fmt(pb), "n": nb}
    return {f"pearson_r_E_ge_{E_MIN_PEARSON:g}": _fmt(r), "p_value": _fmt(p),
            f"n_E_ge_{E_MIN_PEARSON:g}": n, "by_E": by}  # fmt: skip


def variation_context(emu, cat, diag, ctx, *, chunk_size: int = 8192) -> dict[str, Any]:
    """Everything the K = 2 figures and summary need; ``ctx`` is the report's shared
    context (``theta0``, ``cat_sub``, ``s16``; the theory reason is added to its
    ``theory_reasons`` under ``variation_R1``). ``cat`` is unused (the stars are
    ``ctx["cat_sub"]``, those of ``diag``); it keeps the report's step signature."""
    from bayesdsm.passband_extinction import S16_TRIPLETS

    geo = r1_geometry(emu, ctx["theta0"], diag.theta)
    if geo["theory_reason"] is not None:
        ctx["theory_reasons"]["variation_R1"] = geo["theory_reason"]
    post = xi_posteriors(emu, ctx["cat_sub"], chunk_size=chunk_size)
    extra = ctx["cat_sub"].extra
    truth = None
    if "true_RV" in extra:
        e_key = "true_ebv" if "true_ebv" in extra else None
        e = np.asarray(extra[e_key], np.float64) if e_key else post["E"]
        truth = dict(true_RV=np.asarray(extra["true_RV"], np.float64), E=e,
                     E_source=e_key or "posterior mean")  # fmt: skip
        truth["stats"] = xi_vs_truth(post["xi"], truth["true_RV"], e)
    triplets = [t for t in S16_TRIPLETS if all(b in emu.bands for b in t)]
    slopes = {
        x: learned_reddening_slopes(emu.bands, geo["R0"] + x * geo["R1"], triplets)
        for x in XI_VALUES
    }
    return dict(bands=tuple(emu.bands), theta0=ctx["theta0"], geo=geo, post=post,
                truth=truth, slopes=slopes, s16=ctx.get("s16", {}))  # fmt: skip


def variation_summary(v: dict[str, Any]) -> dict[str, Any]:
    """``summary["variation"]``: K, R₁ and its orthogonal part at the mean θ̂, the F99
    comparison (angle [deg], length ratio), ξ̂ percentiles, the prior-dominated fraction
    (posterior sd > 0.9) and, with a true R(V), the Pearson r's."""
    g, p, b = v["geo"], v["post"], v["bands"]
    sd = p["xi_sd"][np.isfinite(p["xi_sd"])]
    out: dict[str, Any] = {
        "K": 2,
        "R1_at_mean_theta": {k: _fmt(x) for k, x in zip(b, g["R1"])},
        "R1_perp_at_mean_theta": {k: _fmt(x) for k, x in zip(b, g["R1_perp"])},
        "theory": {
            "curve": f"F99 dA/dR(V) at R(V) = {RV_REF} per unit E x sigma(R(V)), "
            "passband x blackbody at the mean Teff, orthogonal to the learned R0",
            "sigma_RV": SIGMA_RV,
            "teff_K": _fmt(v["theta0"][0]),
            "R1_perp": None
            if g["theory_perp"] is None
            else {k: _fmt(x) for k, x in zip(b, g["theory_perp"])},
            "missing_reason": g["theory_reason"],
        },
        "angle_deg": _fmt(g["angle_deg"]),
        "length_ratio_learned_over_theory": _fmt(g["length_ratio"]),
        "n_stars": int(len(p["xi"])),
        "xi_percentiles_16_50_84": [_fmt(x) for x in finite_percentiles(p["xi"])],
        "xi_sd_median": _fmt(np.median(sd)) if sd.size else None,
        "fraction_xi_sd_above_0.9": _fmt(np.mean(sd > XI_SD_PRIOR_DOMINATED)) if sd.size else None,
        "slopes_across_xi": {
            f"{x:+g}": {k: _fmt(s) for k, s in d.items()} for x, d in v["slopes"].items()
        },
    }
    if v["truth"] is not None:
        out["xi_vs_true_RV"] = {"E_source": v["truth"]["E_source"], **v["truth"]["stats"]}
    return out
