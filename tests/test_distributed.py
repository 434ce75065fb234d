"""`ferkit train` under a real `torchrun --nproc_per_node=2` on the CPU (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from conftest import REPO
from safetensors.torch import load_file

ARGS = ["model.stem=[8,16]", "model.widths=[16,32]", "compile=false", "threads=1", "amp=off",
        "epochs=2", "batch_size=32", "patience=0", "limit_val=64", "limit_train=384",
        # EMA and batch-norm recalibration under DDP: their statistics are synced from rank 0;
        # CutMix pairs faces within each rank's rows.
        "ema_decay=0.9", "bn_recalibrate=128", "augment.cutmix=0.5"]


def _train(launcher: list[str], data: Path, out: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "train", "--data", str(data), "--out", str(out), *ARGS], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)


def test_torchrun_two_ranks_match_each_other_and_a_single_process(fer_slice_csv, tmp_path):
    ddp = _train([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                  "-m", "ferkit"], fer_slice_csv, tmp_path / "ddp")
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = _train([sys.executable, "-m", "ferkit"], fer_slice_csv, tmp_path / "single")
    assert single.returncode == 0, single.stderr[-3000:]

    summary = json.loads((tmp_path / "ddp" / "model.json").read_text())["metrics"]
    assert summary["world_size"] == 2
    rank0, rank1 = summary["rank_param_checksums"]
    assert rank0 == rank1, "the two ranks ended with different weights"
    # Only rank 0 logs: one line per epoch, not two.
    assert ddp.stderr.count("epoch   1/2") == 1

    # Same global batch and augmentation, except CutMix partners, taken within each rank's rows (so
    # the first face of each rank pairs differently); batch-norm statistics differ (16 per rank).
    a = load_file(tmp_path / "ddp" / "model.safetensors")
    b = load_file(tmp_path / "single" / "model.safetensors")
    weights = [k for k in a if a[k].is_floating_point() and "running" not in k]
    diff = torch.cat([(a[k] - b[k]).flatten() for k in weights]).norm()
    norm = torch.cat([b[k].flatten() for k in weights]).norm()
    assert diff / norm < 0.05, f"relative weight difference {diff / norm:.4f}"
    h_ddp = json.loads((tmp_path / "ddp" / "history.json").read_text())
    h_single = json.loads((tmp_path / "single" / "history.json").read_text())
    assert abs(h_ddp[-1]["train_loss"] - h_single[-1]["train_loss"]) < 0.05
