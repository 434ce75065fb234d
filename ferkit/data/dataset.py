"""The in-memory form every loader produces: compact uint8 images plus labels and provenance.

Plain numpy arrays, so that evaluating, inspecting and calibrating need no PyTorch; training
wraps them as tensors without copying (:func:`ferkit.train.loop.as_tensors`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferkit.face import FACE_SIZE, NUM_CLASSES

# FER2013's Usage column; OTHER marks images with no challenge split (a class-folder data set).
USAGES: tuple[str, ...] = ("Training", "PublicTest", "PrivateTest")
OTHER = -1


@dataclass
class FerData:
    """N grayscale 48x48 faces.

    images: (N, 48, 48) uint8; labels: (N,) int64 class indices; usage: (N,) int8 index into
    USAGES or OTHER; sources: where each image came from ("file.csv row 12" or a path);
    targets: optional (N, 7) float32 label distributions (the FER+ votes) that training fits
    instead of the one-hot labels.
    """

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    sources: list[str]
    origin: str = ""
    targets: np.ndarray | None = None  # (N, 7) label distributions (FER+ votes), when known

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.images.shape[0] != n or len(self.usage) != n or len(self.sources) != n:
            raise ValueError("images, labels, usage and sources must have the same length")
        if self.targets is not None and self.targets.shape != (n, NUM_CLASSES):
            raise ValueError(f"targets must be (N, {NUM_CLASSES}) label distributions")

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: np.ndarray | list[int]) -> FerData:
        idx = np.asarray(index, dtype=np.int64)
        return FerData(
            images=self.images[idx],
            labels=self.labels[idx],
            usage=self.usage[idx],
            sources=[self.sources[i] for i in idx],
            origin=self.origin,
            targets=None if self.targets is None else self.targets[idx],
        )

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=NUM_CLASSES).tolist()


def stack(images: list[np.ndarray]) -> np.ndarray:
    """(N, 48, 48) uint8 from a list of 48x48 faces (N may be 0)."""
    if not images:
        return np.empty((0, FACE_SIZE, FACE_SIZE), dtype=np.uint8)
    return np.stack(images).astype(np.uint8, copy=False)
