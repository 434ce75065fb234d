"""Atomic training checkpoints, read back without unpickling (``torch.load(weights_only=True)``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ferkit.errors import FerkitError
from ferkit.models.store import atomic_write


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FerkitError(f"{path}: cannot read checkpoint: {exc}") from None
