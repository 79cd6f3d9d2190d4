"""Exponential moving average of weights (score_sde's EMA, with the warm-up of its PyTorch port)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops

# Rates of the score SDE paper's configs: 0.999 for VE / NCSN, 0.9999 for VP / sub-VP.
EMA_RATE_VE = 0.999
EMA_RATE_VP = 0.9999
# Warm-up decay (1 + n) / (10 + n) at update n = 1, 2, ... (score_sde ExponentialMovingAverage).
WARMUP_OFFSET_NUMERATOR = 1.0
WARMUP_OFFSET_DENOMINATOR = 10.0


def ema_decay(rate: float, num_updates: Any) -> Any:
    """Decay used at update number `num_updates` (1 for the first): min(rate, (1+n)/(10+n))."""
    n = ops.cast(num_updates, "float32")
    warmup = (WARMUP_OFFSET_NUMERATOR + n) / (WARMUP_OFFSET_DENOMINATOR + n)
    return ops.minimum(ops.convert_to_tensor(rate, dtype="float32"), warmup)


def ema_update(averages: Sequence[Any], values: Sequence[Any], decay: Any) -> list[Any]:
    """New averages: decay * average + (1 - decay) * value, elementwise over matching lists."""
    out = []
    for average, value in zip(averages, values, strict=True):
        d = ops.cast(decay, average.dtype)
        out.append(average - (1.0 - d) * (average - ops.cast(value, average.dtype)))
    return out
