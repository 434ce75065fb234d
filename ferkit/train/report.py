"""``ferkit report RUN_DIR``: the paper's result figures (Figs. 7-10) and Table 1 as Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ferkit import figures
from ferkit.data import load_data, split_data
from ferkit.data.summary import leaked_mask
from ferkit.errors import FerkitError
from ferkit.evaluate.metrics import compute_metrics
from ferkit.face import CLASSES
from ferkit.models.io import load_model_file
from ferkit.models.store import write_json
from ferkit.runtime.torch_backend import predict_logits
from ferkit.train.config import build_config

# Table 1 of the paper (test accuracy on FER2013).
PAPER_TABLE_1 = [
    ("Zhai Y et al [13]", 0.5910),
    ("Tumen V et al [14]", 0.5710),
    ("Liu K et al [15]", 0.6503),
    ("Gan Y et al [16]", 0.6424),
    ("Gao & Ma (the paper)", 0.6520),
]


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise FerkitError(f"{path}: missing; is this a finished ferkit run folder?")
    return json.loads(path.read_text())


def prediction_picks(n_test: int, n: int = 12, seed: int = 0) -> list[int]:
    """A fixed random sample of test pictures for Fig. 10 (as the paper: right and wrong alike)."""
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(n_test, size=min(n, n_test), replace=False).tolist())


def build_report(run_dir: str | Path, data_path: str | Path | None = None, *,
                 score_test: bool = False) -> Path:
    run = Path(run_dir)
    meta = _read_json(run / "train_config.json")
    history = _read_json(run / "history.json")
    cfg = build_config(meta["config"])
    if not cfg.test_at_end and not score_test:  # a model-selection run: its test split stays unseen
        raise FerkitError(f"{run} was trained with test_at_end=false, so its test split is meant to "
                          "stay unseen; pass --score-test to score it anyway")
    data = load_data(data_path or meta["data"])
    splits = split_data(data, cfg.split, cfg.split_seed)
    test = splits["test"]
    if not len(test):
        raise FerkitError(f"{data_path or meta['data']}: the {cfg.split} split has no test images to "
                          "report on")
    model, card = load_model_file(run / "model")
    y_true = test.labels
    y_pred = predict_logits(model, torch.from_numpy(test.images)).argmax(1).numpy()
    metrics = compute_metrics(y_true, y_pred)
    leaked = leaked_mask(splits["train"], test)
    clean = compute_metrics(y_true[~leaked], y_pred[~leaked])

    figures.training_curves(history, run / "fig7_loss.png", run / "fig8_accuracy.png")
    figures.confusion_matrix(metrics["confusion_matrix"], run / "fig9_confusion.png",
                             f"Confusion matrix, test split (n={metrics['n']})")
    picks = prediction_picks(len(y_true))
    titles = [f"true {CLASSES[y_true[i]]}\npred {CLASSES[y_pred[i]]}" for i in picks]
    colors = ["green" if y_true[i] == y_pred[i] else "red" for i in picks]
    figures.image_grid(test.images[picks], titles, run / "fig10_predictions.png",
                       cols=6, colors=colors, title="Test pictures: true and predicted labels")
    summary = card.get("metrics", {})
    write_json(run / "report_metrics.json", {
        "test": metrics, "test_without_training_duplicates": clean, "summary": summary,
        "n_test_duplicates_of_training": int(leaked.sum()), "command": meta.get("command", ""),
    })
    md = render_markdown(run, meta, cfg.split, metrics, clean, int(leaked.sum()), summary)
    (run / "report.md").write_text(md)
    return run / "report.md"


def render_markdown(
    run: Path, meta: dict, split: str, m: dict, clean: dict, n_leaked: int, summary: dict,
) -> str:
    split_name = "PrivateTest" if split == "canonical" else "the paper's 10% test split"
    rows = "\n".join(f"| {name} | {acc:.2%} |" for name, acc in PAPER_TABLE_1)
    per_class = "\n".join(
        f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
        for c, v in m["per_class"].items()
    )
    lines = [
        f"# ferkit run report: `{run.name}`", "",
        f"Command: `{meta.get('command', '')}`", "",
        f"Split: **{split}** (test = {split_name}, n = {m['n']}); best epoch "
        f"{summary.get('best_epoch')} of {summary.get('epochs_run')} by validation accuracy "
        f"({summary.get('val_accuracy', 0):.4f}); {summary.get('params', 0):,} parameters; "
        f"{summary.get('train_minutes', 0):.1f} training minutes at "
        f"{summary.get('images_per_s', 0):.0f} images/s.", "",
        "## Table 1: test accuracy on FER2013", "",
        "| Algorithm | Test accuracy |", "| --- | --- |", rows,
        f"| **ferkit `{run.name}` (this run)** | **{m['accuracy']:.2%}** |", "",
    ]
    lines += [f"Without the {n_leaked} test images that are exact pixel copies of training-split images: "
              f"accuracy {clean['accuracy']:.2%}, macro-F1 {clean['macro_f1']:.4f} (n = {clean['n']}).", ""]
    lines += [
        f"Macro-F1: {m['macro_f1']:.4f}", "",
        "| class | precision | recall | F1 | support |", "| --- | --- | --- | --- | --- |", per_class, "",
        "## Figures", "",
        "Fig. 7, loss | Fig. 8, accuracy", "--- | ---",
        "![loss](fig7_loss.png) | ![accuracy](fig8_accuracy.png)", "",
        "Fig. 9, confusion matrix", "", "![confusion](fig9_confusion.png)", "",
        "Fig. 10, test pictures (green: correct, red: wrong)", "", "![predictions](fig10_predictions.png)",
        "",
    ]
    return "\n".join(lines)
