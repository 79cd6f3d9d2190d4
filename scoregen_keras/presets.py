"""Named training configurations: the toy defaults and the papers' CIFAR-10 / MNIST set-ups.

A run's configuration is a flat JSON-able dict; `resolve_config` starts from a preset and applies
overrides, so `config.json` in a run folder always holds every value that was used.
"""

from __future__ import annotations

import copy
from typing import Any

# Score SDE paper training set-up (Song et al. 2021, configs/default_cifar10_configs.py).
SDE_PAPER_STEPS = 1_300_001
SDE_PAPER_WARMUP = 5_000

# Scaling out (scoregen_keras.distribute): how a step is spread over devices, and in what precision.
DISTRIBUTE_MODES = ("none", "data-parallel")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

BASE: dict[str, Any] = {
    "dataset": "mixture5",
    "n_train": 50_000,  # toy sets only: points drawn once with `seed`
    "centered": False,
    "image_size": None,
    "model": "mlp/toy",
    "model_config": {},
    "sde": "ve",
    "sde_config": {},
    "loss": "dsm",
    "weighting": "std2",
    "reduce": "mean",
    "steps": 3_000,
    "batch_size": 512,
    "lr": 2e-4,
    "warmup": 5_000,
    "grad_clip": 1.0,
    "ema": None,  # None: 0.999 for VE / NCSN, 0.9999 for VP / sub-VP
    "seed": 0,
    "log_every": 50,
    "checkpoint_every": 1_000,
    "sample_every": 1_000,
    "n_sample_preview": 2_000,
    "sampler": "pc",
    "sampler_steps": None,  # None: the SDE's N
    "distribute": "none",  # "data-parallel": the global batch is split over devices
    "devices": None,  # data-parallel: number of devices (None: all of them; ignored otherwise)
    "precision": "float32",  # or a Keras mixed policy: the network runs in float16 / bfloat16
}

PRESETS: dict[str, dict[str, Any]] = {
    "toy": {
        "description": "MLP on the 5-component 2-D mixture, VE SDE (default; minutes on a CPU)",
        "steps": 6_000,
        "lr": 2e-3,
        "warmup": 200,
        "batch_size": 512,
        "ema": 0.999,
        "checkpoint_every": 2_000,
        "sample_every": 2_000,
    },
    "toy-vp": {
        "description": "MLP on the 5-component 2-D mixture, VP SDE",
        "sde": "vp",
        "steps": 6_000,
        "lr": 2e-3,
        "warmup": 200,
        "batch_size": 512,
        "ema": 0.999,
        "checkpoint_every": 2_000,
        "sample_every": 2_000,
    },
    "digits": {
        "description": "small NCSN++ on scikit-learn's 8x8 digits, VE SDE (CPU-friendly)",
        "dataset": "digits",
        "model": "ncsnpp/digits",
        "sde": "ve",
        "sde_config": {"sigma_max": 10.0},
        "steps": 4_000,
        "batch_size": 128,
        "lr": 1e-3,
        "warmup": 200,
        "ema": 0.999,
        "checkpoint_every": 1_000,
        "sample_every": 1_000,
        "n_sample_preview": 64,
        "sampler_steps": 500,
    },
    "mnist-ncsnv2": {
        "description": "NCSNv2 on MNIST (Song & Ermon 2020 techniques: σ₁=50... from the data)",
        "dataset": "mnist",
        "model": "ncsnv2/mnist",
        "sde": "ncsn",
        "sde_config": {"sigma_max": 50.0, "sigma_min": 0.01, "num_scales": 232},
        "loss": "ncsn",
        "steps": 300_001,
        "batch_size": 128,
        "lr": 1e-4,
        "warmup": 0,
        "ema": 0.999,
        "checkpoint_every": 5_000,
        "sample_every": 5_000,
        "n_sample_preview": 64,
        "sampler": "ald",
    },
    "cifar10-ncsn": {
        "description": "NCSN v1 on CIFAR-10 (Song & Ermon 2019: L=10, σ 1→0.01, 200k steps)",
        "dataset": "cifar10",
        "model": "ncsn/cifar10",
        "sde": "ncsn",
        "sde_config": {"sigma_max": 1.0, "sigma_min": 0.01, "num_scales": 10},
        "loss": "ncsn",
        "steps": 200_001,
        "batch_size": 128,
        "lr": 1e-3,
        "warmup": 0,
        "grad_clip": None,
        "ema": 0.999,
        "checkpoint_every": 5_000,
        "sample_every": 5_000,
        "n_sample_preview": 64,
        "sampler": "ald",
    },
    "cifar10-ncsnv2": {
        "description": "NCSNv2 on CIFAR-10 (Song & Ermon 2020: L=232, σ 50→0.01, 300k steps)",
        "dataset": "cifar10",
        "model": "ncsnv2/cifar10",
        "sde": "ncsn",
        "sde_config": {"sigma_max": 50.0, "sigma_min": 0.01, "num_scales": 232},
        "loss": "ncsn",
        "steps": 300_001,
        "batch_size": 128,
        "lr": 1e-4,
        "warmup": 0,
        "grad_clip": None,
        "ema": 0.999,
        "checkpoint_every": 5_000,
        "sample_every": 5_000,
        "n_sample_preview": 64,
        "sampler": "ald",
    },
    "cifar10-ncsnpp-cont": {
        "description": "NCSN++ continuous VE on CIFAR-10 (score SDE paper, 1.3M steps)",
        "dataset": "cifar10",
        "model": "ncsnpp/cifar10",
        "sde": "ve",
        "sde_config": {"sigma_max": 50.0, "sigma_min": 0.01},
        "steps": SDE_PAPER_STEPS,
        "batch_size": 128,
        "lr": 2e-4,
        "warmup": SDE_PAPER_WARMUP,
        "ema": 0.999,
        "reduce": "sum",
        "checkpoint_every": 50_000,
        "sample_every": 10_000,
        "n_sample_preview": 64,
    },
    "cifar10-ddpmpp-cont": {
        "description": "DDPM++ continuous VP on CIFAR-10 (score SDE paper, 1.3M steps)",
        "dataset": "cifar10",
        "centered": True,
        "model": "ddpmpp/cifar10",
        "sde": "vp",
        "steps": SDE_PAPER_STEPS,
        "batch_size": 128,
        "lr": 2e-4,
        "warmup": SDE_PAPER_WARMUP,
        "ema": 0.9999,
        "reduce": "sum",
        "checkpoint_every": 50_000,
        "sample_every": 10_000,
        "n_sample_preview": 64,
    },
}

DEFAULT_PRESET = "toy"


class ConfigError(ValueError):
    """A configuration value is unknown or out of range; the message is one sentence."""


def resolve_config(preset: str = DEFAULT_PRESET, overrides: dict[str, Any] | None = None) -> dict:
    """Start from BASE, apply the preset, then the overrides that are not None; validate."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.")
    config = copy.deepcopy(BASE)
    config.update({k: v for k, v in PRESETS[preset].items() if k != "description"})
    config["preset"] = preset
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in config:
            raise ConfigError(f"unknown configuration key '{key}'.")
        config[key] = value
    validate_config(config)
    return config


def validate_config(config: dict[str, Any]) -> None:
    """Raise ConfigError on values no run could use."""
    for key in ("steps", "batch_size", "n_train", "log_every", "checkpoint_every"):
        if not isinstance(config[key], int) or config[key] <= 0:
            raise ConfigError(f"{key} must be a positive integer, got {config[key]!r}.")
    if not config["lr"] or config["lr"] <= 0:
        raise ConfigError(f"lr must be positive, got {config['lr']!r}.")
    if config["sde"] not in ("ve", "vp", "subvp", "ncsn"):
        raise ConfigError(f"unknown sde '{config['sde']}'; choose ve, vp, subvp or ncsn.")
    if config["loss"] not in ("dsm", "ncsn", "ssm", "ssm_vr", "exact"):
        raise ConfigError(
            f"unknown loss '{config['loss']}'; choose dsm, ncsn, ssm, ssm_vr or exact."
        )
    if config["ema"] is not None and not 0.0 <= config["ema"] < 1.0:
        raise ConfigError(f"ema must lie in [0, 1), got {config['ema']!r}.")
    _validate_scaling(config)


def _validate_scaling(config: dict[str, Any]) -> None:
    """Check distribute / devices / precision (configs written before they existed lack them)."""
    distribute = config.get("distribute", "none")
    devices = config.get("devices")
    precision = config.get("precision", "float32")
    if distribute not in DISTRIBUTE_MODES:
        raise ConfigError(
            f"unknown distribute '{distribute}'; choose one of {', '.join(DISTRIBUTE_MODES)}."
        )
    if devices is not None and (
        isinstance(devices, bool) or not isinstance(devices, int) or devices <= 0
    ):
        raise ConfigError(f"devices must be a positive integer, got {devices!r}.")
    if distribute != "none" and devices is not None and config["batch_size"] % devices:
        raise ConfigError(
            f"the global batch size {config['batch_size']} does not split evenly over "
            f"{devices} devices; choose a batch size that is a multiple of {devices}."
        )
    if precision not in PRECISIONS:
        raise ConfigError(
            f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}."
        )
