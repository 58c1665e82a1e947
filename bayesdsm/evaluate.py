"""Drivers that evaluate a model on a catalog and predict photometry from θ.

* :func:`evaluate_catalog`: per-star χ², dof, χ²/dof and residual scores (Eq. 6, 18) of
  a prepared catalog under a model, plus a summary.
* :func:`evaluate_rows`: the same for every row of a catalog as read (``bayesdsm
  evaluate``): the §3 preparation, then one output row per input row, in input order;
  rows the preparation removed are flagged ``cut:<rule>`` with NaN results.
* :func:`predict_table`: B·M, R, reddened colours, validity and epistemic spread on a
  table of θ (``bayesdsm predict``); rows with a non-finite θ get NaN and a flag.

Every per-star output carries ``flags``: comma-separated reasons why a star was not
evaluated, or not fully (:data:`FLAG_NAMES`, ``cut:<rule>`` of
:func:`bayesdsm.cuts.prepare`, the rules of ``Catalog.flags`` such as
``mag_err_nonpositive:mag_err_BP`` or ``min_parallax_snr``); ``""`` when none.

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
from bayesdsm.catalog import add_flag, flag_counts, reading_file
from bayesdsm.cuts import CutReport, input_report
from bayesdsm.cuts import prepare as prepare_catalog
from bayesdsm.emulator import (
    Emulator,
    batched,
    check_theta_range,
    extinction_variation,
    predict_colours,
)
from bayesdsm.errors import CatalogError, ConfigError
from bayesdsm.likelihood import chi2, colour_scores, dof, stardata_from_catalog
from bayesdsm.model_file import StellarModel
from bayesdsm.validity import validity_at

__all__ = [
    "FLAG_NO_COLOUR",
    "FLAG_NO_THETA",
    "FLAG_OUTSIDE_RANGE",
    "FLAG_NONFINITE",
    "FLAG_CUT",
    "FLAG_OUTSIDE_VALIDITY",
    "FLAG_NAMES",
    "VALIDITY_MIN",
    "Evaluation",
    "ThetaTable",
    "evaluate_catalog",
    "evaluate_rows",
    "summarize",
    "predict_table",
    "read_theta_table",
    "read_theta_file",
    "write_table",
    "table_format",
]

#: dof ≤ 0: no colour to test (e.g. only the reference band observed). Not in the summary.
FLAG_NO_COLOUR = 1
#: no spectroscopic θ̂: not evaluated. Not in the summary.
FLAG_NO_THETA = 2
#: θ̂ more than 4σ from the normaliser's median: evaluated (with a warning), in the summary.
FLAG_OUTSIDE_RANGE = 4
#: χ² not finite (numerical failure): not in the summary.
FLAG_NONFINITE = 8
#: removed by the §3 preparation (:func:`bayesdsm.cuts.prepare`): not evaluated.
FLAG_CUT = 16
#: training density of the reference band at θ̂ below :data:`VALIDITY_MIN`: evaluated,
#: in the summary.
FLAG_OUTSIDE_VALIDITY = 32
_EXCLUDE = FLAG_NO_COLOUR | FLAG_NO_THETA | FLAG_NONFINITE | FLAG_CUT
#: Flag bit -> its name in the ``flags`` column (a cut row says ``cut:<rule>``).
FLAG_NAMES = {
    FLAG_NO_COLOUR: "no_colour",
    FLAG_NO_THETA: "no_theta",
    FLAG_OUTSIDE_RANGE: "outside_range",
    FLAG_NONFINITE: "chi2_nonfinite",
    FLAG_OUTSIDE_VALIDITY: "outside_validity",
}
#: Training density below which a star is flagged ``outside_validity`` (the colours' bar;
#: ``bayesdsm infer`` uses the same default, ``InferConfig.validity_min``).
VALIDITY_MIN = 1e-3


class Evaluation(NamedTuple):
    """Result of :func:`evaluate_catalog`.

    Attributes:
        columns: per-star arrays by column name (``chi2``, ``dof``, ``chi2_dof``,
            ``flag``, ``flags``, ``no_colour``, ``score_<band>_<ref>``, ...), all of
            length N.
        summary: JSON-able dict (``n_input``, ``n_evaluated``, ``n_stars``,
            ``mean_chi2_dof_below5``, ``frac_chi2_dof_above5``, ``flags``, ...).
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


def summarize(chi2_dof, flag, scores=None, flags=None) -> dict:
    """Summary statistics of an evaluation (the one-line JSON of ``bayesdsm evaluate``).

    ``n_input`` counts the rows, ``n_evaluated`` those evaluated (not cut, with θ̂),
    ``n_stars`` those in the statistics: stars with flags in ``FLAG_NO_COLOUR |
    FLAG_NO_THETA | FLAG_NONFINITE | FLAG_CUT`` are left out. ``mean_chi2_dof_below5`` is
    ⟨χ²/dof⟩ over χ²/dof ≤ 5; ``frac_chi2_dof_above5`` the fraction above 5 (the paper's
    test-set figures, §4: 0.87 and 2.7%). With ``flags`` (the comma-separated column),
    ``flags`` counts the rows carrying each reason.
    """
    flag = np.asarray(flag)
    ok = (flag & _EXCLUDE) == 0
    x = np.asarray(chi2_dof)[ok]
    below = x <= 5.0
    out = {
        "n_input": int(len(flag)),
        "n_evaluated": int(np.sum((flag & (FLAG_CUT | FLAG_NO_THETA)) == 0)),
        "n_stars": int(ok.sum()),
        "mean_chi2_dof_below5": float(x[below].mean()) if below.any() else None,
        "frac_chi2_dof_above5": float(np.mean(~below)) if len(x) else None,
        "median_chi2_dof": float(np.median(x)) if len(x) else None,
        "n_no_colour": int(np.sum((flag & FLAG_NO_COLOUR) > 0)),
        "n_no_theta": int(np.sum((flag & FLAG_NO_THETA) > 0)),
        "n_nonfinite": int(np.sum((flag & FLAG_NONFINITE) > 0)),
        "n_outside_range": int(np.sum((flag & FLAG_OUTSIDE_RANGE) > 0)),
        "n_outside_validity": int(np.sum((flag & FLAG_OUTSIDE_VALIDITY) > 0)),
        "n_cut": int(np.sum((flag & FLAG_CUT) > 0)),
    }
    if scores is not None:
        s = np.asarray(scores)[ok]
        s = s[np.isfinite(s)]
        if s.size:
            out["score_p16_p50_p84"] = [float(v) for v in np.percentile(s, [16, 50, 84])]
    if flags is not None:
        out["flags"] = flag_counts(flags)
    return out


def _flag_names(flags, flag) -> np.ndarray:
    """``flags`` with the names of the bits of ``flag`` (:data:`FLAG_NAMES`) appended."""
    for bit, name in FLAG_NAMES.items():
        flags = add_flag(flags, (flag & bit) > 0, name)
    return flags


def _usable_theta(cat) -> np.ndarray:
    """(N,) True where θ̂ and a positive-definite C_θ are present."""
    ok = cat.has_theta & np.all(np.isfinite(cat.theta_cov), axis=(1, 2))
    if ok.any():
        eig = np.linalg.eigvalsh(cat.theta_cov[ok])
        ok[ok] = eig[:, 0] > 1e-12 * np.abs(eig[:, -1])
    return ok


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
        An :class:`Evaluation`, one row per star in the catalog's order. A star with no
        observed colour (dof ≤ 0) or no usable θ̂ (or a C_θ that is not positive
        definite) gets a flag and NaN χ²/dof and scores; it never affects other stars or
        the summary. θ̂ outside the normaliser's range is evaluated with a
        :class:`~bayesdsm.errors.ValidityWarning` and flagged ``FLAG_OUTSIDE_RANGE``.
        ``flags`` holds the catalog's ``flags`` and the names of the flag bits.
    """
    emu0 = _emulator(model)
    bands = emu0.bands
    cat = _match_bands(cat, bands)
    n = len(cat)
    has_theta = _usable_theta(cat)
    cat = cat.replace(theta_cov=np.where(has_theta[:, None, None], cat.theta_cov, np.nan))
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
        if n:
            c2, d, sc = chunked_map(fn, n, chunk, stars)
        else:
            c2, d, sc = np.zeros(0), np.zeros(0, np.int64), np.zeros((0, len(bands) - 1))
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
            v = np.asarray(validity_at(model.validity_grid, theta, ref)) if n else np.zeros(0)
        v = np.where(has_theta, v, np.nan)
        cols[f"validity_{ref}"] = v
        flag = flag | np.where(v < VALIDITY_MIN, FLAG_OUTSIDE_VALIDITY, 0)
        cols["flag"] = flag.astype(np.int64)
    flags = _flag_names(cat.flags, flag)
    cols = {k: v for name, col in cols.items() for k, v in _after_flag(name, col, flags)}
    return Evaluation(cols, summarize(chi2_dof, flag, sc, flags))


def _after_flag(name, col, flags):
    """(name, col), followed by ("flags", flags) when name is "flag" (column order)."""
    return [(name, col), ("flags", flags)] if name == "flag" else [(name, col)]


def evaluate_rows(
    model, cat, config=None, *, prepare: bool = True, chunk: int = 4096
) -> tuple[Evaluation, CutReport]:
    """Evaluate every row of a catalog as read: one output row per input row.

    The §3 preparation (:func:`bayesdsm.cuts.prepare` with ``config``, a
    :class:`~bayesdsm.config.CutsConfig`; the paper's by default) runs first unless
    ``prepare`` is false; :func:`evaluate_catalog` then evaluates the stars it kept.

    Returns:
        ``(Evaluation, CutReport)``. The columns start with ``row`` (the input row) and
        ``source_id``, in input order. A row the preparation removed has ``flag``
        :data:`FLAG_CUT`, ``cut:<rule>`` in ``flags`` (after the reasons found on
        reading, e.g. ``theta_nonfinite:teff``), NaN results and ``dof`` 0. The summary
        counts input rows, evaluated rows and each flag.

    Raises:
        CatalogError: the catalog has no rows.
    """
    if len(cat) == 0:
        raise CatalogError("the catalog has no rows: nothing to evaluate", rule="empty")
    prepared, report = prepare_catalog(cat, config) if prepare else (cat, input_report(cat))
    res = evaluate_catalog(model, prepared, chunk=chunk)
    cols = report.to_input_rows(res.columns)
    cut = report.removed_by != ""
    flags = np.array(cat.flags, dtype=object)
    flags[report.kept] = cols["flags"][report.kept]
    for rule in np.unique(report.removed_by[cut]):
        flags = add_flag(flags, report.removed_by == rule, f"cut:{rule}")
    flag = np.where(cut, FLAG_CUT, cols["flag"]).astype(np.int64)
    obs = _match_bands(cat, _emulator(model).bands).observed
    cols = {
        "row": np.arange(len(cat), dtype=np.int64),
        **cols,
        "source_id": np.asarray(cat.source_id),
        "flag": flag,
        "flags": flags,
        "n_observed": np.where(cut, obs.sum(1), cols["n_observed"]).astype(np.int64),
    }
    scores = [v for k, v in cols.items() if k.startswith("score_")]
    scores = np.stack(scores, 1) if scores else None
    return Evaluation(cols, summarize(cols["chi2_dof"], flag, scores, flags)), report


_THETA_NAMES = ("teff", "logg", "feh")


def predict_table(
    model, theta, ebv=None, *, chunk: int = 8192, flags=None
) -> dict[str, np.ndarray]:
    """Predicted photometry on a table of θ (``bayesdsm predict``).

    Args:
        model: a :class:`~bayesdsm.model_file.StellarModel` or an Emulator.
        theta: (N, 3) θ = (Teff [K], log g [dex], [Fe/H] [dex]).
        ebv: optional reddening E (scalar or (N,)) for the apparent-frame colours.
        flags: optional (N,) comma-separated reasons found on reading (see
            :func:`read_theta_file`), carried into the ``flags`` column.

    Returns:
        Columns ``teff``, ``logg``, ``feh``, (``ebv``), ``flags``, ``M_<ref>``,
        ``<band>_<ref>`` (B·M), ``R_<band>``; with K = 2, ``R1_<band>`` (the second
        extinction component R₁; ``_red`` columns are at ξ = 0); with ``ebv``:
        ``<component>_red`` = B(M + E R); with a validity grid ``validity_<band>`` and
        ``validity_parallax``; with epistemic samples ``spread_<column>`` (sample standard
        deviation over weight draws) for each of the above model columns. A row whose θ (or
        E) is not finite gets NaN in every model column and ``theta_nonfinite:<column>`` (or
        ``ebv_nonfinite``) in ``flags``: a non-finite θ never yields a finite prediction.
        ``flags`` also names ``outside_range`` (θ more than 4σ from the training median,
        with a ValidityWarning) and ``outside_validity`` (training density of the reference
        band below :data:`VALIDITY_MIN`).
    """
    emu0 = _emulator(model)
    theta = np.atleast_2d(np.asarray(theta, np.float64))
    if theta.ndim != 2 or theta.shape[1] != 3:
        raise ConfigError(f"theta must have shape (N, 3), got {theta.shape}")
    n = len(theta)
    if n == 0:
        raise ConfigError("theta has no rows: nothing to predict")
    flags = np.full(n, "", object) if flags is None else np.array(flags, dtype=object)
    for k, c in enumerate(_THETA_NAMES):  # a reason found on reading is not repeated
        named = np.array([f":{c}" in str(f) for f in flags], bool)
        flags = add_flag(flags, ~np.isfinite(theta[:, k]) & ~named, f"theta_nonfinite:{c}")
    finite = np.all(np.isfinite(theta), axis=1)
    e = None if ebv is None else np.broadcast_to(np.asarray(ebv, np.float64), (n,)).copy()
    if e is not None:
        flags = add_flag(flags, ~np.isfinite(e), "ebv_nonfinite")
        finite &= np.isfinite(e)
    outside = np.zeros(n, bool)
    if finite.any():
        outside[finite] = check_theta_range(emu0, theta[finite])
    flags = add_flag(flags, outside, "outside_range")
    theta_in = theta
    theta = np.where(finite[:, None], theta, np.asarray(emu0.normalizer.median, np.float64))
    if e is not None:
        e_in, e = e, np.where(finite, e, 0.0)
    comps = emu0.component_names
    bands = emu0.bands

    def columns_of(emu_f64):
        def one(em, t, ee):
            bm, r = em(t)
            red = predict_colours(em, t, ee) if e is not None else bm
            r1 = extinction_variation(em, t, r) if em.n_components == 2 else r[:0]
            return bm, r, red, r1

        fn = jax.jit(lambda a: batched(one)(emu_f64, a[0], a[1]))
        ee = np.zeros(n) if e is None else e
        bm, r, red, r1 = chunked_map(fn, n, chunk, (theta, ee))
        out = {c: bm[:, i] for i, c in enumerate(comps)}
        out.update({f"R_{b}": r[:, i] for i, b in enumerate(bands)})
        if emu_f64.n_components == 2:
            out.update({f"R1_{b}": r1[:, i] for i, b in enumerate(bands)})
        if e is not None:
            out.update({f"{c}_red": red[:, i] for i, c in enumerate(comps)})
        return out

    with jax.enable_x64(True):
        cols = {"teff": theta_in[:, 0], "logg": theta_in[:, 1], "feh": theta_in[:, 2]}
        if e is not None:
            cols["ebv"] = e_in
        cols["flags"] = flags
        inputs = set(cols)
        cols.update(columns_of(emu0.astype(jnp.float64)))
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
    for name in set(cols) - inputs:
        cols[name] = np.where(finite, cols[name], np.nan)
    ref = f"validity_{bands[0]}"
    if ref in cols:
        cols["flags"] = add_flag(cols["flags"], cols[ref] < VALIDITY_MIN, "outside_validity")
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


def table_format(path: Path) -> str:
    """The astropy format of a per-star table file, from its extension (ConfigError if
    the extension names none)."""
    fmt = _TABLE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot tell the table format of {path.name!r}; use one of "
            + ", ".join(sorted(_TABLE_FORMATS))
        )
    return fmt


class ThetaTable(NamedTuple):
    """A table of θ read by :func:`read_theta_file`.

    Attributes:
        theta: (N, 3) θ = (Teff [K], log g [dex], [Fe/H] [dex]); NaN where a cell was
            empty or not a number.
        flags: (N,) comma-separated reasons: ``theta_missing:<column>`` (an empty or
            masked cell), ``theta_not_a_number:<column>`` (text that is not a number).
        source_id: (N,) the file's ``source_id`` column, or None.
    """

    theta: np.ndarray
    flags: np.ndarray
    source_id: np.ndarray | None


def _theta_column(t, name: str, path: Path, flags: np.ndarray):
    """Column ``name`` of table ``t`` as float64 (N,), and ``flags`` with its bad cells."""
    col = t[name]
    data = np.asarray(col)
    if data.ndim != 1:
        raise CatalogError(
            f"{path}: column {name!r} has shape {data.shape[1:]} per row; it must hold one "
            "number per row",
            column=name,
            rule="dtype",
        )
    mask = np.asarray(getattr(col, "mask", np.zeros(len(col), bool)), bool)
    if data.dtype.kind in "fiub":
        a = np.array(data, np.float64)
        bad_text = np.zeros(len(a), bool)
    elif data.dtype.kind in "SUO":
        text = [x.decode() if isinstance(x, bytes) else str(x) for x in data]
        mask |= np.array([not x.strip() for x in text], bool)
        a = np.full(len(text), np.nan)
        bad_text = np.zeros(len(text), bool)
        for i, x in enumerate(text):
            try:
                a[i] = float(x)
            except ValueError:
                bad_text[i] = not mask[i]
    else:
        raise CatalogError(
            f"{path}: column {name!r} holds {data.dtype} values; it must be numeric",
            column=name,
            rule="dtype",
        )
    a[mask | bad_text] = np.nan
    flags = add_flag(flags, mask, f"theta_missing:{name}")
    return a, add_flag(flags, bad_text, f"theta_not_a_number:{name}")


def read_theta_file(path) -> ThetaTable:
    """θ, per-row flags and ids from a CSV/ECSV/Parquet/FITS/HDF5 table (``bayesdsm
    predict``). The table needs columns teff (K), logg (dex) and feh (dex); an HDF5 file
    holds it at ``/data``. Empty cells and text that is not a number become NaN and are
    flagged; every row is kept.

    Raises:
        CatalogError: naming the file, for a missing or unreadable file, a missing
            column, a column that is not one number per row, or a table with no rows.
        ConfigError: an extension that names no table format.
    """
    from astropy.table import Table

    path = Path(path)
    fmt = table_format(path)
    with reading_file(path, fmt, "θ table"):
        t = Table.read(path, format=fmt, **({"path": "data"} if fmt == "hdf5" else {}))
    missing = [c for c in _THETA_NAMES if c not in t.colnames]
    if missing:
        raise CatalogError(
            f"{path}: missing column(s) {missing}; the θ table needs teff (K), logg (dex) "
            f"and feh (dex); it has {t.colnames[:12]}",
            column=missing[0],
            rule="missing_column",
        )
    if len(t) == 0:
        raise CatalogError(f"{path}: the θ table has no rows; nothing to predict", rule="empty")
    flags = np.full(len(t), "", object)
    cols = []
    for c in _THETA_NAMES:
        a, flags = _theta_column(t, c, path, flags)
        cols.append(a)
    sid = None
    if "source_id" in t.colnames and np.asarray(t["source_id"]).ndim == 1:
        sid = np.asarray(t["source_id"])
    return ThetaTable(np.stack(cols, axis=1), flags, sid)


def read_theta_table(path) -> np.ndarray:
    """θ (N, 3) from a CSV/ECSV/Parquet/FITS/HDF5 table with columns teff, logg, feh
    (:func:`read_theta_file` without the flags: bad cells are NaN)."""
    return read_theta_file(path).theta


def _plain(v) -> np.ndarray:
    """A column astropy can write: object arrays of text become str arrays."""
    v = np.asarray(v)
    return v.astype(str) if v.dtype.kind == "O" else v


def write_table(columns: dict[str, np.ndarray], path) -> Path:
    """Write columns to a table file (format from the extension), atomically."""
    from astropy.table import Table

    path = Path(path)
    fmt = table_format(path)
    table = Table({k: _plain(v) for k, v in columns.items()})
    kw = {"path": "data", "serialize_meta": False} if fmt == "hdf5" else {}
    with atomic_path(path) as tmp:
        table.write(tmp, format=fmt, overwrite=True, **kw)
    return path
