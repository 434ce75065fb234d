"""How fast onnxruntime classifies crops as the paper network narrows, beside fer's own model.

The crop-rate bar of the photos/video issue asks the `paper` model, through onnxruntime, for
twice the rate of fer's default model (its int8 TFLite graph, 10 M multiply-adds per face,
invoked face by face). This measures, in one run and with 2 threads, float and int8 onnxruntime
crops/s at batch 64 through ferkit's backend for the paper network at several widths (random
weights: the cost does not depend on the values; the int8 graphs are calibrated on real training
faces), alternating window by window with fer's TFLite and Keras models so that all meet the
same machine load. Writes benchmarks/results/width_speed.json and .md.

    python benchmarks/width_speed.py
    python benchmarks/width_speed.py --smoke   # seconds: width 0.5 only, 1 round of short windows
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from ablation import fer_slice
from inference import THREADS, rate_stats, start_fer
from repo_support import add_smoke_args, results_dir, write_results
from timing import cpu_line, window_rate

from ferkit.models import create_model
from ferkit.models.summary import count_multiply_adds
from ferkit.runtime.export import onnx_bytes
from ferkit.runtime.onnx_backend import OnnxBackend
from ferkit.runtime.quantize import calibration_faces, quantize_int8

WIDTHS = {  # name: (stem, stage widths); "1.0" is configs/paper-wide.toml, "0.5" configs/paper.toml
    "1.0": ((32, 64), (128, 256, 512)),
    "0.75": ((24, 48), (96, 192, 384)),
    "0.625": ((20, 40), (80, 160, 320)),
    "0.5": ((16, 32), (64, 128, 256)),
}
BATCH = 64
SMOKE_WIDTHS = ("0.5",)


def graphs(calibration: np.ndarray, names: tuple[str, ...] = tuple(WIDTHS)) -> dict[str, dict]:
    """Float and int8 sessions plus the cost of the paper network at each width in ``names``."""
    out = {}
    for name in names:
        stem, widths = WIDTHS[name]
        torch.manual_seed(0)
        model = create_model("paper_net", stem=list(stem), widths=list(widths)).eval()
        graph = onnx_bytes(model)
        out[name] = {"params": sum(p.numel() for p in model.parameters()),
                     "mmacs": count_multiply_adds(model) / 1e6,
                     "sessions": {"float": OnnxBackend(graph, threads=THREADS),
                                  "int8": OnnxBackend(quantize_int8(graph, calibration), threads=THREADS)}}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.environ.get("FERKIT_SHARED", "../shared")
                    + "/data/fer2013/fer2013.csv.gz", help="calibration faces")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--window", type=float, default=0.6, help="seconds per timed window")
    add_smoke_args(ap)
    args = ap.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"{args.data} not found: FER2013's training faces calibrate the int8 graphs (--data)")
    out = results_dir(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:  # 80 Training faces (the 72 that the canonical split trains on calibrate)
            args.data, args.rounds, args.window = str(fer_slice(args.data, Path(tmp), 80, 0, 0)), 1, 0.05
        faces = calibration_faces(args.data, n=500)
    nets = graphs(faces, SMOKE_WIDTHS if args.smoke else tuple(WIDTHS))
    fer = start_fer()
    if isinstance(fer, str):
        print(f"fer skipped: {fer}", file=sys.stderr)
    crops = faces[:BATCH]
    rates: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        for name, net in nets.items():
            for kind, sess in net["sessions"].items():
                rates.setdefault(f"{name}_{kind}", []).append(
                    window_rate(lambda s=sess: s.probabilities(crops), BATCH, args.window))
                if not isinstance(fer, str):
                    for model in ("tflite", "keras"):
                        reply = fer.ask(task="crops", model=model, batch=BATCH, seconds=args.window)
                        rates.setdefault(f"fer_{model}", []).append(reply["rate"])
    result = {
        "machine": {"cpu": cpu_line(), "cpus": len(__import__("os").sched_getaffinity(0)),
                    "threads": THREADS,
                    "onnxruntime": ort.__version__, "python": platform.python_version()},
        "batch": BATCH, "rounds": args.rounds, "window_s": args.window,
        "widths": {name: {"stem": WIDTHS[name][0], "widths": WIDTHS[name][1], "params": net["params"],
                          "mmacs": net["mmacs"],
                          **{kind: rate_stats(rates[f"{name}_{kind}"]) for kind in net["sessions"]}}
                   for name, net in nets.items()},
        "fer": ({"skipped": fer} if isinstance(fer, str)
                else {m: rate_stats(rates[f"fer_{m}"]) for m in ("tflite", "keras")}),
    }
    if not isinstance(fer, str):
        fer.close()
    write_results(out, "width_speed", result, markdown(result))
    return 0


def markdown(r: dict) -> str:
    fer = r["fer"]
    tflite = fer.get("tflite", {}).get("best")
    lines = ["# Crop rate of the paper network by width (onnxruntime, batch 64, 2 threads)", "",
             f"`python benchmarks/width_speed.py`; {r['machine']['cpu']}, {r['machine']['cpus']} CPUs; "
             "best window of "
             f"{r['rounds']} per entry, alternating with fer's models. fer: "
             + (f"TFLite int8 {tflite:,.0f} crops/s (face by face, its default), Keras "
                f"{fer['keras']['best']:,.0f} (batch 64)." if tflite else fer.get("skipped", "")), "",
             "| width | stem / stages | params | M multiply-adds | float crops/s | int8 crops/s "
             "| best / fer TFLite |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, w in r["widths"].items():
        best = max(w["float"]["best"], w["int8"]["best"])
        ratio = f"{best / tflite:.2f}x" if tflite else "-"
        lines.append(f"| {name} | {list(w['stem'])} / {list(w['widths'])} | {w['params']:,} "
                     f"| {w['mmacs']:.1f} | {w['float']['best']:,.0f} | {w['int8']['best']:,.0f} | {ratio} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
