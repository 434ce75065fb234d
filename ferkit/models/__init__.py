"""Models: architectures registered by name and their blocks (PyTorch), and where models are
kept: :mod:`ferkit.models.store` resolves every model reference without importing PyTorch.

``create_model``, ``list_architectures``, ``model_options``, ``register_model`` and
``takes_any_option`` load on first
use, so that the light runtime can import :mod:`ferkit.models.store` without PyTorch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_model", "list_architectures", "model_options", "register_model", "takes_any_option"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from ferkit.models import paper, registry  # noqa: F401  (paper registers its architectures)

        return getattr(registry, name)
    raise AttributeError(f"module 'ferkit.models' has no attribute {name!r}")
