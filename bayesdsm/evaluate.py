"""Drivers that evaluate a model on a catalog and predict photometry from θ.

* :func:`evaluate_catalog`: per-star χ², dof, χ²/dof and residual scores (Eq. 6, 18) of
  a prepared catalog under a model, plus a summary (``bayesdsm evaluate``).
* :func:`predict_table`: B·M, R, reddened colours, validity and epistemic spread on a
  table of θ (``bayesdsm predict``).

Both work in float64 (inside a ``jax.enable_x64`` context; the global JAX configuration
is left alone), in jitted chunks of stars. Conventions of the likelihood are those of
:mod:`bayesdsm.likelihood`: the catalog's reddening prior (Ê, σ_E) enters the covariance,
J = ∂(M + Ê R)/∂θ is taken at θ̂, and dof = (modelled components) - 1, where the
components are the colours of the observed bands plus M_ref when the parallax is used.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesdsm._util import atomic_path, chunked_map
from bayesdsm.emulator import Emulator, batched, check_theta_range, predict_colours
from bayesdsm.errors import CatalogError, ConfigError
from bayesdsm.likelihood import chi2, colour_scores, dof, stardata_from_catalog
from bayesdsm.model_file import StellarModel
from bayesdsm.validity import validity_at

__all__ = [
    "FLAG_NO_COLOUR",
    "FLAG_NO_THETA",
    "FLAG_OUTSIDE_RANGE",
    "FLAG_NONFINITE",
    "Evaluation",
    "evaluate_catalog",
    "summarize",
    "predict_table",
    "read_theta_table",
    "write_table",
]

#: dof ≤ 0: no colour to test (e.g. only the reference band observed). Not in the summary.
FLAG_NO_COLOUR = 1
#: no spectroscopic θ̂: not evaluated. Not in the summary.
FLAG_NO_THETA = 2
#: θ̂ more than 4σ from the normaliser's median: evaluated (with a warning), in the summary.
FLAG_OUTSIDE_RANGE = 4
#: χ² not finite (numerical failure): not in the summary.
FLAG_NONFINITE = 8
_EXCLUDE = FLAG_NO_COLOUR | FLAG_NO_THETA | FLAG_NONFINITE


class Evaluation(NamedTuple):
    """Result of :func:`evaluate_catalog`.

    Attributes:
        columns: per-star arrays by column name (``chi2``, ``dof``, ``chi2_dof``,
            ``flag``, ``no_colour``, ``score_<band>_<ref>``, ...), all of length N.
        summary: JSON-able dict (``n_stars``, ``mean_chi2_dof_below5``,
            ``frac_chi2_dof_above5``, ...).
    """

    columns: dict[str, np.ndarray]
    summary: dict


def _emulator(model) -> Emulator:
    return model.emulator if isinstance(model, StellarModel) else model


def _match_bands(cat, bands):
    """The catalog restricted to the model's bands; missing bands become unobserved."""
    missing = [b for b in bands if b not in cat.bands]
    if len(missing) == len(bands):
        raise CatalogError(
            f"the catalog has none of the model's bands {list(bands)} (it has {list(cat.bands)})",
            rule="bands",
        )
    if not missing:
        return cat.select_bands(bands)
    n = len(cat)
    nan = np.full((n, 1), np.nan)
    mag = np.concatenate([cat.mag, np.repeat(nan, len(missing), 1)], 1)
    err = np.concatenate([cat.mag_err, np.repeat(nan, len(missing), 1)], 1)
    obs = np.concatenate([cat.observed, np.zeros((n, len(missing)), bool)], 1)
    full = cat.replace(bands=(*cat.bands, *missing), mag=mag, mag_err=err, observed=obs)
    return full.select_bands(bands)


def summarize(chi2_dof, flag, scores=None) -> dict:
    """Summary statistics of an evaluation (the one-line JSON of ``bayesdsm evaluate``).

    Stars with flags in ``FLAG_NO_COLOUR | FLAG_NO_THETA | FLAG_NONFINITE`` are left out.
    ``mean_chi2_dof_below5`` is ⟨χ²/dof⟩ over χ²/dof ≤ 5; ``frac_chi2_dof_above5`` the
    fraction above 5 (the paper's test-set figures, §4: 0.87 and 2.7%).
    """
    flag = np.asarray(flag)
    ok = (flag & _EXCLUDE) == 0
    x = np.asarray(chi2_dof)[ok]
    below = x <= 5.0
    out = {
        "n_input": int(len(flag)),
        "n_stars": int(ok.sum()),
        "mean_chi2_dof_below5": float(x[below].mean()) if below.any() else None,
        "frac_chi2_dof_above5": float(np.mean(~below)) if len(x) else None,
        "median_chi2_dof": float(np.median(x)) if len(x) else None,
        "n_no_colour": int(np.sum((flag & FLAG_NO_COLOUR) > 0)),
        "n_no_theta": int(np.sum((flag & FLAG_NO_THETA) > 0)),
        "n_nonfinite": int(np.sum((flag & FLAG_NONFINITE) > 0)),
        "n_outside_range": int(np.sum((flag & FLAG_OUTSIDE_RANGE) > 0)),
    }
    if scores is not None:
        s = np.asarray(scores)[ok]
        s = s[np.isfinite(s)]
        if s.size:
            out["score_p16_p50_p84"] = [float(v) for v in np.percentile(s, [16, 50, 84])]
    return out


def evaluate_catalog(model, cat, *, chunk: int = 4096) -> Evaluation:
    """χ², dof, χ²/dof and residual scores of every star of a prepared catalog.

    χ² is Eq. 6 at the catalogue's reddening prior (the paper's test-set figure); the
    scores are Eq. 18 at the best-fit reddening of Eq. 8-9, with the residual covariance
    after that fit (:func:`bayesdsm.likelihood.colour_scores`, ``fit_reddening=True``).

    Args:
        model: a :class:`~bayesdsm.model_file.StellarModel` or an
            :class:`~bayesdsm.emulator.Emulator`.
        cat: a :class:`~bayesdsm.catalog.Catalog` after :func:`bayesdsm.cuts.prepare`
            (floors applied, ``parallax_ok`` set). Bands the catalog lacks are unobserved.
        chunk: stars per jitted call.

    Returns:
        An :class:`Evaluation`. A star with no observed colour (dof ≤ 0) or no θ̂ gets a
        flag and NaN χ²/dof and scores; it never affects other stars or the summary.
        θ̂ outside the normaliser's range is evaluated with a
        :class:`~bayesdsm.errors.ValidityWarning` and flagged ``FLAG_OUTSIDE_RANGE``.
    """
    emu0 = _emulator(model)
    bands = emu0.bands
    cat = _match_bands(cat, bands)
    n = len(cat)
    if n == 0:
        raise CatalogError("the catalog has no stars to evaluate", rule="empty")
    has_theta = cat.has_theta & np.all(np.isfinite(cat.theta_cov), axis=(1, 2))
    flag = np.where(has_theta, 0, FLAG_NO_THETA)
    outside = np.zeros(n, bool)
    if has_theta.any():
        outside[has_theta] = check_theta_range(emu0, cat.theta[has_theta])
    flag = flag | np.where(outside, FLAG_OUTSIDE_RANGE, 0)
    with jax.enable_x64(True):
        emu = emu0.astype(jnp.float64)
        stars = stardata_from_catalog(cat, np.float64)
        # stars without θ̂ are evaluated at a harmless θ and masked afterwards
        med = np.asarray(emu.normalizer.median)
        stars = stars._replace(
            theta=np.where(has_theta[:, None], stars.theta, med),
            theta_chol=np.where(has_theta[:, None, None], stars.theta_chol, np.eye(3)),
        )

        def per_star(e, s):
            return chi2(e, s), dof(s), colour_scores(e, s, fit_reddening=True)

        fn = jax.jit(lambda s: batched(per_star)(emu, s))
        c2, d, sc = chunked_map(fn, n, chunk, stars)
    no_colour = d <= 0
    flag = flag | np.where(no_colour, FLAG_NO_COLOUR, 0)
    flag = flag | np.where(np.isfinite(c2) | ~has_theta, 0, FLAG_NONFINITE)
    bad = (flag & _EXCLUDE) > 0
    c2 = np.where(has_theta, c2, np.nan)
    chi2_dof = np.where(bad, np.nan, c2 / np.where(d > 0, d, 1.0))
    sc = np.where(bad[:, None], np.nan, sc)
    cols = {
        "source_id": np.asarray(cat.source_id),
        "chi2": c2,
        "dof": d.astype(np.int64),
        "chi2_dof": chi2_dof,
        "flag": flag.astype(np.int64),
        "no_colour": no_colour,
        "n_observed": np.asarray(cat.observed, bool).sum(1).astype(np.int64),
        "has_parallax": np.asarray(stars.has_parallax) > 0,
    }
    ref = bands[0]
    for j, b in enumerate(bands[1:]):
        cols[f"score_{b}_{ref}"] = sc[:, j]
    if isinstance(model, StellarModel) and model.validity_grid is not None:
        theta = np.where(has_theta[:, None], cat.theta, np.nan)
        with jax.enable_x64(True):
            cols[f"validity_{ref}"] = np.asarray(validity_at(model.validity_grid, theta, ref))
    return Evaluation(cols, summarize(chi2_dof, flag, sc))


def predict_table(model, theta, ebv=None, *, chunk: int = 8192) -> dict[str, np.ndarray]:
    """Predicted photometry on a table of θ (``bayesdsm predict``).

    Args:
        model: a :class:`~bayesdsm.model_file.StellarModel` or an Emulator.
        theta: (N, 3) θ = (Teff [K], log g [dex], [Fe/H] [dex]).
        ebv: optional reddening E (scalar or (N,)) for the apparent-frame colours.

    Returns:
        Columns ``M_<ref>``, ``<band>_<ref>`` (B·M), ``R_<band>``; with ``ebv``:
        ``ebv`` and ``<component>_red`` = B(M + E R); with a validity grid
        ``validity_<band>`` and ``validity_parallax``; with epistemic samples
        ``spread_<column>`` (sample standard deviation over weight draws) for each
        of the above model columns.
    """
    emu0 = _emulator(model)
    theta = np.atleast_2d(np.asarray(theta, np.float64))
    if theta.ndim != 2 or theta.shape[1] != 3:
        raise ConfigError(f"theta must have shape (N, 3), got {theta.shape}")
    n = len(theta)
    finite = np.all(np.isfinite(theta), axis=1)
    if finite.any():
        check_theta_range(emu0, theta[finite])
    e = None if ebv is None else np.broadcast_to(np.asarray(ebv, np.float64), (n,)).copy()
    comps = emu0.component_names
    bands = emu0.bands

    def columns_of(emu_f64):
        def one(em, t, ee):
            bm, r = em(t)
            red = predict_colours(em, t, ee) if e is not None else bm
            return bm, r, red

        fn = jax.jit(lambda a: batched(one)(emu_f64, a[0], a[1]))
        ee = np.zeros(n) if e is None else e
        bm, r, red = chunked_map(fn, n, chunk, (theta, ee))
        out = {c: bm[:, i] for i, c in enumerate(comps)}
        out.update({f"R_{b}": r[:, i] for i, b in enumerate(bands)})
        if e is not None:
            out.update({f"{c}_red": red[:, i] for i, c in enumerate(comps)})
        return out

    with jax.enable_x64(True):
        cols = {"teff": theta[:, 0], "logg": theta[:, 1], "feh": theta[:, 2]}
        if e is not None:
            cols["ebv"] = e
        pred = columns_of(emu0.astype(jnp.float64))
        cols.update(pred)
        if isinstance(model, StellarModel):
            if model.validity_grid is not None:
                for name in model.validity_grid.names:
                    cols[f"validity_{name}"] = np.asarray(
                        validity_at(model.validity_grid, theta, name)
                    )
            if model.epistemic:
                from bayesdsm.epistemic import predictive_spread

                sp = predictive_spread(model, theta, e, chunk=chunk)
                for i, c in enumerate(comps):
                    cols[f"spread_{c}"] = sp["BM_std"][:, i]
                for i, b in enumerate(bands):
                    cols[f"spread_R_{b}"] = sp["R_std"][:, i]
                if e is not None:
                    for i, c in enumerate(comps):
                        cols[f"spread_{c}_red"] = sp["red_std"][:, i]
    return cols


_TABLE_FORMATS = {
    ".csv": "ascii.csv",
    ".ecsv": "ascii.ecsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".fits": "fits",
    ".fit": "fits",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
}


def _table_format(path: Path) -> str:
    fmt = _TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot tell the table format of {path.name!r}; use one of "
            + ", ".join(sorted(_TABLE_FORMATS))
        )
    return fmt


def read_theta_table(path) -> np.ndarray:
    """θ (N, 3) from a CSV/ECSV/Parquet/FITS/HDF5 table with columns teff, logg, feh."""
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    fmt = _table_format(path)
    t = Table.read(path, format=fmt, **({"path": "data"} if fmt == "hdf5" else {}))
    missing = [c for c in ("teff", "logg", "feh") if c not in t.colnames]
    if missing:
        raise CatalogError(
            f"{path.name} lacks the column(s) {missing}; it needs teff (K), logg (dex) and "
            f"feh (dex); it has {t.colnames}",
            column=missing[0],
            rule="missing_column",
        )
    cols = []
    for c in ("teff", "logg", "feh"):
        col = t[c]
        a = np.array(col, np.float64)
        mask = getattr(col, "mask", None)
        if mask is not None:
            a[np.asarray(mask, bool)] = np.nan
        cols.append(a)
    return np.stack(cols, axis=1)


def write_table(columns: dict[str, np.ndarray], path) -> Path:
    """Write columns to a table file (format from the extension), atomically."""
    from astropy.table import Table

    path = Path(path)
    fmt = _table_format(path)
    table = Table({k: np.asarray(v) for k, v in columns.items()})
    kw = {"path": "data", "serialize_meta": False} if fmt == "hdf5" else {}
    with atomic_path(path) as tmp:
        table.write(tmp, format=fmt, overwrite=True, **kw)
    return path
