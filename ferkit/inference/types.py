"""Typed results of recognition: what the Python API returns and the CLI/HTTP serialise."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ferkit.labels import CLASSES


@dataclass(frozen=True)
class Box:
    """A face box in pixels of the (EXIF-corrected) input image."""

    x: int
    y: int
    w: int
    h: int


@dataclass
class Face:
    box: Box | None  # None when the input was an already-cropped face (no detection)
    label: str
    score: float
    probabilities: dict[str, float]  # all 7 classes, in CLASSES order

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prediction:
    """All faces found in one image (possibly none, with a note saying so)."""

    faces: list[Face] = field(default_factory=list)
    width: int = 0
    height: int = 0
    note: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "width": self.width, "height": self.height,
                "faces": [f.to_dict() for f in self.faces], "note": self.note}


def face_from_probs(probs: list[float], box: Box | None) -> Face:
    best = max(range(len(CLASSES)), key=lambda i: probs[i])
    return Face(box=box, label=CLASSES[best], score=float(probs[best]),
                probabilities={c: float(p) for c, p in zip(CLASSES, probs, strict=True)})


def prediction_json(pred: Prediction, model_name: str) -> dict[str, Any]:
    """The JSON of one image's result, shared by ``ferkit predict --json`` and the web service."""
    return {**pred.to_dict(), "model": model_name}


def error_json(source: str, reason: str, model_name: str) -> dict[str, Any]:
    """The JSON entry for an input that could not be read (same keys a client checks first)."""
    return {"source": source, "error": reason, "model": model_name}
