"""What every backend is: 48x48 uint8 faces in, probabilities in CLASSES order out; the batching
they share, and flip test-time augmentation (the one place it is done for the runtime)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np

from ferkit.face import NUM_CLASSES

# Bounds the memory of one forward pass when a folder holds thousands of faces.
MAX_BATCH = 256


class Backend(Protocol):
    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """(N, 48, 48) uint8 -> (N, 7) float32 probabilities in CLASSES order."""
        ...


Run = Callable[[np.ndarray], np.ndarray]


def in_batches(
    faces: np.ndarray,
    run: Run,
    size: int = MAX_BATCH,
    mapper: Callable[[Run, list[np.ndarray]], Iterable[np.ndarray]] = map,
) -> np.ndarray:
    """``run`` over contiguous uint8 chunks of at most ``size`` faces (``mapper`` may run them in
    parallel, in order), results concatenated."""
    faces = np.ascontiguousarray(faces, dtype=np.uint8)
    out = list(mapper(run, [faces[start : start + size] for start in range(0, len(faces), size)]))
    return np.concatenate(out) if out else np.empty((0, NUM_CLASSES), np.float32)


def with_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)``: the same as dividing the logits by it (the softmax
    forgets a constant shift), so graphs that end in a softmax can be calibrated after the fact."""
    if temperature == 1.0 or not len(probs):
        return probs
    logp = np.log(np.clip(probs, 1e-12, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    scaled = np.exp(logp)
    return (scaled / scaled.sum(axis=1, keepdims=True)).astype(np.float32)


class Calibrated:
    """A backend whose probabilities pass through the model card's temperature."""

    def __init__(self, backend: Backend, temperature: float) -> None:
        self.backend = backend
        self.temperature = temperature

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        return with_temperature(self.backend.probabilities(faces), self.temperature)


def classify(backend: Backend, faces: np.ndarray, tta: bool = False) -> np.ndarray:
    """Probabilities of ``faces``; with ``tta`` the mean over each face and its mirror image."""
    faces = np.asarray(faces, dtype=np.uint8)
    probs = backend.probabilities(faces)
    if tta:
        probs = (probs + backend.probabilities(np.ascontiguousarray(faces[:, :, ::-1]))) / 2
    return probs
