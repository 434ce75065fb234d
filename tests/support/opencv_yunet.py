"""ferkit's YuNet detector as it ran before 0.2: ``cv2.FaceDetectorYN`` with OpenCV's resizing.

The reference the numpy decoding is checked against (tests/test_detect.py) and measured beside
(benchmarks/yunet_backends.py). Needs OpenCV (the ``haar`` extra, or any opencv-python).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ferkit.face import Box
from ferkit.inference.detect import YUNET_DIR, YUNET_FILE, YUNET_SCORE, YUNET_SIDE, _yunet_box


class OpenCVYuNet:
    """The former ``ferkit.inference.detect.YuNetDetector``, line for line."""

    def __init__(self, side: int | None = YUNET_SIDE, score_threshold: float = YUNET_SCORE,
                 nms_threshold: float = 0.3, top_k: int = 5000, model: str | Path | None = None) -> None:
        path = Path(model) if model else YUNET_DIR / YUNET_FILE
        self.side = side
        cv_log = cv2.utils.logging  # OpenCV 5 warns that its graph engine ignores a target: noise
        level = cv_log.setLogLevel(cv_log.LOG_LEVEL_ERROR)
        try:
            self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold,
                                                  top_k)
        finally:
            cv_log.setLogLevel(level)

    def detect(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        scale = self.side / max(h, w) if self.side else 1.0
        sw, sh = round(w * scale), round(h * scale)
        if min(sw, sh) < 8:
            return []
        if (sw, sh) != (w, h):
            interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, (sw, sh), interpolation=interpolation)
        found = self.detect_raw(image)
        boxes = [_yunet_box(row, w / sw, h / sh, w, h) for row in found]
        return sorted(boxes, key=lambda b: (b.x, b.y))

    def detect_raw(self, image: np.ndarray) -> np.ndarray:
        """FaceDetectorYN's (N, 15) rows for an RGB or gray image as it is."""
        h, w = image.shape[:2]
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
        self._net.setInputSize((w, h))
        _, found = self._net.detect(bgr)
        return np.zeros((0, 15), np.float32) if found is None else found
