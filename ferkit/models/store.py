"""Where models are kept, and the one resolver of model references (no PyTorch here).

A model reference is what a user passes as ``--model``, ``Recognizer(model=...)``, ``init_from``
or ``teachers``; :func:`resolve` turns it into a :class:`ModelRef`, and every other part of
ferkit asks it. A reference is one of:

- a shipped name (:func:`list_models`): ``ferkit/weights/<name>.onnx``, the graph the runtime
  runs, made by ``ferkit export --shipped`` from ``<name>.safetensors``, the weights training
  reads, with the card ``<name>.json`` (architecture, metrics, the command that made it);
- a weights file, ``.safetensors`` with its ``.json`` card beside it (the suffix may be left out);
- a run folder (``ferkit train --out``): its ``model.safetensors``;
- an ONNX graph, ``.onnx`` (from ``ferkit export``), its card in the graph's metadata.

Nothing is downloaded: names resolve to files inside the package.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferkit.errors import FerkitError

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_MODEL = "default"  # the model used when none is named
GRAPH_SUFFIX, WEIGHTS_SUFFIX, CARD_SUFFIX = ".onnx", ".safetensors", ".json"
RUN_MODEL = "model.safetensors"  # a run folder's final weights


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: its name in results, and the files that hold it (either may be None)."""

    name: str
    weights: Path | None = None  # .safetensors with its .json card: PyTorch, training, export
    graph: Path | None = None  # .onnx: onnxruntime
    shipped: bool = False

    def require_weights(self, purpose: str) -> Path:
        """The weights file, or a one-line error saying that ``purpose`` needs one."""
        if self.weights is None:
            raise FerkitError(f"{self.name} is an ONNX graph; {purpose} needs weights (a shipped model "
                              "name, a .safetensors file or a run folder)")
        return self.weights


def list_models() -> list[str]:
    """Names of the shipped models: a card with a graph or weights beside it."""
    return sorted(card.stem for card in WEIGHTS_DIR.glob(f"*{CARD_SUFFIX}")
                  if card.with_suffix(GRAPH_SUFFIX).is_file() or card.with_suffix(WEIGHTS_SUFFIX).is_file())


def is_graph_file(reference: str | os.PathLike) -> bool:
    return str(reference).lower().endswith(GRAPH_SUFFIX)


def resolve(reference: str | os.PathLike | None = None) -> ModelRef:
    """A model reference (None: :data:`DEFAULT_MODEL`) -> its files; a clear error if it names none."""
    text = str(reference or DEFAULT_MODEL)
    if text in list_models():
        weights, graph = (WEIGHTS_DIR / f"{text}{suffix}" for suffix in (WEIGHTS_SUFFIX, GRAPH_SUFFIX))
        return ModelRef(text, weights if weights.is_file() else None, graph if graph.is_file() else None,
                        shipped=True)
    path = Path(text)
    if is_graph_file(text):
        if not path.is_file():
            raise FerkitError(f"{text}: no such ONNX file")
        return ModelRef(path.name, graph=path)
    if path.is_dir():
        path = path / RUN_MODEL
    if path.suffix != WEIGHTS_SUFFIX:
        path = path.with_suffix(WEIGHTS_SUFFIX)
    if path.is_file():
        return ModelRef(str(path), weights=path)
    known = ", ".join(list_models()) or "none"
    raise FerkitError(f"unknown model {reference!r}: not a shipped model ({known}) nor a weights file, "
                      "run folder or .onnx graph")


def read_card(weights: str | Path) -> dict[str, Any]:
    """The JSON card beside a weights (or graph) file; it must name the architecture."""
    card_path = Path(weights).with_suffix(CARD_SUFFIX)
    if not card_path.is_file():
        raise FerkitError(f"{card_path}: model card missing (expected beside the weights)")
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise FerkitError(f"{card_path}: invalid JSON: {exc}") from None
    if "arch" not in card:
        raise FerkitError(f"{card_path}: card has no 'arch'")
    return card


def model_info(name: str) -> dict[str, Any]:
    """Card of a shipped model, with its parameter count and test accuracy at the top level."""
    card = read_card(WEIGHTS_DIR / f"{resolve(name).name}{CARD_SUFFIX}")
    metrics = card.get("metrics", {})
    return {"name": name, "arch": card["arch"], "params": metrics.get("params"),
            "test_accuracy": metrics.get("test_accuracy"), "description": card.get("description", "")}


def file_sha256(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def write_calibration(reference: str | os.PathLike | None, calibration: dict[str, Any]) -> Path:
    """Store ``calibration`` (temperature, "uncertain" threshold) in a model's JSON card, the
    source of truth every backend reads it from; returns the card's path."""
    ref = resolve(reference)
    if ref.weights is None:
        raise FerkitError(f"{ref.name}: an ONNX graph carries its card inside; calibrate the weights it "
                          "was exported from and export again")
    path = ref.weights.with_suffix(CARD_SUFFIX)
    card = read_card(ref.weights)
    card["calibration"] = calibration
    text = json.dumps(card, indent=2) + "\n"
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def atomic_write(path: Path, write: Callable[[str], object]) -> None:
    """Write through a temporary file in the same folder, then rename: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        with open(tmp, "rb+") as f:  # on disk before the rename: a crash leaves the old or the new
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove the temporary files :func:`atomic_write` left in ``folder`` when its process was
    killed mid-write (``.NAME.XXXX.tmp``); returns them."""
    stale = [p for p in Path(folder).glob(".*.tmp") if p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(obj, indent=2) + "\n"))
