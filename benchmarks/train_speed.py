"""Training throughput: ferkit's loop against a plain fp32 eager PyTorch loop, side by side.

Both train the same architecture on the same real FER2013 images with the same batched
augmentation, Adam and batch size; they differ in what ferkit adds: bf16 autocast (where the
CPU supports it) and torch.compile. Runs alternate in rounds so that machine noise hits both.

    python benchmarks/train_speed.py --data ../shared/data/fer2013/fer2013.csv.gz
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ferkit.augment import AugmentConfig, augment_batch
from ferkit.config import TrainConfig
from ferkit.data import load_data, split_data
from ferkit.models import create_model
from ferkit.preprocess import to_model_input
from ferkit.train import autocast_dtype

RESULTS = Path(__file__).parent / "results"


def make_step(model, opt, amp: torch.dtype | None):
    def step(images: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> None:
        x = augment_batch(to_model_input(images), AugmentConfig(), gen)
        with torch.autocast("cpu", dtype=amp or torch.bfloat16, enabled=amp is not None):
            loss = F.cross_entropy(model(x).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def images_per_s(step, images, labels, batch: int, steps: int, gen) -> float:
    start = time.perf_counter()
    for i in range(steps):
        j = (i * batch) % (len(images) - batch)
        step(images[j : j + batch], labels[j : j + batch], gen)
    return steps * batch / (time.perf_counter() - start)


def build(arch_kwargs: dict, amp: torch.dtype | None, compile_: bool):
    torch.manual_seed(0)
    model = create_model("paper_net", **arch_kwargs).train()
    opt = torch.optim.Adam(model.parameters())
    net = torch.compile(model) if compile_ else model
    return make_step(net, opt, amp)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per round and loop")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = split_data(load_data(args.data), "canonical")["train"]
    images, labels = train.images[:8192], train.labels[:8192]
    arch = {"stem": [32, 64], "widths": [128, 256, 512]}  # configs/paper.toml
    amp = autocast_dtype(TrainConfig(), torch.device("cpu"))
    loops = {"plain fp32 eager": build(arch, None, False), "ferkit": build(arch, amp, True)}
    gen = torch.Generator().manual_seed(0)
    warmup_s = {}
    for name, step in loops.items():  # warm-up includes torch.compile's compilation
        t = time.perf_counter()
        images_per_s(step, images, labels, args.batch, 5, gen)
        warmup_s[name] = time.perf_counter() - t
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):
        for name, step in loops.items():
            rates[name].append(images_per_s(step, images, labels, args.batch, args.steps, gen))
    best = {name: max(r) for name, r in rates.items()}
    result = {
        "images_per_s": best, "all_rounds": rates, "warmup_seconds": warmup_s,
        "ratio": best["ferkit"] / best["plain fp32 eager"], "batch": args.batch,
        "threads": args.threads, "autocast": str(amp), "compile": True,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__, "command": "python benchmarks/train_speed.py " +
        f"--data {args.data} --steps {args.steps} --rounds {args.rounds}",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# Training throughput (paper_net, batch {args.batch}, {args.threads} threads)", "",
          f"| loop | images/s (best of {args.rounds} rounds) |", "| --- | --- |"]
    md += [f"| {n} | {v:.0f} |" for n, v in best.items()]
    md += ["", f"ratio ferkit / plain: **{result['ratio']:.2f}x** (autocast {amp}, torch.compile)", "",
           f"Command: `{result['command']}`", ""]
    (RESULTS / "train_speed.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
