"""The contract of a ferkit ONNX graph: uint8 faces in, probabilities out, its card inside.

The graph takes ``faces`` (batch, 48, 48) uint8 with a dynamic batch dimension and returns
``probabilities`` (batch, 7) in :data:`ferkit.face.CLASSES` order; the normalisation and the
softmax are inside it, so a consumer needs no ferkit. Its metadata records the class order, the
model's card and the SHA-256 of the weights it was exported from.
"""

from __future__ import annotations

import json
from typing import Any

from ferkit.errors import FerkitError
from ferkit.face import CLASSES

OPSET = 17
INPUT_NAME = "faces"
OUTPUT_NAME = "probabilities"
CLASSES_KEY, CARD_KEY, WEIGHTS_KEY = "classes", "card", "weights_sha256"


def graph_metadata(name: str, card: dict[str, Any], precision: str, weights_sha256: str) -> dict[str, str]:
    """What a graph records about itself (ONNX metadata properties are strings)."""
    return {CLASSES_KEY: json.dumps(list(CLASSES)), "input": "uint8 gray faces (batch, 48, 48)",
            "ferkit_model": name, "arch": str(card["arch"]), "precision": precision,
            CARD_KEY: json.dumps(card), WEIGHTS_KEY: weights_sha256}


def card_from_metadata(metadata: dict[str, str], source: str) -> dict[str, Any]:
    """The card a graph carries (its metadata on top); an error for a graph that is not ferkit's."""
    if metadata.get(CLASSES_KEY) != json.dumps(list(CLASSES)):
        raise FerkitError(f"{source}: not a graph from `ferkit export` (its metadata gives no class order)")
    card = json.loads(metadata[CARD_KEY]) if CARD_KEY in metadata else {}
    return {**card, **{k: v for k, v in metadata.items() if k != CARD_KEY}}
