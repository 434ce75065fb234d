"""Cut detected faces out the way FER2013 framed them: 48x48 gray, one function for every caller.

With landmarks (YuNet) a face is aligned: turned so that the eyes are level, then scaled and
placed where FER2013 puts its faces. ``benchmarks/crop_framing.py`` ran the shipped YuNet on
4,000 FER2013 training faces (upscaled 4x, edges replicated outwards) and found 3,776 (94.4%);
in the 48x48 frame (pixel indices) the medians are:

- anchor, halfway between the eyes' centre and the mouth's centre: x 23.57, y 26.94;
- inter-ocular distance 17.40 px; eyes' centre to mouth's centre 16.87 px;
- eyes' centre x 23.62, y 18.59; eye line roll -0.03 degrees (quartiles -5.2, 4.9).

The scale is the mean of the two distances, each over its median: over FER2013's faces it
varies less (quartile range 19.7% of the median) than either alone (20.8%, 21.2%), and a
turned or nodding face shrinks only one of them. The anchor varies less than the eyes' centre
(quartile ranges 2.23 and 2.50 px against 2.62 and 2.65). One bilinear affine warp (rotation,
scale, translation; edges replicated; :func:`ferkit.imageops.warp_affine`, within a grey level of
the ``cv2.warpAffine`` it replaced) makes the crop; a face shrunk by more than 1.5x is first reduced
with area averaging to 1.5x the crop's scale, which brought crops of 391 ExpW-dev faces within
1.09 grey levels (mean) of an 8x supersampled reference, against 2.27 for a plain bilinear warp.

YuNet's landmarks show only part of a tilt: on the astronaut portrait turned by 10, 20 and 30
degrees either way they tilt by 1.9-4.3, 8.7-11.2 and 11.3-19.4 degrees, so the crop levels a
turned face only partly (5.9-7.9, 8.6-11.5 and 10.4-18.9 degrees left; ``roll_check`` in the
JSON); FER2013's real roll probably spreads wider than the quartiles above.

FER2013 itself was cut along Haar-style boxes without levelling, so on its own faces the Haar-box
crop below reproduces the originals more closely (median pixel correlation 0.82, against 0.69 for
the aligned crop, on the 2,918 faces the cascade found too); on web photos the cascade finds
45.5% of the labelled faces (benchmarks/results/detector_choice.md).

Without landmarks (Haar, a user's box) the crop is the box's square grown by :data:`CROP_SCALE`:
``benchmarks/crop_margin.py`` found FER2013's crop a median 1.02 times the Haar box.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ferkit.face import FACE_SIZE, Box, Landmarks
from ferkit.imageops import invert_affine, pad_edge, resize, warp_affine

CROP_SCALE = 1.02
# The final bilinear warp shrinks by at most this much (benchmarks/crop_framing.py, warp check).
WARP_OVERSAMPLE = 1.5


class Framing(NamedTuple):
    """Where an aligned face goes in the 48x48 crop (pixel indices)."""

    anchor_x: float  # the point halfway between the eyes' centre and the mouth's centre
    anchor_y: float
    eye_distance: float  # between the eyes' centres
    eye_mouth_distance: float  # from the eyes' centre to the mouth's centre


# FER2013's framing of YuNet's landmarks (benchmarks/results/crop_framing.json).
FER2013_FRAMING = Framing(anchor_x=23.57, anchor_y=26.94, eye_distance=17.40, eye_mouth_distance=16.87)


def square_around(box: Box, scale: float = CROP_SCALE) -> tuple[int, int, int]:
    """(x, y, side) of the square centred on ``box`` whose side is ``scale`` x its longer side."""
    side = max(1, round(max(box.w, box.h) * scale))
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return round(cx - side / 2), round(cy - side / 2), side


def crop_face(gray: np.ndarray, box: Box, scale: float = CROP_SCALE) -> np.ndarray:
    """The 48x48 uint8 face: aligned on ``box.landmarks`` if it has them, else its square."""
    if box.landmarks is not None:
        matrix = alignment_matrix(box.landmarks)
        if matrix is not None:
            return warp_face(gray, matrix)
    x, y, side = square_around(box, scale)
    h, w = gray.shape
    pad = max(0, -x, -y, x + side - w, y + side - h)
    if pad:
        gray = pad_edge(gray, pad, pad, pad, pad)
        x, y = x + pad, y + pad
    return resize_face(gray[y : y + side, x : x + side])


def alignment_matrix(landmarks: Landmarks, framing: Framing = FER2013_FRAMING) -> np.ndarray | None:
    """The 2x3 similarity that takes image pixels to the 48x48 aligned crop (None if degenerate).

    Eyes level (the eye line; for a profile whose eyes nearly meet, the eyes-mouth line upright),
    the mean of the two distances over ``framing``'s sets the scale, and the anchor goes to
    ``framing``'s anchor.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eyes, mouth = (pts[0] + pts[1]) / 2, (pts[3] + pts[4]) / 2
    eye_line, down = pts[1] - pts[0], mouth - eyes
    eye_distance, eye_mouth = float(np.hypot(*eye_line)), float(np.hypot(*down))
    size = (eye_distance / framing.eye_distance + eye_mouth / framing.eye_mouth_distance) / 2
    if not size > 0.05:
        return None
    if eye_distance >= 0.25 * eye_mouth:
        angle = math.atan2(eye_line[1], eye_line[0])
    else:
        angle = math.atan2(down[1], down[0]) - math.pi / 2
    s = 1.0 / size
    cos, sin = s * math.cos(angle), s * math.sin(angle)
    rot = np.array([[cos, sin], [-sin, cos]])  # rotates by -angle: the eye line becomes level
    anchor = (eyes + mouth) / 2
    shift = np.array([framing.anchor_x, framing.anchor_y]) - rot @ anchor
    return np.hstack([rot, shift[:, None]])


def warp_face(gray: np.ndarray, matrix: np.ndarray, oversample: float = WARP_OVERSAMPLE) -> np.ndarray:
    """The 48x48 crop ``matrix`` (image pixels -> crop pixels) makes, edges replicated.

    When the face shrinks by more than ``oversample``, the part of the image the crop covers is
    first reduced with area averaging to ``oversample`` x the crop's scale, so that the one
    bilinear warp shrinks it by no more than that and does not alias.
    """
    scale = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    if scale * oversample >= 1.0:
        return warp_affine(gray, matrix, (FACE_SIZE, FACE_SIZE))
    inverse = invert_affine(matrix)
    edge = FACE_SIZE  # one pixel beyond the crop on every side
    corners = np.array([[-1, -1, 1], [edge, -1, 1], [-1, edge, 1], [edge, edge, 1]], float)
    src = corners @ inverse.T
    margin = 2
    x0, y0 = (math.floor(v) - margin for v in src.min(axis=0))
    x1, y1 = (math.ceil(v) + margin + 1 for v in src.max(axis=0))
    roi = _cut(gray, x0, y0, x1, y1)
    shrink = scale * oversample
    small_w, small_h = max(1, round(roi.shape[1] * shrink)), max(1, round(roi.shape[0] * shrink))
    small = resize(roi, (small_w, small_h), "area")
    fx, fy = small_w / roi.shape[1], small_h / roi.shape[0]
    # small pixel (u, v) -> image pixel ((u + 0.5) / fx - 0.5 + x0, (v + 0.5) / fy - 0.5 + y0)
    back = np.array([[1 / fx, 0, 0.5 / fx - 0.5 + x0], [0, 1 / fy, 0.5 / fy - 0.5 + y0], [0, 0, 1]])
    return warp_affine(small, matrix @ back, (FACE_SIZE, FACE_SIZE))


def _cut(gray: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """``gray[y0:y1, x0:x1]``, with the parts outside the image repeating its edge."""
    h, w = gray.shape
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx0 >= cx1 or cy0 >= cy1:  # wholly outside: the nearest edge pixel, repeated
        cx0, cy0 = min(max(0, x0), w - 1), min(max(0, y0), h - 1)
        cx1, cy1 = cx0 + 1, cy0 + 1
    part = gray[cy0:cy1, cx0:cx1]
    pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
    if any(pads):
        part = pad_edge(part, *(max(0, p) for p in pads))
    return part


def resize_face(gray: np.ndarray) -> np.ndarray:
    """Any gray image -> 48x48 (area averaging when shrinking, as a camera would blur)."""
    if gray.shape == (FACE_SIZE, FACE_SIZE):
        return np.ascontiguousarray(gray)
    shrinking = gray.shape[0] > FACE_SIZE and gray.shape[1] > FACE_SIZE
    return resize(gray, (FACE_SIZE, FACE_SIZE), "area" if shrinking else "linear")


def crop_faces(gray: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """(N, 48, 48) uint8 stack of the faces in ``boxes`` (N may be 0), aligned where they have
    landmarks; the one crop of predict, video, serve and evaluation."""
    if not boxes:
        return np.empty((0, FACE_SIZE, FACE_SIZE), np.uint8)
    return np.stack([crop_face(gray, b) for b in boxes])
