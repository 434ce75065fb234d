"""Explanations: occlusion maps that follow the face, through the API, the CLI and every backend."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_ferkit
from PIL import Image

from ferkit.inference.explain import crop_to_image, occlusion_maps


def _mouth_rows(heatmap: np.ndarray) -> float:
    return float(heatmap[30:].mean())


def test_a_happy_face_relies_on_its_mouth_and_hiding_it_changes_the_map(astronaut_png) -> None:
    """The astronaut's smile carries her label: the map is strongest over the mouth; with the
    mouth already hidden the map there collapses and the label's support moves elsewhere (the
    smiling cheeks keep her happy). Measured on the network's own probabilities: a temperature
    or a prior rescales the log-odds drops, not what the network looks at."""
    from ferkit.inference import Recognizer

    recognizer = Recognizer(calibrated=False, prior="natural")
    found = recognizer.find_faces(str(astronaut_png))
    face = found.crops[0]
    probs = recognizer.classify(face[None])
    assert probs.argmax() == 3  # happy
    heat = occlusion_maps(recognizer.classify, face[None], np.array([3]))[0]
    assert _mouth_rows(heat) > 3 * float(heat[:24].mean())  # mouth and chin over eyes and brows

    covered = face.copy()
    covered[31:45, 12:36] = round(float(face.mean()))  # the mouth, as YuNet's crop places it
    heat_covered = occlusion_maps(recognizer.classify, covered[None], np.array([3]))[0]
    centre = (slice(34, 42), slice(18, 30))  # inside the hidden part, away from its edges
    assert heat_covered[centre].mean() < 0.5 * heat[centre].mean()
    outside = np.ones((48, 48), bool)
    outside[31:45, 12:36] = False
    assert heat_covered[outside].sum() > heat[outside].sum()
    assert np.abs(heat_covered - heat).max() > 0.5


def test_predict_with_explain_gives_each_face_a_map_on_its_crop(recognizer, astronaut_png) -> None:
    plain = recognizer.predict(str(astronaut_png))
    explained = recognizer.predict(str(astronaut_png), explain=True)
    assert plain.faces[0].explanation is None
    face = explained.faces[0]
    assert face.label == plain.faces[0].label and face.score == pytest.approx(plain.faces[0].score)
    assert face.explanation.heatmap.shape == (48, 48) and face.explanation.heatmap.min() >= 0
    # The crop's centre lands inside the face's box in the photo.
    cx, cy = face.explanation.crop_to_image @ np.array([23.5, 23.5, 1.0])
    box = face.box
    assert box.x < cx < box.x + box.w and box.y < cy < box.y + box.h
    data = face.to_dict()["explanation"]
    assert len(data["heatmap"]) == 24 and len(data["heatmap"][0]) == 24


def test_crop_to_image_inverts_the_square_crop_of_a_box_without_landmarks() -> None:
    from ferkit.face import Box

    box = Box(100, 50, 96, 96)
    matrix = crop_to_image(box, (400, 300))
    top_left = matrix @ np.array([0.0, 0.0, 1.0])
    bottom_right = matrix @ np.array([48.0, 48.0, 1.0])
    assert top_left == pytest.approx([99.0, 49.0], abs=1.5)  # the square is the box grown by 2%
    assert bottom_right == pytest.approx([197.0, 147.0], abs=1.5)


def test_a_map_from_a_reduced_copy_stays_on_its_landmarks_scaled_back(recognizer, astronaut_png) -> None:
    """A big upload is analysed on a reduced copy and its results scaled back: the heat map's
    crop-to-image matrix moves with the landmarks, so the crop's eyes land on the face's eyes."""
    from ferkit.inference.crop import alignment_matrix

    face = recognizer.predict(str(astronaut_png), explain=True).faces[0]
    eyes_in_crop = alignment_matrix(face.box.landmarks) @ np.array([*face.box.landmarks[0], 1.0])
    for factor in (2.0, 8.0):
        box, explanation = face.box.scaled(factor), face.explanation.scaled(factor)
        landed = explanation.crop_to_image @ np.array([*eyes_in_crop, 1.0])
        assert landed == pytest.approx(box.landmarks[0], abs=1e-6)


def test_the_map_is_the_same_through_onnxruntime_and_torch(astronaut_png) -> None:
    pytest.importorskip("torch")
    from ferkit.inference import Recognizer

    maps = [Recognizer("default", backend=b).predict(str(astronaut_png), explain=True).faces[0]
            .explanation.heatmap for b in ("onnx", "torch")]
    assert np.abs(maps[0] - maps[1]).max() < 1e-3


def test_cli_explain_writes_the_crop_map_and_overlay_of_each_face(tmp_path: Path, astronaut_png) -> None:
    out = tmp_path / "why"
    run = run_ferkit("explain", str(astronaut_png), "--out", str(out))
    assert run.returncode == 0, run.stderr
    assert "happy" in run.stdout and "mouth and chin" in run.stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["astronaut.annotated.png", "astronaut.face1.crop.png", "astronaut.face1.heatmap.png",
                     "astronaut.face1.overlay.png"]
    crop = np.asarray(Image.open(out / "astronaut.face1.crop.png"))
    overlay = np.asarray(Image.open(out / "astronaut.face1.overlay.png"))
    assert crop.shape == overlay.shape == (192, 192, 3)
    assert np.abs(crop.astype(int) - overlay).max() > 50  # the map shows on the face


def test_predict_annotate_explain_draws_the_map_and_json_carries_it(tmp_path: Path, astronaut_png) -> None:
    plain, explained = tmp_path / "plain", tmp_path / "explained"
    assert run_ferkit("predict", str(astronaut_png), "--annotate", str(plain)).returncode == 0
    run = run_ferkit("predict", str(astronaut_png), "--annotate", str(explained), "--explain", "--json")
    assert run.returncode == 0, run.stderr
    face = json.loads(run.stdout.splitlines()[0])["faces"][0]
    assert set(face["explanation"]) == {"heatmap", "crop_size", "full_scale", "crop_to_image"}
    a = np.asarray(Image.open(plain / "astronaut.annotated.png")).astype(int)
    b = np.asarray(Image.open(explained / "astronaut.annotated.png")).astype(int)
    mouth = (slice(138, 152), slice(210, 240))  # between YuNet's mouth corners
    assert np.abs(a[mouth] - b[mouth]).mean() > 20
    assert np.abs(a[:40] - b[:40]).max() == 0  # far above the face nothing changes
