"""Request-size limits enforced while the body streams in, never after buffering it whole.

A declared ``Content-Length`` over the limit is refused before one body byte is read; a chunked
body is counted as it arrives and refused as soon as it passes the limit. Both give a JSON 413.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MB = 1024 * 1024
# Room for multipart boundaries and part headers around a file of the maximum size.
MULTIPART_OVERHEAD = 64 * 1024


class PayloadTooLarge(HTTPException):
    """413 with a reason; raised from ``receive`` so any body reader (stream, form) stops at once."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


@dataclass(frozen=True)
class BodyLimit:
    """Most bytes a route's body may have, and what to tell a client that sends more."""

    max_bytes: int
    detail: str


def describe_bytes(n: int) -> str:
    return f"{n / MB:g} MB" if n >= MB else f"{n:,} bytes"


class BodyLimitMiddleware:
    """ASGI middleware capping each request body at ``limit_for(path)`` (None: no cap)."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], BodyLimit | None]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope["path"]) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _send_json(send, 400, "invalid Content-Length header")
            return
        if declared is not None and declared > limit.max_bytes:
            await _send_json(send, 413, limit.detail)
            return
        await self.app(scope, _counting_receive(receive, limit), send)


def _content_length(scope: Scope) -> int | None:
    """The declared length, None when absent (chunked), -1 when malformed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return -1
            return length if length >= 0 else -1
    return None


def _counting_receive(receive: Receive, limit: BodyLimit) -> Receive:
    seen = 0

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit.max_bytes:
                raise PayloadTooLarge(limit.detail)
        return message

    return counted


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
