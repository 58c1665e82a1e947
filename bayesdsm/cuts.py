"""The data preparation of Green et al. (2021) §3, as one function with a report.

:func:`prepare` applies, in this order, each rule a field of
:class:`~bayesdsm.config.CutsConfig` (defaults = the paper's values):

==========================  =========================================================  =======
rule                        what it does                                               effect
==========================  =========================================================  =======
``theta_err_floor``         add (10 K)², (0.05)², (0.03)² to the C_θ diagonal          changed
``max_theta_err``           remove stars with σ_Teff > 200 K, σ_logg > 0.5, σ_FeH > 0.5  removed
``require_theta``           remove stars without a usable θ̂                            removed
``zero_points``             add survey offsets to θ̂ (given, the paper's, or estimated)  changed
``duplicates``              optionally keep one row per ``source_id``                  removed
``mag_err_floor``           add 0.02 mag in quadrature to every photometric error      changed
``max_mag_err``             a band with σ > 0.2 mag becomes unobserved (values kept)   masked
``require_reference_band``  remove stars unobserved in the reference band (G)          removed
``min_parallax_snr``        ϖ̂/σ_ϖ < 5 sets ``parallax_ok = False`` (values kept)       flagged
``ebv_err_floor``           add 0.02 mag in quadrature to σ_E                          changed
==========================  =========================================================  =======

Every input row is accounted for: the report's ``kept`` gives the input row of each
prepared star and ``removed_by`` the rule that removed each input row (``""`` where
kept), so a per-star result can be mapped back to the rows as read
(:meth:`CutReport.to_input_rows`). Masked and flagged stars carry the rule in
``Catalog.flags`` (``max_mag_err:<band>``, ``min_parallax_snr``).

Catalogs whose ``meta["floors_applied"]`` is true (the ``green2020`` preset) skip the
three floors and the θ-error cut; ``meta["zero_points_applied"]`` skips the zero points.
Skipped rules appear in the report as ``skipped``. The prepared catalog records
``floors_applied``, ``theta_cuts_applied`` and ``zero_points_applied`` so that a second
call does not apply anything twice. Problems found when the catalog was read
(``meta["validation"]``, ``meta["preset_rejected"]``) open the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from bayesdsm.catalog import Catalog, add_flag
from bayesdsm.config import CutsConfig, to_dict
from bayesdsm.errors import ConfigError

__all__ = [
    "prepare",
    "input_report",
    "estimate_zero_points",
    "apply_zero_points",
    "CutReport",
    "RuleOutcome",
    "ZeroPoints",
]


class RuleOutcome(NamedTuple):
    """One line of a :class:`CutReport`.

    Attributes:
        rule: the config field (or ``input:<rule>`` for problems found on reading).
        action: ``removed`` (stars), ``changed`` (stars), ``masked`` (star-bands),
            ``flagged`` (stars), ``skipped`` or ``info``.
        count: how many stars (or star-bands for ``masked``) were affected.
        of: out of how many (stars, or star-bands, that the rule looked at).
        note: a short explanation.
    """

    rule: str
    action: str
    count: int
    of: int
    note: str = ""


@dataclass(frozen=True)
class CutReport:
    """What :func:`prepare` did: per-rule counts, printable and JSON-serialisable.

    Attributes:
        n_in, n_out: stars in and out.
        rules: one :class:`RuleOutcome` per rule, in the order applied.
        zero_points: survey -> offsets added to θ̂.
        kept: (n_out,) int, the input row of each prepared star (None: not recorded).
        removed_by: (n_in,) str, the rule that removed each input row, ``""`` where kept.
    """

    n_in: int
    n_out: int
    rules: tuple[RuleOutcome, ...]
    zero_points: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    kept: np.ndarray | None = field(default=None, compare=False, repr=False)
    removed_by: np.ndarray | None = field(default=None, compare=False, repr=False)

    def __getitem__(self, rule: str) -> RuleOutcome:
        for r in self.rules:
            if r.rule == rule:
                return r
        raise KeyError(f"no rule {rule!r} in this report; rules: {[r.rule for r in self.rules]}")

    def fraction(self, rule: str) -> float:
        r = self[rule]
        return r.count / r.of if r.of else 0.0

    def removed_counts(self) -> dict[str, int]:
        """Rule -> input rows it removed (rules that removed none are left out)."""
        if self.removed_by is None:
            return {r.rule: r.count for r in self.rules if r.action == "removed" and r.count}
        names, counts = np.unique(self.removed_by[self.removed_by != ""], return_counts=True)
        return {str(k): int(c) for k, c in zip(names, counts)}

    def to_input_rows(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-star columns of the prepared catalog (n_out rows) spread over the n_in input
        rows, in input order. Removed rows get NaN (floats), 0 (integers), False (bools)
        or ``""`` (strings)."""
        if self.kept is None:
            raise ValueError("this report does not record the kept rows")
        out = {}
        for name, col in columns.items():
            col = np.asarray(col)
            if col.dtype.kind in "fc":
                full = np.full((self.n_in,) + col.shape[1:], np.nan, col.dtype)
            elif col.dtype.kind in "OSU":
                full = np.full((self.n_in,) + col.shape[1:], "", object)
            else:
                full = np.zeros((self.n_in,) + col.shape[1:], col.dtype)
            full[self.kept] = col
            out[name] = full
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_in": self.n_in,
            "n_out": self.n_out,
            "rules": [r._asdict() for r in self.rules],
            "zero_points": {k: list(v) for k, v in self.zero_points.items()},
        }

    def to_json(self, **kwargs) -> str:
        return json.dumps(self.to_dict(), **({"indent": 2} | kwargs))

    def write_json(self, path):
        """Write :meth:`to_json` to ``path`` atomically (``<output>.cuts.json`` by
        convention, beside the output it explains); returns the path."""
        from pathlib import Path

        from bayesdsm._util import atomic_path

        with atomic_path(path) as tmp:
            tmp.write_text(self.to_json() + "\n")
        return Path(path)

    def __str__(self) -> str:
        head = f"{'rule':<30} {'action':<8} {'count':>8} {'of':>8} {'%':>6}  note"
        lines = [f"§3 preparation: {self.n_in} stars in, {self.n_out} out", head, "-" * len(head)]
        for r in self.rules:
            pct = f"{100 * r.count / r.of:6.2f}" if r.of and r.action != "skipped" else "     -"
            lines.append(f"{r.rule:<30} {r.action:<8} {r.count:>8} {r.of:>8} {pct}  {r.note}")
        for s, off in self.zero_points.items():
            lines.append(
                f"zero point {s}: dTeff={off[0]:+.1f} K dlogg={off[1]:+.3f} dFeH={off[2]:+.3f}"
            )
        return "\n".join(lines)


class ZeroPoints(NamedTuple):
    """Survey zero points on θ̂ relative to a reference survey.

    Attributes:
        offsets: survey -> (ΔTeff, Δlog g, Δ[Fe/H]) to *add* to that survey's θ̂.
        errors: survey -> 1σ of the offsets (inverse-variance weighted mean).
        n_common: survey -> number of stars shared (with the reference or the pivot).
        reference: the reference survey (offset 0).
    """

    offsets: dict[str, tuple[float, float, float]]
    errors: dict[str, tuple[float, float, float]]
    n_common: dict[str, int]
    reference: str


def _pair_offset(cat: Catalog, to: str, frm: str):
    """Weighted mean of θ̂_to - θ̂_from over stars both surveys observed (by source_id)."""
    var = np.diagonal(cat.theta_cov, axis1=1, axis2=2)
    ok = cat.has_theta & np.all(np.isfinite(var), axis=1)
    a = np.flatnonzero(ok & (cat.survey == to))
    b = np.flatnonzero(ok & (cat.survey == frm))
    _, ia, ib = np.intersect1d(cat.source_id[a], cat.source_id[b], return_indices=True)
    if ia.size == 0:
        return None
    i, j = a[ia], b[ib]
    w = 1.0 / (var[i] + var[j])
    mean = np.sum(w * (cat.theta[i] - cat.theta[j]), axis=0) / np.sum(w, axis=0)
    return mean, 1.0 / np.sqrt(np.sum(w, axis=0)), int(ia.size)


def estimate_zero_points(cat: Catalog, reference: str = "galah", pivot: str = "") -> ZeroPoints:
    """Estimate survey zero points from stars observed by two surveys (same ``source_id``).

    For each survey s the offset is the inverse-variance weighted mean over shared stars of
    θ̂_ref − θ̂_s (weights 1/(σ²_ref + σ²_s), per component), so θ̂_s + offset matches the
    reference on average. With ``pivot`` (the paper used LAMOST), every survey is matched to
    the pivot and the offsets chained: Δ_s = d(pivot, s) − d(pivot, ref).

    Surveys that share no star (with the reference or pivot) get no offset; they are
    listed with ``n_common = 0``.
    """
    reference, pivot = reference.lower(), pivot.lower()
    surveys = sorted(set(np.char.lower(cat.survey.astype(str))))
    cat = cat.replace(survey=np.char.lower(cat.survey.astype(str)))
    offsets, errors, n_common = {}, {}, {}
    if pivot:
        ref_pair = _pair_offset(cat, pivot, reference)
        if ref_pair is None:
            raise ConfigError(f"no star is shared by the pivot {pivot!r} and {reference!r}")
        d_ref, e_ref, n_ref = ref_pair
    for s in surveys:
        if s == reference:
            continue
        if not pivot:
            res = _pair_offset(cat, reference, s)
        elif s == pivot:
            res = (-d_ref, e_ref, n_ref)
        else:
            p = _pair_offset(cat, pivot, s)
            res = None if p is None else (p[0] - d_ref, np.hypot(p[1], e_ref), p[2])
        if res is None:
            n_common[s] = 0
            continue
        offsets[s] = tuple(float(x) for x in res[0])
        errors[s] = tuple(float(x) for x in res[1])
        n_common[s] = res[2]
    return ZeroPoints(offsets, errors, n_common, reference)


def apply_zero_points(cat: Catalog, offsets: dict) -> tuple[Catalog, dict[str, int]]:
    """Add per-survey offsets to θ̂. Returns the catalog and survey -> stars changed."""
    theta = cat.theta.copy()
    survey = np.char.lower(cat.survey.astype(str))
    changed = {}
    for s, off in offsets.items():
        sel = (survey == s.lower()) & cat.has_theta
        theta[sel] += np.asarray(off, np.float64)
        changed[s.lower()] = int(sel.sum())
    return cat.replace(theta=theta), changed


class _Rows:
    """Follows the input rows through the removals of :func:`prepare`."""

    def __init__(self, n: int):
        self.kept = np.arange(n)
        self.removed_by = np.full(n, "", object)

    def remove(self, cat: Catalog, bad: np.ndarray, rule: str) -> Catalog:
        self.removed_by[self.kept[bad]] = rule
        self.kept = self.kept[~bad]
        return cat.subset(~bad)


def _input_rules(cat: Catalog) -> list[RuleOutcome]:
    out = []
    for r in cat.meta.get("preset_rejected", []):
        out.append(
            RuleOutcome(
                f"input:preset_{r['rule']}", "removed", r["removed"], r["removed"], r["why"]
            )
        )
    for v in cat.meta.get("validation", []):
        out.append(
            RuleOutcome(
                f"input:{v['rule']}", "info", v["count"], len(cat), f"{v['column']}: {v['action']}"
            )
        )
    return out


def _theta_rules(
    cat: Catalog, cfg: CutsConfig, floors_done: bool, rules: list, rows: _Rows
) -> Catalog:
    n = len(cat)
    if floors_done:
        rules.append(RuleOutcome("theta_err_floor", "skipped", 0, n, "floors_applied in meta"))
        rules.append(RuleOutcome("max_theta_err", "skipped", 0, n, "floors_applied in meta"))
    else:
        cov = cat.theta_cov.copy()
        has = cat.has_theta
        idx = np.arange(3)
        cov[:, idx, idx] += np.asarray(cfg.theta_err_floor) ** 2
        cat = cat.replace(theta_cov=cov)
        rules.append(
            RuleOutcome(
                "theta_err_floor",
                "changed",
                int(has.sum()),
                n,
                f"sigma floors {cfg.theta_err_floor} added in quadrature",
            )
        )
        sig = np.sqrt(np.diagonal(cov, axis1=1, axis2=2))
        bad = has & np.any(sig > np.asarray(cfg.max_theta_err), axis=1)
        rules.append(
            RuleOutcome(
                "max_theta_err", "removed", int(bad.sum()), n, f"sigma > {cfg.max_theta_err}"
            )
        )
        cat = rows.remove(cat, bad, "max_theta_err")
    if cfg.require_theta:
        bad = ~cat.has_theta
        rules.append(
            RuleOutcome(
                "require_theta",
                "removed",
                int(bad.sum()),
                len(cat),
                "no usable spectroscopic theta",
            )
        )
        cat = rows.remove(cat, bad, "require_theta")
    return cat


def _zero_point_rule(cat: Catalog, cfg: CutsConfig, rules: list) -> tuple[Catalog, dict]:
    if cat.meta.get("zero_points_applied"):
        rules.append(
            RuleOutcome("zero_points", "skipped", 0, len(cat), "zero_points_applied in meta")
        )
        return cat, {}
    if cfg.zero_points == "none":
        rules.append(RuleOutcome("zero_points", "skipped", 0, len(cat), "zero_points='none'"))
        return cat, {}
    offsets = cfg.zero_point_offsets()
    note = "given offsets"
    if offsets is None:
        zp = estimate_zero_points(cat, cfg.zero_point_reference, cfg.zero_point_pivot)
        offsets = zp.offsets
        lonely = [s for s, k in zp.n_common.items() if k == 0]
        note = f"estimated vs {zp.reference}" + (
            f"; NOT corrected (no overlap): {lonely}" if lonely else ""
        )
    cat, changed = apply_zero_points(cat, offsets)
    rules.append(RuleOutcome("zero_points", "changed", sum(changed.values()), len(cat), note))
    return cat, offsets


def _duplicates_rule(cat: Catalog, cfg: CutsConfig, rules: list, rows: _Rows) -> Catalog:
    _, first, counts = np.unique(cat.source_id, return_index=True, return_counts=True)
    n_dup = int(np.sum(counts - 1))
    if cfg.duplicates == "keep":
        rules.append(
            RuleOutcome("duplicates", "info", n_dup, len(cat), "rows sharing a source_id, all kept")
        )
        return cat
    det = np.linalg.det(np.nan_to_num(cat.theta_cov, nan=1e30))
    order = np.lexsort((det, cat.source_id))
    keep_sorted = np.r_[True, np.diff(cat.source_id[order]) != 0]
    keep = np.zeros(len(cat), bool)
    keep[order[keep_sorted]] = True
    rules.append(
        RuleOutcome(
            "duplicates",
            "removed",
            n_dup,
            len(cat),
            "kept the row with the smallest det(C_theta) per source_id",
        )
    )
    return rows.remove(cat, ~keep, "duplicates")


def _photometry_rules(
    cat: Catalog, cfg: CutsConfig, floors_done: bool, rules: list, rows: _Rows
) -> Catalog:
    obs = cat.observed
    if floors_done:
        rules.append(RuleOutcome("mag_err_floor", "skipped", 0, len(cat), "floors_applied in meta"))
        err = cat.mag_err
    else:
        err = np.sqrt(cat.mag_err**2 + cfg.mag_err_floor**2)
        rules.append(
            RuleOutcome(
                "mag_err_floor",
                "changed",
                int(obs.any(axis=1).sum()),
                len(cat),
                f"{cfg.mag_err_floor} mag added in quadrature",
            )
        )
    big = obs & ~(err <= cfg.max_mag_err)
    rules.append(
        RuleOutcome(
            "max_mag_err",
            "masked",
            int(big.sum()),
            int(obs.sum()),
            f"bands with sigma > {cfg.max_mag_err} mag now unobserved",
        )
    )
    flags = cat.flags
    for k, band in enumerate(cat.bands):
        flags = add_flag(flags, big[:, k], f"max_mag_err:{band}")
    cat = cat.replace(mag_err=err, observed=obs & ~big, flags=flags)
    if cfg.require_reference_band:
        bad = ~cat.observed[:, 0]
        rules.append(
            RuleOutcome(
                "require_reference_band",
                "removed",
                int(bad.sum()),
                len(cat),
                f"not observed in {cat.bands[0]}",
            )
        )
        cat = rows.remove(cat, bad, "require_reference_band")
    return cat


def prepare(cat: Catalog, config: CutsConfig | None = None) -> tuple[Catalog, CutReport]:
    """Apply the §3 preparation of Green et al. (2021) (rules in the module docstring).

    Args:
        cat: the catalog as read (see :func:`bayesdsm.catalog.read_catalog`).
        config: thresholds; the default is the paper's.

    Returns:
        ``(prepared catalog, CutReport)``. Removed stars are gone from the catalog (the
        report's ``kept`` and ``removed_by`` say which input rows, and why); masked bands
        have ``observed = False``; parallaxes below the SNR limit keep their values with
        ``parallax_ok = False``. Masked and flagged stars carry the rule in ``flags``.
    """
    cfg = CutsConfig() if config is None else config
    n_in = len(cat)
    floors_done = bool(cat.meta.get("floors_applied"))
    rules = _input_rules(cat)
    rows = _Rows(n_in)
    cat = _theta_rules(cat, cfg, floors_done, rules, rows)
    cat, zero_points = _zero_point_rule(cat, cfg, rules)
    cat = _duplicates_rule(cat, cfg, rules, rows)
    cat = _photometry_rules(cat, cfg, floors_done, rules, rows)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = cat.parallax / cat.parallax_err
    had = cat.parallax_ok
    low = had & ~(snr >= cfg.min_parallax_snr)
    rules.append(
        RuleOutcome(
            "min_parallax_snr",
            "flagged",
            int(low.sum()),
            len(cat),
            f"parallax/error < {cfg.min_parallax_snr}: parallax_ok=False, values kept",
        )
    )
    cat = cat.replace(parallax_ok=had & ~low).flagged(low, "min_parallax_snr")
    if floors_done:
        rules.append(RuleOutcome("ebv_err_floor", "skipped", 0, len(cat), "floors_applied in meta"))
    else:
        cat = cat.replace(ebv_err=np.sqrt(cat.ebv_err**2 + cfg.ebv_err_floor**2))
        rules.append(
            RuleOutcome(
                "ebv_err_floor",
                "changed",
                len(cat),
                len(cat),
                f"{cfg.ebv_err_floor} mag added in quadrature",
            )
        )
    meta = dict(cat.meta)
    meta.update(
        floors_applied=True,
        theta_cuts_applied=True,
        zero_points_applied=True,
        cuts_config=to_dict(cfg),
    )
    if zero_points:
        meta["zero_point_offsets"] = {k: list(v) for k, v in zero_points.items()}
    cat = cat.replace(meta=meta)
    zp = {k: tuple(v) for k, v in zero_points.items()}
    report = CutReport(n_in, len(cat), tuple(rules), zp, rows.kept, rows.removed_by)
    return cat, report


def input_report(cat: Catalog) -> CutReport:
    """The report of a catalog used as read, without the §3 rules (``--no-prepare``,
    ``bayesdsm infer``): the problems found on reading; every row is kept."""
    n = len(cat)
    return CutReport(n, n, tuple(_input_rules(cat)), {}, np.arange(n), np.full(n, "", object))
