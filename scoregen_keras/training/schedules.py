"""Learning-rate schedules: the score SDE paper's linear warm-up, optionally with cosine decay."""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

DEFAULT_LEARNING_RATE = 2e-4  # score_sde configs (optim.lr)
DEFAULT_WARMUP_STEPS = 5000  # score_sde configs (optim.warmup)


@keras.saving.register_keras_serializable(package="scoregen")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to a constant rate: update n (= step + 1) uses lr * min(1, n / warmup).

    score_sde multiplies by min(1, step / warmup) with a 0-based step, so its first update has rate
    zero; counting updates from one keeps the same ramp without wasting that update.
    """

    def __init__(
        self,
        learning_rate: float = DEFAULT_LEARNING_RATE,
        warmup_steps: int = DEFAULT_WARMUP_STEPS,
    ) -> None:
        """Store the peak rate and the number of warm-up updates (0 disables warm-up)."""
        super().__init__()
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}.")
        self.learning_rate = float(learning_rate)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: Any) -> Any:
        """Learning rate at the 0-based optimizer iteration `step`."""
        if self.warmup_steps == 0:
            return ops.convert_to_tensor(self.learning_rate, dtype="float32")
        n = ops.cast(step, "float32") + 1.0
        fraction = ops.minimum(n / float(self.warmup_steps), 1.0)
        return self.learning_rate * fraction

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration."""
        return {"learning_rate": self.learning_rate, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="scoregen")
class WarmupCosineDecay(LinearWarmup):
    """LinearWarmup, then cosine decay from lr to final_fraction * lr at update total_steps.

    Lowering the rate at the end of training averages out the noise of the score-matching
    gradient, the same job EMA does on the weights; the toy presets use both. A run no longer
    than its warm-up only warms up.
    """

    def __init__(
        self,
        learning_rate: float = DEFAULT_LEARNING_RATE,
        warmup_steps: int = DEFAULT_WARMUP_STEPS,
        total_steps: int = 1,
        final_fraction: float = 0.0,
    ) -> None:
        """Peak rate, warm-up updates, the update where the decay ends, and the final fraction."""
        super().__init__(learning_rate, warmup_steps)
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}.")
        if not 0.0 <= final_fraction <= 1.0:
            raise ValueError(f"final_fraction must lie in [0, 1], got {final_fraction}.")
        self.total_steps = int(total_steps)
        self.final_fraction = float(final_fraction)

    def __call__(self, step: Any) -> Any:
        """Learning rate at the 0-based optimizer iteration `step`."""
        n = ops.cast(step, "float32") + 1.0
        span = float(max(self.total_steps - self.warmup_steps, 1))  # none: warm-up only
        progress = ops.clip((n - float(self.warmup_steps)) / span, 0.0, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        decay = self.final_fraction + (1.0 - self.final_fraction) * cosine
        return super().__call__(step) * decay

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration."""
        return {
            **super().get_config(),
            "total_steps": self.total_steps,
            "final_fraction": self.final_fraction,
        }
