"""Which Keras backend is active, and the choice of an implementation for it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras


def name() -> str:
    """The active Keras backend: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


def dispatch(table: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """The implementation for the active backend."""
    backend = name()
    if backend not in table:
        raise NotImplementedError(f"scoregen_keras does not support the {backend!r} backend")
    return table[backend]
