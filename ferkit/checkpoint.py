"""Weights (safetensors + a JSON card beside them) and atomic training checkpoints.

A model file is ``NAME.safetensors`` with ``NAME.json`` next to it: the architecture, its
keyword arguments and whatever metrics and command produced it. Nothing is ever unpickled:
weights load with safetensors, training checkpoints with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from ferkit.errors import FerkitError
from ferkit.models import create_model


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))


def save_model(model: nn.Module, path: str | Path, card: dict[str, Any]) -> None:
    """Save ``model`` as safetensors plus its card (must hold ``arch`` and ``model`` kwargs)."""
    path = Path(path).with_suffix(".safetensors")
    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp))
    write_json(path.with_suffix(".json"), card)


def read_card(path: str | Path) -> dict[str, Any]:
    card_path = Path(path).with_suffix(".json")
    if not card_path.is_file():
        raise FerkitError(f"{card_path}: model card missing (expected beside the weights)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise FerkitError(f"{card_path}: invalid JSON: {exc}") from None
    if "arch" not in card:
        raise FerkitError(f"{card_path}: card has no 'arch'")
    return card


def load_model_file(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the card's architecture and load the safetensors weights into it (eval mode)."""
    path = Path(path).with_suffix(".safetensors")
    if not path.is_file():
        raise FerkitError(f"{path}: no such weights file")
    card = read_card(path)
    model = create_model(card["arch"], **card.get("model", {}))
    try:
        state = load_file(path)
    except Exception as exc:  # safetensors raises its own error types
        raise FerkitError(f"{path}: cannot read weights: {exc}") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError:  # same names, other shapes: the card does not describe these weights
        missing, unexpected = ["shapes"], []
    if missing or unexpected:
        raise FerkitError(f"{path}: weights do not match architecture {card['arch']!r}")
    return model.eval(), card


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FerkitError(f"{path}: cannot read checkpoint: {exc}") from None
