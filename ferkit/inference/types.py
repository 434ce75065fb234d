"""Typed results of recognition: what the Python API returns and the CLI/HTTP serialise."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ferkit.face import CLASSES, LANDMARKS, Box, Landmarks
from ferkit.inference.explain import Explanation

LANDMARK_COLUMNS = [f"{name}_{axis}" for name in LANDMARKS for axis in "xy"]


def landmark_values(box: Box | None) -> dict[str, float | None]:
    """The 10 landmark coordinates and the detection score as numbers, None where absent (the
    values behind the CSV cells, kept as numbers by Parquet output)."""
    values: dict[str, float | None] = dict.fromkeys([*LANDMARK_COLUMNS, "detection_score"])
    if box is not None and box.landmarks is not None:
        coords = [v for point in box.landmarks for v in point]
        values.update({c: float(v) for c, v in zip(LANDMARK_COLUMNS, coords)})
    if box is not None and box.score is not None:
        values["detection_score"] = float(box.score)
    return values


# Decimals of the CSV cells that hold landmarks and the detection score.
LANDMARK_DECIMALS = {**dict.fromkeys(LANDMARK_COLUMNS, 2), "detection_score": 4}


def format_cells(row: dict[str, Any], decimals: dict[str, int]) -> dict[str, Any]:
    """A row of numbers as CSV cells: floats of the columns in ``decimals`` rounded to that many
    places, None as an empty cell, the rest as they are."""
    return {k: "" if v is None else f"{v:.{decimals[k]}f}" if k in decimals else v for k, v in row.items()}


def landmarks_dict(landmarks: Landmarks | None) -> dict[str, list[float]] | None:
    """``{"right_eye": [x, y], ...}`` (0.01 px), or None without landmarks."""
    if landmarks is None:
        return None
    return {name: [round(float(x), 2), round(float(y), 2)] for name, (x, y) in zip(LANDMARKS, landmarks)}


@dataclass
class Face:
    box: Box | None  # None when the input was an already-cropped face (no detection)
    label: str
    score: float
    probabilities: dict[str, float]  # all 7 classes, in CLASSES order
    # The top probability is under the model card's threshold: wrong at least half the time.
    uncertain: bool = False
    explanation: Explanation | None = None  # with explain=True: what the label relied on

    @property
    def landmarks(self) -> Landmarks | None:
        """The detector's 5 landmarks (pixels of the input image), or None."""
        return self.box.landmarks if self.box else None

    @property
    def detection_score(self) -> float | None:
        return self.box.score if self.box else None

    def to_dict(self) -> dict[str, Any]:
        score = self.detection_score
        out = {"box": self.box.rect() if self.box else None, "label": self.label, "score": self.score,
               "uncertain": self.uncertain, "probabilities": dict(self.probabilities),
               "landmarks": landmarks_dict(self.landmarks),
               "detection_score": None if score is None else round(float(score), 4)}
        if self.explanation is not None:
            out["explanation"] = self.explanation.to_dict()
        return out


@dataclass
class Prediction:
    """All faces found in one image (possibly none, with a note saying so)."""

    faces: list[Face] = field(default_factory=list)
    width: int = 0
    height: int = 0
    note: str = ""
    source: str = ""

    def rescaled(self, factor: float, size: tuple[int, int]) -> Prediction:
        """This result, found on a reduced copy, in the pixels of the ``size`` (w, h) original."""
        faces = [dataclasses.replace(f, box=f.box.scaled(factor) if f.box else None,
                                     explanation=f.explanation and f.explanation.scaled(factor))
                 for f in self.faces]
        return Prediction(faces, size[0], size[1], self.note, self.source)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "width": self.width, "height": self.height,
                "faces": [f.to_dict() for f in self.faces], "note": self.note}


def face_from_probs(probs: list[float], box: Box | None, uncertain_below: float = 0.0) -> Face:
    best = max(range(len(CLASSES)), key=lambda i: probs[i])
    return Face(box=box, label=CLASSES[best], score=float(probs[best]),
                probabilities={c: float(p) for c, p in zip(CLASSES, probs, strict=True)},
                uncertain=float(probs[best]) < uncertain_below)


def prediction_json(pred: Prediction, model_name: str) -> dict[str, Any]:
    """The JSON of one image's result, shared by ``ferkit predict --json`` and the web service."""
    return {**pred.to_dict(), "model": model_name}


def error_json(source: str, reason: str, model_name: str) -> dict[str, Any]:
    """The JSON entry for an input that could not be read (same keys a client checks first)."""
    return {"source": source, "error": reason, "model": model_name}
