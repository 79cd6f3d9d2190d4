"""Image files: the formats read, 8-bit conversion, and folders of images as data sets."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from scoregen_keras.data.dataset import DataError, Dataset, as_images
from scoregen_keras.data.scalers import PIXEL_MAX_8BIT, pixel_scaler

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_FORMATS = "PNG, JPEG, BMP, TIFF or WebP"  # the files of IMAGE_EXTENSIONS, for messages
SIXTEEN_BIT_STEPS_PER_LEVEL = 257.0  # 65535 / 255: 16-bit pixels onto 8-bit levels, white on white


def _is_grey(mode: str) -> bool:
    """Whether a Pillow image mode is grey-scale (1-bit, 8-bit, 16-bit, or grey with alpha)."""
    return mode in ("1", "L", "LA") or mode.startswith("I")


def eight_bit_image(image: Any, mode: str) -> Any:
    """A Pillow image converted to 8-bit `mode` ("L" or "RGB"); alpha is dropped.

    16-bit grey images (Pillow mode "I;16" or "I") are scaled to 8 bits: Pillow's own conversion
    would clip every value above 255 to white. Floating-point images (mode "F", from TIFF) are
    a ValueError: their black and white are unknown.
    """
    from PIL import Image

    if image.mode == "F":
        raise ValueError(
            "a floating-point image has no known black and white; save it with 8- or 16-bit "
            "pixels, or as a .npy array of pixels in [0, 1]"
        )
    if image.mode.startswith("I"):
        levels = np.rint(np.asarray(image, dtype=np.float64) / SIXTEEN_BIT_STEPS_PER_LEVEL)
        image = Image.fromarray(np.clip(levels, 0, PIXEL_MAX_8BIT).astype(np.uint8), "L")
    return image.convert(mode)


def read_image_file(file: str, folder: str, decode: Callable[[Any], Any]) -> Any:
    """decode(image) of a Pillow image opened from `file`, with a DataError naming the file (as
    a path inside `folder`) when Pillow cannot read it."""
    from PIL import Image

    try:
        with Image.open(file) as image:
            return decode(image)
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's unreadable-file errors
        name = os.path.relpath(file, folder)
        raise DataError(f"could not read image {name} in {folder} ({error}).") from error


def _image_files(folder: str) -> list[str]:
    """Image files in a folder and its subfolders, sorted; hidden files and folders skipped."""
    files = []
    for root, subfolders, names in os.walk(folder):
        # hidden: .ipynb_checkpoints copies, macOS "._name.png" resource forks
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        files += [
            os.path.join(root, name)
            for name in names
            if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")
        ]
    return sorted(files)


def image_folder(path: str, image_size: int | None, centered: bool, progress: bool) -> Dataset:
    """Image files in a folder and its subfolders, upright, cropped to a square and resized.

    The images are grey-scale when all of them are, RGB otherwise. The side is ``image_size``,
    or the shorter side of the first image. Each file is opened once to read its header and once
    to decode it, so a large folder needs neither many open files nor all its images in memory.
    Images in two or more subfolders, none at the top, are classes named after their subfolder.
    """
    from PIL import Image, ImageOps

    files = _image_files(path)
    if not files:
        raise DataError(f"folder {path} and its subfolders hold no {IMAGE_FORMATS} images.")

    def read(file: str, decode: Callable[[Any], Any]) -> Any:
        """decode(image) of one file of the folder."""
        return read_image_file(file, path, decode)

    headers = [read(file, lambda image: (image.mode, image.size)) for file in files]
    mode = "L" if all(_is_grey(image_mode) for image_mode, _ in headers) else "RGB"
    size = int(image_size or min(headers[0][1]))
    images = np.empty((len(files), size, size, *((3,) if mode == "RGB" else ())), np.uint8)

    def square(image: Any) -> np.ndarray:
        """The centre square of an image, resized to size x size, as 8-bit pixels.

        Upright first: cameras store a photo as shot and its turn in EXIF.
        """
        upright = eight_bit_image(ImageOps.exif_transpose(image), mode)
        return np.asarray(ImageOps.fit(upright, (size, size), Image.Resampling.BICUBIC))

    bar = tqdm(files, desc="reading images", disable=None if progress else True)  # None: on a tty
    for i, file in enumerate(bar):
        images[i] = read(file, square)
    scaler = pixel_scaler(PIXEL_MAX_8BIT, centered)
    labels, classes = _folder_classes(files, path)
    x = scaler.forward(as_images(images, path))
    return Dataset(path, x, scaler, "images", None, labels, classes)


def _folder_classes(files: list[str], folder: str) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Each file's class and the class names, when the files lie in two or more subfolders
    of the folder and none at its top (torchvision's ImageFolder layout); else (None, ())."""
    tops = [os.path.relpath(file, folder).split(os.sep) for file in files]
    if any(len(parts) == 1 for parts in tops):
        return None, ()
    classes = tuple(sorted({parts[0] for parts in tops}))
    if len(classes) < 2:
        return None, ()
    index = {name: k for k, name in enumerate(classes)}
    return np.array([index[parts[0]] for parts in tops], dtype=np.int32), classes
