"""Where the time of a batch of crops goes, and which runtime setting could shorten it.

Two parts, in one process:

* onnxruntime's own profiler (``enable_profiling``) on the shipped float graph and on its int8
  version (``ferkit export --quantize int8``), one thread, one run of ``CHUNK`` faces as ferkit
  runs them: each node's share of the time and, for each convolution, multiply-adds per second
  against the CPU's nominal fp32 FMA peak (two FMA units of 8 floats with AVX2, 16 with AVX-512,
  at the clock /proc/cpuinfo reports). Near that peak a graph is compute-bound and no runtime
  setting can speed it up much; far from it, overheads dominate.
* crops/s at batch ``--batch`` in alternating windows (the order rotated each round) of: ferkit
  as it ships (``Recognizer``, the crops section of benchmarks/inference.py), the candidate
  settings (chunk sizes, onnxruntime's intra-op threads with and without spinning, lower graph
  optimisation levels, which leave out the NCHWc layout, denormals as zero, the graph exported in
  the modules' own order as before ``ferkit.runtime.export.graph_form``), and `fer`'s TFLite
  model (its default, one face per call) when ``.venv-fer`` exists, so that ratios to fer come
  from the same load.

Writes crop_speed.json and .md (benchmarks/results by default). Record ``uptime`` beside it.

    flock /tmp/ferkit-bench.lock nice -n 19 .venv/bin/python benchmarks/crop_speed.py
    .venv/bin/python benchmarks/crop_speed.py --smoke   # seconds: 1 round, short windows
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import repo_support  # noqa: F401  (tests/support on the path)
from inference import REPO, THREADS, rate_stats, start_fer
from repo_support import add_smoke_args, results_dir, write_results
from timing import cpu_flags, cpu_model, window_rate

from ferkit.inference import Recognizer
from ferkit.models.io import load_model
from ferkit.runtime.export import onnx_bytes
from ferkit.runtime.graph import INPUT_NAME
from ferkit.runtime.onnx_backend import CHUNK, OnnxBackend

Runner = Callable[[np.ndarray], object]
SHIPPED = "ferkit as shipped"
FER = "fer TFLite (one face per call)"
BEFORE = "graph in the modules' order (before graph_form)"
CONV_OPS = ("Conv", "QLinearConv")


def cpu_mhz() -> float:
    """The clock /proc/cpuinfo reports for the first core (0 where it cannot be read)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("cpu MHz"):
                return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return 0.0


def fp32_peak_gmacs(flags: list[str], mhz: float) -> float:
    """Nominal fp32 multiply-adds/s of one core: 2 FMA units x 8 lanes (AVX2) or 16 (AVX-512)."""
    lanes = 16 if "avx512f" in flags else 8 if "fma" in flags else 4
    return 2 * lanes * mhz / 1000


def session(graph: bytes, threads: int = 1, *, spin: bool = False,
            level: ort.GraphOptimizationLevel = ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            denormal_as_zero: bool = False, profile_prefix: str | None = None) -> ort.InferenceSession:
    """An onnxruntime CPU session with the settings under test."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = level
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if denormal_as_zero:
        options.add_session_config_entry("session.set_denormal_as_zero", "1")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def conv_macs(graph: bytes) -> dict[str, int]:
    """Multiply-adds per face of each convolution of an exported float graph, under the names the
    profiler gives it: the node's name (int8 nodes keep it) and its output's, or the output of the
    Relu after it (the NCHWc nodes are named after the output they write, fused Relu included)."""
    import onnx

    proto = onnx.load_from_string(graph)
    proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    proto = onnx.shape_inference.infer_shapes(proto)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*proto.graph.value_info, *proto.graph.output]}
    weights = {t.name: list(t.dims) for t in proto.graph.initializer}
    consumers: dict[str, list] = defaultdict(list)
    for node in proto.graph.node:
        for name in node.input:
            consumers[name].append(node)
    out: dict[str, int] = {}
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        macs = int(np.prod(shapes[node.output[0]])) * int(np.prod(weights[node.input[1]][1:]))
        out[node.name] = out[node.output[0]] = macs
        after = consumers[node.output[0]]
        if len(after) == 1 and after[0].op_type == "Relu":
            out[after[0].output[0]] = macs
    return out


def profiled_name(name: str) -> str:
    """The graph name a profiled node came from: ``X_nchwc`` (float NCHWc) or ``X_token_N`` (int8)."""
    name = name.removesuffix("_nchwc")
    return re.sub(r"_token_\d+$", "", name)


def profile(graph: bytes, faces: np.ndarray, runs: int, peak: float, macs: dict[str, int]) -> dict:
    """Per-node times of ``runs`` one-thread runs over ``faces``, from onnxruntime's profiler."""
    with tempfile.TemporaryDirectory() as tmp:
        s = session(graph, profile_prefix=str(Path(tmp) / "profile"))
        for _ in range(runs + 5):
            s.run(None, {INPUT_NAME: faces})
        events = json.loads(Path(s.end_profiling()).read_text())
    runs_seen = [e["dur"] for e in events if e.get("name") == "SequentialExecutor::Execute"][5:]
    nodes: dict[str, dict] = {}
    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        args = e["args"]
        name = e["name"][: -len("_kernel_time")]
        node = nodes.setdefault(name, {"op": args["op_name"], "us": [], "macs": 0})
        node["us"].append(e["dur"])
        if args["op_name"] in CONV_OPS:
            node["macs"] = macs.get(profiled_name(name), 0) * len(faces)
    per_face = len(faces)
    run_us = float(np.median(runs_seen)) if runs_seen else 0.0
    rows = []
    for name, node in nodes.items():
        us = float(np.median(node["us"][5:] or node["us"]))
        rows.append({"node": name, "op": node["op"], "us_per_face": us / per_face,
                     "mmacs_per_face": node["macs"] / per_face / 1e6,
                     "gmacs": node["macs"] / us / 1e3 if node["macs"] and us else None})
    rows.sort(key=lambda r: -r["us_per_face"])
    kernel = sum(r["us_per_face"] for r in rows)
    by_op: dict[str, float] = defaultdict(float)
    for r in rows:
        by_op[r["op"]] += r["us_per_face"]
    convs = [r for r in rows if r["op"] in CONV_OPS]
    conv_us = sum(r["us_per_face"] for r in convs)
    conv_mmacs = sum(r["mmacs_per_face"] for r in convs)
    return {"faces_per_run": per_face, "runs": len(runs_seen), "run_us_per_face": run_us / per_face,
            "kernel_us_per_face": kernel, "crops_per_s": per_face / run_us * 1e6 if run_us else None,
            "op_share": {op: us / kernel for op, us in sorted(by_op.items(), key=lambda kv: -kv[1])},
            "conv_mmacs_per_face": conv_mmacs, "conv_gmacs": conv_mmacs / conv_us * 1e3 if conv_us else None,
            "peak_gmacs": peak, "nodes": rows}


def runners(model_name: str, graph: bytes, threads: int) -> dict[str, Runner]:
    """name -> callable(faces) for ferkit as shipped and each candidate setting."""
    def plain(s: ort.InferenceSession) -> Runner:
        return lambda faces: s.run(None, {INPUT_NAME: faces})[0]

    def chunked(s: ort.InferenceSession) -> Runner:  # ferkit's chunks, on another session
        backend = OnnxBackend(graph, threads=threads)
        backend._session = s
        return backend.probabilities

    out: dict[str, Runner] = {SHIPPED: Recognizer(model_name, backend="onnx", threads=threads).classify}
    for chunk in (4, 16, 64):
        out[f"chunks of {chunk}"] = OnnxBackend(graph, threads=threads, chunk=chunk).probabilities
    out[f"intra-op {threads} threads, asleep"] = plain(session(graph, threads))
    out[f"intra-op {threads} threads, spinning"] = plain(session(graph, threads, spin=True))
    levels = ort.GraphOptimizationLevel
    out["extended optimisation (no NCHWc)"] = chunked(session(graph, level=levels.ORT_ENABLE_EXTENDED))
    out["basic optimisation"] = chunked(session(graph, level=levels.ORT_ENABLE_BASIC))
    out["denormals as zero"] = chunked(session(graph, denormal_as_zero=True))
    before = onnx_bytes(load_model(model_name)[0], arranged=False)
    out[BEFORE] = OnnxBackend(before, threads=threads).probabilities
    return out


def check_outputs(runs: dict[str, Runner], graph: bytes, faces: np.ndarray) -> dict[str, float]:
    """Largest difference of each runner's probabilities from the float graph's in one plain run
    (ferkit as shipped is left out: its card's temperature rescales them)."""
    reference = session(graph).run(None, {INPUT_NAME: faces})[0]
    return {name: float(np.abs(np.asarray(run(faces)) - reference).max())
            for name, run in runs.items() if name != SHIPPED}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(runs: dict[str, Runner], faces: np.ndarray, fer, rounds: int, window: float) -> dict:
    """Crops/s of every runner (and fer's TFLite model, with the cores it kept busy: its CPU time
    over the wall time of its windows), window by window, rotated each round."""
    names = list(runs) + ([FER] if fer is not None else [])
    rates: dict[str, list[float]] = {name: [] for name in names}
    fer_cpu = fer_wall = 0.0
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            if name == FER:
                cpu, start = cpu_seconds(fer._proc.pid), time.perf_counter()
                reply = fer.ask(task="crops", model="tflite", batch=len(faces), seconds=window)
                fer_cpu += cpu_seconds(fer._proc.pid) - cpu
                fer_wall += time.perf_counter() - start
                rates[name].append(reply["rate"])
            else:
                rates[name].append(window_rate(lambda r=runs[name]: r(faces), len(faces), window))
    out = {name: {**rate_stats(r), "rates": r} for name, r in rates.items()}
    if fer is not None:
        out[FER]["cores_busy"] = fer_cpu / fer_wall
        for name in runs:
            # Per round: this window over fer's window of the same round, then the mean of those.
            paired = [ours / theirs for ours, theirs in zip(rates[name], rates[FER], strict=True)]
            out[name]["to_fer_mean"] = out[name]["mean"] / out[FER]["mean"]
            out[name]["to_fer_paired_mean"] = float(np.mean(paired))
    return out


def int8_graph(graph: bytes, calibration: Path, faces: int) -> bytes | str:
    """The int8 version of ``graph`` (ferkit's quantisation), or why there is none."""
    if not calibration.exists():
        return f"{calibration} not found: no calibration faces for the int8 graph"
    from ferkit.runtime.quantize import calibration_faces, quantize_int8

    return quantize_int8(graph, calibration_faces(calibration, n=faces))


def markdown(r: dict) -> str:
    env = r["environment"]
    lines = ["# Crop throughput: where the time goes", "",
             f"Command: `{r['command']}`  ", f"Date: {r['date']}  ",
             f"Machine: {env['cpu_model']}, {env['cpus']} CPUs, "
             f"flags {', '.join(env['cpu_flags']) or 'none'}, "
             f"{env['cpu_mhz']:.0f} MHz reported; onnxruntime {env['onnxruntime']}; nice {env['niceness']}; "
             "load average before " + ", ".join(f"{x:.2f}" for x in env["load_before"]) + ", after "
             + ", ".join(f"{x:.2f}" for x in env["load_after"]) + ".", ""]
    for label, p in r["profiles"].items():
        if isinstance(p, str):
            lines += [f"## Profile, {label}: skipped ({p})", ""]
            continue
        lines += [f"## Profile, {label}: one thread, runs of {p['faces_per_run']} faces", "",
                  f"{p['run_us_per_face']:.0f} us per face a run "
                  f"({p['crops_per_s']:.0f} crops/s, profiler on), "
                  f"of which kernels {p['kernel_us_per_face']:.0f} us. Convolutions: "
                  f"{p['conv_mmacs_per_face']:.1f} M multiply-adds per face at {p['conv_gmacs']:.1f} G/s, "
                  f"against a nominal fp32 FMA peak of {p['peak_gmacs']:.1f} G/s (2 FMA units at the clock "
                  "/proc/cpuinfo reports; a core boosting above that clock can pass it).", "",
                  "| op | share of kernel time |", "| --- | ---: |"]
        lines += [f"| {op} | {share:.1%} |" for op, share in p["op_share"].items() if share >= 0.005]
        lines += ["", "| node (10 slowest) | op | us/face | M mult-adds/face | G mult-adds/s |",
                  "| --- | --- | ---: | ---: | ---: |"]
        for n in p["nodes"][:10]:
            rate = f"{n['gmacs']:.1f}" if n["gmacs"] else ""
            lines.append(f"| `{n['node'][-60:]}` | {n['op']} | {n['us_per_face']:.1f} | "
                         f"{n['mmacs_per_face']:.2f} | {rate} |")
        lines.append("")
    lines += [f"## Crops/s at batch {r['batch']}, {r['threads']} threads", "",
              f"Alternating windows of {r['window_s']} s, {r['rounds']} rounds. Cells: best window "
              "(mean); ratio: mean over fer's mean (mean of per-round ratios).", "",
              "| runner | crops/s | to shipped | to fer TFLite | largest output difference |",
              "| --- | ---: | ---: | ---: | ---: |"]
    shipped = r["rates"][SHIPPED]["mean"]
    for name, v in r["rates"].items():
        to_fer = (f"{v['to_fer_mean']:.2f} ({v['to_fer_paired_mean']:.2f})" if "to_fer_mean" in v else "")
        diff = r["output_difference"].get(name)
        lines.append(f"| {name} | {v['best']:,.0f} ({v['mean']:,.0f}) | {v['mean'] / shipped:.2f} | "
                     f"{to_fer} | "
                     + (f"{diff:.1e}" if diff is not None else "") + " |")
    if FER in r["rates"]:
        lines += ["", f"fer's TFLite model kept {r['rates'][FER]['cores_busy']:.2f} cores busy during its "
                  "windows (its CPU time over their wall time)."]
    if r.get("fer_skipped"):
        lines += ["", f"fer: skipped ({r['fer_skipped']})"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=THREADS)
    ap.add_argument("--rounds", type=int, default=6, help="alternations of every runner")
    ap.add_argument("--window", type=float, default=0.6, help="seconds per throughput window")
    ap.add_argument("--profile-runs", type=int, default=300, help="profiled runs of each graph")
    ap.add_argument("--calibration", help="training faces for the int8 graph (default: the FER2013 "
                    "CSV in $FERKIT_SHARED or ../shared)")
    add_smoke_args(ap)
    args = ap.parse_args()
    if args.smoke:
        args.rounds, args.window, args.profile_runs = 1, 0.05, 5
    out = results_dir(args)
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    calibration = Path(args.calibration or shared / "data" / "fer2013" / "fer2013.csv.gz")
    flags, mhz = cpu_flags(), cpu_mhz()
    load_before = os.getloadavg()
    model, _ = load_model(args.model)
    graph = onnx_bytes(model)
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.batch, 48, 48), np.uint8)
    chunk = faces[:CHUNK].copy()
    peak = fp32_peak_gmacs(flags, mhz)
    int8 = int8_graph(graph, calibration, 64 if args.smoke else 1000)
    macs = conv_macs(graph)
    before = onnx_bytes(model, arranged=False)
    profiles = {"float32": profile(graph, chunk, args.profile_runs, peak, macs),
                "float32, modules' order (before graph_form)": profile(
                    before, chunk, args.profile_runs, peak, conv_macs(before)),
                "int8": int8 if isinstance(int8, str) else profile(
                    int8, chunk, args.profile_runs, peak, macs)}
    runs = runners(args.model, graph, args.threads)
    differences = check_outputs(runs, graph, faces)
    fer = start_fer()
    fer_skipped = fer if isinstance(fer, str) else ""
    rates = alternate(runs, faces, None if fer_skipped else fer, args.rounds, args.window)
    if not fer_skipped:
        fer.close()
    result = {
        "command": shlex.join([".venv/bin/python", "benchmarks/crop_speed.py", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M"), "model": args.model, "batch": args.batch,
        "threads": args.threads, "rounds": args.rounds, "window_s": args.window,
        "environment": {"cpu_model": cpu_model(), "cpu_flags": flags, "cpu_mhz": mhz, "cpus": os.cpu_count(),
                        "onnxruntime": ort.__version__, "niceness": os.nice(0),
                        "load_before": load_before, "load_after": os.getloadavg()},
        "profiles": profiles, "rates": rates, "output_difference": differences, "fer_skipped": fer_skipped,
    }
    write_results(out, "crop_speed", result, markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
