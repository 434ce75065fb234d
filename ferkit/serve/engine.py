"""One Recognizer per server process, shared by the requests in flight without blocking the event loop.

A request's image goes through three stages (timed: the ``Server-Timing`` header):

1. *prepare*, in a worker thread: decode, detect, crop. Workers are sized to the cores
   (``threads``, default all of them): YuNet and the classifier run one onnxruntime thread per
   call, numpy and Pillow release the GIL in the heavy parts, so N workers keep N cores busy
   without oversubscribing them. Decoding is also bounded on its own: at most
   DECODE_CONCURRENCY at once, each refusing images over SERVE_MAX_PIXELS from the header and
   keeping at most a DECODE_MAX_SIDE copy (a 10 MB PNG can expand to gigabytes of pixels).
   Decoding a 640x480 JPEG at half size in the DCT, as YuNet sees it, cut this stage from 8.9 to
   5.7 ms but kept only 93.73% of labels on ExpW-dev: left out (benchmarks/results/serve_reduced_decode.md).
2. *classify*: the crops join the faces of other requests in flight in one forward pass
   (:mod:`ferkit.serve.batching`, on its own thread).
3. *post*, on the event loop (well under a millisecond): the request's own ``?prior=``, boxes back
   in the upload's pixels, the JSON.

``?explain=true`` (100 extra crops a face) classifies in its worker instead, at most
EXPLAIN_MAX_FACES faces a request.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import anyio
import numpy as np

from ferkit.cpu import available_cores
from ferkit.face import FACE_SIZE, NUM_CLASSES, Box
from ferkit.imageio import load_image_within
from ferkit.imageops import invert_affine, to_gray
from ferkit.inference.crop import alignment_matrix, crop_faces, resize_face, square_around
from ferkit.inference.types import Prediction, face_from_probs, prediction_json
from ferkit.runtime.loader import runnable
from ferkit.runtime.prior import parse_prior, prior_weights, shift
from ferkit.serve.batching import MicroBatcher

if TYPE_CHECKING:
    from ferkit.inference.recognizer import FoundFaces, Recognizer

# Images decoded at the same time per process: bounds peak memory from large photos.
DECODE_CONCURRENCY = 2
# Faces of one request that get an explanation (100 extra crops each): a photo of a crowd must
# not buy minutes of one worker's time with ?explain=true.
EXPLAIN_MAX_FACES = 16
# Largest image a request may declare (a 48-megapixel phone photo passes); bigger ones are 422.
SERVE_MAX_PIXELS = 50_000_000
# Longest side kept after decoding. The detector sees 320 px on the longest side and faces are
# cropped to 48x48, so any face it can find in the original (>= ~10 px at 320) still spans >= 64 px
# here: results match the full image, and an RGB copy stays under 13 MB.
DECODE_MAX_SIDE = 2048
# How long a thread may hold the GIL while another wants it (Python's default: 5 ms). The event
# loop takes the GIL for every read, parse and write; behind workers in numpy or PIL glue it
# waited up to that long each time. 5 ms against 0.5 ms in one run: 52.7 against 59.2 requests/s,
# /healthz p99 67 against 28 ms (benchmarks/results/serve_switch_interval/).
SWITCH_INTERVAL_S = 0.0005
# Stages in the order a request meets them (the Server-Timing header's metrics).
STAGES = ("queue", "decode", "detect", "crop", "batch_wait", "classify", "post", "serialise")


@dataclass
class Timings:
    """Where one request's time went on the server, in seconds (``queue``: waiting for a worker,
    ``batch_wait``: its crops waiting for the forward pass), and the pass it shared."""

    seconds: dict[str, float] = field(default_factory=dict)
    batch_faces: int = 0
    batch_requests: int = 0

    def header(self) -> str:
        """A ``Server-Timing`` value: milliseconds per stage, then the batch it shared."""
        parts = [f"{name};dur={self.seconds[name] * 1000:.2f}" for name in STAGES if name in self.seconds]
        parts.append(f'batch;desc="faces={self.batch_faces} requests={self.batch_requests}"')
        return ", ".join(parts)


@dataclass
class Upload:
    """One received image: its bytes, or the (temporary) file holding them, and the name the
    client gave it. A file is read only inside the decode slot, so waiting uploads hold no
    memory beyond their spool buffer."""

    data: bytes | IO[bytes]
    name: str = ""


@dataclass
class Prepared:
    """One image after the prepare stage: its faces' crops, and how to map boxes back."""

    found: FoundFaces
    scale: float
    size: tuple[int, int]


def crop_source(box: Box, width: int, height: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a rectangle of the image holding every pixel :func:`crop_faces` reads for
    ``box`` (with a few pixels to spare; reads past the edge repeat edge pixels, inside it)."""
    matrix = alignment_matrix(box.landmarks) if box.landmarks is not None else None
    if matrix is not None:
        corners = np.array([[-1, -1, 1], [FACE_SIZE, -1, 1], [-1, FACE_SIZE, 1], [FACE_SIZE, FACE_SIZE, 1]],
                           float) @ invert_affine(matrix).T
        (lx, ly), (hx, hy) = corners.min(axis=0), corners.max(axis=0)
        x0, y0, x1, y1 = math.floor(lx) - 4, math.floor(ly) - 4, math.ceil(hx) + 5, math.ceil(hy) + 5
    else:
        x, y, side = square_around(box)
        x0, y0, x1, y1 = x - 1, y - 1, x + side + 1, y + side + 1

    def clamp(v: int, n: int) -> int:
        return min(max(v, 0), n - 1)

    return clamp(x0, width), clamp(y0, height), clamp(x1 - 1, width) + 1, clamp(y1 - 1, height) + 1


def gray_for_crops(image: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """The gray image :func:`crop_faces` needs for ``boxes``, converted only around them: the full
    conversion of a 640x480 photo costs ~5 ms, a third of a request's CPU. Pixels nobody reads
    stay 0; the crops are identical to those of the full conversion (it is per pixel)."""
    if image.ndim == 2:
        return image
    h, w = image.shape[:2]
    gray = np.zeros((h, w), np.uint8)
    for box in boxes:
        x0, y0, x1, y1 = crop_source(box, w, h)
        gray[y0:y1, x0:x1] = to_gray(image[y0:y1, x0:x1])
    return gray


class Engine:
    """Owns the process's Recognizer, its workers and the batcher that feeds its classifier.

    ``threads``: prepare workers, default the cores (``ferkit serve --workers N`` gives each
    process its share). The classifier runs on the batcher's one thread beside them: its passes
    take ~0.2 ms a face, so it rarely competes with the workers for a core.
    """

    def __init__(self, model: str = "default", threads: int | None = None, detector: str = "yunet",
                 prior: str = "auto") -> None:
        runnable(model)  # fail as the app is built, in one line, not when the model loads
        self.prior = parse_prior(prior)
        self.model = model
        self.detector = detector
        self.model_name = ""  # the Recognizer's own name for it, once loaded
        self.threads = threads
        self.workers = threads or available_cores()
        self._recognizer: Recognizer | None = None
        self._worker_limiter: anyio.CapacityLimiter | None = None
        self._decode_slots = threading.BoundedSemaphore(DECODE_CONCURRENCY)
        self._preparing = 0  # requests in (or waiting for) the prepare stage
        self._batcher: MicroBatcher | None = None
        self._switch_interval = sys.getswitchinterval()

    def load(self) -> None:
        """Build the Recognizer (blocking: call it from a thread or before serving)."""
        from ferkit.inference.recognizer import Recognizer

        # onnxruntime: several times the torch backend's crops/s on small CPUs
        # (benchmarks/results/inference.md), and its chunked runs hold up beside other busy
        # processes (benchmarks/results/onnx_threading_busy2.md).
        # One classifier thread: its batches (a few faces) run on the batcher's thread, beside the
        # prepare workers, instead of fanning out to a pool of their own.
        self._recognizer = Recognizer(model=self.model, detector=self.detector, backend="onnx",
                                      threads=1, prior=self.prior)
        self.model_name = self._recognizer.model_name

    async def start(self) -> None:
        """Load the model off the event loop; limiters must be made inside the running loop."""
        self._worker_limiter = anyio.CapacityLimiter(self.workers)
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        await anyio.to_thread.run_sync(self.load)
        assert self._recognizer is not None
        self._batcher = MicroBatcher(self._recognizer.classify, more_coming=lambda: self._preparing > 0)
        self._batcher.start()

    def close(self) -> None:
        """Stop the batcher thread (after the batches already queued); the process's switch
        interval back to what it was (an app embedded in a larger program)."""
        if self._batcher is not None:
            self._batcher.close()
            self._batcher = None
            sys.setswitchinterval(self._switch_interval)

    def prior_ratio(self, prior: str | None) -> np.ndarray | None:
        """What the service's probabilities are multiplied by to move them to a request's
        ``prior`` (None: the service's own). Raises FerkitError for a prior it cannot apply."""
        if prior is None or self._recognizer is None:
            return None
        card = self._recognizer.card
        ones = np.ones(NUM_CLASSES)
        wanted = prior_weights(card, parse_prior(prior))
        served = prior_weights(card, self.prior)
        ratio = (ones if wanted is None else wanted) / (ones if served is None else served)
        return None if np.allclose(ratio, ratio[0]) else ratio

    def reweigh(self, prediction: Prediction, ratio: np.ndarray | None) -> Prediction:
        """Each face's probabilities, label, score and flag under another prior."""
        if ratio is None or self._recognizer is None:
            return prediction
        for face in prediction.faces:
            probs = shift(np.array([list(face.probabilities.values())]), ratio)[0]
            moved = face_from_probs(probs.tolist(), face.box, self._recognizer.uncertain_below)
            face.label, face.score, face.probabilities, face.uncertain = (
                moved.label, moved.score, moved.probabilities, moved.uncertain)
        return prediction

    async def predict(self, upload: Upload, detect: bool = True, explain: bool = False,
                      prior: str | None = None) -> dict[str, Any]:
        """Decode and recognise one image; the JSON of ``ferkit predict --json``, boxes and
        landmarks in the pixels of the uploaded image.

        ``detect=False``: the image is already a cropped face (``ferkit predict --no-detect``).
        ``explain``: each face carries its occlusion map (``ferkit predict --explain --json``).
        ``prior``: this request's class prior (:mod:`ferkit.runtime.prior`) instead of the service's.
        """
        return (await self.recognise(upload, detect, explain, prior))[0]

    async def recognise(self, upload: Upload, detect: bool = True, explain: bool = False,
                        prior: str | None = None) -> tuple[dict[str, Any], Timings]:
        """:meth:`predict`, and where the request's time went."""
        if self._recognizer is None or self._batcher is None:
            raise RuntimeError("Engine.start() has not run")
        ratio = self.prior_ratio(prior)  # a bad prior is refused before any work
        timings = Timings()
        queued = time.perf_counter()
        self._preparing += 1
        try:
            prepared = await anyio.to_thread.run_sync(self._prepare, upload, detect, queued, timings,
                                                      limiter=self._worker_limiter)
        finally:
            self._preparing -= 1
        found = prepared.found
        if explain and found.boxes:
            prediction = await anyio.to_thread.run_sync(self._explain, found, timings,
                                                        limiter=self._worker_limiter)
        else:
            probs = np.empty((0, NUM_CLASSES), np.float32)
            if len(found.crops):
                result = await asyncio.wrap_future(self._batcher.submit(found.crops))
                probs = result.probabilities
                timings.seconds["batch_wait"], timings.seconds["classify"] = result.wait_s, result.run_s
                timings.batch_faces, timings.batch_requests = result.batch_faces, result.batch_requests
            start = time.perf_counter()
            uncertain = self._recognizer.uncertain_below
            faces = [face_from_probs(p.tolist(), box, uncertain)
                     for p, box in zip(probs, found.boxes, strict=True)]
            prediction = Prediction(faces=faces, width=found.width, height=found.height, note=found.note)
            timings.seconds["post"] = time.perf_counter() - start
        start = time.perf_counter()
        prediction = self.reweigh(prediction.rescaled(prepared.scale, prepared.size), ratio)
        prediction.source = upload.name
        result_json = prediction_json(prediction, self.model_name)
        timings.seconds["post"] = timings.seconds.get("post", 0.0) + time.perf_counter() - start
        return result_json, timings

    def _prepare(self, upload: Upload, detect: bool, queued: float, timings: Timings) -> Prepared:
        """Decode, detect and crop one image (in a worker thread)."""
        from ferkit.inference.recognizer import FoundFaces

        assert self._recognizer is not None
        recognizer, seconds = self._recognizer, timings.seconds
        start = time.perf_counter()
        seconds["queue"] = start - queued
        with self._decode_slots:
            image, scale, size = load_image_within(upload.data, DECODE_MAX_SIDE, SERVE_MAX_PIXELS)
        decoded = time.perf_counter()
        seconds["decode"] = decoded - start
        h, w = image.shape[:2]
        if not detect or recognizer.detector is None:
            found = FoundFaces("", w, h, [None], resize_face(to_gray(image))[None])
        else:
            boxes = recognizer.detector.detect(image)
            detected = time.perf_counter()
            seconds["detect"] = detected - decoded
            crops = crop_faces(gray_for_crops(image, boxes), boxes)
            note = "" if boxes else recognizer._no_face_note()
            found = FoundFaces("", w, h, list(boxes), crops, note)
            decoded = detected
        seconds["crop"] = time.perf_counter() - decoded
        return Prepared(found, scale, size)

    def _explain(self, found: FoundFaces, timings: Timings) -> Prediction:
        """Classify with occlusion maps (in a worker thread: 100 extra crops a face)."""
        assert self._recognizer is not None
        start = time.perf_counter()
        prediction = self._recognizer.classify_found([found], explain=EXPLAIN_MAX_FACES)[0]
        timings.seconds["classify"] = time.perf_counter() - start
        timings.batch_faces, timings.batch_requests = len(found.crops), 1
        return prediction
