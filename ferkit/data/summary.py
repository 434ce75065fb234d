"""``ferkit data summary``: counts per split and class, and the suspect "error pictures" the
paper mentions (Fig. 3): near-blank images and exact pixel duplicates (including copies that
cross splits); with an output folder, Figs. 1-3."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ferkit.data import load_data
from ferkit.data.dataset import OTHER, USAGES, FerData
from ferkit.errors import require
from ferkit.face import CLASSES, NUM_CLASSES

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
    labels = data.labels
    out = {}
    for u in sorted(set(data.usage.tolist())):
        name = "all" if u == OTHER else USAGES[u]
        out[name] = np.bincount(labels[data.usage == u], minlength=NUM_CLASSES).tolist()
    return out


def image_hashes(data: FerData) -> list[bytes]:
    flat = data.images.reshape(len(data), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


def find_suspects(data: FerData) -> Suspects:
    flat = data.images.reshape(len(data), -1)
    blank = np.flatnonzero(flat.std(1, ddof=1) < BLANK_STD).tolist()  # the sample deviation
    groups: dict[bytes, list[int]] = {}
    for i, h in enumerate(image_hashes(data)):
        groups.setdefault(h, []).append(i)
    dups = [g for g in groups.values() if len(g) > 1]
    labels = data.labels
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


def sample_indices(data: FerData, per_class: int = 3, seed: int = 0) -> list[int]:
    """A few random images of every class present, class by class (Fig. 2)."""
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(data.labels == c)
        picks += rng.choice(idx, size=min(per_class, len(idx)), replace=False).tolist()
    return picks


def suspect_indices(s: Suspects, limit: int = 28) -> tuple[list[int], list[str]]:
    """Blank images first, then one pair per duplicate group, for Fig. 3."""
    idx, why = [], []
    for i in s.blank:
        idx.append(i)
        why.append("near-blank")
    for g in s.duplicate_groups:
        if len(idx) + 2 > limit:
            break
        idx += g[:2]
        why += ["duplicate"] * 2
    return idx[:limit], why[:limit]


def summarize(data_path: str | Path, out_dir: str | Path | None) -> str:
    """The summary as text; with ``out_dir`` also Figs. 1-3 there (needs matplotlib)."""
    if out_dir is not None:
        require("data summary --out (Figs. 1-3)", "matplotlib")
    data = load_data(data_path)
    counts = counts_by_usage(data)
    s = find_suspects(data)
    lines = [f"{data.origin}: {len(data):,} images", "", format_counts(counts), "",
             f"near-blank images (pixel std < 3): {len(s.blank)}",
             f"exact duplicates: {len(s.duplicate_groups)} groups, {s.extra_copies} extra copies, "
             f"{s.conflicting_groups} groups with conflicting labels"]
    lines += [f"  {k}: {v}" for k, v in s.cross_split.items()]
    if out_dir is not None:
        from ferkit import figures

        out = Path(out_dir)
        figures.class_distribution(counts, out / "fig1_class_distribution.png")
        picks = sample_indices(data)
        figures.image_grid(data.images[picks], [CLASSES[data.labels[i]] for i in picks],
                           out / "fig2_samples.png", cols=7, title="Sample images")
        idx, why = suspect_indices(s)
        if idx:
            titles = [f"{w}\n{CLASSES[data.labels[i]]}" for i, w in zip(idx, why)]
            figures.image_grid(data.images[idx], titles, out / "fig3_error_pictures.png",
                               cols=7, title="Suspect pictures: near-blank and duplicates")
        lines += ["", f"figures written to {out}/"]
    return "\n".join(lines)
