"""ONNX graphs from PyTorch weights (the ``train`` extra): ``ferkit export`` for one model, and
``ferkit export --shipped`` for the graphs inside the package.

The graphs follow :mod:`ferkit.runtime.graph`. They are made with the TorchScript exporter
(``dynamo=False``): the dynamo one needs onnxscript, which ferkit does not depend on. The
safetensors weights stay the source of truth: after replacing a shipped model's weights, run
``ferkit export --shipped`` again (``tests/test_shipped_graphs.py`` catches a stale graph).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.errors import FerkitError
from ferkit.face import FACE_SIZE
from ferkit.models.blocks import ResidualSEBlock, SqueezeExcite
from ferkit.models.io import load_model
from ferkit.models.paper import PaperNet
from ferkit.models.preprocess import Deployable
from ferkit.models.store import (
    GRAPH_SUFFIX,
    INT8_SUFFIX,
    WEIGHTS_DIR,
    atomic_write,
    file_sha256,
    list_models,
    resolve,
)
from ferkit.runtime.graph import INPUT_NAME, OPSET, OUTPUT_NAME, graph_metadata

FORMATS = ("onnx",)
QUANTIZE = ("int8",)


class _GraphBlock(nn.Module):
    """A :class:`ResidualSEBlock` computing the same function in the order onnxruntime runs fastest.

    The SE scale multiplies the max-pool's output instead of its input. That is exact: the scale
    is a sigmoid, never negative, and ``max(s * x) = s * max(x)`` for ``s >= 0`` (float rounding is
    monotonic too). The multiply then touches a quarter of the values, and the squeeze is a
    GlobalAveragePool with 1x1 convolutions, which onnxruntime keeps in its blocked NCHWc layout
    instead of reordering the full-resolution tensor out of it and back for a ReduceMean.
    On the AVX2 EPYC the float graph gains little (its convolutions, 83-86% of the time, already
    run at the FMA peak): 1.03x on one core and 1.08x at batch 64 on two in one A/B, 0.90-1.09x
    across three runs of benchmarks/crop_speed.py. The int8 graph gains 1.22x on one core: no
    uint8 max-pool is left outside onnxruntime's NHWC kernels.
    """

    def __init__(self, block: ResidualSEBlock) -> None:
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.block
        y = b.bn2(b.conv2(torch.relu(b.bn1(b.conv1(x)))))
        if isinstance(b.se, SqueezeExcite):
            fc1, fc2 = b.se.fc1, b.se.fc2
            w = F.conv2d(F.adaptive_avg_pool2d(y, 1), fc1.weight[:, :, None, None], fc1.bias)
            w = torch.sigmoid(F.conv2d(torch.relu(w), fc2.weight[:, :, None, None], fc2.bias))
            y = b.pool(y) * w
        else:
            y = b.pool(b.se(y))
        if b.shortcut is not None:
            y = y + b.shortcut(x)
        return torch.relu(y)


class _GraphPaperNet(nn.Module):
    """:class:`PaperNet` as exported: its blocks as :class:`_GraphBlock`, the final mean a
    GlobalAveragePool (kept in NCHWc); the same outputs, within float rounding."""

    def __init__(self, model: PaperNet) -> None:
        super().__init__()
        self.model = model
        self.blocks = nn.ModuleList(
            _GraphBlock(b) if isinstance(b, ResidualSEBlock) else b for b in model.stages
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.model.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.model.head(F.adaptive_avg_pool2d(x, 1).flatten(1))


def graph_form(model: nn.Module) -> nn.Module:
    """The module that is exported for ``model``: the same function, arranged for onnxruntime."""
    return _GraphPaperNet(model.eval()) if isinstance(model, PaperNet) else model


def onnx_bytes(model: nn.Module, *, arranged: bool = True) -> bytes:
    """The serialised ONNX graph of ``model`` taking uint8 faces (batch dimension dynamic);
    ``arranged=False`` exports the modules in their own order (:func:`graph_form`'s baseline)."""
    example = torch.zeros(2, FACE_SIZE, FACE_SIZE, dtype=torch.uint8)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter warns that it is deprecated in favour of dynamo's.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            Deployable(graph_form(model) if arranged else model), (example,), buf,
            input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )
    return buf.getvalue()


def with_metadata(graph: bytes, metadata: dict[str, str]) -> bytes:
    """``graph`` with ``metadata`` recorded inside the file itself."""
    import onnx

    proto = onnx.load_from_string(graph)
    onnx.helper.set_model_props(proto, metadata)
    return proto.SerializeToString()


def model_graph(reference: str, quantize: str | None = None, calibration: str | Path | None = None) -> bytes:
    """The graph of a model reference with weights (float32, or int8 calibrated on the training faces
    of the data set at ``calibration``), its card and the weights' SHA-256 in its metadata."""
    ref = resolve(reference)
    weights = ref.require_weights("export")
    model, card = load_model(reference)
    metadata = graph_metadata(ref.name, card, quantize or "float32", file_sha256(weights))
    data = onnx_bytes(model)
    if quantize:
        from ferkit.runtime.quantize import calibration_faces, quantize_int8

        data = quantize_int8(data, calibration_faces(calibration))
    return with_metadata(data, metadata)


def export_model(
    model_name: str, fmt: str, out: str | Path, quantize: str | None = None,
    calibration: str | Path | None = None,
) -> Path:
    """Export a model reference with weights to ``out`` in ``fmt``; returns the path written.

    ``quantize="int8"`` writes the statically quantised graph, its activation ranges measured on
    training faces of the data set at ``calibration`` (see :mod:`ferkit.runtime.quantize`).
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
    data = model_graph(model_name, quantize, calibration)
    out = Path(out)
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    return out


def export_shipped(calibration: str | Path | None = None) -> list[Path]:
    """(Re)make ``ferkit/weights/<name>.onnx`` from ``<name>.safetensors`` for every shipped model;
    with ``calibration`` (training faces: the FER2013 CSV) also ``<name>.int8.onnx``, the graph
    backend "onnx-int8" runs."""
    written = []
    for name in list_models():
        if resolve(name).weights is None:
            continue  # a graph shipped without weights stays as it is
        graphs = {GRAPH_SUFFIX: model_graph(name)}
        if calibration is not None:
            graphs[INT8_SUFFIX] = model_graph(name, "int8", calibration)
        for suffix, data in graphs.items():
            path = WEIGHTS_DIR / f"{name}{suffix}"
            atomic_write(path, lambda tmp, data=data: Path(tmp).write_bytes(data))
            written.append(path)
    if not written:
        raise FerkitError(f"{WEIGHTS_DIR}: no shipped weights to export")
    return written
