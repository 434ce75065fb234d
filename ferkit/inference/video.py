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
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from ferkit.errors import FerkitError
from ferkit.face import CLASSES, Box
from ferkit.imageops import invert_affine
from ferkit.inference.annotate import draw_faces
from ferkit.inference.crop import alignment_matrix, crop_faces, square_around
from ferkit.inference.detect import FaceDetector, YuNetDetector, to_gray
from ferkit.inference.media import READ_AHEAD, VideoReader, VideoWriter, map_ahead, read_ahead
from ferkit.inference.tracking import IouTracker, iou, shifted
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
# Between full detections (--detect-every N), each tracked face is detected again in a window
# around where its track puts it: its box grown by ROI_MARGIN of its longer side on every side
# (a window twice the box), at the full detection's scale. The box found there must overlap that
# guess by ROI_MIN_IOU, else (the face left its window, turned away, or the scene cut) the frame
# goes through the full detector instead. So can a frame with a face whose two top probabilities
# are within ROI_MIN_MARGIN: the window's box differs from the full detector's by about a pixel
# (the network sees zeros beyond the window), and labels are fragile (detecting every frame, a
# tracked face's label changes from one frame to the next about 15% of the time on web photos);
# nine in ten of the labels the windows changed had a margin under 0.1 (WIDER-val200 montage).
# The margin shipped is the smallest of those benchmarks/inference.py tries that keeps 97% of the
# labels detecting every frame gives, at --detect-every 5 on a WIDER-val200 montage
# (results/inference_video.md): 0, the windows alone, once failures bring on BUSY_FRAMES.
ROI_MARGIN = 0.5
ROI_MIN_IOU = 0.5
ROI_MIN_MARGIN = 0.0
# A frame whose windows failed makes the frames from PLAN_LAG after it full detection frames for
# BUSY_FRAMES x detect_every frames (VideoAnalyzer.due): where windows keep failing (many faces,
# cuts), full detections run ahead on the detector threads rather than one after a failed window.
# On the WIDER montage at --detect-every 5, 4 kept 98.99% of labels (margin 0.02) against 98.23%
# for 2, at the same frames/s. PLAN_LAG is how far ahead of the analysis map_ahead takes frames in.
PLAN_LAG = READ_AHEAD + 1
BUSY_FRAMES = 4
# Threads running the full detector ahead of the analysis (map_ahead): with one, detection (about
# 5 ms a frame) bounded 640x480 video detected every frame at about 185 frames/s on two cores.
DETECT_THREADS = 2


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
    detections: int = 0  # analysed frames that ran the detector (all of them unless detect_every > 1)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        detected = f", {self.detections} through the detector" if self.detections < self.analysed else ""
        return (f"{self.frames} frames ({self.analysed} analysed{detected}), {self.faces} face detections, "
                f"{len(self.track_ids)} tracked face(s), {self.fps:.1f} frames/s")


def open_capture(source: str | Path | int) -> VideoReader:
    """A reader for a file path (PyAV) or a camera index (OpenCV), or a clear one-line error."""
    return VideoReader(source)


class VideoAnalyzer:
    """Frame-by-frame recognition with tracking; feed frames in order with :meth:`analyse`.

    ``every``: analyse every N-th frame (the others repeat the last result). ``detect_every``:
    run the full detector on every N-th analysed frame only; in between, each tracked face is
    detected again in a small window around where its track puts it (:meth:`_follow`), a
    fraction of the full detection's cost, the main one per frame. A face not found again in its
    window (:data:`ROI_MIN_IOU`: it moved off its track, turned away, or the scene cut), or with
    a label the classifier is unsure of (:data:`ROI_MIN_MARGIN`, off by default), makes that
    frame a full detection frame, and the frames soon after it too (:meth:`due`). A face entering
    the picture waits for the next full detection, at most ``detect_every - 1`` analysed frames.
    ``roi_*``: the :data:`ROI_MARGIN`, :data:`ROI_MIN_IOU` and :data:`ROI_MIN_MARGIN` to use
    (benchmarks try others).
    """

    def __init__(self, recognizer: Recognizer, every: int = 1, detect_every: int = 1,
                 roi_margin: float = ROI_MARGIN, roi_min_iou: float = ROI_MIN_IOU,
                 roi_min_margin: float = ROI_MIN_MARGIN) -> None:
        for option, value in (("--every", every), ("--detect-every", detect_every)):
            if not isinstance(value, int) or value < 1:
                raise FerkitError(f"{option} must be a whole number of frames, at least 1, not {value!r}")
        self.recognizer = recognizer
        self.every = every
        self.detect_every = detect_every
        self.roi_margin = roi_margin
        self.roi_min_iou = roi_min_iou
        self.roi_min_margin = roi_min_margin
        self.tracker = make_tracker(every * detect_every)
        self._last: tuple[list[Face], list[int]] = ([], [])
        self.detections = 0  # frames run through the full detector (a measure of the savings)
        self._failed: deque[int] = deque()  # frames whose windows failed, for due()
        self._busy = BUSY_FRAMES * detect_every * every  # how long due() remembers them, frames

    def due(self, index: int) -> bool:
        """Whether frame ``index`` is analysed and goes through the full detector whatever the
        frames just before it show: every ``detect_every``-th analysed frame, and every analysed
        frame while a face needed the full detector between those lately (in the
        :data:`BUSY_FRAMES` x ``detect_every`` frames up to :data:`PLAN_LAG` frames back: a
        scene where windows keep failing is then detected frame by frame, on the detector
        threads, instead of window, failure and full detection one after the other).

        It reads only frames at least :data:`PLAN_LAG` before ``index``, so it is known that
        many frames ahead: :func:`analyse_video` asks it while the detector threads can still
        run those detections ahead, and gets the answer a frame-by-frame loop gets."""
        if index % self.every:
            return False
        if (index // self.every) % self.detect_every == 0:
            return True
        newest = index - PLAN_LAG
        return any(newest - self._busy < f <= newest for f in self._failed)

    def stage(self, item: tuple[int, np.ndarray, bool]) -> tuple[np.ndarray, list[Box] | None]:
        """(frame, the full detector's boxes if ``due``) for an (index, frame, due) triple: what
        the detector threads of :func:`analyse_video` hand on to :meth:`analyse`."""
        _, rgb, due = item
        return rgb, _detect_boxes(self.recognizer, rgb) if due else None

    def analyse(self, index: int, rgb: np.ndarray, located: list[Box] | None = None,
                ) -> tuple[list[Face], list[int], bool]:
        """(faces, their ids, whether this frame was analysed); skipped frames repeat the last.
        ``located``: the full detector's boxes for this frame, where :meth:`due` had them found
        ahead (:meth:`stage`)."""
        if index % self.every:
            return (*self._last, False)
        due = located is not None or self.due(index)
        followed = None if due else self._follow(index, rgb)
        if followed is None:  # a full detection frame: by the schedule, or a face was lost or unsure
            if not due:
                while self._failed and self._failed[0] <= index - PLAN_LAG - self._busy:
                    self._failed.popleft()  # no later due() reads it
                self._failed.append(index)
            boxes = located if located is not None else _detect_boxes(self.recognizer, rgb)
            self.detections += 1
            crops = crop_faces(gray_around(rgb, boxes), boxes)
            followed = boxes, classify_crops(self.recognizer, boxes, crops)
        boxes, faces = followed
        self._last = faces, self.tracker.update(boxes, index)
        return *self._last, True

    def _follow(self, index: int, rgb: np.ndarray) -> tuple[list[Box], list[Face]] | None:
        """Each tracked face detected again in a window around its track's guess for this frame
        and classified, or None where the frame needs the full detector: a face not found in its
        window, two tracks on one face, or a label the classifier is unsure of (its two top
        probabilities within ``roi_min_margin``: a box a pixel away from the full detector's may
        well change such a label, and the full detector's is the reference).

        Only the tracks the last frame matched are followed; a face whose track broke comes
        back at the next full detection, as a face entering the picture does."""
        detector = self.recognizer.detector
        if detector is None:
            return [], []
        h, w = rgb.shape[:2]
        boxes: list[Box] = []
        for _, guess in self.tracker.carried(index):
            found = window_boxes(detector, rgb, window_around(guess, self.roi_margin, w, h))
            best = max(found, key=lambda b: iou(b, guess), default=None)
            if best is None or iou(best, guess) < self.roi_min_iou or any(iou(best, b) >= 0.5 for b in boxes):
                return None
            boxes.append(best)
        faces = classify_crops(self.recognizer, boxes, crop_faces(gray_around(rgb, boxes), boxes))
        if any(top_margin(f) < self.roi_min_margin for f in faces):
            return None
        return boxes, faces


def top_margin(face: Face) -> float:
    """How far the face's label leads the runner-up: its two top probabilities' difference."""
    first, second = sorted(face.probabilities.values())[-2:][::-1]
    return first - second


def window_around(box: Box, margin: float, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): ``box`` grown by ``margin`` times its longer side on every side, clipped
    to the ``width`` x ``height`` frame."""
    grow = margin * max(box.w, box.h)
    return (max(0, int(box.x - grow)), max(0, int(box.y - grow)),
            min(width, int(np.ceil(box.x + box.w + grow))), min(height, int(np.ceil(box.y + box.h + grow))))


def window_boxes(detector: FaceDetector, rgb: np.ndarray, region: tuple[int, int, int, int]) -> list[Box]:
    """The faces ``detector`` finds inside ``region`` of the frame, in the frame's pixels: its
    own ``detect_region`` where it has one (YuNet: at the full detection's scale), else its
    ``detect`` on the cut-out region."""
    if isinstance(detector, YuNetDetector):
        return detector.detect_region(rgb, region)
    x0, y0, x1, y1 = region
    return [shifted(b, x0, y0) for b in detector.detect(rgb[y0:y1, x0:x1])]


def _detect_boxes(recognizer: Recognizer, rgb: np.ndarray) -> list[Box]:
    """The boxes :meth:`Recognizer.locate` finds (its crops then come from :func:`gray_around`,
    equal to its own)."""
    return recognizer.detector.detect(rgb) if recognizer.detector else []


def gray_around(rgb: np.ndarray, boxes: list[Box], margin: int = 4) -> np.ndarray:
    """The frame in gray where :func:`crop_faces` reads it for ``boxes``, zero elsewhere.

    A face takes a few thousand pixels of a 640x480 frame, and the full conversion cost as much
    as cropping and classifying the face together. Each face's region is the aligned crop's
    footprint (its 48x48 square, 2 crop pixels beyond, mapped back into the frame) together with
    the box's square (the crop without landmarks), ``margin`` pixels wider, clipped to the frame;
    crops from it equal crops from the whole gray frame (tests/test_video.py).
    """
    if rgb.ndim == 2:
        return rgb
    h, w = rgb.shape[:2]
    gray = np.zeros((h, w), np.uint8)
    for box in boxes:
        sx, sy, side = square_around(box)
        xs, ys = [sx, sx + side], [sy, sy + side]
        matrix = alignment_matrix(box.landmarks) if box.landmarks is not None else None
        if matrix is not None:
            corners = _FOOTPRINT @ invert_affine(matrix).T
            xs += [corners[:, 0].min(), corners[:, 0].max()]
            ys += [corners[:, 1].min(), corners[:, 1].max()]
        x0, y0 = max(0, int(np.floor(min(xs))) - margin), max(0, int(np.floor(min(ys))) - margin)
        x1, y1 = min(w, int(np.ceil(max(xs))) + margin + 1), min(h, int(np.ceil(max(ys))) + margin + 1)
        if x0 < x1 and y0 < y1:
            gray[y0:y1, x0:x1] = to_gray(rgb[y0:y1, x0:x1])
    return gray


_FOOTPRINT = np.array([[-2, -2, 1], [50, -2, 1], [-2, 50, 1], [50, 50, 1]], float)  # crop pixels


def make_tracker(every: int) -> IouTracker:
    """The tracker for a video detected every ``every`` frames (a face may go unseen for about
    half a second of video, at least two detections, before it loses its id)."""
    return IouTracker(max_missed=max(2, 15 // every))


def classify_crops(recognizer: Recognizer, boxes: list[Box], crops: np.ndarray) -> list[Face]:
    """The faces of ``boxes`` from their crops, all in one forward pass."""
    probs = recognizer.classify(crops) if len(boxes) else np.empty((0, len(CLASSES)))
    return [face_from_probs(p.tolist(), b, recognizer.uncertain_below)
            for p, b in zip(probs, boxes, strict=True)]


def frame_faces(recognizer: Recognizer, rgb: np.ndarray) -> list[Face]:
    """The faces of one RGB frame, classified in one forward pass, in the detector's order (the
    order the tracker reads them in). ``ferkit batch video`` calls it on its frame ranges."""
    return classify_crops(recognizer, *recognizer.locate(rgb))


def analyse_video(
    source: str | Path | int,
    recognizer: Recognizer,
    out: str | Path | None = None,
    csv_path: str | Path | None = None,
    plot: str | Path | None = None,
    every: int = 1,
    progress: bool = True,
    detect_every: int = 1,
) -> VideoSummary:
    """Run a video (or camera: an int) through ``recognizer`` and write the requested outputs.

    ``every`` and ``detect_every`` are :class:`VideoAnalyzer`'s. Frames are decoded by a thread a
    few frames ahead of the analysis (:func:`read_ahead`), and :data:`DETECT_THREADS` threads run
    the full detector ahead on the frames whose detection does not depend on the ones before
    (:func:`map_ahead`: all of them unless ``detect_every`` > 1), so that on two cores decoding,
    detection and cropping with classification overlap. Results are the same frame for frame."""
    from tqdm import tqdm

    analyzer = VideoAnalyzer(recognizer, every, detect_every)  # validated before the capture opens
    cap = open_capture(source)
    camera = cap.camera
    fps = cap.fps
    total = cap.frames
    records: list[FaceRecord] = []
    summary = VideoSummary()
    writer: VideoWriter | LiveVideoWriter | None = None
    rows = csv_file = None
    frames = read_ahead(cap)
    # due() is asked as map_ahead takes each frame in, PLAN_LAG frames after the last it reads
    planned = ((i, f, analyzer.due(i)) for i, f in enumerate(frames))
    staged = map_ahead(analyzer.stage, planned, DETECT_THREADS, depth=PLAN_LAG - 1)
    start = time.perf_counter()
    try:
        rows, csv_file = _open_csv(csv_path)
        bar = tqdm(total=total or None, unit="frame", disable=not progress, desc="video")
        for index, (frame, located) in enumerate(staged):
            t = time.perf_counter() - start if camera else index / fps
            faces, ids, analysed = analyzer.analyse(index, frame, located)
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
        staged.close()  # joins the threads, the reader's last, before the reader closes
        frames.close()
        cap.close()
        try:
            if writer is not None:
                writer.release()
        finally:  # the CSV is closed even if the video file could not be written
            if csv_file is not None:
                csv_file.close()
    summary.faces = len(records)
    summary.detections = analyzer.detections
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
