"""Dynamic batching of face crops across the requests in flight (Triton-style: a max batch, a
max wait).

Every request's crops go into one queue; one classifier thread takes what is there, waits at
most ``max_wait_s`` for more while other requests are still being decoded and detected (it
does not wait when none are), and runs the whole lot as one forward pass. Each request gets
back its own rows. The call it batches is the service's shared classifier (the card's
temperature and the service's prior, the same for every request); what a request changes
(``?prior=``) is applied to its own rows afterwards (:meth:`ferkit.serve.engine.Engine.reweigh`).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

# Faces per forward pass at most: a batch this size runs in ~10 ms on one core, so a crowd
# photo does not hold the next requests' faces behind it for long.
MAX_BATCH_FACES = 64
# How long the first crops of a batch wait for others: a few ms against the ~10 ms a photo
# spends in decoding and detection.
MAX_WAIT_S = 0.003


@dataclass
class BatchResult:
    """One request's rows of a shared forward pass, and what that pass was."""

    probabilities: np.ndarray  # (N, 7), this request's faces only
    batch_faces: int  # faces in the whole forward pass
    batch_requests: int  # requests whose faces shared it
    wait_s: float  # from submit to the start of the pass
    run_s: float  # the forward pass itself


@dataclass
class _Item:
    crops: np.ndarray
    future: Future[BatchResult]
    submitted: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers crops submitted from any thread into shared ``classify`` calls on one thread.

    ``more_coming``: whether other requests are about to submit (still decoding or detecting);
    while it says no, a batch runs at once instead of waiting out ``max_wait_s``.
    """

    def __init__(self, classify: Callable[[np.ndarray], np.ndarray],
                 more_coming: Callable[[], bool] = lambda: True,
                 max_batch: int = MAX_BATCH_FACES, max_wait_s: float = MAX_WAIT_S) -> None:
        self._classify = classify
        self._more_coming = more_coming
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._held: _Item | None = None  # taken from the queue, but it would overfill the last pass

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="ferkit-batcher", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Finish the queued batches, then stop the thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def submit(self, crops: np.ndarray) -> Future[BatchResult]:
        """This request's (N, 48, 48) uint8 crops; the future gives their (N, 7) probabilities."""
        if self._thread is None:
            raise RuntimeError("MicroBatcher.start() has not run")
        future: Future[BatchResult] = Future()
        self._queue.put(_Item(crops, future))
        return future

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """The items of one pass, starting with ``first``; True once the queue says stop."""
        batch, faces = [first], len(first.crops)
        deadline = first.submitted + self.max_wait_s
        while faces < self.max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or not self._more_coming():
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is None:
                return batch, True
            if faces + len(item.crops) > self.max_batch:
                self._held = item  # first in the next pass
                break
            batch.append(item)
            faces += len(item.crops)
        return batch, False

    def _serve(self) -> None:
        while True:
            first, self._held = self._held or self._queue.get(), None
            if first is None:
                return
            batch, stopping = self._gather(first)  # a held item never comes with the stop
            self._run(batch)
            if stopping:
                return

    def _run(self, batch: list[_Item]) -> None:
        start = time.perf_counter()
        try:
            probs = self._classify(np.concatenate([item.crops for item in batch]))
        except BaseException as exc:  # every waiting request hears of it, none hangs
            for item in batch:
                item.future.set_exception(exc)
            return
        run_s = time.perf_counter() - start
        row = 0
        for item in batch:
            rows = probs[row: row + len(item.crops)]
            row += len(item.crops)
            item.future.set_result(BatchResult(rows, len(probs), len(batch), start - item.submitted, run_s))
