"""Cut detected faces out the way FER2013 cut them: square, about the Haar box, 48x48 gray.

How big a crop around the box? ``benchmarks/crop_margin.py`` ran the same Haar cascade on
4,000 FER2013 training images (upscaled, padded): on the 3,179 where it found one face, the
48x48 crop is a median 1.02 times (mean 1.06) the Haar box side, centred on it. So a crop
is the box's square grown by :data:`CROP_SCALE`.
"""

from __future__ import annotations

import cv2
import numpy as np

from ferkit.inference.types import Box

FACE_SIZE = 48
CROP_SCALE = 1.02


def square_around(box: Box, scale: float = CROP_SCALE) -> tuple[int, int, int]:
    """(x, y, side) of the square centred on ``box`` whose side is ``scale`` x its longer side."""
    side = max(1, round(max(box.w, box.h) * scale))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return round(cx - side / 2), round(cy - side / 2), side


def crop_face(gray: np.ndarray, box: Box, scale: float = CROP_SCALE) -> np.ndarray:
    """The 48x48 uint8 face for ``box``; parts of the square outside the image repeat its edge."""
    x, y, side = square_around(box, scale)
    h, w = gray.shape
    pad = max(0, -x, -y, x + side - w, y + side - h)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x, y = x + pad, y + pad
    return resize_face(gray[y : y + side, x : x + side])


def resize_face(gray: np.ndarray) -> np.ndarray:
    """Any gray image -> 48x48 (area averaging when shrinking, as a camera would blur)."""
    if gray.shape == (FACE_SIZE, FACE_SIZE):
        return np.ascontiguousarray(gray)
    shrinking = gray.shape[0] > FACE_SIZE and gray.shape[1] > FACE_SIZE
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (FACE_SIZE, FACE_SIZE), interpolation=interp)


def crop_faces(gray: np.ndarray, boxes: list[Box], scale: float = CROP_SCALE) -> np.ndarray:
    """(N, 48, 48) uint8 stack of the faces in ``boxes`` (N may be 0)."""
    if not boxes:
        return np.empty((0, FACE_SIZE, FACE_SIZE), np.uint8)
    return np.stack([crop_face(gray, b, scale) for b in boxes])
