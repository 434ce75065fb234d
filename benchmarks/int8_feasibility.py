"""Would int8 help? Static QDQ quantisation (per-channel weights) of the ONNX export.

Calibrates on 1,000 FER2013 training faces, then compares the float and int8 graphs on the
PrivateTest split (accuracy, label agreement) and in crops/s at batch 64 on one thread,
alternating windows. A study, not a shipped path: ferkit's onnx backend stays float, which
matches PyTorch to 1e-4. About a minute on 2 busy cores:

    nice -n 19 .venv/bin/python benchmarks/int8_feasibility.py

Result with the 68.5% `paper` model, a training job sharing the CPU: accuracy 68.49% float,
68.18% int8; labels agree on 96.6% of faces; 214 vs 767 crops/s (3.6x; an earlier run with
another 1,000-face calibration sample: 68.40%, 435 vs 895 crops/s, 2.1x; the load varied).
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from ferkit.export import INPUT_NAME, onnx_bytes
from ferkit.weights import load_model


def fer_split(
    csv_gz: Path, usage: str, limit: int | None = None, every: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    images, labels = [], []
    with gzip.open(csv_gz, "rt") as f:
        next(f)
        for i, line in enumerate(f):
            emotion, pixels, row_usage = line.strip().split(",")
            if row_usage == usage and i % every == 0:
                images.append(np.array(pixels.split(), dtype=np.uint8).reshape(48, 48))
                labels.append(int(emotion))
                if limit and len(images) == limit:
                    break
    return np.stack(images), np.array(labels)


class Batches(CalibrationDataReader):
    def __init__(self, faces: np.ndarray, size: int = 50) -> None:
        self._it = iter([{INPUT_NAME: faces[i : i + size]} for i in range(0, len(faces), size)])

    def get_next(self):
        return next(self._it, None)


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", Path(__file__).resolve().parents[2] / "shared"))
    parser.add_argument("--csv", default=str(shared / "data" / "fer2013" / "fer2013.csv.gz"))
    parser.add_argument("--model", default="default")
    args = parser.parse_args()
    calibration, _ = fer_split(Path(args.csv), "Training", limit=1000, every=20)
    test, labels = fer_split(Path(args.csv), "PrivateTest")
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        fp32.write_bytes(onnx_bytes(load_model(args.model)[0]))
        quant_pre_process(str(fp32), str(pre))
        quantize_static(str(pre), str(int8), Batches(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        sessions = {"float": session(fp32), "int8": session(int8)}
        probs = {name: np.concatenate([s.run(None, {INPUT_NAME: test[i : i + 256]})[0]
                                       for i in range(0, len(test), 256)]) for name, s in sessions.items()}
        rates: dict[str, list[float]] = {name: [] for name in sessions}
        batch = test[:64]
        for _ in range(4):
            for name, s in sessions.items():
                s.run(None, {INPUT_NAME: batch})
                calls, start = 0, time.perf_counter()
                while time.perf_counter() - start < 0.5 or calls < 2:
                    s.run(None, {INPUT_NAME: batch})
                    calls += 1
                rates[name].append(calls * 64 / (time.perf_counter() - start))
    for name in sessions:
        accuracy = (probs[name].argmax(1) == labels).mean()
        print(f"{name:6s} PrivateTest accuracy {accuracy:.4f}  "
              f"crops/s (1 thread, batch 64) {max(rates[name]):.0f}")
    agree = (probs["float"].argmax(1) == probs["int8"].argmax(1)).mean()
    print(f"labels agree on {agree:.1%} of faces; speed-up {max(rates['int8']) / max(rates['float']):.2f}x")


if __name__ == "__main__":
    main()
