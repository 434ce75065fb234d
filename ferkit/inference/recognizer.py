"""The Python API: images in (paths, bytes, PIL, numpy), faces with their emotions out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ferkit.errors import ImageError
from ferkit.face import FACE_SIZE, Box
from ferkit.imageio import ImageSource, load_image
from ferkit.inference.crop import crop_faces, resize_face
from ferkit.inference.detect import FaceDetector, make_detector, to_gray
from ferkit.inference.explain import Explanation, crop_to_image, occlusion_maps
from ferkit.inference.types import Prediction, face_from_probs
from ferkit.runtime.backends import classify
from ferkit.runtime.loader import load_classifier, uncertain_below


@dataclass
class FoundFaces:
    """One image after detection and cropping, before classification (small: crops only)."""

    source: str
    width: int
    height: int
    boxes: list[Box | None]
    crops: np.ndarray  # (N, 48, 48) uint8
    note: str = ""


class Recognizer:
    """Detects faces and classifies their expressions with a shipped (or user's) model.

    ``model``: a shipped name ("default", "paper"), a ``.safetensors`` file with its card, a run
    folder, or an ``.onnx`` file from ``ferkit export`` (float or int8).
    ``detector``: "yunet" (default; boxes with five landmarks, crops aligned on them), "haar"
    (OpenCV 4's cascade, box crops), None (every input is an already-cropped face), or any
    object with ``detect(image) -> list[Box]``. ``backend``: "onnx" (onnxruntime, the default),
    "onnx-int8" (onnxruntime on a shipped model's int8 graph: more crops/s, 2-3% of labels
    differ; docs/speed.md#int8) or "torch" (PyTorch, the ``train`` extra). ``threads``: for
    onnx, the chunks of faces classified at once, one thread each, by default the cores up to
    8; for torch, its intra-op threads (None keeps torch's setting). ``calibrated``:
    probabilities through the temperature of the model card (the default; False gives the
    network's own, to measure calibration).
    ``prior``: how common each expression is taken to be: "natural" (the training data's
    frequencies), "balanced" (all equal), or "happy=0.4,neutral=0.4,..." (:mod:`ferkit.runtime.prior`).
    ``calibration``: which of the card's calibrations applies: "photos" (faces a detector cropped
    from photos: the temperature and threshold fitted on photo-degraded faces against one
    labeller's vote), "crops" (FER2013-like 48x48 faces, against the ten-labeller majority), or
    "auto" (the default): photos with a detector, crops without. Faces whose top probability is
    under that calibration's threshold come back ``uncertain``.
    """

    def __init__(
        self,
        model: str | os.PathLike = "default",
        detector: str | FaceDetector | None = "yunet",
        backend: str = "onnx",
        threads: int | None = None,
        calibrated: bool = True,
        prior: str | np.ndarray = "auto",
        calibration: str = "auto",
    ) -> None:
        self.detector = make_detector(detector)
        self.backend_name = backend
        if calibration == "auto":
            calibration = "photos" if self.detector is not None else "crops"
        self.calibration = calibration
        self._backend, self.card = load_classifier(model, backend, threads, calibrated, prior, calibration)
        self.prior: str = self.card["prior_used"]
        self.model_name: str = str(self.card["name"])
        self.uncertain_below = uncertain_below(self.card, calibration) if calibrated else 0.0

    def __repr__(self) -> str:
        detector = type(self.detector).__name__ if self.detector else None
        return f"Recognizer(model={self.model_name!r}, detector={detector}, backend={self.backend_name!r})"

    def predict(self, image: ImageSource, color: str = "rgb", detect: bool = True,
                explain: bool | int = False) -> Prediction:
        """All faces in one image. Raises :class:`ferkit.errors.ImageError` if it cannot be read.

        ``explain``: each face also gets an occlusion map of what its label relied on
        (:mod:`ferkit.inference.explain`; 100 extra crops per face); a number N: only the first
        N faces of each image do (a service bounds a request's work so)."""
        return self.predict_batch([image], color=color, detect=detect, explain=explain)[0]

    def predict_batch(
        self, images: Sequence[ImageSource], color: str = "rgb", detect: bool = True,
        explain: bool | int = False,
    ) -> list[Prediction]:
        """Like :meth:`predict` for each image, with all their faces in one forward pass.

        An unreadable image raises :class:`ImageError` saying which one (decode first and skip
        failures, as ``ferkit predict`` does, to keep the others).
        """
        found = [self._find_faces_of(i, image, color, detect, len(images)) for i, image in enumerate(images)]
        return self.classify_found(found, explain)

    def classify_found(self, found: Sequence[FoundFaces], explain: bool | int = False) -> list[Prediction]:
        """Predictions for images already through :meth:`find_faces`, all faces in one batch
        (``explain`` as in :meth:`predict`)."""
        crops = np.concatenate([f.crops for f in found]) if found else np.empty((0, FACE_SIZE, FACE_SIZE))
        probs = self.classify(crops)
        limit = len(crops) if explain is True else int(explain)
        starts = np.cumsum([0] + [len(f.boxes) for f in found])[:-1]
        explained = [s + k for s, f in zip(starts, found) for k in range(min(limit, len(f.boxes)))]
        maps = dict(zip(explained, occlusion_maps(self.classify, crops[explained],
                                                  probs[explained].argmax(1)), strict=True))
        results, start = [], 0
        for f in found:
            rows = probs[start : start + len(f.boxes)]
            faces = [face_from_probs(p.tolist(), box, self.uncertain_below)
                     for p, box in zip(rows, f.boxes, strict=True)]
            for k, (face, box) in enumerate(zip(faces, f.boxes, strict=True)):
                if start + k in maps:
                    face.explanation = Explanation(maps[start + k], crop_to_image(box, (f.width, f.height)))
            start += len(f.boxes)
            results.append(Prediction(faces=faces, width=f.width, height=f.height, note=f.note,
                                      source=f.source))
        return results

    def classify(self, faces: np.ndarray, tta: bool = False) -> np.ndarray:
        """(N, 48, 48) uint8 crops -> (N, 7) probabilities, in batches of the backend's size; with
        ``tta`` the mean over each crop and its mirror image."""
        return classify(self._backend, faces, tta)

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
                "use detect=False (CLI: --no-detect; REST API: ?detect=false)")
