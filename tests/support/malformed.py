"""Hostile and broken requests the service must refuse with a 4xx and a JSON reason.

One catalogue shared by the tests and ``benchmarks/serve_load.py``, so both exercise the same
cases: random bytes, truncated JPEG/PNG, decompression bombs (huge declared dimensions with a
tiny body), wrong content types, empty bodies, broken multipart and oversized bodies.
Each case is plain bytes plus headers, so any HTTP client can send it.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

BOUNDARY = "ferkit-malformed-boundary"


@dataclass
class BadRequest:
    """One request to send: ``expect`` lists the acceptable status codes."""

    kind: str
    body: bytes
    content_type: str | None
    path: str = "/v1/predict"
    method: str = "POST"
    expect: tuple[int, ...] = (422,)
    headers: dict[str, str] = field(default_factory=dict)

    def all_headers(self) -> dict[str, str]:
        if self.content_type is None:
            return dict(self.headers)
        return {"content-type": self.content_type, **self.headers}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes that declare width x height pixels (10 gigapixels by default)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * 1024, 9)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat)
            + _png_chunk(b"IEND", b""))


def bomb_jpeg(jpeg: bytes, width: int = 65_000, height: int = 65_000) -> bytes:
    """A real JPEG whose frame header (SOF0) is rewritten to declare width x height."""
    sof = jpeg.index(b"\xff\xc0")
    # SOF0: marker(2) length(2) precision(1) height(2) width(2)
    return jpeg[:sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9:]


def multipart(parts: list[tuple[str, str | None, bytes, str | None]],
              boundary: str = BOUNDARY) -> tuple[bytes, str]:
    """(body, content type) for parts of (field, filename or None, data, content type or None)."""
    out = io.BytesIO()
    for name, filename, data, ctype in parts:
        out.write(f"--{boundary}\r\n".encode())
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out.write(f"Content-Disposition: {disposition}\r\n".encode())
        if ctype:
            out.write(f"Content-Type: {ctype}\r\n".encode())
        out.write(b"\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def sample_photos(size: tuple[int, int] = (320, 240), seed: int = 0) -> dict[str, bytes]:
    """A small synthetic JPEG and PNG to break in various ways (content does not matter)."""
    rng = random.Random(seed)
    img = Image.frombytes("RGB", size, bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3)))
    photos = {}
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        img.save(buf, fmt)
        photos[fmt.lower()] = buf.getvalue()
    return photos


def _truncated(data: bytes, rng: random.Random) -> bytes:
    return data[: max(8, int(len(data) * rng.uniform(0.05, 0.8)))]


def _noise(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1, 64 * 1024))


def _catalogue(rng: random.Random, photos: dict[str, bytes],
               max_upload_bytes: int) -> list[Callable[[], BadRequest]]:
    """One maker per kind of bad request, each randomised by ``rng`` when called."""
    jpeg, png = photos["jpeg"], photos["png"]
    return [
        lambda: BadRequest("random bytes (raw)", _noise(rng), "image/jpeg"),
        lambda: BadRequest("random bytes (multipart)",
                           *multipart([("file", "x.jpg", _noise(rng), "image/jpeg")])),
        lambda: BadRequest("truncated JPEG", _truncated(jpeg, rng), "image/jpeg"),
        lambda: BadRequest("truncated PNG", _truncated(png, rng), "image/png"),
        lambda: BadRequest("PNG with corrupt pixel data",
                           png[:60] + rng.randbytes(len(png) - 72) + png[-12:], "image/png"),
        lambda: BadRequest("PPM with a broken header", b"P6\n25`\n40\n255\n" + _noise(rng),
                           "image/x-portable-pixmap"),
        lambda: BadRequest("decompression bomb PNG", bomb_png(), "image/png"),
        lambda: BadRequest("decompression bomb JPEG", bomb_jpeg(jpeg), "image/jpeg"),
        lambda: BadRequest("empty body", b"", "image/jpeg"),
        lambda: BadRequest("empty body, no content type", b"", None),
        lambda: BadRequest("empty file (multipart)", *multipart([("file", "empty.jpg", b"", "image/jpeg")])),
        lambda: BadRequest("wrong content type (text/plain)", jpeg, "text/plain", expect=(415,)),
        lambda: BadRequest("wrong content type (application/json)", b'{"image": 1}', "application/json",
                           expect=(415,)),
        lambda: BadRequest("form without a file", *multipart([("note", None, b"hello", None)])),
        lambda: BadRequest("multipart without boundary", b"--x\r\n\r\n", "multipart/form-data",
                           expect=(400,)),
        lambda: BadRequest("broken multipart", _noise(rng), f"multipart/form-data; boundary={BOUNDARY}",
                           expect=(400, 422)),
        lambda: BadRequest("oversized body", b"\xff\xd8" + b"\0" * max_upload_bytes, "image/jpeg",
                           expect=(413,)),
        lambda: BadRequest("batch with wrong content type", jpeg, "image/jpeg", path="/v1/predict/batch",
                           expect=(415,)),
        lambda: BadRequest("GET on a POST route", b"", None, method="GET", expect=(405,)),
    ]


def malformed_requests(count: int, max_upload_bytes: int, seed: int = 0,
                       include_oversized: bool = True) -> list[BadRequest]:
    """``count`` bad requests cycling through every kind (oversized ones are optional: they are big)."""
    rng = random.Random(seed)
    makers = _catalogue(rng, sample_photos(seed=seed), max_upload_bytes)
    requests: list[BadRequest] = []
    case = 0
    while len(requests) < count:
        request = makers[case % len(makers)]()
        case += 1
        if include_oversized or request.kind != "oversized body":
            requests.append(request)
    return requests
