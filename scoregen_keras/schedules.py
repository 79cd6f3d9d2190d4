"""Learning-rate schedules: the linear warm-up of the score SDE paper's training recipe."""

from __future__ import annotations

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
