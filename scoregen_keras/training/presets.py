"""Named training configurations: the toy defaults and the papers' CIFAR-10 / MNIST set-ups.

A run's configuration is a flat JSON-able dict; `resolve_config` starts from a preset and applies
overrides, so `config.json` in a run folder always holds every value that was used.
"""

from __future__ import annotations

import copy
from typing import Any

from reference.checks import FAST_SAMPLER_SIGMA_MAX
from scoregen_keras.choices import (
    CORRECTORS,
    DEFAULT_PRESET,
    DISTRIBUTE_MODES,
    LOSSES,
    LR_DECAYS,
    PRECISIONS,
    SDES,
)

# Score SDE paper training set-up (Song et al. 2021, configs/default_cifar10_configs.py).
SDE_PAPER_STEPS = 1_300_001
SDE_PAPER_WARMUP = 5_000

# Toy presets: issue 6's sample-quality targets need this budget with the cosine decay
# (6 000 constant-rate steps left the ODE samplers' log-density gap at -0.2 to -0.4 nats).
TOY_STEPS = 30_000
# sigma~_max of the few-step samplers on the toy data: ~3x the mixture's diameter, the value of
# the exact-score suite; VP's sigma~(T) is ~150
TOY_SAMPLER_SIGMA_MAX = FAST_SAMPLER_SIGMA_MAX
# PC corrector of the toy presets: ALD (step 2 alpha (snr sigma_t)^2) reaches the floor of the
# mean log-density and spread where the Langevin corrector at snr 0.16 is 4 % too wide, and its
# step reads no norms, so a sample does not depend on its batch (benchmarks/pc_defaults.py)
TOY_SAMPLER_CORRECTOR = "ald"

# NCSNv2's annealed Langevin on CIFAR-10 (Song & Ermon 2020, configs/cifar10.yml): 5 steps a level
# at eps = 6.2e-6, which technique 4 gives for its 232 levels (reference.sde.ncsnv2_step_size).
# Its update is x + eps' s + sqrt(2 eps') z; NCSN's, which the samplers run, is
# x + alpha/2 s + sqrt(alpha) z, the same step with alpha = 2 eps'.
NCSNV2_STEPS_EACH = 5
NCSNV2_STEP_LR = 2 * 6.2e-6
# sde_config rules = "ncsnv2" (sde ncsn): sigma_1 and the number of levels come from the training
# data (techniques 1 and 2), down to sigma_min, and the step size from technique 4 (runs.py)
NCSNV2_RULES = "ncsnv2"
NCSNV2_SIGMA_MIN = 0.01

# The digits preset's budget: ncsnpp/digits-small, batch 128; 0.25-0.55 s a step on 2 CPU cores
# shared with other work (JAX, load 5-6), so 10-20 minutes (benchmarks/quality_digits.py records
# the time and the load); FD to held-out digits 1.9x the real-vs-real floor after it
DIGITS_STEPS = 2_000

# Scaling out (scoregen_keras.distribute): how a step is spread over devices, and in what precision.

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
    "lr_decay": "none",  # or "cosine": to zero at the last step (the run's length is then fixed)
    "grad_clip": 1.0,
    "ema": None,  # None: 0.999 for VE / NCSN, 0.9999 for VP / sub-VP
    "seed": 0,
    "log_every": 50,
    "checkpoint_every": 1_000,
    "sample_every": 1_000,
    "n_sample_preview": 2_000,  # points in a preview scatter; an image grid draws at most 100
    "sampler": "pc",
    "sampler_steps": None,  # None: the SDE's N
    # EDM Heun / DPM-Solver++ start at this sigma~ (None: the SDE's sigma~(T)); on data of a known
    # scale, steps above a few data diameters are spent on nearly pure noise
    "sampler_sigma_max": None,
    # the PC corrector of every draw unless told otherwise (None: ald for point data, langevin
    # for images); on 2-D mixtures the Langevin corrector at snr 0.16 draws too wide and couples
    # the samples of a batch, ALD does neither (benchmarks/pc_defaults.py)
    "sampler_corrector": None,
    # annealed Langevin (runs of NCSN noise levels): steps per level and the step size eps of
    # alpha_i = eps sigma_i^2 / sigma_L^2 (None: NCSN's 100 and 2e-5); every draw uses them unless
    # told otherwise, previews with sampler_steps steps per level when that is set
    "ald_steps_each": None,
    "ald_step_lr": None,
    "distribute": "none",  # "data-parallel": the global batch is split over devices
    "devices": None,  # data-parallel: number of devices (None: all of them; ignored otherwise)
    "precision": "float32",  # or a Keras mixed policy: the network runs in float16 / bfloat16
}

PRESETS: dict[str, dict[str, Any]] = {
    "toy": {
        "description": "MLP on the 5-component 2-D mixture, VE SDE (default; minutes on a CPU)",
        # sigma_max: about 3x the largest distance between two data points (NCSNv2 technique 1
        # asks for at least that distance); 50, the image default, spends steps on pure noise
        "sde_config": {"sigma_max": 20.0},
        "steps": TOY_STEPS,
        "lr": 2e-3,
        "warmup": 200,
        "lr_decay": "cosine",
        "sampler_sigma_max": TOY_SAMPLER_SIGMA_MAX,
        "sampler_corrector": TOY_SAMPLER_CORRECTOR,
        "batch_size": 512,
        "ema": 0.999,
        "checkpoint_every": 10_000,
        "sample_every": 10_000,
    },
    "toy-vp": {
        "description": "MLP on the 5-component 2-D mixture, VP SDE",
        "sde": "vp",
        "steps": TOY_STEPS,
        "lr": 2e-3,
        "warmup": 200,
        "lr_decay": "cosine",
        "sampler_sigma_max": TOY_SAMPLER_SIGMA_MAX,
        "sampler_corrector": TOY_SAMPLER_CORRECTOR,
        "batch_size": 512,
        "ema": 0.999,
        "checkpoint_every": 10_000,
        "sample_every": 10_000,
    },
    "digits": {
        "description": "small NCSN++ on scikit-learn's 8x8 digits, VE SDE (10-20 min on 2 CPUs)",
        "dataset": "digits:train",  # 1 438 digits; digits:held-out (359) is never trained on
        # issue 6: benchmarks/quality_digits.py measures this budget (a fixed step count, so the
        # run is reproducible; the wall time depends on the machine and its load)
        "model": "ncsnpp/digits-small",
        "sde": "ve",
        "sde_config": {"sigma_max": 10.0},
        "steps": DIGITS_STEPS,
        "batch_size": 128,
        "lr": 2e-3,
        "warmup": 100,
        "lr_decay": "cosine",
        "ema": 0.999,
        "checkpoint_every": 500,
        "sample_every": 1_000,
        "n_sample_preview": 64,
        "sampler_steps": 500,
    },
    "mnist-ncsnv2": {
        "description": "NCSNv2 on MNIST (Song & Ermon 2020's CIFAR-10 schedule: L=232, σ 50→0.01)",
        "dataset": "mnist",
        "model": "ncsnv2/mnist",
        "sde": "ncsn",
        "sde_config": {"sigma_max": 50.0, "sigma_min": 0.01, "num_scales": 232},
        "loss": "ncsn",
        "reduce": "squared_norm",
        "grad_clip": None,
        "ald_steps_each": NCSNV2_STEPS_EACH,
        "ald_step_lr": NCSNV2_STEP_LR,
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
        "reduce": "squared_norm",
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
        "reduce": "squared_norm",
        "ald_steps_each": NCSNV2_STEPS_EACH,
        "ald_step_lr": NCSNV2_STEP_LR,
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
        # configs/vp/cifar10_ddpmpp_continuous.py sets training.reduce_mean = True (the VE
        # config keeps the default's False: 0.5 * sum over the dims, "sum" here)
        "reduce": "mean",
        "checkpoint_every": 50_000,
        "sample_every": 10_000,
        "n_sample_preview": 64,
    },
}


class ConfigError(ValueError):
    """A configuration value is unknown or out of range; the message is one sentence."""


def resolve_config(preset: str = DEFAULT_PRESET, overrides: dict[str, Any] | None = None) -> dict:
    """Start from BASE, apply the preset, then the overrides that are not None; validate.

    The preset's sde_config belongs to its SDE: an override of sde without an sde_config of its
    own starts from the new SDE's defaults.
    """
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}.")
    config = copy.deepcopy(BASE)
    config.update({k: v for k, v in PRESETS[preset].items() if k != "description"})
    config["preset"] = preset
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if overrides.get("sde", config["sde"]) != config["sde"] and "sde_config" not in overrides:
        config["sde_config"] = {}
    for key, value in overrides.items():
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
    if config["sde"] not in SDES:
        raise ConfigError(f"unknown sde '{config['sde']}'; choose one of {', '.join(SDES)}.")
    if config["loss"] not in LOSSES:
        raise ConfigError(f"unknown loss '{config['loss']}'; choose one of {', '.join(LOSSES)}.")
    if config.get("lr_decay", "none") not in LR_DECAYS:
        raise ConfigError(
            f"unknown lr_decay '{config['lr_decay']}'; choose one of {', '.join(LR_DECAYS)}."
        )
    for key in ("sampler_sigma_max", "ald_step_lr"):
        _check_optional_positive(config, key, int | float, "a positive number")
    _check_optional_positive(config, "ald_steps_each", int, "a positive integer")
    corrector = config.get("sampler_corrector")
    if corrector is not None and corrector not in CORRECTORS:
        raise ConfigError(
            f"sampler_corrector must be one of {', '.join(CORRECTORS)} (or null), got "
            f"{corrector!r}."
        )
    _validate_ncsn_rules(config)
    if config["ema"] is not None and not 0.0 <= config["ema"] < 1.0:
        raise ConfigError(f"ema must lie in [0, 1), got {config['ema']!r}.")
    _validate_scaling(config)


def _validate_ncsn_rules(config: dict[str, Any]) -> None:
    """sde_config "rules" is "ncsnv2" on an NCSN run, which then leaves sigma_max and num_scales
    to the data."""
    rules = config["sde_config"].get("rules")
    if rules is None:
        return
    if config["sde"] != "ncsn" or rules != NCSNV2_RULES:
        raise ConfigError(
            f'sde_config rules = {rules!r} is unknown; runs of NCSN noise levels (sde "ncsn") '
            f'take rules = "{NCSNV2_RULES}".'
        )
    given = sorted({"sigma_max", "num_scales"} & set(config["sde_config"]))
    if given:
        raise ConfigError(
            f'sde_config rules = "{NCSNV2_RULES}" picks {" and ".join(given)} from the data; '
            "leave them out."
        )
    _check_optional_positive(config["sde_config"], "sigma_min", int | float, "a positive number")


def _check_optional_positive(config: dict[str, Any], key: str, kind: Any, what: str) -> None:
    """ConfigError unless config[key] is missing, None or a positive value of `kind`."""
    value = config.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind) or value <= 0):
        raise ConfigError(f"{key} must be {what}, got {value!r}.")


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
