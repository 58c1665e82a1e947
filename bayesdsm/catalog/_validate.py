"""Validation at the boundary: the value rules applied when a table becomes a Catalog.

Used by :func:`~bayesdsm.catalog.catalog_from_table`, one function per column group.

Structural problems always raise :class:`~bayesdsm.errors.CatalogError` with ``column``,
``rows`` and ``rule`` set: a missing column (``rule="missing_column"``: a ``mag_<b>``
without ``mag_err_<b>``, an incomplete θ̂ / covariance / parallax / reddening / position
group, or no band at all) and an unknown band (``rule="unknown_band"``: a ``mag_<x>``
column whose ``x`` is not in :data:`~bayesdsm.conventions.BANDS`; pass ``bands=`` to use
a superset on purpose). Bad values are, by default, masked and reported; with
``strict=True`` they raise a ``CatalogError`` instead:

=========================  ===================================  =========================
rule                       when                                 default masking
=========================  ===================================  =========================
``mag_nonfinite``          mag is ±inf, or NaN with a finite    band unobserved for that
                           error                                star (mag, err set NaN)
``mag_err_nonfinite``      finite mag, non-finite error         same
``mag_err_nonpositive``    error ≤ 0                            same
``theta_nonfinite``        θ̂ partly NaN or ±inf                 θ̂ and C_θ set NaN (star
``theta_err_nonfinite``    an error / C_θ entry not finite      kept without θ̂;
``theta_err_nonpositive``  a σ or C_θ diagonal ≤ 0              :func:`bayesdsm.cuts.prepare`
``theta_cov_not_pd``       C_θ not positive definite            then removes it)
``parallax_nonfinite``     ϖ̂ = ±inf                             ``parallax_ok = False``,
``parallax_err_nonfinite`` ϖ̂ finite, σ_ϖ not finite             bad value set NaN
``parallax_err_nonpositive`` σ_ϖ ≤ 0                            same
``ebv_nonfinite``,         Ê or σ_E not finite, or σ_E ≤ 0      uninformative prior
``ebv_err_nonfinite``,                                          Ê = 0, σ_E = 10
``ebv_err_nonpositive``
=========================  ===================================  =========================

A star with NaN in *both* a magnitude and its error is simply unobserved in that band,
and NaN in both Ê and σ_E means "no prior" (``ebv_missing``, recorded but not warned).
Every masking is counted in ``Catalog.meta["validation"]`` (rule, column, count, first
rows, action), marked on each star as ``<rule>:<column>`` in ``Catalog.flags``, a
:class:`~bayesdsm.errors.BayesDSMWarning` summarises them, and
:func:`bayesdsm.cuts.prepare` repeats them in its report. Nothing is dropped silently.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from bayesdsm.catalog._catalog import add_flag
from bayesdsm.catalog._schema import (
    COV_COLUMNS,
    THETA_COLUMNS,
    THETA_ERR_COLUMNS,
    column_array,
    require_columns,
    unit_convert,
)
from bayesdsm.conventions import BANDS
from bayesdsm.errors import BayesDSMWarning, CatalogError

__all__ = [
    "Checker",
    "table_bands",
    "read_photometry",
    "read_theta",
    "read_parallax",
    "read_reddening",
]

#: Validation rules that are recorded but not warned about.
_INFO_RULES = frozenset({"ebv_missing"})


class Checker:
    """Collects (or, when strict, raises) the value rules of the module docstring."""

    def __init__(self, strict: bool, n: int):
        self.strict = strict
        self.issues: list[dict[str, Any]] = []
        #: (N,) comma-separated ``<rule>:<column>`` of every masking, per star.
        self.flags = np.full(n, "", object)

    def __call__(self, mask, column: str, rule: str, action: str, what: str) -> np.ndarray:
        mask = np.asarray(mask, bool)
        if not mask.any():
            return mask
        rows = np.flatnonzero(mask)
        if self.strict and rule not in _INFO_RULES:
            raise CatalogError(
                f"column {column!r}: {rows.size} row(s) break rule {rule!r} ({what}); "
                f"first rows: {rows[:10].tolist()}. Fix the input, or read with strict=False "
                f"to {action}.",
                column=column,
                rows=rows,
                rule=rule,
            )
        self.issues.append(
            {
                "rule": rule,
                "column": column,
                "count": int(rows.size),
                "rows": rows[:20].tolist(),
                "action": action,
            }
        )
        if rule not in _INFO_RULES:
            self.flags = add_flag(self.flags, rows, f"{rule}:{column}")
        return mask

    def warn(self):
        bad = [i for i in self.issues if i["rule"] not in _INFO_RULES]
        if bad:
            summary = "; ".join(f"{i['column']}: {i['count']} x {i['rule']}" for i in bad[:8])
            warnings.warn(
                f"catalog: masked bad values ({summary}{'; ...' if len(bad) > 8 else ''}). "
                "Details in Catalog.meta['validation']; read with strict=True to raise instead.",
                BayesDSMWarning,
                stacklevel=3,
            )


def table_bands(table, meta_bands) -> tuple[str, ...]:
    """The bands of the ``mag_<band>`` columns, in ``meta_bands``' order or the paper's."""
    found = [c[4:] for c in table.colnames if c.startswith("mag_") and not c.startswith("mag_err_")]
    unknown = [b for b in found if b not in BANDS]
    if unknown:
        raise CatalogError(
            f"unknown band {unknown[0]!r} (column 'mag_{unknown[0]}'); known bands are "
            f"{list(BANDS)}. Rename the column, or pass bands=[...] to use it on purpose.",
            column=f"mag_{unknown[0]}",
            rule="unknown_band",
        )
    if not found:
        raise CatalogError(
            "no photometry: the table has no 'mag_<band>' column. A spectroscopic-only "
            "table (e.g. an APOGEE preset) is a partial catalog: read it with read_table() "
            "and combine it with photometric tables using merge_catalogs().",
            column="mag_<band>",
            rule="missing_column",
        )
    if meta_bands and set(meta_bands) == set(found):
        return tuple(meta_bands)
    return tuple(b for b in BANDS if b in found)


def read_photometry(table, bands, check: Checker):
    """(mag, mag_err, observed), each (N, B), for ``bands``."""
    n = len(table)
    mag = np.full((n, len(bands)), np.nan)
    err = np.full((n, len(bands)), np.nan)
    observed = np.zeros((n, len(bands)), bool)
    for k, band in enumerate(bands):
        cm, ce = f"mag_{band}", f"mag_err_{band}"
        require_columns(table, (cm, ce), f"band {band!r}")
        m, e = column_array(table, cm), column_array(table, ce)
        absent = np.isnan(m) & np.isnan(e)
        act = "mark the band unobserved for those stars"
        bad = check(~np.isfinite(m) & ~absent, cm, "mag_nonfinite", act, "NaN or inf magnitude")
        bad |= check(np.isfinite(m) & ~np.isfinite(e), ce, "mag_err_nonfinite", act, "NaN/inf")
        bad |= check(
            np.isfinite(m) & np.isfinite(e) & (e <= 0), ce, "mag_err_nonpositive", act, "error <= 0"
        )
        m[bad | absent], e[bad | absent] = np.nan, np.nan
        mag[:, k], err[:, k] = m, e
        observed[:, k] = np.isfinite(m)
        if f"observed_{band}" in table.colnames:
            observed[:, k] &= column_array(table, f"observed_{band}", "bool")
    return mag, err, observed


def read_theta(table, check: Checker):
    """(θ̂ (N, 3), C_θ (N, 3, 3)); NaN where absent or masked."""
    n = len(table)
    theta = np.full((n, 3), np.nan)
    cov = np.full((n, 3, 3), np.nan)
    if not any(c in table.colnames for c in THETA_COLUMNS):
        return theta, cov
    require_columns(table, THETA_COLUMNS, "spectroscopic θ̂")
    for k, c in enumerate(THETA_COLUMNS):
        theta[:, k] = unit_convert(table, c, column_array(table, c))
    present = ~np.all(np.isnan(theta), axis=1)
    act = "drop θ̂ for those stars (prepare() then removes them)"
    bad = np.zeros(n, bool)
    for k, c in enumerate(THETA_COLUMNS):
        bad |= check(present & ~np.isfinite(theta[:, k]), c, "theta_nonfinite", act, "NaN/inf")
    cov_names = [c for c, _, _ in COV_COLUMNS]
    if any(c in table.colnames for c in cov_names):
        require_columns(table, cov_names, "θ̂ covariance")
        for c, i, j in COV_COLUMNS:
            v = column_array(table, c)
            cov[:, i, j] = cov[:, j, i] = v
            bad |= check(present & ~np.isfinite(v), c, "theta_err_nonfinite", act, "NaN/inf")
            if i == j:
                bad |= check(
                    present & np.isfinite(v) & (v <= 0),
                    c,
                    "theta_err_nonpositive",
                    act,
                    "variance <= 0",
                )
    else:
        require_columns(table, THETA_ERR_COLUMNS, "θ̂ errors (or the 6 cov_* columns)")
        for k, c in enumerate(THETA_ERR_COLUMNS):
            s = column_array(table, c)
            cov[:, k, k] = s**2
            bad |= check(present & ~np.isfinite(s), c, "theta_err_nonfinite", act, "NaN/inf")
            bad |= check(
                present & np.isfinite(s) & (s <= 0), c, "theta_err_nonpositive", act, "sigma <= 0"
            )
        off = ~np.eye(3, dtype=bool)
        cov[:, off] = np.where(np.isfinite(cov[:, 0, 0])[:, None], 0.0, np.nan)
    ok = present & ~bad
    if ok.any():
        eig = np.linalg.eigvalsh(cov[ok])
        npd = np.zeros(n, bool)
        npd[ok] = eig[:, 0] <= 1e-12 * np.abs(eig[:, -1])
        bad |= check(npd, "theta_cov", "theta_cov_not_pd", act, "C_θ not positive definite")
    theta[bad | ~present], cov[bad | ~present] = np.nan, np.nan
    return theta, cov


def read_parallax(table, check: Checker):
    """(ϖ̂, σ_ϖ, parallax_ok), each (N,), in mas."""
    n = len(table)
    if "parallax" not in table.colnames and "parallax_err" not in table.colnames:
        return np.full(n, np.nan), np.full(n, np.nan), np.zeros(n, bool)
    require_columns(table, ("parallax", "parallax_err"), "parallax")
    p = unit_convert(table, "parallax", column_array(table, "parallax"))
    e = unit_convert(table, "parallax_err", column_array(table, "parallax_err"))
    act = "set parallax_ok = False for those stars"
    p[check(np.isinf(p), "parallax", "parallax_nonfinite", act, "inf")] = np.nan
    fin = np.isfinite(p)
    e[check(fin & ~np.isfinite(e), "parallax_err", "parallax_err_nonfinite", act, "NaN/inf")] = (
        np.nan
    )
    e[check(fin & (e <= 0), "parallax_err", "parallax_err_nonpositive", act, "<= 0")] = np.nan
    ok = fin & np.isfinite(e)
    if "parallax_ok" in table.colnames:
        ok &= column_array(table, "parallax_ok", "bool")
    return p, e, ok


def read_reddening(table, check: Checker):
    """(Ê, σ_E), each (N,); the uninformative prior where absent."""
    n = len(table)
    if "ebv" not in table.colnames and "ebv_err" not in table.colnames:
        return np.zeros(n), np.full(n, 10.0)
    require_columns(table, ("ebv", "ebv_err"), "reddening prior")
    v, e = column_array(table, "ebv"), column_array(table, "ebv_err")
    act = "use the uninformative prior E = 0 +- 10 mag for those stars"
    missing = check(np.isnan(v) & np.isnan(e), "ebv", "ebv_missing", act, "no prior given")
    bad = check(~np.isfinite(v) & ~missing, "ebv", "ebv_nonfinite", act, "NaN/inf")
    bad |= check(~np.isfinite(e) & ~missing, "ebv_err", "ebv_err_nonfinite", act, "NaN/inf")
    bad |= check(np.isfinite(e) & (e <= 0), "ebv_err", "ebv_err_nonpositive", act, "<= 0")
    v[bad | missing], e[bad | missing] = 0.0, 10.0
    return v, e
