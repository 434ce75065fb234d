"""Are the probabilities honest? Expected calibration error, reliability curves, and fitting the
temperature and the "uncertain" threshold that the model card stores.

A probability of 0.8 should be right 8 times in 10. Small networks trained on soft labels are
usually close; temperature scaling (Guo et al. 2017) divides the log-probabilities by one number
T fitted on held-out faces, which changes no label and makes the probabilities mean what they
say. Fitted on FER+ PublicTest (majority labels), reported on PrivateTest and on faces from
elsewhere.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferkit.runtime.backends import with_temperature

BINS = 15
# Candidate thresholds for the "uncertain" flag (top probability below it).
THRESHOLDS = np.round(np.arange(0.20, 0.905, 0.01), 2)


def _confidence_and_hits(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Top probability and whether it is right. ``labels`` (N,) class indices, or (N, C) vote
    shares: then a "hit" is the share of labellers who chose the predicted class, the chance
    that one labeller drawn at random agrees (a photo's label comes from one person)."""
    probs = np.asarray(probs, np.float64)
    labels = np.asarray(labels)
    picked = probs.argmax(1)
    if labels.ndim == 2:
        return probs.max(1), labels[np.arange(len(picked)), picked].astype(np.float64)
    return probs.max(1), (picked == labels).astype(np.float64)


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, list]:
    """Per equal-width bin of the top probability: faces, mean confidence and accuracy."""
    confidence, hits = _confidence_and_hits(probs, labels)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, confidence, minlength=bins)
    hit_sum = np.bincount(which, hits, minlength=bins)
    safe = np.maximum(count, 1)
    return {"edges": np.linspace(0, 1, bins + 1).round(4).tolist(), "count": count.tolist(),
            "confidence": (conf_sum / safe).round(4).tolist(), "accuracy": (hit_sum / safe).round(4).tolist()}


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """ECE: the faces-weighted mean gap between confidence and accuracy over ``bins`` bins."""
    if not len(labels):
        return 0.0
    confidence, hits = _confidence_and_hits(probs, labels)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    gaps = np.abs(np.bincount(which, confidence, bins) - np.bincount(which, hits, bins))
    return float(gaps.sum() / len(labels))  # sum over bins of |sum conf - sum hits|, over N


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(label); with (N, C) vote shares the cross-entropy against them."""
    if not len(labels):
        return 0.0
    logp = np.log(np.clip(np.asarray(probs, np.float64), 1e-12, None))
    labels = np.asarray(labels)
    if labels.ndim == 2:
        return float(-(labels * logp).sum(1).mean())
    return float(-logp[np.arange(len(labels)), labels].mean())


def fit_temperature(probs: np.ndarray, labels: np.ndarray, low: float = 0.25, high: float = 8.0) -> float:
    """The T that minimises the NLL of ``with_temperature(probs, T)`` against ``labels`` (class
    indices, or vote shares: see :func:`negative_log_likelihood`), by golden-section search on
    log T (the NLL is convex in 1/T)."""
    labels = np.asarray(labels)

    def nll(log_t: float) -> float:
        return negative_log_likelihood(with_temperature(probs, math.exp(log_t)), labels)

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(60):
        if nll(c) < nll(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    return round(math.exp((a + b) / 2), 4)


def lowest_ece_temperature(probs: np.ndarray, labels: np.ndarray, low: float = 0.25,
                           high: float = 8.0, steps: int = 241, refine: int = 1201) -> tuple[float, float]:
    """(T, ECE) of the temperature with the lowest ECE on these very faces.

    A diagnostic, never a fit: chosen with hindsight on the set it is scored on, it says how
    low ECE can go by temperature scaling alone. ECE jumps as faces cross bin edges, so a log
    grid finds the basin and a fine grid around it (``refine`` points over +-3 steps) the low."""
    labels = np.asarray(labels)

    def lowest(grid: np.ndarray) -> tuple[int, float]:
        eces = [expected_calibration_error(with_temperature(probs, float(t)), labels) for t in grid]
        best = int(np.argmin(eces))
        return best, eces[best]

    coarse = np.exp(np.linspace(math.log(low), math.log(high), steps))
    i, _ = lowest(coarse)
    edges = math.log(coarse[max(i - 3, 0)]), math.log(coarse[min(i + 3, steps - 1)])
    fine = np.exp(np.linspace(*edges, refine))
    j, ece = lowest(fine)
    return round(float(fine[j]), 4), round(float(ece), 4)


def ece_bootstrap_sd(probs: np.ndarray, labels: np.ndarray, rounds: int = 200, seed: int = 0) -> float:
    """Standard deviation of the ECE over bootstrap resamples of the faces: how much of a gap to a
    bar is sampling noise (about 0.005 for 3,500 faces)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    draws = (rng.integers(0, len(labels), len(labels)) for _ in range(rounds))
    return round(float(np.std([expected_calibration_error(probs[i], labels[i]) for i in draws])), 4)


def uncertain_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The highest top-probability threshold under which the model is wrong at least half the
    time: faces flagged "uncertain" are right no more often than wrong (0.0: none qualifies)."""
    confidence, hits = _confidence_and_hits(probs, labels)
    best = 0.0
    for t in THRESHOLDS:
        below = confidence < t
        if below.sum() >= 20 and hits[below].mean() <= 0.5:
            best = float(t)
    return best


def _mean(values: np.ndarray) -> float | None:
    """Rounded mean; None for no values (JSON has no NaN)."""
    return round(float(values.mean()), 4) if len(values) else None


def calibration_report(probs: np.ndarray, labels: np.ndarray, uncertain_below: float = 0.0) -> dict[str, Any]:
    """ECE, NLL, the reliability bins and, with a threshold, what the flag marks."""
    out: dict[str, Any] = {"ece": round(expected_calibration_error(probs, labels), 4),
                           "nll": round(negative_log_likelihood(probs, labels), 4),
                           "reliability": reliability(probs, labels)}
    if uncertain_below:
        confidence, hits = _confidence_and_hits(probs, labels)
        flagged = confidence < uncertain_below
        out["uncertain"] = {"below": uncertain_below, "share": _mean(flagged),
                            "accuracy_flagged": _mean(hits[flagged]), "accuracy_rest": _mean(hits[~flagged])}
    return out

