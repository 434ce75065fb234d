"""Loader for the original FER2013 challenge CSV (``emotion,pixels,Usage``), plain or gzipped."""

from __future__ import annotations

import csv
import gzip
import zlib
from pathlib import Path

import numpy as np

from ferkit.data.dataset import OTHER, USAGES, FerData
from ferkit.errors import DataError
from ferkit.face import NUM_CLASSES

PIXELS = 48 * 48
REQUIRED_COLUMNS = ("emotion", "pixels")
HEADER_SHOWN = 80  # characters of a wrong first line that an error message shows


def _open_text(path: Path):
    if path.suffix.lower() == ".gz":
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def parse_pixels(text: str, where: str) -> np.ndarray:
    """Parse one ``pixels`` field: exactly 2,304 integers in 0..255."""
    tokens = text.split()
    if len(tokens) != PIXELS:
        raise DataError(f"{where}: pixels has {len(tokens)} values, expected {PIXELS} (48x48)")
    try:
        values = np.array(tokens, dtype=np.int64)
    except ValueError:
        bad = next(t for t in tokens if not t.lstrip("-").isdigit())
        raise DataError(f"{where}: pixel value {bad!r} is not an integer") from None
    if values.min() < 0 or values.max() > 255:
        raise DataError(f"{where}: pixel values must be in 0..255, found {values.min()}..{values.max()}")
    return values.astype(np.uint8)


def _fast_pixels(text: str) -> np.ndarray | None:
    """The common case, ~5x faster than splitting; None when the row needs the careful parser."""
    try:
        values = np.fromstring(text, dtype=np.int64, sep=" ")  # noqa: NPY201 (text mode is supported)
    except ValueError:
        return None
    if values.size != PIXELS or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8)


def load_challenge_csv(path: str | Path) -> FerData:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    images: list[np.ndarray] = []
    labels: list[int] = []
    usage: list[int] = []
    sources: list[str] = []
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise DataError(_header_error(path, header, missing))
            i_emotion, i_pixels = header.index("emotion"), header.index("pixels")
            i_usage = header.index("Usage") if "Usage" in header else None
            for row_no, row in enumerate(reader, start=2):
                if not row:
                    continue  # a blank line
                where = f"{path} row {row_no}"
                if len(row) != len(header):
                    raise DataError(f"{where}: {len(row)} fields, expected {len(header)}")
                labels.append(_parse_label(row[i_emotion], where))
                pixels = _fast_pixels(row[i_pixels])
                images.append(pixels if pixels is not None else parse_pixels(row[i_pixels], where))
                usage.append(_parse_usage(row[i_usage], where) if i_usage is not None else OTHER)
                sources.append(where)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read CSV: {exc}") from None
    if not labels:
        raise DataError(f"{path}: no data rows")
    return FerData(
        images=np.stack(images).reshape(-1, 48, 48),
        labels=np.array(labels, dtype=np.int64),
        usage=np.array(usage, dtype=np.int8),
        sources=sources,
        origin=str(path),
    )


def _header_error(path: Path, header: list[str], missing: list[str]) -> str:
    """The one line for a first line that is not the expected header; a data row (no header at
    all: 2,304 pixel values) is shown cut short, not whole."""
    expected = "expected the header 'emotion,pixels,Usage'"
    if not header:
        return f"{path}: empty; {expected}"
    found = ",".join(header)
    shown = found if len(found) <= HEADER_SHOWN else found[:HEADER_SHOWN] + "..."
    if any(h.replace(" ", "").isdigit() for h in header):  # numbers: a data row
        return f"{path}: the first line does not look like a header ({shown!r}); {expected} first"
    return f"{path}: missing column(s) {', '.join(missing)}; {expected}, found {shown!r}"


def _parse_label(text: str, where: str) -> int:
    try:
        label = int(text)
    except ValueError:
        label = -1
    if not 0 <= label < NUM_CLASSES:
        raise DataError(f"{where}: unknown label {text!r}, expected 0..{NUM_CLASSES - 1}")
    return label


def _parse_usage(text: str, where: str) -> int:
    try:
        return USAGES.index(text.strip())
    except ValueError:
        raise DataError(f"{where}: unknown Usage {text!r}, expected one of {', '.join(USAGES)}") from None
