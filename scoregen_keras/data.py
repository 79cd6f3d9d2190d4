"""Data sets for training: toy 2-D sets, digits, keras.datasets images, files and image folders.

Every loader returns a `Dataset`: float32 examples in model space (batch-first) together with
the `Scaler` that maps them back to the data's original scale. Loading never executes code from
a file: arrays are read with `allow_pickle=False` and images through Pillow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from reference import datasets as reference_datasets

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
IMAGE_FORMATS = "PNG, JPEG, BMP, TIFF or WebP"  # the files of IMAGE_EXTENSIONS, for messages
PIXEL_MAX_8BIT = 255.0
SIXTEEN_BIT_STEPS_PER_LEVEL = 257.0  # 65535 / 255: 16-bit pixels onto 8-bit levels, white on white
FLOAT_PIXEL_MAX = 1.0  # float image arrays hold pixels in [0, 1]
DIGITS_PIXEL_MAX = 16.0  # scikit-learn's digits take integer values 0..16
DIGITS_HELD_OUT_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN, DIGITS_HELD_OUT = "train", "held-out"
DIGITS_SPLITS = (DIGITS_TRAIN, DIGITS_HELD_OUT)
"""Parts of the digits named `digits:PART`: the split the shipped feature classifier uses too."""
KERAS_IMAGE_SETS = {
    "mnist": "28x28 grey handwritten digits",
    "fashion_mnist": "28x28 grey clothing images",
    "cifar10": "32x32 colour images",
}
"""The keras.datasets image sets load_dataset knows, and what they hold."""
DIGIT_NAMES = tuple(str(digit) for digit in range(10))
KERAS_CLASS_NAMES = {
    "mnist": DIGIT_NAMES,
    "fashion_mnist": (
        "T-shirt/top", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle boot",
    ),
    "cifar10": (
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ),
}  # fmt: skip
"""The names of the classes 0, 1, ... of each keras.datasets image set (as its documentation)."""
KERAS_TRAIN, KERAS_TEST = "train", "test"
KERAS_SPLITS = (KERAS_TRAIN, KERAS_TEST)
"""Parts of a keras.datasets set: `NAME` is its train split, `NAME:test` its test split."""
TOY_DEFAULT_SIZE = 50_000
SCALER_SLICE_ENTRIES = 2**22  # values a Scaler maps at a time (32 MiB of float64)


class DataError(ValueError):
    """A data set could not be loaded or is unusable; the message is one sentence for the user."""


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Affine map between the data's original scale and model space: model = (x - shift) / scale."""

    shift: float = 0.0
    scale: float = 1.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Map data from its original scale to model space (float32, computed in float64)."""
        x = np.asarray(x)
        if x.ndim == 0:
            return self.forward(x[None])[0]
        out = np.empty(x.shape, dtype=np.float32)
        # a slice of examples at a time: a large image set needs no float64 copy of itself
        step = max(1, SCALER_SLICE_ENTRIES // max(1, math.prod(x.shape[1:])))
        for start in range(0, len(x), step):
            part = x[start : start + step].astype(np.float64)
            out[start : start + step] = (part - self.shift) / self.scale
        return out

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Map model-space arrays back to the data's original scale."""
        return np.asarray(x, dtype=np.float64) * self.scale + self.shift

    def to_config(self) -> dict:
        """Plain-JSON description of the scaler, stored with a run."""
        return {"shift": self.shift, "scale": self.scale}

    @classmethod
    def from_config(cls, config: dict) -> Scaler:
        """Rebuild a scaler from `to_config()` output."""
        return cls(shift=float(config["shift"]), scale=float(config["scale"]))


def pixel_scaler(pixel_max: float, centered: bool) -> Scaler:
    """Scaler from integer pixels in [0, pixel_max] to [0, 1], or to [-1, 1] when centred."""
    if centered:
        return Scaler(shift=pixel_max / 2.0, scale=pixel_max / 2.0)
    return Scaler(shift=0.0, scale=pixel_max)


def original_pixel_range(scaler: Scaler) -> tuple[float, float]:
    """Black and white of a pixel scaler (`pixel_scaler`) in original units: (0, pixel_max)."""
    return 0.0, float(scaler.shift + scaler.scale)


def model_pixel_range(scaler: Scaler) -> tuple[float, float]:
    """Black and white of a pixel scaler in model space: (0, 1), or (-1, 1) when centred."""
    black, white = scaler.forward(np.array(original_pixel_range(scaler)))
    return float(black), float(white)


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


def _check_finite(x: np.ndarray, source: str) -> None:
    """Raise DataError when the array holds NaN or inf."""
    if not np.all(np.isfinite(x)):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
        raise DataError(f"{source} contains {bad} NaN or infinite values.")


def _as_images(x: np.ndarray, source: str) -> np.ndarray:
    """Bring an image array to (n, H, W, C), adding a channel axis to grey-scale images."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise DataError(f"{source} has shape {x.shape}; expected (n, H, W) or (n, H, W, C) images.")
    return x


def numbered_classes(n_classes: int) -> tuple[str, ...]:
    """Class names "0", "1", ... for classes known only by their index."""
    return tuple(str(k) for k in range(n_classes))


def _class_labels(y: np.ndarray, n: int, source: str) -> tuple[np.ndarray, tuple[str, ...]]:
    """Labels (n,) int32 from class indices 0, 1, ..., and their names "0", "1", ..."""
    if y.shape != (n,) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise DataError(
            f"{source} has labels 'y' of type {y.dtype} and shape {y.shape}; expected {n} "
            "integer classes 0, 1, ..., one per example."
        )
    return y.astype(np.int32), numbered_classes(int(y.max()) + 1)


def _toy(name: str, n: int, seed: int) -> Dataset:
    """Draw n points of a toy 2-D set; a mixture's components are its classes."""
    rng = np.random.default_rng(seed)
    if name in reference_datasets.EXACT_MIXTURES:
        mixture = reference_datasets.EXACT_MIXTURES[name]()
        x, labels = mixture.sample_with_labels(rng, n)  # the draws of TOY_SETS[name]
        classes = numbered_classes(mixture.n_components)
        labels = labels.astype(np.int32)
        return Dataset(name, x.astype(np.float32), Scaler(), "points", None, labels, classes)
    x = reference_datasets.TOY_SETS[name](rng, n)
    return Dataset(name, x.astype(np.float32), Scaler(), "points")


def held_out_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices of n examples, each sorted: default_rng(seed)'s permutation,
    its last round(fraction n) indices (at least one) held out."""
    order = np.random.default_rng(seed).permutation(n)
    n_held_out = max(1, round(fraction * n))
    return np.sort(order[: n - n_held_out]), np.sort(order[n - n_held_out :])


def digits_split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices of the n digits: a fixed permutation, the last 20 % held out."""
    return held_out_split(n, DIGITS_HELD_OUT_FRACTION, DIGITS_SPLIT_SEED)


def index_digest(indices: np.ndarray) -> str:
    """SHA-256 of sorted example indices (as little-endian int64): names a subset in a record."""
    return hashlib.sha256(np.sort(np.asarray(indices)).astype("<i8").tobytes()).hexdigest()


def digits_split_record(train: np.ndarray, held_out: np.ndarray, part: str) -> dict[str, Any]:
    """What a run records about the digits split it used: the rule, the sizes, the index digests."""
    n = len(train) + len(held_out)
    return {
        "of": "digits",
        "part": part,
        "rule": "numpy.random.default_rng(seed).permutation(n_total); the last "
        "round(held_out_fraction * n_total) indices are held out",
        "seed": DIGITS_SPLIT_SEED,
        "held_out_fraction": DIGITS_HELD_OUT_FRACTION,
        "n_total": n,
        "n_train": len(train),
        "n_held_out": len(held_out),
        "train_sha256": index_digest(train),
        "held_out_sha256": index_digest(held_out),
    }


def _digits(centered: bool, part: str | None = None) -> Dataset:
    """scikit-learn's 8x8 digits (1 797 images, shipped with scikit-learn), scaled to [0, 1].

    part: None for all of them, else DIGITS_TRAIN or DIGITS_HELD_OUT of `digits_split`.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images[..., None], digits.target.astype(np.int32)
    scaler = pixel_scaler(DIGITS_PIXEL_MAX, centered)
    if part is None:
        x = scaler.forward(images)
        return Dataset("digits", x, scaler, "images", None, labels, DIGIT_NAMES)
    if part not in DIGITS_SPLITS:
        choices = " or ".join(f"digits:{p}" for p in DIGITS_SPLITS)
        raise DataError(f"unknown part 'digits:{part}' of the digits; choose {choices}.")
    train, held_out = digits_split(len(images))
    chosen = train if part == DIGITS_TRAIN else held_out
    record = digits_split_record(train, held_out, part)
    x = scaler.forward(images[chosen])
    return Dataset(f"digits:{part}", x, scaler, "images", record, labels[chosen], DIGIT_NAMES)


def _keras_images(name: str, centered: bool, part: str = KERAS_TRAIN) -> Dataset:
    """The train or test split of a keras.datasets image set (downloaded once, cached by Keras)."""
    import keras

    if part not in KERAS_SPLITS:
        choices = " or ".join((name, *(f"{name}:{p}" for p in KERAS_SPLITS if p != KERAS_TRAIN)))
        raise DataError(f"unknown part '{name}:{part}' of {name}; choose {choices}.")
    module = getattr(keras.datasets, name)
    try:
        train, test = module.load_data()
    except Exception as error:  # network or cache failures surface as many types
        raise DataError(f"could not download or read the {name} data set ({error}).") from error
    images, labels = train if part == KERAS_TRAIN else test
    images = _as_images(np.asarray(images), name)
    labels = np.asarray(labels).reshape(-1).astype(np.int32)  # cifar10's are (n, 1)
    scaler = pixel_scaler(PIXEL_MAX_8BIT, centered)
    spec = name if part == KERAS_TRAIN else f"{name}:{part}"
    x = scaler.forward(images)
    return Dataset(spec, x, scaler, "images", None, labels, KERAS_CLASS_NAMES[name])


def _array_file(path: str, centered: bool) -> Dataset:
    """Examples from a .npy file or the array under key `x` (or the only array) of a .npz file.

    (n, d) arrays are points, as given; (n, H, W[, C]) arrays are images: integer pixels 0..255 or
    float pixels in [0, 1], scaled to [0, 1] (or [-1, 1] when centred). A .npz file's array `y`,
    when there is one, holds each example's class 0, 1, ...
    """
    if not os.path.isfile(path):
        raise DataError(f"data file {path} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise DataError(f"could not read {path} as a NumPy array file ({error}).") from error
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.keys())
        key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
        if key is None:
            raise DataError(f"{path} holds arrays {keys}; name the data array 'x'.")
        x = loaded[key]
        y = loaded["y"] if "y" in keys and key != "y" else None
    else:
        x, y = loaded, None
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{path} has shape {x.shape}; expected (n, *dims) with n > 0.")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path} holds {x.dtype} values; expected numbers.")
    _check_finite(x, path)
    labels, classes = (None, ()) if y is None else _class_labels(y, len(x), path)
    if x.ndim == 2:
        return Dataset(path, x.astype(np.float32), Scaler(), "points", None, labels, classes)
    integer = np.issubdtype(x.dtype, np.integer)
    pixel_max = PIXEL_MAX_8BIT if integer else FLOAT_PIXEL_MAX
    if x.min() < 0 or x.max() > pixel_max:
        # black and white must be known: samples are drawn, plotted and compared as pixels
        kind = "integer" if integer else "float"
        raise DataError(
            f"{path} holds {kind} images with values in [{x.min():.3g}, {x.max():.3g}]; expected "
            "integer pixels 0..255 or float pixels in [0, 1] (`centered` trains on [-1, 1])."
        )
    scaler = pixel_scaler(pixel_max, centered)
    x = scaler.forward(_as_images(x, path))
    return Dataset(path, x, scaler, "images", None, labels, classes)


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


def _image_folder(path: str, image_size: int | None, centered: bool, progress: bool) -> Dataset:
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
        """decode(image) of one file, with a DataError naming the file when it is unreadable."""
        try:
            with Image.open(file) as image:
                return decode(image)
        except (OSError, SyntaxError, ValueError) as error:  # Pillow's unreadable-file errors
            name = os.path.relpath(file, path)
            raise DataError(f"could not read image {name} in {path} ({error}).") from error

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
    x = scaler.forward(_as_images(images, path))
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


def dataset_names() -> dict[str, str]:
    """Every built-in data set name with a one-line description."""
    names = {
        name: "toy 2-D Gaussian mixture with an exact density"
        if name in reference_datasets.EXACT_MIXTURES
        else "toy 2-D point set"
        for name in reference_datasets.TOY_SETS
    }
    names["digits"] = "8x8 grey digits from scikit-learn (1 797 images, offline)"
    names[f"digits:{DIGITS_TRAIN}"] = "the 1 438 digits of the fixed 80 % train split"
    names[f"digits:{DIGITS_HELD_OUT}"] = "the 359 digits held out of it (never trained on)"
    for name, what in KERAS_IMAGE_SETS.items():
        names[name] = f"{what} via keras.datasets, train split (downloaded once)"
        names[f"{name}:{KERAS_TEST}"] = f"the test split of {name}"
    names["npz:PATH / npy:PATH"] = "an array file, examples along the first axis (.npz: classes y)"
    names["PATH/ (a folder)"] = "image files (subfolders too: classes), cropped to size"
    return names


def load_dataset(
    spec: str,
    *,
    n: int = TOY_DEFAULT_SIZE,
    seed: int = 0,
    image_size: int | None = None,
    centered: bool = False,
    progress: bool = False,
) -> Dataset:
    """Load a data set: a built-in name, `npz:PATH`, `npy:PATH` or a folder of images.

    ``progress`` shows a bar while a folder's images are read (when stderr is a terminal).
    """
    if spec in reference_datasets.TOY_SETS:
        return _toy(spec, n, seed)
    if spec == "digits":
        return _digits(centered)
    if spec.startswith("digits:"):
        return _digits(centered, spec[len("digits:") :])
    name, colon, part = spec.partition(":")
    if name in KERAS_IMAGE_SETS:
        return _keras_images(name, centered, part if colon else KERAS_TRAIN)
    for prefix in ("npz:", "npy:"):
        if spec.startswith(prefix):
            return _array_file(spec[len(prefix) :], centered)
    if spec.endswith((".npz", ".npy")):
        return _array_file(spec, centered)
    if os.path.isdir(spec):
        return _image_folder(spec, image_size, centered, progress)
    known = ", ".join(k for k in dataset_names() if " " not in k)
    raise DataError(
        f"unknown data set '{spec}'; choose one of {known}, npz:PATH, npy:PATH or a folder."
    )
