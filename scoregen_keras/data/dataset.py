"""The Dataset record every loader returns, and the checks its arrays pass."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from scoregen_keras.data.scalers import Scaler


class DataError(ValueError):
    """A data set could not be loaded or is unusable; the message is one sentence for the user."""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type name), quoted in a DataError."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@dataclasses.dataclass
class Dataset:
    """Training examples in model space, the scaler back to original units, and their kind.

    Sources with classes also give each example's class: ``labels[i]`` indexes ``class_names``.
    """

    name: str
    x: np.ndarray  # (n, *dims) float32, model space
    scaler: Scaler
    kind: str  # "points" or "images"
    split: dict[str, Any] | None = None  # which part of a split data set (see `digits_split`)
    labels: np.ndarray | None = None  # (n,) int32
    class_names: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one example."""
        return tuple(self.x.shape[1:])


def check_finite(x: np.ndarray, source: str) -> None:
    """Raise DataError when the array holds NaN or inf."""
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise DataError(f"{source} contains {bad} NaN or infinite values.")


def as_images(x: np.ndarray, source: str) -> np.ndarray:
    """Bring an image array to (n, H, W, C), adding a channel axis to grey-scale images."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{source} has shape {x.shape}; expected (n, H, W) or (n, H, W, C) images.")
    return x


def numbered_classes(n_classes: int) -> tuple[str, ...]:
    """Class names "0", "1", ... for classes known only by their index."""
    return tuple(str(k) for k in range(n_classes))


def class_labels(y: np.ndarray, n: int, source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels (n,) int32 from class indices 0, 1, ..., and their names "0", "1", ..."""
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DataError(
            f"{source} has labels 'y' of type {y.dtype} and shape {y.shape}; expected {n} "
            "integer classes 0, 1, ..., one per example."
        )
    return y.astype(np.int32), numbered_classes(int(y.max()) + 1)
