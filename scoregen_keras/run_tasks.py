"""Tasks on a trained run: likelihood of data, inpainting, colorization, latent interpolation.

What the `scoregen likelihood | inpaint | colorize | interpolate` commands call. Every function
works in the run's model space (the stored `Scaler` maps the data's original scale there) with
the EMA weights, and raises `RunError` with one sentence for the user when the input cannot be
used. Inputs are checked against the run's configuration (`run_config`, cheap) before the
checkpoint is loaded, so a wrong file fails at once.

File conventions:

- ``.npy`` images and points are in the data's original scale, as in the ``.npz`` files that
  `scoregen sample` writes (digits: 0..16, 8-bit images: 0..255, toy points: as drawn);
- image files' pixel values 0..255 map linearly onto the training data's value range in model
  space, as in the PNGs scoregen writes; images are never resized;
- masks: white (or, in ``.npy``, values above one half: 1 / True) marks a known pixel.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np

from scoregen_keras import controllable, latent, plots
from scoregen_keras.data import IMAGE_EXTENSIONS, IMAGE_FORMATS, DataError, Scaler, eight_bit_image
from scoregen_keras.likelihood import DIVERGENCES, PROBES, bits_per_dim, dequantize, ode_likelihood
from scoregen_keras.likelihood import METHODS as LIKELIHOOD_METHODS
from scoregen_keras.runs import (
    CHECKPOINT_DIR,
    MAX_REFERENCE_POINTS,
    Run,
    RunError,
    RunPaths,
    _load_training_data,
    ald_options,
    load_run_data,
    make_readable,
    one_line,
    output_stem,
    read_json,
    value_range,
)
from scoregen_keras.sde import SDE

AUTO = "auto"
EXACT_MAX_DIMS = 16
"""Largest data dimension D for the exact divergence (one forward-mode pass per dimension, so a
batch costs D times a Hutchinson solve); `auto` picks Hutchinson above it."""
INTEGER_ATOL = 1e-3
"""Image data whose original-scale values are this close to integers are integer pixels: they
are dequantised uniformly (u ~ U[0, 1) added in original units) before their likelihood."""
ORIGINAL_UNITS = 1
"""`dequantize(x, n_bins=1)` is x + u: dequantisation in the data's original (integer) units."""
DEFAULT_LIKELIHOOD_BATCH = 500
"""Examples per ODE solve (each solve integrates its whole batch with one adaptive step size)."""
DEFAULT_TOLERANCE = 1e-5
"""rtol = atol of the likelihood solve (score SDE paper)."""
PNG_LEVELS = 255.0
"""Largest 8-bit pixel value of image files."""
MASK_THRESHOLD = 0.5
"""Mask values above this fraction of full scale (PNG: of 255) mark known pixels."""
MAX_ROW = 10
"""Images per row of an inpainting / colorization grid."""
SNR_DEFAULT = 0.16
"""PC corrector signal-to-noise ratio (score SDE paper, VE on CIFAR-10)."""
COLOR_CHANNELS = 3
IMAGE_RANK = 3
"""Axes of one image example: (H, W, C)."""
ARRAY_SUFFIX = ".npy"


# ------------------------------------------------------------------------------ run checks


def run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The configuration of a run folder (or of a checkpoint inside one) without loading it."""
    target = Path(run_dir)
    if target.suffix == ".keras":
        target = target.parent.parent if target.parent.name == CHECKPOINT_DIR else target.parent
    if not target.is_dir():
        raise RunError(f"run folder {target} does not exist.")
    config = read_json(RunPaths(target).config, "run configuration")
    if not isinstance(config.get("data"), dict) or "shape" not in config["data"]:
        raise RunError(f"{target} is not a scoregen run folder (its config has no data shape).")
    return config


def data_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one example of the run's data."""
    return tuple(int(d) for d in config["data"]["shape"])


def require_sde(config: dict[str, Any], task: str) -> None:
    """Raise RunError unless the run has a continuous SDE (not discrete NCSN levels)."""
    if config.get("sde") == "ncsn":
        raise RunError(
            f"{task} needs a run trained with an SDE (--sde ve, vp or subvp); this run uses "
            "discrete NCSN noise levels."
        )


def require_images(config: dict[str, Any], task: str, channels: int | None = None) -> None:
    """Raise RunError unless the run models images (with `channels` channels when given)."""
    shape = data_shape(config)
    if config["data"].get("kind") != "images" or len(shape) != IMAGE_RANK:
        raise RunError(
            f"{task} needs a run trained on images; this run's examples have shape {shape}."
        )
    if channels is not None and shape[-1] != channels:
        raise RunError(
            f"{task} needs a model of {channels}-channel images; this run's images have "
            f"{shape[-1]} channel{'s' if shape[-1] != 1 else ''}."
        )


def _sde(run: Run) -> SDE:
    """The run's SDE (RunError for discrete NCSN runs)."""
    require_sde(run.config, "this task")
    return run.model.sde


def _variables(run: Run) -> list[Any]:
    """The weights the EMA score reads (passed to compiled samplers so JAX sees their values)."""
    return [*run.model.ema_variables, *run.model.network.non_trainable_variables]


def _scaler(config: dict[str, Any]) -> Scaler:
    """The run's scaler (original scale -> model space)."""
    return Scaler.from_config(config["data"]["scaler"])


# ------------------------------------------------------------------------------ likelihood


@dataclasses.dataclass
class Likelihood:
    """Per-example log-densities of data under a run's model and what was done to get them."""

    log_p: np.ndarray
    """log p(x) in nats per example, in the data's original units (of the dequantised data)."""
    n_dims: int
    divergence: str
    probe: str | None
    dequantized: bool
    offset_bits: float
    """log2(scale) of the run's scaler: bits/dim here minus bits/dim of the model-space density."""
    nfe: int
    seconds: float

    @property
    def bits_per_dim(self) -> np.ndarray:
        """Per-example bits/dim, -log2 p(x) / D (for integer pixels: of the discrete data)."""
        return np.asarray(bits_per_dim(self.log_p, self.n_dims), dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """Means over the examples and their standard errors, as plain JSON."""
        n = len(self.log_p)
        bpd, nll = self.bits_per_dim, -self.log_p
        sem = (lambda v: float(np.std(v, ddof=1) / math.sqrt(n))) if n > 1 else (lambda v: None)
        return {
            "n": n,
            "dims": self.n_dims,
            "divergence": self.divergence,
            "probe": self.probe,
            "dequantized": self.dequantized,
            "offset_bits": self.offset_bits,
            "bits_per_dim": float(np.mean(bpd)),
            "bits_per_dim_sem": sem(bpd),
            "nll_nats": float(np.mean(nll)),
            "nll_nats_sem": sem(nll),
            "nfe": self.nfe,
            "seconds": round(self.seconds, 3),
        }


def choose_divergence(divergence: str, n_dims: int) -> str:
    """'exact' or 'hutchinson' for n_dims-dimensional data ('auto': exact up to EXACT_MAX_DIMS)."""
    if divergence == AUTO:
        return DIVERGENCES[0] if n_dims <= EXACT_MAX_DIMS else DIVERGENCES[1]
    if divergence not in DIVERGENCES:
        raise RunError(f"unknown divergence '{divergence}'; choose auto, {', '.join(DIVERGENCES)}.")
    if divergence == DIVERGENCES[0] and n_dims > EXACT_MAX_DIMS:
        raise RunError(
            f"the exact divergence costs one forward pass per dimension and is for data of at most "
            f"{EXACT_MAX_DIMS} dimensions; these have {n_dims}: use --divergence hutchinson."
        )
    return divergence


class EvaluationData(NamedTuple):
    """Examples to score in their own original units, and the map from there to model space."""

    x: np.ndarray
    kind: str  # "points" or "images"
    scaler: Scaler


def evaluation_data(config: dict[str, Any], spec: str | None, n: int, seed: int) -> EvaluationData:
    """Up to n examples of a data set in their original scale, their kind and their scaler.

    ``spec`` is as for training (default: the run's data set); toy sets are drawn with ``seed``,
    and larger sets are subsampled without replacement with ``seed``. Points are in the run's
    units, so the run's scaler maps them. Images keep their own pixel depth (0..255 PNGs for a
    run on digits' 0..16): their scaler maps white onto the white of the run's model space, as
    every image set shares one model pixel scale, so they are dequantised in their own levels.
    """
    spec = spec or str(config["dataset"])
    try:
        dataset = load_run_data(spec, config, n, seed)
    except DataError as error:
        raise RunError(str(error)) from error
    x = dataset.scaler.inverse(dataset.x)
    if len(x) > n:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]
    scaler = dataset.scaler if dataset.kind == "images" else _scaler(config)
    return EvaluationData(x, dataset.kind, scaler)


def run_likelihood(
    run: Run,
    x_original: np.ndarray,
    kind: str,
    divergence: str = AUTO,
    probe: str = PROBES[0],
    seed: int = 0,
    tol: float = DEFAULT_TOLERANCE,
    batch_size: int = DEFAULT_LIKELIHOOD_BATCH,
    method: str = "RK45",
    scaler: Scaler | None = None,
) -> Likelihood:
    """log p(x) of original-scale examples through the probability-flow ODE (EMA weights).

    Integer-valued images are dequantised uniformly first (u ~ U[0, 1) in original units, so the
    figure bounds the discrete data's -log2 P from above). The model-space log-density becomes one
    in original units by the change of variables: log p(x) = log p_model(y) - D log(scale).
    ``scaler`` maps the examples' units to model space (default: the run's scaler).
    """
    sde = _sde(run)
    n_dims = int(np.prod(x_original.shape[1:]))
    divergence = choose_divergence(divergence, n_dims)
    if probe not in PROBES:
        raise RunError(f"unknown probe '{probe}'; choose one of {', '.join(PROBES)}.")
    if method not in LIKELIHOOD_METHODS:
        raise RunError(f"unknown ODE solver '{method}'; choose {' or '.join(LIKELIHOOD_METHODS)}.")
    if batch_size <= 0 or tol <= 0:
        raise RunError("the batch size and the tolerance must be positive.")
    scaler = run.scaler if scaler is None else scaler
    generator = keras.random.SeedGenerator(seed)
    rounded = np.round(x_original)
    dequantized = kind == "images" and bool(np.all(np.abs(x_original - rounded) <= INTEGER_ATOL))
    score_fn = run.model.score_fn(use_ema=True)
    log_p, nfe = [], 0
    start = time.perf_counter()
    for first in range(0, len(x_original), batch_size):
        chunk = x_original[first : first + batch_size]
        if dequantized:
            chunk = keras.ops.convert_to_numpy(
                dequantize(rounded[first : first + batch_size], generator, n_bins=ORIGINAL_UNITS)
            )
        y = scaler.forward(chunk)
        try:
            log_p_model, _, chunk_nfe = ode_likelihood(
                score_fn,
                sde,
                y,
                seed=generator,
                divergence=divergence,
                probe=probe,
                rtol=tol,
                atol=tol,
                method=method,
            )
        except RuntimeError as error:
            raise RunError(f"the likelihood solve failed ({one_line(error)}).") from error
        log_p.append(log_p_model - n_dims * math.log(abs(scaler.scale)))
        nfe += chunk_nfe
    return Likelihood(
        log_p=np.concatenate(log_p),
        n_dims=n_dims,
        divergence=divergence,
        probe=probe if divergence == DIVERGENCES[1] else None,
        dequantized=dequantized,
        offset_bits=math.log2(abs(scaler.scale)),
        nfe=nfe,
        seconds=time.perf_counter() - start,
    )


# ------------------------------------------------------------------------------- files in/out


def _read_npy(path: Path, what: str) -> np.ndarray:
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


def _file_kind(path: Path, what: str) -> str:
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
    if _file_kind(path, "image") == "npy":
        image = _as_single_image(_read_npy(path, "image"), path, "image")
        _check_size(image, shape, path, "image")
        image = _scaler(config).forward(image).astype(np.float64)
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
    if _file_kind(path, "mask") == "npy":
        values = _as_single_image(_read_npy(path, "mask"), path, "mask")
    else:
        values = _read_picture(path, "L", "mask")
    _check_size(values, shape, path, "mask")
    if values.shape[-1] not in (1, shape[-1]):
        raise RunError(
            f"the mask {path} has {values.shape[-1]} channels; give 1 or {shape[-1]} (the image's)."
        )
    return np.broadcast_to(values > MASK_THRESHOLD, shape).copy()


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Write arrays to path (.npz) through a temporary name and os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        make_readable(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def save_log_likelihoods(path: str | os.PathLike[str], result: Likelihood) -> Path:
    """Write PATH.npz with per-example log_p (nats) and bits_per_dim."""
    stem = output_stem(path)
    try:
        return _save_npz(
            stem.with_name(stem.name + ".npz"),
            log_p=result.log_p,
            bits_per_dim=result.bits_per_dim,
        )
    except OSError as error:
        raise RunError(f"cannot write to {stem.parent} ({one_line(error)}).") from error


# ------------------------------------------------------------------- inpainting, colorization


@dataclasses.dataclass
class Controlled:
    """Results of inpainting or colorization and the panels of their figure (model space)."""

    x: np.ndarray
    x_original: np.ndarray
    panels: np.ndarray
    """The input panels (image, masked image; or the grey image) followed by the results."""
    inputs: dict[str, np.ndarray]
    """What the .npz keeps beside the results (original scale images, the mask)."""
    nfe: int
    seconds: float


def _sample_with_replacement(
    run: Run,
    y_obs: np.ndarray,
    mask: np.ndarray,
    seed: int,
    steps: int | None,
    snr: float,
    step_lr: float | None,
    progress: bool,
    decouple: controllable.LinearMap = controllable.identity,
    couple: controllable.LinearMap = controllable.identity,
) -> tuple[Any, int]:
    """Sample with ``decouple(x)[mask]`` kept on ``y_obs``: PC with replacement for an SDE run
    (``steps`` None: the SDE's N; ``step_lr`` unused), annealed Langevin with replacement for a
    run of NCSN noise levels (``steps`` per level and ``step_lr`` as `runs.ald_options`; ``snr``
    unused)."""
    if any(size is not None and size <= 0 for size in (steps, step_lr)) or snr < 0:
        raise RunError(
            "the number of steps and the step size must be positive and the snr not negative."
        )
    score_fn = run.model.score_fn(use_ema=True)
    common = {
        "decouple": decouple,
        "couple": couple,
        "progress": progress,
        "variables": _variables(run),
    }
    if run.model.sde is None:
        return controllable.annealed_langevin_with_replacement(
            score_fn,
            run.model.sigmas,
            y_obs,
            mask,
            seed,
            **common,
            **ald_options(run.config, steps, step_lr),
        )
    return controllable.pc_sample_with_replacement(
        score_fn,
        run.model.sde,
        y_obs,
        mask,
        seed,
        snr=float(snr),
        **common,
        **({} if steps is None else {"n_steps": int(steps)}),
    )


def _batch(image: np.ndarray, n: int) -> np.ndarray:
    """n copies of one image, (n, H, W, C) float32."""
    if n <= 0:
        raise RunError("the number of results must be positive.")
    return np.ascontiguousarray(np.broadcast_to(image, (n, *image.shape)), dtype=np.float32)


def inpaint_image(
    run: Run,
    image: np.ndarray,
    mask: np.ndarray,
    n: int = 1,
    seed: int = 0,
    steps: int | None = None,
    snr: float = SNR_DEFAULT,
    progress: bool = False,
    step_lr: float | None = None,
) -> Controlled:
    """n inpaintings of one model-space image (H, W, C): known pixels (mask True) are kept."""
    require_images(run.config, "inpainting")
    start = time.perf_counter()
    x, nfe = _sample_with_replacement(
        run, _batch(image, n), mask[None], seed, steps, snr, step_lr, progress
    )
    x = np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)
    low, high = value_range(run.config)
    masked = np.where(mask, image, (low + high) / 2.0)
    scaler = run.scaler
    return Controlled(
        x=x,
        x_original=scaler.inverse(x),
        panels=np.concatenate([image[None], masked[None], x]),
        inputs={"image": scaler.inverse(image), "mask": mask},
        nfe=int(nfe),
        seconds=time.perf_counter() - start,
    )


def colorize_image(
    run: Run,
    image: np.ndarray,
    n: int = 1,
    seed: int = 0,
    steps: int | None = None,
    snr: float = SNR_DEFAULT,
    progress: bool = False,
    step_lr: float | None = None,
) -> Controlled:
    """n colourings of one model-space image (H, W, 1 or 3) keeping its grey (mean) channel."""
    require_images(run.config, "colorization", COLOR_CHANNELS)
    start = time.perf_counter()
    y_obs, observed = controllable.grey_observation(_batch(image, n))
    x, nfe = _sample_with_replacement(
        run,
        y_obs,
        observed,
        seed,
        steps,
        snr,
        step_lr,
        progress,
        decouple=controllable.decouple_colors,
        couple=controllable.couple_colors,
    )
    x = np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)
    grey = np.repeat(image.mean(axis=-1, keepdims=True), COLOR_CHANNELS, axis=-1)
    scaler = run.scaler
    return Controlled(
        x=x,
        x_original=scaler.inverse(x),
        panels=np.concatenate([grey[None], x]),
        inputs={"grey": scaler.inverse(image.mean(axis=-1, keepdims=True))},
        nfe=int(nfe),
        seconds=time.perf_counter() - start,
    )


def save_controlled(
    path: str | os.PathLike[str], result: Controlled, config: dict[str, Any]
) -> tuple[Path, Path]:
    """Write PATH.npz (x: results in the original scale, plus the inputs) and PATH.png (grid)."""
    stem = output_stem(path)
    try:
        npz = _save_npz(
            stem.with_name(stem.name + ".npz"),
            x=result.x_original.astype(np.float32),
            **{key: np.asarray(value) for key, value in result.inputs.items()},
        )
        png = plots.save_image_grid(
            stem.with_name(stem.name + ".png"),
            result.panels,
            value_range(config),
            columns=min(len(result.panels), MAX_ROW),
        )
    except OSError as error:
        raise RunError(f"cannot write results to {stem.parent} ({one_line(error)}).") from error
    return npz, png


# ------------------------------------------------------------------------------ interpolation


@dataclasses.dataclass
class Interpolation:
    """Frames of a latent interpolation, model space and original scale, ends included."""

    x: np.ndarray
    x_original: np.ndarray
    ends: np.ndarray
    """The two examples interpolated (original scale), shape (2, *dims)."""
    nfe: int
    seconds: float


def training_examples(config: dict[str, Any]) -> np.ndarray:
    """The run's training examples in model space (as the run loads them)."""
    try:
        return _load_training_data(config).x
    except DataError as error:
        raise RunError(str(error)) from error


def pick_indices(
    n_examples: int, index_a: int | None, index_b: int | None, seed: int
) -> tuple[int, int]:
    """The given indices, the missing ones drawn with `seed`, distinct from the other end."""
    if n_examples < 2:
        raise RunError(f"the run's data have {n_examples} example(s); two are needed.")
    taken = {index % n_examples for index in (index_a, index_b) if index is not None}
    free = (int(i) for i in np.random.default_rng(seed).permutation(n_examples) if i not in taken)
    return (next(free) if index_a is None else index_a, next(free) if index_b is None else index_b)


def pick_example(
    config: dict[str, Any],
    examples: np.ndarray | None,
    index: int | None,
    path: str | os.PathLike[str] | None,
) -> np.ndarray:
    """One model-space example: row `index` of the run's data, or read from a file.

    Files: .npy in the original scale (one example, or a batch of one), or an image file.
    """
    shape = data_shape(config)
    if path is not None:
        path = Path(path)
        if config["data"].get("kind") == "images":
            return read_image(path, config)
        if _file_kind(path, "example") != "npy":
            raise RunError(f"the example {path} must be a .npy file of {shape} values.")
        example = _read_npy(path, "example")
        if example.size != math.prod(shape):
            raise RunError(
                f"the example {path} has shape {example.shape}; this run's examples have shape "
                f"{shape}."
            )
        return _scaler(config).forward(example.reshape(shape))
    if examples is None or index is None:
        raise RunError("give an index into the run's data or a file for each end.")
    if not -len(examples) <= index < len(examples):
        raise RunError(
            f"index {index} is out of range: the run's data have {len(examples)} examples."
        )
    return np.asarray(examples[index], dtype=np.float32)


def interpolate_examples(
    run: Run, x_a: np.ndarray, x_b: np.ndarray, n_frames: int, steps: int | None = None
) -> Interpolation:
    """Encode x_a and x_b (model space) with the ODE, slerp the latents, decode n_frames frames.

    ``steps`` None: RK45 (rtol = atol = 1e-5); else fixed-step Heun with that many steps.
    """
    sde = _sde(run)
    if n_frames < 2 or (steps is not None and steps <= 0):
        raise RunError("at least 2 frames and a positive number of steps are needed.")
    ode = {"method": "RK45"} if steps is None else {"method": "heun", "n_steps": int(steps)}
    start = time.perf_counter()
    path, nfe = latent.interpolate(
        run.model.score_fn(use_ema=True),
        sde,
        x_a[None],
        x_b[None],
        int(n_frames),
        **ode,
        variables=_variables(run),
    )
    x = np.asarray(keras.ops.convert_to_numpy(path), dtype=np.float32)[:, 0]
    scaler = run.scaler
    return Interpolation(
        x=x,
        x_original=scaler.inverse(x),
        ends=scaler.inverse(np.stack([x_a, x_b])),
        nfe=int(nfe),
        seconds=time.perf_counter() - start,
    )


def save_interpolation(
    path: str | os.PathLike[str],
    result: Interpolation,
    config: dict[str, Any],
    examples: np.ndarray | None = None,
) -> tuple[Path, Path]:
    """Write PATH.npz (x: frames, ends; original scale) and PATH.png (image strip or 2-D path).

    ``examples`` (model space), when given, are drawn behind a 2-D path.
    """
    stem = output_stem(path)
    png_path = stem.with_name(stem.name + ".png")
    n_frames = len(result.x)
    try:
        npz = _save_npz(
            stem.with_name(stem.name + ".npz"),
            x=result.x_original.astype(np.float32),
            ends=result.ends.astype(np.float32),
            fractions=np.linspace(0.0, 1.0, n_frames),
        )
        if config["data"].get("kind") == "images":
            png = plots.save_image_grid(png_path, result.x, value_range(config), n_frames)
        else:
            reference = None
            if examples is not None:
                reference = _scaler(config).inverse(examples[:MAX_REFERENCE_POINTS])
            png = plots.save_path(
                png_path,
                result.x_original,
                title=f"latent interpolation, {n_frames} frames (NFE {result.nfe})",
                reference=reference,
            )
    except OSError as error:
        raise RunError(f"cannot write results to {stem.parent} ({one_line(error)}).") from error
    return npz, png


__all__ = [
    "AUTO",
    "EXACT_MAX_DIMS",
    "Controlled",
    "Interpolation",
    "Likelihood",
    "choose_divergence",
    "colorize_image",
    "evaluation_data",
    "inpaint_image",
    "interpolate_examples",
    "pick_example",
    "pick_indices",
    "read_image",
    "read_mask",
    "require_images",
    "require_sde",
    "run_config",
    "run_likelihood",
    "save_controlled",
    "save_interpolation",
    "save_log_likelihoods",
    "training_examples",
]
