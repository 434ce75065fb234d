"""Errors that reach the user as one clear line (the CLI prints them without a traceback)."""

from __future__ import annotations

import importlib.util


class FerkitError(Exception):
    """Base class: the message is what the user sees."""


class DataError(FerkitError):
    """A data file or folder is missing or malformed; the message names the file and row/path."""


class ImageError(FerkitError):
    """An image cannot be decoded or is unacceptable (corrupt, empty, too large)."""


class MissingExtra(FerkitError):
    """A feature needs an optional dependency that this install lacks; the message says which
    ``pip install 'ferkit[...]'`` adds it."""


# Optional modules: what each is called and the extra of pyproject.toml that installs it.
OPTIONAL: dict[str, tuple[str, str]] = {
    "torch": ("PyTorch", "train"),
    "safetensors": ("safetensors", "train"),
    "onnx": ("the onnx package", "train"),
    "matplotlib": ("matplotlib", "plot"),
    "fastapi": ("FastAPI", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "python_multipart": ("python-multipart", "serve"),
    "ray": ("Ray", "ray"),
    "pyarrow": ("pyarrow", "ray"),
}
INCLUDED = {"plot": "train"}  # the train extra brings matplotlib too


def missing_extra(feature: str, modules: list[str]) -> MissingExtra:
    """The one-line error for ``feature`` without ``modules`` (keys of :data:`OPTIONAL`)."""
    names = [OPTIONAL[m][0] for m in modules]
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    wanted = [OPTIONAL[m][1] for m in modules]
    extras = ",".join(dict.fromkeys(e for e in wanted if INCLUDED.get(e) not in wanted))
    return MissingExtra(f"{feature} needs {listed}, which this install lacks: pip install 'ferkit[{extras}]'")


def require(feature: str, *modules: str) -> None:
    """Raise :class:`MissingExtra` naming ``feature`` unless every module can be imported."""
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise missing_extra(feature, missing)
