"""FER+ votes joined to the challenge CSV: relabelling, vote distributions, training and scoring."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import corrupt_gzip, run_ferkit, shared_file

from ferkit.data import load_data
from ferkit.data.ferplus import read_votes, with_ferplus_labels
from ferkit.errors import DataError
from ferkit.face import CLASS_TO_INDEX

PER_USAGE = {"Training": 400, "PublicTest": 100, "PrivateTest": 100}


@pytest.fixture(scope="module")
def ferplus_slice(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The first rows of each Usage of the real CSV, and the same rows of the real votes file."""
    csv_gz = shared_file(shared, "fer2013", "fer2013.csv.gz")
    votes_gz = shared_file(shared, "ferplus", "ferplus_votes.csv.gz")
    folder = tmp_path_factory.mktemp("ferplus")
    want = dict(PER_USAGE)
    rows = []
    with gzip.open(csv_gz, "rt") as src, open(folder / "fer.csv", "w") as dst:
        dst.write(src.readline())
        for i, line in enumerate(src):
            usage = line.rstrip().rsplit(",", 1)[1]
            if want[usage] > 0:
                want[usage] -= 1
                rows.append(i)
                dst.write(line)
    keep = set(rows)
    with gzip.open(votes_gz, "rt") as src, open(folder / "votes.csv", "w") as dst:
        dst.write(src.readline())
        new = 0
        for i, line in enumerate(src):
            if i in keep:
                dst.write(f"{new}," + line.split(",", 1)[1])
                new += 1
    return folder / "fer.csv", folder / "votes.csv"


def test_join_labels_by_majority_and_keeps_vote_distributions(ferplus_slice):
    csv_path, votes_path = ferplus_slice
    data, votes = load_data(csv_path), read_votes(votes_path)
    relabelled, left_out = with_ferplus_labels(data, votes)
    assert len(relabelled) + sum(left_out.values()) == len(data) == sum(PER_USAGE.values())
    assert relabelled.targets is not None and relabelled.targets.shape == (len(relabelled), 7)
    assert relabelled.targets.dtype == np.float32 and np.allclose(relabelled.targets.sum(1), 1)
    # The label is the class with the most votes, and the distribution agrees with it.
    assert (relabelled.targets.argmax(1) == relabelled.labels).mean() > 0.95
    # Row 0 of the real CSV: nine workers said happiness, one unknown.
    assert relabelled.sources[0].endswith("row 2") and relabelled.labels[0] == CLASS_TO_INDEX["happy"]
    assert relabelled.targets[0, CLASS_TO_INDEX["happy"]] == 1.0
    # FER+ and FER2013 agree on roughly two images in three, as published.
    agree = (relabelled.labels == data.subset(
        [int(s.rsplit(" ", 1)[1]) - 2 for s in relabelled.sources]).labels).mean()
    assert 0.5 < float(agree) < 0.8
    # A subset keeps each image's distribution with it.
    part = relabelled.subset(np.array([3, 1]))
    assert np.array_equal(part.targets, relabelled.targets[[3, 1]])


def test_misaligned_votes_are_a_one_line_error(ferplus_slice, tmp_path):
    csv_path, votes_path = ferplus_slice
    lines = votes_path.read_text().splitlines()
    shifted = [lines[0]] + [f"{i}," + line.split(",", 1)[1] for i, line in enumerate(lines[2:] + lines[1:2])]
    bad = tmp_path / "shifted.csv"
    bad.write_text("\n".join(shifted) + "\n")
    with pytest.raises(DataError, match="not aligned"):
        with_ferplus_labels(load_data(csv_path), read_votes(bad))
    with pytest.raises(DataError, match="join only the full challenge CSV"):
        with_ferplus_labels(load_data(csv_path).subset(np.arange(10)), read_votes(votes_path))
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a FER\\+ votes file"):
        read_votes(tmp_path / "other.csv")


def test_train_on_votes_then_eval_reports_both_label_sets(ferplus_slice, tmp_path):
    csv_path, votes_path = ferplus_slice
    out = tmp_path / "run"
    done = run_ferkit("train", "--config", "configs/paper.toml", "--data", csv_path, "--out", out,
                      "labels=ferplus", f"ferplus_votes={votes_path}", "epochs=1", "batch_size=64",
                      "augment.jpeg=0.5", "augment.blur=0.5", "augment.downscale=0.5", "augment.noise=0.5",
                      "augment.light=0.5", "compile=false")
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "metrics_test.json").read_text())
    scored = run_ferkit("eval", "--model", out, "--data", csv_path, "--ferplus", votes_path, "--json")
    assert scored.returncode == 0, scored.stderr[-2000:]
    m = json.loads(scored.stdout)
    assert m["n"] == PER_USAGE["PrivateTest"]
    fp = m["ferplus"]
    assert fp["n"] + sum(fp["left_out"].values()) == PER_USAGE["PrivateTest"]
    assert fp["n"] == summary["n"]  # training scored the same FER+ test images
    assert 0.0 <= fp["accuracy"] <= 1.0 and len(fp["confusion_matrix"]) == 7
    text = run_ferkit("eval", "--model", out, "--data", csv_path, "--ferplus", votes_path)
    assert "FER2013's own labels" in text.stdout and "FER+ majority labels" in text.stdout
    missing = run_ferkit("train", "--config", "configs/paper.toml", "--data", csv_path, "--out",
                         tmp_path / "r2", "labels=ferplus", "epochs=1")
    assert missing.returncode != 0 and "ferplus_votes=PATH" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_corrupt_gzipped_votes_are_one_line(ferplus_slice, tmp_path):
    csv_path, votes_path = ferplus_slice
    bad = corrupt_gzip(votes_path, tmp_path / "votes.csv.gz")
    with pytest.raises(DataError, match="cannot read FER\\+ votes"):
        read_votes(bad)
    result = run_ferkit("eval", "--model", "paper", "--data", csv_path, "--ferplus", bad, "--json")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "cannot read FER+ votes" in result.stderr and len(result.stderr.strip().splitlines()) == 1
