"""Labelled photos (labels.csv + images/): the loader on a real slice of ExpW-dev, `ferkit eval`
on it as a real subprocess, and one-line errors for bad labels.csv files."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import run_ferkit, shared_file
from PIL import Image

from ferkit.data import load_data
from ferkit.data.labelled_photos import load_labelled_photos
from ferkit.errors import DataError
from ferkit.evaluate.metrics import MISSED, compute_metrics, metrics_with_misses
from ferkit.evaluate.photos import evaluate_photos, match_boxes
from ferkit.face import CLASSES, Box
from ferkit.imageio import load_image

HEADER = "image,face,x,y,w,h,label,confidence\n"


@pytest.fixture(scope="module")
def expw_slice(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    """A real slice of ExpW-dev in a temporary folder: 16 photos with one labelled face and 3 with
    several (measuring data: copied to tmp only, never into the repository)."""
    labels = shared_file(shared, "expw-dev", "labels.csv")
    with open(labels, newline="") as f:
        rows = list(csv.DictReader(f))
    by_image: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_image.setdefault(row["image"], []).append(row)
    several = [name for name, faces in by_image.items() if len(faces) > 1][:3]
    single = [name for name, faces in by_image.items() if len(faces) == 1][:16]
    chosen = [r for r in rows if r["image"] in set(several + single)]
    out = tmp_path_factory.mktemp("expw") / "expw-slice"
    (out / "images").mkdir(parents=True)
    with open(out / "labels.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(chosen)
    for name in several + single:
        shutil.copy(labels.parent / "images" / name, out / "images" / name)
    return out, chosen


def test_loader_reads_real_slice(expw_slice):
    root, rows = expw_slice
    data = load_labelled_photos(root)
    assert data.n_faces == len(rows) and len(data.photos) == 19 and data.skipped == 0
    faces = [(p.path.name, f) for p in data.photos for f in p.faces]
    assert sorted((name, f.face) for name, f in faces) == sorted((r["image"], r["face"]) for r in rows)
    by_key = {(r["image"], r["face"]): r for r in rows}
    for name, f in faces:
        r = by_key[name, f.face]
        assert f.box == Box(int(r["x"]), int(r["y"]), int(r["w"]), int(r["h"]))
        assert CLASSES[f.label] == r["label"] and f.confidence == pytest.approx(float(r["confidence"]))
    assert any(len(p.faces) > 1 for p in data.photos)
    for photo in data.photos[:5]:  # the size from the header is the decoded size
        assert load_image(photo.path).shape[:2] == (photo.height, photo.width)
    with pytest.raises(DataError, match="read by `ferkit eval` only"):
        load_data(root)  # never a training set


def test_eval_labelled_photos_json(expw_slice):
    root, rows = expw_slice
    result = run_ferkit("eval", "--data", root, "--json")
    assert result.returncode == 0, result.stderr
    assert "photo/s" in result.stderr  # the progress bar, on stderr
    m = json.loads(result.stdout)
    n = len(rows)
    assert m["n"] == n and m["photos"] == 19 and m["model"] == "default" and m["backend"] == "onnx"
    assert m["detector"] and m["iou_threshold"] == 0.3
    alone, e2e = m["classifier"], m["end_to_end"]
    for part in (alone, e2e):
        assert part["n"] == n and 0 <= part["macro_f1"] <= 1
        assert np.array(part["confusion_matrix"]).shape == (7, 7)
    assert sum(map(sum, alone["confusion_matrix"])) == n
    assert alone["accuracy"] == pytest.approx(np.trace(alone["confusion_matrix"]) / n)
    assert 0 < e2e["found"] <= n and e2e["found_rate"] == pytest.approx(e2e["found"] / n)
    assert sum(map(sum, e2e["confusion_matrix"])) == e2e["found"]  # over found faces
    assert e2e["accuracy"] == pytest.approx(np.trace(e2e["confusion_matrix"]) / n)  # over all faces
    assert e2e["accuracy"] <= e2e["found_rate"] and e2e["detections"] >= e2e["found"]
    assert sum(c["missed"] for c in e2e["per_class"].values()) == n - e2e["found"]

    text = run_ferkit("eval", "--data", root, "--quiet", "--backend", "torch")
    assert text.returncode == 0 and text.stderr == "", text.stderr
    assert "classifier alone" in text.stdout and f"found {e2e['found']}/{n}" in text.stdout


def test_match_boxes_and_missed_faces():
    labelled = [Box(0, 0, 10, 10), Box(20, 0, 10, 10), Box(50, 50, 10, 10)]
    detected = [Box(21, 1, 10, 10), Box(1, 0, 10, 10), Box(0, 2, 10, 10)]
    assert match_boxes(labelled, detected) == [1, 0, None]  # one-to-one, best IoU first
    assert match_boxes([Box(0, 0, 10, 10)], [Box(6, 0, 10, 10)]) == [None]  # IoU 0.25
    y_true = np.array([0, 1, 2, 3, 3, 6])
    y_pred = np.array([0, 2, 2, 3, 4, 6])
    full = metrics_with_misses(y_true, y_pred)
    assert {k: full[k] for k in ("accuracy", "macro_f1", "confusion_matrix")} == {
        k: compute_metrics(y_true, y_pred)[k] for k in ("accuracy", "macro_f1", "confusion_matrix")}
    missed = metrics_with_misses(y_true, np.array([0, 2, 2, 3, MISSED, MISSED]))
    assert missed["accuracy"] == pytest.approx(3 / 6) and missed["per_class"]["neutral"]["recall"] == 0
    assert missed["per_class"]["happy"]["precision"] == 1 and missed["per_class"]["happy"]["missed"] == 1
    assert sum(map(sum, missed["confusion_matrix"])) == 4


@dataclass(frozen=True)
class _MarkedBox(Box):
    """A detection with landmarks, whether or not ferkit's Box has them yet."""

    landmarks: tuple[tuple[float, float], ...] | None = None


def test_crop_of_a_labelled_box_gets_the_matching_detections_landmarks(tmp_path, monkeypatch):
    import ferkit.evaluate.photos as evaluate_photos_module
    from ferkit.inference import Recognizer

    eyes = ((20.0, 25.0), (40.0, 25.0), (30.0, 35.0), (22.0, 45.0), (38.0, 45.0))
    detections = [_MarkedBox(12, 10, 40, 40, landmarks=eyes), _MarkedBox(0, 60, 20, 20, landmarks=eyes)]

    class Stub:
        def detect(self, image: np.ndarray) -> list[Box]:
            return list(detections)

    cropped: list[list[Box]] = []

    def crop_faces(gray: np.ndarray, boxes: list[Box]) -> np.ndarray:
        cropped.append(list(boxes))
        return real_crop_faces(gray, boxes)

    real_crop_faces = evaluate_photos_module.crop_faces
    monkeypatch.setattr(evaluate_photos_module, "crop_faces", crop_faces)
    root = _photo_folder(tmp_path, HEADER + "a.jpg,0,10,10,40,40,happy,\na.jpg,1,60,40,30,30,sad,\n")
    m = evaluate_photos(Recognizer(detector=Stub(), backend="torch"), load_labelled_photos(root),
                        progress=False)
    (boxes,) = cropped
    assert (boxes[0].x, boxes[0].y, boxes[0].w, boxes[0].h) == (10, 10, 40, 40)  # the labelled box...
    assert boxes[0].landmarks == eyes  # ...with the landmarks of the detection that matches it
    assert boxes[1] == Box(60, 40, 30, 30) and getattr(boxes[1], "landmarks", None) is None
    assert m["classifier"]["landmark_crops"] == 1 and m["classifier"]["n"] == 2
    e2e = m["end_to_end"]
    assert (e2e["found"], e2e["detections"], e2e["per_class"]["sad"]["missed"]) == (1, 2, 1)


def _photo_folder(tmp_path: Path, labels: str) -> Path:
    (tmp_path / "images").mkdir()
    Image.new("RGB", (100, 80), (120, 90, 60)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "images" / "broken.jpg").write_text("not a JPEG")
    (tmp_path / "labels.csv").write_text(labels)
    return tmp_path


GOOD = "a.jpg,0,10,10,40,40,happy,0.9\n"
BAD_LABELS = {
    "empty_file": ("", "missing column(s) image, face, x, y, w, h, label"),
    "no_header": (GOOD, "missing column(s)"),
    "header_only": (HEADER, "no labelled faces"),
    "missing_column": ("image,face,x,y,w,label\na.jpg,0,10,10,40,happy\n", "missing column(s) h"),
    "short_row": (HEADER + GOOD + "a.jpg,1,10,10,40\n", "row 3: 5 fields, expected 8"),
    "not_a_number": (HEADER + "a.jpg,0,ten,10,40,40,happy,\n", "row 2: x 'ten' is not an integer"),
    "fractional": (HEADER + "a.jpg,0,10,10,40.5,40,happy,\n", "row 2: w '40.5' is not an integer"),
    "negative": (HEADER + GOOD + "a.jpg,1,-5,10,40,40,sad,\n", "row 3: box corner x=-5 y=10"),
    "zero_size": (HEADER + "a.jpg,0,10,10,0,40,sad,\n", "row 2: box size w=0 h=40 must be positive"),
    "unknown_label": (HEADER + "a.jpg,0,10,10,40,40,suprise,\n", "row 2: unknown label 'suprise'"),
    "bad_confidence": (HEADER + "a.jpg,0,10,10,40,40,sad,high\n", "row 2: confidence 'high'"),
    "missing_image": (HEADER + GOOD + "b.jpg,0,1,1,5,5,sad,\n", "row 3: image {root}/images/b.jpg not found"),
    "unreadable_image": (HEADER + "broken.jpg,0,1,1,5,5,sad,\n",
                         "row 2: image {root}/images/broken.jpg is unreadable"),
    "outside_image": (HEADER + "a.jpg,0,100,10,20,20,sad,\n",
                      "row 2: box x=100 y=10 w=20 h=20 lies outside a.jpg (100x80"),
    "duplicate_face": (HEADER + GOOD + GOOD, "row 3: image 'a.jpg' face '0' is already labelled in row 2"),
    "escaping_path": (HEADER + "../labels.csv,0,1,1,5,5,sad,\n",
                      "row 2: image '../labels.csv' must be a path inside"),
}


@pytest.mark.parametrize("case", sorted(BAD_LABELS))
def test_bad_labels_csv_gives_one_line_error(tmp_path, case):
    text, expected = BAD_LABELS[case]
    root = _photo_folder(tmp_path, text)
    expected = expected.format(root=root)
    with pytest.raises(DataError, match="labels.csv"):
        load_labelled_photos(root)
    result = run_ferkit("eval", "--data", root)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(root / "labels.csv") in lines[0] and expected in lines[0], lines[0]


def test_kept_rows_and_options_that_do_not_apply(tmp_path):
    root = _photo_folder(tmp_path, "Image,Face,X,Y,W,H,Label\n\n"  # any case; no confidence column
                         "a.jpg,0,80,60,40,40,Happiness\n"  # partly outside: kept, the crop pads
                         "a.jpg,1,0,0,20,20,contempt\n")  # not one of the 7: skipped with a warning
    data = load_labelled_photos(root)
    (face,) = data.photos[0].faces
    assert face.box == Box(80, 60, 40, 40) and CLASSES[face.label] == "happy" and face.confidence is None
    assert data.skipped == 1 and face.row == 3
    for flags in (["--split", "val"], ["--exclude-train-duplicates"], ["--protocol", "paper"]):
        result = run_ferkit("eval", "--data", root, *flags)
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert result.stderr.strip() == (f"ferkit: error: {flags[0]}: not for labelled photos ({root} has "
                                          "labels.csv and no splits; every labelled face is scored)")
