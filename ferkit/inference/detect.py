"""Face detection behind a one-method interface: YuNet (the default) or OpenCV's Haar cascade.

YuNet (Wu, Peng & Yu 2023; Apache-2.0) ships inside the package (``ferkit/weights/yunet``) and
runs through onnxruntime, its outputs decoded in numpy the way OpenCV's ``cv2.FaceDetectorYN``
decodes them, so the runtime needs no OpenCV, nothing is downloaded and no cascade files are
needed (the same recall as FaceDetectorYN: benchmarks/results/yunet_backends.md). It gives each
face its box, five landmarks and a score; the landmarks let :mod:`ferkit.inference.crop` level
the eyes. The variant, input size and score threshold were chosen by
``benchmarks/detector_choice.py`` (results in ``benchmarks/results/detector_choice.md``). The
Haar cascade stays available as ``"haar"`` where OpenCV 4 is installed (the ``haar`` extra).
Any object with a ``detect(image) -> list[Box]`` method can replace either (a tracker's guesses,
another network).
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Protocol, runtime_checkable

import numpy as np

from ferkit import imageops
from ferkit.errors import FerkitError
from ferkit.face import Box

CASCADE_FILE = "haarcascade_frontalface_default.xml"
WINDOW = 24  # the cascade's own detection window, in pixels
YUNET_DIR = Path(__file__).resolve().parents[1] / "weights" / "yunet"
YUNET_FILE = "yunet_n_640_640.onnx"
# Chosen by benchmarks/detector_choice.py: the longest side photos are resized to before
# detection, and the score a detection needs.
YUNET_SIDE = 320
YUNET_SCORE = 0.6
YUNET_STRIDES = (8, 16, 32)
OPENCV_EXTRA = "pip install 'ferkit[opencv]'"


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in an HxW gray or HxWx3 RGB uint8 image; boxes are in its pixels."""

    def detect(self, image: np.ndarray) -> list[Box]: ...


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (or already gray) uint8 -> HxW gray, with the ITU-R 601 weights FER2013 used."""
    return imageops.to_gray(image)


class YuNetDetector:
    """YuNet through onnxruntime, decoded as ``cv2.FaceDetectorYN`` decodes it: boxes with five
    landmarks and a score.

    The image is resized so that its longest side is ``side`` pixels (None: as it is), which
    fixes the cost per photo whatever its size; faces that are small at that size are missed
    (recall by face size: benchmarks/results/detector_choice.md). ``score_threshold``,
    ``nms_threshold`` and ``top_k`` mean what they mean to FaceDetectorYN. Thread-safe: one
    session serves concurrent calls.
    """

    def __init__(
        self,
        side: int | None = YUNET_SIDE,
        score_threshold: float = YUNET_SCORE,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        model: str | Path | None = None,
    ) -> None:
        path = Path(model) if model else YUNET_DIR / YUNET_FILE
        if not path.is_file():
            raise FerkitError(f"YuNet model {path} not found")
        if side is not None and side < 32:
            raise FerkitError(f"YuNet side must be at least 32 pixels, not {side}")
        self.side = side
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.model_file = path.name
        self._session = _yunet_session(path.resolve())

    def __repr__(self) -> str:
        return f"YuNetDetector({self.model_file}, side={self.side}, score>={self.score_threshold})"

    def detect(self, image: np.ndarray) -> list[Box]:
        h, w = image.shape[:2]
        sw, sh = self._scaled_size(w, h)
        if min(sw, sh) < 8:
            return []  # a sliver: no face fits
        if (sw, sh) != (w, h):  # resized first: the colour conversion then has fewer pixels to do
            image = imageops.resize(image, (sw, sh), "area" if sw < w else "linear")
        found = self.detect_raw(image)
        boxes = [_yunet_box(row, w / sw, h / sh, w, h) for row in found]
        return sorted(boxes, key=lambda b: (b.x, b.y))

    def _scaled_size(self, w: int, h: int) -> tuple[int, int]:
        """The (width, height) :meth:`detect` runs the network at for a ``w`` x ``h`` image."""
        scale = self.side / max(h, w) if self.side else 1.0
        return round(w * scale), round(h * scale)

    def detect_region(self, image: np.ndarray, region: tuple[int, int, int, int]) -> list[Box]:
        """The faces :meth:`detect` would find in ``image`` inside ``region`` (x0, y0, x1, y1,
        image pixels), for a fraction of its cost: a video tracker's look around each face.

        The network runs on that part of the image only, at the scale :meth:`detect` uses for
        the whole image, the part widened on every side to YuNet's 32-pixel grid at that scale: where the
        image shrinks by a whole factor (640x480 to 320x240), its pixels and the grid's cells are
        those of the whole image's, so a face well inside the region gets the box and landmarks
        the whole image gives it (up to the zeros beyond the region's edges, which the network
        sees as it sees the padding of a whole image). Boxes are in the image's pixels.
        """
        h, w = image.shape[:2]
        sw, sh = self._scaled_size(w, h)
        if min(sw, sh) < 8:
            return []
        fx, fy = w / sw, h / sh
        grid = YUNET_STRIDES[-1]
        x0, y0, x1, y1 = region
        sx0, sy0 = (max(0, int(v // f) // grid * grid) for v, f in ((x0, fx), (y0, fy)))
        # the far edges too go out to the grid: the network pads to it anyway, and pixels of the
        # image there instead of zeros are what the whole image's detection sees
        far = (-int(-x1 // fx), sw), (-int(-y1 // fy), sh)  # the region's far edges at that scale
        sx1, sy1 = (min(n, -(-v // grid) * grid) for v, n in far)
        if sx1 - sx0 < 8 or sy1 - sy0 < 8:
            return []
        rx0, ry0 = round(sx0 * fx), round(sy0 * fy)
        rx1, ry1 = min(w, round(sx1 * fx)), min(h, round(sy1 * fy))
        part = image[ry0:ry1, rx0:rx1]
        if (sx1 - sx0, sy1 - sy0) != part.shape[1::-1]:
            part = imageops.resize(part, (sx1 - sx0, sy1 - sy0), "area" if sw < w else "linear")
        found = self.detect_raw(part)
        found[:, [0, 4, 6, 8, 10, 12]] += sx0
        found[:, [1, 5, 7, 9, 11, 13]] += sy0
        boxes = [_yunet_box(row, fx, fy, w, h) for row in found]
        return sorted(boxes, key=lambda b: (b.x, b.y))

    def detect_raw(self, image: np.ndarray) -> np.ndarray:
        """FaceDetectorYN's (N, 15) float32 rows for an RGB or gray uint8 image, as it is: box x, y,
        w, h, five landmarks (x, y) and the score, in the image's pixels."""
        h, w = image.shape[:2]
        pad_h, pad_w = (-(-n // YUNET_STRIDES[-1]) * YUNET_STRIDES[-1] for n in (h, w))
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)  # zero padding below and right, as OpenCV's
        if image.ndim == 2:
            blob[0, :, :h, :w] = image
        else:
            blob[0, :, :h, :w] = image[:, :, ::-1].transpose(2, 0, 1)  # the network reads BGR, 0..255
        outputs = self._session.run(None, {"input": blob})
        return decode_yunet(dict(zip(YUNET_OUTPUTS, outputs, strict=True)), pad_w, pad_h,
                            self.score_threshold, self.nms_threshold, self.top_k)


YUNET_OUTPUTS = tuple(f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps")
                      for stride in YUNET_STRIDES)
# The graphs declare a fixed 1x3x640x640 input, though nothing in them depends on it (OpenCV reshapes
# them per image). In the serialised graph input "input", the two 640s (dim_value, field 1, varint
# 80 05) become the names "H" and "W" (dim_param, field 2): three bytes each way, so no length
# prefix around them changes and onnxruntime accepts any height and width.
_FIXED_INPUT = bytes.fromhex("5a210a05") + b"input" + bytes.fromhex("12180a16080112120a0208010a020803"
                                                                   "0a030880050a03088005")
_DYNAMIC_INPUT = _FIXED_INPUT[:-10] + bytes.fromhex("0a03120148") + bytes.fromhex("0a03120157")


@cache
def _yunet_session(path: Path):  # -> onnxruntime.InferenceSession (imported lazily)
    """One onnxruntime session per graph file, shared by every detector (sessions are thread-safe).

    One thread: on the 2-core machine a 320x320 photo took 5.2 ms on one thread and 5.3 on two
    (the best of 60 runs beside other jobs), and video, serve and Ray already run detectors side
    by side. onnxruntime's warnings (outputs smaller than the graph's declared 640x640 sizes) are
    silenced: the sizes follow the input's, as intended.
    """
    import onnxruntime as ort

    graph = path.read_bytes()
    if graph.count(_FIXED_INPUT) == 1:
        graph = graph.replace(_FIXED_INPUT, _DYNAMIC_INPUT)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise FerkitError(f"cannot load YuNet model {path}: {exc}") from None
    shape = session.get_inputs()[0].shape
    if any(isinstance(d, int) and d not in (1, 3) for d in shape):
        raise FerkitError(f"YuNet model {path}: its input has a fixed size {shape}; ferkit needs the "
                          "1x3x640x640 graphs of libfacedetection.train or one with a free height and width")
    return session


def decode_yunet(
    outputs: dict[str, np.ndarray], pad_w: int, pad_h: int, score_threshold: float,
    nms_threshold: float, top_k: int,
) -> np.ndarray:
    """YuNet's raw outputs -> (N, 15) float32 rows, as ``FaceDetectorYN::postProcess`` makes them.

    Per stride, each cell of the padded input is one prior: score sqrt(cls * obj) (each clamped to
    0..1), box centre (cell + offset) * stride and size exp(.) * stride, landmarks (cell + offset) *
    stride; then ``dnn::NMSBoxes`` on the boxes truncated to integers.
    """
    rows = []
    for stride in YUNET_STRIDES:
        cols = pad_w // stride
        # each clamped to 0..1 (np.minimum and np.maximum: np.clip's own checks cost more here)
        cls = np.minimum(np.maximum(outputs[f"cls_{stride}"].reshape(-1), 0), 1)
        obj = np.minimum(np.maximum(outputs[f"obj_{stride}"].reshape(-1), 0), 1)
        score = np.sqrt(cls * obj)
        keep = np.flatnonzero(score >= score_threshold)
        if not len(keep):
            continue
        bbox = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep]
        kps = outputs[f"kps_{stride}"].reshape(-1, 10)[keep]
        c = (keep % cols).astype(np.float32)
        r = (keep // cols).astype(np.float32)
        s = np.float32(stride)
        cx, cy = (c + bbox[:, 0]) * s, (r + bbox[:, 1]) * s
        w, h = np.exp(bbox[:, 2]) * s, np.exp(bbox[:, 3]) * s
        marks = (kps.reshape(-1, 5, 2) + np.stack([c, r], axis=1)[:, None, :]) * s
        rows.append(np.column_stack([cx - w / np.float32(2), cy - h / np.float32(2), w, h,
                                     marks.reshape(-1, 10), score[keep]]).astype(np.float32))
    if not rows:
        return np.zeros((0, 15), np.float32)
    faces = np.concatenate(rows)
    if len(faces) > 1:
        faces = faces[nms_boxes(faces[:, :4].astype(np.int32), faces[:, 14], score_threshold, nms_threshold,
                                top_k)]
    return faces


def nms_boxes(
    boxes: np.ndarray, scores: np.ndarray, score_threshold: float, nms_threshold: float, top_k: int
) -> np.ndarray:
    """Indices kept by ``cv::dnn::NMSBoxes`` for integer (x, y, w, h) boxes: scores above the
    threshold, best first (ties in input order), at most ``top_k`` considered; a box goes when its
    IoU with a kept one exceeds ``nms_threshold``."""
    order = np.flatnonzero(scores > score_threshold)
    order = order[np.argsort(-scores[order], kind="stable")]
    if 0 < top_k < len(order):
        order = order[:top_k]
    x0, y0 = boxes[order, 0].astype(np.int64), boxes[order, 1].astype(np.int64)
    x1, y1 = x0 + boxes[order, 2], y0 + boxes[order, 3]
    area = boxes[order, 2].astype(np.int64) * boxes[order, 3]
    kept: list[int] = []
    alive = np.ones(len(order), bool)
    # The best box left is kept and every box overlapping it too much goes: the same boxes as
    # testing each box against all kept ones in score order, with one pass per kept box (a face
    # has dozens of candidate boxes: a loop over them cost YuNet a quarter of a millisecond).
    for i in range(len(order)):
        if not alive[i]:
            continue
        kept.append(int(order[i]))
        rest = np.arange(i + 1, len(order))
        iw = np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest])
        ih = np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest])
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0)
        union = area[i] + area[rest] - inter
        iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        alive[rest[iou > nms_threshold]] = False
    return np.array(kept, dtype=np.int64)


def _yunet_box(row: np.ndarray, fx: float, fy: float, width: int, height: int) -> Box:
    """One FaceDetectorYN row (box, 5 landmarks, score) in pixels of the original image.

    Coordinates are pixel indices (a pixel's centre is its index) on both sides of the resize.
    """
    x0, y0 = (row[0] + 0.5) * fx - 0.5, (row[1] + 0.5) * fy - 0.5
    x1, y1 = x0 + row[2] * fx, y0 + row[3] * fy
    x, y = max(0, round(x0)), max(0, round(y0))
    landmarks = tuple((float((row[4 + 2 * i] + 0.5) * fx - 0.5), float((row[5 + 2 * i] + 0.5) * fy - 0.5))
                      for i in range(5))
    return Box(x, y, max(1, min(round(x1), width) - x), max(1, min(round(y1), height) - y),
               landmarks=landmarks, score=float(row[14]))


def opencv() -> ModuleType:
    """OpenCV, which only the Haar detector needs, or a one-line error naming the extra."""
    try:
        import cv2
    except ImportError:
        raise FerkitError(f"the Haar detector needs OpenCV 4, which is not installed: {OPENCV_EXTRA} "
                          "(or use --detector yunet, the default)") from None
    return cv2


def haar_cascade_path() -> Path:
    """The frontal-face cascade that ships with OpenCV 4, or a one-line error where it is absent."""
    cv2 = opencv()
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    path = Path(folder) / CASCADE_FILE if folder else None
    if path is None or not path.is_file():
        raise FerkitError(f"the Haar detector needs OpenCV's cascade files, which OpenCV {cv2.__version__} "
                          f"does not ship (OpenCV 5 dropped them): install OpenCV 4 ({OPENCV_EXTRA}) or use "
                          "--detector yunet, the default")
    return path


class HaarDetector:
    """OpenCV's frontal-face Haar cascade, run on a shrunk copy of the image (no landmarks).

    The copy is shrunk until a face of ``min_face`` pixels (the classifier reads 48) fills the
    cascade's 24-pixel window, and to at most ``max_side`` pixels, which bounds the cost on
    large photos. ``scale_factor`` 1.15 with ``min_neighbors`` 4, no histogram equalisation:
    of 300 FER2013 test faces pasted on 640x480 canvases it found 64% (tight crops lack the
    context the cascade likes; OpenCV's usual 1.1 / 5 found 63%) in 75% of the time, and
    exactly one box on each variant of the astronaut portrait (JPEG, CMYK, mirrored, half and
    double size), where 1.2 / 3 put a second box on two (benchmarks/detector_settings.py).
    """

    def __init__(
        self,
        max_side: int = 1600,
        min_face: int = 48,
        scale_factor: float = 1.15,
        min_neighbors: int = 4,
        equalize: bool = False,
        cascade: str | Path | None = None,
    ) -> None:
        path = Path(cascade) if cascade else haar_cascade_path()
        self._cv2 = cv2 = opencv()
        if not hasattr(cv2, "CascadeClassifier"):  # an OpenCV built without its cascade classifier
            raise FerkitError(f"the Haar detector needs OpenCV 4's CascadeClassifier, which OpenCV "
                              f"{cv2.__version__} lacks: {OPENCV_EXTRA} or use --detector yunet, the default")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise FerkitError(f"cannot load Haar cascade {path}")
        self.max_side = max_side
        self.min_face = min_face
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.equalize = equalize

    def detect(self, image: np.ndarray) -> list[Box]:
        gray = to_gray(image)
        h, w = gray.shape
        scale = min(1.0, WINDOW / self.min_face, self.max_side / max(h, w))
        min_side = max(WINDOW, round(self.min_face * scale))
        if min(h, w) * scale < min_side:
            return []  # smaller than the smallest face looked for
        cv2 = self._cv2
        small = cv2.resize(gray, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        if self.equalize:
            small = cv2.equalizeHist(small)
        found = self._cascade.detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
        )
        boxes = [_rescale(tuple(int(v) for v in f), 1.0 / scale, w, h) for f in found]
        return sorted(boxes, key=lambda b: (b.x, b.y))


def _rescale(xywh: tuple[int, ...], factor: float, width: int, height: int) -> Box:
    """A box found on the shrunk copy, in pixels of the original image (clipped to it)."""
    x, y, bw, bh = (round(v * factor) for v in xywh)
    x, y = max(0, x), max(0, y)
    return Box(x, y, min(bw, width - x), min(bh, height - y))


def make_detector(spec: str | FaceDetector | None, max_side: int | None = None) -> FaceDetector | None:
    """"yunet" (the default) or "haar" -> that detector; None -> no detection; an object with
    detect() as is. ``max_side`` caps the size detection runs at (video frames)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec == "yunet":
            side = YUNET_SIDE if max_side is None else min(YUNET_SIDE, max_side)
            return YuNetDetector(side=side)
        if spec == "haar":
            return HaarDetector() if max_side is None else HaarDetector(max_side=max_side)
        raise FerkitError(f"unknown detector {spec!r}: use 'yunet', 'haar', None or an object with detect()")
    if not isinstance(spec, FaceDetector):
        raise FerkitError(f"detector {spec!r} has no detect(image) -> list[Box] method")
    return spec
