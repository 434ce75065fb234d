"""Knowledge distillation from a teacher ensemble whose outputs are computed once per run.

The teachers (shipped models or weights files) classify every training image once, with flip
TTA, and their averaged probabilities are cached in the run folder: the student then trains at
its own speed on the CPU, its loss a mix of cross-entropy with the labels and the KL divergence
to the teachers' softened distribution (Hinton et al. 2015).
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

from ferkit.face import NUM_CLASSES
from ferkit.models.io import load_model
from ferkit.models.store import atomic_write, file_sha256, resolve
from ferkit.runtime.torch_backend import predict_logits

CACHE_NAME = "teacher_logits.safetensors"


def ensemble_logits(teachers: Sequence[str], images: torch.Tensor) -> torch.Tensor:
    """Log of the mean probability over teachers and over each image and its mirror: (N, 7)."""
    total = torch.zeros(len(images), NUM_CLASSES)
    for name in teachers:
        model, _ = load_model(name)
        total += predict_logits(model, images, tta=True).softmax(1)
    return (total / len(teachers)).clamp_min(1e-8).log()


def cache_key(teachers: Sequence[str], images: torch.Tensor) -> str:
    """What the cached logits depend on: each teacher's weights file and the exact images."""
    files = {name: file_sha256(resolve(name).require_weights("a teacher")) for name in teachers}
    images_digest = hashlib.sha256(images.contiguous().numpy().tobytes()).hexdigest()
    return json.dumps({"teachers": files, "images": images_digest}, sort_keys=True)


def _digest(logits: torch.Tensor) -> str:
    return hashlib.sha256(logits.contiguous().numpy().tobytes()).hexdigest()


def _cached_logits(cache: Path, key: str, n: int) -> torch.Tensor | None:
    """The cached logits if the cache is readable, intact and made for ``key``; else None (a
    corrupt cache, say from a disk error, is announced and recomputed)."""
    try:
        with safe_open(cache, "pt") as f:
            meta = f.metadata() or {}
            if meta.get("teachers") != key:
                return None
            logits = f.get_tensor("logits")
    except Exception as exc:  # SafetensorError, OSError, a missing tensor: all mean "unusable"
        print(f"{cache}: unreadable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}), "
              "recomputing", file=sys.stderr)
        return None
    if logits.shape != (n, NUM_CLASSES) or logits.dtype != torch.float32:
        return None
    if "logits_sha256" in meta and meta["logits_sha256"] != _digest(logits):
        print(f"{cache}: corrupt (its SHA-256 does not match), recomputing", file=sys.stderr)
        return None
    return logits


def teacher_logits(teachers: Sequence[str], images: torch.Tensor, run_dir: Path,
                   write: bool = True) -> torch.Tensor:
    """The teachers' logits for ``images``, from the run folder's cache when it matches."""
    cache = run_dir / CACHE_NAME
    key = cache_key(teachers, images)
    if cache.is_file():
        logits = _cached_logits(cache, key, len(images))
        if logits is not None:
            return logits
    print(f"teachers {', '.join(teachers)}: classifying {len(images)} training images once",
          file=sys.stderr, flush=True)
    logits = ensemble_logits(teachers, images).contiguous()
    if write:
        atomic_write(cache, lambda tmp: save_file(
            {"logits": logits}, tmp, metadata={"teachers": key, "logits_sha256": _digest(logits)}))
    return logits


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) at ``temperature``, scaled by T^2 so gradients keep their size."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1),
                    reduction="batchmean", log_target=True) * t * t
