"""ferkit: facial expression recognition (FER2013's seven emotions) on a laptop CPU and beyond.

``Recognizer`` and ``list_models`` need only the runtime install (onnxruntime, numpy, Pillow;
no OpenCV); ``load_model`` gives the PyTorch network and needs the ``train`` extra.
"""

from __future__ import annotations

from typing import Any

from ferkit.face import CLASSES

__version__ = "0.1.0"
__all__ = ["CLASSES", "Recognizer", "load_model", "list_models", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `import ferkit` stays fast for the CLI and data tools.
    if name == "list_models":
        from ferkit.models.store import list_models

        return list_models
    if name == "load_model":
        from ferkit.errors import require

        require("ferkit.load_model (the PyTorch network)", "torch", "safetensors")
        from ferkit.models.io import load_model

        return load_model
    if name == "Recognizer":
        from ferkit.inference.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
