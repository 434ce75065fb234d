"""Test inputs built from one real photo: a many-face picture and a video of a moving face.

Tests and benchmarks make them at run time (nothing large is committed): faces are cut from
a real portrait and pasted onto a plain 640x480 canvas, so the detector and classifier see
real faces at known places.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ferkit.face import Box
from ferkit.imageio import load_image
from ferkit.imageops import resize
from ferkit.inference.detect import YuNetDetector
from ferkit.inference.media import VideoWriter

CANVAS = (480, 640)  # height, width


def portrait_face(photo: str | Path, side: int, context: float = 1.8) -> np.ndarray:
    """An RGB ``side`` x ``side`` cut of the photo's (first) face, ``context`` x its box's width
    wide (YuNet's box is taller than wide: it reaches from the brow to the chin)."""
    rgb = load_image(photo)
    boxes = YuNetDetector().detect(rgb)
    if not boxes:
        raise ValueError(f"{photo}: no face to cut out")
    b = boxes[0]
    half = round(b.w * context / 2)
    cx, cy = b.x + b.w // 2, b.y + b.h // 2
    padded = np.pad(rgb, ((half, half), (half, half), (0, 0)), mode="symmetric")  # mirrored, edge twice
    cut = padded[cy : cy + 2 * half, cx : cx + 2 * half]
    return resize(cut, (side, side), "area")


def background(shape: tuple[int, int] = CANVAS) -> np.ndarray:
    """A soft gray-blue gradient: plain enough to hold no false faces."""
    h, w = shape
    across = np.linspace(90, 170, w, dtype=np.float32)[None, :]
    ramp = across + np.linspace(0, 40, h, dtype=np.float32)[:, None]
    canvas = np.stack([ramp * 0.9, ramp * 0.95, ramp], axis=2)
    return canvas.clip(0, 255).astype(np.uint8)


def paste(canvas: np.ndarray, face: np.ndarray, x: int, y: int) -> Box:
    """Paste ``face`` with its top-left corner at (x, y), in place; returns where it went."""
    h, w = face.shape[:2]
    canvas[y : y + h, x : x + w] = face
    return Box(x, y, w, h)


def group_photo(photo: str | Path, faces: int = 3, side: int = 150) -> np.ndarray:
    """A 640x480 RGB picture with ``faces`` copies of the photo's face side by side."""
    canvas = background()
    face = portrait_face(photo, side)
    gap = (CANVAS[1] - faces * side) // (faces + 1)
    for i in range(faces):
        paste(canvas, face, gap + i * (side + gap), (CANVAS[0] - side) // 2)
    return canvas


def moving_face_frames(photo: str | Path, frames: int = 300, side: int = 160) -> Iterator[np.ndarray]:
    """RGB frames of the face gliding along a smooth loop over the canvas (a few px per frame)."""
    face = portrait_face(photo, side)
    base = background()
    span_x, span_y = CANVAS[1] - side, CANVAS[0] - side
    for i in range(frames):
        t = 2 * math.pi * i / frames
        x = round(span_x / 2 + span_x / 2 * 0.9 * math.sin(t))
        y = round(span_y / 2 + span_y / 2 * 0.8 * math.sin(2 * t))
        frame = base.copy()
        paste(frame, face, x, y)
        yield frame


def write_video(frames: Iterator[np.ndarray], path: str | Path, fps: float = 30.0) -> Path:
    """Write RGB frames as an MPEG-4 .mp4 through PyAV (ferkit's own video writer)."""
    writer = None
    for frame in frames:
        if writer is None:
            h, w = frame.shape[:2]
            writer = VideoWriter(path, fps, (w, h))
        writer.write(frame)
    if writer is not None:
        writer.release()
    return Path(path)
