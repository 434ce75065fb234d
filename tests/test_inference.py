"""The Python API on a real photo: detection, cropping, every input type, batching, no-face notes."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image
from support.synthetic import group_photo

from ferkit.errors import ImageError
from ferkit.face import CLASSES
from ferkit.inference import Box, Recognizer
from ferkit.inference.crop import crop_face, square_around
from ferkit.inference.tracking import IouTracker
from ferkit.inference.types import prediction_json


@pytest.fixture(scope="module")
def astronaut_rgb(astronaut_png) -> np.ndarray:
    return np.asarray(Image.open(astronaut_png).convert("RGB"))


def test_recognizer_is_the_package_api():
    import ferkit

    assert ferkit.Recognizer is Recognizer


def test_astronaut_is_one_happy_face(recognizer, astronaut_png):
    pred = recognizer.predict(astronaut_png)
    assert len(pred.faces) == 1
    face = pred.faces[0]
    assert face.label == "happy"
    assert list(face.probabilities) == list(CLASSES)
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    # The face is in the upper middle of the 512x512 portrait.
    assert 150 < face.box.x < 220 and 40 < face.box.y < 100 and 70 < face.box.w < 130


def test_every_input_type_gives_the_same_answer(recognizer, astronaut_png, astronaut_rgb):
    reference = recognizer.predict(astronaut_png).faces[0]
    inputs = [
        (astronaut_png.read_bytes(), "rgb"),
        (Image.open(astronaut_png), "rgb"),
        (astronaut_rgb, "rgb"),
        (np.ascontiguousarray(astronaut_rgb[:, :, ::-1]), "bgr"),
        (astronaut_rgb.astype(np.float32) / 255.0, "rgb"),
    ]
    for image, color in inputs:
        face = recognizer.predict(image, color=color).faces[0]
        assert face.box == reference.box
        assert face.label == reference.label
        assert face.score == pytest.approx(reference.score, abs=1e-3)


def test_gray_array_is_accepted(recognizer, astronaut_rgb):
    gray = cv2.cvtColor(astronaut_rgb, cv2.COLOR_RGB2GRAY)
    assert len(recognizer.predict(gray, color="gray").faces) == 1


def test_predict_batch_equals_predict(recognizer, astronaut_png, astronaut_rgb):
    blank = np.full((200, 300, 3), 128, np.uint8)
    mirrored = np.ascontiguousarray(astronaut_rgb[:, ::-1])
    images = [astronaut_png, group_photo(astronaut_png), blank, mirrored]
    batched = recognizer.predict_batch(images)
    assert [len(p.faces) for p in batched] == [1, 3, 0, 1]
    for image, together in zip(images, batched, strict=True):
        alone = recognizer.predict(image)
        assert [f.box for f in alone.faces] == [f.box for f in together.faces]
        assert [f.label for f in alone.faces] == [f.label for f in together.faces]
        for a, b in zip(alone.faces, together.faces, strict=True):
            assert np.allclose(list(a.probabilities.values()), list(b.probabilities.values()), atol=1e-5)


def test_predict_batch_is_one_forward_pass(astronaut_png):
    calls = []
    rec = Recognizer()
    classify = rec.classify
    rec.classify = lambda faces: calls.append(len(faces)) or classify(faces)
    rec.predict_batch([astronaut_png, group_photo(astronaut_png), astronaut_png])
    assert calls == [5]


def test_no_face_gives_an_empty_list_and_a_note(recognizer):
    pred = recognizer.predict(np.full((240, 320, 3), 200, np.uint8))
    assert pred.faces == []
    assert "no face" in pred.note and "detect=False" in pred.note
    assert (pred.width, pred.height) == (320, 240)


def test_detect_false_classifies_the_whole_image(recognizer, astronaut_rgb):
    box = recognizer.predict(astronaut_rgb).faces[0].box
    crop = astronaut_rgb[box.y : box.y + box.h, box.x : box.x + box.w]
    pred = recognizer.predict(crop, detect=False)
    assert len(pred.faces) == 1 and pred.faces[0].box is None and pred.note == ""


def test_a_custom_detector_plugs_in(astronaut_rgb):
    class Fixed:
        def detect(self, image):
            return [Box(10, 10, 60, 60), Box(177, 67, 93, 93)]

    pred = Recognizer(detector=Fixed()).predict(astronaut_rgb)
    assert [f.box for f in pred.faces] == [Box(10, 10, 60, 60), Box(177, 67, 93, 93)]


def test_json_shape_is_the_documented_one(recognizer, astronaut_png):
    data = json.loads(json.dumps(prediction_json(recognizer.predict(astronaut_png), recognizer.model_name)))
    assert set(data) == {"source", "width", "height", "faces", "note", "model"}
    assert data["model"] == "default" and data["source"] == str(astronaut_png)
    assert set(data["faces"][0]) == {"box", "label", "score", "uncertain", "probabilities", "landmarks",
                                     "detection_score"}
    assert set(data["faces"][0]["box"]) == {"x", "y", "w", "h"}
    assert list(data["faces"][0]["landmarks"]) == ["right_eye", "left_eye", "nose", "right_mouth",
                                                   "left_mouth"]
    assert 0.6 <= data["faces"][0]["detection_score"] <= 1


def test_crop_is_square_and_pads_at_the_border():
    gray = np.arange(100 * 120, dtype=np.uint32).reshape(100, 120).astype(np.uint8)
    x, y, side = square_around(Box(10, 20, 30, 40))
    assert side >= 40 and abs((x + side / 2) - 25) <= 1 and abs((y + side / 2) - 40) <= 1
    face = crop_face(gray, Box(0, 0, 50, 50))  # the square sticks out of the top-left corner
    assert face.shape == (48, 48) and face.dtype == np.uint8


def test_tracker_keeps_ids_through_motion_and_a_missed_frame():
    tracker = IouTracker()
    a, b = Box(10, 10, 50, 50), Box(300, 200, 60, 60)
    first = tracker.update([a, b])
    assert tracker.update([Box(300 + 8, 200, 60, 60), Box(10 + 8, 12, 50, 50)]) == first[::-1]
    assert tracker.update([]) == []
    # A jump too big for the overlap test (IoU 0.14) is still matched on centre distance.
    assert tracker.update([Box(18 + 35, 12 + 10, 50, 50)]) == [first[0]]
    assert tracker.update([Box(500, 400, 40, 40)]) not in ([first[0]], [first[1]])


def test_predict_batch_names_the_unreadable_image(recognizer, astronaut_png):
    with pytest.raises(ImageError, match=r"image 1: not a recognised image format"):
        recognizer.predict_batch([astronaut_png, b"plain text, not an image"])
    with pytest.raises(ImageError, match=r"^empty file"):
        recognizer.predict(b"")


def test_web_page_and_annotated_images_share_one_palette():
    """A class has the same colour on the web page as in `ferkit predict --annotate` images."""
    import re
    from pathlib import Path

    import ferkit.serve
    from ferkit.inference.annotate import CLASS_COLORS

    app_js = (Path(ferkit.serve.__file__).parent / "static" / "app.js").read_text()
    block = re.search(r"const COLORS = \{(.*?)\};", app_js, re.S).group(1)
    page = {name: tuple(int(h[i : i + 2], 16) for i in (0, 2, 4))
            for name, h in re.findall(r'(\w+): "#([0-9a-f]{6})"', block)}
    assert page == CLASS_COLORS


def test_landmarks_found_on_a_reduced_copy_scale_back_to_the_original_pixels(astronaut_rgb):
    """A face found on a half-size copy and scaled back (a big upload decoded reduced) has the
    landmarks YuNet gives when it reduces the image itself: points at pixel centres, so a reduced
    pixel i is at (i + 0.5) * 2 - 0.5, not 2 i (half a pixel off)."""
    from ferkit import imageops
    from ferkit.inference.detect import YuNetDetector

    h, w = astronaut_rgb.shape[:2]
    whole = YuNetDetector(side=max(h, w) // 2).detect(astronaut_rgb)  # reduces by 2 inside
    half = imageops.resize(astronaut_rgb, (w // 2, h // 2), "area")
    (found,) = [b.scaled(2.0) for b in YuNetDetector(side=None).detect(half)]
    (reference,) = whole
    assert np.allclose(found.landmarks, reference.landmarks, atol=1e-3)
    assert max(abs(a - b) for a, b in zip(found.rect().values(), reference.rect().values(), strict=True)) <= 1
