"""Small real slices of the challenge CSV, with the FER+ votes of the same rows: the data that
tests, smoke runs of the benchmarks and quick experiments use instead of all 35,887 faces."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Mapping
from pathlib import Path

from ferkit.errors import DataError


def _opener(path: Path):
    return gzip.open if path.name.endswith(".gz") else open


def slice_challenge_csv(src: str | Path, dst: str | Path, counts: Mapping[str, int]) -> list[int]:
    """The first ``counts[usage]`` rows of each Usage of the challenge CSV ``src``, in file order,
    written to ``dst`` (gzipped if it ends in .gz); returns the kept rows' indices in ``src``."""
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise DataError(f"{src}: not found or not a file; the FER2013 challenge CSV is needed")
    want = {usage: n for usage, n in counts.items() if n > 0}
    kept: list[int] = []
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _opener(src)(src, "rt") as inp, _opener(dst)(dst, "wt") as out:
        out.write(inp.readline())
        for row, line in enumerate(inp):
            if not want:
                break
            usage = line.rstrip().rsplit(",", 1)[1]
            if want.get(usage, 0) > 0:
                want[usage] -= 1
                if not want[usage]:
                    del want[usage]
                kept.append(row)
                out.write(line)
    return kept


def slice_votes(src: str | Path, dst: str | Path, rows: list[int]) -> int:
    """The FER+ votes of ``rows`` (indices into the full CSV), renumbered 0..n-1 so that they join
    the slice row by row, written gzipped to ``dst``; returns how many were written."""
    new = {old: i for i, old in enumerate(rows)}
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with gzip.open(src, "rt", newline="") as inp, gzip.open(dst, "wt", newline="", compresslevel=1) as out:
        reader, writer = csv.reader(inp), csv.writer(out)
        header = next(reader)
        writer.writerow(header)
        at = header.index("row")
        for r in reader:
            if r and int(r[at]) in new:
                r[at] = str(new[int(r[at])])
                writer.writerow(r)
                written += 1
    return written


def slice_fer(data: str | Path, folder: str | Path, counts: Mapping[str, int],
              votes: str | Path | None = None, name: str = "fer2013.csv") -> Path:
    """A slice of the challenge CSV ``data`` as ``folder/fer2013/<name>``, and its FER+ votes
    (``votes``, by default the shared layout's beside ``data``, where present) as
    ``folder/ferplus/ferplus_votes.csv.gz``, where ferkit looks for them; returns the CSV's path."""
    data, folder = Path(data), Path(folder)
    out = folder / "fer2013" / name
    rows = slice_challenge_csv(data, out, counts)
    votes = Path(votes or data.resolve().parent.parent / "ferplus" / "ferplus_votes.csv.gz")
    if votes.is_file():
        slice_votes(votes, folder / "ferplus" / "ferplus_votes.csv.gz", rows)
    return out
