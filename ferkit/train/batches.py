"""Training batches: indexing, augmentation and conversion, prepared ahead of the step.

Preparing a batch (gather 128 faces, augment them, convert to the model's layout) takes a tenth
or so of a step on a 2-core CPU. A :class:`Prefetcher` runs it in a thread while the step runs,
so the step never waits for it. The batches come out in the same order with the same random
draws as a sequential loop (one thread draws from the epoch's generator, in order), so a resumed
run still replays an epoch exactly.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from ferkit.data import FerData
from ferkit.models.preprocess import to_model_input
from ferkit.train.augment import augment_batch, cutmix_batch
from ferkit.train.config import TrainConfig


@dataclass
class Faces:
    """A split as tensors that share the arrays' memory: what the loop indexes."""

    images: torch.Tensor  # (N, 48, 48) uint8
    labels: torch.Tensor  # (N,) int64
    targets: torch.Tensor | None = None  # (N, 7) float32 label distributions (FER+ votes)

    def __len__(self) -> int:
        return len(self.labels)


def as_tensors(data: FerData) -> Faces:
    """A :class:`~ferkit.data.FerData` as tensors, without copying."""
    return Faces(torch.from_numpy(data.images), torch.from_numpy(data.labels),
                 None if data.targets is None else torch.from_numpy(data.targets))


@dataclass
class Batch:
    idx: torch.Tensor  # rows of the training split (for cached teacher logits)
    x: torch.Tensor  # augmented model input
    y: torch.Tensor  # majority labels (accuracy)
    target: torch.Tensor  # what the loss fits: labels, or FER+ vote distributions
    partner: torch.Tensor | None = None  # CutMix partners and own area fractions
    own: torch.Tensor | None = None


def epoch_batches(
    train: Faces, cfg: TrainConfig, gen: torch.Generator, rows: slice, device: torch.device,
    channels_last: bool,
) -> Iterator[Batch]:
    """The epoch's full batches in order (the last partial batch is dropped: fixed shapes).
    ``rows``: this DDP rank's part of each global batch."""
    perm = torch.randperm(len(train), generator=gen)
    for step in range(len(train) // cfg.batch_size):
        idx = perm[step * cfg.batch_size : (step + 1) * cfg.batch_size][rows]
        x = to_model_input(train.images[idx].to(device))  # augmented where the model runs
        x = augment_batch(x, cfg.augment, gen, rows=rows, n_total=cfg.batch_size)
        y = train.labels[idx].to(device)
        # FER+ runs fit the vote distributions; accuracy is counted against the majority label.
        target = y if train.targets is None else train.targets[idx].to(device)
        partner = own = None
        if cfg.augment.cutmix > 0:
            x, partner, own = cutmix_batch(x, gen, cfg.augment.cutmix, rows=rows, n_total=cfg.batch_size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        yield Batch(idx, x, y, target, partner, own)


_DONE = object()


class Prefetcher:
    """Iterates ``batches`` in a background thread, ``depth`` batches ahead.

    The thread runs PyTorch ops with one intra-op thread (OpenMP's thread count is per calling
    thread), leaving the step its own threads. An exception in the thread is raised in the
    consumer; :meth:`close` stops the thread when the consumer leaves early.
    """

    def __init__(self, batches: Iterator[Batch], depth: int = 2, threads: int = 1) -> None:
        self._batches = batches
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._threads = threads
        self._thread = threading.Thread(target=self._run, name="ferkit-batches", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        torch.set_num_threads(self._threads)
        try:
            for batch in self._batches:
                if not self._put(batch):
                    return
            self._put(_DONE)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._put(exc)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        item = self._queue.get()
        if item is _DONE:
            self._stop.set()
            raise StopIteration
        if isinstance(item, BaseException):
            self._stop.set()
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
