"""How ferkit's onnxruntime backend should use the cores: chunks of faces in parallel, or
onnxruntime's own intra-op threads splitting every operator.

For each model and batch size, in one run and in alternating windows (the order rotates each
round): onnxruntime's intra-op threads over the whole batch (idle threads asleep, and spinning,
onnxruntime's default), one thread over the whole batch, and ferkit's backend (one thread per
run, ``threads`` runs at once) at several chunk sizes. The chunk size that ferkit uses is
``ferkit.runtime.onnx_backend.CHUNK``. ``--busy N`` runs N busy-looping processes beside it,
as when other jobs hold the cores. Writes benchmarks/results/onnx_threading.json and .md
(onnx_threading_busyN.* with ``--busy``).

    python benchmarks/onnx_threading.py
    python benchmarks/onnx_threading.py --models paper --busy 2
    python benchmarks/onnx_threading.py --smoke    # seconds: one model, two batches, short windows
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
from inference import rate_stats
from repo_support import add_smoke_args, results_dir, write_results
from timing import cpu_line, window_rate

from ferkit.cpu import available_cores
from ferkit.models.io import load_model
from ferkit.runtime.export import onnx_bytes
from ferkit.runtime.graph import INPUT_NAME
from ferkit.runtime.onnx_backend import CHUNK, OnnxBackend

CHUNKS = (1, 2, 4, 8, 16, 32)


def intra_op_session(graph: bytes, threads: int, spin: bool) -> ort.InferenceSession:
    """A plain onnxruntime session: ``threads`` intra-op threads over each whole batch."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def runners(graph: bytes, threads: int) -> dict:
    """name -> callable(faces) for every way of running the graph that is compared."""
    out = {}
    for name, n, spin in ((f"intra-op {threads} threads", threads, False),
                          (f"intra-op {threads} threads, spinning", threads, True),
                          ("1 thread, whole batch", 1, False)):
        session = intra_op_session(graph, n, spin)
        out[name] = lambda faces, s=session: s.run(None, {INPUT_NAME: faces})[0]
    for chunk in CHUNKS:
        backend = OnnxBackend(graph, threads=threads, chunk=chunk)
        out[f"ferkit, chunks of {chunk}" + (" (default)" if chunk == CHUNK else "")] = backend.probabilities
    return out


def busy_processes(n: int) -> list[subprocess.Popen]:
    """``n`` processes that keep a core busy each, like other jobs on the machine."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def measure(runs: dict, faces: np.ndarray, rounds: int, window: float) -> dict:
    """Crops/s of every runner, window by window, the order rotated by one each round."""
    names = list(runs)
    rates: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            rates[name].append(window_rate(lambda r=runs[name]: r(faces), len(faces), window))
    return {name: rate_stats(r) for name, r in rates.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["paper", "large"])
    ap.add_argument("--batches", nargs="+", type=int, default=[1, 3, 64, 256])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--window", type=float, default=0.5, help="seconds per timed window")
    ap.add_argument("--busy", type=int, default=0, help="busy-looping processes beside the measurement")
    add_smoke_args(ap)
    args = ap.parse_args()
    if args.smoke:
        args.models, args.batches, args.rounds, args.window = ["paper"], [1, 64], 2, 0.05
    out = results_dir(args)
    rng = np.random.default_rng(0)
    result = {"machine": {"cpu": cpu_line(), "cpus": available_cores(), "threads": args.threads,
                          "onnxruntime": ort.__version__, "python": platform.python_version()},
              "date": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds, "window_s": args.window,
              "default_chunk": CHUNK, "busy_processes": args.busy, "load_average_before": os.getloadavg(),
              "models": {}}
    busy = busy_processes(args.busy)
    try:
        for model_name in args.models:
            runs = runners(onnx_bytes(load_model(model_name)[0]), args.threads)
            batches = {b: rng.integers(0, 256, (b, 48, 48), dtype=np.uint8) for b in args.batches}
            result["models"][model_name] = {b: measure(runs, faces, args.rounds, args.window)
                                            for b, faces in batches.items()}
    finally:
        for process in busy:
            process.kill()
    stem = "onnx_threading" + (f"_busy{args.busy}" if args.busy else "")
    write_results(out, stem, result, markdown(result))
    return 0


def markdown(r: dict) -> str:
    m = r["machine"]
    command = "python benchmarks/onnx_threading.py" + (
        f" --models {' '.join(r['models'])} --busy {r['busy_processes']}" if r["busy_processes"] else "")
    lines = ["# onnxruntime threading: chunks in parallel vs intra-op threads", "",
             f"`{command}` ({r['date']}); {m['cpu']}, {m['cpus']} CPUs, "
             f"{m['threads']} threads, onnxruntime {m['onnxruntime']}. Crops/s, best window of "
             f"{r['rounds']} (mean over windows); "
             f"ferkit's default chunk: {r['default_chunk']} faces. Busy-looping processes beside it: "
             f"{r['busy_processes']}; load average before: "
             + ", ".join(f"{x:.2f}" for x in r["load_average_before"]) + ".", ""]
    for model, table in r["models"].items():
        batches = list(table)
        lines += [f"## `{model}`", "", "| runner | " + " | ".join(f"batch {b}" for b in batches) + " |",
                  "| --- |" + " ---: |" * len(batches)]
        for name in table[batches[0]]:
            cells = [f"{table[b][name]['best']:,.0f} ({table[b][name]['mean']:,.0f})" for b in batches]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
