"""The per-sample counter normals as a NumPy-style ``rng`` for the reference samplers.

``CounterRng(seeds).standard_normal(shape)`` returns draw d (d = 0, 1, ... per call) of every
seed in float64, the host definition of `counter_noise`, so a reference sampler fed it draws
what a Keras sampler given the same seeds draws (before rounding to float32): the draw layout
each docstring states is then checked against the reference's order of draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from scoregen_keras.sampling.counter_noise import SAMPLER_STREAM, as_seeds, counter_normals


class CounterRng:
    """Draw d of each seed at the d-th ``standard_normal`` call (float64)."""

    def __init__(self, seeds: Sequence[int], stream: int = SAMPLER_STREAM) -> None:
        """One seed per example of the batch."""
        self.seeds, self.stream, self.position = as_seeds(seeds), stream, 0

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """The next draw, shape (batch, *dims) with batch = len(seeds)."""
        if shape[0] != len(self.seeds):
            raise ValueError(f"a draw of shape {shape} for {len(self.seeds)} seeds")
        z = counter_normals(self.seeds, self.position, 1, math.prod(shape[1:]), self.stream)
        self.position += 1
        return z[0].reshape(shape)
