"""Face detection behind a one-method interface: YuNet (the default) or OpenCV's Haar cascade.

YuNet (Wu, Peng & Yu 2023; Apache-2.0) ships inside the package (``ferkit/weights/yunet``) and
runs through OpenCV's ``cv2.FaceDetectorYN``, so nothing is downloaded and no cascade files are
needed (OpenCV 5 has none). It gives each face its box, five landmarks and a score; the
landmarks let :mod:`ferkit.inference.crop` level the eyes. The variant, input size and score
threshold were chosen by ``benchmarks/detector_choice.py`` (results in
``benchmarks/results/detector_choice.md``). The Haar cascade stays available as ``"haar"``
where OpenCV still ships it. Any object with a ``detect(image) -> list[Box]`` method can replace
either (a tracker's guesses, another network).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from ferkit.errors import FerkitError
from ferkit.face import Box

CASCADE_FILE = "haarcascade_frontalface_default.xml"
WINDOW = 24  # the cascade's own detection window, in pixels
YUNET_DIR = Path(__file__).resolve().parents[1] / "weights" / "yunet"
YUNET_FILE = "yunet_n_640_640.onnx"
# Chosen by benchmarks/detector_choice.py: the longest side photos are resized to before
# detection, and the score a detection needs.
YUNET_SIDE = 320
YUNET_SCORE = 0.6


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in an HxW gray or HxWx3 RGB uint8 image; boxes are in its pixels."""

    def detect(self, image: np.ndarray) -> list[Box]: ...


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (or already gray) uint8 -> HxW gray, with the ITU-R 601 weights FER2013 used."""
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


class YuNetDetector:
    """YuNet through ``cv2.FaceDetectorYN``: boxes with five landmarks and a score.

    The image is resized so that its longest side is ``side`` pixels (None: as it is), which
    fixes the cost per photo whatever its size; faces that are small at that size are missed
    (recall by face size: benchmarks/results/detector_choice.md). ``score_threshold`` and
    ``nms_threshold`` are FaceDetectorYN's. Not thread-safe (one detector per thread): the
    network's input size is set per image.
    """

    def __init__(
        self,
        side: int | None = YUNET_SIDE,
        score_threshold: float = YUNET_SCORE,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        model: str | Path | None = None,
    ) -> None:
        path = Path(model) if model else YUNET_DIR / YUNET_FILE
        if not path.is_file():
            raise FerkitError(f"YuNet model {path} not found")
        if side is not None and side < 32:
            raise FerkitError(f"YuNet side must be at least 32 pixels, not {side}")
        self.side = side
        self.score_threshold = score_threshold
        self.model_file = path.name
        cv_log = cv2.utils.logging  # OpenCV 5 warns that its graph engine ignores a target: noise
        level = cv_log.setLogLevel(cv_log.LOG_LEVEL_ERROR)
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold,
                                                  top_k)
        finally:
            cv_log.setLogLevel(level)

    def __repr__(self) -> str:
        return f"YuNetDetector({self.model_file}, side={self.side}, score>={self.score_threshold})"

    def detect(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        scale = self.side / max(h, w) if self.side else 1.0
        sw, sh = round(w * scale), round(h * scale)
        if min(sw, sh) < 8:
            return []  # a sliver: no face fits
        if (sw, sh) != (w, h):  # resized first: the colour conversion then has fewer pixels to do
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, (sw, sh), interpolation=interpolation)
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
        self._net.setInputSize((sw, sh))
        _, found = self._net.detect(bgr)
        if found is None:
            return []
        boxes = [_yunet_box(row, w / sw, h / sh, w, h) for row in found]
        return sorted(boxes, key=lambda b: (b.x, b.y))


def _yunet_box(row: np.ndarray, fx: float, fy: float, width: int, height: int) -> Box:
    """One FaceDetectorYN row (box, 5 landmarks, score) in pixels of the original image.

    Coordinates are pixel indices (a pixel's centre is its index) on both sides of the resize.
    """
    x0, y0 = (row[0] + 0.5) * fx - 0.5, (row[1] + 0.5) * fy - 0.5
    x1, y1 = x0 + row[2] * fx, y0 + row[3] * fy
    x, y = max(0, round(x0)), max(0, round(y0))
    landmarks = tuple((float((row[4 + 2 * i] + 0.5) * fx - 0.5), float((row[5 + 2 * i] + 0.5) * fy - 0.5))
                      for i in range(5))
    return Box(x, y, max(1, min(round(x1), width) - x), max(1, min(round(y1), height) - y),
               landmarks=landmarks, score=float(row[14]))


def haar_cascade_path() -> Path:
    """The frontal-face cascade that ships with OpenCV 4, or a one-line error where it is absent."""
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder) / CASCADE_FILE if folder else None
    if path is None or not path.is_file():
        raise FerkitError(f"the Haar detector needs OpenCV's cascade files, which OpenCV {cv2.__version__} "
                          "does not ship (OpenCV 5 dropped them): use --detector yunet, the default")
    return path


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, run on a shrunk copy of the image (no landmarks).

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
        path = Path(cascade) if cascade else haar_cascade_path()
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


def make_detector(spec: str | FaceDetector | None, max_side: int | None = None) -> FaceDetector | None:
    """"yunet" (the default) or "haar" -> that detector; None -> no detection; an object with
    detect() as is. ``max_side`` caps the size detection runs at (video frames)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "yunet":
            side = YUNET_SIDE if max_side is None else min(YUNET_SIDE, max_side)
            return YuNetDetector(side=side)
        if spec == "haar":
            return HaarDetector() if max_side is None else HaarDetector(max_side=max_side)
        raise FerkitError(f"unknown detector {spec!r}: use 'yunet', 'haar', None or an object with detect()")
    if not isinstance(spec, FaceDetector):
        raise FerkitError(f"detector {spec!r} has no detect(image) -> list[Box] method")
    return spec
