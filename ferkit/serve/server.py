"""``ferkit serve``: check the arguments, then run the app under uvicorn (one or more workers)."""

from __future__ import annotations

import os
import resource
import sys

from ferkit.cpu import available_cores
from ferkit.errors import FerkitError, require
from ferkit.inference.detect import make_detector
from ferkit.runtime.loader import runnable
from ferkit.runtime.prior import parse_prior

SERVE_MODULES = ("fastapi", "uvicorn", "python_multipart")  # the serve extra


def worker_threads(workers: int) -> int:
    """Inference threads per worker so that N workers share the cores instead of oversubscribing them."""
    return max(1, available_cores() // workers)


# Connections one worker holds open at most; past it uvicorn answers 503 (overloaded).
DEFAULT_MAX_CONNECTIONS = 2048
API_KEY_ENV = "FERKIT_API_KEY"


def raise_open_file_limit(wanted: int) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (never above the hard
    limit), so that many idle connections exhaust the connection limit, not the descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def run_server(host: str = "127.0.0.1", port: int = 8000, model: str = "default", prior: str = "auto",
               workers: int = 1,
               max_upload_mb: float = 10.0, log_level: str = "info", detector: str = "yunet",
               api_key: str | None = None, allowed_hosts: list[str] | None = None,
               max_connections: int = DEFAULT_MAX_CONNECTIONS, header_timeout: float = 10.0,
               body_timeout: float = 60.0) -> None:
    """Serve until interrupted. Each worker process builds its own app (and model) from the env.

    ``api_key`` (default: the FERKIT_API_KEY environment variable) guards the API; without one
    on a non-loopback address a warning says that anyone who reaches the port can use it."""
    if not 0 <= port <= 65535:
        raise FerkitError(f"--port {port} is not a TCP port: give 1-65535 (0: any free port)")
    if workers < 1:
        raise FerkitError("--workers must be at least 1")
    if max_upload_mb <= 0:
        raise FerkitError("--max-upload-mb must be positive")
    if max_connections < 1:
        raise FerkitError("--max-connections must be at least 1")
    if header_timeout <= 0 or body_timeout <= 0:
        raise FerkitError("--header-timeout and --body-timeout must be positive (seconds)")
    require("ferkit serve", *SERVE_MODULES)
    runnable(model)  # an unknown or unrunnable model fails here in one line, not in each worker
    parse_prior(prior)
    make_detector(detector)  # so does a detector that cannot run here (Haar without OpenCV 4)
    import uvicorn

    from ferkit.serve.access import default_allowed_hosts, is_loopback
    from ferkit.serve.limits import MB

    key = os.environ.get(API_KEY_ENV, "") if api_key is None else api_key
    if not key and not is_loopback(host):
        print(f"warning: serving on {host} without an API key: anyone who can reach port {port} can "
              f"use the service; set {API_KEY_ENV} (or --api-key) or put an authenticating proxy in "
              "front", file=sys.stderr)
    raise_open_file_limit(max_connections + 256)
    os.environ[API_KEY_ENV] = key
    os.environ["FERKIT_SERVE_ALLOWED_HOSTS"] = ",".join(allowed_hosts or default_allowed_hosts(host))
    os.environ["FERKIT_SERVE_HEADER_TIMEOUT"] = str(header_timeout)
    os.environ["FERKIT_SERVE_BODY_TIMEOUT"] = str(body_timeout)
    os.environ["FERKIT_SERVE_MODEL"] = model
    os.environ["FERKIT_SERVE_PRIOR"] = prior
    os.environ["FERKIT_SERVE_DETECTOR"] = detector
    os.environ["FERKIT_SERVE_MAX_UPLOAD_BYTES"] = str(int(max_upload_mb * MB))
    os.environ["FERKIT_SERVE_THREADS"] = str(worker_threads(workers)) if workers > 1 else "0"
    uvicorn.run("ferkit.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, http="ferkit.serve.protocol:DeadlineH11Protocol",
                limit_concurrency=max_connections + 1)  # uvicorn counts the asking connection too
