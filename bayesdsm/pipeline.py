"""``bayesdsm fit`` as one function: read the catalogue, apply the §3 cuts, train (§4),
save the model file. The data flow down: catalogue → cuts → training → model file."""

from __future__ import annotations

from pathlib import Path

from bayesdsm.train import TrainConfig, TrainResult, read_train_config, to_stellar_model, train

__all__ = ["fit_catalog"]


def fit_catalog(
    catalog,
    out,
    *,
    config_file=None,
    preset=None,
    resume: bool = False,
    progress: bool = True,
    prepared: bool = False,
    config: TrainConfig | None = None,
) -> tuple[TrainResult, Path]:
    """``bayesdsm fit``: read, prepare (§3), train (§4), save the model file.

    Args:
        catalog: the catalogue file (any format :func:`bayesdsm.catalog.read_catalog` reads).
        out: the model file to write; the checkpoint is ``<out>.ckpt.npz``.
        config_file: a TOML/JSON file of a :class:`~bayesdsm.train.TrainConfig`, or of
            tables ``train`` and ``cuts`` (:func:`~bayesdsm.train.read_train_config`).
        preset: the catalogue's column preset.
        resume: continue from the checkpoint if it exists.
        progress: show progress bars.
        prepared: the catalogue has been through the §3 cuts already.
        config: the settings when there is no ``config_file`` (default: ``TrainConfig()``).

    Returns:
        (the :class:`~bayesdsm.train.TrainResult`, the model file's path). The §3 report
        is also written beside the model, as ``<out>.cuts.json``.
    """
    from bayesdsm.catalog import read_catalog, require_rows
    from bayesdsm.cuts import prepare
    from bayesdsm.model_file import save_model

    cuts_cfg = None
    if config_file is not None:
        config, cuts_cfg = read_train_config(config_file)
    config = config or TrainConfig()
    cat = require_rows(read_catalog(catalog, preset=preset), catalog, preset, "nothing to train on")
    out = Path(out)
    report = None
    if not prepared:
        cat, report = prepare(cat, cuts_cfg)
        report.write_json(f"{out}.cuts.json")  # what the §3 cuts removed, beside the model
    ckpt = out.with_name(out.name + ".ckpt.npz")
    result = train(cat, config, checkpoint=ckpt, resume=resume, progress=progress,
                   cut_report=report)  # fmt: skip
    meta = {"catalog": str(catalog)}
    if report is not None:
        meta["cuts"] = report.to_dict()
    return result, save_model(to_stellar_model(result, meta), out)
