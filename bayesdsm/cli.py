"""The ``bayesdsm`` command line.

Every subcommand is one small ``run_<name>(args) -> int`` function plus a
``configure_<name>(parser)`` that adds its arguments, registered in :data:`COMMANDS`
(name -> :class:`Subcommand`). To add a subcommand, write the two functions and add one
row to the table. Heavy imports happen inside the ``run_`` functions so that
``bayesdsm --help`` stays fast.

Exit status and messages (every subcommand):

* 0: done. Summaries meant for scripts go to stdout as one line of JSON; progress and
  warnings go to stderr, one ``warning: ...`` line each.
* 2: bad input: a :class:`~bayesdsm.errors.BayesDSMError` (a missing, unreadable or
  damaged file, an unknown format, a wrong layout, a missing column, nothing left to
  train, ...) or a file error (missing, permission, a directory), printed as one
  ``error: ...`` line that names the file and says what to do.
* 1: an internal error: one ``internal error: ...`` line.
* 130: interrupted (Ctrl-C).

No traceback is printed unless ``--debug`` is given (before or after the subcommand).

Per-star tables (``evaluate``, ``infer``, ``predict``) have one row per input row, in
input order, with ``row`` (the input row), ``source_id`` where the input has one, and
``flags``: comma-separated reasons why a star was not evaluated, or not fully (``""``
when none; see each command's ``--help``). Their JSON summary counts input rows,
evaluated rows and each flag. The §3 preparation report (per-rule counts, JSON) is
written beside the output as ``<out>.cuts.json`` (``cuts.json`` in ``report``'s folder).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Subcommand", "COMMANDS", "build_parser", "main", "infer_summary"]

#: Exit status of bad input (and of argparse's usage errors) and of internal errors.
EXIT_INPUT, EXIT_INTERNAL = 2, 1

CONVENTIONS = """\
conventions (Green et al. 2021, Eq. 3-9, 18):
  * chi2 = dc^T C_c^-1 dc in colour space, dc = B(M(theta_hat) + E_hat R + mu - m_hat);
    the colours (X - ref) of the observed bands, plus M_ref when the parallax is
    usable (parallax_ok after the cuts: parallax/sigma >= 5 and parallax > 0);
  * the catalog's reddening prior (E_hat, sigma_E) enters the covariance as
    sigma_E^2 R R^T, and J = d(M + E_hat R)/d(theta) is taken at theta_hat;
  * dof = (number of modelled components) - 1; a star with dof <= 0 (no colour) is
    flagged (flag bit 1) and gets NaN chi2/dof and scores; it is left out of the summary;
  * one output row per input row, in input order (columns row, source_id); a row the
    §3 preparation removed keeps its place with NaN results, dof 0, flag bit 16 and
    cut:<rule> in flags; the preparation report goes to <out>.cuts.json;
  * flag bits: 1 no colour, 2 no theta_hat (or a C_theta that is not positive
    definite), 4 theta_hat > 4 sigma from the training median (evaluated, with a
    ValidityWarning), 8 chi2 not finite, 16 cut by the §3 preparation, 32 training
    density at theta_hat < 1e-3 (evaluated);
  * flags: the names of those bits (no_colour, no_theta, outside_range, chi2_nonfinite,
    cut:<rule>, outside_validity), after the values masked on reading
    (<rule>:<column>, e.g. mag_err_nonpositive:mag_err_BP, theta_nonfinite:teff) and
    by the preparation (max_mag_err:<band>, min_parallax_snr);
  * score_<X>_<ref> = residual of colour X - ref over its sigma (Eq. 18), from the
    diagonal of the colour covariance (photometry, J C_theta J^T, sigma_E^2 R R^T);
  * computed in float64.
"""


class Subcommand(NamedTuple):
    """One row of the command table."""

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    epilog: str | None = None


def _print_json(obj) -> None:
    print(json.dumps(_finite(obj), separators=(", ", ": "), allow_nan=False), flush=True)


def _finite(obj):
    """``obj`` with NaN and ±inf floats replaced by None (strict JSON has no NaN), and
    NumPy scalars as Python numbers."""
    if type(obj).__module__ == "numpy" and getattr(obj, "ndim", None) == 0:
        obj = obj.item()
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _read(args):
    """The catalog ``args.catalog`` (with ``args.preset``); an empty one is an error."""
    from bayesdsm.catalog import read_catalog, require_rows

    return require_rows(read_catalog(args.catalog, preset=args.preset), args.catalog, args.preset)


def _prepare(cat, no_prepare: bool = False):
    """(catalog, CutReport): the §3 preparation with the paper's defaults, or (with
    ``no_prepare``) the catalog as read and the problems found on reading."""
    from bayesdsm.config import CutsConfig
    from bayesdsm.cuts import input_report, prepare

    return (cat, input_report(cat)) if no_prepare else prepare(cat, CutsConfig())


def _write_cuts(report, path) -> str:
    """Write the preparation report as JSON to ``path``, atomically; returns the path."""
    return str(report.write_json(path))


def _cuts_path(out) -> str:
    return f"{out}.cuts.json"


def _check_out(out, formats=None) -> None:
    """Refuse an output path whose extension names no table format, before any work."""
    from pathlib import Path

    from bayesdsm.errors import ConfigError
    from bayesdsm.evaluate import table_format

    fmt = table_format(Path(out))
    if formats is not None and Path(out).suffix.lower() not in formats:
        raise ConfigError(f"{out}: use one of {sorted(formats)} for this output ({fmt} is not)")


# --------------------------------------------------------------------------- import-green2020


def configure_import_green2020(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", help="folder with the released Green 2020 files")
    p.add_argument("--out", required=True, help="model file to write")


def run_import_green2020(args) -> int:
    from bayesdsm.model_file import import_green2020, save_model

    model = import_green2020(args.directory)
    path = save_model(model, args.out)
    _info(f"wrote {path}")
    _print_json({"model": str(path), "bands": list(model.bands), "source": "green2020"})
    return 0


# --------------------------------------------------------------------------- evaluate


def configure_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file (bayesdsm fit / import-green2020)")
    p.add_argument("catalog", help="catalog file (FITS, Parquet, ECSV, CSV, HDF5)")
    p.add_argument("--out", required=True, help="per-star table to write (format from suffix)")
    p.add_argument("--preset", default=None, help="column preset of the catalog, e.g. green2020")
    p.add_argument(
        "--no-prepare",
        action="store_true",
        help="use the catalog as read: do not apply the §3 cuts and floors (already prepared)",
    )
    p.add_argument("--chunk", type=int, default=4096, help="stars per jitted batch")


def run_evaluate(args) -> int:
    from bayesdsm.config import CutsConfig
    from bayesdsm.evaluate import evaluate_rows, write_table
    from bayesdsm.model_file import load_model

    _check_out(args.out)
    model = load_model(args.model)
    cat = _read(args)
    res, report = evaluate_rows(
        model, cat, CutsConfig(), prepare=not args.no_prepare, chunk=args.chunk
    )
    write_table(res.columns, args.out)
    cuts = _write_cuts(report, _cuts_path(args.out))
    s = res.summary
    _info(f"wrote {args.out} ({s['n_input']} rows, {s['n_evaluated']} evaluated) and {cuts}")
    if s["n_evaluated"] == 0:
        _info(f"warning: no row could be evaluated; see the flags column and {cuts}")
    _print_json(s)
    return 0


# --------------------------------------------------------------------------- predict


def configure_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file")
    p.add_argument(
        "--theta-file", required=True, help="CSV/Parquet/ECSV table with teff, logg, feh"
    )
    p.add_argument("--out", required=True, help="table to write (format from suffix)")
    p.add_argument(
        "--ebv", type=float, default=None, help="reddening E: also write B(M + E R) as *_red"
    )


def run_predict(args) -> int:
    import numpy as np

    from bayesdsm.catalog import flag_counts
    from bayesdsm.evaluate import predict_table, read_theta_file, write_table
    from bayesdsm.model_file import load_model

    _check_out(args.out)
    model = load_model(args.model)
    t = read_theta_file(args.theta_file)
    pred = predict_table(model, t.theta, args.ebv, flags=t.flags)
    ids = {} if t.source_id is None else {"source_id": t.source_id}
    cols = {"row": np.arange(len(t.theta), dtype=np.int64), **ids, **pred}
    write_table(cols, args.out)
    ok = np.isfinite(cols[model.emulator.component_names[0]])
    _info(f"wrote {args.out} ({len(ok)} rows, {int(ok.sum())} predicted)")
    _print_json({"n_rows": int(len(ok)), "n_input": int(len(ok)), "n_predicted": int(ok.sum()),
                 "flags": flag_counts(cols["flags"]), "columns": list(cols)})  # fmt: skip
    return 0


PREDICT_EPILOG = """\
one row per row of the theta file, in its order: row, source_id (when the file has
one), teff, logg, feh, flags; a row whose theta is empty, not a number, NaN or inf gets
NaN in every model column and flags theta_missing:<col>, theta_not_a_number:<col> or
theta_nonfinite:<col>; flags also names outside_range (theta > 4 sigma from the
training median) and outside_validity (training density of the reference band < 1e-3);
columns: M_<ref> and <band>_<ref> (B M, absolute frame, E = 0), R_<band>;
with --ebv: <component>_red = B(M + E R); validity_<band>, validity_parallax
(training density, peak 1: trust M where >= 1e-2, colours where >= 1e-3);
spread_<column>: epistemic standard deviation when the model has weight samples.
"""

# --------------------------------------------------------------------------- report


def configure_report(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file, or a folder with the released Green 2020 files")
    p.add_argument("catalog", help="catalog file (FITS, Parquet, ECSV, CSV, HDF5)")
    p.add_argument("--out", required=True, help="output folder (PNGs, summary.json, report.html)")
    p.add_argument("--preset", default=None, help="column preset of the catalog, e.g. green2020")
    p.add_argument("--no-prepare", action="store_true", help="do not apply the §3 cuts and floors")
    p.add_argument(
        "--reddening",
        choices=("fit", "prior"),
        default="fit",
        help="reddening of the scores: best fit (Eq. 8-9, default) or the catalog's",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run_report(args) -> int:
    from pathlib import Path

    from bayesdsm.report import make_report

    cat, report = _prepare(_read(args), args.no_prepare)
    res = make_report(
        args.model, cat, args.out, reddening=args.reddening, progress=not args.no_progress
    )
    _write_cuts(report, Path(res.out_dir) / "cuts.json")
    _info(f"wrote {len(res.figures)} figures, {res.html}, summary.json and cuts.json")
    for name, why in res.skipped.items():
        _info(f"  not made: {name}: {why}")
    _print_json(
        {
            "out": str(res.out_dir),
            "figures": sorted(res.figures),
            "skipped": res.skipped,
            "findings": res.summary["findings"],
        }
    )
    return 0


# --------------------------------------------------------------------------- fit


def configure_fit(p: argparse.ArgumentParser) -> None:
    p.add_argument("catalog", help="survey catalog (FITS, Parquet, ECSV, CSV or HDF5)")
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--config", help="TOML/JSON TrainConfig (or tables 'train' and 'cuts')")
    p.add_argument("--preset", help="column preset of the catalog")
    p.add_argument("--resume", action="store_true", help="continue from <out>.ckpt.npz")
    p.add_argument("--no-prepare", action="store_true", help="catalog is already prepared")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_fit(args) -> int:
    from bayesdsm.pipeline import fit_catalog

    res, path = fit_catalog(args.catalog, args.out, config_file=args.config, preset=args.preset,
                            resume=args.resume, progress=not args.quiet,
                            prepared=args.no_prepare)  # fmt: skip
    _info(f"wrote {path}")
    last = res.history[-1] if res.history else {}
    _print_json({"model": str(path), "iterations": len(res.history),
                 "train_loss": last.get("train_loss"), "val_loss": last.get("val_loss"),
                 "test": last.get("test", {})})  # fmt: skip
    return 0


# --------------------------------------------------------------------------- infer


def configure_infer(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model file (bayesdsm fit / import-green2020)")
    p.add_argument("catalog", help="catalog file (FITS, Parquet, ECSV, CSV, HDF5)")
    p.add_argument("--out", required=True, help="per-star summary table (format from suffix)")
    p.add_argument("--prior", default="volume", choices=("volume", "galactic"))
    p.add_argument("--theta-prior", default="density", choices=("density", "flat"))
    p.add_argument("--idata", default=None, help="folder for ArviZ InferenceData per chunk")
    p.add_argument("--preset", default=None, help="column preset of the catalog")
    p.add_argument(
        "--method",
        default="auto",
        choices=("auto", "laplace", "hmc", "nuts"),
        help="auto: MAP + Laplace, PSIS rounds, then MCMC where they fail (with "
        "--theta-prior flat: hmc, MCMC for every star)",
    )
    p.add_argument("--chunk", type=int, default=2048, help="stars per output chunk")
    p.add_argument("--seed", type=int, default=0)
    from bayesdsm.batch import add_scheduler_arguments

    add_scheduler_arguments(p)  # a CATALOG directory (partitioned Parquet, HATS) runs on Dask


#: Output formats of ``bayesdsm infer`` for a catalog file.
_INFER_FORMATS = {
    ".parquet": "parquet",
    ".fits": "fits",
    ".ecsv": "ascii.ecsv",
    ".csv": "ascii.csv",
}

INFER_EPILOG = """\
one row per input row, in input order (columns source_id, row); flags (comma-separated)
holds the engine's flags (bayesdsm.infer.FLAGS: nonfinite_input, prior_dominated,
outside_validity, chi2, multimodal, not_converged, map_not_converged) and the values
masked on reading, as <rule>:<column> (e.g. mag_err_nonpositive:mag_err_BP,
parallax_nonfinite:parallax, ebv_err_nonpositive:ebv_err; a masked photometry, parallax
or reddening value also sets nonfinite_input). The problems found on reading (per-rule
counts) go to <out>.cuts.json.
"""


def _infer_rows(table, cat):
    """The engine's table with the catalog's reading flags merged into ``flags``."""
    import numpy as np

    rows = np.asarray(table["row"], np.int64)
    merged = []
    for engine, read in zip(np.asarray(table["flags"]).astype(str), cat.flags[rows]):
        tokens = set(engine.split(",")) | set(str(read).split(","))
        if any(not t.startswith("theta_") for t in str(read).split(",") if t):
            tokens.add("nonfinite_input")  # infer's name for a masked value it would use
        merged.append(",".join(sorted(tokens - {""})))
    table["flags"] = np.array(merged, dtype=str) if merged else np.zeros(0, str)
    return table


def _write_infer_table(table, out) -> None:
    from pathlib import Path

    from bayesdsm._util import atomic_path

    out = Path(out)
    with atomic_path(out) as tmp:
        table.write(tmp, format=_INFER_FORMATS[out.suffix.lower()], overwrite=True)


def run_infer(args) -> int:
    import os

    from bayesdsm.cuts import input_report
    from bayesdsm.infer import InferConfig, run_inference
    from bayesdsm.model_file import load_model

    cfg = InferConfig(prior=args.prior, theta_prior=args.theta_prior, method=args.method,
                      chunk_size=args.chunk, batch_size=args.chunk, seed=args.seed)  # fmt: skip
    if os.path.isdir(args.catalog):  # partitioned Parquet or HATS: bayesdsm.batch on Dask
        from bayesdsm import batch

        return batch.run_cli(args.model, args.catalog, args.out, args, config=cfg, seed=args.seed,
                             preset=args.preset)  # fmt: skip
    _check_out(args.out, _INFER_FORMATS)
    model = load_model(args.model)
    cat = _read(args)
    if not args.no_compile_cache:  # a later run loads the compiled tiers (~1 min) from disk
        from bayesdsm.batch import configure_compile_cache

        configure_compile_cache(args.compile_cache)
    table = run_inference(model, cat, args.out, cfg, idata_dir=args.idata, log=_info)
    table = _infer_rows(table, cat)
    _write_infer_table(table, args.out)
    cuts = _write_cuts(input_report(cat), _cuts_path(args.out))
    _info(f"wrote {args.out} ({len(table)} rows) and {cuts}")
    _print_json(infer_summary(table))
    return 0


def infer_summary(table) -> dict:
    """The final summary of ``bayesdsm infer``: rows, how many met the ESS/R̂ (or PSIS)
    bar, the count of every flag (every one of :data:`bayesdsm.infer.FLAGS`, with
    ``not_converged`` and ``multimodal`` among them, and the reasons found on reading)
    and the stars per method."""
    import numpy as np

    from bayesdsm.catalog import flag_counts
    from bayesdsm.infer import FLAGS

    methods = np.asarray(table["method"]).astype(str)
    counts = {name: 0 for name in FLAGS} | flag_counts(np.asarray(table["flags"]))
    return {
        "n_input": len(table),
        "n_stars": len(table),
        "converged": int(np.sum(np.asarray(table["converged"]).astype(bool))),
        "not_converged": counts["not_converged"],
        "multimodal": counts["multimodal"],
        "flags": counts,
        "methods": {m: int(np.sum(methods == m)) for m in np.unique(methods)},
    }


def configure_demo(p) -> None:
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--iterations", type=int, default=None, help="override the demo's 5")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's 10")
    p.add_argument("--no-report", action="store_true", help="skip the validation report")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def run_demo(args) -> int:
    from bayesdsm.demo import run_demo as demo

    summary = demo(args.out, iterations=args.iterations, epochs=args.epochs,
                   report=not args.no_report, progress=not args.quiet, log=_info)  # fmt: skip
    _print_json({"model": summary["model"], **summary["test"]})
    return 0


# --------------------------------------------------------------------------- epistemic


def configure_epistemic(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="trained model file (its weights are the MAP)")
    p.add_argument("catalog", help="the training catalog (FITS, Parquet, ECSV, CSV, HDF5)")
    p.add_argument("--out", required=True, help="model file to write, with weight samples")
    p.add_argument("--draws", type=int, default=100, help="weight samples to store")
    p.add_argument("--steps", type=int, default=None, help="SVI steps (default: EpistemicConfig)")
    p.add_argument("--preset", default=None, help="column preset of the catalog, e.g. green2020")
    p.add_argument("--no-prepare", action="store_true", help="do not apply the §3 cuts and floors")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_epistemic(args) -> int:
    from bayesdsm.epistemic import EpistemicConfig, fit_weight_uncertainty
    from bayesdsm.model_file import load_model, save_model

    cfg = EpistemicConfig(n_draws=args.draws, **({"steps": args.steps} if args.steps else {}))
    model = load_model(args.model)
    cat, report = _prepare(_read(args), args.no_prepare)
    model = fit_weight_uncertainty(model, cat, cfg, progress=not args.quiet)
    path = save_model(model, args.out)
    cuts = _write_cuts(report, _cuts_path(path))
    _info(f"wrote {path} and {cuts}")
    _print_json({"model": str(path), **model.meta["epistemic"]})
    return 0


#: The command table: name -> Subcommand. Add new subcommands here.
COMMANDS: dict[str, Subcommand] = {
    "demo": Subcommand(
        "train, evaluate and report on the bundled demo survey (a few minutes)",
        configure_demo,
        run_demo,
    ),
    "fit": Subcommand("train a model on a catalog (§3 cuts, §4 procedure)", configure_fit, run_fit),
    "import-green2020": Subcommand(
        "convert the released Green 2020 model files into a bayesdsm model file",
        configure_import_green2020,
        run_import_green2020,
    ),
    "evaluate": Subcommand(
        "per-star chi2, dof and residual scores of a catalog under a model",
        configure_evaluate,
        run_evaluate,
        CONVENTIONS,
    ),
    "predict": Subcommand(
        "predicted absolute magnitude, colours and R on a table of theta",
        configure_predict,
        run_predict,
        PREDICT_EPILOG,
    ),
    "infer": Subcommand(
        "per-star posteriors of theta, distance and reddening (MAP+Laplace, PSIS, HMC/NUTS)",
        configure_infer,
        run_infer,
        INFER_EPILOG,
    ),
    "epistemic": Subcommand(
        "weight uncertainty by SVI: store weight samples for a predictive spread",
        configure_epistemic,
        run_epistemic,
    ),
    "report": Subcommand(
        "figures of §5-6 (PNG), summary.json and a self-contained report.html",
        configure_report,
        run_report,
    ),
}


DEBUG_HELP = "print the traceback of an error (exit statuses unchanged)"


def build_parser() -> argparse.ArgumentParser:
    from bayesdsm import __version__

    parser = argparse.ArgumentParser(
        prog="bayesdsm",
        description="Bayesian data-driven stellar models (Green et al. 2021)",
    )
    parser.add_argument("--version", action="version", version=f"bayesdsm {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=cmd.help,
            description=cmd.help,
            epilog=cmd.epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.configure(p)
        # after the subcommand too; SUPPRESS keeps a --debug given before it
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _os_error(exc: OSError) -> str:
    """A file error as 'error: <file>: <what>; <what to do>'."""
    what = exc.strerror or _one_line(exc)
    names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f)
    hint = {
        FileNotFoundError: "check the path",
        PermissionError: "check the permissions of the file and its folder",
        IsADirectoryError: "give the path of a file",
        NotADirectoryError: "check the path",
        FileExistsError: "check the path (a file stands where a folder is needed)",
    }.get(type(exc), "check the file and the disk")
    return f"{names}: {what}; {hint}" if names else f"{what}; {hint}"


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    from bayesdsm.errors import BayesDSMWarning

    kind = "" if issubclass(category, BayesDSMWarning) else f" ({category.__name__})"
    print(f"warning{kind}: {_one_line(message)}", file=sys.stderr, flush=True)


def main(argv=None) -> int:
    """Entry point of the ``bayesdsm`` script; returns the exit status.

    2 for bad input (a :class:`~bayesdsm.errors.BayesDSMError` or a file error), 1 for
    an internal error, each as one line on stderr; ``--debug`` adds the traceback.
    Warnings are printed as one ``warning: ...`` line each.
    """
    import traceback
    import warnings

    from bayesdsm.errors import BayesDSMError, BayesDSMWarning

    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.simplefilter("default", BayesDSMWarning)  # shown, never raised
        try:
            return COMMANDS[args.command].run(args)
        except BayesDSMError as exc:
            err, code, msg = exc, EXIT_INPUT, f"error: {_one_line(exc)}"
        except OSError as exc:
            err, code, msg = exc, EXIT_INPUT, f"error: {_os_error(exc)}"
        except KeyboardInterrupt as exc:
            err, code, msg = exc, 130, "interrupted"
        except Exception as exc:
            err, code = exc, EXIT_INTERNAL
            msg = f"internal error: {type(exc).__name__}: {_one_line(exc)}" + (
                "" if args.debug else " (rerun with --debug for the traceback)"
            )
    if args.debug:
        traceback.print_exception(err)
    print(msg, file=sys.stderr, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
