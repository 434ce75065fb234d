"""Shared fixtures: where the shared data lives, and a real ``ferkit serve`` on a loopback port.

Add fixtures here in small, separate blocks; tests for one area keep their own helpers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.launch import ServerProcess

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- shared data

def shared_dir() -> Path:
    """``$FERKIT_SHARED`` or the ``shared/`` folder beside the repository."""
    return Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared() -> Path:
    path = shared_dir()
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (set FERKIT_SHARED)")
    return path


def shared_file(shared: Path, *parts: str) -> Path:
    """A file under the shared data folder, or a skip that says which one is missing."""
    path = shared.joinpath("data", *parts)
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return path


@pytest.fixture(scope="session")
def astronaut_png(shared: Path) -> Path:
    """A real photo with one smiling face."""
    return shared_file(shared, "photos", "astronaut.png")


# ---------------------------------------------------------------- a real server

@pytest.fixture(scope="session")
def ferkit_server() -> Iterator[ServerProcess]:
    """One ``python -m ferkit serve`` subprocess for the whole session (loading the model is the
    slow part), with the default limits."""
    with ServerProcess(cwd=REPO) as server:
        yield server


# ---------------------------------------------------------------- recognition

@pytest.fixture(scope="session")
def recognizer():
    """The default model with the default (YuNet) detector and backend (onnxruntime), loaded once."""
    from ferkit.inference import Recognizer

    return Recognizer()


# ---------------------------------------------------------------- FER2013 slices

@pytest.fixture(scope="session")
def fer_csv(shared: Path) -> Path:
    return shared_file(shared, "fer2013", "fer2013.csv.gz")


@pytest.fixture(scope="session")
def fer_tarball(shared: Path) -> Path:
    return shared_file(shared, "fer2013", "fer2013-images.tar.gz")


@pytest.fixture(scope="session")
def fer_slice_csv(fer_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real slice of the challenge CSV: 640 Training, 128 PublicTest, 128 PrivateTest rows."""
    from ferkit.data.slices import slice_challenge_csv

    out = tmp_path_factory.mktemp("fer") / "fer_slice.csv"
    slice_challenge_csv(fer_csv, out, {"Training": 640, "PublicTest": 128, "PrivateTest": 128})
    return out


def run_ferkit(*args: str, timeout: float = 600, **kwargs):
    """Run ``python -m ferkit`` as a real subprocess from the repository root."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "ferkit", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, **kwargs)


def corrupt_gzip(source: Path, target: Path) -> Path:
    """``source`` gzipped into ``target`` with its first deflate block broken (a zlib.error)."""
    import gzip

    packed = bytearray(gzip.compress(source.read_bytes()))
    packed[10:20] = b"\xff" * 10  # "invalid block type"
    target.write_bytes(bytes(packed))
    return target
