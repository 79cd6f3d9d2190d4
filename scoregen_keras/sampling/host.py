"""Host NumPy arrays as tensors of the active backend, in one transfer each."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from scoregen_keras import backend

Tensor = Any


def host_index(index: int | np.ndarray) -> Tensor:
    """A host integer (array) as an int32 tensor."""
    return backend.from_host(np.asarray(index, dtype=np.int32))


def host_to_float(array: Any) -> Tensor:
    """A host array or scalar as a float tensor, cast on the host (a single transfer)."""
    return backend.from_host(np.asarray(array, dtype=keras.config.floatx()))
