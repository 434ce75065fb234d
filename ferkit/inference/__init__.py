"""Recognition on real images and videos: detector -> aligned crops -> classifier -> faces.

Names are imported lazily so that ``ferkit.inference.types`` (what the web service and the
CLI serialise) loads without OpenCV or onnxruntime.
"""

from __future__ import annotations

from importlib import import_module

_EXPORTS = {
    "Recognizer": "ferkit.inference.recognizer",
    "FaceDetector": "ferkit.inference.detect",
    "HaarDetector": "ferkit.inference.detect",
    "YuNetDetector": "ferkit.inference.detect",
    "Box": "ferkit.face",
    "Face": "ferkit.inference.types",
    "Prediction": "ferkit.inference.types",
    "prediction_json": "ferkit.inference.types",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'ferkit.inference' has no attribute {name!r}")
