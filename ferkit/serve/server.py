"""``ferkit serve``: check the arguments, then run the app under uvicorn (one or more workers)."""

from __future__ import annotations

import os

from ferkit.cpu import available_cores
from ferkit.errors import FerkitError, require
from ferkit.inference.detect import make_detector
from ferkit.runtime.loader import runnable

SERVE_MODULES = ("fastapi", "uvicorn", "python_multipart")  # the serve extra


def worker_threads(workers: int) -> int:
    """Inference threads per worker so that N workers share the cores instead of oversubscribing them."""
    return max(1, available_cores() // workers)


def run_server(host: str = "127.0.0.1", port: int = 8000, model: str = "default", workers: int = 1,
               max_upload_mb: float = 10.0, log_level: str = "info", detector: str = "yunet") -> None:
    """Serve until interrupted. Each worker process builds its own app (and model) from the env."""
    if not 0 <= port <= 65535:
        raise FerkitError(f"--port {port} is not a TCP port: give 1-65535 (0: any free port)")
    if workers < 1:
        raise FerkitError("--workers must be at least 1")
    if max_upload_mb <= 0:
        raise FerkitError("--max-upload-mb must be positive")
    require("ferkit serve", *SERVE_MODULES)
    runnable(model)  # an unknown or unrunnable model fails here in one line, not in each worker
    make_detector(detector)  # so does a detector this OpenCV cannot run (Haar on OpenCV 5)
    import uvicorn

    from ferkit.serve.limits import MB

    os.environ["FERKIT_SERVE_MODEL"] = model
    os.environ["FERKIT_SERVE_DETECTOR"] = detector
    os.environ["FERKIT_SERVE_MAX_UPLOAD_BYTES"] = str(int(max_upload_mb * MB))
    os.environ["FERKIT_SERVE_THREADS"] = str(worker_threads(workers)) if workers > 1 else "0"
    uvicorn.run("ferkit.serve.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level)
