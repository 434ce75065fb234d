"""Draw results onto images: a box per face, its five landmarks as dots, its label and score,
and 7 probability bars.

Pillow's ImageDraw on the RGB array, with the font Pillow bundles (no OpenCV, no font files to
find): fast enough for every frame of a video.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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
FONT_PX = 26  # font size (pixels) at scale 1: about the height of OpenCV's Hershey font at 1.0


@cache
def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled font at ``size`` pixels (its fixed bitmap font where FreeType is missing)."""
    return ImageFont.load_default(size=max(6, size))


def draw_faces(
    image: np.ndarray, faces: Sequence[Face], ids: Sequence[int] | None = None, bgr: bool = False
) -> np.ndarray:
    """A copy of ``image`` with every face (that has a box) drawn; ``ids`` prefix the labels.
    Faces with an explanation get its map blended on first, under the box and the label.

    ``bgr`` says the array is in BGR channel order (OpenCV's), so colours are swapped.
    """
    out = np.ascontiguousarray(image).copy()
    for face in faces:
        if face.explanation is not None:
            overlay_on_image(out if not bgr else out[:, :, ::-1], face.explanation)
    if not any(face.box is not None for face in faces):
        return out
    scale = max(0.45, min(out.shape[:2]) / 700)
    colors = {c: rgb[::-1] for c, rgb in CLASS_COLORS.items()} if bgr else CLASS_COLORS
    canvas = Image.fromarray(out)
    draw = ImageDraw.Draw(canvas)
    for i, face in enumerate(faces):
        if face.box is None:
            continue
        prefix = f"#{ids[i]} " if ids is not None else ""
        _draw_box(draw, face, prefix, scale, colors)
        _draw_landmarks(draw, face, scale, colors)
        _draw_bars(canvas, draw, face, scale, colors)
    return np.asarray(canvas).copy()


def _draw_landmarks(draw: ImageDraw.ImageDraw, face: Face, scale: float, colors: dict) -> None:
    """Small dots in the face's colour, ringed in black so that they show on any skin."""
    if face.landmarks is None:
        return
    radius = max(2, round(2.5 * scale))
    for x, y in face.landmarks:
        cx, cy = round(x), round(y)
        draw.ellipse((cx - radius - 1, cy - radius - 1, cx + radius + 1, cy + radius + 1), fill=(0, 0, 0))
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colors[face.label])


def _draw_box(draw: ImageDraw.ImageDraw, face: Face, prefix: str, scale: float, colors: dict) -> None:
    b = face.box
    assert b is not None
    color = colors[face.label]
    thick = max(1, round(2 * scale))
    draw.rectangle((b.x, b.y, b.x + b.w, b.y + b.h), outline=color, width=thick)
    text = f"{prefix}{face.label} {face.score:.2f}{'?' if face.uncertain else ''}"
    f = font(round(FONT_PX * scale))
    left, top_, right, bottom = draw.textbbox((0, 0), text, font=f)
    tw, th = right - left, bottom - top_
    top = b.y - th - 8 if b.y - th - 8 >= 0 else b.y + b.h
    draw.rectangle((b.x, top, b.x + tw + 6, top + th + 8), fill=color)
    draw.text((b.x + 3 - left, top + 4 - top_), text, fill=(0, 0, 0), font=f)


def _draw_bars(
    canvas: Image.Image, draw: ImageDraw.ImageDraw, face: Face, scale: float, colors: dict
) -> None:
    """Seven bars with class initials beside the box (right side, or left if no room)."""
    b = face.box
    assert b is not None
    row = max(8, round(16 * scale))
    bar_max = max(30, round(90 * scale))
    label_w = round(30 * scale) + 6
    panel_w, panel_h = label_w + bar_max + 4, row * len(CLASSES) + 4
    w, h = canvas.size
    x0 = b.x + b.w + 4 if b.x + b.w + 4 + panel_w <= w else max(0, b.x - panel_w - 4)
    y0 = min(max(0, b.y), max(0, h - panel_h))
    area = (x0, y0, min(w, x0 + panel_w), min(h, y0 + panel_h))
    canvas.paste(canvas.crop(area).point(lambda v: int(v * 0.4)), area[:2])  # bars read on any photo
    f = font(round(0.75 * row))
    for i, cls in enumerate(CLASSES):
        y = y0 + 2 + i * row
        length = round(face.probabilities[cls] * bar_max)
        left, top, _, bottom = draw.textbbox((0, 0), cls[:3], font=f)
        text_y = y + 2 + (row - 2 - (bottom - top)) // 2 - top
        draw.text((x0 + 2 - left, text_y), cls[:3], fill=(255, 255, 255), font=f)
        if length:
            draw.rectangle((x0 + label_w, y + 2, x0 + label_w + length, y + row - 2), fill=colors[cls])


def save_annotated(rgb: np.ndarray, prediction: Prediction, path: str | Path) -> Path:
    """Draw ``prediction`` on ``rgb`` and write it (format from the suffix, e.g. .png, .jpg)."""
    return save_rgb(draw_faces(rgb, prediction.faces), path)


def save_rgb(rgb: np.ndarray, path: str | Path) -> Path:
    """Write an RGB uint8 array (format from the suffix), making the folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        Image.fromarray(np.ascontiguousarray(rgb)).save(path)
    except (OSError, ValueError, KeyError) as exc:  # KeyError/ValueError: a suffix Pillow cannot write
        path.unlink(missing_ok=True)
        raise FerkitError(f"{path}: cannot write image ({exc})") from None
    return path
