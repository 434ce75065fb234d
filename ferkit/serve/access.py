"""Who may use the service: an optional API key and a check of the Host header.

The key guards the API (``/v1/...``); the page, its static files, ``/healthz`` and the API docs
stay open so a browser can load the page and ask for the key, and a load balancer can probe.
A client sends the key as ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``.

The Host check refuses requests addressed to a name the service does not answer to. On a
loopback address it allows only loopback names, which defeats DNS rebinding: a web page on
another site cannot make the user's browser talk to the local service under its own name.
Both refusals are JSON ``detail``s, like every other refusal of the service.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PREFIXES = ("/static/",)
OPEN_PATHS = frozenset({"/", "/favicon.ico", "/healthz", "/docs", "/openapi.json"})
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the service on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def default_allowed_hosts(bind_host: str) -> list[str]:
    """Loopback names when bound to loopback, any name otherwise (a proxy usually checks it)."""
    return [*LOOPBACK_NAMES, bind_host] if is_loopback(bind_host) else ["*"]


def host_name(header: str) -> str:
    """The name part of a Host header: no port, no IPv6 brackets, lower case."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return ""


def presented_key(scope: Scope) -> bytes:
    """The key a request carries, as sent, from X-API-Key or an Authorization: Bearer header."""
    key = _header(scope, b"x-api-key")
    if key:
        return key.strip().encode("latin-1")
    scheme, _, token = _header(scope, b"authorization").partition(" ")
    return token.strip().encode("latin-1") if scheme.lower() == "bearer" else b""


class AccessMiddleware:
    """ASGI middleware: 400 for a Host not served here, 401 for the API without the key."""

    def __init__(self, app: ASGIApp, api_key: str = "", allowed_hosts: Sequence[str] = ("*",)) -> None:
        self.app = app
        self.api_key = api_key.strip().encode()  # HTTP headers carry bytes: UTF-8 keys as UTF-8
        self.allowed = [h.lower() for h in allowed_hosts]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not self._host_allowed(_header(scope, b"host")):
            await _refuse(send, 400, "this service does not answer to that Host header "
                                     "(ferkit serve --allowed-hosts)")
            return
        if self.api_key and self._guarded(scope["path"]) and not self._key_matches(scope):
            await _refuse(send, 401, "missing or wrong API key: send it as 'X-API-Key: KEY' or "
                                     "'Authorization: Bearer KEY'", [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)

    def _host_allowed(self, header: str) -> bool:
        if "*" in self.allowed:
            return True
        name = host_name(header)
        return any(name == h or (h.startswith("*.") and name.endswith(h[1:])) for h in self.allowed)

    @staticmethod
    def _guarded(path: str) -> bool:
        return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)

    def _key_matches(self, scope: Scope) -> bool:
        return hmac.compare_digest(presented_key(scope), self.api_key)


async def _refuse(send: Send, status: int, detail: str,
                  extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *extra]})
    await send({"type": "http.response.body", "body": body})
