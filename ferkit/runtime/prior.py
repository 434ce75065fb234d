"""Class priors: how common each expression is taken to be before the face is seen.

A classifier's probabilities mix two things: how much the face looks like each expression, and
how common each expression was in its training data (FER+: a third neutral, under 2% disgust).
Bayes' rule separates them, so the same network serves several uses by changing only the prior:

- ``natural``: the training data's frequencies, as trained; for everyday footage where most
  faces are neutral or happy.
- ``balanced``: every expression equally likely beforehand; for studies, posed data sets and
  benchmarks, where a rare expression must not lose to a common one on a close call.
- a user's own frequencies (``"happy=0.5,neutral=0.3,..."``; unnamed classes share the rest).
- ``auto`` (the default): balanced where the model card records its training prior, else natural.

The model card's ``prior`` holds ``natural`` (the training frequencies) and ``logits`` (the prior
implicit in the network's outputs: ``natural`` for plain cross-entropy, uniform for a network
trained with logit adjustment). Moving to a prior q multiplies each probability by q / logits and
renormalises (Saerens et al. 2002; Menon et al. 2021).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferkit.errors import FerkitError
from ferkit.face import CLASS_TO_INDEX, CLASSES, NUM_CLASSES

PRIORS = ("natural", "balanced", "auto")
Prior = str | np.ndarray  # a name in PRIORS, or frequencies in CLASSES order
# The default: balanced where the card records the training prior (every shipped model and every
# run since 2026-12-04), natural (the network as it is) where it does not. Balanced is the
# default because it raised macro-F1 on web photos and on both test sets' PrivateTest (README,
# "Class priors").
AUTO = "auto"


def parse_prior(text: str | Prior) -> Prior:
    """``natural``, ``balanced``, or ``class=share,...`` (shares normalised; unnamed classes split
    what is left, equally) -> a name or an array. One-line errors for anything else."""
    if isinstance(text, np.ndarray):
        return _normalised(text)
    text = text.strip()
    if text in PRIORS:
        return text
    shares: dict[int, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, value = item.partition("=")
        if name.strip() not in CLASS_TO_INDEX or not value:
            raise FerkitError(f"prior {text!r}: use natural, balanced, or class=share pairs such as "
                              f"happy=0.4,neutral=0.4 (classes: {', '.join(CLASSES)})")
        try:
            shares[CLASS_TO_INDEX[name.strip()]] = float(value)
        except ValueError:
            raise FerkitError(f"prior {text!r}: {value!r} is not a number") from None
    if not shares:
        raise FerkitError(f"prior {text!r}: use natural, balanced, or class=share pairs")
    named = sum(shares.values())
    if any(v < 0 for v in shares.values()) or named > 1 + 1e-6 and len(shares) < NUM_CLASSES:
        raise FerkitError(f"prior {text!r}: shares must be >= 0 and, with classes left unnamed, sum to "
                          "at most 1")
    rest = (1 - named) / (NUM_CLASSES - len(shares)) if len(shares) < NUM_CLASSES else 0.0
    return _normalised(np.array([shares.get(i, rest) for i in range(NUM_CLASSES)]))


def _normalised(prior: np.ndarray) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    valid = prior.shape == (NUM_CLASSES,) and np.all(np.isfinite(prior)) and np.all(prior >= 0)
    if not valid or prior.sum() <= 0:
        raise FerkitError(f"a prior needs {NUM_CLASSES} non-negative frequencies in the order "
                          f"{', '.join(CLASSES)}")
    return prior / prior.sum()


def card_prior(card: dict[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
    """(natural, logits) priors from a model card, or None when the card records none."""
    prior = card.get("prior") or {}
    if "natural" not in prior:
        return None
    natural = _normalised(np.array(prior["natural"]))
    return natural, _normalised(np.array(prior.get("logits", prior["natural"])))


def prior_weights(card: dict[str, Any], prior: Prior) -> np.ndarray | None:
    """What the network's probabilities are multiplied by to move to ``prior`` (None: nothing to
    do). A card without a recorded prior serves ``natural`` only."""
    prior = parse_prior(prior)
    recorded = card_prior(card)
    if recorded is None:
        if isinstance(prior, str) and prior in ("natural", AUTO):
            return None
        raise FerkitError(f"model {card.get('name', '?')}: its card records no training prior, so only "
                          "prior=natural is available")
    natural, implicit = recorded
    if isinstance(prior, str) and prior == AUTO:
        prior = "balanced"
    target = {"natural": natural, "balanced": np.full(NUM_CLASSES, 1 / NUM_CLASSES)}.get(prior) \
        if isinstance(prior, str) else prior
    weights = np.clip(target, 1e-12, None) / np.clip(implicit, 1e-12, None)
    return None if np.allclose(weights, weights[0]) else weights / weights.max()


def shift(probs: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Probabilities under another prior: ``probs * weights``, renormalised per face."""
    if weights is None or not len(probs):
        return probs
    moved = probs * weights
    return (moved / moved.sum(axis=1, keepdims=True)).astype(np.float32)


def resolved(card: dict[str, Any], prior: Prior) -> Prior:
    """What ``auto`` means for this card: balanced where it records its training prior, else
    natural; any other prior as given."""
    prior = parse_prior(prior)
    if isinstance(prior, str) and prior == AUTO:
        return "balanced" if card_prior(card) is not None else "natural"
    return prior


def describe(prior: Prior) -> str:
    """``natural``, ``balanced``, or ``angry=0.10,disgust=0.05,...``."""
    if isinstance(prior, str):
        return prior
    return ",".join(f"{c}={v:.3g}" for c, v in zip(CLASSES, prior, strict=True))


class PriorShifted:
    """A backend whose probabilities are moved to another class prior."""

    def __init__(self, backend: Any, weights: np.ndarray) -> None:
        self.backend = backend
        self.weights = weights

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        return shift(self.backend.probabilities(faces), self.weights)
