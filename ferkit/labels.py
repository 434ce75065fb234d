"""The seven FER2013 classes: one source of truth for their order and names."""

from __future__ import annotations

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
