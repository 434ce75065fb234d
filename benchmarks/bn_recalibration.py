"""What re-estimating batch-norm statistics on clean faces does to a trained model, on PublicTest.

Training batches are erased, rotated and zoomed, so the running statistics (and an EMA's average
of them) do not match clean test faces. This scores a model on PublicTest (fp32, single pass and
flip TTA) as shipped and after ``ferkit.train.loop.recalibrated`` (the ``bn_recalibrate`` training
option) on all training faces. PrivateTest is not touched. About three minutes on 2 cores:

    python benchmarks/bn_recalibration.py --model runs/default/model.safetensors
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from ferkit.data import load_data, split_data
from ferkit.models.io import load_model
from ferkit.runtime.torch_backend import predict_logits
from ferkit.train.config import load_config
from ferkit.train.distributed import setup
from ferkit.train.loop import recalibrated

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    shared = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))
    parser.add_argument("--data", default=str(shared / "data" / "fer2013" / "fer2013.csv.gz"))
    parser.add_argument("--model", default="default", help="shipped model name, weights file or run folder")
    args = parser.parse_args()
    splits = split_data(load_data(args.data))
    val = splits["val"]
    model, _ = load_model(args.model)
    cfg = load_config(None, [f"bn_recalibrate={len(splits['train'])}"])

    def accuracy(net: torch.nn.Module, tta: bool) -> float:
        return (predict_logits(net, val.images, tta=tta).argmax(1) == val.labels).float().mean().item()

    fixed = recalibrated(model, splits["train"], cfg, setup(), amp=None, epoch=0)
    for name, net in (("as shipped", model), ("recalibrated", fixed)):
        print(f"{args.model} {name:13s} PublicTest {accuracy(net, False):.2%}  "
              f"with flip TTA {accuracy(net, True):.2%}  (n = {len(val)})")


if __name__ == "__main__":
    main()
