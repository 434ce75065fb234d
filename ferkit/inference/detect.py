"""Face detection behind a one-method interface, with OpenCV's Haar cascade as the default.

FER2013's crops were made by a Haar-style frontal face detector, so the same family of
detector gives crops that look like the training data. Any object with a
``detect(image) -> list[Box]`` method can replace it (a DNN detector, a tracker's guesses).

A DNN detector was looked for: no maintained PyPI package found ships its weights offline
(alchemyface and detekface, YuNet wrappers, and mediapipe 1.2.3 download theirs at run
time), and ferkit never downloads, so the cascade that ships inside OpenCV is the default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from ferkit.errors import FerkitError
from ferkit.inference.types import Box

CASCADE_FILE = "haarcascade_frontalface_default.xml"
WINDOW = 24  # the cascade's own detection window, in pixels


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in an HxW gray or HxWx3 RGB uint8 image; boxes are in its pixels."""

    def detect(self, image: np.ndarray) -> list[Box]: ...


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (or already gray) uint8 -> HxW gray, with the ITU-R 601 weights FER2013 used."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, run on a shrunk copy of the image.

    The copy is shrunk until a face of ``min_face`` pixels (the classifier reads 48) fills the
    cascade's 24-pixel window, and to at most ``max_side`` pixels, which bounds the cost on
    large photos. ``scale_factor`` 1.15 with ``min_neighbors`` 4, no histogram equalisation:
    of 300 FER2013 test faces pasted on 640x480 canvases it found 64% (tight crops lack the
    context the cascade likes; OpenCV's usual 1.1 / 5 found 63%) in 75% of the time, and
    exactly one box on each variant of the astronaut portrait (JPEG, CMYK, mirrored, half and
    double size), where 1.2 / 3 put a second box on two (benchmarks/detector_settings.py).
    """

    def __init__(
        self,
        max_side: int = 1600,
        min_face: int = 48,
        scale_factor: float = 1.15,
        min_neighbors: int = 4,
        equalize: bool = False,
        cascade: str | Path | None = None,
    ) -> None:
        path = Path(cascade) if cascade else Path(cv2.data.haarcascades) / CASCADE_FILE
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FerkitError(f"cannot load Haar cascade {path}")
        self.max_side = max_side
        self.min_face = min_face
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.equalize = equalize

    def detect(self, image: np.ndarray) -> list[Box]:
        gray = to_gray(image)
        h, w = gray.shape
        scale = min(1.0, WINDOW / self.min_face, self.max_side / max(h, w))
        min_side = max(WINDOW, round(self.min_face * scale))
        if min(h, w) * scale < min_side:
            return []  # smaller than the smallest face looked for
        small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        if self.equalize:
            small = cv2.equalizeHist(small)
        found = self._cascade.detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
        )
        boxes = [_rescale(tuple(int(v) for v in f), 1.0 / scale, w, h) for f in found]
        return sorted(boxes, key=lambda b: (b.x, b.y))


def _rescale(xywh: tuple[int, ...], factor: float, width: int, height: int) -> Box:
    """A box found on the shrunk copy, in pixels of the original image (clipped to it)."""
    x, y, bw, bh = (round(v * factor) for v in xywh)
    x, y = max(0, x), max(0, y)
    return Box(x, y, min(bw, width - x), min(bh, height - y))


def make_detector(spec: str | FaceDetector | None) -> FaceDetector | None:
    """"haar" -> the default detector; None -> no detection; any object with detect() as is."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "haar":
            return HaarDetector()
        raise FerkitError(f"unknown detector {spec!r}: use 'haar', None or an object with detect()")
    if not isinstance(spec, FaceDetector):
        raise FerkitError(f"detector {spec!r} has no detect(image) -> list[Box] method")
    return spec
