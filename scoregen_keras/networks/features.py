"""Feature spaces for image metrics: ImageNet InceptionV3 pool features and the digits classifier.

Fréchet distance and KID compare images in a feature space. Here that is either the
2 048-dimensional average-pool output of keras.applications' InceptionV3 with ImageNet weights,
or, for the 8×8 scikit-learn digits, where Inception features of 8-pixel images mean little, a
small CNN this project ships (`benchmarks/train_digits_classifier.py` writes
data/digits_classifier.weights.npz as plain arrays, readable on every backend); its penultimate
layer is the feature space and its softmax gives an Inception-score-like class confidence.

The ImageNet InceptionV3 is not the network of the papers' FID (the 2015 TF graph that
pytorch-fid ports: `networks.fid_inception`, statistics in `runs.fid_statistics`): its
distances are reported as ``fd_inception_imagenet`` and cannot be compared with a published FID.
Keras downloads its weights once; offline they must be supplied as a local file.
"""

from __future__ import annotations

import functools
import os
import sysconfig
from pathlib import Path
from typing import Any

import keras
import numpy as np
import scipy.special
from keras import ops

from scoregen_keras import data as data_sets

Tensor = Any

IMAGENET_INCEPTION_SIZE = 299
IMAGENET_INCEPTION_FEATURES = 2048
IMAGENET_INCEPTION_WEIGHTS_ENV = "SCOREGEN_IMAGENET_INCEPTION_WEIGHTS"
"""Environment variable naming a local InceptionV3 'notop' weights file (.h5)."""
IMAGENET_INCEPTION_WEIGHTS_FILE = "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"
IMAGENET_INCEPTION_WEIGHTS_URL = (
    "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
    + IMAGENET_INCEPTION_WEIGHTS_FILE
)
CAUSE_CHARS = 80
"""Characters of the underlying error quoted in a weights error (the message stays one line)."""
PIXEL_MAX_8BIT = 255.0
RGB_CHANNELS = 3
FEATURE_BATCH = 128
"""Images per forward pass of a feature network."""

DIGITS_WEIGHTS_NAME = "digits_classifier.weights.npz"
DIGITS_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / DIGITS_WEIGHTS_NAME
"""The shipped weights in a clone (or an editable install) of this repository."""
INSTALLED_DATA = Path(sysconfig.get_path("data")) / "share" / "scoregen"
"""Where `pip install .` puts data/ (pyproject.toml's data-files)."""
DIGITS_WEIGHTS_ENV = "SCOREGEN_DIGITS_CLASSIFIER"
"""Environment variable naming another digits classifier weights file (.npz)."""
DIGITS_SHAPE = (8, 8, 1)
DIGITS_CLASSES = 10
DIGITS_FEATURES = 64
DIGITS_DROPOUT = 0.3
DIGITS_HELD_OUT_FRACTION = data_sets.DIGITS_HELD_OUT_FRACTION
DIGITS_SPLIT_SEED = data_sets.DIGITS_SPLIT_SEED
digits_split = data_sets.digits_split
"""The classifier's train / held-out split: the same as `load_dataset("digits:train")`."""


class FeatureError(RuntimeError):
    """A feature network's weights cannot be loaded; the message is one sentence for the user."""


class ImageNetInceptionWeightsError(FeatureError):
    """The InceptionV3 ImageNet weights could neither be downloaded nor read from a local file."""


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message (or its type name)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _to_unit_range(x: Any, pixel_range: tuple[float, float]) -> Tensor:
    """Images with values in pixel_range mapped to [0, 1] and clipped, as floatx."""
    low, high = (float(v) for v in pixel_range)
    if not high > low:
        raise ValueError(f"pixel_range must be (low, high) with high > low, got {pixel_range}")
    x = ops.cast(ops.convert_to_tensor(x), keras.config.floatx())
    return ops.clip((x - low) / (high - low), 0.0, 1.0)


def _batched(fn: Any, x: Tensor, batch_size: int = FEATURE_BATCH) -> np.ndarray:
    """fn over batches of x, concatenated as a float64 NumPy array."""
    outputs = [
        np.asarray(ops.convert_to_numpy(fn(x[i : i + batch_size])), dtype=np.float64)
        for i in range(0, x.shape[0], batch_size)
    ]
    return np.concatenate(outputs, axis=0)


# --------------------------------------------------------------------------------- Inception


def _build_imagenet_inception(weights: str) -> keras.Model:
    """InceptionV3 without its classifier, average-pooled: (n, 299, 299, 3) -> (n, 2048)."""
    return keras.applications.InceptionV3(
        include_top=False,
        pooling="avg",
        weights=weights,
        input_shape=(IMAGENET_INCEPTION_SIZE, IMAGENET_INCEPTION_SIZE, RGB_CHANNELS),
    )


@functools.lru_cache(maxsize=2)
def _cached_imagenet_inception(weights: str) -> keras.Model:
    """Build InceptionV3 once per weights source."""
    return _build_imagenet_inception(weights)


def imagenet_inception_model(weights_path: str | os.PathLike[str] | None = None) -> keras.Model:
    """InceptionV3 pool-feature model with ImageNet weights: from a local file or downloaded.

    The file is `weights_path`, else $SCOREGEN_IMAGENET_INCEPTION_WEIGHTS, else Keras downloads
    (and caches) them from IMAGENET_INCEPTION_WEIGHTS_URL. Raises ImageNetInceptionWeightsError,
    one sentence, on failure.
    """
    path = weights_path
    if path is None:
        path = os.environ.get(IMAGENET_INCEPTION_WEIGHTS_ENV)
    hint = (
        f"set ${IMAGENET_INCEPTION_WEIGHTS_ENV} (or pass weights_path) to a local copy of "
        f"{IMAGENET_INCEPTION_WEIGHTS_FILE}"
    )
    if path:
        path = str(path)
        if not os.path.isfile(path):
            raise ImageNetInceptionWeightsError(
                f"the InceptionV3 weights file {path} does not exist; {hint}."
            )
    try:
        return _cached_imagenet_inception(path or "imagenet")
    except Exception as error:  # download and HDF5 failures surface as many exception types
        cause = _first_line(error)[:CAUSE_CHARS]
        raise ImageNetInceptionWeightsError(
            f"could not load the InceptionV3 ImageNet weights ({cause}); {hint}."
        ) from error


def imagenet_inception_preprocess(
    images: Any, pixel_range: tuple[float, float] = (0.0, 1.0)
) -> Tensor:
    """Images (n, H, W, 1 or 3) in pixel_range -> InceptionV3 input (n, 299, 299, 3) in [-1, 1].

    Grey images are repeated to three channels; resizing is bilinear; then Keras's
    inception_v3.preprocess_input maps 8-bit values [0, 255] to [-1, 1].
    """
    x = _to_unit_range(images, pixel_range)
    if len(x.shape) != 4 or x.shape[-1] not in (1, RGB_CHANNELS):
        raise ValueError(f"images must have shape (n, H, W, 1 or 3), got {tuple(x.shape)}")
    if x.shape[-1] == 1:
        x = ops.repeat(x, RGB_CHANNELS, axis=-1)
    x = ops.image.resize(
        x, (IMAGENET_INCEPTION_SIZE, IMAGENET_INCEPTION_SIZE), interpolation="bilinear"
    )
    return keras.applications.inception_v3.preprocess_input(x * PIXEL_MAX_8BIT)


def imagenet_inception_features(
    images: Any,
    pixel_range: tuple[float, float] = (0.0, 1.0),
    weights_path: str | os.PathLike[str] | None = None,
    batch_size: int = FEATURE_BATCH,
) -> np.ndarray:
    """InceptionV3 average-pool features (n, 2048) of images (n, H, W, C) with values in range."""
    model = imagenet_inception_model(weights_path)
    x = ops.convert_to_tensor(images)
    return _batched(
        lambda batch: model(imagenet_inception_preprocess(batch, pixel_range), training=False),
        x,
        batch_size,
    )


# ------------------------------------------------------------------------- digits classifier


def build_digits_classifier() -> keras.Model:
    """The digits CNN, untrained: (n, 8, 8, 1) in [0, 1] -> 10 logits; layer 'features' is 64-d."""
    inputs = keras.Input(DIGITS_SHAPE, name="digits")
    h = keras.layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(inputs)
    h = keras.layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(h)
    h = keras.layers.MaxPooling2D(2, name="pool")(h)
    h = keras.layers.Flatten(name="flatten")(h)
    h = keras.layers.Dropout(DIGITS_DROPOUT, name="dropout1")(h)
    features = keras.layers.Dense(DIGITS_FEATURES, activation="relu", name="features")(h)
    h = keras.layers.Dropout(DIGITS_DROPOUT, name="dropout2")(features)
    logits = keras.layers.Dense(DIGITS_CLASSES, name="logits")(h)
    return keras.Model(inputs, logits, name="digits_classifier")


def save_digits_weights(model: keras.Model, path: str | os.PathLike[str]) -> None:
    """Write the classifier's weights as plain arrays 'LAYER.INDEX' in an .npz file."""
    arrays = {
        f"{layer.name}.{i}": np.asarray(w)
        for layer in model.layers
        for i, w in enumerate(layer.get_weights())
    }
    np.savez(path, **arrays)


def _load_digits_weights(model: keras.Model, path: Path) -> None:
    """Set the classifier's weights from an .npz file written by `save_digits_weights`."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise FeatureError(
            f"could not read the digits classifier weights {path} ({_first_line(error)})."
        ) from error
    for layer in model.layers:
        current = layer.get_weights()
        keys = [f"{layer.name}.{i}" for i in range(len(current))]
        missing = [k for k in keys if k not in arrays]
        wrong = [
            k
            for k, w in zip(keys, current, strict=True)
            if k in arrays and arrays[k].shape != w.shape
        ]
        if missing or wrong:
            raise FeatureError(
                f"the digits classifier weights {path} do not fit the network "
                f"(missing {missing}, wrong shape {wrong})."
            )
        layer.set_weights([arrays[k] for k in keys])


@functools.lru_cache(maxsize=2)
def _cached_digits_classifier(path: str) -> tuple[keras.Model, keras.Model]:
    """(logits model, features model) with the weights of `path`, built once per file."""
    model = build_digits_classifier()
    _load_digits_weights(model, Path(path))
    return model, keras.Model(model.inputs, model.get_layer("features").output)


def shipped_digits_weights(
    candidates: tuple[Path, ...] = (DIGITS_WEIGHTS, INSTALLED_DATA / DIGITS_WEIGHTS_NAME),
) -> Path:
    """The shipped digits weights: data/ of the source tree, else the installed copy."""
    return next((path for path in candidates if path.is_file()), candidates[0])


def digits_classifier(
    weights_path: str | os.PathLike[str] | None = None,
) -> tuple[keras.Model, keras.Model]:
    """The trained digits classifier (logits model, features model) from the shipped weights.

    The file is `weights_path`, else $SCOREGEN_DIGITS_CLASSIFIER, else the shipped
    data/digits_classifier.weights.npz (`shipped_digits_weights`).
    """
    path = weights_path or os.environ.get(DIGITS_WEIGHTS_ENV) or shipped_digits_weights()
    path = Path(path).resolve()
    if not path.is_file():
        raise FeatureError(
            f"the digits classifier weights file {path} does not exist; make it with "
            "python benchmarks/train_digits_classifier.py or pass weights_path."
        )
    return _cached_digits_classifier(str(path))


def _digits_input(x: Any) -> Tensor:
    """Digits in [0, 1] as (n, 8, 8, 1) floatx, from (n, 8, 8, 1), (n, 8, 8) or (n, 64)."""
    x = ops.cast(ops.convert_to_tensor(x), keras.config.floatx())
    if int(np.prod(x.shape[1:])) != int(np.prod(DIGITS_SHAPE)):
        raise ValueError(f"digits must have 64 pixels per example, got shape {tuple(x.shape)}")
    return ops.reshape(x, (-1, *DIGITS_SHAPE))


def digits_features(
    x: Any, weights_path: str | os.PathLike[str] | None = None, batch_size: int = FEATURE_BATCH
) -> np.ndarray:
    """Penultimate-layer features (n, 64) of 8×8 digits scaled to [0, 1] (as load_dataset does)."""
    _, features = digits_classifier(weights_path)
    return _batched(lambda b: features(b, training=False), _digits_input(x), batch_size)


def digits_class_probabilities(
    x: Any, weights_path: str | os.PathLike[str] | None = None, batch_size: int = FEATURE_BATCH
) -> np.ndarray:
    """Class probabilities p(y | x) (n, 10) of 8×8 digits scaled to [0, 1]."""
    model, _ = digits_classifier(weights_path)
    return _batched(
        lambda b: ops.softmax(model(b, training=False), axis=-1), _digits_input(x), batch_size
    )


def class_confidence_score(probs: Any) -> float:
    """Inception-score-like exp(E_x KL(p(y|x) || p(y))), p(y) the mean of p(y|x) over the set.

    1 when every p(y|x) is the same; the number of classes when predictions are confident
    (one-hot) and the classes are equally frequent.
    """
    p = np.asarray(ops.convert_to_numpy(probs), dtype=np.float64)
    if p.ndim != 2 or len(p) == 0:
        raise ValueError(f"probs must have shape (n, classes) with n > 0, got {p.shape}")
    marginal = p.mean(axis=0, keepdims=True)
    kl = np.sum(scipy.special.xlogy(p, p) - scipy.special.xlogy(p, marginal), axis=1)
    return float(np.exp(np.mean(kl)))
