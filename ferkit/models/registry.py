"""A tiny model registry in the spirit of timm: names map to constructor functions."""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from ferkit.errors import FerkitError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register an architecture constructor under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def create_model(arch: str, **kwargs) -> nn.Module:
    """Build a registered architecture; keyword arguments override its defaults."""
    try:
        fn = _REGISTRY[arch]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise FerkitError(f"unknown architecture {arch!r}; known: {known}") from None
    try:
        return fn(**kwargs)
    except TypeError as exc:  # a misspelt model.* override
        raise FerkitError(f"bad model option for {arch!r}: {exc}") from None


def list_architectures() -> list[str]:
    return sorted(_REGISTRY)
