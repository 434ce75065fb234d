"""FER+ labels for FER2013: ten crowd votes per image (Barsoum et al. 2016), joined to the CSV rows.

FER2013's single labels agree with the FER+ majority on only about 64% of images. The votes file
(``ferplus_votes.csv.gz``: ``row,Usage,fer2013_emotion,...`` then ten vote columns) is aligned to
the rows of the challenge CSV; the join checks that alignment row by row (Usage and original label).

The standard protocol: the majority vote is the label, images whose majority is ``unknown`` or
``NF`` (not a face) are left out. ferkit keeps FER2013's seven classes, so images whose majority is
``contempt`` are left out too (and counted). The majority is the first maximum in FER+'s column
order, which gives the 3,518 PrivateTest images the votes file's README counts. The training
target is the vote distribution over the seven classes ("probability" training, the best of the
paper's four schemes).
"""

from __future__ import annotations

import csv
import gzip
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ferkit.data.dataset import USAGES, FerData
from ferkit.errors import DataError
from ferkit.face import CLASS_TO_INDEX, NUM_CLASSES

VOTES_FILE = "ferplus_votes.csv.gz"
# FER+'s vote columns, in its own order; the first seven are FER2013's classes under other names.
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt", "unknown", "NF")
TO_FER2013 = [CLASS_TO_INDEX[c] for c in ("neutral", "happy", "surprise", "sad", "angry", "disgust",
                                          "fear")]
LEFT_OUT = {7: "contempt", 8: "unknown", 9: "not_a_face"}


@dataclass
class Votes:
    """The votes file: (N, 10) vote counts in VOTE_COLUMNS order, per CSV row."""

    counts: np.ndarray
    usage: np.ndarray  # (N,) index into USAGES
    fer2013_label: np.ndarray  # (N,) the row's original label, to check the join
    origin: str


def default_votes_path(data_path: str | Path) -> Path | None:
    """Where the shared layout keeps the votes: ``<data>/../../ferplus/ferplus_votes.csv.gz``."""
    candidate = Path(data_path).resolve().parent.parent / "ferplus" / VOTES_FILE
    return candidate if candidate.is_file() else None


def read_votes(path: str | Path) -> Votes:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such FER+ votes file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            needed = ("row", "Usage", "fer2013_emotion", *VOTE_COLUMNS)
            missing = [c for c in needed if c not in header]
            if missing:
                raise DataError(f"{path}: not a FER+ votes file (missing column(s) {', '.join(missing)})")
            cols = [header.index(c) for c in needed]
            rows = [[r[i] for i in cols] for r in reader if r]
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error, IndexError) as exc:
        raise DataError(f"{path}: cannot read FER+ votes: {exc}") from None
    try:
        order = np.array([int(r[0]) for r in rows])
        usage = np.array([USAGES.index(r[1]) for r in rows], dtype=np.int8)
        label = np.array([int(r[2]) for r in rows])
        counts = np.array([[int(v) if v else 0 for v in r[3:]] for r in rows], dtype=np.int64)
    except ValueError as exc:
        raise DataError(f"{path}: malformed FER+ votes row: {exc}") from None
    if not np.array_equal(order, np.arange(len(rows))):
        raise DataError(f"{path}: rows must be numbered 0..N-1 in order")
    return Votes(counts, usage, label, str(path))


def majority(counts: np.ndarray) -> np.ndarray:
    """Index in VOTE_COLUMNS of each row's majority (first maximum); -1 where nobody voted."""
    return np.where(counts.sum(1) > 0, counts.argmax(1), -1)


def with_ferplus_labels(data: FerData, votes: Votes) -> tuple[FerData, dict[str, int]]:
    """``data`` (the full challenge CSV) relabelled by the FER+ majority, with vote distributions.

    Keeps the images whose majority is one of the seven classes; returns the counts left out.
    """
    if len(data) != len(votes.counts):
        raise DataError(f"{votes.origin} has {len(votes.counts)} rows, {data.origin} {len(data)}: FER+ "
                        "votes join only the full challenge CSV they were aligned to")
    if not (np.array_equal(data.usage, votes.usage)
            and np.array_equal(data.labels, votes.fer2013_label)):
        raise DataError(f"{votes.origin} is not aligned to {data.origin} (Usage or labels differ)")
    top = majority(votes.counts)
    keep = (top >= 0) & (top < len(TO_FER2013))
    idx = np.flatnonzero(keep)
    seven = np.zeros((len(idx), NUM_CLASSES))
    seven[:, TO_FER2013] = votes.counts[idx, : len(TO_FER2013)]
    part = replace(data.subset(idx), labels=np.asarray(TO_FER2013, dtype=np.int64)[top[idx]],
                   targets=(seven / seven.sum(1, keepdims=True)).astype(np.float32))
    return part, left_out_counts(votes, np.ones(len(top), bool))


def left_out_counts(votes: Votes, rows: np.ndarray) -> dict[str, int]:
    """How many of the selected rows the protocol leaves out, and why."""
    top = majority(votes.counts)[rows]
    return {"no_votes": int((top < 0).sum())} | {name: int((top == i).sum()) for i, name in LEFT_OUT.items()}
