"""onnxruntime inference on graphs from :mod:`ferkit.export` (uint8 faces in, probabilities out)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch.nn as nn

from ferkit.cpu import available_cores
from ferkit.errors import FerkitError
from ferkit.export import INPUT_NAME, onnx_bytes
from ferkit.inference.backends import in_batches


def default_threads() -> int:
    """The cores this process may use, at most 8 (past that one face batch stops scaling)."""
    return min(8, available_cores())


class OnnxBackend:
    """An onnxruntime CPU session with a fixed number of intra-op threads (default: the cores).

    Idle worker threads sleep instead of spinning (``spin=False``): when other jobs share the
    cores, spinning threads wait on descheduled ones. Measured with a training job on both
    cores: 2 threads at batch 1 went from 125 to over 1,000 crops/s without spinning. On cores
    nothing else uses, spinning (onnxruntime's own default, ``spin=True``) saves the wake-up of
    every parallel section: 6-12% more crops/s for the small `paper` graph at batch 64.
    """

    def __init__(self, graph: bytes | str | Path, threads: int | None = None, spin: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = str(graph) if isinstance(graph, Path) else graph
        try:
            self._session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise FerkitError(f"cannot load ONNX model: {exc}") from None

    @classmethod
    def from_torch(cls, model: nn.Module, threads: int | None = None, spin: bool = False) -> OnnxBackend:
        """Export ``model`` in memory (about a second) so the graph always matches the weights."""
        return cls(onnx_bytes(model), threads=threads, spin=spin)

    def metadata(self) -> dict[str, str]:
        """The graph's metadata (``ferkit export`` records the model, classes and precision)."""
        return dict(self._session.get_modelmeta().custom_metadata_map)

    def probabilities(self, faces: np.ndarray) -> np.ndarray:
        return in_batches(faces, lambda batch: self._session.run(None, {INPUT_NAME: batch})[0])
