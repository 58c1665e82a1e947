"""Validation diagnostics of §5-6 (Figs. 6-13) as arrays and tables: no plotting here.

The per-star work (best-fit reddening, residual scores, R(θ̂), zero-extinction
predictions) is one jitted one-star function, vmapped once in :func:`star_diagnostics`
and run in fixed-size chunks, so a 100k-star catalog costs one compilation. Everything
after that (binned percentiles, ΔR/R, reddening slopes, trends) is NumPy on those arrays.

Conventions (Green et al. 2021, §6):

* **Score** of a colour X - Y (Eq. 18): [(X - Y)_obs - (X - Y)_pred] / σ(X - Y), with the
  prediction M(θ̂) + Ê R(θ̂) and σ² from C_m of Eq. 4 (photometric + J C_θ Jᵀ + σ_E² R Rᵀ).
  By default Ê is the *best-fit* reddening of Eq. 8-9 (``reddening="fit"``, as the paper
  does): the catalog's prior updated with the photometry, clipped to [0, 10] and with
  σ²_E floored at 0.02² + (0.1 E)², exactly as between training iterations.
  ``reddening="prior"`` uses the catalog's (Ê, σ_E) as given.
* **Absolute-magnitude score** ΔM_ref/σ: [m_ref - μ̂ - (M_ref + Ê R_ref)] / σ, σ² adding
  σ_μ², for stars with a usable parallax (NaN otherwise). It is Fig. 13's left panel.
* **Zero-extinction predictions** (Figs. 6-9) are M(θ̂) at E = 0. The *observed* diagrams
  are left as observed (reddened, noisy), as in the paper; the mean reddening vector
  R(⟨θ⟩) is drawn beside them so the reader can see the direction dust moves a star.
* **ΔR/R** (Eq. 17) = R(θ̂)/R₀ - 1 with R₀ = R at the catalogue-mean θ̂.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm._util import chunked_map
from bayesdsm.catalog import Catalog
from bayesdsm.covariance import quadform
from bayesdsm.emulator import Emulator
from bayesdsm.likelihood import (
    StarData,
    colour_scores,
    dof,
    model_magnitudes,
    reddening_posterior,
    residual,
    star_covariance,
    stardata_from_catalog,
)

__all__ = [
    "StarDiagnostics",
    "BinnedPercentiles",
    "finite_percentiles",
    "summary_number",
    "default_colour_pairs",
    "colour_label",
    "align_catalog",
    "star_scores",
    "star_diagnostics",
    "binned_percentiles",
    "residual_trends",
    "trend_slope",
    "density_at",
    "validity_trends",
    "mean_theta",
    "delta_r_over_r",
    "binned_mean_image",
    "theory_delta_r",
    "learned_reddening_slopes",
    "zero_extinction_magnitudes",
    "observed_absolute_magnitudes",
    "history_arrays",
]

#: Floor of the re-estimated reddening variance (§4): σ²_E ≥ 0.02² + (0.1 E)².
E_VAR_FLOOR = (0.02, 0.1)
#: Clip of the re-estimated reddening (released: [0, 10]).
E_CLIP = (0.0, 10.0)


class StarDiagnostics(NamedTuple):
    """Per-star diagnostics of N stars (rows follow the stars that have θ̂).

    Attributes:
        bands: the emulator's bands (first = reference).
        pairs: (P, 2) int band indices (X, Y) of the scored colours X - Y.
        pair_names: P labels such as ``"r-G"``.
        theta: (N, 3) θ̂.
        ebv, ebv_err: (N,) the reddening and its σ used in the scores (mag).
        scores: (N, P) Eq. 18 scores; NaN where X or Y is unobserved.
        mag_score: (N,) ΔM_ref/σ; NaN without a usable parallax or reference band.
        chi2, dof: (N,) χ² (Eq. 6) at the same reddening, and its degrees of freedom.
        R: (N, B) R(θ̂).
        M0: (N, B) zero-extinction absolute magnitudes M(θ̂).
        index: (N,) row of each star in the input catalog.
    """

    bands: tuple[str, ...]
    pairs: np.ndarray
    pair_names: list[str]
    theta: np.ndarray
    ebv: np.ndarray
    ebv_err: np.ndarray
    scores: np.ndarray
    mag_score: np.ndarray
    chi2: np.ndarray
    dof: np.ndarray
    R: np.ndarray
    M0: np.ndarray
    index: np.ndarray


class BinnedPercentiles(NamedTuple):
    """Percentiles of y in bins of x.

    Attributes:
        edges: (K+1,) bin edges; centres: (K,) bin centres.
        count: (K,) finite y per bin.
        q: the percentiles, e.g. (16, 50, 84).
        values: (K, len(q)); NaN in bins with fewer than ``min_count`` stars.
    """

    edges: np.ndarray
    centres: np.ndarray
    count: np.ndarray
    q: tuple[float, ...]
    values: np.ndarray


def colour_label(bands: Sequence[str], pair) -> str:
    """``"r-G"`` for the pair of indices (i, j) into ``bands``."""
    return f"{bands[int(pair[0])]}-{bands[int(pair[1])]}"


def default_colour_pairs(bands: Sequence[str]) -> np.ndarray:
    """The 12 colours X - ref (Eq. 5), then adjacent colours not involving the reference.

    With the paper's bands: BP-G ... W2-G, then BP-RP, g-r, r-i, ..., W1-W2 (the latter
    are the colours *not* involving the wide G band of §6's comparison).
    """
    n = len(bands)
    pairs = [(i, 0) for i in range(1, n)]
    pairs += [(i, i + 1) for i in range(1, n - 1)]
    return np.asarray(pairs, dtype=np.int32).reshape(-1, 2)


def align_catalog(cat: Catalog, bands: Sequence[str]) -> tuple[Catalog, list[str], list[str]]:
    """Re-order a catalog to the model's bands; bands it lacks become unobserved.

    Returns:
        (aligned catalog, model bands missing from the catalog, catalog bands the model
        does not have, which are ignored).
    """
    bands = tuple(bands)
    missing = [b for b in bands if b not in cat.bands]
    extra = [b for b in cat.bands if b not in bands]
    if not missing and tuple(cat.bands) == bands:
        return cat, missing, extra
    n = len(cat)
    mag = np.full((n, len(bands)), np.nan)
    err = np.full((n, len(bands)), np.nan)
    obs = np.zeros((n, len(bands)), bool)
    for j, b in enumerate(bands):
        if b in cat.bands:
            k = cat.bands.index(b)
            mag[:, j], err[:, j], obs[:, j] = cat.mag[:, k], cat.mag_err[:, k], cat.observed[:, k]
    return cat.replace(bands=bands, mag=mag, mag_err=err, observed=obs), missing, extra


# ----------------------------------------------------------------------------------------
# per-star (one star; vmapped once below)


def _finite_factor(emu: Emulator, star: StarData):
    """U_f (B, 4) with the finite part of C_m = diag(σ²) + U_f U_fᵀ (+ σ_μ² 𝟙𝟙ᵀ)."""
    cov = star_covariance(emu, star)
    return cov.U[:, :4] / jnp.sqrt(cov.sinv[:4])[None, :], cov


def star_scores(emu: Emulator, star: StarData, pairs, *, fit_reddening: bool = True):
    """Scores and the rest of :class:`StarDiagnostics` for ONE star.

    Args:
        pairs: (P, 2) int band indices of the colours X - Y to score.
        fit_reddening: use the best-fit reddening of Eq. 8-9 (else the star's prior).

    Returns:
        dict of ebv, ebv_err, scores (P,), mag_score, chi2, dof, R (B,), M0 (B,).
    """
    # Eq. 18: with the reddening fitted to this photometry the scores use the residual
    # covariance after the fit (see likelihood.colour_scores)
    scores = colour_scores(emu, star, pairs=pairs, fit_reddening=fit_reddening)
    if fit_reddening:
        mean, var = reddening_posterior(emu, star, star.ebv, star.ebv_err)
        e = jnp.clip(mean, *E_CLIP)
        var = jnp.maximum(var, E_VAR_FLOOR[0] ** 2 + (E_VAR_FLOOR[1] * e) ** 2)
        star = star._replace(ebv=e, ebv_err=jnp.sqrt(var))
    m, R = model_magnitudes(emu, star.theta, star.ebv)
    Uf, cov = _finite_factor(emu, star)
    var_m = jnp.where(star.mask > 0, star.mag_err**2, 0.0)
    d = (star.mag - m) * star.mask
    var0 = var_m[0] + star.sigma_mu**2 + jnp.sum(Uf[0] ** 2)
    ok0 = (star.has_parallax > 0) & (star.mask[0] > 0)
    mag_score = jnp.where(ok0, (d[0] - star.mu) / jnp.sqrt(jnp.where(ok0, var0, 1.0)), jnp.nan)
    r = residual(m, star)
    chi2 = quadform(cov, r[:, None])[0, 0]
    bm, _ = emu(star.theta)
    M0 = bm + bm[0] * (jnp.arange(bm.shape[0]) > 0)
    return dict(
        ebv=star.ebv,
        ebv_err=star.ebv_err,
        scores=scores,
        mag_score=mag_score,
        chi2=chi2,
        dof=dof(star),
        R=R,
        M0=M0,
    )


@eqx.filter_jit
def _chunk(emu, stars, pairs, fit_reddening):
    return jax.vmap(lambda s: star_scores(emu, s, pairs, fit_reddening=fit_reddening))(stars)


def star_diagnostics(
    emu: Emulator,
    cat: Catalog,
    *,
    pairs=None,
    reddening: str = "fit",
    chunk_size: int = 8192,
    dtype=np.float32,
    progress: bool = False,
) -> StarDiagnostics:
    """Per-star diagnostics of every star of ``cat`` that has θ̂.

    Args:
        emu: the emulator.
        cat: the catalog; its bands are aligned to ``emu.bands`` (missing = unobserved).
        pairs: (P, 2) band indices of the colours to score (default
            :func:`default_colour_pairs`).
        reddening: ``"fit"`` (Eq. 8-9, the paper's choice) or ``"prior"``.
        chunk_size: stars per jitted call; the last chunk is padded (one compilation).
        dtype: float type of the computation (float32 is plenty for diagnostics).
        progress: show a tqdm bar over chunks.
    """
    if reddening not in ("fit", "prior"):
        raise ValueError(f"reddening must be 'fit' or 'prior', got {reddening!r}")
    cat, _, _ = align_catalog(cat, emu.bands)
    index = np.flatnonzero(cat.has_theta)
    sub = cat.subset(index)
    pairs = default_colour_pairs(emu.bands) if pairs is None else np.asarray(pairs, np.int32)
    stars = stardata_from_catalog(sub, dtype=dtype)
    emu_d = emu.astype(dtype)
    n = len(index)
    keys = ("ebv", "ebv_err", "scores", "mag_score", "chi2", "dof", "R", "M0")
    if n:
        pairs_j, fit = jnp.asarray(pairs), reddening == "fit"
        out = chunked_map(lambda c: _chunk(emu_d, c, pairs_j, fit), n, chunk_size, stars,
                          progress="diagnostics" if progress else None)  # fmt: skip
        cat_ = {k: out[k] for k in keys}
    else:
        cat_ = dict.fromkeys(keys, np.zeros(0))
    nb, npair = len(emu.bands), len(pairs)
    if n == 0:
        cat_.update(scores=np.zeros((0, npair)), R=np.zeros((0, nb)), M0=np.zeros((0, nb)))
    return StarDiagnostics(
        bands=tuple(emu.bands),
        pairs=pairs,
        pair_names=[colour_label(emu.bands, p) for p in pairs],
        theta=np.asarray(sub.theta, np.float64),
        index=index,
        **{k: np.asarray(v, np.float64) for k, v in cat_.items()},
    )


# ----------------------------------------------------------------------------------------
# binned statistics (Figs. 12-13)


def binned_percentiles(
    x, y, edges, q: Sequence[float] = (16.0, 50.0, 84.0), *, min_count: int = 20
) -> BinnedPercentiles:
    """Percentiles ``q`` of y in bins of x (NaNs in x or y ignored)."""
    return _Binner(x, edges)(y, q, min_count=min_count)


class _Binner:
    """Sorts x into bins once; then percentiles of any y in those bins are cheap."""

    def __init__(self, x, edges):
        x = np.asarray(x, np.float64)
        self.edges = np.asarray(edges, np.float64)
        finite = np.isfinite(x)
        self.order = np.flatnonzero(finite)[np.argsort(x[finite], kind="stable")]
        xs = x[self.order]
        # [lo, hi) bins as np.digitize; the last edge is exclusive too
        self.bounds = np.searchsorted(xs, self.edges, side="left")

    def __call__(self, y, q=(16.0, 50.0, 84.0), *, min_count: int = 20) -> BinnedPercentiles:
        ys = np.asarray(y, np.float64)[self.order]
        nbin = len(self.edges) - 1
        count = np.zeros(nbin, np.int64)
        values = np.full((nbin, len(q)), np.nan)
        for j in range(nbin):
            v = ys[self.bounds[j] : self.bounds[j + 1]]
            v = v[np.isfinite(v)]
            count[j] = v.size
            if v.size >= max(min_count, 1):
                values[j] = np.percentile(v, q)
        centres = 0.5 * (self.edges[1:] + self.edges[:-1])
        return BinnedPercentiles(self.edges, centres, count, tuple(q), values)


def _edges(x, n_bins: int, lo_q: float = 0.5, hi_q: float = 99.5):
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.linspace(0.0, 1.0, n_bins + 1)
    lo, hi = np.percentile(x, [lo_q, hi_q])
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n_bins + 1)


TREND_VARIABLES = ("teff", "logg", "feh", "E")


def residual_trends(
    diag: StarDiagnostics, *, n_bins: int = 20, min_count: int = 20, edges=None
) -> dict[str, dict[str, BinnedPercentiles]]:
    """Fig. 12: 16/50/84 percentiles of every colour's score binned in Teff, log g,
    [Fe/H] and E. Returns ``{colour: {variable: BinnedPercentiles}}``.

    ``edges`` may give ``{variable: edges}``; the default spans the 0.5-99.5 percentiles.
    """
    xs = dict(zip(TREND_VARIABLES, (*diag.theta.T, diag.ebv)))
    edges = dict(edges or {})
    for v in TREND_VARIABLES:
        edges.setdefault(v, _edges(xs[v], n_bins))
    binners = {v: _Binner(xs[v], edges[v]) for v in TREND_VARIABLES}
    return {
        name: {v: binners[v](diag.scores[:, p], min_count=min_count) for v in TREND_VARIABLES}
        for p, name in enumerate(diag.pair_names)
    }


def trend_slope(b: BinnedPercentiles, *, column: int = 1) -> tuple[float, float]:
    """Least-squares slope (and its standard error) of a binned percentile against the
    bin centres, each bin weighted by its count. NaN when fewer than 3 bins are filled."""
    y = b.values[:, column]
    ok = np.isfinite(y)
    if ok.sum() < 3:
        return float("nan"), float("nan")
    x, y, w = b.centres[ok], y[ok], b.count[ok].astype(np.float64)
    xm = np.average(x, weights=w)
    ym = np.average(y, weights=w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = np.sum(w * (x - xm) * (y - ym)) / sxx
    resid = y - ym - slope * (x - xm)
    dof_ = max(ok.sum() - 2, 1)
    err = np.sqrt(np.sum(w * resid**2) / dof_ / sxx)
    return float(slope), float(err)


def density_at(validity, theta, name: str) -> np.ndarray:
    """Training density of band ``name`` (or ``"parallax"``) at θ (N, 3), (N,).

    ``validity`` is a :class:`bayesdsm.validity.ValidityGrid` or a mapping/object with
    ``axes``/``grid``, ``density`` (K, ...) and ``names``/``bands``. Trilinear
    interpolation on the grid, 0 outside it: the same as
    :func:`bayesdsm.validity.validity_at`, but with SciPy on NumPy arrays, which is ~100×
    faster than that JAX-traceable version outside ``jit`` for 10⁵ stars.
    """

    def get(*keys):
        for k in keys:
            if isinstance(validity, dict) and k in validity:
                return validity[k]
            if hasattr(validity, k):
                return getattr(validity, k)
        raise TypeError(f"validity object has none of {keys}")

    from scipy.interpolate import RegularGridInterpolator

    axes = tuple(np.asarray(a, np.float64) for a in get("axes", "grid"))
    names = list(get("names", "bands"))
    dens = np.asarray(get("density"), np.float64)
    if name not in names:
        raise KeyError(f"the validity grid has no density for {name!r}; it has {names}")
    interp = RegularGridInterpolator(
        axes, dens[names.index(name)], bounds_error=False, fill_value=0.0
    )
    return interp(np.asarray(theta, np.float64))


def validity_trends(
    diag: StarDiagnostics,
    validity,
    *,
    components: Sequence[str] | None = None,
    edges=None,
    min_count: int = 20,
) -> dict[str, tuple[np.ndarray, np.ndarray, BinnedPercentiles]]:
    """Fig. 13: scores against the log10 training density, per component.

    ``M_<ref>`` uses the parallax density; a colour ``X-<ref>`` the density of band X.
    Returns ``{component: (log10 density (N,), score (N,), BinnedPercentiles)}``.
    """
    ref = diag.bands[0]
    if components is None:
        components = [f"M_{ref}"] + [n for n in diag.pair_names if n.endswith(f"-{ref}")]
    edges = np.linspace(-5.0, 0.0, 21) if edges is None else np.asarray(edges)
    out = {}
    for comp in components:
        if comp == f"M_{ref}":
            dens, y = density_at(validity, diag.theta, "parallax"), diag.mag_score
        else:
            band = comp.split("-")[0]
            dens = density_at(validity, diag.theta, band)
            y = diag.scores[:, diag.pair_names.index(comp)]
        logd = np.log10(np.maximum(dens, 1e-12))
        out[comp] = (logd, y, binned_percentiles(logd, y, edges, min_count=min_count))
    return out


# ----------------------------------------------------------------------------------------
# R(θ) (Figs. 10-11)


def finite_percentiles(x, q=(16.0, 50.0, 84.0)) -> np.ndarray:
    """Percentiles of the finite values of x; NaN (without a warning) if there are none."""
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return np.percentile(x, q) if x.size else np.full(len(q), np.nan)


def summary_number(x):
    """x to 4 significant digits as a float for summary.json; None if missing or not
    finite."""
    return None if x is None or not np.isfinite(x) else float(f"{float(x):.4g}")


def mean_theta(theta) -> np.ndarray:
    """The catalogue-mean θ̂ (3,) (R₀ of Eq. 17 is R at this θ)."""
    theta = np.asarray(theta, np.float64)
    return np.mean(theta[np.all(np.isfinite(theta), axis=1)], axis=0)


def delta_r_over_r(emu: Emulator, diag: StarDiagnostics, theta0=None):
    """Eq. 17: ΔR/R = R(θ̂)/R₀ - 1, (N, B), with R₀ = R(θ₀), θ₀ the catalogue mean.

    Returns:
        (ΔR/R (N, B), R₀ (B,), θ₀ (3,)).
    """
    theta0 = mean_theta(diag.theta) if theta0 is None else np.asarray(theta0, np.float64)
    r0 = np.asarray(emu.astype(jnp.float32)(jnp.asarray(theta0, jnp.float32))[1], np.float64)
    return diag.R / r0 - 1.0, r0, theta0


def binned_mean_image(x, y, c, xedges, yedges, *, min_count: int = 10):
    """Mean of c in 2-D bins of (x, y), NaN where fewer than ``min_count`` stars (Fig. 10).

    Returns:
        (count (nx, ny), mean (nx, ny)).
    """
    x, y, c = (np.asarray(a, np.float64) for a in (x, y, c))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(c)
    n, _, _ = np.histogram2d(x[ok], y[ok], [xedges, yedges])
    s, _, _ = np.histogram2d(x[ok], y[ok], [xedges, yedges], weights=c[ok])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n >= min_count, s / np.maximum(n, 1), np.nan)
    return n, mean


def theory_delta_r(teff, bands: Sequence[str], teff_ref: float, **kwargs):
    """The blackbody × passband × F99 ΔR/R curves of Fig. 10 (:mod:`bayesdsm.passband_extinction`).

    Returns ``({band: curve}, {band: reason})``: bands whose curve cannot be computed
    (missing optional dependency, unknown passband) get a reason instead.
    """
    curves, reasons = {}, {}
    try:
        from bayesdsm import passband_extinction as theory
    except ImportError as err:  # pragma: no cover - theory ships with the package
        return {}, {b: f"bayesdsm.passband_extinction unavailable: {err}" for b in bands}
    for b in bands:
        try:
            curves[b] = np.asarray(theory.delta_R_over_R(teff, b, teff_ref=teff_ref, **kwargs))
        except Exception as err:  # noqa: BLE001 - any failure becomes a listed reason
            reasons[b] = f"{type(err).__name__}: {err}"
    return curves, reasons


def learned_reddening_slopes(
    bands: Sequence[str], R, triplets, *, q: Sequence[float] = (16.0, 50.0, 84.0)
) -> dict[str, np.ndarray]:
    """E(a-b)/E(b-c) of adjacent triplets from R (B,) or per-star R (N, B) (Fig. 11).

    For (N, B) input, returns the percentiles ``q`` over stars (the grey band of Fig. 11)
    as arrays of shape (len(q),); for (B,) input, the single slope. Triplets with a band
    the model lacks are skipped.
    """
    R = np.asarray(R, np.float64)
    out = {}
    for t in triplets:
        if not all(b in bands for b in t):
            continue
        a, b, c = (bands.index(x) for x in t)
        s = (R[..., a] - R[..., b]) / (R[..., b] - R[..., c])
        label = "".join({"Ks": "K", "W1": "1", "W2": "2"}.get(x, x) for x in t)
        out[label] = np.percentile(s, q) if s.ndim else np.asarray(s)
    return out


# ----------------------------------------------------------------------------------------
# photometry (Figs. 6-9)


def zero_extinction_magnitudes(diag: StarDiagnostics) -> np.ndarray:
    """Predicted absolute magnitudes at E = 0, M(θ̂), (N, B)."""
    return diag.M0


def observed_absolute_magnitudes(cat: Catalog, diag: StarDiagnostics) -> np.ndarray:
    """Observed m̂ - μ̂ (N, B) for stars with a usable, positive parallax, else NaN.

    Unobserved bands are NaN. Not dereddened (Fig. 6 shows the data as observed).
    """
    cat, _, _ = align_catalog(cat, diag.bands)
    sub = cat.subset(diag.index)
    plx = np.asarray(sub.parallax, np.float64)
    ok = np.asarray(sub.parallax_ok, bool) & np.isfinite(plx) & (plx > 0)
    mu = np.where(ok, 10.0 - 5.0 * np.log10(np.where(ok, plx, 1.0)), np.nan)
    mag = np.where(sub.observed, sub.mag, np.nan)
    return mag - mu[:, None]


# ----------------------------------------------------------------------------------------
# training history


def history_arrays(history) -> dict[str, np.ndarray]:
    """Stack a model's training history (a list of per-iteration dicts) into arrays.

    Every key whose values are numbers or equal-length number lists becomes an array
    (iterations first); other keys are dropped. Missing values become NaN.
    """
    if not history:
        return {}
    keys = []
    for row in history:
        for k in row:
            if k not in keys:
                keys.append(k)
    out = {}
    for k in keys:
        vals = [row.get(k) for row in history]
        try:
            arrs = [np.asarray(np.nan if v is None else v, np.float64) for v in vals]
        except (TypeError, ValueError):
            continue
        shapes = {a.shape for a in arrs}
        if len(shapes) == 1:
            out[k] = np.stack(arrs)
        elif (
            all(a.ndim == 0 for a in arrs if a.size == 1)
            and len({a.shape for a in arrs if not (a.ndim == 0 and np.isnan(a))}) == 1
        ):
            shape = next(a.shape for a in arrs if not (a.ndim == 0 and np.isnan(a)))
            out[k] = np.stack([np.full(shape, np.nan) if a.ndim == 0 else a for a in arrs])
    return out
