"""Videos on Ray Data, split into frame ranges so that one long video spreads over the workers.

Three stages:

1. The driver reads each video's header (frame count, frame rate) and cuts it into ranges of
   ``frames_per_range`` frames, one Ray block each; the last range reads until the stream ends
   (headers can undercount). A video that cannot be opened is one error row.
2. The analysis stage, one actor per worker with one Recognizer: each range is opened, sought to
   its first frame and read to its last; every analysed frame goes through
   :func:`ferkit.inference.video.frame_faces`, the function ``ferkit video`` runs per frame. The
   rows carry the face's place in its frame, and each range adds a row saying how many frames
   it read.
3. Face ids: a per-video stage (``groupby(source).map_groups``) replays ``ferkit video``'s
   tracker over the boxes in frame order, every analysed frame, including those without faces.
   Detection and classification, nearly all of the cost, run in parallel; the tracker only
   compares boxes, so the ids are those of one pass over the whole video, whatever the split,
   by construction. Reading stops where a range came short (the stream ended or broke there),
   as ``ferkit video``'s reading does.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray
import ray.data

from ferkit.batch.engine import model_for_workers, pool, schema, setup_worker, to_table, worker_count
from ferkit.errors import FerkitError
from ferkit.face import Box
from ferkit.inference.detect import make_detector
from ferkit.inference.video import (
    CSV_FIELDS,
    DETECT_SIDE,
    FaceRecord,
    frame_faces,
    make_tracker,
    open_capture,
    record_row,
)
from ferkit.runtime.loader import runnable
from ferkit.runtime.prior import parse_prior

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv"})
FRAMES_PER_RANGE = 600  # 20 s of 30 fps video: a few seconds of work, against one seek
ROW_COLUMNS = ["source", *CSV_FIELDS, "error"]
ROW_SCHEMA = schema(ROW_COLUMNS)
RANGE_SCHEMA = schema([*ROW_COLUMNS, "face_k", "range_start", "range_end", "range_read"])
OPEN_END = -1  # a range that reads until the stream ends


def video_dataset(
    paths: str | Sequence[str],
    *,
    model: str | os.PathLike = "default",
    detector: str = "yunet",
    every: int = 1,
    frames_per_range: int = FRAMES_PER_RANGE,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    prior: str = "auto",
) -> ray.data.Dataset:
    """A lazy Dataset of ``ferkit video --csv`` rows, each with its video's ``source`` (and an
    ``error`` column for videos that cannot be read), for video files, folders and globs."""
    if every < 1:
        raise FerkitError("--every must be at least 1")
    if frames_per_range < 1:
        raise FerkitError("--frames-per-range must be at least 1")
    runnable(model, "onnx")
    parse_prior(prior)
    make_detector(detector)
    ranges = [r for source, error in expand_videos([paths] if isinstance(paths, str) else paths)
              for r in plan_ranges(source, error, frames_per_range)]
    if not ranges:
        raise FerkitError("no inputs given")
    n = worker_count(workers, cpus_per_worker)
    ds = ray.data.from_items(ranges, override_num_blocks=max(1, len(ranges)))
    ds = ds.map_batches(
        RangeAnalyser, batch_format="pyarrow", batch_size=1, compute=pool(min(n, len(ranges))),
        num_cpus=cpus_per_worker,
        fn_constructor_kwargs={"model": model_for_workers(model), "detector": detector, "every": every,
                               "cpus": cpus_per_worker, "prior": prior})
    ds.context.shuffle_strategy = "sort_shuffle_pull_based"  # tasks: no shuffle actors holding CPUs
    return ds.groupby("source").map_groups(stitch_video, batch_format="pyarrow", fn_kwargs={"every": every})


def expand_videos(items: Iterable[str]) -> list[tuple[str, str]]:
    """(path, "" or why it cannot be read): files as given, folders' videos (recursive, sorted,
    by suffix), glob patterns expanded; no repeats."""
    out: list[tuple[str, str]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(str(p) for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
            out += [(f, "") for f in found] or [(item, "folder holds no videos")]
        elif path.exists():
            out.append((item, ""))
        elif glob.has_magic(item):
            found = sorted(m for m in glob.glob(item, recursive=True) if Path(m).is_file())
            out += [(f, "") for f in found] or [(item, "no file matches this pattern")]
        else:
            out.append((item, "no such file"))
    seen: set[str] = set()
    return [v for v in out if not (v[0] in seen or seen.add(v[0]))]


def plan_ranges(source: str, error: str, frames_per_range: int) -> list[dict[str, Any]]:
    """The frame ranges of one video (its header read here), or one item with its error."""
    item: dict[str, Any] = {"source": source, "path": os.path.abspath(source), "fps": 30.0,
                            "start": 0, "end": OPEN_END, "error": error or None}
    if error:
        return [item]
    try:
        with open_capture(source) as cap:
            fps, frames = cap.fps, cap.frames
    except FerkitError as exc:
        return [{**item, "error": str(exc).removeprefix(f"{source}: ")}]
    starts = list(range(0, max(frames, 1), frames_per_range))
    ends = starts[1:] + [OPEN_END]
    return [{**item, "fps": fps, "start": s, "end": e} for s, e in zip(starts, ends, strict=True)]


class RangeAnalyser:
    """The analysis stage: one per worker actor, one Recognizer (with ``ferkit video``'s detector
    settings) loaded once; one frame range per call."""

    def __init__(self, model: str, detector: str, every: int, cpus: float, prior: str = "auto") -> None:
        from ferkit.inference.recognizer import Recognizer

        threads = setup_worker(cpus)
        self.every = every
        self.recognizer = Recognizer(model, detector=make_detector(detector, max_side=DETECT_SIDE),
                                     threads=threads, prior=prior)

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows: list[dict[str, Any]] = []
        for item in batch.to_pylist():
            rows += self.analyse_range(item)
        return to_table(rows, RANGE_SCHEMA)

    def analyse_range(self, item: dict[str, Any]) -> list[dict[str, Any]]:
        """The faces of the range's analysed frames, then the row that says how far it read."""
        if item["error"]:
            return [{"source": item["source"], "error": item["error"]}]
        start, end = item["start"], item["end"]
        try:
            cap = open_capture(item["path"])
        except FerkitError as exc:  # gone or changed since the driver read its header
            return [{"source": item["source"], "error": str(exc).removeprefix(f"{item['path']}: ")}]
        rows: list[dict[str, Any]] = []
        index = start
        try:  # a seek to the range's first frame (or decoding up to it), then frame by frame
            for index, frame in cap.iter_frames(start, want=lambda i: i % self.every == 0):
                if end != OPEN_END and index >= end:
                    break
                if frame is not None:
                    rows += self._face_rows(item, index, frame)
                index += 1
        finally:
            cap.close()
        return rows + [{"source": item["source"], "range_start": start, "range_end": end,
                        "range_read": index - start}]

    def _face_rows(self, item: dict[str, Any], index: int, frame: np.ndarray) -> list[dict[str, Any]]:
        faces = frame_faces(self.recognizer, frame)
        return [{**record_row(FaceRecord(index, index / item["fps"], 0, face)), "face_id": None,
                 "source": item["source"], "face_k": k, "range_start": item["start"]}
                for k, face in enumerate(faces)]


def stitch_video(group: pa.Table, every: int) -> pa.Table:
    """One video's rows with ``ferkit video``'s face ids: its tracker replayed over the boxes of
    every analysed frame, in order, up to where reading stopped."""
    rows = group.to_pylist()
    source = rows[0]["source"]
    failed = next((r["error"] for r in rows if r["error"]), None)
    if failed:
        return to_table([{"source": source, "error": failed}], ROW_SCHEMA)
    stop = frames_read([r for r in rows if r["frame"] is None])
    if stop == 0:
        return to_table([{"source": source, "error": "no frame could be read"}], ROW_SCHEMA)
    by_frame: dict[int, list[dict[str, Any]]] = {}
    for r in sorted((r for r in rows if r["frame"] is not None), key=lambda r: (r["frame"], r["face_k"])):
        by_frame.setdefault(r["frame"], []).append(r)
    tracker, out = make_tracker(every), []
    for index in range(0, stop, every):
        faces = by_frame.get(index, [])
        ids = tracker.update([Box(r["x"], r["y"], r["w"], r["h"]) for r in faces])
        out += [{**r, "face_id": face_id} for r, face_id in zip(faces, ids, strict=True)]
    return to_table(out, ROW_SCHEMA)


def frames_read(ranges: list[dict[str, Any]]) -> int:
    """How many frames a single pass would have read: ranges in order, up to the first gap or
    the first range that ended before its planned end."""
    stop = 0
    for r in sorted(ranges, key=lambda r: r["range_start"]):
        if r["range_start"] != stop:
            break
        stop += r["range_read"]
        if r["range_end"] == OPEN_END or stop < r["range_end"]:
            break
    return stop
