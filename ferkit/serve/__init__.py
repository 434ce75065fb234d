"""The HTTP service: a FastAPI app (REST API + a static web page) run under uvicorn.

``ferkit serve`` calls :func:`ferkit.serve.server.run_server`; tests and embedders can build the
app directly with :func:`ferkit.serve.app.create_app`. Imports are lazy so that the CLI does not
pay for FastAPI unless it serves.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "run_server"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from ferkit.serve.app import create_app

        return create_app
    if name == "run_server":
        from ferkit.serve.server import run_server

        return run_server
    raise AttributeError(f"module 'ferkit.serve' has no attribute {name!r}")
