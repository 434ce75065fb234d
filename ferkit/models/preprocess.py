"""The one conversion from uint8 face crops to model input, shared by training, export and the
PyTorch backend, and a network wrapped to take the crops themselves."""

from __future__ import annotations

import torch
import torch.nn as nn

from ferkit.face import MEAN, STD


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """(B, 48, 48) or (B, 1, 48, 48) uint8 -> (B, 1, 48, 48) float32, normalised."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return (images.float() / 255.0 - MEAN) / STD


class Deployable(nn.Module):
    """A classifier wrapped to take raw uint8 faces and give probabilities (what inference wants,
    and what an exported graph computes)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.model(to_model_input(faces)).softmax(dim=1)
