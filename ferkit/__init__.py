"""ferkit: facial expression recognition (FER2013's seven emotions) on a laptop CPU and beyond."""

from __future__ import annotations

from ferkit.labels import CLASSES

__version__ = "0.1.0"
__all__ = ["CLASSES", "Recognizer", "load_model", "list_models", "__version__"]


def __getattr__(name: str):
    # Imported lazily so that `import ferkit` stays fast for the CLI and data tools.
    if name in ("load_model", "list_models"):
        from ferkit import weights

        return getattr(weights, name)
    if name == "Recognizer":
        from ferkit.inference import Recognizer

        return Recognizer
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
