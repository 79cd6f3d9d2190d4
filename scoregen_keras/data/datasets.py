"""The built-in data sets and files: toy 2-D sets, digits, keras.datasets images, array files.

`load_dataset` is the one entry point: a name, `npz:PATH`, `npy:PATH` or a folder of images
(`scoregen_keras.data.images`). Loading never executes code from a file: arrays are read with
`allow_pickle=False` and images through Pillow.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from typing import Any

import numpy as np

from reference import datasets as reference_datasets
from scoregen_keras.data.dataset import (
    DataError,
    Dataset,
    as_images,
    check_finite,
    class_labels,
    first_line,
    numbered_classes,
)
from scoregen_keras.data.images import image_folder
from scoregen_keras.data.scalers import PIXEL_MAX_8BIT, Scaler, pixel_scaler

NPY_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)
"""np.load's failures: unreadable, empty, pickled (refused) or corrupt files."""
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
LABEL_NAMES = frozenset({"y", "label", "labels", "target", "targets", "class", "classes"})
"""Array names that say labels, not data (case-insensitive)."""


def _looks_like_labels(name: str | None, array: np.ndarray) -> bool:
    """A label array: named like one (LABEL_NAMES), or integer and one-dimensional."""
    named = name is not None and name.lower() in LABEL_NAMES
    return named or (array.ndim == 1 and np.issubdtype(array.dtype, np.integer))


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
    images = as_images(np.asarray(images), name)
    labels = np.asarray(labels).reshape(-1).astype(np.int32)  # cifar10's are (n, 1)
    scaler = pixel_scaler(PIXEL_MAX_8BIT, centered)
    spec = name if part == KERAS_TRAIN else f"{name}:{part}"
    x = scaler.forward(images)
    return Dataset(spec, x, scaler, "images", None, labels, KERAS_CLASS_NAMES[name])


def read_array_file(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) of a .npy file (y None) or a .npz file: its array `x` (or its only array) and its
    array `y` when it has one besides; never unpickled, DataError naming the file (also when the
    only array looks like class labels)."""
    if not os.path.isfile(path):
        raise DataError(f"data file {path} does not exist.")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            key, x, y = None, loaded, None
        else:
            with loaded:
                keys = list(loaded.keys())
                key = "x" if "x" in keys else (keys[0] if len(keys) == 1 else None)
                if key is None:
                    raise DataError(f"{path} holds arrays {keys}; name the data array 'x'.")
                y = loaded["y"] if "y" in keys and key != "y" else None
                x = loaded[key]
    except DataError:
        raise
    except NPY_READ_ERRORS as error:
        cause = first_line(error)
        raise DataError(f"could not read {path} as a NumPy array file ({cause}).") from error
    if key != "x" and _looks_like_labels(key, x):
        what = "a 1-d integer array" if key is None else f"only the array '{key}'"
        raise DataError(
            f"{path} holds {what}, which looks like class labels, not data; put the examples "
            "under 'x' (and their classes under 'y')."
        )
    return x, y


def _array_file(path: str, centered: bool) -> Dataset:
    """Examples from a .npy file or the array under key `x` (or the only array) of a .npz file.

    (n, d) arrays are points, as given; (n, H, W[, C]) arrays are images: integer pixels 0..255 or
    float pixels in [0, 1], scaled to [0, 1] (or [-1, 1] when centred). A .npz file's array `y`,
    when there is one, holds each example's class 0, 1, ...
    """
    x, y = read_array_file(path)
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"{path} has shape {x.shape}; expected (n, *dims) with n > 0.")
    if not np.issubdtype(x.dtype, np.number):
        raise DataError(f"{path} holds {x.dtype} values; expected numbers.")
    check_finite(x, path)
    labels, classes = (None, ()) if y is None else class_labels(y, len(x), path)
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
    x = scaler.forward(as_images(x, path))
    return Dataset(path, x, scaler, "images", None, labels, classes)


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
        return image_folder(spec, image_size, centered, progress)
    known = ", ".join(k for k in dataset_names() if " " not in k)
    raise DataError(
        f"unknown data set '{spec}'; choose one of {known}, npz:PATH, npy:PATH or a folder."
    )
