"""Video in and out through PyAV (FFmpeg's libraries, bundled in its wheel): no OpenCV needed.

Reading honours the rotation a phone stores in the file (the display matrix: a portrait clip
recorded as landscape frames comes out upright) and takes whatever FFmpeg demuxes (MP4, MOV,
MKV, WebM, AVI, MPEG-TS, animated GIF...). Frames come out as RGB uint8. A still image is refused
with a one-line error (``ferkit predict`` is for photos); FFmpeg's own log is silenced, so a bad
file gives ferkit's error and nothing else. Writing makes MPEG-4 Part 2 video (OpenCV's "mp4v",
which ferkit wrote before) in the container the file name says.

PyAV comes with the ``video`` extra (``pip install 'ferkit[video]'``: 104 MB installed, which
would put the photo-only runtime over its 250 MB budget). A camera (an int source) is read through
OpenCV where it is installed (``pip install 'ferkit[opencv]'``): PyAV opens cameras only through
platform-specific device names.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from ferkit.errors import FerkitError
from ferkit.imageio import IMAGE_SUFFIXES

OPENCV_EXTRA = "pip install 'ferkit[opencv]'"
VIDEO_EXTRA = "pip install 'ferkit[video]'"
# Demuxers that read single pictures (FFmpeg names the per-format ones *_pipe).
STILL_FORMATS = ("image2", "image2pipe")
# MPEG-4 Part 2 at about 0.2 bits per pixel: close to what OpenCV's "mp4v" writer gave.
BITS_PER_PIXEL = 0.2
# Frames decoded ahead of the analysis: enough to ride out a slow frame, few enough that 640x480
# RGB frames hold under 4 MB.
READ_AHEAD = 4
_POLL_S = 0.05  # how often a blocked producer checks whether the consumer has gone
_END = object()
T = TypeVar("T")
R = TypeVar("R")


def _av() -> Any:
    """PyAV with FFmpeg's log silenced (ferkit reports what went wrong itself), or a one-line
    error naming the extra."""
    try:
        import av
        import av.logging
    except ImportError:
        raise FerkitError(f"video files need PyAV, which is not installed: {VIDEO_EXTRA}") from None

    av.logging.set_level(None)
    return av


def _fraction(value: Any) -> Fraction | None:
    """A PyAV rate or time base (a Fraction up to PyAV 18, an AVRational from 19) as a Fraction;
    None when unset."""
    return Fraction(value.numerator, value.denominator) if value else None


def _rotated(rgb: np.ndarray, degrees: float) -> np.ndarray:
    """A decoded frame turned as its display matrix says (``degrees`` anticlockwise, FFmpeg's
    sign), so that it shows the way players show it."""
    quarter = round(degrees / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter)) if quarter else rgb


def read_ahead(items: Iterable[T], depth: int = READ_AHEAD) -> Iterator[T]:
    """``items`` as they come, produced by a thread up to ``depth`` ahead of the consumer.

    Decoding (FFmpeg releases the GIL) then runs on the second core while the caller detects and
    classifies. An exception in the producer is raised here, at the item where it happened. When
    the consumer stops early (break, an error, ``close()``), the thread is told to stop and joined
    before this generator returns, so the caller can close the reader safely afterwards.
    """
    slots: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, which raises it
            put((_END, exc))
        else:
            put((_END, None))

    thread = threading.Thread(target=produce, name="ferkit-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item, error = slots.get()
            if item is _END:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()


def map_ahead(fn: Callable[[T], R], items: Iterable[T], workers: int = 2, depth: int = READ_AHEAD,
              ) -> Iterator[R]:
    """``fn(item)`` for each of ``items``, in their order, computed by ``workers`` threads up to
    ``depth`` items ahead of the consumer.

    One thread running the detector ahead bounds a video at one detection per frame time (the
    largest stage, about 5 ms on one core); two of them on alternate frames take it off the
    critical path (onnxruntime releases the GIL; its session serves concurrent calls). Results
    come in the order of ``items``, so the output equals a sequential loop's; an exception in
    ``fn`` is raised here, at the item where it happened. ``items`` is iterated in the
    consumer's thread, item ``k + depth + 1`` only once the consumer has come back for the item
    after ``k`` (so a generator of items may read what the consumer made of items up to ``k``:
    :meth:`ferkit.inference.video.VideoAnalyzer.due`). When the consumer stops early, items not
    yet started are dropped and the running ones joined before this generator returns.
    """
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max(1, workers), thread_name_prefix="ferkit-map-ahead") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class VideoReader:
    """RGB frames of a video file (PyAV) or a camera (OpenCV); ``fps`` and ``frames`` (0: unknown)
    from the header. Use as a context manager or call :meth:`close`."""

    def __init__(self, source: str | Path | int) -> None:
        self.source = source
        self.camera = isinstance(source, int)
        self._container: Any = None
        self._capture: Any = None
        if isinstance(source, int):
            self._open_camera(source)
        else:
            self._open_file(Path(source))

    def _open_camera(self, index: int) -> None:
        try:
            import cv2
        except ImportError:
            raise FerkitError(f"reading camera {index} needs OpenCV, which is not installed: "
                              f"{OPENCV_EXTRA} (video files need no OpenCV)") from None
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            raise FerkitError(f"cannot open camera {index}: no such camera, or it is busy "
                              "or not permitted (check /dev/video*)")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 30.0)
        self.frames = 0

    def _open_file(self, path: Path) -> None:
        if not path.is_file():
            raise FerkitError(f"{path}: no such video file")
        av = _av()
        try:
            self._container = av.open(str(path), "r")
        except (av.FFmpegError, UnicodeDecodeError, ValueError):
            raise FerkitError(f"{path}: cannot decode this video (unknown or corrupt format)") from None
        name = self._container.format.name
        still = name in STILL_FORMATS or name.endswith("_pipe")
        if still or path.suffix.lower() in IMAGE_SUFFIXES - {".gif"}:
            self.close()
            raise FerkitError(f"{path}: a still image, not a video (use ferkit predict for photos)")
        if not self._container.streams.video:
            self.close()
            raise FerkitError(f"{path}: holds no video stream")
        self._stream = stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: decoding is the smaller cost here
        rate = _fraction(stream.average_rate) or _fraction(stream.guessed_rate) or _fraction(stream.base_rate)
        self.fps = float(rate) if rate else 30.0
        self.frames = int(stream.frames or 0)
        time_base = _fraction(stream.time_base)
        if not self.frames and stream.duration and time_base:
            self.frames = round(float(stream.duration * time_base) * self.fps)

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __iter__(self) -> Iterator[np.ndarray]:
        """Every frame, RGB, until the stream ends."""
        for _, rgb in self.iter_frames():
            assert rgb is not None
            yield rgb

    def iter_frames(
        self, start: int = 0, want: Callable[[int], bool] | None = None
    ) -> Iterator[tuple[int, np.ndarray | None]]:
        """(index, RGB frame) from frame ``start`` on; frames ``want(index)`` refuses come as
        (index, None), decoded but not converted (cheaper). A file whose data goes bad midway
        ends there, as a truncated download does."""
        if self._capture is not None:
            yield from self._camera_frames(want)
            return
        av = _av()
        frames = self._decoded(start)
        index = start
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                return
            except av.FFmpegError:
                return  # corrupt data: the frames so far are what the file holds
            if want is not None and not want(index):
                yield index, None
            else:
                yield index, _rotated(frame.to_ndarray(format="rgb24"), frame.rotation or 0)
            index += 1

    def _camera_frames(self, want: Callable[[int], bool] | None) -> Iterator[tuple[int, np.ndarray | None]]:
        index = 0
        while True:
            ok, bgr = self._capture.read()
            if not ok:
                return
            yield index, (bgr[:, :, ::-1].copy() if want is None or want(index) else None)
            index += 1

    def _decoded(self, start: int) -> Iterator[Any]:
        """Decoded frames from frame ``start``: a seek to the keyframe before it where the stream
        has timestamps at a constant rate, then decoding up to it; else from the beginning."""
        stream = self._stream
        time_base, rate = _fraction(stream.time_base), _fraction(stream.average_rate)
        if start > 0 and time_base and rate:
            first = stream.start_time or 0
            target = first + int(Fraction(start) / rate / time_base)
            try:
                self._container.seek(target, backward=True, any_frame=False, stream=stream)
                frames = self._container.decode(stream)
                head = next(frames)
            except (_av().FFmpegError, StopIteration):
                head = None
            if head is not None and head.pts is not None:
                at = round(float((head.pts - first) * time_base * rate))
                if at <= start:
                    return self._skip(head, frames, start - at)
            self._container.seek(0, backward=True, any_frame=False, stream=stream)
        frames = self._container.decode(stream)
        for _ in range(start):
            if next(frames, None) is None:
                break
        return frames

    @staticmethod
    def _skip(head: Any, frames: Iterator[Any], count: int) -> Iterator[Any]:
        """``head`` and ``frames`` after the first ``count`` of them."""
        if count == 0:
            yield head
        for i, frame in enumerate(frames, 1):
            if i >= count:
                yield frame


class VideoWriter:
    """RGB frames into a video file through PyAV: MPEG-4 Part 2 at ``fps``, frames of ``size``
    (width, height). The container comes from the suffix (.mp4, .mkv, .avi, .mov)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int]) -> None:
        av = _av()
        self.path = Path(path)
        w, h = size
        try:
            self._container = av.open(str(self.path), "w")
        except (av.FFmpegError, ValueError, OSError):
            raise FerkitError(f"{path}: cannot write video here (use an .mp4 name in a writable folder)"
                              ) from None
        try:
            rate = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(30)
            self._stream = self._container.add_stream("mpeg4", rate=rate)
            self._stream.width, self._stream.height = w, h
            self._stream.pix_fmt = "yuv420p"
            self._stream.bit_rate = max(400_000, int(w * h * float(rate) * BITS_PER_PIXEL))
        except (av.FFmpegError, ValueError):
            self._container.close()
            raise FerkitError(f"{path}: cannot write MPEG-4 video in this container (use an .mp4 name)"
                              ) from None

    def write(self, rgb: np.ndarray) -> None:
        av = _av()
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def release(self) -> None:
        """Flush the encoder and close the file."""
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
