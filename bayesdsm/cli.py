"""The ``bayesdsm`` command line.

Every subcommand is one small ``run_<name>(args) -> int`` function plus a
``configure_<name>(parser)`` that adds its arguments, registered in :data:`COMMANDS`
(name -> :class:`Subcommand`). To add a subcommand, write the two functions and add one
row to the table. Heavy imports happen inside the ``run_`` functions so that
``bayesdsm --help`` stays fast.

Errors caused by the user's input (:class:`~bayesdsm.errors.BayesDSMError`) are printed
as one ``error: ...`` line on stderr with exit status 2; summaries meant for scripts go
to stdout as one line of JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Subcommand", "COMMANDS", "build_parser", "main"]

CONVENTIONS = """\
conventions (Green et al. 2021, Eq. 3-9, 18):
  * chi2 = dc^T C_c^-1 dc in colour space, dc = B(M(theta_hat) + E_hat R + mu - m_hat);
    the colours (X - ref) of the observed bands, plus M_ref when the parallax is
    usable (parallax_ok after the cuts: parallax/sigma >= 5 and parallax > 0);
  * the catalog's reddening prior (E_hat, sigma_E) enters the covariance as
    sigma_E^2 R R^T, and J = d(M + E_hat R)/d(theta) is taken at theta_hat;
  * dof = (number of modelled components) - 1; a star with dof <= 0 (no colour) is
    flagged (flag bit 1) and gets NaN chi2/dof and scores; it is left out of the summary;
  * flag bits: 1 no colour, 2 no theta_hat, 4 theta_hat > 4 sigma from the training
    median (evaluated, with a ValidityWarning), 8 chi2 not finite;
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
    print(json.dumps(obj, separators=(", ", ": ")), flush=True)


def _info(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


def _prepare(cat):
    """The §3 preparation with the paper's defaults; returns the prepared catalog."""
    from bayesdsm.config import CutsConfig
    from bayesdsm.cuts import prepare

    prepared, _report = prepare(cat, CutsConfig())
    return prepared


def run_evaluate(args) -> int:
    from bayesdsm.catalog import read_catalog
    from bayesdsm.evaluate import evaluate_catalog, write_table
    from bayesdsm.model_file import load_model

    model = load_model(args.model)
    cat = read_catalog(args.catalog, preset=args.preset)
    if not args.no_prepare:
        cat = _prepare(cat)
    res = evaluate_catalog(model, cat, chunk=args.chunk)
    write_table(res.columns, args.out)
    _info(f"wrote {args.out}")
    _print_json(res.summary)
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
    from bayesdsm.evaluate import predict_table, read_theta_table, write_table
    from bayesdsm.model_file import load_model

    model = load_model(args.model)
    theta = read_theta_table(args.theta_file)
    cols = predict_table(model, theta, args.ebv)
    write_table(cols, args.out)
    _info(f"wrote {args.out}")
    _print_json({"n_rows": int(len(theta)), "columns": list(cols)})
    return 0


PREDICT_EPILOG = """\
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
    from bayesdsm.catalog import read_catalog
    from bayesdsm.report import make_report

    cat = read_catalog(args.catalog, preset=args.preset)
    if not args.no_prepare:
        cat = _prepare(cat)
    res = make_report(
        args.model, cat, args.out, reddening=args.reddening, progress=not args.no_progress
    )
    _info(f"wrote {len(res.figures)} figures, {res.html} and summary.json")
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
    from bayesdsm.train import fit_catalog

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


def run_infer(args) -> int:
    import os

    from bayesdsm.catalog import read_catalog
    from bayesdsm.infer import InferConfig, run_inference
    from bayesdsm.model_file import load_model

    cfg = InferConfig(prior=args.prior, theta_prior=args.theta_prior, method=args.method,
                      chunk_size=args.chunk, batch_size=args.chunk, seed=args.seed)  # fmt: skip
    if os.path.isdir(args.catalog):  # partitioned Parquet or HATS: bayesdsm.batch on Dask
        from bayesdsm import batch

        return batch.run_cli(args.model, args.catalog, args.out, args, config=cfg, seed=args.seed,
                             preset=args.preset)  # fmt: skip
    if not args.no_compile_cache:  # a later run loads the compiled tiers (~1 min) from disk
        from bayesdsm.batch import configure_compile_cache

        configure_compile_cache(args.compile_cache)
    table = run_inference(load_model(args.model), read_catalog(args.catalog, preset=args.preset),
                          args.out, cfg, idata_dir=args.idata, log=_info)  # fmt: skip
    _info(f"wrote {args.out}")
    _print_json(infer_summary(table))
    return 0


def infer_summary(table) -> dict:
    """The final summary of ``bayesdsm infer``: stars, how many met the ESS/R̂ (or PSIS)
    bar, the count of every flag of :data:`bayesdsm.infer.FLAGS` (``not_converged`` and
    ``multimodal`` among them) and the stars per method."""
    import numpy as np

    from bayesdsm.infer import FLAGS

    flag_sets = [set(str(f).split(",")) - {""} for f in table["flags"]]
    methods = np.asarray(table["method"]).astype(str)
    counts = {name: sum(name in f for f in flag_sets) for name in FLAGS}
    return {
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
    from bayesdsm.catalog import read_catalog
    from bayesdsm.epistemic import EpistemicConfig, fit_weight_uncertainty
    from bayesdsm.model_file import load_model, save_model

    cfg = EpistemicConfig(n_draws=args.draws, **({"steps": args.steps} if args.steps else {}))
    cat = read_catalog(args.catalog, preset=args.preset)
    cat = cat if args.no_prepare else _prepare(cat)
    model = fit_weight_uncertainty(load_model(args.model), cat, cfg, progress=not args.quiet)
    path = save_model(model, args.out)
    _info(f"wrote {path}")
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


def build_parser() -> argparse.ArgumentParser:
    from bayesdsm import __version__

    parser = argparse.ArgumentParser(
        prog="bayesdsm",
        description="Bayesian data-driven stellar models (Green et al. 2021)",
    )
    parser.add_argument("--version", action="version", version=f"bayesdsm {__version__}")
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
    return parser


def main(argv=None) -> int:
    """Entry point of the ``bayesdsm`` script; returns the exit status."""
    from bayesdsm.errors import BayesDSMError

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except BayesDSMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
