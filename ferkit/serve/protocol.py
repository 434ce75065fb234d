"""Uvicorn's h11 protocol with read deadlines, so slow and stalled clients are cut off.

Uvicorn has a keep-alive timeout but no deadline for reading a request: a client that sends its
headers a byte a second, or stops half-way through a 10 MB body, holds its connection, socket and
buffered body forever. Here each request must arrive whole in time: its headers within
``header_timeout`` seconds of the connection opening (or of the previous response), its body
within ``body_timeout`` seconds of the headers. A late client gets a 408 and the connection
closes; the app sees a disconnect and frees what the request held (temp files included).

The timeouts come from the environment (``FERKIT_SERVE_HEADER_TIMEOUT``,
``FERKIT_SERVE_BODY_TIMEOUT``), set by ``ferkit serve``, because uvicorn builds one protocol per
connection from a class path in each worker process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("ferkit.serve")

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0


def _seconds(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def timeout_response(what: str) -> bytes:
    """A complete HTTP/1.1 408 with a JSON ``detail``, written raw: h11 cannot send a response
    before it has parsed a request, and the headers may be half-read."""
    body = json.dumps({"detail": f"request timeout: the {what} did not arrive in time"}).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n")
    return head + body


class DeadlineH11Protocol(H11Protocol):
    """One connection; a timer runs while a request is being read and closes it when late."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = _seconds("FERKIT_SERVE_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT)
        self.body_timeout = _seconds("FERKIT_SERVE_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT)
        self._deadline: asyncio.TimerHandle | None = None
        self._reading = ""  # what the timer waits for: "headers", "body" or "" (nothing)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._sync_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._sync_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start the next cycle and parse a pipelined request
        self._sync_deadline()

    def _sync_deadline(self) -> None:
        """Keep the timer for what the client owes now, by h11's state of the connection: the
        next request's headers (both sides idle), its body (their side sending one), or nothing
        (the request is in and the app answers). A timer already running for the same thing is
        left alone: its deadline counts from when the wait began, not from the last byte."""
        if self.transport.is_closing():
            self._disarm()
            return
        theirs, ours = self.conn.their_state, self.conn.our_state
        if theirs is h11.IDLE and ours is h11.IDLE:
            wanted = "headers"
        elif theirs is h11.SEND_BODY:
            wanted = "body"
        else:
            wanted = ""
        if wanted != self._reading:
            self._disarm()
            if wanted:
                self._arm(wanted)

    def _arm(self, what: str) -> None:
        self._reading = what
        seconds = self.header_timeout if what == "headers" else self.body_timeout
        self._deadline = self.loop.call_later(seconds, self._too_late)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._reading = ""

    def _too_late(self) -> None:
        what, self._deadline = self._reading, None
        if not what or self.transport.is_closing():
            return
        self._reading = ""
        log.debug("closing %s: the request %s did not arrive in time", self.client, what)
        if what == "headers" or self.cycle is None or not self.cycle.response_started:
            self.transport.write(timeout_response(what))
        self.transport.close()
