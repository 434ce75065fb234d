"""PyTorch inference (the ``train`` extra): the ``backend="torch"`` of the runtime, and the
logits of a network over a stack of faces on its own device, which training and its reports use."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from ferkit.face import NUM_CLASSES
from ferkit.models.preprocess import Deployable, to_model_input
from ferkit.runtime.backends import in_batches


class TorchBackend:
    """The model in eval mode under ``torch.inference_mode``, on the CPU; ``threads`` sets
    PyTorch's intra-op threads (None keeps its setting)."""

    def __init__(self, model: nn.Module, threads: int | None = None) -> None:
        self._net = Deployable(model)
        if threads:
            torch.set_num_threads(threads)

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return in_batches(faces, lambda batch: self._net(torch.from_numpy(batch)).numpy())


@torch.no_grad()
def predict_logits(
    model: nn.Module, images: torch.Tensor, batch_size: int = 512, tta: bool = False
) -> torch.Tensor:
    """Logits for uint8 faces (N, 48, 48) on the model's device; with ``tta`` the log of the mean
    probability over each face and its mirror (training's teachers, validation and test scores)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(images), batch_size):
        x = to_model_input(images[start : start + batch_size]).to(device)
        logits = model(x).float()
        if tta:
            logits = (logits.softmax(1) + model(x.flip(-1)).float().softmax(1)).div(2).log()
        out.append(logits.cpu())
    if not out:
        return torch.empty(0, NUM_CLASSES)
    return torch.cat(out)
