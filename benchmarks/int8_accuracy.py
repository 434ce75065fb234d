"""What int8 costs and buys: ``ferkit export --quantize int8`` against the float graph.

Exports a model both ways (the int8 graph calibrated on 1,000 random Training faces), then
reports accuracy on PublicTest and PrivateTest, how often the two graphs agree on the label, and
crops/s at batch 64 with 2 threads, the two graphs timed in alternating windows. Writes
benchmarks/results/int8_<model>.json and .md. About two minutes:

    nice -n 19 .venv/bin/python benchmarks/int8_accuracy.py --model paper
    .venv/bin/python benchmarks/int8_accuracy.py --smoke   # seconds: 64 faces per split, 1 short round
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from ablation import fer_slice
from repo_support import add_smoke_args, results_dir, write_results
from timing import cpu_flags, cpu_model, window_rate

from ferkit.data import load_data, split_data
from ferkit.models.store import list_models, resolve
from ferkit.runtime.export import export_model
from ferkit.runtime.onnx_backend import OnnxBackend

REPO = Path(__file__).resolve().parents[1]
THREADS = 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--data", default=str(shared / "data" / "fer2013" / "fer2013.csv.gz"))
    parser.add_argument("--model", default="paper")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--window", type=float, default=1.0)
    parser.add_argument("--out", dest="results_dir", type=Path, help="the same as --results-dir")
    add_smoke_args(parser)
    args = parser.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"{args.data} not found: FER2013's challenge CSV is needed (--data or $FERKIT_SHARED)")
    out = results_dir(args)
    with tempfile.TemporaryDirectory() as tmp:
        if args.smoke:  # 64 faces of each split (the int8 graph calibrated on the 64 Training ones)
            args.data, args.rounds, args.window = str(fer_slice(args.data, Path(tmp), 64, 64, 64)), 1, 0.05
        splits = split_data(load_data(args.data))
        graphs = {"float32": export_model(args.model, "onnx", Path(tmp) / "float.onnx"),
                  "int8": export_model(args.model, "onnx", Path(tmp) / "int8.onnx", quantize="int8",
                                       calibration=args.data)}
        backends = {name: OnnxBackend(path, threads=THREADS) for name, path in graphs.items()}
        command = shlex.join([".venv/bin/python", "benchmarks/int8_accuracy.py", *sys.argv[1:]])
        shipped = resolve(args.model).int8_graph if args.model in list_models() else None
        result: dict = {"model": args.model, "command": command,
                        # Calibrated on the same CSV, the export is byte for byte --backend onnx-int8's graph.
                        "int8_is_shipped_graph": shipped is not None
                        and shipped.read_bytes() == graphs["int8"].read_bytes(),
                        "cpu": cpu_model(), "cpu_flags": cpu_flags(),
                        "date": time.strftime("%Y-%m-%d %H:%M"), "threads": THREADS, "splits": {}}
        for split in ("val", "test"):
            data = splits[split]
            probs = {name: b.probabilities(data.images) for name, b in backends.items()}
            labels = data.labels
            result["splits"][split] = {
                **{f"accuracy_{name}": float((p.argmax(1) == labels).mean()) for name, p in probs.items()},
                "label_agreement": float((probs["float32"].argmax(1) == probs["int8"].argmax(1)).mean()),
                "n": len(labels)}
        batch = splits["val"].images[:64]
        rates: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(args.rounds):
            for name, b in backends.items():
                rates[name].append(window_rate(lambda b=b: b.probabilities(batch), len(batch), args.window))
    result["crops_per_s_batch64"] = {name: {"best": max(r), "mean": float(np.mean(r))}
                                     for name, r in rates.items()}
    result["speedup_best"] = max(rates["int8"]) / max(rates["float32"])
    result["load_average"] = os.getloadavg()
    write_results(out, f"int8_{args.model}", result, markdown(result))


def markdown(r: dict) -> str:
    names = {"val": "PublicTest", "test": "PrivateTest"}
    speed = r["crops_per_s_batch64"]
    lines = [f"# int8 vs float32 ONNX: `{r['model']}`", "", f"Command: `{r['command']}`  ",
             f"Date: {r['date']}; {r.get('cpu', 'CPU')} "
             f"({', '.join(r.get('cpu_flags', [])) or 'flags not recorded'}), "
             f"{r['threads']} threads; load average " + ", ".join(f"{x:.1f}" for x in r["load_average"]), "",
             "The int8 graph is " + ("byte for byte the shipped one that `--backend onnx-int8` runs."
                                     if r.get("int8_is_shipped_graph") else "exported for this run."), "",
             "| split | n | float32 accuracy | int8 accuracy | same label |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for split, s in r["splits"].items():
        lines.append(f"| {names[split]} | {s['n']} | {s['accuracy_float32']:.2%} | {s['accuracy_int8']:.2%} "
                     f"| {s['label_agreement']:.1%} |")
    lines += ["", "| graph | crops/s, batch 64: best window (mean) |", "| --- | ---: |"]
    for name, v in speed.items():
        lines.append(f"| {name} | {v['best']:.0f} ({v['mean']:.0f}) |")
    lines += ["", f"int8 / float32 speed: {r['speedup_best']:.2f}x (best windows)"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
