"""``bayesdsm demo``: the whole pipeline on the bundled demo survey, in a few minutes.

It reads the demo survey (:func:`bayesdsm.data.demo_path`), applies the §3 preparation,
trains an emulator with a shortened §4 schedule (:func:`demo_training`; the paper's is
20 iterations × 25 epochs), saves the model file, evaluates χ² on the held-out test stars
and writes the validation report (figures, ``summary.json``, ``report.html``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

__all__ = ["demo_training", "quick_model", "quick_training", "run_demo"]


def demo_training():
    """The demo's shortened §4 schedule; everything else is the paper's.

    The demo survey has ~20k training stars, so an epoch at the paper's batch of 1024 is
    only 20 steps. The demo takes batch 128 and learning rate 2e-3 (decaying as in §4)
    for 5 iterations × 10 epochs (≈ 8k steps), with the χ² threshold reaching 5 by
    iteration 3; one learning rate for all weights (the extinction layer's too).
    """
    from bayesdsm.train import TrainConfig

    return TrainConfig(n_iterations=5, epochs=10, batch_size=128, learning_rate=2e-3,
                       extinction_learning_rate=None, chi2_end_iteration=3,
                       validate_every_epoch=False)  # fmt: skip


def quick_training():
    """A 4 × 20-epoch schedule for a few thousand stars (the notebooks' small settings).

    Few stars give few steps, so the learning rate is 1e-2 (10× the paper's, for all
    weights) and the χ² threshold reaches 5 by the last iteration.
    """
    from bayesdsm.train import TrainConfig

    return TrainConfig(n_iterations=4, epochs=20, batch_size=128, learning_rate=1e-2,
                       extinction_learning_rate=None, chi2_end_iteration=4,
                       validate_every_epoch=False)  # fmt: skip


def quick_model(cat, path, *, n_stars: int = 3000, seed: int = 0, log=print):
    """The model file at ``path``; if it is missing, a quick fit (:func:`quick_training`)
    on ``n_stars`` random stars of the prepared catalog ``cat`` is saved there first."""
    from bayesdsm.model_file import load_model, save_model
    from bayesdsm.train import to_stellar_model, train

    path = Path(path)
    if not path.is_file():
        log(f"{path} not found: fitting a quick model on {n_stars} stars")
        rows = np.random.default_rng(seed).choice(len(cat), min(n_stars, len(cat)), replace=False)
        save_model(to_stellar_model(train(cat.subset(np.sort(rows)), quick_training())), path)
    return load_model(path)


def run_demo(out_dir, *, iterations: int | None = None, epochs: int | None = None,
             report: bool = True, progress: bool = True, log=print) -> dict:  # fmt: skip
    """Train on the demo survey and write ``model.bdsm`` and ``report/`` into ``out_dir``.

    Returns:
        a summary dict (also written to ``out_dir/demo_summary.json``).
    """
    from bayesdsm.catalog import read_catalog
    from bayesdsm.cuts import prepare
    from bayesdsm.data import demo_path
    from bayesdsm.evaluate import evaluate_catalog
    from bayesdsm.model_file import save_model
    from bayesdsm.train import to_stellar_model, train

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = demo_training()
    changes = {k: v for k, v in (("n_iterations", iterations), ("epochs", epochs)) if v}
    if changes:
        n_it = changes.get("n_iterations", config.n_iterations)
        changes["chi2_end_iteration"] = max(1, min(config.chi2_end_iteration, n_it - 2))
        config = dataclasses.replace(config, **changes)
    path = demo_path()
    log(f"demo survey: {path}")
    cat, cut_report = prepare(read_catalog(path))
    log(str(cut_report))
    log(f"training: {config.n_iterations} iterations × {config.epochs} epochs on {len(cat)} stars")
    result = train(cat, config, checkpoint=out / "model.bdsm.ckpt.npz", progress=progress,
                   cut_report=cut_report)  # fmt: skip
    model = to_stellar_model(result, {"catalog": str(path), "cuts": cut_report.to_dict()})
    model_path = save_model(model, out / "model.bdsm")
    log(f"wrote {model_path}")
    test = cat.subset(result.split == 2)
    ev = evaluate_catalog(model, test).summary
    summary = {
        "model": str(model_path),
        "n_train_stars": int(np.sum(result.split == 0)),
        "test": ev,
        "history_last": result.history[-1] if result.history else {},
    }
    if report:
        from bayesdsm.report import make_report

        rep_dir = out / "report"
        make_report(model, test, rep_dir)
        summary["report"] = str(rep_dir / "report.html")
        log(f"wrote {rep_dir / 'report.html'}")
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary
