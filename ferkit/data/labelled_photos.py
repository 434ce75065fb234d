"""Labelled photos: a folder with ``labels.csv`` (one row per labelled face) and ``images/``.

``labels.csv`` has the header ``image,face,x,y,w,h,label,confidence``: ``image`` a file name
under ``images/``, ``face`` the face's id within the photo, ``x,y,w,h`` its box in the photo's
pixels (after EXIF orientation), ``label`` one of FER2013's seven classes (aliases such as
"happiness" accepted), ``confidence`` optional (may be absent or empty). Extra columns are ignored.
ExpW-dev (``../shared/data/expw-dev``) has this layout.

What is read: the CSV and each photo's header (its size), never its pixels; the evaluation
decodes one photo at a time.

Bad input. The file is a measuring stick, so a silently smaller set would change the numbers:
every malformed row (missing fields, a non-integer, negative or zero-size box, an unknown label,
a missing or unreadable photo, a box entirely outside its photo, a repeated image+face) is a
:class:`~ferkit.errors.DataError` naming the file and row, as is an empty or header-less file.
Two things are kept: a box that only partly leaves its photo (ExpW-dev has 17; the crop repeats
the photo's edge, as for detected faces), and blank lines. Rows labelled ``contempt`` (a class
FER2013 lacks, as in CK+) are skipped with a warning on stderr, as the class-folder loader does.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from ferkit.errors import DataError
from ferkit.face import EXTRA_CLASSES, Box, class_index

LABELS_FILE = "labels.csv"
IMAGES_DIR = "images"
COLUMNS = ("image", "face", "x", "y", "w", "h", "label", "confidence")
REQUIRED_COLUMNS = COLUMNS[:-1]
# EXIF orientations that swap width and height (transposes and 90-degree rotations).
_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class LabelledFace:
    """One labelled face: its box in the photo's pixels and its class index (CLASSES order)."""

    face: str
    box: Box
    label: int
    confidence: float | None
    row: int  # line in labels.csv (the header is line 1)


@dataclass(frozen=True)
class LabelledPhoto:
    """A photo (not decoded) with its size and its labelled faces, in file order."""

    path: Path
    width: int
    height: int
    faces: tuple[LabelledFace, ...]


@dataclass(frozen=True)
class LabelledPhotos:
    """All photos of a labelled-photo folder, in the order they first appear in labels.csv."""

    root: Path
    photos: tuple[LabelledPhoto, ...]
    skipped: int = 0  # rows left out on purpose (contempt)

    @property
    def n_faces(self) -> int:
        return sum(len(p.faces) for p in self.photos)


def is_labelled_photos(path: str | Path) -> bool:
    """True for a folder that holds ``labels.csv``."""
    return (Path(path) / LABELS_FILE).is_file()


def load_labelled_photos(root: str | Path) -> LabelledPhotos:
    """Read ``root/labels.csv`` and check every row against ``root/images/`` (headers only)."""
    root = Path(root)
    csv_path = root / LABELS_FILE
    if not csv_path.is_file():
        raise DataError(f"{root}: no {LABELS_FILE} (expected a folder with {LABELS_FILE} and {IMAGES_DIR}/)")
    rows, skipped = _read_rows(csv_path)
    images = root / IMAGES_DIR
    sizes: dict[str, tuple[int, int]] = {}
    by_image: dict[str, list[LabelledFace]] = {}
    for name, face in rows:
        where = f"{csv_path} row {face.row}"
        if name not in sizes:
            sizes[name] = _image_size(images / name, where)
        w, h = sizes[name]
        b = face.box
        if b.x >= w or b.y >= h or b.x + b.w <= 0 or b.y + b.h <= 0:
            raise DataError(f"{where}: box x={b.x} y={b.y} w={b.w} h={b.h} lies outside "
                            f"{name} ({w}x{h} pixels)")
        by_image.setdefault(name, []).append(face)
    photos = tuple(LabelledPhoto(images / name, *sizes[name], tuple(faces))
                   for name, faces in by_image.items())
    return LabelledPhotos(root=root, photos=photos, skipped=skipped)


def _read_rows(csv_path: Path) -> tuple[list[tuple[str, LabelledFace]], int]:
    """The rows of labels.csv as (image name, face), and how many contempt rows were skipped."""
    out: list[tuple[str, LabelledFace]] = []
    seen: dict[tuple[str, str], int] = {}
    skipped = 0
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip().lower() for h in next(reader, [])]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise DataError(
                    f"{csv_path}: missing column(s) {', '.join(missing)}; expected header "
                    f"'{','.join(COLUMNS)}' (confidence optional), found {','.join(header) or 'nothing'}"
                )
            col = {c: header.index(c) for c in COLUMNS if c in header}
            for row_no, row in enumerate(reader, start=2):
                if not any(field.strip() for field in row):
                    continue  # a blank line
                where = f"{csv_path} row {row_no}"
                if len(row) != len(header):
                    raise DataError(f"{where}: {len(row)} fields, expected {len(header)} "
                                    f"({','.join(header)})")
                field = {c: row[i].strip() for c, i in col.items()}
                if field["label"].lower() in EXTRA_CLASSES:
                    skipped += 1
                    continue
                name, face = _parse_row(field, row_no, where)
                first = seen.setdefault((name, face.face), row_no)
                if first != row_no:
                    raise DataError(f"{where}: image {name!r} face {face.face!r} is already labelled "
                                    f"in row {first}")
                out.append((name, face))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: cannot read CSV: {exc}") from None
    if skipped:
        print(f"warning: {csv_path}: skipped {skipped} row(s) labelled contempt, not one of the 7 "
              "FER2013 classes", file=sys.stderr)
    if not out:
        raise DataError(f"{csv_path}: no labelled faces")
    return out, skipped


def _parse_row(field: dict[str, str], row_no: int, where: str) -> tuple[str, LabelledFace]:
    name = field["image"]
    if not name:
        raise DataError(f"{where}: empty image name")
    parts = PurePosixPath(name.replace("\\", "/"))
    if parts.is_absolute() or ".." in parts.parts:
        raise DataError(f"{where}: image {name!r} must be a path inside {IMAGES_DIR}/")
    if not field["face"]:
        raise DataError(f"{where}: empty face id")
    x, y, w, h = (_parse_int(field, c, where) for c in "xywh")
    if w <= 0 or h <= 0:
        raise DataError(f"{where}: box size w={w} h={h} must be positive")
    if x < 0 or y < 0:
        raise DataError(f"{where}: box corner x={x} y={y} must not be negative")
    try:
        label = class_index(field["label"])
    except KeyError:
        raise DataError(f"{where}: unknown label {field['label']!r}, expected one of angry, disgust, "
                        "fear, happy, sad, surprise, neutral") from None
    confidence = None
    if field.get("confidence"):
        try:
            confidence = float(field["confidence"])
        except ValueError:
            raise DataError(f"{where}: confidence {field['confidence']!r} is not a number") from None
    return name, LabelledFace(field["face"], Box(x, y, w, h), label, confidence, row_no)


def _parse_int(field: dict[str, str], column: str, where: str) -> int:
    text = field[column]
    try:
        value = float(text)  # "12.0" is fine, "12.5" and "abc" are not
    except ValueError:
        value = float("nan")
    if not value.is_integer():
        raise DataError(f"{where}: {column} {text!r} is not an integer number of pixels")
    return int(value)


def _image_size(path: Path, where: str) -> tuple[int, int]:
    """(width, height) of a photo as load_image will see it (EXIF orientation applied), from its header."""
    if not path.is_file():
        raise DataError(f"{where}: image {path} not found")
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(0x0112)
    except Exception as exc:  # any decoder plugin's error: the file's fault
        raise DataError(f"{where}: image {path} is unreadable: {exc}") from None
    return (h, w) if orientation in _SWAPPING_ORIENTATIONS else (w, h)
