"""A model and detector on labelled photos (``labels.csv`` + ``images/``, e.g. ExpW-dev).

Two scores from one pass over the photos (each decoded once, detected once):

- **classifier alone**: each labelled box cropped by the pipeline's own
  :func:`~ferkit.inference.crop.crop_faces` and classified. When a detection matches the box
  and carries landmarks, the crop gets that detection's landmarks (the labelled box stays the
  box), so an aligning crop aligns here as it does in ``ferkit predict``.
- **end to end**, as a user runs it: the photo through ``recognizer.locate`` (detection and
  crops) and classification. A labelled face is *found* when a detection overlaps it with
  IoU >= 0.3 (one-to-one, greedy by IoU) and *correct* when that detection's label matches.
  Accuracy and macro-F1 count a missed face as a wrong answer; the confusion matrix is over
  found faces. Detections that match no labelled face are not scored (photos have unlabelled
  faces too).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ferkit.data.labelled_photos import LabelledPhotos, load_labelled_photos
from ferkit.errors import DataError, FerkitError, ImageError
from ferkit.evaluate.calibration import calibration_report
from ferkit.evaluate.metrics import MISSED, compute_metrics, format_metrics, metrics_with_misses
from ferkit.face import FACE_SIZE, Box
from ferkit.imageio import load_image
from ferkit.inference.crop import crop_faces
from ferkit.inference.detect import to_gray
from ferkit.inference.recognizer import Recognizer

IOU_THRESHOLD = 0.3


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes."""
    iw = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    ih = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    return inter / (a.w * a.h + b.w * b.h - inter)


def match_boxes(labelled: Sequence[Box], detected: Sequence[Box], threshold: float = IOU_THRESHOLD
                ) -> list[int | None]:
    """For each labelled box, the index of its detection or None: pairs taken greedily by IoU,
    highest first, each box and detection used once, none below ``threshold``."""
    pairs = sorted(((iou(lb, db), i, j) for i, lb in enumerate(labelled) for j, db in enumerate(detected)),
                   key=lambda p: -p[0])
    match: list[int | None] = [None] * len(labelled)
    used: set[int] = set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if match[i] is None and j not in used:
            match[i] = j
            used.add(j)
    return match


def evaluate_photos(
    recognizer: Recognizer, data: LabelledPhotos, tta: bool = False, progress: bool = True,
    threshold: float = IOU_THRESHOLD,
) -> dict[str, Any]:
    """Classifier-alone and end-to-end metrics of ``recognizer`` on labelled photos."""
    if recognizer.detector is None:
        raise FerkitError("the end-to-end score needs a detector; this Recognizer has none")
    start = time.perf_counter()
    labels: list[int] = []
    box_crops: list[np.ndarray] = []  # one per labelled face
    found_crops: list[np.ndarray] = []  # one per found labelled face
    found: list[bool] = []
    detections = with_landmarks = 0
    bar = tqdm(data.photos, desc="photos", unit="photo", file=sys.stderr, disable=not progress)
    with bar:
        for photo in bar:
            try:
                rgb = load_image(photo.path)
            except ImageError as exc:
                raise DataError(f"{photo.path}: {exc}") from None
            if rgb.shape[:2] != (photo.height, photo.width):
                raise DataError(f"{photo.path}: decoded as {rgb.shape[1]}x{rgb.shape[0]}, its header "
                                f"says {photo.width}x{photo.height}")
            boxes, crops = recognizer.locate(rgb)
            detections += len(boxes)
            labelled = [f.box for f in photo.faces]
            match = match_boxes(labelled, boxes, threshold)
            to_crop = []
            for box, j in zip(labelled, match, strict=True):
                if j is not None and getattr(boxes[j], "landmarks", None) is not None:
                    box = dataclasses.replace(boxes[j], x=box.x, y=box.y, w=box.w, h=box.h)
                    with_landmarks += 1
                to_crop.append(box)
            box_crops.append(crop_faces(to_gray(rgb), to_crop))
            found_crops += [crops[j] for j in match if j is not None]
            found += [j is not None for j in match]
            labels += [f.label for f in photo.faces]
    y_true = np.array(labels, np.int64)
    is_found = np.array(found, bool)
    alone_probs = recognizer.classify(np.concatenate(box_crops), tta)
    alone = alone_probs.argmax(1)
    end_to_end = np.full(len(y_true), MISSED, np.int64)
    found_stack = np.stack(found_crops) if found_crops else np.empty((0, FACE_SIZE, FACE_SIZE), np.uint8)
    end_to_end[is_found] = recognizer.classify(found_stack, tta).argmax(1)
    classifier = compute_metrics(y_true, alone) | {
        "landmark_crops": with_landmarks,
        "calibration": calibration_report(alone_probs, y_true, recognizer.uncertain_below)}
    e2e = metrics_with_misses(y_true, end_to_end)
    n_found = int(is_found.sum())
    e2e |= {"found": n_found, "found_rate": n_found / len(y_true) if len(y_true) else 0.0,
            "accuracy_found": float((end_to_end[is_found] == y_true[is_found]).mean()) if n_found else 0.0,
            "detections": detections}
    return {
        "model": recognizer.model_name, "detector": type(recognizer.detector).__name__,
        "backend": recognizer.backend_name, "calibration_used": recognizer.card["calibration_used"],
        "data": str(data.root), "n": int(len(y_true)),
        "photos": len(data.photos), "skipped": data.skipped, "iou_threshold": threshold, "tta": tta,
        "classifier": classifier, "end_to_end": e2e, "seconds": round(time.perf_counter() - start, 2),
    }


def evaluate_labelled_photos(
    model: str | os.PathLike, data_path: str | Path, detector: str | None = None,
    backend: str = "onnx", tta: bool = False, progress: bool = True, calibrated: bool = True,
    prior: str = "auto", calibration: str = "auto",
) -> dict[str, Any]:
    """Load the photos' labels and a Recognizer (``detector`` None: its default), then evaluate."""
    data = load_labelled_photos(data_path)  # before the model: a bad file fails fast
    kwargs: dict[str, Any] = {} if detector is None else {"detector": detector}
    recognizer = Recognizer(model, backend=backend, calibrated=calibrated, prior=prior,
                            calibration=calibration, **kwargs)
    return evaluate_photos(recognizer, data, tta=tta, progress=progress)


def format_photo_metrics(m: dict[str, Any]) -> str:
    """Both scores as text: the classifier-alone table, then end to end."""
    e = m["end_to_end"]
    lines = [
        f"model {m['model']} with {m['detector']} ({m['backend']}{', TTA' if m['tta'] else ''}) on "
        f"{m['data']}: {m['n']} labelled faces in {m['photos']} photos, {m['seconds']:.1f} s",
        "",
        "== classifier alone: each labelled box cropped by ferkit's crop ==",
        format_metrics(m["classifier"]),
        "",
        f"== end to end: found {e['found']}/{e['n']} labelled faces ({e['found_rate']:.1%}) at "
        f"IoU >= {m['iou_threshold']}; {e['detections']} detections ==",
        f"accuracy over found faces {e['accuracy_found']:.4f}; below, a missed face counts as wrong "
        "and the confusion matrix is over found faces",
        format_metrics(e),
    ]
    return "\n".join(lines)
