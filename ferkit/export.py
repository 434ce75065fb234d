"""Export a model to ONNX: uint8 faces in, probabilities out, so a consumer needs no ferkit.

The graph takes ``faces`` (batch, 48, 48) uint8 with a dynamic batch dimension and returns
``probabilities`` (batch, 7) in :data:`ferkit.labels.CLASSES` order; the normalisation of
:func:`ferkit.preprocess.to_model_input` and the softmax are inside it. Uses the TorchScript
exporter (``dynamo=False``): the dynamo one needs onnxscript, which ferkit does not depend on.
"""

from __future__ import annotations

import io
import json
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from ferkit.checkpoint import atomic_write
from ferkit.errors import FerkitError
from ferkit.labels import CLASSES
from ferkit.preprocess import to_model_input

OPSET = 17
INPUT_NAME = "faces"
OUTPUT_NAME = "probabilities"
FORMATS = ("onnx",)
QUANTIZE = ("int8",)


class Deployable(nn.Module):
    """A classifier wrapped to take raw uint8 faces and give probabilities (what inference wants)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.eval()

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.model(to_model_input(faces)).softmax(dim=1)


def onnx_bytes(model: nn.Module, metadata: dict[str, str] | None = None) -> bytes:
    """The serialised ONNX graph of ``model`` (batch dimension dynamic)."""
    example = torch.zeros(2, 48, 48, dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated in favour of dynamo's.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Deployable(model), (example,), buf, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )
    return _with_metadata(buf.getvalue(), metadata or {})


def _with_metadata(graph: bytes, metadata: dict[str, str]) -> bytes:
    """Record the class order (and the model card's name) inside the file itself."""
    import onnx

    proto = onnx.load_from_string(graph)
    props = {"classes": json.dumps(list(CLASSES)), "input": "uint8 gray faces (batch, 48, 48)"}
    onnx.helper.set_model_props(proto, {**props, **metadata})
    return proto.SerializeToString()


def export_model(
    model_name: str, fmt: str, out: str | Path, quantize: str | None = None,
    calibration: str | Path | None = None,
) -> Path:
    """Export a shipped model (or weights path) to ``out`` in ``fmt``; returns the path written.

    ``quantize="int8"`` writes the statically quantised graph, its activation ranges measured on
    training faces of the data set at ``calibration`` (see :mod:`ferkit.quantize`).
    """
    if fmt not in FORMATS:
        raise FerkitError(f"unknown export format {fmt!r}; supported: {', '.join(FORMATS)}")
    if quantize not in (None, *QUANTIZE):
        raise FerkitError(f"unknown quantisation {quantize!r}; supported: {', '.join(QUANTIZE)}")
    if calibration is not None and not quantize:
        raise FerkitError("--calibration is only used with --quantize int8")
    if quantize and calibration is None:
        raise FerkitError("--quantize int8 needs --calibration DATA: training faces (e.g. the FER2013 "
                          "CSV) on which to measure the activation ranges")
    from ferkit.weights import load_model

    model, card = load_model(model_name)
    metadata = {"ferkit_model": str(card.get("name", model_name)), "arch": card["arch"],
                "precision": quantize or "float32"}
    data = onnx_bytes(model, metadata)
    if quantize:
        from ferkit.quantize import calibration_faces, quantize_int8

        data = _with_metadata(quantize_int8(data, calibration_faces(calibration)), metadata)
    out = Path(out)
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return out
