"""Data loaders on real slices of FER2013: agreement between formats, splits, clear errors."""

from __future__ import annotations

import gzip
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import corrupt_gzip, run_ferkit
from PIL import Image

from ferkit.data import load_data, split_data
from ferkit.data.folders import _USAGE_PREFIX
from ferkit.errors import DataError
from ferkit.face import CLASSES

USAGE_ORDER = {"Training": 0, "PublicTest": 1, "PrivateTest": 2}


def _csv_rows(path: Path, wanted: set[int]) -> dict[int, tuple[int, np.ndarray]]:
    out = {}
    with gzip.open(path, "rt") as f:
        f.readline()
        for i, line in enumerate(f):
            if i in wanted:
                emotion, pixels, _ = line.rstrip("\n").split(",")
                out[i] = int(emotion), np.array(pixels.split(), dtype=np.uint8).reshape(48, 48)
    return out


@pytest.fixture(scope="module")
def folder_slice(fer_tarball: Path, tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """A few real images per class and split, extracted into the FER2013 folder layout, with the
    CSV row of each (rows are sorted by Usage, then image id)."""
    with tarfile.open(fer_tarball) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        keys = []
        for m in members:
            match = _USAGE_PREFIX.match(Path(m.name).name)
            keys.append((USAGE_ORDER[match.group(1)], int(match.group(2))))
        row_of = {m.name: r for r, (_, m) in enumerate(sorted(zip(keys, members), key=lambda t: t[0]))}
        rng = np.random.default_rng(0)
        pick = [members[i] for i in rng.choice(len(members), 120, replace=False)]
        root = tmp_path_factory.mktemp("folders")
        for m in pick:
            tar.extract(m, root, filter="data")
    return root / "fer2013", {str(root / m.name): row_of[m.name] for m in pick}


def test_csv_and_image_folders_agree_pixel_for_pixel(fer_csv, folder_slice):
    root, row_of = folder_slice
    folders = load_data(root)
    assert len(folders) == len(row_of)
    rows = _csv_rows(fer_csv, set(row_of.values()))
    for img, label, src in zip(folders.images, folders.labels, folders.sources):
        csv_label, csv_pixels = rows[row_of[src]]
        assert int(label) == csv_label, src
        assert np.array_equal(img, csv_pixels), src


def test_tarball_loader_matches_extracted_folders(folder_slice, tmp_path):
    root, _ = folder_slice
    tgz = tmp_path / "slice.tar.gz"
    with tarfile.open(tgz, "w:gz") as tar:
        tar.add(root, arcname="fer2013")
    a, b = load_data(root), load_data(tgz)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert (a.usage == b.usage).all()


def test_csv_loads_all_rows_with_usage(fer_slice_csv):
    data = load_data(fer_slice_csv)
    assert data.images.shape == (896, 48, 48) and data.images.dtype == np.uint8
    assert np.bincount(data.usage).tolist() == [640, 128, 128]


def test_canonical_and_paper_splits(fer_slice_csv):
    data = load_data(fer_slice_csv)
    canon = split_data(data, "canonical")
    assert [len(canon[k]) for k in ("train", "val", "test")] == [640, 128, 128]
    paper = split_data(data, "paper", seed=3)
    sizes = [len(paper[k]) for k in ("train", "val", "test")]
    assert sum(sizes) == len(data) and abs(sizes[0] / len(data) - 0.8) < 0.01
    # Stratified: each class keeps its share in the test split, and the seed makes it repeatable.
    full, test = np.bincount(data.labels, minlength=7), np.bincount(paper["test"].labels, minlength=7)
    assert np.all(np.abs(test - full * 0.1) <= 1)
    again = split_data(data, "paper", seed=3)["test"]
    assert again.sources == paper["test"].sources


def test_class_folders_any_size_and_mode(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "happy").mkdir()
    (tmp_path / "Surprised").mkdir()  # an alias, capitalised
    Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)).save(tmp_path / "happy" / "a.png")
    Image.fromarray(rng.integers(0, 255, (256, 256), dtype=np.uint8)).save(tmp_path / "happy" / "b.jpg")
    Image.new("RGBA", (30, 30), (10, 20, 30, 128)).save(tmp_path / "Surprised" / "c.png")
    data = load_data(tmp_path)
    assert data.images.shape == (3, 48, 48)
    assert [CLASSES[i] for i in data.labels] == ["happy", "happy", "surprise"]


BAD_CSVS = {
    "wrong_columns": ("label,pixels,Usage\n0,{px},Training\n", "missing column(s) emotion"),
    "short_pixels": ("emotion,pixels,Usage\n0,1 2 3,Training\n", "row 2: pixels has 3 values"),
    "out_of_range": ("emotion,pixels,Usage\n0,{px},Training\n3,{bad},Training\n", "row 3: pixel values"),
    "not_integer": ("emotion,pixels,Usage\n0,{nan},Training\n", "row 2: pixel value 'x'"),
    "unknown_label": ("emotion,pixels,Usage\n9,{px},Training\n", "row 2: unknown label '9'"),
    "unknown_usage": ("emotion,pixels,Usage\n1,{px},Holdout\n", "row 2: unknown Usage"),
    # No header row: the first row's 2,304 pixel values are not echoed as the header found.
    "no_header": ("0,{px},Training\n1,{px},Training\n", "the first line does not look like a header"),
}


@pytest.mark.parametrize("case", sorted(BAD_CSVS))
def test_bad_csv_gives_one_line_error(tmp_path, case):
    text, expected = BAD_CSVS[case]
    px = " ".join(["7"] * 2304)
    text = text.format(px=px, bad=" ".join(["7"] * 2303 + ["300"]), nan=" ".join(["1"] * 2303 + ["x"]))
    path = tmp_path / f"{case}.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=str(path)):
        load_data(path)
    result = run_ferkit("data", "summary", "--data", path)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(path) in lines[0] and expected in lines[0], lines[0]
    assert len(lines[0]) < 300 + len(str(path)), f"a {len(lines[0])}-character error"


def test_missing_path_and_unreadable_image(tmp_path):
    result = run_ferkit("eval", "--data", tmp_path / "nope.csv")
    assert result.returncode != 0 and "nope.csv: no such file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    (tmp_path / "sad").mkdir()
    bad = tmp_path / "sad" / "broken.jpg"
    bad.write_text("this is not a JPEG")
    result = run_ferkit("eval", "--data", tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"{bad}: unreadable image" in result.stderr
    (tmp_path / "sad" / "broken.jpg").unlink()
    (tmp_path / "contempt").mkdir()  # CK+ has an 8th class
    Image.new("L", (48, 48)).save(tmp_path / "contempt" / "x.png")
    result = run_ferkit("eval", "--data", tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "no images in folders named after the 7 FER2013 classes" in result.stderr
    Image.new("L", (48, 48)).save(tmp_path / "sad" / "y.png")
    result = run_ferkit("eval", "--data", tmp_path, "--json")
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path / 'contempt'}: skipped, not one of the 7 FER2013 classes" in result.stderr
    assert json.loads(result.stdout)["n"] == 1
    (tmp_path / "suprise").mkdir()  # a typo is an error, not a silently smaller data set
    Image.new("L", (48, 48)).save(tmp_path / "suprise" / "z.png")
    result = run_ferkit("eval", "--data", tmp_path)
    assert result.returncode != 0 and "unknown class folder 'suprise'" in result.stderr


def test_data_summary_writes_figures(fer_slice_csv, tmp_path):
    result = run_ferkit("data", "summary", "--data", fer_slice_csv, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Training" in result.stdout and "PrivateTest" in result.stdout
    for name in ("fig1_class_distribution.png", "fig2_samples.png"):
        assert Image.open(tmp_path / name).size[0] > 300


def test_corrupt_gzip_is_one_line(fer_slice_csv, tmp_path):
    path = corrupt_gzip(fer_slice_csv, tmp_path / "fer2013.csv.gz")
    with pytest.raises(DataError, match="cannot read CSV"):
        load_data(path)
    result = run_ferkit("data", "summary", "--data", path)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and str(path) in result.stderr


def test_empty_test_split_is_one_line(fer_slice_csv, tmp_path):
    path = tmp_path / "no_private_test.csv"
    lines = fer_slice_csv.read_text().splitlines(keepends=True)
    path.write_text("".join(line for line in lines if not line.rstrip().endswith("PrivateTest")))
    result = run_ferkit("eval", "--model", "paper", "--data", path, "--split", "test", "--json")
    assert result.returncode != 0 and result.stdout == "", result.stdout
    assert "the test split of the canonical protocol has no images" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    result = run_ferkit("eval", "--model", "paper", "--data", path, "--split", "val", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["n"] == 128, result.stderr
