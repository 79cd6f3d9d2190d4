"""FID statistics: the pool3 mean and covariance of a set of images, as pytorch-fid writes them.

- `feature_statistics(images, network, batch_size, progress)`: one streaming pass over images
  (an array, a `data.ImageSet` or any iterable of images or batches), pool3 features added to a
  float64 `FeatureMoments` batch by batch, so memory does not grow with the number of images.
- `save_fid_statistics` / `load_fid_statistics`: ``.npz`` files with ``mu`` (2048,) and ``sigma``
  (2048, 2048) float64, the layout of pytorch-fid's ``--save-stats`` and of the published
  ``fid_stats_*.npz`` (other keys are ignored on reading; an existing file is never replaced).
- `frechet_inception_distance`: pytorch-fid's ``calculate_frechet_distance`` on two of them.

Images are RGB (n, H, W, 3), uint8 (divided by 255 as torchvision's ToTensor) or floating point in
[0, 1]; each batch holds images of one size, as pytorch-fid's loader requires. The network is
`networks.load_fid_inception()`'s; these are its results, not part of it.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import keras
import numpy as np

from reference import metrics as reference_metrics
from scoregen_keras.networks.fid_inception import POOL3_FEATURES, FIDError, error_cause, fid_input
from scoregen_keras.runs.folder import save_npz_atomic

DEFAULT_BATCH_SIZE = 50
"""pytorch-fid's default --batch-size."""
STATISTICS_KEYS = ("mu", "sigma")
NPZ_SUFFIX = ".npz"
NPZ_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)
SINGLE_IMAGE_NDIM = 3

Progress = Callable[[int], None]
"""Called with the number of images just done (tqdm's update fits)."""


@dataclasses.dataclass(frozen=True)
class FIDStatistics:
    """mu (d,) and sigma (d, d), float64; count is the number of images (None when read)."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int | None = None

    @property
    def dim(self) -> int:
        """The feature dimension d."""
        return int(self.mu.shape[0])


# ----------------------------------------------------------------------------- the image pass


def image_batches(images: Iterable[Any], batch_size: int) -> Iterator[np.ndarray]:
    """Batches (b, H, W, 3) of at most batch_size consecutive images of one size.

    Items are single images (H, W, 3) or batches (b, H, W, 3); a batch ends early where the image
    size changes (the features of an image do not depend on its batch).
    """
    if batch_size < 1:
        raise FIDError(f"the batch size must be positive, got {batch_size}.")
    pending: list[np.ndarray] = []
    for item in images:
        item = np.asarray(item)
        rows = item[None] if item.ndim == SINGLE_IMAGE_NDIM else item
        for image in rows:
            if pending and image.shape != pending[0].shape:
                yield np.stack(pending)
                pending = []
            pending.append(image)
            if len(pending) == batch_size:
                yield np.stack(pending)
                pending = []
    if pending:
        yield np.stack(pending)


def _padded(batch: np.ndarray, rows: int) -> np.ndarray:
    """The batch padded with zero images to `rows` rows."""
    if len(batch) == rows:
        return batch
    padding = np.zeros((rows - len(batch), *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, padding])


def pool3_batches(
    images: Iterable[Any], network: keras.Model, batch_size: int = DEFAULT_BATCH_SIZE
) -> Iterator[np.ndarray]:
    """pool3 features (b, 2048) float64 of each batch of images, in order.

    A short batch is padded to the longest batch so far, so that compiled backends trace one
    batch shape per image size (and a set smaller than one batch is not padded at all).
    """
    rows = 0
    for batch in image_batches(images, batch_size):
        rows = max(rows, len(batch))
        pool3 = network.predict_on_batch(_padded(fid_input(batch), rows))["pool3"]
        yield np.asarray(pool3, dtype=np.float64)[: len(batch)]


def pool3_features(
    images: Iterable[Any], network: keras.Model, batch_size: int = DEFAULT_BATCH_SIZE
) -> np.ndarray:
    """pool3 features (n, 2048) float64 of all images (for small sets; statistics stream)."""
    batches = list(pool3_batches(images, network, batch_size))
    if not batches:
        raise FIDError("there are no images.")
    return np.concatenate(batches)


def feature_statistics(
    images: Iterable[Any],
    network: keras.Model,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> FIDStatistics:
    """mu and sigma (ddof 1) of the pool3 features of images, in one pass with O(d²) memory.

    `network` maps images in [0, 1] to {"pool3": (b, d), ...} (`load_fid_inception()`);
    `progress(b)` is called after each batch of b images.
    """
    moments: reference_metrics.FeatureMoments | None = None
    for features in pool3_batches(images, network, batch_size):
        if moments is None:
            moments = reference_metrics.FeatureMoments(features.shape[1])
        moments.update(features)
        if progress is not None:
            progress(len(features))
    count = 0 if moments is None else moments.count
    if count < 2:
        raise FIDError(f"FID statistics need at least 2 images, got {count}.")
    return FIDStatistics(moments.mean(), moments.covariance(), count)


def frechet_inception_distance(first: FIDStatistics, second: FIDStatistics) -> float:
    """FID between two sets of statistics: pytorch-fid's calculate_frechet_distance (sqrtm)."""
    if first.dim != second.dim:
        raise FIDError(f"the statistics have different dimensions ({first.dim} and {second.dim}).")
    return reference_metrics.frechet_distance(
        first.mu, first.sigma, second.mu, second.sigma, method="sqrtm"
    )


# ------------------------------------------------------------------------------------- files


def _checked(mu: np.ndarray, sigma: np.ndarray, dim: int, source: str) -> FIDStatistics:
    """FIDStatistics after checking shapes (d,), (d, d) with d = dim and finiteness."""
    mu, sigma = np.asarray(mu, np.float64), np.asarray(sigma, np.float64)
    if mu.shape != (dim,) or sigma.shape != (dim, dim):
        raise FIDError(
            f"{source} holds mu {mu.shape} and sigma {sigma.shape}, not the ({dim},) and "
            f"({dim}, {dim}) of FID Inception pool3 statistics."
        )
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise FIDError(f"{source} holds non-finite values (NaN or infinity) in mu or sigma.")
    return FIDStatistics(mu, sigma)


def check_statistics_target(path: str | os.PathLike[str]) -> Path:
    """The path a new statistics file may be written to: an .npz in an existing folder that does
    not exist yet (FIDError otherwise), checked before the images are read."""
    path = Path(path)
    if path.suffix.lower() != NPZ_SUFFIX:
        raise FIDError(f"a statistics file must end in {NPZ_SUFFIX}, got {path.name}.")
    if path.exists():
        raise FIDError(f"{path} exists; remove it or choose another name (it is not replaced).")
    if not path.parent.is_dir():
        raise FIDError(f"the folder {path.parent} of {path.name} does not exist.")
    return path


def save_fid_statistics(
    path: str | os.PathLike[str], statistics: FIDStatistics, dim: int = POOL3_FEATURES
) -> Path:
    """Write mu and sigma (float64) to a new .npz as pytorch-fid's save_fid_stats does.

    An existing file is refused; the file appears only once complete (temporary name, rename).
    """
    path = check_statistics_target(path)
    checked = _checked(statistics.mu, statistics.sigma, dim, "the statistics to save")
    return save_npz_atomic(path, compressed=True, mu=checked.mu, sigma=checked.sigma)


def load_fid_statistics(path: str | os.PathLike[str], dim: int = POOL3_FEATURES) -> FIDStatistics:
    """mu and sigma of a statistics .npz (pytorch-fid's layout; other keys ignored), float64."""
    path = Path(path)
    if not path.is_file():
        raise FIDError(f"the statistics file {path} does not exist.")
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array, not named arrays")
        with archive:
            arrays = {key: archive[key] for key in STATISTICS_KEYS if key in archive.files}
    except NPZ_READ_ERRORS as error:
        raise FIDError(
            f"could not read {path} as FID statistics (.npz) ({error_cause(error)})."
        ) from error
    missing = [key for key in STATISTICS_KEYS if key not in arrays]
    if missing:
        raise FIDError(f"{path} has no {' or '.join(missing)}: FID statistics hold mu and sigma.")
    return _checked(arrays["mu"], arrays["sigma"], dim, str(path))


def is_statistics_file(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is an .npz holding mu or sigma (read as statistics, not as images)."""
    path = Path(path)
    if not (path.is_file() and path.suffix.lower() == NPZ_SUFFIX):
        return False
    try:
        archive = np.load(path, allow_pickle=False)
    except NPZ_READ_ERRORS:
        return False  # unreadable: reading it as images says why
    if not isinstance(archive, np.lib.npyio.NpzFile):
        return False
    with archive:
        return any(key in archive.files for key in STATISTICS_KEYS)


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "STATISTICS_KEYS",
    "FIDStatistics",
    "check_statistics_target",
    "feature_statistics",
    "frechet_inception_distance",
    "image_batches",
    "is_statistics_file",
    "load_fid_statistics",
    "pool3_batches",
    "pool3_features",
    "save_fid_statistics",
]
