"""Draw results onto images: a box per face, its five landmarks as dots, its label and score,
and 7 probability bars.

OpenCV drawing on the RGB array: fast enough for every frame of a video.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from ferkit.errors import FerkitError
from ferkit.face import CLASSES
from ferkit.inference.explain import overlay_on_image
from ferkit.inference.types import Face, Prediction

# RGB colour per class, so a glance at the bars tells the mix of emotions.
CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (230, 57, 70), "disgust": (106, 153, 78), "fear": (155, 93, 229),
    "happy": (255, 190, 11), "sad": (58, 134, 255), "surprise": (251, 133, 0),
    "neutral": (173, 181, 189),
}
FONT = cv2.FONT_HERSHEY_SIMPLEX


def draw_faces(
    image: np.ndarray, faces: Sequence[Face], ids: Sequence[int] | None = None, bgr: bool = False
) -> np.ndarray:
    """A copy of ``image`` with every face (that has a box) drawn; ``ids`` prefix the labels.
    Faces with an explanation get its map blended on first, under the box and the label.

    ``bgr`` says the array is in OpenCV's channel order (video frames), so colours are swapped.
    """
    out = np.ascontiguousarray(image).copy()
    for face in faces:
        if face.explanation is not None:
            overlay_on_image(out if not bgr else out[:, :, ::-1], face.explanation)
    scale = max(0.45, min(out.shape[:2]) / 700)
    colors = {c: rgb[::-1] for c, rgb in CLASS_COLORS.items()} if bgr else CLASS_COLORS
    for i, face in enumerate(faces):
        if face.box is None:
            continue
        prefix = f"#{ids[i]} " if ids is not None else ""
        _draw_box(out, face, prefix, scale, colors)
        _draw_landmarks(out, face, scale, colors)
        _draw_bars(out, face, scale, colors)
    return out


def _draw_landmarks(img: np.ndarray, face: Face, scale: float, colors: dict) -> None:
    """Small dots in the face's colour, ringed in black so that they show on any skin."""
    if face.landmarks is None:
        return
    radius = max(2, round(2.5 * scale))
    for x, y in face.landmarks:
        centre = (round(x), round(y))
        cv2.circle(img, centre, radius + 1, (0, 0, 0), -1, cv2.LINE_AA)
        cv2.circle(img, centre, radius, colors[face.label], -1, cv2.LINE_AA)


def _draw_box(img: np.ndarray, face: Face, prefix: str, scale: float, colors: dict) -> None:
    b = face.box
    assert b is not None
    color = colors[face.label]
    thick = max(1, round(2 * scale))
    cv2.rectangle(img, (b.x, b.y), (b.x + b.w, b.y + b.h), color, thick)
    text = f"{prefix}{face.label} {face.score:.2f}{'?' if face.uncertain else ''}"
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    top = b.y - th - base - 4 if b.y - th - base - 4 >= 0 else b.y + b.h
    cv2.rectangle(img, (b.x, top), (b.x + tw + 4, top + th + base + 4), color, -1)
    cv2.putText(img, text, (b.x + 2, top + th + 2), FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)


def _draw_bars(img: np.ndarray, face: Face, scale: float, colors: dict) -> None:
    """Seven bars with class initials beside the box (right side, or left if no room)."""
    b = face.box
    assert b is not None
    row = max(8, round(16 * scale))
    bar_max = max(30, round(90 * scale))
    label_w = round(30 * scale) + 6
    panel_w, panel_h = label_w + bar_max + 4, row * len(CLASSES) + 4
    h, w = img.shape[:2]
    x0 = b.x + b.w + 4 if b.x + b.w + 4 + panel_w <= w else max(0, b.x - panel_w - 4)
    y0 = min(max(0, b.y), max(0, h - panel_h))
    roi = img[y0 : y0 + panel_h, x0 : x0 + panel_w]
    roi[:] = (roi * 0.4).astype(np.uint8)  # darken the background so bars read on any photo
    font_scale = 0.6 * row / 16
    for i, cls in enumerate(CLASSES):
        y = y0 + 2 + i * row
        length = round(face.probabilities[cls] * bar_max)
        cv2.putText(img, cls[:3], (x0 + 2, y + row - 3), FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
        if length:
            cv2.rectangle(img, (x0 + label_w, y + 2), (x0 + label_w + length, y + row - 2),
                          colors[cls], -1)


def save_annotated(rgb: np.ndarray, prediction: Prediction, path: str | Path) -> Path:
    """Draw ``prediction`` on ``rgb`` and write it (format from the suffix, e.g. .png, .jpg)."""
    return save_rgb(draw_faces(rgb, prediction.faces), path)


def save_rgb(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 array (format from the suffix), making the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)):
        raise FerkitError(f"{path}: cannot write image")
    return path
