"""Config keys that carry their own help: one place for the default and the line that
``ferkit train --list-keys`` (and docs/config-keys.md) shows."""

from __future__ import annotations

import copy
from dataclasses import field
from typing import Any


def key(default: Any, help: str) -> Any:
    """A dataclass field with ``default`` (a list or dict is copied per instance, a class is
    called) and its one-line ``help`` in the field's metadata."""
    meta = {"help": help}
    if isinstance(default, type):
        return field(default_factory=default, metadata=meta)
    if isinstance(default, list | dict):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)
