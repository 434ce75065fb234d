"""Metrics (accuracy, per-class precision/recall/F1, macro-F1, confusion matrix) and batched
prediction with optional test-time augmentation (horizontal flip)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ferkit.augment import hflip
from ferkit.errors import FerkitError
from ferkit.labels import CLASSES, NUM_CLASSES
from ferkit.preprocess import to_model_input


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 512, tta: bool = False
) -> torch.Tensor:
    """Logits for uint8 faces (N, 48, 48); with ``tta`` the mean over the image and its mirror."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start : start + batch_size]).to(device)
        logits = model(x).float()
        if tta:
            logits = (logits.softmax(1) + model(hflip(x)).float().softmax(1)).div(2).log()
        out.append(logits.cpu())
    if not out:
        return torch.empty(0, NUM_CLASSES)
    return torch.cat(out)


def onnx_probabilities(runner: Any, images: torch.Tensor, tta: bool = False) -> torch.Tensor:
    """Probabilities of an onnxruntime backend for uint8 faces; with ``tta`` averaged with mirrors."""
    faces = images.numpy()
    probs = runner.probabilities(faces)
    if tta:
        probs = (probs + runner.probabilities(np.ascontiguousarray(faces[:, :, ::-1]))) / 2
    return torch.from_numpy(probs)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, k: int = NUM_CLASSES) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    return np.bincount(np.asarray(y_true) * k + np.asarray(y_pred), minlength=k * k).reshape(k, k)


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """All metrics as plain JSON-ready Python types. Macro-F1 averages over classes present in
    the labels, so a data set without 'disgust' is not penalised for it."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    cm = confusion_matrix(y_true, y_pred)
    tp = np.diag(cm).astype(float)
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    n = int(len(y_true))
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "per_class": {
            c: {"precision": float(precision[i]), "recall": float(recall[i]),
                "f1": float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(CLASSES)
        },
        "confusion_matrix": cm.tolist(),
    }


def format_metrics(m: dict[str, Any]) -> str:
    """A human-readable table of the metrics."""
    lines = [f"accuracy  {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}   n={m['n']}", ""]
    lines.append(f"{'class':10s} {'precision':>9s} {'recall':>7s} {'f1':>7s} {'support':>8s}")
    for c, v in m["per_class"].items():
        lines.append(
            f"{c:10s} {v['precision']:9.3f} {v['recall']:7.3f} {v['f1']:7.3f} {v['support']:8d}"
        )
    lines += ["", "confusion matrix (rows true, columns predicted):"]
    short = [c[:5] for c in CLASSES]
    lines.append(" " * 9 + " ".join(f"{s:>6s}" for s in short))
    for c, row in zip(short, m["confusion_matrix"]):
        lines.append(f"{c:>8s} " + " ".join(f"{v:6d}" for v in row))
    return "\n".join(lines)


def evaluate_model(
    model: str | None, data_path: str, split: str = "test", protocol: str = "canonical",
    split_seed: int = 0, tta: bool = False, exclude_train_duplicates: bool = False,
    ferplus: str | None = None,
) -> dict[str, Any]:
    """Metrics of a shipped or saved model on a data set's split.

    A folder of class sub-folders has no splits and is evaluated as a whole. With
    ``exclude_train_duplicates`` test images that are pixel copies of Training images are dropped.
    On the challenge CSV under the canonical protocol the split is also scored against the FER+
    majority labels (``ferplus``: the votes file; None looks beside the data, "" skips it), under
    the key ``ferplus``.
    """
    from ferkit.data import OTHER, load_data, split_data
    from ferkit.data.ferplus import default_votes_path, left_out_counts, read_votes, with_ferplus_labels
    from ferkit.data.summary import leaked_mask
    from ferkit.inference.recognizer import is_onnx_file, onnx_file_backend
    from ferkit.weights import load_model

    if model is not None and is_onnx_file(model):  # a graph from `ferkit export`, float or int8
        runner, card = onnx_file_backend(model, "onnx", None)
        scores = partial(onnx_probabilities, runner, tta=tta)
    else:
        net, card = load_model(model)
        scores = partial(predict_logits, net, tta=tta)
    data = load_data(data_path)
    if (data.usage == OTHER).all():
        part, split, train = data, "all", None
    else:
        splits = split_data(data, protocol, split_seed)
        part, train = splits[split], splits["train"]
    if exclude_train_duplicates:
        if train is None or split == "train":
            raise FerkitError("--exclude-train-duplicates needs a val or test split of a data set with "
                              "a training split")
        part = part.subset(np.flatnonzero(~leaked_mask(train, part)))
    predicted = scores(part.images).argmax(1).numpy()
    metrics = compute_metrics(part.labels.numpy(), predicted)
    votes_path = default_votes_path(data_path) if ferplus is None else ferplus
    if votes_path and protocol == "canonical" and split != "all":
        votes = read_votes(votes_path)
        relabelled, _ = with_ferplus_labels(data, votes)
        # The same images as ``part``, found by their source row, relabelled by the FER+ majority.
        row_of = {source: i for i, source in enumerate(relabelled.sources)}
        mine = [(row_of[s], k) for k, s in enumerate(part.sources) if s in row_of]
        rows = np.array([r for r, _ in mine], dtype=np.int64)
        kept = np.array([k for _, k in mine], dtype=np.int64)
        split_rows = np.isin(data.sources, part.sources)
        metrics["ferplus"] = compute_metrics(relabelled.labels.numpy()[rows], predicted[kept]) | {
            "votes": str(votes_path), "left_out": left_out_counts(votes, split_rows),
            "agreement_with_fer2013": float((relabelled.labels.numpy()[rows]
                                             == part.labels.numpy()[kept]).mean()) if len(rows) else 0.0,
        }
    return metrics | {"model": card.get("name", str(model)), "data": str(data_path), "split": split,
                      "protocol": protocol, "tta": tta}
