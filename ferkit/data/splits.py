"""Split protocols: ``canonical`` (the challenge's Usage column) and ``paper`` (80/10/10)."""

from __future__ import annotations

import numpy as np

from ferkit.data.dataset import OTHER, FerData
from ferkit.errors import DataError

PROTOCOLS = ("canonical", "paper")
SPLITS = ("train", "val", "test")


def canonical_split(data: FerData) -> dict[str, FerData]:
    """Training / PublicTest / PrivateTest as train / val / test (the published protocol)."""
    if (data.usage == OTHER).any():
        raise DataError(f"{data.origin}: the canonical split needs FER2013's Usage column")
    parts = {name: data.subset(np.flatnonzero(data.usage == u)) for u, name in enumerate(SPLITS)}
    if len(parts["val"]) == 0:
        # Image folders without PublicTest_ names: hold out 10% of training for validation.
        train, val = _stratified_parts(parts["train"], (0.9, 0.1), seed=0)
        parts["train"], parts["val"] = train, val
    return parts


def _stratified_parts(data: FerData, fractions: tuple[float, ...], seed: int) -> list[FerData]:
    if not len(data):
        raise DataError(f"{data.origin}: no training images to split")
    rng = np.random.default_rng(seed)
    labels = data.labels
    picks: list[list[np.ndarray]] = [[] for _ in fractions]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        bounds = np.round(np.cumsum(fractions) * len(idx)).astype(int)
        for k, (lo, hi) in enumerate(zip(np.r_[0, bounds[:-1]], bounds)):
            picks[k].append(idx[lo:hi])
    return [data.subset(np.sort(np.concatenate(p))) for p in picks]


def paper_split(data: FerData, seed: int = 0) -> dict[str, FerData]:
    """Section 2 of the paper: a stratified random 80/10/10 split of all images."""
    return dict(zip(SPLITS, _stratified_parts(data, (0.8, 0.1, 0.1), seed)))


def split_data(data: FerData, protocol: str = "canonical", seed: int = 0) -> dict[str, FerData]:
    if protocol == "canonical":
        return canonical_split(data)
    if protocol == "paper":
        return paper_split(data, seed)
    raise DataError(f"unknown split protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
