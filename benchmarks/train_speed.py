"""Training throughput: ferkit's loop against a plain fp32 eager PyTorch loop, side by side.

Both train the same architecture on the same real FER2013 images with the same batched
augmentation, Adam and batch size. The ferkit side is ``ferkit.train.loop.train_one_epoch`` itself
(bf16 autocast where the CPU supports it, torch.compile, LR schedule, progress bar); the plain
side is a textbook fp32 eager loop. Epochs alternate so that machine noise hits both.

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

from ferkit.data import FerData, load_data, split_data
from ferkit.models import create_model
from ferkit.models.preprocess import to_model_input
from ferkit.train.augment import AugmentConfig, augment_batch
from ferkit.train.config import TrainConfig
from ferkit.train.distributed import DistInfo
from ferkit.train.loop import RunState, autocast_dtype, train_one_epoch

RESULTS = Path(__file__).parent / "results"
ARCH = {"stem": [32, 64], "widths": [128, 256, 512]}  # configs/paper-wide.toml, as measured


def plain_epoch(model, opt, data: FerData, batch: int, gen: torch.Generator) -> float:
    """A textbook fp32 eager loop over the same images with the same augmentation; images/s."""
    model.train()
    perm = torch.randperm(len(data), generator=gen)
    steps = len(data) // batch
    start = time.perf_counter()
    for step in range(steps):
        idx = perm[step * batch : (step + 1) * batch]
        x = augment_batch(to_model_input(data.images[idx]), AugmentConfig(), gen)
        loss = F.cross_entropy(model(x), data.labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()
    return steps * batch / (time.perf_counter() - start)


def ferkit_epoch(net, opt, data: FerData, cfg: TrainConfig, amp, scaler) -> float:
    """ferkit's own training step, ``ferkit.train.loop.train_one_epoch``; images/s."""
    return train_one_epoch(net, opt, data, cfg, RunState(), DistInfo(), amp, scaler)["images_per_s"]


def fresh(compile_: bool):
    torch.manual_seed(0)
    model = create_model("paper_net", **ARCH)
    opt = torch.optim.Adam(model.parameters())
    return (torch.compile(model) if compile_ else model), opt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/fer2013/fer2013.csv.gz")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--images", type=int, default=2560, help="images per timed epoch")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train = split_data(load_data(args.data), "canonical")["train"]
    data = train.subset(list(range(args.images)))
    cfg = TrainConfig(batch_size=args.batch, compile=True, epochs=1)
    amp = autocast_dtype(cfg, torch.device("cpu"))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    plain_model, plain_opt = fresh(False)
    ferkit_net, ferkit_opt = fresh(True)
    gen = torch.Generator().manual_seed(0)
    loops = {
        "plain fp32 eager": lambda: plain_epoch(plain_model, plain_opt, data, args.batch, gen),
        "ferkit train_one_epoch": lambda: ferkit_epoch(ferkit_net, ferkit_opt, data, cfg, amp, scaler),
    }
    warmup_s = {}
    for name, run in loops.items():  # the first epoch pays for torch.compile and oneDNN set-up
        t = time.perf_counter()
        run()
        warmup_s[name] = time.perf_counter() - t
    rates: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(args.rounds):  # alternate, so machine noise hits both
        for name, run in loops.items():
            rates[name].append(run())
    best = {name: max(r) for name, r in rates.items()}
    plain, ours = best["plain fp32 eager"], best["ferkit train_one_epoch"]
    command = (f"python benchmarks/train_speed.py --data {args.data} --images {args.images} "
               f"--rounds {args.rounds}")
    result = {
        "images_per_s": best, "all_rounds": rates, "warmup_seconds": warmup_s, "ratio": ours / plain,
        "batch": args.batch, "threads": args.threads, "autocast": str(amp), "compile": True,
        "machine": f"{platform.processor() or platform.machine()}, {args.threads} threads",
        "torch": torch.__version__, "command": command,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [f"# Training throughput (paper_net, batch {args.batch}, {args.threads} threads)", "",
          f"| loop | images/s (best of {args.rounds} epochs of {args.images} images) |", "| --- | --- |"]
    md += [f"| {n} | {v:.0f} |" for n, v in best.items()]
    md += ["", f"ratio ferkit / plain: **{result['ratio']:.2f}x** (autocast {amp}, torch.compile)", "",
           f"Command: `{command}`", ""]
    (RESULTS / "train_speed.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
