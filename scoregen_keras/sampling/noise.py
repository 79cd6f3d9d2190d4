"""Where a sampler's standard normals come from: a seed, or noise injected by a test.

Randomness: where the reference takes ``rng`` a sampler takes ``seed`` (int, a
``keras.random.SeedGenerator`` or None). Tests can instead hand in ``noise``: a callable
``noise(shape) -> array`` (e.g. ``np.random.default_rng(0).standard_normal``) or an iterable of
arrays, consumed in exactly the order the reference draws its normals, so both implementations
can be run on the same draws. Every normal a sampler draws has the sample's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from scoregen_keras.sampling.host import host_index, host_to_float

Tensor = Any

Seed = int | keras.random.SeedGenerator | None
Noise = Callable[[tuple[int, ...]], Any] | Iterable[Any] | None
# seeded normals are drawn in blocks of up to this many entries (16 MiB of float32), one random
# call per block instead of one per step
NOISE_BLOCK_ENTRIES = 2**22


class NoiseSource:
    """Standard normals of one shape, ``k`` per request: from a seed or from injected noise."""

    def __init__(self, shape: Sequence[int], seed: Seed = None, noise: Noise = None) -> None:
        """Draw with ``keras.random`` from ``seed``, or from ``noise`` (callable or iterable)."""
        self.shape = tuple(int(n) for n in shape)
        self._max_block = max(1, NOISE_BLOCK_ENTRIES // max(1, math.prod(self.shape)))
        self._block: Tensor | None = None
        self._block_size = self._position = 0
        self._generator = None
        self._callable: Callable[[tuple[int, ...]], Any] | None = None
        self._iterator: Iterator[Any] | None = None
        if noise is None:
            seeded = isinstance(seed, keras.random.SeedGenerator)
            self._generator = seed if seeded else keras.random.SeedGenerator(seed)
        elif callable(noise):
            self._callable = noise
        else:
            self._iterator = iter(noise)

    def _injected(self) -> np.ndarray:
        """The next injected normal, checked against the shape."""
        if self._callable is not None:
            value = self._callable(self.shape)
        else:
            try:
                value = next(self._iterator)
            except StopIteration:
                raise ValueError("the injected noise ran out of draws") from None
        value = np.asarray(value)
        if value.shape != self.shape:
            raise ValueError(f"injected noise has shape {value.shape}, expected {self.shape}")
        return value

    def _refill(self, k: int) -> None:
        """Make k draws available: a new block, twice the last one (so short runs draw little)."""
        if self._position + k <= self._block_size:
            return
        self._block_size = max(k, min(2 * self._block_size, self._max_block))
        shape = (self._block_size, *self.shape)
        self._block, self._position = keras.random.normal(shape, seed=self._generator), 0

    def _seeded(self, k: int) -> Tensor:
        """The next k seeded normals (k, *shape), cut from a block drawn at once."""
        self._refill(k)
        start, self._position = self._position, self._position + k
        # a gather with tensor indices: eager slicing with Python ints compiles per index on JAX
        return ops.take(self._block, host_index(np.arange(start, self._position)), axis=0)

    def draw(self, k: int) -> Tensor:
        """k normals stacked on a new leading axis, shape (k, *shape) (k may be 0)."""
        if self._generator is not None:
            return self._seeded(k)
        if k == 0:
            return host_to_float(np.zeros((0, *self.shape)))
        return host_to_float(np.stack([self._injected() for _ in range(k)]))

    def draw_one(self) -> Tensor:
        """One normal of the sample's shape."""
        if self._generator is not None:
            self._refill(1)
            self._position += 1
            return ops.take(self._block, host_index(self._position - 1), axis=0)
        return host_to_float(self._injected())
