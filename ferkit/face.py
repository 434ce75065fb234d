"""The face contract every part of ferkit shares: the seven classes, the 48x48 crop, the
normalisation the networks expect, and a detected face's box with its five landmarks."""

from __future__ import annotations

from dataclasses import dataclass, field

# ---------------------------------------------------------------- classes

CLASSES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NUM_CLASSES = len(CLASSES)
CLASS_TO_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

# Spellings seen in exported data sets (CK+, JAFFE, AffectNet-style folders).
_ALIASES = {
    "anger": "angry",
    "disgusted": "disgust",
    "fearful": "fear",
    "afraid": "fear",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "surprised": "surprise",
    "neutrality": "neutral",
    "calm": "neutral",
}

# Classes of other data sets that FER2013's seven do not cover (CK+ and AffectNet: contempt).
# Folders named so are skipped with a warning; any other unknown name is an error (a typo).
EXTRA_CLASSES = frozenset({"contempt"})


def class_index(name: str) -> int:
    """Index of a class folder name, accepting common aliases; raises KeyError if unknown."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    return CLASS_TO_INDEX[key]


# ---------------------------------------------------------------- the crop and the model input

FACE_SIZE = 48  # faces are FACE_SIZE x FACE_SIZE uint8 gray, as in FER2013
# FER2013 pixel statistics (rounded): a network sees (pixel / 255 - MEAN) / STD. The exported
# graphs hold this step, so their input is the uint8 crop itself.
MEAN = 0.508
STD = 0.255

# ---------------------------------------------------------------- a detected face

# The five landmarks a detector may give, in YuNet's order; "right" is the person's right
# (the eye on the image's left in an unmirrored photo).
LANDMARKS = ("right_eye", "left_eye", "nose", "right_mouth", "left_mouth")
Landmarks = tuple[tuple[float, float], ...]  # 5 (x, y) pairs in LANDMARKS order


@dataclass(frozen=True)
class Box:
    """A face box in pixels of the (EXIF-corrected) input image.

    ``landmarks`` (5 (x, y) pixel pairs in :data:`LANDMARKS` order) and ``score`` (the
    detector's confidence) are there when the detector gives them (YuNet), else None; they do
    not take part in equality, so a box compares by its rectangle.
    """

    x: int
    y: int
    w: int
    h: int
    landmarks: Landmarks | None = field(default=None, compare=False)
    score: float | None = field(default=None, compare=False)

    def rect(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "w": self.w, "h": self.h}

    def scaled(self, factor: float) -> Box:
        """The same box in an image ``factor`` times the size (found on a reduced copy). The box's
        edges scale as they are; landmarks are points at pixel centres (a pixel's centre is its
        index), which a reduced copy's pixel ``i`` puts at ``(i + 0.5) * factor - 0.5``."""
        marks = None if self.landmarks is None else tuple(
            ((x + 0.5) * factor - 0.5, (y + 0.5) * factor - 0.5) for x, y in self.landmarks)
        return Box(round(self.x * factor), round(self.y * factor), round(self.w * factor),
                   round(self.h * factor), marks, self.score)
