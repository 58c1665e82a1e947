"""The Dask options of ``bayesdsm infer`` (called by :mod:`bayesdsm.cli` for directories)."""

from __future__ import annotations

import sys

__all__ = ["add_scheduler_arguments", "run_cli"]


def add_scheduler_arguments(parser) -> None:
    """Add ``--scheduler``, ``--connect-timeout``, ``--compile-cache`` / ``--no-compile-cache``
    and ``--no-progress`` to ``parser``."""
    parser.add_argument(
        "--scheduler",
        default="local",
        metavar="ADDRESS|local[:N]|sync",
        help="for a CATALOG directory: a Dask scheduler address (tcp://host:8786), "
        "local[:N] to start N worker processes here (default: one per core), or sync to run "
        "in this process",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds to wait for a remote scheduler (default 5)",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--compile-cache",
        metavar="DIR",
        help="persistent XLA compilation cache (default: $BAYESDSM_COMPILE_CACHE, else "
        "JAX's configured one, else ~/.cache/bayesdsm/jax on each worker); later runs and "
        "new worker processes load the compiled engine from it instead of compiling it",
    )
    cache.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="compile the engine in every run (no persistent cache)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar or dashboard link"
    )


def run_cli(
    model,
    catalog_dir,
    out_dir,
    args,
    *,
    config=None,
    seed=0,
    preset=None,
    partition_fn=None,
    stream=None,
) -> int:
    """Run :func:`~bayesdsm.batch.infer_partitions` for the CLI and print the summary.

    Args:
        model: model-file path; catalog_dir, out_dir: directories.
        args: the parsed namespace with the options of :func:`add_scheduler_arguments`.
        config, seed, preset: passed through to the engine and the catalog reader.
        partition_fn: the engine (default :data:`~bayesdsm.batch.DEFAULT_ENGINE`).
        stream: where the summary goes (default stdout).

    Returns:
        Exit status: 0 all partitions done, 1 some failed (the others are done),
        2 the run could not start (e.g. unreachable scheduler; message on stderr).
    """
    from bayesdsm.batch._errors import BatchError
    from bayesdsm.batch._scheduler import DEFAULT_ENGINE, infer_partitions

    stream = stream or sys.stdout
    compile_cache = getattr(args, "compile_cache", None) or True
    if getattr(args, "no_compile_cache", False):
        compile_cache = False
    try:
        run = infer_partitions(
            model,
            catalog_dir,
            out_dir,
            scheduler=args.scheduler,
            config=config,
            seed=seed,
            partition_fn=partition_fn or DEFAULT_ENGINE,
            preset=preset,
            connect_timeout=args.connect_timeout,
            progress=not args.no_progress,
            compile_cache=compile_cache,
        )
    except (BatchError, FileNotFoundError) as err:
        print(f"bayesdsm infer: error: {err}", file=sys.stderr)
        return 2
    print(run.summary, file=stream)
    print(f"results: {out_dir}/partitions/ (manifest: {run.manifest})", file=stream)
    return 1 if run.summary.n_failed else 0
