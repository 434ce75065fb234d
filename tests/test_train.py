"""The training loop learns, writes its run folder atomically and resumes to the same weights."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import REPO, run_ferkit
from safetensors.torch import load_file

from ferkit.train.config import load_config
from ferkit.train.loop import fit
from ferkit.train.plan import ExecutionPlan

TINY = ["model.stem=[8,16]", "model.widths=[16,32]", "compile=false", "threads=1"]


def test_small_model_overfits_64_images(fer_slice_csv, tmp_path):
    cfg = load_config(None, TINY + [
        "limit_train=64", "limit_val=64", "batch_size=64", "epochs=150", "patience=0", "lr=0.005",
        "model.dropout=0", "augment.rotation=0", "augment.shift=0", "augment.zoom=0",
        "augment.hflip=false", "amp=off",
    ])
    fit(cfg, fer_slice_csv, tmp_path)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[0]["train_loss"] > 1.5
    assert history[-1]["train_loss"] < 0.05 and history[-1]["train_acc"] == 1.0


def _train_cmd(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ferkit", "train", "--data", str(data), "--out", str(out), *extra,
            *TINY, "epochs=3", "batch_size=16", "patience=0", "limit_val=64", "model.stem=[16,32]",
            "model.widths=[32,64]"]


def _checkpointed(out: Path) -> bool:
    return (out / "checkpoint.pt").is_file()


def _epochs_done(out: Path) -> int:
    try:
        return len(json.loads((out / "history.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


# The default model's recipe: its weight average and optimizer state must survive a kill too.
DEFAULT_RECIPE = ["ema_decay=0.9", "optimizer=adamw", "weight_decay=0.05", "label_smoothing=0.1",
                  "augment.erase=0.5"]


def test_resume_after_kill_gives_the_same_weights(fer_slice_csv, tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_train_cmd(fer_slice_csv, straight, *DEFAULT_RECIPE), cwd=REPO, check=True,
                   capture_output=True)

    proc = subprocess.Popen(_train_cmd(fer_slice_csv, killed, *DEFAULT_RECIPE), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not _checkpointed(killed) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _epochs_done(killed)
    assert 1 <= done < 3, f"kill landed after {done} epochs"
    assert not (killed / "model.safetensors").exists()
    assert not list(killed.glob(".*.tmp")), "a temporary file survived: writes are not atomic"

    resumed = subprocess.run(_train_cmd(fer_slice_csv, killed, "--resume", *DEFAULT_RECIPE), cwd=REPO,
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after epoch {done}" in resumed.stderr
    a, b = load_file(straight / "model.safetensors"), load_file(killed / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].equal(b[k]), k
    assert json.loads((straight / "history.json").read_text())[-1]["val_acc"] == \
        json.loads((killed / "history.json").read_text())[-1]["val_acc"]


def test_run_folder_eval_and_report(fer_slice_csv, tmp_path):
    run = tmp_path / "run"
    result = run_ferkit("train", "--config", REPO / "configs" / "paper.toml", "--data", fer_slice_csv,
                        "--out", run, *TINY, "epochs=2", "batch_size=32", "limit_val=64")
    assert result.returncode == 0, result.stderr
    for name in ("model.safetensors", "model.json", "history.csv", "checkpoint.pt", "metrics_test.json"):
        assert (run / name).is_file(), name
    card = json.loads((run / "model.json").read_text())
    assert card["arch"] == "paper_net" and card["command"].startswith("ferkit train")

    result = run_ferkit("eval", "--model", run / "model.safetensors", "--data", fer_slice_csv, "--json")
    assert result.returncode == 0, result.stderr
    m = json.loads(result.stdout)
    assert m["n"] == 128 and set(m) >= {"accuracy", "macro_f1", "per_class", "confusion_matrix"}
    assert sum(map(sum, m["confusion_matrix"])) == 128 and m["backend"] == "onnx"
    # The run folder names the same weights; PyTorch agrees with onnxruntime's in-memory graph.
    result = run_ferkit("eval", "--model", run, "--data", fer_slice_csv, "--backend", "torch", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["confusion_matrix"] == m["confusion_matrix"]

    result = run_ferkit("report", run)
    assert result.returncode == 0, result.stderr
    report = (run / "report.md").read_text()
    assert "Gao & Ma" in report and "65.20%" in report
    for fig in ("fig7_loss.png", "fig8_accuracy.png", "fig9_confusion.png", "fig10_predictions.png"):
        assert (run / fig).stat().st_size > 5000, fig


@pytest.mark.parametrize(("override", "message"), [
    ("epochz=3", "unknown config key(s): epochz (did you mean 'epochs'?)"),
    ("model.widht=[8,16]", "unknown model key(s) of paper_net: widht (did you mean 'widths'?)"),
    ("augment.zom=0.1", "unknown augment key(s): zom (did you mean 'zoom'?)"),
    ("teachers=paper", "must be a list of model names"),
    ("ema_decay=abc", "ema_decay='abc' must be a number"),
    ("init_from=no-such-model", "unknown model 'no-such-model'"),
    ("augment=1", "augment=1 must be a table"),
    ("augment.cutmix=yes", "augment.cutmix='yes' must be a number"),
])
def test_bad_override_is_one_line(override, message, tmp_path):
    result = run_ferkit("train", "--data", "x.csv", "--out", tmp_path, override)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_warm_start_loads_the_shipped_weights():
    from ferkit.models import create_model
    from ferkit.models.io import load_model
    from ferkit.train.loop import init_weights

    paper, card = load_model("paper")
    cfg = load_config(None, ["init_from=paper", "model.dropout=0.5"] +
                      [f"model.{k}={json.dumps(v)}" for k, v in card["model"].items() if k != "dropout"])
    model = create_model(cfg.arch, **cfg.model)
    init_weights(model, cfg)
    theirs = paper.state_dict()
    for k, v in model.state_dict().items():
        assert v.equal(theirs[k]), k


def test_warm_start_from_another_architecture_is_one_line(fer_slice_csv, tmp_path):
    result = run_ferkit("train", "--data", fer_slice_csv, "--out", tmp_path, *TINY, "init_from=paper")
    assert result.returncode == 2
    assert "init_from='paper'" in result.stderr and "does not fit" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_distillation_from_cached_teacher_logits(fer_slice_csv, tmp_path):
    from safetensors import safe_open

    args = ["train", "--data", fer_slice_csv, "--out", tmp_path, *TINY, "epochs=1", "batch_size=32",
            "limit_val=64", "teachers=[\"paper\"]", "distill_alpha=0.7"]
    first = run_ferkit(*args)
    assert first.returncode == 0, first.stderr
    assert "teachers paper: classifying 640 training images once" in first.stderr
    with safe_open(tmp_path / "teacher_logits.safetensors", "pt") as f:
        key = json.loads(f.metadata()["teachers"])
        assert list(key["teachers"]) == ["paper"] and len(key["images"]) == 64
        logits = f.get_tensor("logits")
    assert logits.shape == (640, 7)
    # Log-probabilities of the teachers' averaged distribution, one per training image.
    probs = logits.softmax(1)
    assert torch.allclose(probs.sum(1), torch.ones(640), atol=1e-4)
    again = run_ferkit(*args[:-2], "epochs=2", "teachers=[\"paper\"]", "distill_alpha=0.7", "--resume")
    assert again.returncode == 0, again.stderr
    assert "classifying" not in again.stderr  # the cache was reused
    changed = run_ferkit(*args[:-2], "epochs=3", "ema_decay=0.9", "--resume")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert "cannot resume: the checkpoint was trained without ema_decay" in changed.stderr


def test_distillation_loss_is_zero_only_when_student_matches_teacher():
    from ferkit.train.distill import distillation_loss

    teacher = torch.randn(16, 7)
    assert distillation_loss(teacher.clone(), teacher, 2.0).abs() < 1e-6
    assert distillation_loss(torch.randn(16, 7), teacher, 2.0) > 0.01


def test_bn_recalibration_measures_clean_faces_and_leaves_the_model_alone(fer_slice_csv):
    from ferkit.data import load_data, split_data
    from ferkit.models import create_model
    from ferkit.models.preprocess import to_model_input
    from ferkit.train import distributed
    from ferkit.train.loop import as_tensors, recalibrated

    train = as_tensors(split_data(load_data(fer_slice_csv))["train"])
    cfg = load_config(None, TINY + ["bn_recalibrate=512", "eval_batch_size=128", "amp=off"])
    model = create_model(cfg.arch, **cfg.model)
    conv, bn = model.stem[0][0], model.stem[0][1]
    with torch.no_grad():  # a mirror-symmetric stem: its channel statistics ignore the random flips
        conv.weight.copy_((conv.weight + conv.weight.flip(-1)) / 2)
    bn.running_mean.fill_(5.0)  # stale statistics, as if from heavily augmented batches

    copy = recalibrated(model, train, cfg, distributed.setup(), None, epoch=0)

    assert bn.running_mean.eq(5.0).all(), "the trained model's statistics were overwritten"
    gen = torch.Generator().manual_seed((cfg.seed + 1) * 100_003)  # epoch 0's recalibration draw
    chosen = torch.randperm(len(train), generator=gen)[:512]
    with torch.no_grad():
        features = conv(to_model_input(train.images[chosen]))
    expected = features.mean(dim=(0, 2, 3))
    assert torch.allclose(copy.stem[0][1].running_mean, expected, atol=1e-4)
    assert not copy.training


def test_model_selection_run_leaves_the_test_split_unscored(fer_slice_csv, tmp_path):
    result = run_ferkit("train", "--data", fer_slice_csv, "--out", tmp_path, *TINY, "epochs=1",
                        "batch_size=32", "limit_val=64", "test_at_end=false", "bn_recalibrate=128",
                        "ema_decay=0.9")
    assert result.returncode == 0, result.stderr
    assert "test not scored" in result.stderr and "test acc" not in result.stderr
    assert not (tmp_path / "metrics_test.json").exists()
    summary = json.loads((tmp_path / "model.json").read_text())["metrics"]
    assert "test_accuracy" not in summary and 0 <= summary["val_accuracy"] <= 1
    # Its report does not score the test split behind the user's back.
    report = run_ferkit("report", tmp_path)
    assert report.returncode == 2 and "test_at_end=false" in report.stderr, report.stderr
    assert len(report.stderr.strip().splitlines()) == 1 and not (tmp_path / "report.md").exists()


def test_corrupt_checkpoint_is_refused_and_stale_temps_are_removed(fer_slice_csv, tmp_path):
    args = ["train", "--data", fer_slice_csv, "--out", tmp_path, *TINY, "batch_size=32",
            "limit_val=64"]
    assert run_ferkit(*args, "epochs=1").returncode == 0
    ckpt = tmp_path / "checkpoint.pt"
    assert not list(tmp_path.glob(".*.tmp"))
    # What a kill -9 in the middle of atomic_write leaves behind.
    for name in (".checkpoint.pt.k1ll3d.tmp", ".history.json.x7y8z9.tmp"):
        (tmp_path / name).write_bytes(b"")
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, inside the saved weights
    ckpt.write_bytes(bytes(data))
    result = run_ferkit(*args, "epochs=2", "--resume")
    assert result.returncode == 2, result.stderr
    assert "checkpoint is corrupt" in result.stderr and "Traceback" not in result.stderr
    assert not list(tmp_path.glob(".*.tmp")), "stale temporary files were left in the run folder"
    assert json.loads((tmp_path / "history.json").read_text())[-1]["epoch"] == 1


def test_corrupt_teacher_logit_cache_is_recomputed(fer_slice_csv, tmp_path):
    from safetensors import safe_open

    args = ["train", "--data", fer_slice_csv, "--out", tmp_path, *TINY, "batch_size=32",
            "limit_val=64", "teachers=[\"paper\"]", "distill_alpha=0.7"]
    assert run_ferkit(*args, "epochs=1").returncode == 0
    cache = tmp_path / "teacher_logits.safetensors"
    with safe_open(cache, "pt") as f:
        good = f.get_tensor("logits")
    data = bytearray(cache.read_bytes())
    broken_header, flipped_logit = bytearray(data), bytearray(data)
    broken_header[:8] = b"\xff" * 8  # a header length past the end of the file: SafetensorError
    flipped_logit[-3] ^= 0xFF  # one flipped byte in the last logit: still a valid file
    for epochs, damaged, message in ((2, broken_header, "unreadable"), (3, flipped_logit, "corrupt")):
        cache.write_bytes(bytes(damaged))
        result = run_ferkit(*args, f"epochs={epochs}", "--resume")
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        assert f"{cache}: {message}" in result.stderr and "recomputing" in result.stderr
        assert "classifying 640 training images once" in result.stderr
        with safe_open(cache, "pt") as f:
            assert f.get_tensor("logits").equal(good)


def test_typos_in_a_toml_config_get_a_did_you_mean(tmp_path):
    from ferkit.errors import FerkitError

    for text, message in [
        ("epcohs = 3\n", "unknown config key(s): epcohs (did you mean 'epochs'?)"),
        ("[model]\ndropuot = 0.2\n", "unknown model key(s) of paper_net: dropuot (did you mean 'dropout'?)"),
        ("[augment]\nrotaton = 5.0\n", "unknown augment key(s): rotaton (did you mean 'rotation'?)"),
        ('arch = "papernet"\n', "unknown architecture 'papernet' (did you mean 'paper_net'?)"),
    ]:
        path = tmp_path / "typo.toml"
        path.write_text(text)
        with pytest.raises(FerkitError) as err:
            load_config(path)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_list_keys_prints_every_key_with_its_default_and_help_as_the_docs_do():
    import dataclasses

    from ferkit.train.augment import AugmentConfig
    from ferkit.train.config import TrainConfig

    result = run_ferkit("train", "--list-keys")  # no --data or --out needed, as with --help
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    listed = {line.split(" = ")[0]: line for line in lines}
    expected = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "augment"}
    expected |= {f"augment.{f.name}" for f in dataclasses.fields(AugmentConfig)}
    expected |= {f"model.{k}" for k in ("stem", "widths", "blocks_per_stage", "se", "separable",
                                        "shortcut", "dropout", "num_classes")}
    assert set(listed) == expected
    for name, line in listed.items():
        assert "  # " in line and line.split("  # ", 1)[1].strip(), f"{name} has no help text"
    assert listed["epochs"].startswith("epochs = 50 ") and listed["augment.hflip"].startswith(
        "augment.hflip = true ") and listed["model.stem"].startswith("model.stem = [32, 64] ")
    # The list is itself a config (TOML), of the defaults.
    import tomllib

    from ferkit.train.config import build_config

    listed_config = build_config(tomllib.loads(result.stdout)).to_dict()
    assert listed_config.pop("model")["widths"] == [128, 256, 512]  # the constructor's defaults
    assert listed_config == {k: v for k, v in TrainConfig().to_dict().items() if k != "model"}
    # The docs page holds the same list.
    assert result.stdout.strip() in (REPO / "docs" / "config-keys.md").read_text()


@pytest.mark.parametrize("case", ["missing", "dangling", "directory"])
def test_resume_without_a_checkpoint_file_is_one_line_before_the_data_is_read(case, tmp_path, capsys):
    from ferkit.cli import main

    ckpt = tmp_path / "checkpoint.pt"
    if case == "dangling":
        ckpt.symlink_to(tmp_path / "gone.pt")
    elif case == "directory":
        ckpt.mkdir()
    # A data path that does not exist: reading it first would be a different error.
    code = main(["train", "--data", str(tmp_path / "no.csv"), "--out", str(tmp_path), "--resume", *TINY])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    expected = {
        "missing": f"--resume: no checkpoint at {ckpt}; run without --resume to start a new run",
        "dangling": f"--resume: {ckpt} is a dangling symlink",
        "directory": f"{ckpt} is a directory",
    }[case]
    assert expected in err and "no.csv" not in err
    if case == "directory":  # a new run too: it would fail after its first epoch
        code = main(["train", "--data", str(tmp_path / "no.csv"), "--out", str(tmp_path), *TINY])
        assert code == 2 and f"{ckpt} is a directory" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["checkpoint.pt", "model.safetensors", "history.json"])
def test_a_new_run_refuses_an_out_that_holds_a_run(name, tmp_path, capsys):
    from ferkit.cli import main

    (tmp_path / name).write_bytes(b"a run's file")
    code = main(["train", "--data", str(tmp_path / "no.csv"), "--out", str(tmp_path), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert (f"{tmp_path} already holds a run; pass --resume to continue it, or choose another --out"
            in err)
    assert (tmp_path / name).read_bytes() == b"a run's file"
    # An empty folder is fine: the run goes on (here to the missing data).
    (tmp_path / name).unlink()
    code = main(["train", "--data", str(tmp_path / "no.csv"), "--out", str(tmp_path), *TINY])
    assert code == 2 and "no.csv: no such file" in capsys.readouterr().err


def test_a_compiled_run_says_so_and_leaves_compilation_out_of_its_img_s(monkeypatch, capsys):
    from torch import nn

    from ferkit.train import distributed, loop

    now = [0.0]
    monkeypatch.setattr(loop, "clock", lambda: now[0])

    class SlowFirstCall(nn.Module):
        """A model whose first batch takes 100 s (compiling) and every other 0.5 s."""

        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Flatten(), nn.Linear(48 * 48, 7))
            self.calls = 0

        def forward(self, x):
            now[0] += 100.0 if self.calls == 0 else 0.5
            self.calls += 1
            return self.net(x)

    cfg = load_config(None, ["batch_size=16", "amp=off"])
    faces = loop.Faces(torch.randint(0, 256, (160, 48, 48), dtype=torch.uint8),
                       torch.randint(0, 7, (160,)))
    model = SlowFirstCall()
    opt = torch.optim.Adam(model.parameters())
    plan = ExecutionPlan(torch.device("cpu"), threads=1, channels_last=False, compile=True, amp=None)
    row = loop.train_one_epoch(model, opt, faces, cfg, loop.RunState(), distributed.DistInfo(), plan,
                               torch.amp.GradScaler("cpu", enabled=False), compiling=True)
    assert row["images_per_s"] == pytest.approx(16 / 0.5)  # 9 batches of 16 faces in 4.5 s
    assert row["train_seconds"] == pytest.approx(104.5)  # the wall clock keeps it
    err = capsys.readouterr().err
    assert "compiling (first batch)..." in err and "compiled in 100 s" in err
    # Without compilation every batch counts, the first one too.
    model.calls, now[0] = 1, 0.0
    row = loop.train_one_epoch(model, opt, faces, cfg, loop.RunState(), distributed.DistInfo(), plan,
                               torch.amp.GradScaler("cpu", enabled=False))
    assert row["images_per_s"] == pytest.approx(160 / 5.0)
    assert "compiling" not in capsys.readouterr().err


def test_a_one_epoch_run_draws_visible_points_in_its_curves(tmp_path):
    """A 1-epoch history is one point per series: drawn as a line alone it is invisible (only the
    legend's sample shows the colour, about 66 pixels); each epoch's marker adds about 60 more."""
    import numpy as np
    from PIL import Image

    from ferkit import figures

    history = [{"epoch": 1, "train_loss": 1.8, "val_loss": 1.7, "train_acc": 0.3, "val_acc": 0.35}]
    for path in figures.training_curves(history, tmp_path / "loss.png", tmp_path / "acc.png"):
        pixels = np.asarray(Image.open(path).convert("RGB")).astype(int)
        for colour in ((31, 119, 180), (255, 127, 14)):  # train, validation (matplotlib's C0, C1)
            near = (np.abs(pixels - np.array(colour)).sum(-1) < 40).sum()
            assert near >= 100, (path.name, colour, near)
