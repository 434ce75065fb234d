"""Run ``python -m ferkit serve`` as a child process and wait until it is healthy.

Used by the tests and ``benchmarks/serve_load.py``, which must exercise the real server (uvicorn,
sockets, the CLI) rather than an in-process test client.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """The server on a free loopback port. Its output goes to a log file, not a pipe: a full pipe
    would block it under load."""

    def __init__(self, *args: str, startup_timeout: float = 300.0, cwd: str | Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        fd, name = tempfile.mkstemp(prefix="ferkit-serve-", suffix=".log")
        os.close(fd)
        self.log = Path(name)
        command = [sys.executable, "-m", "ferkit", "serve", "--port", str(self.port), *args]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        self._wait_healthy(startup_timeout)

    def _wait_healthy(self, timeout: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ferkit serve exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"ferkit serve not healthy after {timeout:.0f} s:\n{self.output()}")

    def output(self, tail: int = 5000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def stop(self) -> None:
        """Ask it to shut down (SIGTERM), kill it if it does not within 20 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def close(self) -> None:
        self.stop()
        self.log.unlink(missing_ok=True)

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
