"""Atomic training checkpoints, read back without unpickling (``torch.load(weights_only=True)``).

A checkpoint file holds the run's state serialized once more inside it, as bytes, with the
SHA-256 of those bytes: a file whose bytes changed on disk (a bad disk, a copy cut short) is
refused on ``--resume`` instead of resuming from different weights.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from ferkit.errors import FerkitError
from ferkit.models.store import atomic_write

FORMAT = "ferkit-checkpoint-1"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    wrapped = {"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
               "payload": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    atomic_write(path, lambda tmp: torch.save(wrapped, tmp))


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FerkitError(f"{path}: cannot read checkpoint: not a file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FerkitError(f"{path}: cannot read checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        return ckpt  # written before checkpoints carried a checksum
    payload = ckpt["payload"].numpy().tobytes()
    if hashlib.sha256(payload).hexdigest() != ckpt["sha256"]:
        raise FerkitError(f"{path}: checkpoint is corrupt (its SHA-256 does not match the one "
                          "saved with it); delete it to start over")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FerkitError(f"{path}: cannot read checkpoint: {str(exc).splitlines()[0]}") from None
