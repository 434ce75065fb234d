"""The Python API: images in (paths, bytes, PIL, numpy), faces with their emotions out."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferkit.errors import FerkitError, ImageError
from ferkit.imageio import ImageSource, load_image
from ferkit.inference.backends import make_backend
from ferkit.inference.crop import crop_faces, resize_face
from ferkit.inference.detect import FaceDetector, make_detector, to_gray
from ferkit.inference.onnx_backend import OnnxBackend
from ferkit.inference.types import Box, Prediction, face_from_probs
from ferkit.labels import CLASSES


@dataclass
class FoundFaces:
    """One image after detection and cropping, before classification (small: crops only)."""

    source: str
    width: int
    height: int
    boxes: list[Box | None]
    crops: np.ndarray  # (N, 48, 48) uint8
    note: str = ""


def is_onnx_file(model: str | os.PathLike) -> bool:
    return str(model).lower().endswith(".onnx")


def check_model(model: str | os.PathLike) -> None:
    """Fail fast, with a one-line error, on a model name or file that :class:`Recognizer` cannot load."""
    if is_onnx_file(model):
        if not Path(model).is_file():
            raise FerkitError(f"{model}: no such ONNX file")
        return
    from ferkit.weights import resolve

    resolve(model)


def onnx_file_backend(
    path: str | os.PathLike, backend: str, threads: int | None
) -> tuple[OnnxBackend, dict[str, str]]:
    """An exported graph as the classifier, its card from the graph's own metadata."""
    if backend != "onnx":
        raise FerkitError(f"{path}: an ONNX file runs with backend 'onnx', not {backend!r}")
    check_model(path)
    runner = OnnxBackend(Path(path), threads=threads)
    metadata = runner.metadata()
    if metadata.get("classes") != json.dumps(list(CLASSES)):
        raise FerkitError(f"{path}: not a graph from `ferkit export` (its metadata gives no class order)")
    return runner, {"name": Path(path).name, **metadata}


class Recognizer:
    """Detects faces and classifies their expressions with a shipped (or user's) model.

    ``model``: a shipped name ("default", "paper"), a path to ``.safetensors`` with its card, or
    an ``.onnx`` file from ``ferkit export`` (float or int8; runs with ``backend="onnx"``).
    ``detector``: "yunet" (default; boxes with five landmarks, crops aligned on them), "haar"
    (OpenCV 4's cascade, box crops), None (every input is an already-cropped face), or any
    object with ``detect(image) -> list[Box]``. ``backend``: "torch" (the default for weights) or
    "onnx" (the default for ``.onnx`` files; onnxruntime). ``threads``: for onnx, the chunks of
    faces classified at once, one thread each, by default the cores up to 8; for torch, its
    intra-op threads (None keeps torch's setting).
    """

    def __init__(
        self,
        model: str | os.PathLike = "default",
        detector: str | FaceDetector | None = "yunet",
        backend: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.detector = make_detector(detector)
        backend = backend or ("onnx" if is_onnx_file(model) else "torch")
        self.backend_name = backend
        if is_onnx_file(model):
            self._backend, self.card = onnx_file_backend(model, backend, threads)
        else:
            from ferkit.weights import load_model

            net, self.card = load_model(model)
            self._backend = make_backend(backend, net, threads)
        self.model_name: str = str(self.card["name"])

    def __repr__(self) -> str:
        detector = type(self.detector).__name__ if self.detector else None
        return f"Recognizer(model={self.model_name!r}, detector={detector}, backend={self.backend_name!r})"

    def predict(self, image: ImageSource, color: str = "rgb", detect: bool = True) -> Prediction:
        """All faces in one image. Raises :class:`ferkit.errors.ImageError` if it cannot be read."""
        return self.predict_batch([image], color=color, detect=detect)[0]

    def predict_batch(
        self, images: Sequence[ImageSource], color: str = "rgb", detect: bool = True
    ) -> list[Prediction]:
        """Like :meth:`predict` for each image, with all their faces in one forward pass.

        An unreadable image raises :class:`ImageError` saying which one (decode first and skip
        failures, as ``ferkit predict`` does, to keep the others).
        """
        found = [self._find_faces_of(i, image, color, detect, len(images)) for i, image in enumerate(images)]
        return self.classify_found(found)

    def classify_found(self, found: Sequence[FoundFaces]) -> list[Prediction]:
        """Predictions for images already through :meth:`find_faces`, all faces in one batch."""
        probs = self.classify(np.concatenate([f.crops for f in found]) if found else np.empty((0, 48, 48)))
        results, start = [], 0
        for f in found:
            rows = probs[start : start + len(f.boxes)]
            start += len(f.boxes)
            faces = [face_from_probs(p.tolist(), box) for p, box in zip(rows, f.boxes, strict=True)]
            results.append(Prediction(faces=faces, width=f.width, height=f.height, note=f.note,
                                      source=f.source))
        return results

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """(N, 48, 48) uint8 crops -> (N, 7) probabilities, in batches of the backend's size."""
        return self._backend.probabilities(np.asarray(faces, dtype=np.uint8))

    def locate(self, image: np.ndarray) -> tuple[list[Box], np.ndarray]:
        """Boxes (with landmarks where the detector gives them) and 48x48 crops of the faces in an
        RGB or gray uint8 array (for video loops)."""
        boxes = self.detector.detect(image) if self.detector else []
        return boxes, crop_faces(to_gray(image), boxes)

    def _find_faces_of(
        self, index: int, image: ImageSource, color: str, detect: bool, count: int
    ) -> FoundFaces:
        try:
            return self.find_faces(image, color, detect)
        except ImageError as exc:
            if count == 1:
                raise
            name = f" ({image})" if isinstance(image, (str, os.PathLike)) else ""
            raise ImageError(f"image {index}{name}: {exc}") from None

    def find_faces(self, image: ImageSource, color: str = "rgb", detect: bool = True) -> FoundFaces:
        """Decode, detect and crop one image (raises ImageError if it cannot be decoded)."""
        rgb = load_image(image, color)
        source = str(image) if isinstance(image, (str, os.PathLike)) else ""
        h, w = rgb.shape[:2]
        if not detect or self.detector is None:
            return FoundFaces(source, w, h, [None], resize_face(to_gray(rgb))[None])
        boxes, crops = self.locate(rgb)
        note = "" if boxes else self._no_face_note()
        return FoundFaces(source, w, h, list(boxes), crops, note)

    def _no_face_note(self) -> str:
        name = type(self.detector).__name__
        return (f"no face found ({name}); if the image is already a cropped face, "
                "use detect=False (CLI: --no-detect)")
