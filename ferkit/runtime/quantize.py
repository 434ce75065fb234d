"""int8 ONNX graphs: static quantisation of an exported model, calibrated on training faces.

Weights are quantised per output channel (int8, in 7 bits: ``reduce_range``), activations per
tensor (uint8) with ranges measured on real faces, in onnxruntime's QDQ format, so the file stays
a standard ONNX graph with the same ``faces`` -> ``probabilities`` interface. On CPUs with VNNI,
onnxruntime runs the convolutions in int8; the accuracy cost is measured, not assumed (see the
README's speed table).

Why 7-bit weights: on x86 CPUs without VNNI (AVX2 only, such as the AMD EPYC machine of
2026-12-02) onnxruntime multiplies uint8 by int8 with an instruction whose 16-bit sums saturate.
With full 8-bit weights the `paper` graph agreed with the float one on 73.8% of PrivateTest's
faces there and its accuracy fell from 66.23% to 57.26% (a one-off comparison of the four
settings, not committed); with 7-bit weights 94.8% and 65.84% (benchmarks/results/amd-epyc/
int8_paper.md of 2026-12-02, in git history), and 96.6% and 65.70% since the first convolution
stays float (the same file, 2026-12-04); uint8 weights did about as well but are slower on VNNI
CPUs, where the saturation does not happen.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from ferkit.data import load_data, split_data
from ferkit.errors import FerkitError
from ferkit.runtime.graph import INPUT_NAME

CALIBRATION_FACES = 1000
CALIBRATION_BATCH = 50


def calibration_faces(data_path: str | Path, n: int = CALIBRATION_FACES, seed: int = 0) -> np.ndarray:
    """``n`` training faces (uint8, (n, 48, 48)) drawn at random: the activations' range sample."""
    train = split_data(load_data(data_path))["train"]
    if not len(train):
        raise FerkitError(f"{data_path}: no training faces to calibrate the int8 ranges on")
    pick = np.random.default_rng(seed).permutation(len(train))[:n]
    return train.images[pick]


def gray_input_convs(graph_path: Path) -> list[str]:
    """The ordinary (group 1) convolutions of a graph that read a single channel: the first layer on
    the gray face. They stay float: with 9 multiply-adds per output, onnxruntime's int8 kernel ran
    at 4.7 G multiply-adds/s on the AVX2 EPYC against 27 in float, 17% of the int8 graph's time
    (benchmarks/crop_speed.py). Left float, the `default` int8 graph agreed with the float one on
    98.1% of FER2013's test faces (97.99% before) and ran 1.03x as fast on one core (within noise
    on two)."""
    import onnx

    proto = onnx.load(str(graph_path))
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    found = []
    for node in proto.graph.node:
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group == 1 and weights.get(node.input[1], [0, 0])[1] == 1:
            found.append(node.name)
    return found


def quantize_int8(graph: bytes, faces: np.ndarray) -> bytes:
    """The int8 (QDQ) version of an exported float ``graph``, calibrated on ``faces``."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{INPUT_NAME: np.ascontiguousarray(faces[i : i + CALIBRATION_BATCH])}
                                  for i in range(0, len(faces), CALIBRATION_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        fp32.write_bytes(graph)
        quant_pre_process(str(fp32), str(pre))  # shape inference and graph clean-up first
        quantize_static(str(pre), str(int8), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        nodes_to_exclude=gray_input_convs(pre))
        return int8.read_bytes()
