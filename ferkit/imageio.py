"""Safe image decoding shared by the data loaders, inference and the web service.

Every failure becomes an :class:`ImageError` with a reason a user can act on: empty files,
non-images, truncated files, decompression bombs. EXIF orientation is applied; any mode
(16-bit, RGBA, CMYK, palette) is converted.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

from ferkit.errors import ImageError

# Image file names the loaders and `ferkit predict` pick up from folders.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)

# The Pillow formats ferkit decodes (the IMAGE_SUFFIXES above; .pgm/.ppm are Pillow's PPM). Nothing
# else is even identified: EPS/PS would run Ghostscript, and other plugins are rarely exercised.
PIL_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

# Refuse images above this many pixels before decoding them (a 40-megapixel photo is fine). The
# service uses a lower limit (ferkit.serve): one decode there must fit beside others in one worker.
MAX_PIXELS = 80_000_000

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray
Readable = bytes | str | os.PathLike | IO[bytes]  # IO: an open binary file, read from its start


def _open(data: Readable, max_pixels: int = MAX_PIXELS) -> Image.Image:
    if isinstance(data, bytes):
        if not data:
            raise ImageError("empty file (0 bytes)")
        fp: object = io.BytesIO(data)
    elif hasattr(data, "read"):
        data.seek(0)
        if not data.read(1):
            raise ImageError("empty file (0 bytes)")
        data.seek(0)
        fp = data
    else:
        path = Path(data)
        if not path.exists():
            raise ImageError("no such file")
        if path.is_dir():
            raise ImageError("is a directory, not an image")
        if path.stat().st_size == 0:
            raise ImageError("empty file (0 bytes)")
        fp = path
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(fp, formats=PIL_FORMATS)  # reads the header only
    except UnidentifiedImageError:
        raise ImageError("not a recognised image format (ferkit reads JPEG, PNG, BMP, GIF, TIFF, "
                         "WebP and PGM/PPM)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError("image dimensions too large (possible decompression bomb)") from None
    except OSError as exc:
        raise ImageError(f"cannot read image: {_reason(exc)}") from None
    except MemoryError:
        raise
    except Exception as exc:  # format plugins also raise ValueError, NotImplementedError, ...
        raise ImageError(f"malformed image header: {_reason(exc)}") from None
    w, h = img.size
    if w * h > max_pixels:
        raise ImageError(f"image dimensions too large ({w}x{h} pixels, limit {max_pixels:,})")
    return img


def _decode(img: Image.Image, max_side: int | None = None) -> Image.Image:
    return _decode_sized(img, max_side)[0]


# EXIF orientation -> the transpose that undoes it (as ImageOps.exif_transpose does).
_ORIENTATIONS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                 4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
                 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _decode_sized(img: Image.Image, max_side: int | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """Decode the pixels, EXIF-rotated; with ``max_side``, no larger than that on either side
    (JPEG decodes at the reduced size directly, others are reduced right after decoding, before
    any conversion, so the only full-size pixels held are the decoder's own).
    Also returns the full-size image's (EXIF-rotated) width and height."""
    width, height = img.size
    try:
        if max_side is not None and img.format == "JPEG" and max(img.size) > max_side:
            img.draft(img.mode, (max_side, max_side))  # DCT scaling: never holds the full size
        img.load()
        transpose = _ORIENTATIONS.get(img.getexif().get(0x0112, 1))
        if max_side is not None:
            img = _shrink(img, max_side)  # first: the transpose then copies the reduced image only
        if transpose is not None:
            img = img.transpose(transpose)  # a new image: the caller's own (a PIL input) is untouched
            if transpose in (Image.Transpose.TRANSPOSE, Image.Transpose.TRANSVERSE,
                             Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270):
                width, height = height, width
    except MemoryError:
        raise
    except Exception as exc:  # untrusted bytes: any decoder failure is the file's fault
        raise ImageError(f"corrupt or truncated image: {_reason(exc)}") from None
    return img, (width, height)


SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _shrink(img: Image.Image, max_side: int) -> Image.Image:
    """``img`` reduced by an integer factor (box filter: cheap and alias-free) to at most twice
    ``max_side``, then resized to it exactly. The reduction runs on bands of rows: Pillow's own
    reduce of a whole RGBA image makes a full-size premultiplied copy."""
    if max(img.size) <= max_side:
        return img
    factor = max(img.size) // max_side
    if factor <= 1:
        return _resize_longest(to_rgb(img) if img.mode in ("1", "P") + SIXTEEN_BIT else img, max_side)
    width, height = max(1, img.width // factor), max(1, img.height // factor)
    right, bottom = min(img.width, width * factor), min(img.height, height * factor)
    out = Image.new("RGB" if img.mode in ("1", "P") else img.mode, (width, height))
    rows = factor * max(1, 4 * 2**20 // (img.width * 4 * factor))  # about 4 MB per band
    for top in range(0, bottom, rows):
        band = img.crop((0, top, right, min(top + rows, bottom)))
        if band.mode in ("1", "P"):
            band = to_rgb(band)
        if band.mode in SIXTEEN_BIT:  # reduce lacks 16-bit modes; a box resize is the same filter
            band = band.resize((width, -(-band.height // factor)), Image.Resampling.BOX)
        else:
            band = band.reduce(factor)  # a partial last block (1-pixel images) counts as one
        out.paste(band, (0, top // factor))
    return _resize_longest(_sixteen_to_gray(out) if out.mode in SIXTEEN_BIT else out, max_side)


def _resize_longest(img: Image.Image, max_side: int) -> Image.Image:
    if max(img.size) <= max_side:
        return img
    scale = max_side / max(img.size)
    return img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                      Image.Resampling.BILINEAR)


def _reason(exc: BaseException) -> str:
    """A decoder's complaint in one line, without file names (an OSError's filename is a temp or
    internal path as often as the user's own)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = exc.strerror or type(exc).__name__
    else:
        text = str(exc)
    return " ".join(text.split())[:200] or type(exc).__name__


def _sixteen_to_gray(img: Image.Image) -> Image.Image:
    """16/32-bit gray to 8-bit "L", scaled by the image's maximum when it passes 255, a band of
    rows at a time: the only full-size copy made is the 8-bit result (no float64 image)."""
    arr = np.asarray(img)
    out = np.empty(arr.shape, np.uint8)
    hi = int(arr.max()) if arr.size else 0
    for top in range(0, arr.shape[0], 256):
        band = arr[top:top + 256]
        if hi > 255:
            band = band.astype(np.int64) * 255 // hi
        out[top:top + 256] = np.clip(band, 0, 255)
    return Image.fromarray(out, "L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit gray is scaled, alpha composited on white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        img = _sixteen_to_gray(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(source: ImageSource, color: str = "rgb", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` into an HxWx3 uint8 RGB array.

    ``color`` says how to read a numpy array: "rgb", "bgr" (OpenCV) or "gray".
    """
    if isinstance(source, np.ndarray):
        return array_to_rgb(source, color)
    if isinstance(source, Image.Image):
        return np.asarray(to_rgb(_decode(source)))
    return np.asarray(to_rgb(_decode(_open(source, max_pixels))))


def load_image_within(source: Readable, max_side: int,
                      max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Decode into RGB no larger than ``max_side`` on either side, for bounded memory.

    Returns the array, the scale from the decoded image's pixels to the original's (multiply a
    box by it) and the original (EXIF-rotated) width and height. Faces are found at a few hundred
    pixels and cropped to 48, so a 2,000-pixel copy finds and classifies what the full image does.
    """
    img, size = _decode_sized(_open(source, max_pixels), max_side)
    arr = _rgb_array(img)
    return arr, size[0] / arr.shape[1], size


def _rgb_array(img: Image.Image) -> np.ndarray:
    """``img`` as an HxWx3 uint8 array, without :func:`to_rgb`'s copy when it is RGB already."""
    return np.asarray(img if img.mode == "RGB" else to_rgb(img))


def load_gray(source: bytes | str | os.PathLike) -> np.ndarray:
    """Decode a file or bytes into an HxW uint8 grayscale array (FER data sets are gray)."""
    img = _decode(_open(source))
    if img.mode != "L":
        img = to_rgb(img).convert("L")
    return np.asarray(img)


def array_to_rgb(arr: np.ndarray, color: str = "rgb") -> np.ndarray:
    """Normalise a numpy image (gray HxW / HxWx1, RGB, BGR, with or without alpha) to RGB uint8."""
    if arr.size == 0 or arr.ndim not in (2, 3):
        raise ImageError(f"array of shape {arr.shape} is not an image")
    if color not in ("rgb", "bgr", "gray"):
        raise ValueError(f"color must be 'rgb', 'bgr' or 'gray', not {color!r}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        elif np.issubdtype(arr.dtype, np.integer) and arr.max(initial=0) > 255:
            arr = arr * (255.0 / arr.max())  # 16-bit images: scale, as the file path does
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    if arr.ndim == 2 or arr.shape[2] == 1:
        gray = arr.reshape(arr.shape[0], arr.shape[1])
        return np.repeat(gray[:, :, None], 3, axis=2)
    if arr.shape[2] not in (3, 4):
        raise ImageError(f"array with {arr.shape[2]} channels is not an image")
    arr = arr[:, :, :3]
    if color == "bgr":
        arr = arr[:, :, ::-1]
    elif color not in ("rgb", "gray"):
        raise ValueError(f"color must be 'rgb', 'bgr' or 'gray', not {color!r}")
    return np.ascontiguousarray(arr)
