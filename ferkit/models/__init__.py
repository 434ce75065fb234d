"""Architectures (registered by name) and their building blocks."""

from ferkit.models import paper  # noqa: F401  (registers the paper's architectures)
from ferkit.models.registry import create_model, list_architectures, register_model

__all__ = ["create_model", "list_architectures", "register_model"]
