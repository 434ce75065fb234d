"""A tiny model registry in the spirit of timm: names map to constructor functions."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

import torch.nn as nn

from ferkit.errors import FerkitError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register an architecture constructor under its function name."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"model {fn.__name__!r} registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def _constructor(arch: str) -> Callable[..., nn.Module]:
    try:
        return _REGISTRY[arch]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        near = difflib.get_close_matches(arch, _REGISTRY, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise FerkitError(f"unknown architecture {arch!r}{hint}; known: {known}") from None


def create_model(arch: str, **kwargs) -> nn.Module:
    """Build a registered architecture; keyword arguments override its defaults."""
    fn = _constructor(arch)
    try:
        return fn(**kwargs)
    except TypeError as exc:  # a misspelt model.* override
        raise FerkitError(f"bad model option for {arch!r}: {exc}") from None


def list_architectures() -> list[str]:
    return sorted(_REGISTRY)


def takes_any_option(arch: str) -> bool:
    """Whether the constructor takes ``**kwargs`` (a user's architecture may): then its keys
    cannot be listed or checked before it is built."""
    return any(p.kind is inspect.Parameter.VAR_KEYWORD
               for p in inspect.signature(_constructor(arch)).parameters.values())


def model_options(arch: str) -> dict[str, tuple[Any, str]]:
    """An architecture's keyword options (the ``model.*`` config keys): name -> (default, help).
    The help comes from the constructor's ``option_help`` dict, where it has one."""
    fn = _constructor(arch)
    helps = getattr(fn, "option_help", {})
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {name: (p.default, helps.get(name, "")) for name, p in inspect.signature(fn).parameters.items()
            if p.kind in kinds}
