"""What the photo and video pipelines share: joining Ray, sizing the actor pool, typed tables
(one fixed schema per pipeline, so that every block agrees whatever it holds) and writing."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
import ray.data

from ferkit.cpu import keep_freed_memory
from ferkit.errors import FerkitError

FORMATS = ("parquet", "jsonl")
# Files a previous run wrote: an --out folder holding only these may be replaced.
OUTPUT_SUFFIXES = {".parquet", ".json"}
INT_COLUMNS = {"face", "frame", "face_id", "x", "y", "w", "h", "uncertain",
               "face_k", "range_start", "range_end", "range_read"}  # the last four: videos' inner rows
STRING_COLUMNS = {"source", "path", "label", "note", "error"}


def connect(address: str | None = None, num_cpus: int | None = None, quiet: bool = True) -> None:
    """Join the Ray cluster at ``address`` ("auto", "HOST:PORT"), or start a local instance
    (with ``num_cpus`` CPUs, default all). Does nothing when Ray is already running here."""
    if ray.is_initialized():
        return
    if address:
        check_reachable(address)
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    if not address:  # Ray runs workers at nice 15; on a local instance they are the job itself
        os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 logging_level=logging.WARNING if quiet else logging.INFO, log_to_driver=not quiet)
    except (ConnectionError, ValueError, RuntimeError, ModuleNotFoundError) as exc:  # ray://: ray[client]
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise FerkitError(f"cannot reach {where}: {' '.join(str(exc).split())[:200]}") from None


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT address that answers, or a one-line error now (Ray itself retries for minutes)."""
    host, _, port = address.rpartition(":")
    if "://" in address or not host or not port.isdigit():
        return  # "auto", ray://...: Ray's own lookup
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise FerkitError(f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} (is `ray start "
                          "--head` running there, and is this its GCS port, 6379 by default?)") from None


def worker_count(workers: int | None, cpus_per_worker: float) -> int:
    """``workers``, or as many as the cluster's CPUs hold at ``cpus_per_worker`` each."""
    if cpus_per_worker <= 0:
        raise FerkitError("--cpus-per-worker must be positive")
    if workers is not None:
        if workers < 1:
            raise FerkitError("--workers must be at least 1")
        return workers
    return max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_worker))


def model_for_workers(model: str | os.PathLike) -> str:
    """The model reference as the workers must see it: a file or folder by its absolute path
    (their working directory is not the driver's), a shipped name as it is."""
    return os.path.abspath(model) if os.path.exists(model) else str(model)


def pool(workers: int) -> ray.data.ActorPoolStrategy:
    """A fixed pool: each actor loads its model once and keeps it for the whole job."""
    return ray.data.ActorPoolStrategy(size=workers)


def setup_worker(cpus: float) -> int:
    """A worker process as ``ferkit predict`` sets up its own: OpenCV kept to the CPUs Ray gave
    it (two workers on two cores must not each spread over both) and freed image memory kept for
    reuse (see :func:`ferkit.cpu.keep_freed_memory`). Returns the Recognizer's thread count."""
    threads = max(1, round(cpus))
    try:  # OpenCV (present for the Haar detector or a camera) spreads its own threads otherwise
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass
    keep_freed_memory()
    return threads


def schema(columns: Sequence[str]) -> pa.Schema:
    """Integers for counts and pixels, strings for names and reasons, floats for the rest."""
    return pa.schema([(c, pa.int64() if c in INT_COLUMNS else pa.string() if c in STRING_COLUMNS
                       else pa.float64()) for c in columns])


def to_table(rows: Iterable[dict[str, Any]], table_schema: pa.Schema) -> pa.Table:
    """Rows (dicts, missing keys null) as a table of exactly ``table_schema``."""
    names = table_schema.names
    return pa.Table.from_pylist([{c: row.get(c) for c in names} for row in rows], schema=table_schema)


def check_out_folder(out: str | os.PathLike) -> Path:
    """The one rule for output paths, for a folder of result files: ferkit creates or replaces it,
    never the folder that holds it; and it replaces only a folder of earlier results (Ray empties
    it first), never one that holds anything else."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise FerkitError(f"--out {out}: exists and is not a folder")
    if not path.parent.is_dir():
        raise FerkitError(f"--out {out}: folder {path.parent} does not exist (ferkit creates output "
                          "files and folders, not the folders they go in)")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise FerkitError(f"--out {out}: cannot write in {path.parent}")
    if path.is_dir():
        other = [p.name for p in path.iterdir() if p.is_dir() or p.suffix not in OUTPUT_SUFFIXES]
        if other:
            raise FerkitError(f"--out {out}: holds {other[0]!r} and other files that are not results "
                              "(ferkit replaces only a folder of .parquet/.json results): use a new folder")
    return path


def write_dataset(ds: ray.data.Dataset, out: str | os.PathLike, fmt: str = "parquet") -> Path:
    """Run the pipeline and write its rows with Ray's own writer, a file per block, replacing
    the results of an earlier run in ``out``."""
    if fmt not in FORMATS:
        raise FerkitError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    path = check_out_folder(out)
    target = str(path.resolve())
    if fmt == "parquet":
        ds.write_parquet(target, mode=ray.data.SaveMode.OVERWRITE)
    else:
        ds.write_json(target, mode=ray.data.SaveMode.OVERWRITE)
    return path


def read_results(out: str | os.PathLike, fmt: str = "parquet", columns: list[str] | None = None) -> pa.Table:
    """What :func:`write_dataset` wrote, as one table (for summaries and tests)."""
    import pyarrow.dataset as pads

    return pads.dataset(str(out), format="json" if fmt == "jsonl" else fmt).to_table(columns=columns)
