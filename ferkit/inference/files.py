"""``ferkit predict``: files, folders and globs in; a table, JSON Lines or CSV out.

A file that cannot be read is reported (one line on stderr, and an error entry in JSON or
CSV) and the others go on; the exit status is 1 if any failed. Images are decoded a chunk at
a time and each chunk's faces go through the model in one batch.
"""

from __future__ import annotations

import csv
import glob
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from ferkit.errors import ImageError
from ferkit.face import CLASSES, FACE_SIZE
from ferkit.imageio import IMAGE_SUFFIXES, load_image
from ferkit.imageops import resize
from ferkit.inference.types import (
    LANDMARK_COLUMNS,
    LANDMARK_DECIMALS,
    Prediction,
    error_json,
    format_cells,
    landmark_values,
    prediction_json,
)

if TYPE_CHECKING:
    from ferkit.inference.recognizer import FoundFaces, Recognizer

# Images per batch: only their crops are kept, unless annotating, which needs the pictures.
CHUNK, CHUNK_ANNOTATE = 32, 4


@dataclass
class Input:
    """One path to predict, or the reason it cannot be (a pattern that matched nothing)."""

    path: str
    error: str = ""


def expand_inputs(items: Iterable[str], err: TextIO | None = None) -> list[Input]:
    """Files as given, folders' images (recursively, sorted), glob patterns expanded; no repeats.
    What a folder holds besides images is counted and said, in one line per folder, on ``err``."""
    out: list[Input] = []
    for item in items:
        out.extend(_expand_one(item, err or sys.stderr))
    seen: set[str] = set()
    return [i for i in out if not (i.path in seen or seen.add(i.path))]


def scan_folder(folder: Path) -> tuple[list[Path], dict[str, list[str]]]:
    """The image files under ``folder`` (recursively, sorted) and the entries skipped, by reason
    (each with the name's suffix, for the message)."""
    files: list[Path] = []
    skipped: dict[str, list[str]] = {}
    for entry in sorted(folder.rglob("*")):
        if entry.is_dir():
            if entry.is_symlink():
                skipped.setdefault("linked folder (not followed)", []).append("")
            continue
        if entry.is_file():
            if entry.suffix.lower() in IMAGE_SUFFIXES:
                files.append(entry)
            else:
                skipped.setdefault("without an image suffix", []).append(entry.suffix.lower() or "no suffix")
        elif entry.is_symlink():
            skipped.setdefault("dangling or looping link", []).append("")
        else:
            skipped.setdefault("not a regular file (FIFO, socket or device)", []).append("")
    return files, skipped


def skipped_note(folder: str, n_images: int, skipped: dict[str, list[str]]) -> str:
    """One line: how many entries of ``folder`` were skipped, and why."""
    n = sum(map(len, skipped.values()))
    parts = []
    for reason, suffixes in skipped.items():
        kinds = sorted({s for s in suffixes if s})
        parts.append(f"{len(suffixes)} {reason}" + (f" ({', '.join(kinds[:8])}"
                                                     + (", ..." if len(kinds) > 8 else "") + ")"
                                                     if kinds else ""))
    return (f"ferkit: {folder}: skipped {n} of {n + n_images} entries: {'; '.join(parts)}; images are "
            f"read from {', '.join(sorted(IMAGE_SUFFIXES))} files")


def _expand_one(item: str, err: TextIO) -> list[Input]:
    path = Path(item)
    if path.is_dir():
        files, skipped = scan_folder(path)
        if skipped:
            print(skipped_note(item, len(files), skipped), file=err)
        return [Input(str(f)) for f in files] or [Input(item, "folder holds no images")]
    if path.exists():
        return [Input(item)]
    if glob.has_magic(item):
        matches = sorted(glob.glob(item, recursive=True))
        files = [m for m in matches if Path(m).is_file()]
        return [Input(m) for m in files] or [Input(item, "no file matches this pattern")]
    return [Input(item, "no such file")]


class Writer:
    """Receives results in input order; subclasses print one format."""

    def __init__(self, out: TextIO, model_name: str) -> None:
        self.out = out
        self.model_name = model_name

    def prediction(self, pred: Prediction) -> None: ...

    def error(self, source: str, reason: str) -> None: ...

    def close(self) -> None:
        self.out.flush()


class TableWriter(Writer):
    """One line per face (or per image without a face), aligned for reading in a terminal."""

    def __init__(self, out: TextIO, model_name: str, path_width: int) -> None:
        super().__init__(out, model_name)
        self.w = max(6, path_width)
        print(f"{'source':{self.w}s}  face  {'box (x,y,w,h)':18s}  {'label':8s}  score", file=out)

    def prediction(self, pred: Prediction) -> None:
        if not pred.faces:
            print(f"{pred.source:{self.w}s}  -     {'-':18s}  -         -      {pred.note}", file=self.out)
        for i, face in enumerate(pred.faces, 1):
            b = face.box
            box = f"{b.x},{b.y},{b.w},{b.h}" if b else "(whole image)"
            flag = "  uncertain" if face.uncertain else ""
            print(f"{pred.source:{self.w}s}  {i:<4d}  {box:18s}  {face.label:8s}  {face.score:.3f}{flag}",
                  file=self.out)

    def error(self, source: str, reason: str) -> None:
        pass  # already on stderr; a second copy on stdout would only repeat it in a terminal


class JsonWriter(Writer):
    """JSON Lines: one object per image, exactly :func:`prediction_json` (or an error entry)."""

    def prediction(self, pred: Prediction) -> None:
        print(json.dumps(prediction_json(pred, self.model_name)), file=self.out)

    def error(self, source: str, reason: str) -> None:
        print(json.dumps(error_json(source, reason, self.model_name)), file=self.out)


CSV_FIELDS = ["source", "face", "x", "y", "w", "h", "label", "score", "uncertain", *CLASSES,
              *LANDMARK_COLUMNS, "detection_score", "note", "error"]
CSV_DECIMALS = {"score": 6, **dict.fromkeys(CLASSES, 6), **LANDMARK_DECIMALS}


def face_rows(pred: Prediction) -> list[dict[str, Any]]:
    """One image's rows of :data:`CSV_FIELDS` with numbers as numbers (None where absent): one
    per face, or one with the note when there is none. The CSV formats them; ``ferkit batch``
    keeps them as they are."""
    if not pred.faces:
        return [{"source": pred.source, "note": pred.note}]
    return [{"source": pred.source, "face": i, **(face.box.rect() if face.box else {}), "label": face.label,
             "score": face.score, "uncertain": int(face.uncertain), **face.probabilities,
             **landmark_values(face.box), "note": pred.note}
            for i, face in enumerate(pred.faces, 1)]


def error_row(source: str, reason: str) -> dict[str, Any]:
    """The row of an input that could not be read."""
    return {"source": source, "error": reason}


class CsvWriter(Writer):
    """One row per face (landmark columns empty where the detector gives none); an image without
    faces or that failed gets one row saying why."""

    def __init__(self, out: TextIO, model_name: str) -> None:
        super().__init__(out, model_name)
        self._csv = csv.DictWriter(out, CSV_FIELDS)
        self._csv.writeheader()

    def prediction(self, pred: Prediction) -> None:
        for row in face_rows(pred):
            self._csv.writerow(format_cells(row, CSV_DECIMALS))

    def error(self, source: str, reason: str) -> None:
        self._csv.writerow(error_row(source, reason))


def _chunks(items: list[Input], size: int) -> Iterator[list[Input]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


Loaded = tuple["FoundFaces", "np.ndarray | None"]


def _load(item: Input, recognizer: Recognizer, detect: bool, keep: bool) -> Loaded | str:
    """The image's faces (and the decoded picture if ``keep``), or why it failed (never raises)."""
    if item.error:
        return item.error
    try:
        rgb = load_image(item.path)
        return recognizer.find_faces(rgb, detect=detect), (rgb if keep else None)
    except ImageError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must cost one file, not the whole run
        return f"unexpected error while decoding: {type(exc).__name__}: {exc}"


def annotated_path(out_dir: Path, source: str, taken: set[Path]) -> Path:
    """``OUTDIR/<stem>.annotated.png``, numbered when two inputs share a stem."""
    stem = Path(source).stem or "image"
    path, n = out_dir / f"{stem}.annotated.png", 2
    while path in taken:
        path, n = out_dir / f"{stem}-{n}.annotated.png", n + 1
    taken.add(path)
    return path


def predict_paths(
    items: list[str],
    recognizer: Recognizer,
    fmt: str = "table",
    annotate_dir: str | Path | None = None,
    detect: bool = True,
    out: TextIO | None = None,
    err: TextIO | None = None,
    explain: bool = False,
) -> int:
    """Predict every input and write the results; returns the exit status (1 if any failed).

    ``explain``: every face gets its occlusion map (in the JSON, and drawn on annotated copies)."""
    from ferkit.inference.annotate import save_annotated

    out, err = out or sys.stdout, err or sys.stderr
    inputs = expand_inputs(items, err)
    writer = _make_writer(fmt, out, recognizer.model_name, max((len(i.path) for i in inputs), default=0))
    failed, taken = 0, set()
    annotate = annotate_dir is not None
    for chunk in _chunks(inputs, CHUNK_ANNOTATE if annotate else CHUNK):
        loaded = [_load(item, recognizer, detect, keep=annotate) for item in chunk]
        preds = iter(recognizer.classify_found([done[0] for done in loaded if not isinstance(done, str)],
                                               explain))
        for item, done in zip(chunk, loaded, strict=True):
            if isinstance(done, str):
                failed += 1
                print(f"ferkit: {item.path}: {done}", file=err)
                writer.error(item.path, done)
                continue
            pred = next(preds)
            pred.source = item.path
            writer.prediction(pred)
            if annotate:
                save_annotated(done[1], pred, annotated_path(Path(annotate_dir), item.path, taken))
    writer.close()
    return 1 if failed else 0


def explain_paths(items: list[str], recognizer: Recognizer, out_dir: str | Path, detect: bool = True,
                  out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``ferkit explain``: per face, its crop, its occlusion map and the two blended (PNG, 4x
    the crop's size), and per image a copy with the maps drawn on the faces; a line per file."""
    from ferkit.inference.annotate import save_annotated, save_rgb
    from ferkit.inference.explain import colorize, overlay_on_face

    out, err = out or sys.stdout, err or sys.stderr
    out_dir = Path(out_dir)
    failed, taken = 0, set()
    for item in expand_inputs(items, err):
        done = _load(item, recognizer, detect, keep=True)
        if isinstance(done, str):
            failed += 1
            print(f"ferkit: {item.path}: {done}", file=err)
            continue
        found, rgb = done
        pred = recognizer.classify_found([found], explain=True)[0]
        photo = save_annotated(rgb, pred, annotated_path(out_dir, item.path, taken))
        print(f"{item.path}: {len(pred.faces)} face(s) -> {photo}", file=out)
        for i, (face, crop) in enumerate(zip(pred.faces, found.crops, strict=True), 1):
            assert face.explanation is not None
            heat = face.explanation.heatmap
            stem = photo.name.removesuffix(".annotated.png")
            size = 4 * FACE_SIZE
            files = {kind: out_dir / f"{stem}.face{i}.{kind}.png" for kind in ("crop", "heatmap", "overlay")}
            big = resize(crop, (size, size), "cubic")
            save_rgb(np.repeat(big[:, :, None], 3, axis=2), files["crop"])
            heat_big = resize(heat, (size, size), "linear")
            save_rgb(colorize(heat_big), files["heatmap"])
            save_rgb(overlay_on_face(crop, heat, size), files["overlay"])
            flag = " (uncertain)" if face.uncertain else ""
            print(f"  face {i}: {face.label} {face.score:.3f}{flag}; most relied on: {relied_on(heat)}; "
                  f"{files['overlay']}", file=out)
    return 1 if failed else 0


def relied_on(heatmap: np.ndarray) -> str:
    """Which third of the aligned face the map is strongest in: eyes and brows, nose, or mouth
    (FER2013's framing puts the eyes near row 18 and the mouth near row 35 of 48)."""
    rows = heatmap.mean(axis=1)
    parts = {"eyes and brows": rows[:24].mean(), "nose and cheeks": rows[24:30].mean(),
             "mouth and chin": rows[30:].mean()}
    return max(parts, key=parts.__getitem__)


def _make_writer(fmt: str, out: TextIO, model_name: str, path_width: int) -> Writer:
    if fmt == "json":
        return JsonWriter(out, model_name)
    if fmt == "csv":
        return CsvWriter(out, model_name)
    return TableWriter(out, model_name, path_width)
