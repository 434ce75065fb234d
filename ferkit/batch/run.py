"""``ferkit batch predict|video``: a pipeline on Ray, its rows written by Ray's writers, and a
summary on stderr (failed inputs named, the first few of them); exit status 1 if any failed."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

import pyarrow as pa
import pyarrow.compute as pc
import ray.data

from ferkit.batch.engine import check_out_folder, connect, read_results, worker_count, write_dataset
from ferkit.batch.photos import predict_dataset
from ferkit.batch.videos import video_dataset
from ferkit.runtime.loader import runnable

SHOWN_ERRORS = 10


def run_batch(
    kind: str,
    paths: Sequence[str],
    out: str,
    fmt: str = "parquet",
    address: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1,
    progress: bool = True,
    err: TextIO | None = None,
    **options: Any,
) -> int:
    """Run ``kind`` ("predict" or "video") over ``paths`` into the folder ``out``; ``options``
    go to :func:`predict_dataset` or :func:`video_dataset`."""
    err = err or sys.stderr
    check_out_folder(out)  # before Ray starts: a wrong --out or --model costs nothing
    runnable(options.get("model", "default"), "onnx")
    connect(address)
    ray.data.DataContext.get_current().enable_progress_bars = progress
    n = worker_count(workers, cpus_per_worker)
    start = time.perf_counter()
    make = predict_dataset if kind == "predict" else video_dataset
    ds = make(paths, workers=n, cpus_per_worker=cpus_per_worker, **options)
    write_dataset(ds, out, fmt)
    seconds = time.perf_counter() - start
    table = read_results(out, fmt, columns=["source", "label", "error"])
    return _summarise(kind, table, out, seconds, n, err)


def _summarise(kind: str, table: pa.Table, out: str, seconds: float, workers: int, err: TextIO) -> int:
    failed = table.filter(pc.is_valid(table["error"])).to_pylist()
    for r in failed[:SHOWN_ERRORS]:
        print(f"ferkit: {r['source']}: {r['error']}", file=err)
    if len(failed) > SHOWN_ERRORS:
        print(f"ferkit: ... and {len(failed) - SHOWN_ERRORS} more failed inputs (rows with an error "
              f"in {out})", file=err)
    sources = pc.count_distinct(table["source"]).as_py()
    faces = pc.count(table["label"]).as_py()
    what = "images" if kind == "predict" else "videos"
    rate = f", {sources / seconds:.1f} {what}/s" if kind == "predict" and seconds else ""
    print(f"{sources} {what}, {faces} face rows, {len(failed)} failed -> {out} in {seconds:.1f} s "
          f"on {workers} worker(s){rate}", file=err)
    return 1 if failed else 0
