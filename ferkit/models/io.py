"""PyTorch models from and to files: ``NAME.safetensors`` with its card ``NAME.json`` beside it.

The card holds the architecture, its keyword arguments and whatever metrics and command produced
the weights. Nothing is ever unpickled: weights load with safetensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch.nn as nn
from safetensors.torch import load_file, save_file

from ferkit.errors import FerkitError
from ferkit.models import create_model
from ferkit.models.store import CARD_SUFFIX, WEIGHTS_SUFFIX, atomic_write, read_card, resolve, write_json


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under DDP and torch.compile wrappers."""
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)


def save_model(model: nn.Module, path: str | Path, card: dict[str, Any]) -> None:
    """Save ``model`` as safetensors plus its card (must hold ``arch`` and ``model`` kwargs)."""
    path = Path(path).with_suffix(WEIGHTS_SUFFIX)
    state = {k: v.detach().contiguous().cpu() for k, v in unwrap(model).state_dict().items()}
    atomic_write(path, lambda tmp: save_file(state, tmp))
    write_json(path.with_suffix(CARD_SUFFIX), card)


def load_model_file(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Build the card's architecture and load the safetensors weights into it (eval mode)."""
    path = Path(path).with_suffix(WEIGHTS_SUFFIX)
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


def load_model(reference: str | os.PathLike | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, card) for a shipped name, a weights file or a run folder."""
    ref = resolve(reference)
    model, card = load_model_file(ref.require_weights("PyTorch"))
    card.setdefault("name", ref.name)
    return model, card
