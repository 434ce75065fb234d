"""The paper's figures as PNG files (matplotlib, headless): Figs. 1-3 of ``ferkit data summary``,
Figs. 7-10 of ``ferkit report``. Imported only when a figure is drawn (matplotlib is the ``plot``
extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ferkit.face import CLASSES  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def class_distribution(counts: dict[str, list[int]], path: Path) -> Path:
    """Fig. 1: images per class, one bar group per split."""
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(CLASSES))
    width = 0.8 / max(1, len(counts))
    for k, (name, row) in enumerate(counts.items()):
        bars = ax.bar(x + (k - (len(counts) - 1) / 2) * width, row, width, label=name)
        ax.bar_label(bars, fontsize=6)
    ax.set_xticks(x, CLASSES)
    ax.set_ylabel("images")
    ax.set_title("Class distribution")
    ax.legend()
    return _save(fig, path)


def image_grid(
    images: np.ndarray, titles: Sequence[str], path: Path, cols: int = 7,
    colors: Sequence[str] | None = None, title: str = "",
) -> Path:
    """A grid of 48x48 faces with a caption each (Figs. 2, 3 and 10)."""
    n = len(images)
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.5, rows * 2.0), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray", vmin=0, vmax=255)
            ax.set_title(titles[i], fontsize=7, color=colors[i] if colors else "black")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def training_curves(history: list[dict[str, Any]], path_loss: Path, path_acc: Path) -> tuple[Path, Path]:
    """Figs. 7 and 8: loss and accuracy per epoch, training and validation. Each epoch is a
    marker, so that a run of one or two epochs still shows its points."""
    epochs = [r["epoch"] for r in history]
    out = []
    for key, label, path in (("loss", "loss", path_loss), ("acc", "accuracy", path_acc)):
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, [r[f"train_{key}"] for r in history], "o-", ms=4, label="train")
        ax.plot(epochs, [r[f"val_{key}"] for r in history], "s-", ms=4, label="validation")
        if len(epochs) <= 10:  # whole epochs only, with room around a lone point
            ax.set_xticks(epochs)
            ax.set_xlim(min(epochs) - 0.5, max(epochs) + 0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"Model {label}")
        ax.grid(alpha=0.3)
        ax.legend()
        out.append(_save(fig, path))
    return out[0], out[1]


def confusion_matrix(cm: Sequence[Sequence[int]], path: Path, title: str = "Confusion matrix") -> Path:
    """Fig. 9: counts, coloured by the row-normalised rate (recall per class)."""
    cm = np.asarray(cm)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}\n{rates[i, j]:.0%}", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(CLASSES)), CLASSES, rotation=45)
    ax.set_yticks(range(len(CLASSES)), CLASSES)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, path)


def reliability_diagrams(panels: dict[str, dict[str, dict[str, Any]]], path: Path, columns: int = 3) -> Path:
    """Reliability diagrams: per panel (title -> {curve name -> reliability bins}), accuracy
    against mean confidence per bin, the diagonal being perfect calibration; marker area grows
    with the faces in a bin."""
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 3.2 * rows), squeeze=False)
    for ax, (title, curves) in zip(axes.flat, panels.items()):
        ax.plot([0, 1], [0, 1], color="0.7", lw=1)
        for name, bins in curves.items():
            count = np.asarray(bins["count"], float)
            used = count > 0
            conf, acc = np.asarray(bins["confidence"])[used], np.asarray(bins["accuracy"])[used]
            line, = ax.plot(conf, acc, lw=1.2, label=name)
            ax.scatter(conf, acc, s=8 + 120 * count[used] / count.sum(), color=line.get_color(), alpha=0.7)
        ax.set_title(title, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (top probability)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    return _save(fig, path)
