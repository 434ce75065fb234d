"""The light runtime: everything that only predicts works without PyTorch (nor safetensors, onnx or
matplotlib), and what needs them says so in one line with the install command that adds them.

The commands run as real processes through ``tests/support/without.py``, which hides those
packages and fails a command that so much as looks for them. ``.ci/run`` does the same in a fresh
virtualenv where they are really absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, run_ferkit
from support.synthetic import moving_face_frames, write_video

from ferkit.models.store import WEIGHTS_DIR

WITHOUT = REPO / "tests" / "support" / "without.py"
TRAIN_ONLY = "torch,safetensors,onnx,matplotlib"  # what the runtime install does not have
SERVE = "fastapi,uvicorn,python_multipart"


def without(hidden: str, *args: object, lookups_ok: bool = False) -> subprocess.CompletedProcess:
    """``ferkit ARGS`` with the ``hidden`` packages absent (see tests/support/without.py)."""
    flags = ["--lookups-ok"] if lookups_ok else []
    return subprocess.run([sys.executable, str(WITHOUT), hidden, *flags, "--", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def test_predict_eval_and_model_list_need_no_torch(astronaut_png, fer_slice_csv):
    done = without(TRAIN_ONLY, "predict", astronaut_png, "--json")
    assert done.returncode == 0, done.stderr
    (face,) = json.loads(done.stdout)["faces"]
    assert face["label"] == "happy"

    done = without(TRAIN_ONLY, "eval", "--model", "default", "--data", fer_slice_csv, "--json")
    assert done.returncode == 0, done.stderr
    m = json.loads(done.stdout)
    assert m["n"] == 128 and m["backend"] == "onnx" and m["model"] == "default" and m["accuracy"] > 0.5

    done = without(TRAIN_ONLY, "model", "list")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip()}
    assert listed >= {"default", "paper", "large"}

    done = without(TRAIN_ONLY, "data", "summary", "--data", fer_slice_csv)
    assert done.returncode == 0, done.stderr
    assert "896 images" in done.stdout


def test_video_with_its_plot_needs_no_torch_nor_matplotlib(astronaut_png, tmp_path):
    clip = write_video(moving_face_frames(astronaut_png, 30), tmp_path / "clip.mp4", fps=30)
    plot, table = tmp_path / "emotions.png", tmp_path / "frames.csv"
    done = without(TRAIN_ONLY, "video", clip, "--csv", table, "--plot", plot, "--quiet")
    assert done.returncode == 0, done.stderr
    assert len(table.read_text().splitlines()) == 31
    assert plot.read_bytes()[:4] == b"\x89PNG" and plot.stat().st_size > 5_000  # drawn, not blank


@pytest.mark.parametrize(("args", "feature", "extra"), [
    (["train", "--data", "x.csv", "--out", "x"], "ferkit train needs PyTorch", "train"),
    (["export", "--out", "x.onnx"], "ferkit export needs PyTorch", "train"),
    (["export", "--shipped"], "ferkit export needs PyTorch", "train"),
    (["report", "runs/x"], "ferkit report needs PyTorch", "train"),
    (["model", "summary", "paper"], "ferkit model summary needs PyTorch", "train"),
    (["predict", "x.png", "--backend", "torch"], "backend 'torch' needs PyTorch", "train"),
    (["data", "summary", "--data", "x.csv", "--out", "figs"], "Figs. 1-3) needs matplotlib", "plot"),
])
def test_what_needs_training_says_so_in_one_line(args, feature, extra):
    done = without(TRAIN_ONLY, *args, lookups_ok=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert feature in done.stderr and f"pip install 'ferkit[{extra}]'" in done.stderr


def test_serve_without_its_extra_is_one_line():
    done = without(SERVE, "serve", "--port", "1", lookups_ok=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == ("ferkit: error: ferkit serve needs FastAPI, uvicorn and python-multipart, "
                                   "which this install lacks: pip install 'ferkit[serve]'")


def test_weights_without_a_graph_need_torch_to_run(tmp_path, astronaut_png):
    for suffix in (".safetensors", ".json"):
        shutil.copy(WEIGHTS_DIR / f"paper{suffix}", tmp_path / f"mine{suffix}")
    done = without(TRAIN_ONLY, "predict", astronaut_png, "--model", tmp_path / "mine.safetensors",
                   lookups_ok=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "`ferkit export` makes one" in done.stderr and "ferkit[train]" in done.stderr
    mine = tmp_path / "mine.safetensors"
    done = without(TRAIN_ONLY, "serve", "--model", mine, "--port", "1", lookups_ok=True)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr  # before serving
    assert "`ferkit export` makes one" in done.stderr
    done = run_ferkit("predict", astronaut_png, "--model", tmp_path)  # a folder without model.safetensors
    assert done.returncode == 2 and "unknown model" in done.stderr and "run folder" in done.stderr
