"""Training throughput: ferkit's loop against a plain fp32 eager PyTorch loop, side by side, with
each of ferkit's choices switched off in turn; where the step's time goes (torch.profiler); and how
soon a second identical `ferkit train` reaches its first step when it compiles.

Every loop trains the `default` network (configs/default-ferplus.toml: half width, batch 128, the
photo degradations) on the same real FER2013 Training images with the same batched augmentation
and AdamW. The ferkit rows are ``ferkit.train.loop.train_one_epoch`` itself with the execution
plan that ``ferkit train`` picks on this machine (``ferkit.train.plan``), then that plan with one
choice changed. The plain row is a textbook loop: NCHW, PyTorch's default threads, each batch
prepared inline. Rows alternate round by round so that machine noise hits all of them; a row's
figure is its median epoch. User CPU time over wall-clock time says how many cores were busy.

    python benchmarks/train_speed.py                  # results in benchmarks/results/train_speed.{json,md}
    python benchmarks/train_speed.py --smoke          # seconds: tiny sizes, results in a temp folder
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import repo_support
import torch
import torch.nn.functional as F
from timing import cpu_model

from ferkit.data import load_data, split_data
from ferkit.models import create_model
from ferkit.models.preprocess import to_model_input
from ferkit.train.augment import augment_batch
from ferkit.train.config import TrainConfig, load_config
from ferkit.train.distributed import DistInfo
from ferkit.train.loop import Faces, RunState, as_tensors, make_optimizer, train_one_epoch
from ferkit.train.plan import ExecutionPlan, native_bf16, plan_execution

REPO = repo_support.REPO
CONFIG = REPO / "configs" / "default-ferplus.toml"
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_flags() -> list[str]:
    """The instruction-set flags that decide the fast paths (from /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    found = re.search(r"^flags\s*:(.*)$", text, re.M)
    have = set(found.group(1).split()) if found else set()
    return [f for f in FLAGS if f in have]


def recipe(batch: int) -> TrainConfig:
    """configs/default-ferplus.toml from scratch, with FER2013 labels (no votes file needed)."""
    return load_config(CONFIG, ["init_from=\"\"", "labels=\"fer2013\"", f"batch_size={batch}", "epochs=1"])


def fresh_model(cfg: TrainConfig, channels_last: bool) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = create_model(cfg.arch, **cfg.model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, make_optimizer(model, cfg)


def plain_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, faces: Faces, cfg: TrainConfig,
                gen: torch.Generator) -> None:
    """A textbook fp32 eager loop over the same faces with the same augmentation."""
    model.train()
    perm = torch.randperm(len(faces), generator=gen)
    for step in range(len(faces) // cfg.batch_size):
        idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size]
        x = augment_batch(to_model_input(faces.images[idx]), cfg.augment, gen)
        loss = F.cross_entropy(model(x), faces.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()


def timed(fn: Callable[[], object], images: int) -> tuple[float, float]:
    """(images/s, user CPU seconds per wall-clock second) of one call."""
    wall, user = time.perf_counter(), os.times().user
    fn()
    wall, user = time.perf_counter() - wall, os.times().user - user
    return images / wall, user / wall


def ferkit_row(faces: Faces, cfg: TrainConfig, plan: ExecutionPlan) -> Callable[[], object]:
    model, opt = fresh_model(cfg, plan.channels_last)
    net = torch.compile(model) if plan.compile else model
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    state = RunState()

    def epoch() -> None:
        torch.set_num_threads(plan.threads)
        train_one_epoch(net, opt, faces, cfg, state, DistInfo(), plan, scaler)

    return epoch


def plain_row(faces: Faces, cfg: TrainConfig, threads: int) -> Callable[[], object]:
    model, opt = fresh_model(cfg, channels_last=False)
    gen = torch.Generator().manual_seed(0)

    def epoch() -> None:
        torch.set_num_threads(threads)
        plain_epoch(model, opt, faces, cfg, gen)

    return epoch


def variants(plan: ExecutionPlan, with_compile: bool) -> dict[str, ExecutionPlan]:
    """ferkit's plan, then that plan with one choice changed (the ablation of each choice)."""
    rows = {f"ferkit ({plan.describe()}, prefetch)": plan,
            "ferkit, no prefetch thread": replace(plan, prefetch=False),
            "ferkit, 1 thread": replace(plan, threads=1),
            f"ferkit, {'NCHW' if plan.channels_last else 'NHWC'}":
                replace(plan, channels_last=not plan.channels_last)}
    if plan.amp is None:
        rows["ferkit, bf16 autocast" + ("" if native_bf16() else " (emulated on this CPU)")] = \
            replace(plan, amp=torch.bfloat16)
    if with_compile and not plan.compile:
        rows["ferkit, torch.compile"] = replace(plan, compile=True)
    return rows


def profile_summary(faces: Faces, cfg: TrainConfig, plan: ExecutionPlan, rows: int) -> str:
    """torch.profiler's table of one epoch of ferkit's step, ops by self CPU time."""
    epoch = ferkit_row(faces, cfg, plan)
    epoch()  # warm-up: oneDNN picks its kernels on the first batches
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        epoch()
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows, max_name_column_width=40)


def first_step_seconds(data: str, runs: Path, cache: Path, overrides: list[str]) -> list[dict[str, float]]:
    """Two identical ``ferkit train`` runs with compile=true sharing an empty inductor cache: the
    seconds from 'data loaded' to the end of the first (compiling) batch, for each."""
    found = []
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    for attempt in ("cold cache", "warm cache"):
        out = runs / attempt.replace(" ", "-")
        cmd = [sys.executable, "-m", "ferkit", "train", "--config", str(CONFIG), "--data", data,
               "--out", str(out), "init_from=\"\"", "labels=\"fer2013\"", "compile=true", *overrides]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
        if proc.returncode:
            raise SystemExit(f"ferkit train failed: {proc.stderr.strip().splitlines()[-1]}")
        compiled = re.search(r"compiled in (\d+) s", proc.stderr)
        loaded = re.search(r"data loaded in ([\d.]+) s", proc.stderr)
        found.append({"run": attempt, "first_batch_s": float(compiled.group(1)) if compiled else float("nan"),
                      "data_load_s": float(loaded.group(1)) if loaded else float("nan")})
    return found


def render(result: dict) -> str:
    md = [f"# Training throughput: `default` network, batch {result['batch']}",
          "", f"CPU: {result['cpu']} ({', '.join(result['cpu_flags']) or 'no flags read'}), "
          f"{result['cores']} cores, torch {result['torch']}. ferkit's plan here: **{result['plan']}**.",
          "", f"Median of {result['rounds']} epochs of {result['images']} real FER2013 faces per row, rows "
          "alternating. `cores busy`: user CPU time / wall-clock time.", "",
          "| loop | images/s | x plain | cores busy |", "| --- | ---: | ---: | ---: |"]
    plain = result["rows"][result["plain"]]["images_per_s"]
    for name, row in result["rows"].items():
        fewer = f" ({row['images']} faces)" if row["images"] != result["images"] else ""
        md.append(f"| {name}{fewer} | {row['images_per_s']:.0f} | {row['images_per_s'] / plain:.2f} | "
                  f"{row['cores_busy']:.2f} |")
    md += ["", f"ferkit / plain: **{result['ratio']:.2f}x**; ferkit / plain at 1 thread: "
           f"**{result['ratio_1_thread']:.2f}x**."]
    if result.get("compile_first_step"):
        md += ["", "Second identical `ferkit train ... compile=true` (inductor caches kept): seconds from "
               "the data loaded to the end of the first, compiling batch:", "",
               "| run | first batch (s) |", "| --- | ---: |"]
        md += [f"| {r['run']} | {r['first_batch_s']:.0f} |" for r in result["compile_first_step"]]
    md += ["", f"Command: `{result['command']}`", ""]
    if result.get("profile"):
        md += ["## Where a step's time goes (torch.profiler, ferkit's plan, one epoch)", "", "```",
               result["profile"], "```", ""]
    return "\n".join(md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "fer2013" / "fer2013.csv.gz"))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--images", type=int, default=3840, help="images per timed epoch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    repo_support.add_smoke_args(ap)
    args = ap.parse_args()
    if args.smoke:
        args.batch, args.images, args.rounds, args.no_compile = 32, 64, 1, True
    if not Path(args.data).is_file():
        raise SystemExit(f"{args.data}: no such file (the FER2013 CSV; pass --data)")
    out = repo_support.results_dir(args)
    cfg = recipe(args.batch)
    default_threads = torch.get_num_threads()
    plan = plan_execution(cfg, torch.device("cpu"))
    train = split_data(load_data(args.data), "canonical")["train"]
    faces = as_tensors(train.subset(list(range(args.images))))

    plain_name = f"plain fp32 eager (NCHW, {default_threads} threads, inline batches)"
    runs = {plain_name: plain_row(faces, cfg, default_threads)}
    runs["plain, 1 thread"] = plain_row(faces, cfg, 1)
    slow_images = args.batch if args.smoke else min(args.images, 4 * args.batch)
    few = as_tensors(train.subset(list(range(slow_images))))
    sizes = {name: len(faces) for name in runs}
    for name, p in variants(plan, with_compile=not args.no_compile).items():
        # Emulated bf16 runs at a tenth of the speed: four batches tell as much.
        slow = p.amp is not None and not native_bf16()
        runs[name] = ferkit_row(few if slow else faces, cfg, p)
        sizes[name] = len(few if slow else faces)
    warmup = {}
    for name, run in runs.items():  # oneDNN set-up, and compilation for the compiled row
        start = time.perf_counter()
        run()
        warmup[name] = time.perf_counter() - start
        print(f"warm-up {name}: {warmup[name]:.1f} s", file=sys.stderr)
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for r in range(args.rounds):
        for name, run in runs.items():
            measured[name].append(timed(run, sizes[name] // args.batch * args.batch))
            print(f"round {r + 1} {name}: {measured[name][-1][0]:.0f} img/s", file=sys.stderr)
    rows = {name: {"images_per_s": statistics.median(m[0] for m in ms),
                   "cores_busy": statistics.median(m[1] for m in ms),
                   "rounds": [m[0] for m in ms], "warmup_s": warmup[name], "images": sizes[name]}
            for name, ms in measured.items()}
    ours = next(iter(variants(plan, False)))
    command = "python benchmarks/train_speed.py" + (" --smoke" if args.smoke else "")
    result = {
        "cpu": cpu_model(), "cpu_flags": cpu_flags(), "cores": os.cpu_count(), "torch": torch.__version__,
        "plan": plan.describe(), "batch": args.batch, "images": args.images, "rounds": args.rounds,
        "plain": plain_name, "ours": ours, "rows": rows,
        "ratio": rows[ours]["images_per_s"] / rows[plain_name]["images_per_s"],
        "ratio_1_thread": rows[ours]["images_per_s"] / rows["plain, 1 thread"]["images_per_s"],
        "command": command,
    }
    result["profile"] = profile_summary(faces, cfg, plan, rows=8 if args.smoke else 25)
    if not args.no_compile:
        with tempfile.TemporaryDirectory() as tmp:
            result["compile_first_step"] = first_step_seconds(
                args.data, Path(tmp) / "runs", Path(tmp) / "inductor",
                ["epochs=1", "limit_train=1024", "limit_val=256", "test_at_end=false"])
    repo_support.write_results(out, "train_speed", result, render(result))


if __name__ == "__main__":
    main()
