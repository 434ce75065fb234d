"""What re-estimating batch-norm statistics on clean faces does to a trained model, on PublicTest.

Training batches are erased, rotated and zoomed, so the running statistics (and an EMA's average
of them) do not match clean test faces. This scores a model on PublicTest (fp32, single pass and
flip TTA) as shipped and after ``ferkit.train.loop.recalibrated`` (the ``bn_recalibrate`` training
option) on all training faces. PrivateTest is not touched. About three minutes on 2 cores:

    python benchmarks/bn_recalibration.py --model runs/default/model.safetensors
    python benchmarks/bn_recalibration.py --smoke   # seconds: 256 training, 64 PublicTest faces (prints only)
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
from ablation import fer_slice
from repo_support import add_smoke_args

from ferkit.data import load_data, split_data
from ferkit.models.io import load_model
from ferkit.runtime.torch_backend import predict_logits
from ferkit.train.config import load_config
from ferkit.train.distributed import setup
from ferkit.train.loop import as_tensors, recalibrated

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--data", default=str(shared / "data" / "fer2013" / "fer2013.csv.gz"))
    parser.add_argument("--model", default="default", help="shipped model name, weights file or run folder")
    add_smoke_args(parser)  # nothing is written: the accuracies are printed
    args = parser.parse_args()
    if not Path(args.data).exists():
        sys.exit(f"{args.data} not found: FER2013's challenge CSV is needed (--data or $FERKIT_SHARED)")
    if args.smoke:  # the first 256 Training and 64 PublicTest faces
        with tempfile.TemporaryDirectory() as tmp:
            splits = split_data(load_data(fer_slice(args.data, Path(tmp), 256, 64, 0)))
    else:
        splits = split_data(load_data(args.data))
    val = as_tensors(splits["val"])
    model, _ = load_model(args.model)
    cfg = load_config(None, [f"bn_recalibrate={len(splits['train'])}"])

    def accuracy(net: torch.nn.Module, tta: bool) -> float:
        return (predict_logits(net, val.images, tta=tta).argmax(1) == val.labels).float().mean().item()

    fixed = recalibrated(model, as_tensors(splits["train"]), cfg, setup(), amp=None, epoch=0)
    for name, net in (("as shipped", model), ("recalibrated", fixed)):
        print(f"{args.model} {name:13s} PublicTest {accuracy(net, False):.2%}  "
              f"with flip TTA {accuracy(net, True):.2%}  (n = {len(val)})")


if __name__ == "__main__":
    main()
