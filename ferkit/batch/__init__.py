"""Batch prediction on Ray Data: photos and videos spread over the workers of a Ray cluster.

    import ferkit.batch as fb
    fb.connect()                                   # a local Ray instance (or address="HOST:PORT")
    ds = fb.predict_dataset(["photos/", "more/*.jpg"], workers=2)
    fb.write_dataset(ds, "out/", "parquet")        # or ds.filter(...), ds.to_pandas(), ...
    vs = fb.video_dataset(["clip.mp4"], frames_per_range=600)

The rows are those of ``ferkit predict --csv`` and ``ferkit video --csv`` (video rows with the
video's ``source`` first and an ``error`` column last), with numbers as numbers and absent values
as nulls. The driver lists the inputs (and reads each video's frame count from its header); the
workers read, detect and classify. Each worker is one Ray actor holding one Recognizer
(onnxruntime), loaded once. Needs the ``ray`` extra: ``pip install 'ferkit[ray]'``.
"""

from __future__ import annotations

from ferkit.errors import require

require("ferkit.batch", "ray", "pyarrow")

from ferkit.batch.engine import FORMATS, connect, write_dataset  # noqa: E402
from ferkit.batch.photos import predict_dataset  # noqa: E402
from ferkit.batch.videos import video_dataset  # noqa: E402

__all__ = ["FORMATS", "connect", "predict_dataset", "video_dataset", "write_dataset"]
