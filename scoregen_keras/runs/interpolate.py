"""Latent interpolation between two examples through a run's probability-flow ODE."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from scoregen_keras.data import DataError
from scoregen_keras.runs import plots
from scoregen_keras.runs.build import training_data
from scoregen_keras.runs.config import MAX_REFERENCE_POINTS, config_scaler, data_shape, value_range
from scoregen_keras.runs.folder import RunError, one_line, output_stem, save_npz_atomic
from scoregen_keras.runs.inputs import file_kind, read_image, read_npy
from scoregen_keras.runs.load import Run, run_sde
from scoregen_keras.sampling import latent


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
        return training_data(config).x
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
        if file_kind(path, "example") != "npy":
            raise RunError(f"the example {path} must be a .npy file of {shape} values.")
        example = read_npy(path, "example")
        if example.size != math.prod(shape):
            raise RunError(
                f"the example {path} has shape {example.shape}; this run's examples have shape "
                f"{shape}."
            )
        return config_scaler(config).forward(example.reshape(shape))
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
    sde = run_sde(run)
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
        variables=run.model.score_variables(),
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
        npz = save_npz_atomic(
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
                reference = config_scaler(config).inverse(examples[:MAX_REFERENCE_POINTS])
            png = plots.save_path(
                png_path,
                result.x_original,
                title=f"latent interpolation, {n_frames} frames (NFE {result.nfe})",
                reference=reference,
            )
    except OSError as error:
        raise RunError(f"cannot write results to {stem.parent} ({one_line(error)}).") from error
    return npz, png
