"""``ferkit video``: emotions of every tracked face over a video file or a camera stream.

Per analysed frame: detection (YuNet by default, on a copy shrunk to at most
:data:`DETECT_SIDE` pixels, the main cost), crops from the full-resolution gray frame (aligned on
the landmarks), one batched forward pass for all faces, then the tracker gives each face a stable
id. Outputs: a CSV row per face per analysed frame (with its landmarks), an annotated video, and
an emotion-over-time plot.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from ferkit.errors import FerkitError
from ferkit.face import CLASSES
from ferkit.inference.annotate import draw_faces
from ferkit.inference.media import VideoReader, VideoWriter
from ferkit.inference.tracking import IouTracker
from ferkit.inference.types import (
    LANDMARK_COLUMNS,
    LANDMARK_DECIMALS,
    Face,
    face_from_probs,
    format_cells,
    landmark_values,
)

if TYPE_CHECKING:
    from ferkit.inference.recognizer import Recognizer

CSV_FIELDS = ["frame", "time_s", "face_id", "x", "y", "w", "h", "label", "score", "uncertain", *CLASSES,
              *LANDMARK_COLUMNS, "detection_score"]
CSV_DECIMALS = {"time_s": 3, "score": 5, **dict.fromkeys(CLASSES, 5), **LANDMARK_DECIMALS}
# Detection runs on frames shrunk to at most this side; it bounds the cost of HD video (YuNet's
# own input side, 320, is below it; HaarDetector shrinks 640x480 frames to 320x240 anyway).
DETECT_SIDE = 640


@dataclass
class FaceRecord:
    """One face in one analysed frame (a CSV row)."""

    frame: int
    time_s: float
    face_id: int
    face: Face


@dataclass
class VideoSummary:
    frames: int = 0
    analysed: int = 0
    faces: int = 0
    track_ids: set[int] = field(default_factory=set)
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (f"{self.frames} frames ({self.analysed} analysed), {self.faces} face detections, "
                f"{len(self.track_ids)} tracked face(s), {self.fps:.1f} frames/s")


def open_capture(source: str | Path | int) -> VideoReader:
    """A reader for a file path (PyAV) or a camera index (OpenCV), or a clear one-line error."""
    return VideoReader(source)


class VideoAnalyzer:
    """Frame-by-frame recognition with tracking; feed frames in order with :meth:`analyse`."""

    def __init__(self, recognizer: Recognizer, every: int = 1) -> None:
        if every < 1:
            raise FerkitError("--every must be at least 1")
        self.recognizer = recognizer
        self.every = every
        self.tracker = make_tracker(every)
        self._last: tuple[list[Face], list[int]] = ([], [])

    def analyse(self, index: int, rgb: np.ndarray) -> tuple[list[Face], list[int], bool]:
        """(faces, their ids, whether this frame was analysed); skipped frames repeat the last."""
        if index % self.every:
            return (*self._last, False)
        faces = frame_faces(self.recognizer, rgb)
        ids = self.tracker.update([f.box for f in faces])
        self._last = (faces, ids)
        return faces, ids, True


def make_tracker(every: int) -> IouTracker:
    """The tracker for a video analysed every ``every`` frames (a face may go unseen for about
    half a second of video, at least two analysed frames, before it loses its id)."""
    return IouTracker(max_missed=max(2, 15 // every))


def frame_faces(recognizer: Recognizer, rgb: np.ndarray) -> list[Face]:
    """The faces of one RGB frame, classified in one forward pass, in the detector's order (the
    order the tracker reads them in). ``ferkit batch video`` calls it on its frame ranges."""
    boxes, crops = recognizer.locate(rgb)
    probs = recognizer.classify(crops) if len(boxes) else np.empty((0, len(CLASSES)))
    return [face_from_probs(p.tolist(), b, recognizer.uncertain_below)
            for p, b in zip(probs, boxes, strict=True)]


def analyse_video(
    source: str | Path | int,
    recognizer: Recognizer,
    out: str | Path | None = None,
    csv_path: str | Path | None = None,
    plot: str | Path | None = None,
    every: int = 1,
    progress: bool = True,
) -> VideoSummary:
    """Run a video (or camera: an int) through ``recognizer`` and write the requested outputs."""
    from tqdm import tqdm

    analyzer = VideoAnalyzer(recognizer, every)  # validates `every` before the capture opens
    cap = open_capture(source)
    camera = cap.camera
    fps = cap.fps
    total = cap.frames
    records: list[FaceRecord] = []
    summary = VideoSummary()
    writer: VideoWriter | LiveVideoWriter | None = None
    rows = csv_file = None
    start = time.perf_counter()
    try:
        rows, csv_file = _open_csv(csv_path)
        bar = tqdm(total=total or None, unit="frame", disable=not progress, desc="video")
        for index, frame in enumerate(cap):
            t = time.perf_counter() - start if camera else index / fps
            faces, ids, analysed = analyzer.analyse(index, frame)
            if analysed:
                summary.analysed += 1
                new = [FaceRecord(index, t, i, f) for i, f in zip(ids, faces, strict=True)]
                records.extend(new)
                _write_rows(rows, new)
            if out is not None:
                annotated = draw_faces(frame, faces, ids)
                if camera:
                    writer = writer or LiveVideoWriter(out, fps)
                    writer.write(annotated, t)
                else:
                    writer = writer or _open_writer(out, fps, frame.shape)
                    writer.write(annotated)
            summary.frames += 1
            bar.update()
        bar.close()
    except KeyboardInterrupt:
        pass  # a camera runs until Ctrl-C: keep what was recorded
    finally:
        summary.seconds = time.perf_counter() - start
        cap.close()
        try:
            if writer is not None:
                writer.release()
        finally:  # the CSV is closed even if the video file could not be written
            if csv_file is not None:
                csv_file.close()
    summary.faces = len(records)
    summary.track_ids = {r.face_id for r in records}
    if summary.frames == 0:
        raise FerkitError(f"{source}: no frame could be read")
    if plot is not None:  # a camera's rate is the one measured, not the nominal one
        plot_emotions(records, plot, (summary.fps if camera else fps) / every)
    return summary


def _open_csv(path: str | Path | None):
    if path is None:
        return None, None
    f = open(path, "w", newline="")  # closed by the caller's finally
    rows = csv.DictWriter(f, CSV_FIELDS)
    rows.writeheader()
    return rows, f


def record_row(r: FaceRecord) -> dict[str, Any]:
    """A face record as a row of :data:`CSV_FIELDS`, numbers as numbers (the CSV formats them;
    ``ferkit batch video`` keeps them as they are)."""
    b = r.face.box
    assert b is not None
    return {"frame": r.frame, "time_s": r.time_s, "face_id": r.face_id, **b.rect(), "label": r.face.label,
            "score": r.face.score, "uncertain": int(r.face.uncertain), **r.face.probabilities,
            **landmark_values(b)}


def _write_rows(rows: csv.DictWriter | None, records: list[FaceRecord]) -> None:
    if rows is None:
        return
    for r in records:
        rows.writerow(format_cells(record_row(r), CSV_DECIMALS))


class LiveVideoWriter:
    """An annotated-video writer for a camera, whose file plays at the rate frames really came.

    A camera's nominal rate (often 30) is not what the detect-and-classify loop delivers, so
    the first ``warmup_s`` seconds of frames are held back, their rate measured, and the file
    opened at that rate; a recording shorter than that uses what it has.
    """

    def __init__(self, path: str | Path, nominal_fps: float, warmup_s: float = 2.0) -> None:
        self.path, self.nominal_fps, self.warmup_s = path, nominal_fps, warmup_s
        self.held: list[np.ndarray] = []
        self.times: list[float] = []
        self.writer: VideoWriter | None = None

    @property
    def fps(self) -> float:
        """Frames per second measured over the held frames (the nominal rate until two came)."""
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return self.nominal_fps
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])

    def write(self, frame: np.ndarray, t: float) -> None:
        if self.writer is not None:
            self.writer.write(frame)
            return
        self.held.append(frame)
        self.times.append(t)
        if t - self.times[0] >= self.warmup_s:
            self._flush()

    def _flush(self) -> None:
        held, self.held = self.held, []  # a writer that cannot open fails once, not again at release
        self.writer = _open_writer(self.path, self.fps, held[0].shape)
        for frame in held:
            self.writer.write(frame)

    def release(self) -> None:
        if self.writer is None and self.held:
            self._flush()
        if self.writer is not None:
            self.writer.release()


def _open_writer(path: str | Path, fps: float, shape: tuple[int, ...]) -> VideoWriter:
    h, w = shape[:2]
    return VideoWriter(path, fps, (w, h))


# The emotion plot, drawn with Pillow (no plotting library): sizes in pixels.
PLOT_WIDTH, PANEL_HEIGHT, PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 1000, 220, 110, 20, 44, 46
INK, GRID = (40, 40, 40), (225, 225, 225)
SMALL, LABEL = 12, 14  # font sizes, pixels


def plot_emotions(records: list[FaceRecord], path: str | Path, rate: float, max_faces: int = 4) -> Path:
    """One panel per tracked face (the ``max_faces`` seen longest): each class's probability over
    time, smoothed over about half a second so that the trend, not frame noise, shows (PNG). A
    face seen in one analysed frame only gets a dot per class."""
    from ferkit.inference.annotate import CLASS_COLORS, font

    by_id: dict[int, list[FaceRecord]] = {}
    for r in records:
        by_id.setdefault(r.face_id, []).append(r)
    ids = sorted(by_id, key=lambda i: -len(by_id[i]))[:max_faces] or [0]
    times = [r.time_s for r in records] or [0.0]
    t0, t1 = min(times), max(max(times), min(times) + 1e-6)
    height = PLOT_TOP + PANEL_HEIGHT * len(ids) + PLOT_BOTTOM
    img = Image.new("RGB", (PLOT_WIDTH, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    x0, x1 = PLOT_LEFT, PLOT_WIDTH - PLOT_RIGHT

    def x_of(t: float) -> int:
        return round(x0 + (t - t0) / (t1 - t0) * (x1 - x0))

    _plot_legend(draw, CLASS_COLORS)
    window = max(1, round(rate / 2))
    for k, face_id in enumerate(ids):
        top = PLOT_TOP + k * PANEL_HEIGHT + 8
        bottom = top + PANEL_HEIGHT - 24
        track = by_id.get(face_id, [])
        for v in (0.0, 0.5, 1.0):
            y = round(bottom - v * (bottom - top))
            draw.line((x0, y, x1, y), fill=GRID, width=1)
            draw.text((x0 - 28, y - SMALL // 2 - 1), f"{v:g}", fill=INK, font=font(SMALL))
        draw.text((6, (top + bottom) // 2 - LABEL // 2), f"face #{face_id}" if track else "no face found",
                  fill=INK, font=font(LABEL))
        for c in CLASSES:
            values = _moving_average([r.face.probabilities[c] for r in track], window)
            points = [(x_of(r.time_s), round(bottom - v * (bottom - top)))
                      for r, v in zip(track, values, strict=True)]
            if len(points) >= 2:
                draw.line(points, fill=CLASS_COLORS[c], width=2, joint="curve")
            elif len(points) == 1:  # one point draws no line: a dot instead
                (px, py), = points
                draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=CLASS_COLORS[c])
        draw.rectangle((x0, top, x1, bottom), outline=INK, width=1)
    _plot_time_axis(draw, t0, t1, x_of, height - PLOT_BOTTOM + 4)
    try:
        img.save(path, format="PNG")
    except (OSError, ValueError):
        raise FerkitError(f"{path}: cannot write the plot (use a .png name in a writable folder)") from None
    return Path(path)


def _plot_legend(draw: ImageDraw.ImageDraw, colors: dict[str, tuple[int, int, int]]) -> None:
    """The seven classes in a row across the top: a short line in each class's colour, its name."""
    from ferkit.inference.annotate import font

    step = (PLOT_WIDTH - PLOT_LEFT - PLOT_RIGHT) // len(CLASSES)
    for i, c in enumerate(CLASSES):
        x = PLOT_LEFT + i * step
        draw.line((x, 22, x + 24, 22), fill=colors[c], width=3)
        draw.text((x + 30, 22 - LABEL // 2 - 1), c, fill=INK, font=font(LABEL))


def _plot_time_axis(
    draw: ImageDraw.ImageDraw, t0: float, t1: float, x_of: Callable[[float], int], y: int
) -> None:
    """Ticks at a round step (about eight of them) and the axis label, below the last panel."""
    from ferkit.inference.annotate import font

    raw = (t1 - t0) / 8
    magnitude = 10 ** np.floor(np.log10(raw)) if raw > 0 else 1.0
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    t = np.ceil(t0 / step) * step
    while t <= t1 + 1e-9:
        x = x_of(t)
        draw.line((x, y - 6, x, y), fill=INK, width=1)
        draw.text((x - 10, y + 4), f"{t:g}", fill=INK, font=font(SMALL))
        t += step
    draw.text(((PLOT_LEFT + PLOT_WIDTH) // 2 - 30, y + 22), "time (s)", fill=INK, font=font(LABEL))


def _moving_average(values: list[float], window: int) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if window <= 1 or len(arr) < window:
        return arr
    kernel = np.ones(window) / window
    padded = np.pad(arr, (window // 2, window - 1 - window // 2), mode="edge")
    return np.convolve(padded, kernel, mode="valid")
