"""Photos on Ray Data: the driver lists them as ``ferkit predict`` does; a read stage loads each
file's bytes; a detect-and-classify stage, one actor per worker with one Recognizer, decodes,
finds the faces and classifies them a batch at a time, and returns ``ferkit predict --csv``'s
rows. The read stage is fused into the actors' processes by Ray (same resources), so bytes
never pass through the object store on their way to the model.

A file that cannot be read or decoded is one row with its ``error``, as in ``ferkit predict``;
the job goes on. Ray retries the task of a worker that dies and only a finished task's block is
kept, so a retried batch is neither lost nor counted twice.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import ray
import ray.data

from ferkit.batch.engine import model_for_workers, pool, schema, setup_worker, to_table, worker_count
from ferkit.errors import FerkitError, ImageError
from ferkit.inference.detect import make_detector
from ferkit.inference.files import CHUNK, CSV_FIELDS, error_row, expand_inputs, face_rows
from ferkit.runtime.loader import runnable
from ferkit.runtime.prior import parse_prior

if TYPE_CHECKING:
    from ferkit.inference.recognizer import FoundFaces

ROW_SCHEMA = schema(CSV_FIELDS)
READ_SCHEMA = pa.schema([("source", pa.string()), ("data", pa.large_binary()), ("error", pa.string())])


def predict_dataset(
    paths: str | Sequence[str],
    *,
    model: str | os.PathLike = "default",
    detector: str | None = "yunet",
    detect: bool = True,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    batch_size: int = CHUNK,
    prior: str = "auto",
) -> ray.data.Dataset:
    """A lazy Dataset of ``ferkit predict --csv`` rows for files, folders and globs (a folder's
    skipped entries are said on stderr). ``workers``: actors, default as many as the cluster's
    CPUs hold at ``cpus_per_worker`` each. Nothing runs until the dataset is consumed."""
    runnable(model, "onnx")  # an unknown model is a one-line error here, not one per worker
    parse_prior(prior)
    make_detector(detector if detect else None)
    listed = [{"source": i.path, "path": os.path.abspath(i.path), "error": i.error or None}
              for i in expand_inputs([paths] if isinstance(paths, str) else list(paths))]
    if not listed:
        raise FerkitError("no inputs given")
    n = worker_count(workers, cpus_per_worker)
    # A block per batch, and at least one per worker while there are files to share.
    blocks = max(1, min(len(listed), max(math.ceil(len(listed) / batch_size), n)))
    size = math.ceil(len(listed) / blocks) or 1
    ds = ray.data.from_items(listed, override_num_blocks=blocks)
    ds = ds.map_batches(read_files, batch_format="pyarrow", batch_size=size, num_cpus=cpus_per_worker)
    return ds.map_batches(
        PhotoPredictor, batch_format="pyarrow", batch_size=size, compute=pool(min(n, blocks)),
        num_cpus=cpus_per_worker,
        fn_constructor_kwargs={"model": model_for_workers(model), "detector": detector if detect else None,
                               "cpus": cpus_per_worker, "prior": prior})


def read_files(batch: pa.Table) -> pa.Table:
    """The read stage: each listed file's bytes, or why it has none."""
    rows = [_read_one(row) for row in batch.to_pylist()]
    return pa.Table.from_pylist(rows, schema=READ_SCHEMA)


def _read_one(row: dict[str, Any]) -> dict[str, Any]:
    if row["error"]:
        return {"source": row["source"], "error": row["error"]}
    try:
        return {"source": row["source"], "data": Path(row["path"]).read_bytes()}
    except FileNotFoundError:
        return {"source": row["source"], "error": "no such file"}
    except IsADirectoryError:
        return {"source": row["source"], "error": "is a directory, not an image"}
    except OSError as exc:
        return {"source": row["source"], "error": f"cannot read file: {exc.strerror or exc}"}


class PhotoPredictor:
    """The detect-and-classify stage: one per worker actor, one Recognizer loaded once."""

    def __init__(self, model: str, detector: str | None, cpus: float, prior: str = "auto") -> None:
        from ferkit.inference.recognizer import Recognizer

        self.detect = detector is not None
        self.recognizer = Recognizer(model, detector=detector, threads=setup_worker(cpus), prior=prior)

    def __call__(self, batch: pa.Table) -> pa.Table:
        items = batch.to_pylist()
        loaded = [self._load(item) for item in items]
        preds = iter(self.recognizer.classify_found([f for f in loaded if not isinstance(f, str)]))
        rows: list[dict[str, Any]] = []
        for item, found in zip(items, loaded, strict=True):
            if isinstance(found, str):
                rows.append(error_row(item["source"], found))
                continue
            pred = next(preds)
            pred.source = item["source"]
            rows.extend(face_rows(pred))
        return to_table(rows, ROW_SCHEMA)

    def _load(self, item: dict[str, Any]) -> FoundFaces | str:
        """The file's faces, or why it has none (as ``ferkit predict``'s loader: never raises)."""
        if item["error"]:
            return item["error"]
        try:
            return self.recognizer.find_faces(item["data"], detect=self.detect)
        except ImageError as exc:
            return str(exc)
        except Exception as exc:  # a decoder bug must cost one file, not the whole job
            return f"unexpected error while decoding: {type(exc).__name__}: {exc}"
