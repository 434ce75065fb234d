"""The one conversion from uint8 face crops to model input, shared by training and inference."""

from __future__ import annotations

import torch

# FER2013 pixel statistics (rounded), so inputs are roughly zero-mean, unit-variance.
MEAN = 0.508
STD = 0.255


def to_model_input(images: torch.Tensor) -> torch.Tensor:
    """(B, 48, 48) or (B, 1, 48, 48) uint8 -> (B, 1, 48, 48) float32, normalised."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    return (images.float() / 255.0 - MEAN) / STD
