"""Image sets for the standard FID, read as pytorch-fid reads them: one uint8 RGB image at a time.

A set is a folder of image files or an ``.npz`` of uint8 images; `open_image_set` gives either
as an `ImageSet` (its length for a progress bar, then the images (H, W, 3) in order, one file
decoded at a time, so a folder of 50 000 images never sits in memory).

A folder follows pytorch-fid's rules (fid_score.py 0.3.0), kept apart from `image_folder`'s for
training because statistics must match those pytorch-fid's own ``--save-stats`` writes:

- the files directly in the folder whose names end in ``.EXT`` for EXT in
  `PYTORCH_FID_EXTENSIONS`, written in lower case (pytorch-fid globs ``*.png`` and so on,
  case-sensitively): ``A.PNG`` and subfolders are not read, hidden files are (training reads
  every case, walks subfolders and skips hidden files);
- sorted by path;
- each image whole, as ``PIL.Image.open(f).convert("RGB")`` gives it: grey replicated, alpha
  dropped, a palette expanded, 16-bit grey as Pillow converts it (training scales 16 bits to 8 and
  turns photos upright by EXIF; both would move the statistics away from pytorch-fid's); no crop
  and no resize: the network resizes every image to 299 x 299.

An ``.npz`` of images holds uint8 images (n, H, W, 3), or grey (n, H, W) or (n, H, W, 1)
replicated to RGB as ``convert("RGB")`` replicates grey: its array ``x``, or its only array, as
for training (`read_array_file`); a ``.npy`` the same array.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from scoregen_keras.data.dataset import DataError
from scoregen_keras.data.datasets import read_array_file
from scoregen_keras.data.images import read_image_file

PYTORCH_FID_EXTENSIONS = ("bmp", "jpg", "jpeg", "pgm", "png", "ppm", "tif", "tiff", "webp")
"""pytorch-fid's IMAGE_EXTENSIONS, matched in lower case only."""
ARRAY_SUFFIXES = (".npz", ".npy")
RGB_CHANNELS = 3
GREY_CHANNELS = 1


def rgb_uint8(images: np.ndarray, source: str = "the images") -> np.ndarray:
    """uint8 images (n, H, W, 3); grey (n, H, W) or (n, H, W, 1) replicated to three channels."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(
            f"{source} are {images.dtype}, not uint8: the standard FID reads 8-bit pixels as a "
            "PNG holds them (write the images with scoregen sample --image-files)."
        )
    if images.ndim == RGB_CHANNELS:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (GREY_CHANNELS, RGB_CHANNELS):
        raise DataError(
            f"{source} have shape {images.shape}, not (n, H, W, 3) RGB or (n, H, W[, 1]) grey."
        )
    if images.shape[-1] == GREY_CHANNELS:
        images = np.repeat(images, RGB_CHANNELS, axis=-1)
    return images


@dataclasses.dataclass(frozen=True)
class ImageFiles:
    """The image files of a folder, decoded one at a time as pytorch-fid decodes them."""

    source: Path  # the folder
    files: tuple[Path, ...]

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        for file in self.files:
            yield read_image_file(str(file), str(self.source), _pytorch_fid_rgb)


@dataclasses.dataclass(frozen=True)
class ImageArray:
    """uint8 RGB images (n, H, W, 3) read from an .npz."""

    source: Path
    images: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    def __iter__(self) -> Iterator[np.ndarray]:
        yield from self.images


ImageSet = ImageFiles | ImageArray


def _pytorch_fid_rgb(image: Any) -> np.ndarray:
    """A Pillow image as pytorch-fid's ImagePathDataset reads it: convert("RGB"), uint8."""
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def pytorch_fid_files(folder: str | Path) -> tuple[Path, ...]:
    """The files pytorch-fid reads from a folder: *.EXT of PYTORCH_FID_EXTENSIONS, sorted."""
    folder = Path(folder)
    files = (path for ext in PYTORCH_FID_EXTENSIONS for path in folder.glob(f"*.{ext}"))
    return tuple(sorted(path for path in files if path.is_file()))


def image_files(folder: str | Path) -> ImageFiles:
    """The images of a folder by pytorch-fid's rules; DataError when it holds none."""
    folder = Path(folder)
    files = pytorch_fid_files(folder)
    if not files:
        names = ", ".join(PYTORCH_FID_EXTENSIONS)
        raise DataError(
            f"folder {folder} holds no image files ({names}, in lower case; subfolders are not "
            "read)."
        )
    return ImageFiles(folder, files)


def image_array(path: str | Path) -> ImageArray:
    """The uint8 images of an .npz or .npy (`read_array_file`'s array), grey made RGB."""
    images, _ = read_array_file(path)
    return ImageArray(Path(path), rgb_uint8(images, f"the images in {path}"))


def open_image_set(path: str | Path) -> ImageSet:
    """A folder of image files or an .npz of uint8 images (DataError for anything else)."""
    path = Path(path)
    if path.is_dir():
        return image_files(path)
    if not path.exists():
        raise DataError(f"{path} does not exist.")
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return image_array(path)
    raise DataError(f"{path} is neither a folder of images nor an .npz of uint8 images.")


__all__ = [
    "PYTORCH_FID_EXTENSIONS",
    "ImageArray",
    "ImageFiles",
    "ImageSet",
    "image_array",
    "image_files",
    "open_image_set",
    "pytorch_fid_files",
    "rgb_uint8",
]
