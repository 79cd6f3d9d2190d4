"""Training: ScoreModel, EMA, learning-rate schedules, callbacks, checkpoints, data-parallel and
mixed-precision set-up, presets, and the noise-conditional classifier.

`presets` and `distribution` are plain Python, imported here at once: `scoregen presets` and
`scoregen train` read them before a backend is chosen. The other modules import keras, which
must wait for KERAS_BACKEND, so their names are imported on first use (PEP 562 `__getattr__`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from scoregen_keras.training.distribution import (
    CPU_DEVICES_ENV,
    DATA_PARALLEL,
    DATA_PARALLEL_BACKENDS,
    FLOAT32,
    MIXED_BFLOAT16,
    MIXED_FLOAT16,
    NONE,
    SINGLE_DEVICE,
    TORCH_UNSUPPORTED,
    DistributeError,
    Placement,
    check_precision,
    check_support,
    choose_devices,
    keras_version,
    needs_loss_scaling,
    precision_scope,
    requested_cpu_devices,
    training_scope,
)
from scoregen_keras.training.presets import (
    BASE,
    DIGITS_STEPS,
    NCSNV2_RULES,
    NCSNV2_SIGMA_MIN,
    NCSNV2_STEP_LR,
    NCSNV2_STEPS_EACH,
    PRESETS,
    SDE_PAPER_STEPS,
    SDE_PAPER_WARMUP,
    TOY_SAMPLER_SIGMA_MAX,
    TOY_STEPS,
    ConfigError,
    resolve_config,
    validate_config,
)

KERAS_EXPORTS: dict[str, tuple[str, ...]] = {
    "callbacks": (
        "METRICS_DIGITS",
        "GracefulInterrupt",
        "MetricsLogger",
        "PeriodicCheckpoint",
        "ProgressBar",
        "SamplePreview",
        "StepCallback",
        "current_learning_rate",
        "tensorboard_callback",
    ),
    "checkpoint": (
        "KERAS_SUFFIX",
        "REQUIRED_MEMBERS",
        "CheckpointError",
        "check_checkpoint",
        "load_checkpoint",
        "save_checkpoint",
    ),
    "classifier": (
        "CLASSIFIER_LEARNING_RATE",
        "DEFAULT_BATCH_SIZE",
        "DEFAULT_HIDDEN",
        "DEFAULT_N_FREQ",
        "DEFAULT_STEPS",
        "LogPosteriorGradFn",
        "NoiseConditionalClassifier",
        "NoisedDataClassifier",
        "log_posterior_grad_fn",
        "train_classifier",
    ),
    "ema": (
        "EMA_RATE_VE",
        "EMA_RATE_VP",
        "WARMUP_OFFSET_DENOMINATOR",
        "WARMUP_OFFSET_NUMERATOR",
        "ema_decay",
        "ema_update",
    ),
    "schedules": (
        "DEFAULT_LEARNING_RATE",
        "DEFAULT_WARMUP_STEPS",
        "LinearWarmup",
        "WarmupCosineDecay",
    ),
    "score_model": (
        "ADAM_BETA_1",
        "ADAM_BETA_2",
        "ADAM_EPSILON",
        "DEFAULT_EMA_RATES",
        "GLOBAL_CLIPNORM",
        "NCSN",
        "NCSN_LOSSES",
        "NCSN_NUM_SCALES",
        "NCSN_SIGMA_MAX",
        "NCSN_SIGMA_MIN",
        "SCORE_MATCHING_VARIANTS",
        "SDE_LOSSES",
        "SDE_NAMES",
        "SEED_STATE_KEY",
        "TRAIN_EPS",
        "ScoreModel",
        "resolve_sde",
    ),
}
"""The names re-exported from the modules that import keras, by module."""


def _keras_modules() -> dict[str, ModuleType]:
    """The modules behind KERAS_EXPORTS by name, imported (with keras) on the first call."""
    from scoregen_keras.training import (
        callbacks,
        checkpoint,
        classifier,
        ema,
        schedules,
        score_model,
    )

    modules = (callbacks, checkpoint, classifier, ema, schedules, score_model)
    return {module.__name__.rpartition(".")[2]: module for module in modules}


def __getattr__(name: str) -> Any:
    """Import a name of KERAS_EXPORTS from its module on first use, then keep it here."""
    for module, names in KERAS_EXPORTS.items():
        if name in names:
            value = getattr(_keras_modules()[module], name)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ADAM_BETA_1",
    "ADAM_BETA_2",
    "ADAM_EPSILON",
    "BASE",
    "CLASSIFIER_LEARNING_RATE",
    "CPU_DEVICES_ENV",
    "DATA_PARALLEL",
    "DATA_PARALLEL_BACKENDS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_EMA_RATES",
    "DEFAULT_HIDDEN",
    "DEFAULT_LEARNING_RATE",
    "DEFAULT_N_FREQ",
    "DEFAULT_STEPS",
    "DEFAULT_WARMUP_STEPS",
    "DIGITS_STEPS",
    "EMA_RATE_VE",
    "EMA_RATE_VP",
    "FLOAT32",
    "GLOBAL_CLIPNORM",
    "KERAS_SUFFIX",
    "METRICS_DIGITS",
    "MIXED_BFLOAT16",
    "MIXED_FLOAT16",
    "NCSN",
    "NCSNV2_RULES",
    "NCSNV2_SIGMA_MIN",
    "NCSNV2_STEPS_EACH",
    "NCSNV2_STEP_LR",
    "NCSN_LOSSES",
    "NCSN_NUM_SCALES",
    "NCSN_SIGMA_MAX",
    "NCSN_SIGMA_MIN",
    "NONE",
    "PRESETS",
    "REQUIRED_MEMBERS",
    "SCORE_MATCHING_VARIANTS",
    "SDE_LOSSES",
    "SDE_NAMES",
    "SDE_PAPER_STEPS",
    "SDE_PAPER_WARMUP",
    "SEED_STATE_KEY",
    "SINGLE_DEVICE",
    "TORCH_UNSUPPORTED",
    "TOY_SAMPLER_SIGMA_MAX",
    "TOY_STEPS",
    "TRAIN_EPS",
    "WARMUP_OFFSET_DENOMINATOR",
    "WARMUP_OFFSET_NUMERATOR",
    "CheckpointError",
    "ConfigError",
    "DistributeError",
    "GracefulInterrupt",
    "LinearWarmup",
    "LogPosteriorGradFn",
    "MetricsLogger",
    "NoiseConditionalClassifier",
    "NoisedDataClassifier",
    "PeriodicCheckpoint",
    "Placement",
    "ProgressBar",
    "SamplePreview",
    "ScoreModel",
    "StepCallback",
    "WarmupCosineDecay",
    "check_checkpoint",
    "check_precision",
    "check_support",
    "choose_devices",
    "current_learning_rate",
    "ema_decay",
    "ema_update",
    "keras_version",
    "load_checkpoint",
    "log_posterior_grad_fn",
    "needs_loss_scaling",
    "precision_scope",
    "requested_cpu_devices",
    "resolve_config",
    "resolve_sde",
    "save_checkpoint",
    "tensorboard_callback",
    "train_classifier",
    "training_scope",
    "validate_config",
]
