"""One Recognizer per server process, used from worker threads so the event loop never blocks.

Decoding and inference are CPU work: each runs in anyio's thread pool under its own capacity
limiter. Decoding is bounded twice: at most DECODE_CONCURRENCY at once, and each one refuses
images over SERVE_MAX_PIXELS from the header and keeps at most a DECODE_MAX_SIDE copy (a 10 MB
PNG can expand to gigabytes of pixels). The model runs one request at a time per process: the
onnxruntime backend already spreads a request's faces over the cores (the YuNet session is
thread-safe, but one request at a time keeps each request's latency predictable).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import anyio
import numpy as np

from ferkit.face import NUM_CLASSES
from ferkit.imageio import load_image_within
from ferkit.inference.types import Prediction, face_from_probs, prediction_json
from ferkit.runtime.loader import runnable
from ferkit.runtime.prior import parse_prior, prior_weights, shift

if TYPE_CHECKING:
    from ferkit.inference.recognizer import Recognizer

# Images decoded at the same time per process: bounds peak memory from large photos.
DECODE_CONCURRENCY = 2
# Forward passes at the same time per process.
INFERENCE_CONCURRENCY = 1
# Faces of one request that get an explanation (100 extra crops each): a photo of a crowd must
# not buy minutes of one worker's time with ?explain=true.
EXPLAIN_MAX_FACES = 16
# Largest image a request may declare (a 48-megapixel phone photo passes); bigger ones are 422.
SERVE_MAX_PIXELS = 50_000_000
# Longest side kept after decoding. The detector sees 320 px on the longest side and faces are
# cropped to 48x48, so any face it can find in the original (>= ~10 px at 320) still spans >= 64 px
# here: results match the full image, and an RGB copy stays under 13 MB.
DECODE_MAX_SIDE = 2048


@dataclass
class Upload:
    """One received image: its bytes, or the (temporary) file holding them, and the name the
    client gave it. A file is read only inside the decode slot, so waiting uploads hold no
    memory beyond their spool buffer."""

    data: bytes | IO[bytes]
    name: str = ""


class Engine:
    """Owns the process's Recognizer and the limiters that guard it."""

    def __init__(self, model: str = "default", threads: int | None = None, detector: str = "yunet",
                 prior: str = "auto") -> None:
        runnable(model)  # fail as the app is built, in one line, not when the model loads
        self.prior = parse_prior(prior)
        self.model = model
        self.detector = detector
        self.model_name = ""  # the Recognizer's own name for it, once loaded
        self.threads = threads
        self._recognizer: Recognizer | None = None
        self._decode_limiter: anyio.CapacityLimiter | None = None
        self._inference_limiter: anyio.CapacityLimiter | None = None

    def load(self) -> None:
        """Build the Recognizer (blocking: call it from a thread or before serving)."""
        from ferkit.inference.recognizer import Recognizer

        # onnxruntime: several times the torch backend's crops/s on small CPUs
        # (benchmarks/results/inference.md), and its chunked runs hold up beside other busy
        # processes (benchmarks/results/onnx_threading_busy2.md).
        self._recognizer = Recognizer(model=self.model, detector=self.detector, backend="onnx",
                                      threads=self.threads, prior=self.prior)
        self.model_name = self._recognizer.model_name

    async def start(self) -> None:
        """Load the model off the event loop; limiters must be made inside the running loop."""
        self._decode_limiter = anyio.CapacityLimiter(DECODE_CONCURRENCY)
        self._inference_limiter = anyio.CapacityLimiter(INFERENCE_CONCURRENCY)
        await anyio.to_thread.run_sync(self.load)

    async def decode(self, upload: Upload) -> tuple[np.ndarray, float, tuple[int, int]]:
        """Safe, bounded decode (raises ImageError with a reason); bombs are refused from the
        header. Returns the reduced image, its scale to the original and the original size."""
        return await anyio.to_thread.run_sync(load_image_within, upload.data, DECODE_MAX_SIDE,
                                              SERVE_MAX_PIXELS, limiter=self._decode_limiter)

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
        ratio = self.prior_ratio(prior)  # a bad prior is refused before any work
        image, scale, size = await self.decode(upload)
        prediction = await anyio.to_thread.run_sync(self._predict_array, image, detect, explain,
                                                    limiter=self._inference_limiter)
        prediction = self.reweigh(prediction.rescaled(scale, size), ratio)
        prediction.source = upload.name
        return prediction_json(prediction, self.model_name)

    def _predict_array(self, image: np.ndarray, detect: bool = True, explain: bool = False) -> Prediction:
        if self._recognizer is None:
            raise RuntimeError("Engine.start() has not run")
        return self._recognizer.predict(image, color="rgb", detect=detect,
                                        explain=EXPLAIN_MAX_FACES if explain else False)
