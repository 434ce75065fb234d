"""Pixel operations of the runtime in numpy and Pillow, so that ferkit needs no OpenCV.

Each mirrors the OpenCV call it replaced closely enough that crops, maps and detections stay
the same within a grey level or so (``tests/test_imageops.py`` compares them where OpenCV is
installed): the gray conversion is OpenCV's to the bit, the bilinear warp samples at OpenCV's
1/32-pixel steps, shrinking by area averaging is ``cv2.INTER_AREA``'s exact pixel coverage
(Pillow's BOX filter counts a source pixel wholly or not at all, which differed from it by up to
59 grey levels at edges), and bilinear resizing of 8-bit images is ``cv2.INTER_LINEAR``'s
fixed-point arithmetic (Pillow's BILINEAR rounds differently: one grey level on a quarter of the
pixels, which moved YuNet's recall on enlarged photos by up to 3 faces of 336;
benchmarks/results/yunet_backends.md).
"""

from __future__ import annotations

import io
import math
from functools import cache
from typing import Literal

import numpy as np
from PIL import Image

Border = Literal["replicate", "reflect101", "constant"]
Interpolation = Literal["area", "linear", "cubic", "nearest"]

_PIL_FILTERS = {"area": Image.Resampling.BOX, "linear": Image.Resampling.BILINEAR,
                "cubic": Image.Resampling.BICUBIC, "nearest": Image.Resampling.NEAREST}
# OpenCV's fixed-point RGB -> gray weights (ITU-R 601, 15 bits), kept so gray crops match it exactly.
_GRAY_WEIGHTS = (9798, 19235, 3735)
_WARP_STEPS = 32  # cv2.warpAffine's INTER_BITS = 5: source coordinates in 1/32 pixel


def to_gray(image: np.ndarray) -> np.ndarray:
    """RGB (or already gray) uint8 -> HxW gray, bit-identical to ``cv2.COLOR_RGB2GRAY``."""
    if image.ndim == 2:
        return image
    r, g, b = (image[:, :, i].astype(np.uint32) for i in range(3))
    wr, wg, wb = _GRAY_WEIGHTS
    return ((r * wr + g * wg + b * wb + (1 << 14)) >> 15).astype(np.uint8)


def resize(image: np.ndarray, size: tuple[int, int], interpolation: Interpolation = "linear") -> np.ndarray:
    """``image`` (HxW or HxWx3 uint8, or HxW float32) resized to ``size`` = (width, height).

    "area" averages the source pixels each output pixel covers, weighted by how much of each it
    covers (``cv2.INTER_AREA``; where it would enlarge, it is "linear"); "linear" and "cubic"
    are for enlarging.
    """
    w, h = size
    if image.shape[1] == w and image.shape[0] == h:
        return image.copy()
    if (interpolation == "area" and image.dtype == np.uint8 and image.shape[1] % w == 0
            and image.shape[0] % h == 0):  # whole blocks (1080p -> 320x180): Pillow averages them fast
        return np.array(Image.fromarray(np.ascontiguousarray(image)).reduce(
            (image.shape[1] // w, image.shape[0] // h)))
    if interpolation == "area" and w <= image.shape[1] and h <= image.shape[0]:
        out = _area_shrink(_area_shrink(image, w, axis=1), h, axis=0)  # columns first: faster
        if image.dtype == np.uint8:
            return _clamp(np.floor(out + 0.5), 0, 255).astype(np.uint8)
        return out.astype(image.dtype)
    if interpolation == "area":
        interpolation = "linear"
    if interpolation == "linear" and image.dtype == np.uint8:
        return _linear_8bit(image, w, h)
    if image.dtype == np.uint8:
        pil = Image.fromarray(np.ascontiguousarray(image))
        return np.array(pil.resize((w, h), _PIL_FILTERS[interpolation]))
    if image.ndim != 2:
        raise ValueError("only 2-D float images can be resized")
    pil = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32), mode="F")
    return np.array(pil.resize((w, h), _PIL_FILTERS[interpolation])).astype(image.dtype, copy=False)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(first source pixel, second, their 11-bit weights) per output pixel, as ``cv2.resize``
    computes them for INTER_LINEAR: pixel centres aligned, edges clamped."""
    fx = ((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5).astype(np.float32)
    sx = np.floor(fx).astype(np.int64)
    fx -= sx.astype(np.float32)
    low, high = sx < 0, sx >= n_in - 1
    fx[low], sx[low] = 0, 0
    fx[high], sx[high] = 0, n_in - 1
    w0 = np.rint((np.float32(1) - fx) * np.float32(2048)).astype(np.int32)
    return sx, np.minimum(sx + 1, n_in - 1), w0, 2048 - w0


def _linear_8bit(image: np.ndarray, w: int, h: int) -> np.ndarray:
    """``cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)`` for uint8, in integers as
    OpenCV's vectorised code does it (rows weighted in 11 bits, then columns, the result rounded
    in two steps): equal to it on all but about 1 pixel in 2,000 (those by one grey level)."""
    x0, x1, a0, a1 = _linear_taps(image.shape[1], w)
    y0, y1, b0, b1 = _linear_taps(image.shape[0], h)
    channel = (None,) * (image.ndim - 2)
    src = image.astype(np.int32)  # 255 x 2048 x 2048 / 16 fits: no 64-bit arithmetic needed
    rows = src[:, x0] * a0[(..., *channel)] + src[:, x1] * a1[(..., *channel)]
    column = (slice(None), *(None,) * (rows.ndim - 1))
    out = ((((rows[y0] >> 4) * b0[column]) >> 16) + (((rows[y1] >> 4) * b1[column]) >> 16) + 2) >> 2
    return _clamp(out, 0, 255).astype(np.uint8)


def _area_shrink(image: np.ndarray, n: int, axis: int) -> np.ndarray:
    """``image`` shrunk to ``n`` (<= its size) along ``axis``: each output pixel the mean of the
    source span it covers, partly covered pixels in proportion (``cv2.INTER_AREA``). A span
    touches at most ceil(size / n) + 1 pixels; one gather and one multiply-add per such pixel
    costs about a pass over the image (``np.add.reduceat`` took 5-10 times as long)."""
    size = image.shape[axis]
    if n == size:
        return image
    i = np.arange(n)
    lo, hi = i * (size / n), (i + 1) * (size / n)
    first = (i * size) // n  # the span's first pixel, in integers: exact where lo is whole
    shape = [1] * image.ndim
    shape[axis] = n
    out = np.zeros(image.shape[:axis] + (n,) + image.shape[axis + 1 :], np.float32)
    for k in range(-(-size // n) + 1):
        pixel = first + k
        weight = np.maximum(np.minimum(pixel + 1, hi) - np.maximum(pixel, lo), 0)
        if not weight.any():
            break
        out += (weight * (n / size)).astype(np.float32).reshape(shape) * np.take(
            image, np.minimum(pixel, size - 1), axis=axis)
    return out


def pad_edge(image: np.ndarray, top: int, bottom: int, left: int, right: int) -> np.ndarray:
    """``image`` with its edge rows and columns repeated outwards (``cv2.BORDER_REPLICATE``)."""
    pads = [(top, bottom), (left, right)] + [(0, 0)] * (image.ndim - 2)
    return np.pad(image, pads, mode="edge")


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine matrix (``cv2.invertAffineTransform``)."""
    full = np.vstack([np.asarray(matrix, dtype=np.float64), [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def rotation_matrix(centre: tuple[float, float], degrees: float, scale: float = 1.0) -> np.ndarray:
    """The 2x3 matrix turning by ``degrees`` anticlockwise about ``centre`` (``cv2.getRotationMatrix2D``)."""
    a = math.radians(degrees)
    alpha, beta = scale * math.cos(a), scale * math.sin(a)
    cx, cy = centre
    return np.array([[alpha, beta, (1 - alpha) * cx - beta * cy],
                     [-beta, alpha, beta * cx + (1 - alpha) * cy]])


def _border_index(index: np.ndarray, n: int, border: Border) -> np.ndarray:
    if border == "reflect101" and n > 1:
        period = 2 * (n - 1)
        index = np.abs(np.mod(index, period))
        return np.where(index >= n, period - index, index)
    return _clamp(index, 0, n - 1)


def warp_affine(
    image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: Border = "replicate"
) -> np.ndarray:
    """Bilinear ``cv2.warpAffine(image, matrix, size)``: ``matrix`` takes image pixels to output
    pixels, ``size`` = (width, height); outside the image the edge repeats, mirrors (without the
    edge pixel twice, "reflect101") or is 0 ("constant"). uint8 in, uint8 out (rounded).

    Only the four taps of each output pixel are read and made float: a 48x48 face crop no longer
    converts the whole 640x480 frame it comes from (about half the time a crop, same output)."""
    w, h = size
    inverse = invert_affine(matrix)
    ys, xs = _pixel_grid(h, w)
    src_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    src_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    # OpenCV samples at 1/32-pixel steps; doing the same keeps crops equal to its to the grey level.
    src_x = np.floor(src_x * _WARP_STEPS + 0.5) / _WARP_STEPS
    src_y = np.floor(src_y * _WARP_STEPS + 0.5) / _WARP_STEPS
    x0, y0 = np.floor(src_x).astype(np.int64), np.floor(src_y).astype(np.int64)
    fx, fy = (src_x - x0).astype(np.float32), (src_y - y0).astype(np.float32)
    ih, iw = image.shape[:2]
    pixels = image.reshape(ih * iw, *image.shape[2:])  # one flat gather a tap: faster than two indices
    out = np.zeros((h, w, *image.shape[2:]), np.float32)
    for dy, wy in ((0, 1 - fy), (1, fy)):
        row = _border_index(y0 + dy, ih, border) * iw
        for dx, wx in ((0, 1 - fx), (1, fx)):
            weight = wy * wx
            if border == "constant":
                yi, xi = y0 + dy, x0 + dx
                weight = weight * ((yi >= 0) & (yi < ih) & (xi >= 0) & (xi < iw))
            tap = pixels[row + _border_index(x0 + dx, iw, border)].astype(np.float32)
            out += tap * (weight[..., None] if image.ndim == 3 else weight)
    if image.dtype == np.uint8:
        return _clamp(np.floor(out + 0.5), 0, 255).astype(np.uint8)
    return out.astype(image.dtype, copy=False)


def _clamp(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """``np.clip(values, low, high)`` without its per-call checks (about 10 us a call, which
    the many small arrays of a face crop add up to a tenth of a millisecond)."""
    return np.minimum(np.maximum(values, low), high)


@cache
def _pixel_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) index of every pixel of an h x w output, as floats (read-only, shared)."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """``cv2.GaussianBlur(image, (0, 0), sigma)`` on a 2-D uint8 image: OpenCV's kernel size for
    8-bit images (6 sigma + 1, odd), mirrored edges without the edge pixel twice."""
    k = int(round(sigma * 6 + 1)) | 1
    x = np.arange(k) - (k - 1) / 2
    kernel = np.exp(-(x**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    r = k // 2
    padded = np.pad(image.astype(np.float64), r, mode="reflect")  # numpy's reflect is OpenCV's 101
    rows = sum(kernel[i] * padded[:, i : i + image.shape[1]] for i in range(k))
    out = sum(kernel[i] * rows[i : i + image.shape[0]] for i in range(k))
    return np.clip(np.floor(out + 0.5), 0, 255).astype(np.uint8)


def jet(level: np.ndarray) -> np.ndarray:
    """RGB uint8 colours of uint8 levels on the jet scale (blue, cyan, yellow, red), as
    ``cv2.applyColorMap(level, cv2.COLORMAP_JET)`` gives them (in BGR)."""
    x = level.astype(np.float32) / 255.0
    channels = [np.clip(1.5 - np.abs(4 * x - c), 0, 1) for c in (3.0, 2.0, 1.0)]  # r, g, b
    return np.floor(np.stack(channels, axis=-1) * 255 + 0.5).astype(np.uint8)


def jpeg_round_trip(gray: np.ndarray, quality: int) -> np.ndarray:
    """A 2-D uint8 image saved as a baseline JPEG at ``quality`` (1-95) and decoded again, with
    Pillow's libjpeg (the same quantisation tables and default DCT as ``cv2.imencode``)."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(gray)).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.array(decoded.convert("L"))
