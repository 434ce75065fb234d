"""Run a batch of 48x48 uint8 faces through a model: PyTorch or onnxruntime, one interface."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol

import numpy as np
import torch
import torch.nn as nn

from ferkit.errors import FerkitError
from ferkit.export import Deployable
from ferkit.labels import NUM_CLASSES

BACKENDS = ("torch", "onnx")
# Bounds the memory of one forward pass when a folder holds thousands of faces.
MAX_BATCH = 256


class Backend(Protocol):
    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        """(N, 48, 48) uint8 -> (N, 7) float32 probabilities in CLASSES order."""
        ...


class TorchBackend:
    """The model in eval mode under ``torch.inference_mode``."""

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        self._net = Deployable(model)
        if threads:
            torch.set_num_threads(threads)

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return in_batches(faces, lambda batch: self._net(torch.from_numpy(batch)).numpy())


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


def make_backend(name: str, model: nn.Module, threads: int | None = None) -> Backend:
    """"torch" or "onnx" (the ONNX graph is exported in memory from the same weights)."""
    if name == "torch":
        return TorchBackend(model, threads)
    if name == "onnx":
        from ferkit.inference.onnx_backend import OnnxBackend

        return OnnxBackend.from_torch(model, threads=threads)
    raise FerkitError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
