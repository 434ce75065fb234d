"""``ferkit data summary``: counts per split and class, Figs. 1-3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ferkit import figures
from ferkit.data import FerData, load_data
from ferkit.data.summary import Suspects, counts_by_usage, find_suspects, format_counts
from ferkit.labels import CLASSES


def sample_indices(data: FerData, per_class: int = 3, seed: int = 0) -> list[int]:
    """A few random images of every class present, class by class (Fig. 2)."""
    rng = np.random.default_rng(seed)
    labels = data.labels.numpy()
    picks = []
    for c in range(len(CLASSES)):
        idx = np.flatnonzero(labels == c)
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
    data = load_data(data_path)
    counts = counts_by_usage(data)
    s = find_suspects(data)
    lines = [f"{data.origin}: {len(data):,} images", "", format_counts(counts), "",
             f"near-blank images (pixel std < 3): {len(s.blank)}",
             f"exact duplicates: {len(s.duplicate_groups)} groups, {s.extra_copies} extra copies, "
             f"{s.conflicting_groups} groups with conflicting labels"]
    lines += [f"  {k}: {v}" for k, v in s.cross_split.items()]
    if out_dir is not None:
        out = Path(out_dir)
        figures.class_distribution(counts, out / "fig1_class_distribution.png")
        picks = sample_indices(data)
        figures.image_grid(data.images[picks], [CLASSES[int(data.labels[i])] for i in picks],
                           out / "fig2_samples.png", cols=7, title="Sample images")
        idx, why = suspect_indices(s)
        if idx:
            titles = [f"{w}\n{CLASSES[int(data.labels[i])]}" for i, w in zip(idx, why)]
            figures.image_grid(data.images[torch.tensor(idx)], titles, out / "fig3_error_pictures.png",
                               cols=7, title="Suspect pictures: near-blank and duplicates")
        lines += ["", f"figures written to {out}/"]
    return "\n".join(lines)
