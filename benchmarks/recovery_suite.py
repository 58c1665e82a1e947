"""Recovery suite (issue 19): train one TrainConfig on several surveys, score each the same way.

No training default should rest on one simulator. This script trains the TrainConfig given
on the command line (``TrainConfig()`` with ``--set`` fields, or ``TrainConfig.paper()``
with ``--paper``) on

* ``sim_bayestar``, ``sim_sfd``, ``sim_scaled114``: three variants of
  :mod:`bayesdsm.simulate` with other seeds than the demo's, differing in reddening prior
  (Bayestar-like per-star E with honest σ; SFD-like full column with its scatter; the
  default mix scaled by 1.14, as SFD is, with R then scored against R_true / 1.14),
  selection (magnitude-limited vs LAMOST-like) and dust (see ``suite_surveys.py``);
* ``mist``: the external MIST survey (``../shared/mist_survey``, or
  ``$BAYESDSM_MIST_SURVEY_DIR``), a check only, never a
  target to tune to; colours and M_G are scored on its noise-free truth grid;
* ``real``: 5-fold cross-validation on the 5,000 real Green 2020 dev stars (train on
  4,000, evaluate the other 1,000 with :func:`bayesdsm.evaluate.evaluate_catalog`; all
  five folds pooled),

and prints one Markdown table (and writes every number as JSON, updated after each survey).
Simulated surveys are scored on their test split at the true θ with
``accept_train.metrics`` (R at the catalogue's median θ̂):

* colour RMS of X − G for BP…Ks and W1, W2 where the validity density is ≥ 1e-2;
* M_G RMS (bias) of the dwarfs (log g ≥ 3.8), and the giants' RMS over the truth's own
  scatter of M_G at fixed θ;
* R / truth − 1 (%) for G…Ks and W1, W2;
* test ⟨χ²/dof⟩ (all stars) and the fraction above 5, the 16/50/84th percentiles of the
  colour scores, and the median of the re-estimated E minus the truth (on the prior's
  scale).

The real stars give ⟨χ²/dof⟩ over χ²/dof ≤ 5 and the fraction above 5 (pooled over the
folds). A fit that stops (:class:`~bayesdsm.errors.TrainingError`) or leaves non-finite
losses is a row of its own, with the iteration and the rule that caught it.

Full (acceptance) run, ≥ 195k stars per simulated survey, the full schedule: 7-10 min
of training per 200k-star survey on a 2-core machine at load 2-3, plus 13-23 min to
simulate each survey once (cached in ``--work``), 65 min in all the first time
(2026-12-06)::

    BAYESDSM_GREEN2020_DIR=../shared/green2020 python benchmarks/recovery_suite.py
    python benchmarks/recovery_suite.py --set epochs=100 --out /tmp/e100.json
    python benchmarks/recovery_suite.py --paper

Reduced (smoke) run: 8 min the first time (about 4 of them simulating), 4 min once the
surveys are cached (2-core machine at load ≈ 3.5, 2026-12-06); far from converged, so its
numbers test the plumbing, not a default::

    python benchmarks/recovery_suite.py --scale 20000 --mist-subset 20000 \\
        --set n_iterations=4 --set epochs=5
    python benchmarks/recovery_suite.py --scale 20000 --only sim_sfd --set n_iterations=4

``--list`` names the surveys; ``--only NAME`` (repeatable) runs a few of them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accept_train import for_training, metrics, truth_metrics_at  # noqa: E402
from suite_surveys import SIM_SURVEYS, load_mist, load_real, load_simulated  # noqa: E402

SURVEY_NAMES = (*(s.name for s in SIM_SURVEYS), "mist", "real")
COLOUR_BANDS = ("BP", "RP", "g", "r", "i", "z", "y", "J", "H", "Ks")
R_BANDS = ("G", *COLOUR_BANDS)
WISE = ("W1", "W2")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def train_config(sets: list[str], paper: bool):
    """The TrainConfig of ``--set FIELD=JSON`` items on ``TrainConfig()`` or ``.paper()``."""
    from bayesdsm.train import TrainConfig

    fields = {}
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set needs FIELD=JSON, got {item!r}")
        fields[key] = json.loads(value)
    return TrainConfig.paper(**fields) if paper else TrainConfig(**fields)


def failure(err) -> dict:
    """The iteration and the rule of a :class:`TrainingError` (None: before iteration 0)."""
    msg = str(err)
    it = getattr(err, "iteration", None)
    if it is None:
        m = re.search(r"iteration (\d+)", msg)
        it = int(m.group(1)) if m else None
    if "non-finite loss" in msg:
        rule = "non-finite loss"
    else:
        m = re.search(r"rule:?\s+(\w+)", msg)
        rule = m.group(1) if m else msg.split(":")[0]
    return {"status": "diverged", "iteration": it, "rule": rule, "message": msg}


def fit(cat, tc) -> tuple[object, dict]:
    """(TrainResult or None, status dict) of one training run."""
    from bayesdsm.errors import TrainingError
    from bayesdsm.train import train

    t0 = time.perf_counter()
    try:
        res = train(cat, tc, progress=False)
    except TrainingError as err:
        return None, {**failure(err), "train_s": time.perf_counter() - t0}
    status = {"status": "ok", "iterations_done": len(res.history),
              "train_s": time.perf_counter() - t0}  # fmt: skip
    for k, h in enumerate(res.history):
        bad = [key for key in ("train_loss", "val_loss") if not np.isfinite(h.get(key, 0.0))]
        if bad:
            status.update(status="diverged", iteration=k, rule=f"non-finite {', '.join(bad)}",
                          message=f"history[{k}] has non-finite {bad}")  # fmt: skip
            return None, status
    return res, status


def score_truth_survey(cat, tc, prior_scale: float = 1.0, grid=None) -> dict:
    """Train on a survey with known truth and score it (see the module docstring)."""
    cat = for_training(cat)
    res, out = fit(cat, tc)
    out["n"] = len(cat)
    if res is None:
        return out
    t0 = time.perf_counter()
    out.update(metrics(cat, res.emulator, res.validity, res.split, res.ebv, res.ebv_err,
                       theta_at="median", prior_scale=prior_scale))  # fmt: skip
    if grid is not None:  # colours and M_G on the survey's noise-free truth grid
        keep = ("colour_rms", "MG_rms_dwarfs", "MG_rms_giants_over_truth_scatter")
        out["test_split_truth"] = {k: out[k] for k in keep}
        out.update(truth_metrics_at(res.emulator, res.validity, cat.bands, grid["theta"],
                                    grid["M"], np.arange(len(grid["theta"]))))  # fmt: skip
        out["truth_source"] = "grid"
    out["eval_s"] = time.perf_counter() - t0
    return out


def score_real(cat, tc, folds: int = 5, seed: int = 0) -> dict:
    """``folds``-fold cross-validation on real stars; χ²/dof of the held-out stars pooled."""
    from bayesdsm.errors import ValidityWarning
    from bayesdsm.evaluate import evaluate_catalog, summarize

    parts = np.array_split(np.random.default_rng(seed).permutation(len(cat)), folds)
    c2, flag, scores, per_fold, t_train, t_eval = [], [], [], [], 0.0, 0.0
    for f in range(folds):
        test = np.sort(parts[f])
        train_rows = np.sort(np.concatenate([p for g, p in enumerate(parts) if g != f]))
        log(f"[real] fold {f + 1}/{folds}: train {train_rows.size}, held out {test.size}")
        res, st = fit(cat.subset(train_rows), tc)
        t_train += st["train_s"]
        if res is None:
            per_fold.append({"fold": f, **st})
            continue
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ValidityWarning)
            ev = evaluate_catalog(res.emulator, cat.subset(test))
        t_eval += time.perf_counter() - t0
        cols = ev.columns
        sc = np.stack([v for k, v in cols.items() if k.startswith("score_")], 1)
        c2.append(cols["chi2_dof"]), flag.append(cols["flag"]), scores.append(sc)
        per_fold.append({"fold": f, **st, "n_warnings": len(caught), **{k: ev.summary[k] for k in
                         ("n_stars", "mean_chi2_dof_below5", "frac_chi2_dof_above5")}})  # fmt: skip
    out = {"n": len(cat), "folds": per_fold, "train_s": t_train, "eval_s": t_eval}
    failed = [p for p in per_fold if p["status"] != "ok"]
    if failed:
        first = failed[0]
        out.update({k: first.get(k) for k in ("iteration", "message")}, status="diverged",
                   rule=f"fold {first['fold']}: {first['rule']}")  # fmt: skip
    else:
        out["status"] = "ok"
    if c2:
        out["pooled"] = summarize(np.concatenate(c2), np.concatenate(flag),
                                  np.concatenate(scores))  # fmt: skip
    return out


def run_survey(name: str, args, tc) -> dict:
    t0 = time.perf_counter()
    if name == "real":
        cat, load_s = load_real()
        out = score_real(cat, tc, args.folds)
    elif name == "mist":
        cat, grid, load_s = load_mist(args.mist_subset)
        out = score_truth_survey(cat, tc, grid=grid)
    else:
        survey = next(s for s in SIM_SURVEYS if s.name == name)
        cat, load_s = load_simulated(survey, args.scale, args.work, log=log)
        out = score_truth_survey(cat, tc, survey.prior_scale)
        out["description"] = survey.description
    out["load_s"], out["total_s"] = load_s, time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------- table


def _f(x, fmt: str) -> str:
    return "—" if x is None or not np.isfinite(x) else format(x, fmt)


HEADER = ("survey", "N", "status", "colour RMS X−G: BP RP g r i z y J H Ks", "W1−G W2−G",
          "M_G dwarfs RMS (bias)", "giants / truth scatter",
          "R/truth − 1 (%): G BP RP g r i z y J H Ks", "R W1 W2 (%)", "⟨χ²/dof⟩", "χ²/dof > 5",
          "scores 16/50/84", "median ΔE", "time s")  # fmt: skip


def _rms(x) -> str:
    return _f(x, ".3f").removeprefix("0")


def table_cells(name: str, r: dict) -> list[str]:
    """The table's cells for one survey's results."""
    cells = dict.fromkeys(HEADER, "")  # the labels are unique
    cells.update({"survey": name, "N": str(r.get("n", "—")), "time s": _f(r.get("total_s"), ".0f")})
    if r.get("status") != "ok" and "pooled" not in r:
        it = r.get("iteration")
        where = "setup" if it is None else f"iteration {it}"
        cells["status"] = f"**diverged** ({where}: {r.get('rule')})"
        return list(cells.values())
    cells["status"] = "ok" if r["status"] == "ok" else f"**diverged** ({r['rule']})"
    if name == "real":
        p = r["pooled"]
        cells.update({"survey": f"real ({len(r['folds'])}-fold CV)", "N": str(p["n_stars"]),
                      "⟨χ²/dof⟩": f"{_f(p['mean_chi2_dof_below5'], '.3f')} (≤ 5 only)",
                      "χ²/dof > 5": f"{_f(100 * p['frac_chi2_dof_above5'], '.1f')}%",
                      "scores 16/50/84": "/".join(_f(x, "+.2f") for x in
                                                  p.get("score_p16_p50_p84", []))})  # fmt: skip
        return list(cells.values())
    cr, rr = r["colour_rms"], r["R_rel_err"]
    cells.update({
        HEADER[3]: " ".join(_rms(cr.get(f"{b}-G")) for b in COLOUR_BANDS),
        HEADER[4]: " ".join(_rms(cr.get(f"{b}-G")) for b in WISE),
        HEADER[5]: f"{_f(r['MG_rms_dwarfs'], '.3f')} ({_f(r['MG_bias_dwarfs'], '+.3f')})",
        HEADER[6]: _f(r["MG_rms_giants_over_truth_scatter"], ".2f"),
        HEADER[7]: " ".join(_f(100 * rr[b], "+.1f") for b in R_BANDS),
        HEADER[8]: " ".join(_f(100 * rr[b], "+.1f") for b in WISE),
        HEADER[9]: _f(r["chi2_dof_test"], ".3f"),
        HEADER[10]: f"{_f(100 * r['frac_chi2_dof_gt5'], '.1f')}%",
        HEADER[11]: "/".join(_f(x, "+.2f") for x in r["score_pct"]),
        HEADER[12]: _f(r["median_dE"], "+.3f"),
    })  # fmt: skip
    return list(cells.values())


def table(results: dict) -> str:
    """One Markdown table of every survey's results."""
    rows = [HEADER, ("---",) * len(HEADER)]
    rows += [table_cells(name, r) for name, r in results.items()]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def _write(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1, default=float))
    tmp.replace(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=JSON",
                    help="TrainConfig field, e.g. epochs=100 (repeatable)")  # fmt: skip
    ap.add_argument("--paper", action="store_true", help="start from TrainConfig.paper()")
    ap.add_argument("--scale", type=int, default=200_000, help="stars per simulated survey")
    ap.add_argument("--mist-subset", type=int, default=None,
                    help="MIST survey rows (random, seeded; default: all 200,000)")  # fmt: skip
    ap.add_argument("--only", action="append", choices=SURVEY_NAMES, help="run this survey")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds (real)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bayesdsm_suite"),
                    help="cache of simulated surveys and default output folder")  # fmt: skip
    ap.add_argument("--out", type=Path, help="JSON results (default: WORK/suite_<time>.json)")
    ap.add_argument("--list", action="store_true", help="list the surveys and exit")
    args = ap.parse_args(argv)
    if args.list:
        for s in SIM_SURVEYS:
            print(f"{s.name}: {s.description}")
        print("mist: the external MIST survey (check only)\nreal: 5-fold CV, real dev stars")
        return 0
    tc = train_config(args.set, args.paper)
    args.work.mkdir(parents=True, exist_ok=True)
    out = args.out or args.work / f"suite_{time.strftime('%Y%m%d_%H%M%S')}.json"
    payload = {"argv": sys.argv[1:] if argv is None else list(argv), "set": args.set,
               "paper": args.paper, "scale": args.scale, "mist_subset": args.mist_subset,
               "train_config": {k: getattr(tc, k) for k in tc.__dataclass_fields__},
               "surveys": {}}  # fmt: skip
    for name in args.only or SURVEY_NAMES:
        log(f"[{name}] start")
        payload["surveys"][name] = r = run_survey(name, args, tc)
        log(f"[{name}] {r['status']} in {r['total_s']:.0f} s")
        _write(out, payload)
    print(table(payload["surveys"]))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
