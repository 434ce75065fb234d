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

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ferkit.errors import ImageError

# Image file names the loaders and `ferkit predict` pick up from folders.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}
)

# The Pillow formats ferkit decodes (the IMAGE_SUFFIXES above; .pgm/.ppm are Pillow's PPM). Nothing
# else is even identified: EPS/PS would run Ghostscript, and other plugins are rarely exercised.
PIL_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

# Refuse images above this many pixels before decoding them (a 40-megapixel photo is fine).
MAX_PIXELS = 80_000_000

ImageSource = str | os.PathLike | bytes | Image.Image | np.ndarray


def _open(data: bytes | str | os.PathLike) -> Image.Image:
    if isinstance(data, bytes):
        if not data:
            raise ImageError("empty file (0 bytes)")
        fp: object = io.BytesIO(data)
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
    if w * h > MAX_PIXELS:
        raise ImageError(f"image dimensions too large ({w}x{h} pixels, limit {MAX_PIXELS:,})")
    return img


def _decode(img: Image.Image) -> Image.Image:
    try:
        img.load()
        img = ImageOps.exif_transpose(img)
    except MemoryError:
        raise
    except Exception as exc:  # untrusted bytes: any decoder failure is the file's fault
        raise ImageError(f"corrupt or truncated image: {_reason(exc)}") from None
    return img


def _reason(exc: BaseException) -> str:
    """A decoder's complaint in one line, without file names (an OSError's filename is a temp or
    internal path as often as the user's own)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = exc.strerror or type(exc).__name__
    else:
        text = str(exc)
    return " ".join(text.split())[:200] or type(exc).__name__


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB (16-bit gray is scaled, alpha composited on white)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() if arr.size else 1.0
        arr = arr * (255.0 / hi) if hi > 255 else arr
        img = Image.fromarray(arr.clip(0, 255).astype(np.uint8), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB")


def load_image(source: ImageSource, color: str = "rgb") -> np.ndarray:
    """Decode ``source`` into an HxWx3 uint8 RGB array.

    ``color`` says how to read a numpy array: "rgb", "bgr" (OpenCV) or "gray".
    """
    if isinstance(source, np.ndarray):
        return array_to_rgb(source, color)
    if isinstance(source, Image.Image):
        return np.asarray(to_rgb(_decode(source)))
    return np.asarray(to_rgb(_decode(_open(source))))


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
