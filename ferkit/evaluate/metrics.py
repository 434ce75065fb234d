"""Metrics of a classifier: accuracy, per-class precision/recall/F1, macro-F1, confusion matrix;
also over faces a detector may have missed (labelled photos, end to end)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferkit.face import CLASSES, NUM_CLASSES

MISSED = -1  # the prediction of a face no detection matched: never equal to a label


def compute_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """All metrics as plain JSON-ready Python types. Macro-F1 averages over classes present in
    the labels, so a data set without 'disgust' is not penalised for it."""
    return _metrics(y_true, y_pred, count_misses=False)


def metrics_with_misses(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Metrics over all faces where ``y_pred`` is :data:`MISSED` for a face never found.

    A miss lowers its class's recall (it is in the support) and no class's precision (it is no
    prediction). Equals :func:`compute_metrics` when nothing is missed, plus ``missed`` per true
    class; the confusion matrix is over found faces.
    """
    return _metrics(y_true, y_pred, count_misses=True)


def _metrics(y_true: np.ndarray, y_pred: np.ndarray, count_misses: bool) -> dict[str, Any]:
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    k = NUM_CLASSES
    cols = np.where(y_pred == MISSED, k, y_pred)  # misses in an extra column
    cm = np.bincount(y_true * (k + 1) + cols, minlength=k * (k + 1)).reshape(k, k + 1)
    found = cm[:, :k]
    tp = np.diag(found).astype(float)
    support = cm.sum(1)
    predicted = found.sum(0)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = support > 0
    n = int(len(y_true))
    per_class = {}
    for i, c in enumerate(CLASSES):
        per_class[c] = {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                        "support": int(support[i])}
        if count_misses:
            per_class[c]["missed"] = int(cm[i, k])
    return {
        "n": n,
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        # The mean recall over present classes: accuracy as if every class were equally common.
        "balanced_accuracy": float(recall[present].mean()) if present.any() else 0.0,
        "worst_recall": float(recall[present].min()) if present.any() else 0.0,
        "worst_class": CLASSES[int(np.flatnonzero(present)[recall[present].argmin()])]
        if present.any() else "",
        "per_class": per_class,
        "confusion_matrix": found.tolist(),
    }


def calibration_line(c: dict[str, Any]) -> str:
    """ECE and NLL in one line, and what the "uncertain" flag marks when the card sets one."""
    line = f"calibration: ECE {c['ece']:.4f} (15 bins)   NLL {c['nll']:.4f}"
    u = c.get("uncertain")
    if u:
        flagged = "-" if u["accuracy_flagged"] is None else f"{u['accuracy_flagged']:.3f}"
        rest = "-" if u["accuracy_rest"] is None else f"{u['accuracy_rest']:.3f}"
        line += (f"   uncertain (top probability < {u['below']:.2f}): {u['share']:.1%} of faces, "
                 f"accuracy {flagged} against {rest} for the rest")
    return line


def format_metrics(m: dict[str, Any]) -> str:
    """A human-readable table of the metrics."""
    lines = [f"accuracy  {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}   balanced accuracy "
             f"{m['balanced_accuracy']:.4f}   worst recall {m['worst_recall']:.4f} ({m['worst_class']})   "
             f"n={m['n']}"]
    if "calibration" in m:
        lines.append(calibration_line(m["calibration"]))
    lines.append("")
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
