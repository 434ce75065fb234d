"""onnxruntime inference on ferkit graphs (:mod:`ferkit.runtime.graph`: uint8 faces in,
probabilities out). No PyTorch."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ferkit.cpu import available_cores
from ferkit.errors import FerkitError
from ferkit.runtime.backends import Run, in_batches
from ferkit.runtime.graph import INPUT_NAME

# Faces per onnxruntime run: small enough that a run's activations stay in a core's cache, large
# enough to amortise the call. benchmarks/onnx_threading.py, batch 64 on two cores: `paper` 8,320
# crops/s in runs of 1 face, 9,713-10,276 in runs of 4-16, 7,994 in runs of 32; the full-width
# `large` 3,048, 3,131-3,231 in runs of 2-8, 2,325 in runs of 32.
CHUNK = 8


def default_threads() -> int:
    """The cores this process may use, at most 8 (a batch of 64 faces is 8 chunks)."""
    return min(8, available_cores())


def chunk_size(faces: int, threads: int, chunk: int = CHUNK) -> int:
    """Faces per run: at most ``chunk``, fewer when that spreads a small batch over all threads."""
    return max(1, min(chunk, -(-faces // threads)))


class OnnxBackend:
    """An onnxruntime CPU session that runs a batch as chunks of faces, ``threads`` at a time.

    ferkit's networks are too small for onnxruntime's own threading, which splits every
    operator across the cores and joins them after it. One thread per run, with runs over
    separate chunks in parallel, classified 9,713 crops/s of the `paper` graph at batch 64 on two
    cores against 7,317 with two intra-op threads (10,000 against 5,060 at batch 256; the
    full-width `large` 3,197 against 2,085; benchmarks/onnx_threading.py). A single face runs
    on one thread (4,947 a second against 3,953). Idle threads sleep instead of spinning: beside
    two busy processes spinning intra-op threads fell to 2,859 at batch 64, ferkit's chunks gave
    5,351 (``--busy 2``).
    ``chunk`` caps the faces per run.
    """

    def __init__(self, graph: bytes | str | Path, threads: int | None = None, *, chunk: int = CHUNK) -> None:
        import onnxruntime as ort

        if (threads is not None and threads < 1) or chunk < 1:
            raise FerkitError(f"threads and chunk must be at least 1, not {threads} and {chunk}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = str(graph) if isinstance(graph, Path) else graph
        try:
            self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise FerkitError(f"cannot load ONNX model: {exc}") from None
        self.threads = threads or default_threads()
        self.chunk = chunk
        self._pool: ThreadPoolExecutor | None = None
        self._pool_pid = 0

    def metadata(self) -> dict[str, str]:
        """The graph's metadata (:func:`ferkit.runtime.graph.graph_metadata`)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def _run(self, faces: np.ndarray) -> np.ndarray:
        return self._session.run(None, {INPUT_NAME: faces})[0]

    def _executor(self) -> ThreadPoolExecutor:
        """The thread pool, made anew in a forked child (which inherits the pool but not its threads)."""
        if self._pool is None or self._pool_pid != os.getpid():
            # onnxruntime releases the GIL inside a run, and one session serves concurrent runs.
            self._pool, self._pool_pid = ThreadPoolExecutor(self.threads, "ferkit-onnx"), os.getpid()
        return self._pool

    def _map(self, run: Run, chunks: list[np.ndarray]) -> Iterator[np.ndarray]:
        """``run`` over the chunks, ``threads`` at a time (one chunk: in the calling thread)."""
        if self.threads == 1 or len(chunks) <= 1:
            return map(run, chunks)
        try:
            return self._executor().map(run, chunks)  # submits every chunk before it returns
        except RuntimeError:  # the interpreter is exiting and executors take no more work
            return map(run, chunks)

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        return in_batches(faces, self._run, chunk_size(len(faces), self.threads, self.chunk), self._map)
