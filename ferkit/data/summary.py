"""Counts per split and class, and the suspect "error pictures" the paper mentions (Fig. 3):
near-blank images and exact pixel duplicates (including copies that cross splits)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ferkit.data.dataset import OTHER, USAGES, FerData
from ferkit.labels import CLASSES, NUM_CLASSES

BLANK_STD = 3.0  # pixel standard deviation below which an image is treated as blank


@dataclass
class Suspects:
    blank: list[int] = field(default_factory=list)  # indices of near-blank images
    duplicate_groups: list[list[int]] = field(default_factory=list)  # groups of identical images
    cross_split: dict[str, int] = field(default_factory=dict)  # e.g. PrivateTest copies of Training
    conflicting_groups: int = 0  # duplicate groups whose copies carry different labels

    @property
    def extra_copies(self) -> int:
        return sum(len(g) - 1 for g in self.duplicate_groups)


def counts_by_usage(data: FerData) -> dict[str, list[int]]:
    """{usage name: per-class counts}; a class-folder data set has the single usage 'all'."""
    labels = data.labels.numpy()
    out = {}
    for u in sorted(set(data.usage.tolist())):
        name = "all" if u == OTHER else USAGES[u]
        out[name] = np.bincount(labels[data.usage == u], minlength=NUM_CLASSES).tolist()
    return out


def image_hashes(data: FerData) -> list[bytes]:
    flat = data.images.reshape(len(data), -1).numpy()
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


def find_suspects(data: FerData) -> Suspects:
    flat = data.images.reshape(len(data), -1).float()
    blank = np.flatnonzero(flat.std(1).numpy() < BLANK_STD).tolist()
    groups: dict[bytes, list[int]] = {}
    for i, h in enumerate(image_hashes(data)):
        groups.setdefault(h, []).append(i)
    dups = [g for g in groups.values() if len(g) > 1]
    labels = data.labels.numpy()
    cross: dict[str, int] = {}
    for g in dups:
        usages = data.usage[g]
        if (usages == 0).any():  # copies of a Training image in the test splits
            for u in (1, 2):
                cross[f"{USAGES[u]} in Training"] = cross.get(f"{USAGES[u]} in Training", 0) + int(
                    (usages == u).sum()
                )
    conflicting = sum(1 for g in dups if len(set(labels[g].tolist())) > 1)
    return Suspects(blank, dups, cross, conflicting)


def leaked_mask(train: FerData, test: FerData) -> np.ndarray:
    """True for each ``test`` image that is an exact pixel copy of an image in ``train``."""
    train_hashes = set(image_hashes(train))
    return np.array([h in train_hashes for h in image_hashes(test)], dtype=bool)


def format_counts(counts: dict[str, list[int]]) -> str:
    header = f"{'split':12s}" + "".join(f"{c:>9s}" for c in CLASSES) + f"{'total':>9s}"
    rows = [header]
    totals = np.zeros(NUM_CLASSES, dtype=int)
    for name, row in counts.items():
        totals += np.array(row)
        rows.append(f"{name:12s}" + "".join(f"{v:9d}" for v in row) + f"{sum(row):9d}")
    if len(counts) > 1:
        rows.append(f"{'total':12s}" + "".join(f"{v:9d}" for v in totals) + f"{totals.sum():9d}")
    return "\n".join(rows)
