"""Inpainting and colorization of one image by a run's model (`scoregen inpaint | colorize`).

Both sample with the known part kept on the observation: predictor-corrector with replacement for
an SDE run, annealed Langevin with replacement for a run of NCSN noise levels; colorization keeps
the grey channel of the decoupled colour space (Song et al. 2021, appendix I).
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from scoregen_keras import controllable
from scoregen_keras.runs import plots
from scoregen_keras.runs.config import (
    ald_options,
    corrector_norm_rule,
    default_corrector,
    pc_settings,
    require_images,
    value_range,
)
from scoregen_keras.runs.folder import RunError, one_line, output_stem, save_npz_atomic
from scoregen_keras.runs.load import Run
from scoregen_keras.runs.sample import sample_seeds

MAX_ROW = 10
"""Images per row of an inpainting / colorization grid."""
SNR_DEFAULT = 0.16
"""PC corrector signal-to-noise ratio (score SDE paper, VE on CIFAR-10)."""
COLOR_CHANNELS = 3


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
    seeds: np.ndarray | None = None
    """The seed of each result, in order (uint64)."""


def _sample_with_replacement(
    run: Run,
    y_obs: np.ndarray,
    mask: np.ndarray,
    seed: np.ndarray,
    steps: int | None,
    snr: float | None,
    step_lr: float | None,
    progress: bool,
    decouple: controllable.LinearMap = controllable.identity,
    couple: controllable.LinearMap = controllable.identity,
) -> tuple[Any, int]:
    """Sample with ``decouple(x)[mask]`` kept on ``y_obs``: PC with replacement for an SDE run
    (``steps`` None: the SDE's N; ``step_lr`` unused; the run's `default_corrector`, Langevin
    norms per example; ``snr`` None: the run's own, `pc_settings`, else SNR_DEFAULT), annealed
    Langevin with replacement for a run of NCSN noise levels (``steps`` per level and ``step_lr``
    as `runs.ald_options`; ``snr`` unused). ``seed``: one per example (`samplers`' per-sample
    seeds)."""
    snr = pc_settings(run.config).get("snr", SNR_DEFAULT) if snr is None else snr
    if any(size is not None and size <= 0 for size in (steps, step_lr)) or snr < 0:
        raise RunError(
            "the number of steps and the step size must be positive and the snr not negative."
        )
    score_fn = run.model.score_fn(use_ema=True)
    common = {
        "decouple": decouple,
        "couple": couple,
        "progress": progress,
        "variables": run.model.score_variables(),
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
        corrector=default_corrector(run.config),
        snr=float(snr),
        norm_rule=corrector_norm_rule(run.config),
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
    snr: float | None = None,
    progress: bool = False,
    step_lr: float | None = None,
    *,
    seeds: Any | None = None,
) -> Controlled:
    """Inpaintings of one model-space image (H, W, C): known pixels (mask True) are kept.

    One result per seed of ``seeds``, else for the seeds seed .. seed+n-1; each result depends
    on its seed alone (`samplers`' per-sample seeds).
    """
    require_images(run.config, "inpainting")
    seeds = sample_seeds(None if seeds is not None else n, seed, seeds)
    start = time.perf_counter()
    x, nfe = _sample_with_replacement(
        run, _batch(image, len(seeds)), mask[None], seeds, steps, snr, step_lr, progress
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
        seeds=seeds,
    )


def colorize_image(
    run: Run,
    image: np.ndarray,
    n: int = 1,
    seed: int = 0,
    steps: int | None = None,
    snr: float | None = None,
    progress: bool = False,
    step_lr: float | None = None,
    *,
    seeds: Any | None = None,
) -> Controlled:
    """Colourings of one model-space image (H, W, 1 or 3) keeping its grey (mean) channel: one
    per seed of ``seeds``, else for the seeds seed .. seed+n-1."""
    require_images(run.config, "colorization", COLOR_CHANNELS)
    seeds = sample_seeds(None if seeds is not None else n, seed, seeds)
    start = time.perf_counter()
    y_obs, observed = controllable.grey_observation(_batch(image, len(seeds)))
    x, nfe = _sample_with_replacement(
        run,
        y_obs,
        observed,
        seeds,
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
        seeds=seeds,
    )


def save_controlled(
    path: str | os.PathLike[str], result: Controlled, config: dict[str, Any]
) -> tuple[Path, Path]:
    """Write PATH.npz (x: results in the original scale, seeds, plus the inputs) and PATH.png
    (grid)."""
    stem = output_stem(path)
    seeds = {} if result.seeds is None else {"seeds": np.asarray(result.seeds, np.uint64)}
    try:
        npz = save_npz_atomic(
            stem.with_name(stem.name + ".npz"),
            x=result.x_original.astype(np.float32),
            **seeds,
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
