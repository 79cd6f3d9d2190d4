"""The standard FID of paths and of a run's samples: what `scoregen fid` and `evaluate --fid-stats`
do.

A path is a statistics .npz (mu and sigma: `load_fid_statistics`) or an image set (a folder or an
.npz of uint8 images: `data.open_image_set`), whose statistics take one pass through the FID
Inception network. The network is loaded only when some path holds images, so two statistics
files need no weights. A run's samples are drawn in batches, each quantised to 8 bits as a PNG
holds it (`plots.to_uint8`, grey made RGB) and passed on to the statistics, so that 50 000
samples never sit in memory and the FID equals that of `scoregen sample --image-files` read back.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np
from tqdm.auto import tqdm

from scoregen_keras.choices import COUNTER_NOISE
from scoregen_keras.data import ImageSet, open_image_set, rgb_uint8
from scoregen_keras.networks.fid_weights import load_fid_inception
from scoregen_keras.runs.config import value_range
from scoregen_keras.runs.fid_statistics import (
    DEFAULT_BATCH_SIZE,
    FIDStatistics,
    check_statistics_target,
    feature_statistics,
    frechet_inception_distance,
    is_statistics_file,
    load_fid_statistics,
    save_fid_statistics,
)
from scoregen_keras.runs.load import Run
from scoregen_keras.runs.plots import to_uint8
from scoregen_keras.runs.sample import sample_batches

PathLike = str | os.PathLike[str]
NetworkLoader = Callable[[], keras.Model]


@dataclasses.dataclass(frozen=True)
class FIDResult:
    """The FID between two sets of statistics (count: images, None for a statistics file)."""

    fid: float
    first: FIDStatistics
    second: FIDStatistics

    def summary(self) -> dict[str, float | int | None]:
        """{"fid", "count1", "count2"}: what `scoregen fid --json` prints."""
        return {"fid": self.fid, "count1": self.first.count, "count2": self.second.count}


def network_loader(weights: PathLike | None = None, download: bool = True) -> NetworkLoader:
    """A loader of the FID Inception network (`load_fid_inception(weights)`), loading it once."""
    return functools.cache(lambda: load_fid_inception(weights, download=download))


def _progress_bar(total: int, description: str, progress: bool) -> tqdm:
    """A bar over images (None: shown on a terminal only)."""
    return tqdm(total=total, desc=description, unit="image", disable=None if progress else True)


def _opened(path: PathLike) -> FIDStatistics | ImageSet:
    """A statistics file's statistics, else the path's image set (opened, not read)."""
    return load_fid_statistics(path) if is_statistics_file(path) else open_image_set(path)


def _statistics(
    source: FIDStatistics | ImageSet, network: NetworkLoader, batch_size: int, progress: bool
) -> FIDStatistics:
    """The statistics themselves, or those of the images (one pass, a bar over the images)."""
    if isinstance(source, FIDStatistics):
        return source
    with _progress_bar(len(source), f"FID features of {source.source.name}", progress) as bar:
        return feature_statistics(source, network(), batch_size, bar.update)


def statistics_of_path(
    path: PathLike,
    network: NetworkLoader,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> FIDStatistics:
    """The statistics a path holds (a statistics .npz) or those of its images."""
    return _statistics(_opened(path), network, batch_size, progress)


def fid_of_paths(
    first: PathLike,
    second: PathLike,
    weights: PathLike | None = None,
    *,
    download: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> FIDResult:
    """pytorch-fid's FID between two paths (statistics files, folders or .npz of images).

    Both paths are opened (statistics read and checked, folders listed) before any image goes
    through the network, so a bad second path fails at once.
    """
    network = network_loader(weights, download)
    sources = [_opened(first), _opened(second)]
    statistics = [_statistics(source, network, batch_size, progress) for source in sources]
    return FIDResult(frechet_inception_distance(*statistics), *statistics)


def save_statistics_of_path(
    source: PathLike,
    target: PathLike,
    weights: PathLike | None = None,
    *,
    download: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
) -> FIDStatistics:
    """Write the statistics of a path's images to a new .npz (pytorch-fid's --save-stats).

    The target is checked first, so an existing file is refused before any image is read.
    """
    check_statistics_target(target)
    statistics = statistics_of_path(source, network_loader(weights, download), batch_size, progress)
    save_fid_statistics(target, statistics)
    return statistics


@dataclasses.dataclass
class SampledFID:
    """The standard FID of a run's samples against a statistics file, with the sampler's cost."""

    fid: float
    statistics: FIDStatistics
    nfe: int
    sampling_seconds: float
    seconds: float


def _png_pixels(
    batches: Iterator[tuple[np.ndarray, int]],
    pixel_range: tuple[float, float],
    nfes: list[int],
    sampling: list[float],
) -> Iterator[np.ndarray]:
    """Each model-space batch as the uint8 RGB pixels of its PNGs; NFE and draw time noted."""
    while True:
        start = time.perf_counter()
        batch = next(batches, None)
        sampling.append(time.perf_counter() - start)
        if batch is None:
            return
        x, nfe = batch
        nfes.append(nfe)
        yield rgb_uint8(to_uint8(x, pixel_range))


def sampled_fid(
    run: Run,
    statistics_file: PathLike,
    n: int,
    network: NetworkLoader,
    *,
    sampler: str = "pc",
    seed: int = 0,
    steps: int | None = None,
    batch_size: int | None = None,
    fid_batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool = False,
    seeds: Any | None = None,
    noise: str = COUNTER_NOISE,
) -> SampledFID:
    """FID of n samples of a run (drawn as `draw_samples` draws them, in batches of batch_size,
    from ``seeds`` or seed .. seed+n-1) against a statistics file, each sample quantised to 8
    bits as its PNG would be."""
    reference = load_fid_statistics(statistics_file)
    batches = sample_batches(
        run.model,
        run.config,
        n,
        sampler=sampler,
        seed=seed,
        steps=steps,
        batch_size=batch_size,
        progress=progress,
        seeds=seeds,
        noise=noise,
    )
    nfes: list[int] = []
    sampling: list[float] = []
    start = time.perf_counter()
    images = _png_pixels(batches, value_range(run.config), nfes, sampling)
    with _progress_bar(n, "FID features of the samples", progress) as bar:
        statistics = feature_statistics(images, network(), fid_batch_size, bar.update)
    return SampledFID(
        fid=frechet_inception_distance(statistics, reference),
        statistics=statistics,
        nfe=round(float(np.mean(nfes))),
        sampling_seconds=float(np.sum(sampling)),
        seconds=time.perf_counter() - start,
    )


__all__ = [
    "FIDResult",
    "NetworkLoader",
    "SampledFID",
    "fid_of_paths",
    "network_loader",
    "sampled_fid",
    "save_statistics_of_path",
    "statistics_of_path",
]
