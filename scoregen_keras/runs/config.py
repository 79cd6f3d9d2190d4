"""What a run's config.json says, read without loading the model: shapes, kinds, scales, defaults.

Commands check their input against these before a checkpoint is loaded, so a wrong file fails at
once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from scoregen_keras.choices import ALD_SAMPLER, CORRECTORS, NCSN_SDE, NORM_RULES, PC_SAMPLER
from scoregen_keras.data import DataError, Scaler, load_dataset
from scoregen_keras.runs.folder import RunError

IMAGE_RANK = 3
"""Axes of one image example: (H, W, C)."""
MAX_REFERENCE_POINTS = 2_000
"""Training points drawn beside 2-D samples in scatter plots."""
PC_SETTINGS = ("predictor", "corrector", "snr", "n_corrector_steps", "denoise")
"""pc_sample's options a run may fix in its sampler_config (an imported model: the original's)."""


def given_options(**options: Any) -> dict[str, Any]:
    """The given sampler options, leaving out those not set (None) so defaults apply."""
    return {key: value for key, value in options.items() if value is not None}


def ald_options(
    config: dict[str, Any], steps: int | None = None, step_lr: float | None = None
) -> dict[str, Any]:
    """Keywords of annealed Langevin on a run of NCSN noise levels: the given steps per level and
    step size, else the run's ``ald_steps_each`` / ``ald_step_lr``, else the sampler's defaults."""
    return given_options(
        n_steps_each=steps if steps is not None else config.get("ald_steps_each"),
        step_lr=step_lr if step_lr is not None else config.get("ald_step_lr"),
    )


def pc_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The run's own predictor-corrector settings, for the options a command is not given: an
    imported model's are the original's (e.g. VP: Euler-Maruyama without a corrector)."""
    stored = config.get("sampler_config") or {}
    return {key: stored[key] for key in PC_SETTINGS if key in stored}


def run_dataset(config: dict[str, Any], given: str | None, task: str) -> str:
    """The data set a command reads: the given one, else the run's own (RunError when the run
    names none, as an imported model of a data set scoregen does not load)."""
    name = given or config.get("dataset")
    if not name:
        raise RunError(f"this run names no data set scoregen loads; give {task} one with --data.")
    return str(name)


def default_sampler(config: dict[str, Any]) -> str:
    """The sampler a command uses unless told: annealed Langevin for a run of NCSN noise levels
    (the only one it has), predictor-corrector otherwise."""
    return ALD_SAMPLER if config.get("sde") == NCSN_SDE else PC_SAMPLER


POINT_CORRECTOR = CORRECTORS[1]
"""The PC corrector of point runs without a ``sampler_corrector``: ALD, whose step reads no norms
(batch-independent) and which reaches the Monte-Carlo floor on the toy mixtures where the
Langevin corrector at snr 0.16 draws too wide (benchmarks/pc_defaults.py)."""
IMAGE_CORRECTOR = CORRECTORS[0]
"""The PC corrector of image runs without a ``sampler_corrector``: score_sde's Langevin."""
BATCH_NORMS, PER_EXAMPLE_NORMS = NORM_RULES


def is_image_run(config: dict[str, Any]) -> bool:
    """Whether the run's examples are images (else points)."""
    return config["data"].get("kind") == "images"


def default_corrector(config: dict[str, Any]) -> str:
    """The PC corrector a command uses unless told: the run's ``sampler_corrector`` (an imported
    model: the original's, `pc_settings`), else ALD for point data and Langevin for images."""
    chosen = config.get("sampler_corrector", pc_settings(config).get("corrector"))
    if chosen is not None:
        return str(chosen)
    return IMAGE_CORRECTOR if is_image_run(config) else POINT_CORRECTOR


def corrector_norm_rule(config: dict[str, Any]) -> str:
    """The Langevin corrector's norms for a run: per example for images (each sample its own
    step size, so a sample does not depend on its batch; at image dimension the norms of one
    example are close to the batch's mean), score_sde's batch mean for points (in 2-D a single
    example's ||s|| can be near 0 and its step explode)."""
    return PER_EXAMPLE_NORMS if is_image_run(config) else BATCH_NORMS


def value_range(config: dict[str, Any]) -> tuple[float, float]:
    """What PNG black and white stand for in model space: an image run's pixel black and white
    (runs before 2026-12-01: its training data's min and max), a point run's data range."""
    low, high = config["data"]["value_range"]
    return float(low), float(high)


def reference_points(config: dict[str, Any]) -> np.ndarray | None:
    """Training points for the left panel of a 2-D scatter (None for images or missing data)."""
    if config["data"]["kind"] != "points":
        return None
    try:
        dataset = load_dataset(
            config["dataset"], n=MAX_REFERENCE_POINTS, seed=int(config["seed"]), centered=False
        )
    except DataError:
        return None
    return dataset.x[:MAX_REFERENCE_POINTS]


def data_shape(config: dict[str, Any]) -> tuple[int, ...]:
    """Shape of one example of the run's data."""
    return tuple(int(d) for d in config["data"]["shape"])


def require_sde(config: dict[str, Any], task: str) -> None:
    """Raise RunError unless the run has a continuous SDE (not discrete NCSN levels)."""
    if config.get("sde") == NCSN_SDE:
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


def config_scaler(config: dict[str, Any]) -> Scaler:
    """The run's scaler (original scale -> model space)."""
    return Scaler.from_config(config["data"]["scaler"])
