"""YuNet on a real photo (and beside OpenCV's FaceDetectorYN), eye-levelled crops, the --detector
option, and Haar without OpenCV or without its cascades."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from ferkit import imageops
from ferkit.cli import main
from ferkit.errors import FerkitError
from ferkit.imageio import load_image
from ferkit.inference import Box, Recognizer
from ferkit.inference.crop import (
    FER2013_FRAMING,
    alignment_matrix,
    crop_face,
    crop_faces,
    warp_face,
)
from ferkit.inference.detect import (
    YUNET_DIR,
    YUNET_FILE,
    HaarDetector,
    YuNetDetector,
    decode_yunet,
    make_detector,
    nms_boxes,
    to_gray,
)
from ferkit.inference.types import LANDMARK_COLUMNS


@pytest.fixture(scope="module")
def astronaut(astronaut_png: Path) -> np.ndarray:
    return load_image(astronaut_png)


@pytest.fixture(scope="module")
def detector() -> YuNetDetector:
    return YuNetDetector()


def rotated(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """The photo turned ``degrees`` anticlockwise about its centre, edges replicated."""
    h, w = rgb.shape[:2]
    return imageops.warp_affine(rgb, imageops.rotation_matrix((w / 2, h / 2), degrees), (w, h))


def mapped(matrix: np.ndarray, landmarks) -> np.ndarray:
    """Landmarks (5 x 2) through a 2x3 affine matrix."""
    pts = np.asarray(landmarks, dtype=float)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel().astype(float), b.ravel().astype(float))[0, 1])


def test_shipped_graph_is_the_documented_file():
    path = YUNET_DIR / YUNET_FILE
    readme = (YUNET_DIR / "README.md").read_text()
    assert hashlib.sha256(path.read_bytes()).hexdigest() in readme
    assert "0047ac24a" in readme and "Apache" in (YUNET_DIR / "LICENSE").read_text()


def test_yunet_finds_the_astronaut_and_plausible_landmarks(detector, astronaut):
    boxes = detector.detect(astronaut)
    assert len(boxes) == 1
    b = boxes[0]
    assert 150 < b.x < 220 and 40 < b.y < 100 and 70 < b.w < 130
    assert b.score is not None and 0.6 <= b.score <= 1
    right_eye, left_eye, nose, right_mouth, left_mouth = b.landmarks
    for x, y in b.landmarks:
        assert b.x <= x <= b.x + b.w and b.y <= y <= b.y + b.h
    # the person's right eye is on the image's left; eyes above the nose tip above the mouth
    assert right_eye[0] < nose[0] < left_eye[0] and right_mouth[0] < left_mouth[0]
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])
    assert abs(right_eye[1] - left_eye[1]) < 5  # an upright portrait
    # gray input (a video frame converted, a gray photo) finds the same face
    gray_boxes = detector.detect(to_gray(astronaut))
    assert len(gray_boxes) == 1 and abs(gray_boxes[0].x - b.x) <= 4


def test_default_recognizer_is_yunet_with_landmarks_on_faces(recognizer, astronaut):
    assert isinstance(recognizer.detector, YuNetDetector)
    face = recognizer.predict(astronaut).faces[0]
    assert face.landmarks == face.box.landmarks and len(face.landmarks) == 5
    assert face.detection_score == face.box.score
    # landmarks and score do not take part in a box's equality
    assert face.box == Box(face.box.x, face.box.y, face.box.w, face.box.h)


def test_alignment_levels_a_rotated_face(detector, astronaut):
    """Turn the portrait 20 degrees each way: in the aligned crop the landmarks are level and at
    FER2013's place, the real eyes (the upright photo's, carried through the turn) are much nearer
    level than in the photo, and the crop looks like the upright face's far more than the same crop
    without the turn does. YuNet's landmarks show only part of a tilt (11 of these 20 degrees;
    benchmarks/results/crop_framing.json, roll_check), so part of it stays."""
    gray = to_gray(astronaut)
    upright = detector.detect(astronaut)[0]
    reference = crop_faces(gray, [upright])[0]
    h, w = gray.shape
    for degrees in (20, -20):
        turn = imageops.rotation_matrix((w / 2, h / 2), degrees)
        photo = rotated(astronaut, degrees)
        found = detector.detect(photo)
        assert len(found) == 1
        matrix = alignment_matrix(found[0].landmarks)
        seen = mapped(matrix, found[0].landmarks)
        assert abs(seen[0, 1] - seen[1, 1]) < 1e-6  # the eyes the detector saw: level
        eyes, mouth = (seen[0] + seen[1]) / 2, (seen[3] + seen[4]) / 2
        anchor = (eyes + mouth) / 2
        assert anchor == pytest.approx([FER2013_FRAMING.anchor_x, FER2013_FRAMING.anchor_y], abs=1e-6)
        # near FER2013's medians (crop_framing.json: eyes' centre x 23.62, y 18.59; 17.40 px apart)
        assert abs(eyes[0] - 23.62) < 3 and abs(eyes[1] - 18.59) < 3
        assert abs(np.hypot(*(seen[1] - seen[0])) - FER2013_FRAMING.eye_distance) < 4
        real = mapped(matrix, mapped(turn, upright.landmarks))
        left = np.degrees(np.arctan2(real[1, 1] - real[0, 1], real[1, 0] - real[0, 0]))
        assert abs(left) < 0.65 * abs(degrees), left
        aligned = crop_faces(to_gray(photo), found)[0]
        scale, (ax, ay) = np.sqrt(abs(np.linalg.det(matrix[:, :2]))), anchor_of(found[0].landmarks)
        unturned = np.array([[scale, 0, FER2013_FRAMING.anchor_x - scale * ax],
                             [0, scale, FER2013_FRAMING.anchor_y - scale * ay]])  # no turn
        plain = warp_face(to_gray(photo), unturned)
        assert correlation(aligned, reference) > correlation(plain, reference) + 0.15


def anchor_of(landmarks) -> np.ndarray:
    pts = np.asarray(landmarks, dtype=float)
    return ((pts[0] + pts[1]) / 2 + (pts[3] + pts[4]) / 2) / 2


def test_aligned_crop_of_a_large_photo_matches_the_small_one(detector, astronaut):
    """The area pre-shrink and the pixel-centre bookkeeping: the same face at 4x the size gives
    (nearly) the same crop."""
    small = detector.detect(astronaut)[0]
    big_rgb = imageops.resize(astronaut, (2048, 2048), "cubic")
    big_landmarks = tuple((4 * x + 1.5, 4 * y + 1.5) for x, y in small.landmarks)  # pixel indices x4
    a = warp_face(to_gray(astronaut), alignment_matrix(small.landmarks))
    b = warp_face(to_gray(big_rgb), alignment_matrix(big_landmarks))
    assert np.abs(a.astype(float) - b).mean() < 3 and correlation(a, b) > 0.98


def test_crop_faces_aligns_boxes_with_landmarks_and_squares_the_others(detector, astronaut):
    gray = to_gray(astronaut)
    found = detector.detect(astronaut)[0]
    plain = Box(found.x, found.y, found.w, found.h)
    crops = crop_faces(gray, [found, plain])
    assert crops.shape == (2, 48, 48) and crops.dtype == np.uint8
    assert np.array_equal(crops[0], warp_face(gray, alignment_matrix(found.landmarks)))
    assert np.array_equal(crops[1], crop_face(gray, plain))
    assert crop_faces(gray, []).shape == (0, 48, 48)
    # a face at the photo's edge: the crop repeats the edge instead of failing
    edge = Box(0, 0, 40, 40, landmarks=((5.0, 10.0), (25.0, 10.0), (15.0, 20.0), (8.0, 30.0), (22.0, 30.0)))
    assert crop_faces(gray, [edge]).shape == (1, 48, 48)


def test_predict_json_and_csv_carry_landmarks(astronaut_png, capsys):
    assert main(["predict", "--json", str(astronaut_png)]) == 0
    face = json.loads(capsys.readouterr().out)["faces"][0]
    assert list(face["landmarks"]) == ["right_eye", "left_eye", "nose", "right_mouth", "left_mouth"]
    assert all(len(p) == 2 for p in face["landmarks"].values()) and face["detection_score"] >= 0.6
    assert main(["predict", "--csv", str(astronaut_png)]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [float(row[c]) for c in LANDMARK_COLUMNS] == [v for p in face["landmarks"].values() for v in p]
    assert float(row["detection_score"]) == pytest.approx(face["detection_score"], abs=1e-4)


def test_haar_still_works_where_opencv_has_its_cascades(astronaut_png, capsys):
    from ferkit.errors import FerkitError
    from ferkit.inference.detect import haar_cascade_path

    pytest.importorskip("cv2", reason="the Haar detector needs OpenCV (the haar extra)")
    try:
        haar_cascade_path()
    except FerkitError as exc:  # OpenCV 5: the one-line error is tested below
        pytest.skip(str(exc))
    assert main(["predict", "--json", "--detector", "haar", str(astronaut_png)]) == 0
    face = json.loads(capsys.readouterr().out)["faces"][0]
    assert face["landmarks"] is None and face["detection_score"] is None and face["label"] == "happy"
    assert main(["predict", "--csv", "--detector", "haar", str(astronaut_png)]) == 0
    row = next(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert all(row[c] == "" for c in [*LANDMARK_COLUMNS, "detection_score"]) and row["label"] == "happy"


@pytest.mark.parametrize("missing", ["module", "files"])
def test_without_cascades_haar_is_a_one_line_error_and_yunet_works(astronaut_png, tmp_path, monkeypatch,
                                                                   capsys, missing):
    """OpenCV 5 has no cv2.data.haarcascades (and no cascade files): simulated both ways."""
    cv2 = pytest.importorskip("cv2", reason="simulates OpenCV 5 on an installed OpenCV 4")
    if missing == "module":
        monkeypatch.delattr(cv2, "data", raising=False)
    else:
        monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path))
    with pytest.raises(FerkitError, match=re.escape("OpenCV 5 dropped them): install OpenCV 4 (pip install "
                                                    "'ferkit[opencv]')")):
        HaarDetector()
    with pytest.raises(FerkitError, match="OpenCV 5"):
        make_detector("haar")
    video = tmp_path / "none.mp4"
    for argv in (["predict", str(astronaut_png), "--detector", "haar"],
                 ["video", str(video), "--detector", "haar", "--quiet"],
                 ["serve", "--detector", "haar", "--port", "1"]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and re.match(r"ferkit: error: the Haar detector needs", err), err
    assert main(["predict", "--json", str(astronaut_png)]) == 0  # YuNet needs no cascade
    assert json.loads(capsys.readouterr().out)["faces"][0]["label"] == "happy"
    assert Recognizer(detector="yunet").predict(astronaut_png).faces


def test_unknown_detector_is_refused():
    with pytest.raises(FerkitError, match="unknown detector 'mtcnn'"):
        make_detector("mtcnn")


def test_without_opencv_haar_is_a_one_line_error_naming_the_extra(astronaut_png, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(FerkitError, match=re.escape("pip install 'ferkit[opencv]'")):
        make_detector("haar")
    assert main(["predict", str(astronaut_png), "--detector", "haar"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "OpenCV 4, which is not installed" in err, err
    assert main(["predict", "--json", str(astronaut_png)]) == 0  # YuNet needs no OpenCV
    assert json.loads(capsys.readouterr().out)["faces"][0]["label"] == "happy"


def test_yunet_decoding_matches_opencvs_rules():
    """Scores sqrt(cls * obj) clamped, boxes and landmarks from each cell of each stride, then
    NMSBoxes on integer boxes: hand-made outputs for a 64x32 input (8x4, 4x2 and 2x1 cells)."""
    outputs = {}
    for stride in (8, 16, 32):
        cells = (64 // stride) * (32 // stride)
        outputs[f"cls_{stride}"] = np.zeros((1, cells, 1), np.float32)
        outputs[f"obj_{stride}"] = np.ones((1, cells, 1), np.float32)
        outputs[f"bbox_{stride}"] = np.zeros((1, cells, 4), np.float32)
        outputs[f"kps_{stride}"] = np.zeros((1, cells, 10), np.float32)
    outputs["cls_8"][0, 9] = 0.81  # row 1, column 1: score 0.9
    outputs["bbox_8"][0, 9] = [0.5, 0.25, np.log(2), np.log(3)]
    outputs["kps_8"][0, 9, :2] = [1.0, -1.0]
    outputs["cls_8"][0, 10] = 0.64  # the next cell: score 0.8, overlapping the first -> suppressed
    outputs["bbox_8"][0, 10] = [-0.5, 0.25, np.log(2), np.log(3)]
    outputs["cls_32"][0, 1] = 1.5  # clamped to 1; obj 1 -> score 1, the far right of the image
    faces = decode_yunet(outputs, 64, 32, 0.6, 0.3, 5000)
    assert faces.shape == (2, 15) and faces.dtype == np.float32
    by_score = faces[np.argsort(-faces[:, 14])]
    assert by_score[0, 14] == pytest.approx(1.0) and by_score[0, :4] == pytest.approx([16, -16, 32, 32])
    cx, cy, w, h = (1 + 0.5) * 8, (1 + 0.25) * 8, 16, 24
    assert by_score[1, :4] == pytest.approx([cx - w / 2, cy - h / 2, w, h], abs=1e-5)
    assert by_score[1, 4:6] == pytest.approx([16, 0]) and by_score[1, 14] == pytest.approx(0.9)
    assert len(decode_yunet(outputs, 64, 32, 0.95, 0.3, 5000)) == 1
    # NMSBoxes: above the threshold only, best first, IoU of integer boxes above nms_threshold goes
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]], np.int32)
    assert nms_boxes(boxes, np.array([0.7, 0.9, 0.6, 0.5]), 0.5, 0.3, 5000).tolist() == [1, 2]
    assert nms_boxes(boxes, np.array([0.7, 0.9, 0.6, 0.5]), 0.5, 0.3, 1).tolist() == [1]


def test_yunet_boxes_agree_with_opencvs_face_detector(shared, astronaut):
    """The numpy decoding against cv2.FaceDetectorYN (the former detector) on the astronaut and
    four WIDER photos: the same boxes to a pixel, landmarks within 2 px, scores within 0.02."""
    pytest.importorskip("cv2", reason="the comparison needs OpenCV's FaceDetectorYN")
    from support.opencv_yunet import OpenCVYuNet

    wider = shared / "data" / "widerface-val200" / "images"
    if not wider.is_dir():
        pytest.skip(f"{wider} not found")
    photos = [astronaut] + [load_image(p) for p in sorted(wider.iterdir())[:4]]
    ours, theirs = YuNetDetector(score_threshold=0.5), OpenCVYuNet(score_threshold=0.5)
    total = 0
    for photo in photos:
        a, b = ours.detect(photo), theirs.detect(photo)
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert max(abs(x.x - y.x), abs(x.y - y.y), abs(x.w - y.w), abs(x.h - y.h)) <= 1, (x, y)
            assert np.abs(np.subtract(x.landmarks, y.landmarks)).max() < 2
            assert abs(x.score - y.score) < 0.02
        total += len(a)
        # on the same input pixels the raw rows agree to float rounding
        small = imageops.resize(photo, (320, round(320 * photo.shape[0] / photo.shape[1])), "area")
        raw_a, raw_b = ours.detect_raw(small), theirs.detect_raw(small)
        assert raw_a.shape == raw_b.shape and np.abs(raw_a - raw_b).max() < 1e-3
    assert total >= 10
