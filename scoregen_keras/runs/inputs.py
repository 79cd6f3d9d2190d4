"""Files a user hands to a run's tasks: one image, a mask, an example (.npy or image files).

- ``.npy`` images and points are in the data's original scale, as in the ``.npz`` files that
  `scoregen sample` writes (digits: 0..16, 8-bit images: 0..255, toy points: as drawn);
- image files' pixel values 0..255 map linearly onto the training data's value range in model
  space, as in the PNGs scoregen writes; images are never resized;
- masks: white (or, in ``.npy``, values above one half: 1 / True) marks a known pixel.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from scoregen_keras.data import IMAGE_EXTENSIONS, IMAGE_FORMATS, eight_bit_image
from scoregen_keras.runs.config import config_scaler, data_shape, value_range
from scoregen_keras.runs.folder import RunError, one_line

PNG_LEVELS = 255.0
"""Largest 8-bit pixel value of image files."""
MASK_THRESHOLD = 0.5
"""Mask values above this fraction of full scale (PNG: of 255) mark known pixels."""
ARRAY_SUFFIX = ".npy"


def read_npy(path: Path, what: str) -> np.ndarray:
    """A numeric, finite array from a .npy file (never unpickled)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise RunError(f"could not read the {what} {path} ({one_line(error)}).") from error
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_):
        raise RunError(f"the {what} {path} holds {array.dtype} values; expected numbers.")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise RunError(f"the {what} {path} contains NaN or infinite values.")
    return array


def _read_picture(path: Path, mode: str, what: str) -> np.ndarray:
    """An image file as an (H, W, C) array of values in [0, 1] (mode 'L' or 'RGB')."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(eight_bit_image(image, mode), dtype=np.float64) / PNG_LEVELS
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise RunError(f"could not read the {what} {path} ({one_line(error)}).") from error
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _as_single_image(array: np.ndarray, path: Path, what: str) -> np.ndarray:
    """(H, W), (H, W, C) or (1, H, W, C) as (H, W, C)."""
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3:
        raise RunError(
            f"the {what} {path} has shape {array.shape}; expected one image, (H, W) or (H, W, C)."
        )
    return array


def _check_size(array: np.ndarray, shape: tuple[int, ...], path: Path, what: str) -> None:
    """RunError unless the array's height and width are the model's."""
    if tuple(array.shape[:2]) != tuple(shape[:2]):
        height, width = array.shape[:2]
        raise RunError(
            f"the {what} {path} is {height}x{width} pixels but the model's images are "
            f"{shape[0]}x{shape[1]}; give a {what} of that size (images are not resized)."
        )


def file_kind(path: Path, what: str) -> str:
    """'npy' or 'picture' from the suffix (RunError for a missing file or another type)."""
    if not path.is_file():
        raise RunError(f"the {what} file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix == ARRAY_SUFFIX:
        return "npy"
    if suffix in IMAGE_EXTENSIONS:
        return "picture"
    raise RunError(f"the {what} {path} is not an image file ({IMAGE_FORMATS}) or a .npy file.")


def read_image(
    path: str | os.PathLike[str], config: dict[str, Any], channels: tuple[int, ...] | None = None
) -> np.ndarray:
    """One image for the run's model, in model space, shape (H, W, C).

    ``channels``: the channel counts accepted (default: the model's). Image files are read
    as grey when the model has one channel, else as RGB.
    """
    path = Path(path)
    shape = data_shape(config)
    accepted = (shape[-1],) if channels is None else channels
    if file_kind(path, "image") == "npy":
        image = _as_single_image(read_npy(path, "image"), path, "image")
        _check_size(image, shape, path, "image")
        image = config_scaler(config).forward(image).astype(np.float64)
    else:
        unit = _read_picture(path, "L" if max(accepted) == 1 else "RGB", "image")
        _check_size(unit, shape, path, "image")
        low, high = value_range(config)
        image = low + unit * (high - low)
    if image.shape[-1] not in accepted:
        raise RunError(
            f"the image {path} has {image.shape[-1]} channels; this needs "
            f"{' or '.join(map(str, accepted))}."
        )
    return image.astype(np.float32)


def read_mask(path: str | os.PathLike[str], config: dict[str, Any]) -> np.ndarray:
    """A boolean mask (True = known) of the model's image shape (H, W, C), from PNG or .npy."""
    path = Path(path)
    shape = data_shape(config)
    if file_kind(path, "mask") == "npy":
        values = _as_single_image(read_npy(path, "mask"), path, "mask")
    else:
        values = _read_picture(path, "L", "mask")
    _check_size(values, shape, path, "mask")
    if values.shape[-1] not in (1, shape[-1]):
        raise RunError(
            f"the mask {path} has {values.shape[-1]} channels; give 1 or {shape[-1]} (the image's)."
        )
    return np.broadcast_to(values > MASK_THRESHOLD, shape).copy()
