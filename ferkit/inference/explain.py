"""What the model looked at: occlusion-sensitivity maps, drawn on the face and on the photo.

For each face, a 12x12 patch (the face's mean gray) slides over the 48x48 crop in steps of 4
pixels, and the map at a pixel is the mean drop in the log-odds of the face's label over the
patches that covered it: how much the answer relied on that part of the face (Zeiler & Fergus
2014). Negative drops (hiding the part made the label more likely) count as zero. Log-odds, not
probability: a face labelled at 0.996 falls to 0.983 when its mouth is hidden, a drop of 0.013
in probability but of 1.5 in log-odds, about what an unsure face's 0.65 -> 0.46 gives (0.8), so
one colour scale (:data:`FULL_SCALE`) serves sure and unsure faces alike.

Why this and not a class activation map: the paper's network ends in global pooling and a
linear layer, so CAM needs no gradients, but its last maps are 3x3 for a 48x48 face; on real
faces (the astronaut and FER2013 test faces of five classes) the CAM covered the lower half of
every face alike, mouth and cheeks and chin. Grad-CAM on the 6x6 stage picked out the mouth of
happy and surprised faces and the brows of angry ones, but needs gradients, which onnxruntime
(the runtime everyone installs) does not give. Occlusion found the same mouth and brows at a
10x10 resolution through any backend and any graph, int8 and users' exports included, for 100
extra crops per face: the astronaut photo took 142-167 ms with its map against 43 ms without
(`default`, the 2-core machine shared with three other jobs). Opt-in everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ferkit.face import FACE_SIZE, Box
from ferkit.imageops import invert_affine, jet, resize, warp_affine
from ferkit.inference.crop import CROP_SCALE, alignment_matrix, square_around

PATCH = 12
STRIDE = 4
POSITIONS = list(range(0, FACE_SIZE - PATCH + 1, STRIDE))  # 10 per axis
# Maps in JSON: this many cells per side (the page smooths them when it scales them up).
JSON_SIDE = 24
# A log-odds drop drawn at the hot end of the colour scale and at full opacity.
FULL_SCALE = 2.0


@dataclass
class Explanation:
    """A face's map and where its crop lies in the image."""

    heatmap: np.ndarray  # (48, 48) float32 >= 0: drop in the label's log-odds, crop pixels
    crop_to_image: np.ndarray  # (2, 3) affine: crop pixel -> image pixel

    def scaled(self, factor: float) -> Explanation:
        """The same map for the image ``factor`` times the size (found on a reduced copy): image
        points at pixel centres, as :meth:`ferkit.face.Box.scaled` maps the landmarks."""
        matrix = self.crop_to_image * factor
        matrix[:, 2] += 0.5 * factor - 0.5
        return Explanation(self.heatmap, matrix)

    def to_dict(self) -> dict[str, object]:
        small = resize(self.heatmap, (JSON_SIDE, JSON_SIDE), "area")
        return {"heatmap": np.round(small, 3).tolist(), "crop_size": FACE_SIZE, "full_scale": FULL_SCALE,
                "crop_to_image": np.round(self.crop_to_image, 4).tolist()}


def occluded_copies(face: np.ndarray) -> np.ndarray:
    """(100, 48, 48): the face with each patch position filled with its mean gray."""
    fill = np.uint8(round(float(face.mean())))
    copies = np.repeat(face[None], len(POSITIONS) ** 2, axis=0)
    k = 0
    for y in POSITIONS:
        for x in POSITIONS:
            copies[k, y : y + PATCH, x : x + PATCH] = fill
            k += 1
    return copies


def occlusion_maps(classify: Callable[[np.ndarray], np.ndarray], faces: np.ndarray,
                   labels: np.ndarray) -> np.ndarray:
    """(N, 48, 48) maps for ``faces`` (N, 48, 48) uint8 and their label indices, all occluded
    copies of all faces classified in one call of ``classify`` (crops -> probabilities)."""
    faces = np.asarray(faces, np.uint8)
    if not len(faces):
        return np.empty((0, FACE_SIZE, FACE_SIZE), np.float32)
    per_face = len(POSITIONS) ** 2
    probs = classify(np.concatenate([faces, *(occluded_copies(f) for f in faces)]))
    base, occluded = probs[: len(faces)], probs[len(faces) :].reshape(len(faces), per_face, -1)
    maps = np.zeros((len(faces), FACE_SIZE, FACE_SIZE), np.float32)
    counts = np.zeros((FACE_SIZE, FACE_SIZE), np.float32)
    for y in POSITIONS:
        for x in POSITIONS:
            counts[y : y + PATCH, x : x + PATCH] += 1
    for i, label in enumerate(labels):
        drops = np.clip(_log_odds(base[i, label]) - _log_odds(occluded[i, :, label]), 0, None)
        k = 0
        for y in POSITIONS:
            for x in POSITIONS:
                maps[i, y : y + PATCH, x : x + PATCH] += drops[k]
                k += 1
    return maps / counts


def _log_odds(p: np.ndarray | float) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def crop_to_image(box: Box | None, image_size: tuple[int, int]) -> np.ndarray:
    """The (2, 3) affine from the 48x48 crop's pixels to the image's, for the crop
    :func:`ferkit.inference.crop.crop_face` makes of ``box`` (None: the whole image resized)."""
    width, height = image_size
    matrix = None
    if box is not None and box.landmarks is not None:
        matrix = alignment_matrix(box.landmarks)
    if matrix is None and box is not None:
        x, y, side = square_around(box, CROP_SCALE)
        s = FACE_SIZE / side
        matrix = np.array([[s, 0, -x * s], [0, s, -y * s]])
    if matrix is None:
        matrix = np.array([[FACE_SIZE / width, 0, 0], [0, FACE_SIZE / height, 0]])
    return invert_affine(matrix.astype(np.float64))


def colorize(heatmap: np.ndarray, full_scale: float = FULL_SCALE) -> np.ndarray:
    """RGB colour image of a map, ``full_scale`` and above at the hot end: one scale for all
    faces, so that a face whose answer hangs on no one part shows no hot spot."""
    level = np.clip(heatmap / full_scale * 255, 0, 255).astype(np.uint8)
    return jet(level)


def alpha_of(heatmap: np.ndarray, full_scale: float = FULL_SCALE, opacity: float = 0.6) -> np.ndarray:
    """Overlay opacity per pixel: clear where hiding the part changed nothing."""
    return np.clip(heatmap / full_scale, 0, 1) * opacity


def overlay_on_face(face: np.ndarray, heatmap: np.ndarray, size: int = 192) -> np.ndarray:
    """The 48x48 face, enlarged to ``size``, with its map blended on top (RGB uint8)."""
    big = resize(face, (size, size), "cubic")
    rgb = np.repeat(big[:, :, None], 3, axis=2).astype(np.float32)
    heat = resize(heatmap, (size, size), "linear")
    alpha = alpha_of(heat)[:, :, None]
    return (rgb * (1 - alpha) + colorize(heat) * alpha).astype(np.uint8)


def overlay_on_image(image: np.ndarray, explanation: Explanation) -> np.ndarray:
    """``image`` (RGB uint8; written in place when writable, else copied) with the map warped
    onto the face."""
    h, w = image.shape[:2]
    matrix = explanation.crop_to_image
    # Only the crop's footprint in the photo (its corners, through the matrix) is warped, not the
    # whole photo: a 12-megapixel photo would otherwise take seconds per face.
    edge = FACE_SIZE
    corners = np.array([[-1, -1, 1], [edge, -1, 1], [-1, edge, 1], [edge, edge, 1]], float)
    spots = corners @ np.asarray(matrix, float).T
    fx0, fy0 = np.floor(spots.min(axis=0)).astype(int) - 1
    fx1, fy1 = np.ceil(spots.max(axis=0)).astype(int) + 2
    fx0, fy0, fx1, fy1 = max(0, fx0), max(0, fy0), min(w, fx1), min(h, fy1)
    if fx0 >= fx1 or fy0 >= fy1:
        return image
    shifted = np.asarray(matrix, float) - [[0, 0, fx0], [0, 0, fy0]]
    heat = warp_affine(explanation.heatmap.astype(np.float32), shifted, (fx1 - fx0, fy1 - fy0), "constant")
    alpha = alpha_of(heat)[:, :, None]
    rows, cols = np.nonzero(alpha[:, :, 0] > 0.01)
    if not len(rows):
        return image
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    heat, alpha = heat[y0:y1, x0:x1], alpha[y0:y1, x0:x1]
    y0, y1, x0, x1 = y0 + fy0, y1 + fy0, x0 + fx0, x1 + fx0
    if not image.flags.writeable:
        image = image.copy()
    part = image[y0:y1, x0:x1].astype(np.float32)
    image[y0:y1, x0:x1] = (part * (1 - alpha) + colorize(heat) * alpha).astype(np.uint8)
    return image
