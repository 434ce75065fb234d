"""A model reference -> a backend that classifies faces with it, and the model's card.

onnxruntime runs a graph: a shipped model's (checked against the weights it was exported from),
or a user's ``.onnx``. Weights without a graph (a run folder, a ``.safetensors`` file) are
exported in memory first, which needs PyTorch, as does ``backend="torch"``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ferkit.errors import FerkitError, require
from ferkit.models.store import ModelRef, file_sha256, read_card, resolve
from ferkit.runtime import BACKENDS
from ferkit.runtime.backends import Backend, Calibrated
from ferkit.runtime.graph import WEIGHTS_KEY, card_from_metadata
from ferkit.runtime.onnx_backend import OnnxBackend
from ferkit.runtime.prior import Prior, PriorShifted, describe, parse_prior, prior_weights, resolved

CALIBRATIONS = ("crops", "photos")
# Remakes every shipped graph, float and int8, from the weights beside it.
SHIPPED_EXPORT = "ferkit export --shipped --calibration ../shared/data/fer2013/fer2013.csv.gz"


def _calibration(card: dict[str, Any], faces: str) -> dict[str, Any]:
    """The card's calibration for ``faces``: "crops" (FER2013-like 48x48 faces, fitted against the
    FER+ majority) or "photos" (faces a detector cropped from photos: its ``photos`` entry, else
    the crops' one on cards calibrated before photos had their own)."""
    if faces not in CALIBRATIONS:
        raise FerkitError(f"unknown calibration {faces!r}; use one of {', '.join(CALIBRATIONS)}")
    calibration = card.get("calibration") or {}
    return calibration.get("photos") or calibration if faces == "photos" else calibration


def temperature_of(card: dict[str, Any], faces: str = "crops") -> float:
    """The temperature the card's calibration for ``faces`` fitted (1.0: none)."""
    return float(_calibration(card, faces).get("temperature", 1.0))


def uncertain_below(card: dict[str, Any], faces: str = "crops") -> float:
    """Top probabilities under this mark a face "uncertain" (0.0: the card sets no threshold)."""
    return float(_calibration(card, faces).get("uncertain_below", 0.0))


def load_classifier(
    model: str | os.PathLike | None = None, backend: str = "onnx", threads: int | None = None,
    calibrated: bool = True, prior: Prior = "auto", faces: str = "crops",
) -> tuple[Backend, dict[str, Any]]:
    """(backend, card) for a model reference (:func:`ferkit.models.store.resolve`); the card's
    ``name`` is what results call the model. With ``calibrated`` (always, except to measure the
    calibration itself) the probabilities pass through the card's temperature for ``faces``
    ("crops" or "photos"); then they move to the class ``prior`` (:mod:`ferkit.runtime.prior`).
    The card's ``prior_used`` and ``calibration_used`` record both choices."""
    prior = parse_prior(prior)
    temperature = 1.0
    runner, card = _load_backend(model, backend, threads)
    if calibrated:
        temperature = temperature_of(card, faces)
    if temperature != 1.0:
        runner = Calibrated(runner, temperature)
    weights = prior_weights(card, prior)
    if weights is not None:
        runner = PriorShifted(runner, weights)
    used = {"faces": faces if calibrated else "none", "temperature": temperature}
    return runner, {**card, "prior_used": describe(resolved(card, prior)), "calibration_used": used}


def _load_backend(model: str | os.PathLike | None, backend: str,
                  threads: int | None) -> tuple[Backend, dict[str, Any]]:
    ref = runnable(model, backend)
    if backend == "onnx-int8":
        assert ref.int8_graph is not None
        return _graph_backend(ref, ref.int8_graph, threads)
    if backend == "onnx" and ref.graph is not None:
        return _graph_backend(ref, ref.graph, threads)
    from ferkit.models.io import load_model

    net, card = load_model(model)
    if backend == "torch":
        from ferkit.runtime.torch_backend import TorchBackend

        return TorchBackend(net, threads), card
    from ferkit.runtime.export import onnx_bytes  # about a second: the graph matches the weights

    return OnnxBackend(onnx_bytes(net), threads), card


def runnable(model: str | os.PathLike | None = None, backend: str = "onnx") -> ModelRef:
    """The model's files, once it is clear that this install can run them with ``backend``: a
    one-line error otherwise (an unknown model, a graph for PyTorch, weights without PyTorch)."""
    if backend not in BACKENDS:
        raise FerkitError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    ref = resolve(model)
    if backend == "onnx-int8":
        if ref.int8_graph is None:
            raise FerkitError(f"{ref.name}: no int8 graph ships with it (backend 'onnx-int8' runs a shipped "
                              "model's; `ferkit export --quantize int8` makes one for any model, then "
                              "--model FILE.onnx)")
        return ref
    if backend == "onnx" and ref.graph is not None:
        return ref
    if ref.weights is None:
        raise FerkitError(f"{ref.name}: an ONNX graph runs with backend 'onnx', not {backend!r}")
    feature = ("backend 'torch'" if backend == "torch"
               else f"running {ref.name} (weights without an ONNX graph; `ferkit export` makes one)")
    require(feature, "torch", "safetensors")
    return ref


def _graph_backend(ref: ModelRef, graph: Path, threads: int | None) -> tuple[OnnxBackend, dict[str, Any]]:
    runner = OnnxBackend(graph, threads)
    card = card_from_metadata(runner.metadata(), str(graph))
    if ref.shipped and ref.weights is not None:
        if card.get(WEIGHTS_KEY) != file_sha256(ref.weights):
            raise FerkitError(f"{graph} was not exported from {ref.weights.name} (stale graph): "
                              f"run `{SHIPPED_EXPORT}` (needs ferkit[train])")
        card = {**card, **read_card(ref.weights)}  # the card beside the weights: the source of truth
    return runner, {**card, "name": ref.name}
