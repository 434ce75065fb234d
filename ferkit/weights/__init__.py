"""The models shipped inside the package: ``<name>.safetensors`` + ``<name>.json`` cards.

Nothing is downloaded: a model name resolves to a file in this folder, anything else is taken
as a path to a user's own weights (with its card beside it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from ferkit.checkpoint import load_model_file, read_card
from ferkit.errors import FerkitError

WEIGHTS_DIR = Path(__file__).resolve().parent
# The model used when none is named; "default" resolves to it until a stronger one ships.
DEFAULT_MODEL = "paper"


def list_models() -> list[str]:
    """Names of the shipped models."""
    return sorted(p.stem for p in WEIGHTS_DIR.glob("*.safetensors"))


def resolve(name_or_path: str | Path | None) -> Path:
    """A shipped model name (or None/"default") or a path to ``.safetensors`` -> weights path."""
    name = str(name_or_path or "default")
    if name == "default" and not (WEIGHTS_DIR / "default.safetensors").is_file():
        name = DEFAULT_MODEL
    shipped = WEIGHTS_DIR / f"{name}.safetensors"
    if shipped.is_file():
        return shipped
    path = Path(name)
    if path.is_dir():
        path = path / "model.safetensors"
    path = path.with_suffix(".safetensors") if path.suffix != ".safetensors" else path
    if path.is_file():
        return path
    known = ", ".join(list_models()) or "none"
    raise FerkitError(f"unknown model {name_or_path!r}: not a shipped model ({known}) nor a weights file")


def load_model(name_or_path: str | Path | None = "default") -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode, card) for a shipped name or a weights path."""
    path = resolve(name_or_path)
    model, card = load_model_file(path)
    card.setdefault("name", path.stem if path.parent == WEIGHTS_DIR else str(path))
    return model, card


def model_info(name: str) -> dict[str, Any]:
    """Card of a shipped model, with its parameter count and test accuracy at the top level."""
    card = read_card(resolve(name))
    metrics = card.get("metrics", {})
    return {"name": name, "arch": card["arch"], "params": metrics.get("params"),
            "test_accuracy": metrics.get("test_accuracy"), "description": card.get("description", "")}
