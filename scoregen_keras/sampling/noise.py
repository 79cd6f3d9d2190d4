"""Where a sampler's standard normals come from: per-sample seeds, a backend stream, or a test.

Randomness: where the reference takes ``rng`` a sampler takes ``seed``:

- an int S, or one integer per sample (a sequence or array of the batch's length): per-sample
  counter-based normals (`counter_noise.CounterNoise`), the default. The int S stands for the
  seeds S, S+1, ..., S+batch-1. Draw d of the sample with seed s is a function of (s, d) only,
  so a sample is the same on every backend, at every batch size and position in the batch;
- a `counter_noise.CounterNoise` of the batch's shape, used as it is (its stream and position);
- a ``keras.random.SeedGenerator`` (or None: unseeded): the backend's own stream, drawn in blocks
  for the whole batch (the `--noise backend` opt-in). It is reproducible only on the same backend
  with the same batch size, and the sample of a seed depends on its batch.

Tests can instead hand in ``noise``: a callable ``noise(shape) -> array`` (e.g.
``np.random.default_rng(0).standard_normal``) or an iterable of arrays, consumed in exactly the
order the reference draws its normals, so both implementations run on the same draws. Every
normal a sampler draws has the batch's shape; draw d is the d-th normal in the order a sampler's
docstring states.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

import keras
import numpy as np
from keras import ops

from scoregen_keras.sampling.counter_noise import SAMPLER_STREAM, CounterNoise, as_seeds
from scoregen_keras.sampling.host import host_index, host_to_float

Tensor = Any

Seed = int | Sequence[int] | np.ndarray | CounterNoise | keras.random.SeedGenerator | None
Noise = Callable[[tuple[int, ...]], Any] | Iterable[Any] | None
# backend-stream normals are drawn in blocks of up to this many entries (16 MiB of float32), one
# random call per block instead of one per step
NOISE_BLOCK_ENTRIES = 2**22


class Draws(Protocol):
    """What a noise source gives: normals of ``shape``, ``k`` at a time or one."""

    shape: tuple[int, ...]

    def draw(self, k: int) -> Tensor:
        """The next k normals stacked on a new leading axis, (k, *shape)."""

    def draw_one(self) -> Tensor:
        """The next normal, of ``shape``."""


def per_sample_seeds(seed: int | Sequence[int] | np.ndarray, batch: int) -> np.ndarray:
    """The seed of each of ``batch`` samples, uint64: S..S+batch-1 for an int S, else the
    sequence itself, checked to hold one integer in [0, 2^64) per sample (ValueError)."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        seeds = as_seeds([int(seed) + i for i in range(batch)])
    else:
        seeds = as_seeds(seed)
    if len(seeds) != batch:
        raise ValueError(f"{len(seeds)} seeds given for a batch of {batch} samples")
    return seeds


class BackendNoise:
    """``keras.random`` normals of one shape from a seed generator, drawn in blocks."""

    def __init__(self, shape: tuple[int, ...], seed: keras.random.SeedGenerator | None) -> None:
        """Draw from ``seed`` (None: a generator seeded by the backend's entropy)."""
        self.shape = shape
        self._generator = seed if seed is not None else keras.random.SeedGenerator(None)
        self._max_block = max(1, NOISE_BLOCK_ENTRIES // max(1, math.prod(shape)))
        self._block: Tensor | None = None
        self._block_size = self._position = 0

    def _refill(self, k: int) -> None:
        """Make k draws available: a new block, twice the last one (so short runs draw little)."""
        if self._position + k <= self._block_size:
            return
        self._block_size = max(k, min(2 * self._block_size, self._max_block))
        shape = (self._block_size, *self.shape)
        self._block, self._position = keras.random.normal(shape, seed=self._generator), 0

    def draw(self, k: int) -> Tensor:
        """The next k normals (k, *shape), cut from a block drawn at once."""
        self._refill(k)
        start, self._position = self._position, self._position + k
        # a gather with tensor indices: eager slicing with Python ints compiles per index on JAX
        return ops.take(self._block, host_index(np.arange(start, self._position)), axis=0)

    def draw_one(self) -> Tensor:
        """The next normal."""
        self._refill(1)
        self._position += 1
        return ops.take(self._block, host_index(self._position - 1), axis=0)


class InjectedNoise:
    """Normals handed in by a test: a callable ``noise(shape)`` or an iterable of arrays."""

    def __init__(self, shape: tuple[int, ...], noise: Callable[..., Any] | Iterable[Any]) -> None:
        """Take each normal from ``noise``, checked against ``shape``."""
        self.shape = shape
        self._callable = noise if callable(noise) else None
        self._iterator = None if callable(noise) else iter(noise)

    def _next(self) -> np.ndarray:
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

    def draw(self, k: int) -> Tensor:
        """The next k normals (k may be 0)."""
        if k == 0:
            return host_to_float(np.zeros((0, *self.shape)))
        return host_to_float(np.stack([self._next() for _ in range(k)]))

    def draw_one(self) -> Tensor:
        """The next normal."""
        return host_to_float(self._next())


def _draws(shape: tuple[int, ...], seed: Seed, noise: Noise, stream: int) -> Draws:
    """The source that ``seed`` / ``noise`` name (see the module docstring)."""
    if noise is not None:
        return InjectedNoise(shape, noise)
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return BackendNoise(shape, seed)
    if isinstance(seed, CounterNoise):
        if seed.shape != shape:
            raise ValueError(f"the counter noise has shape {seed.shape}, expected {shape}")
        return seed
    return CounterNoise(per_sample_seeds(seed, shape[0]), shape[1:], stream)


class NoiseSource:
    """Standard normals of one shape, ``k`` per request, from the source ``seed`` or ``noise``
    names: per-sample seeds (default), a backend stream, or injected noise."""

    def __init__(
        self,
        shape: Sequence[int],
        seed: Seed = None,
        noise: Noise = None,
        stream: int = SAMPLER_STREAM,
    ) -> None:
        """``stream`` separates independent uses of per-sample seeds (`counter_noise`)."""
        self.shape = tuple(int(n) for n in shape)
        self._draws = _draws(self.shape, seed, noise, stream)

    def draw(self, k: int) -> Tensor:
        """k normals stacked on a new leading axis, shape (k, *shape) (k may be 0)."""
        return self._draws.draw(k)

    def draw_one(self) -> Tensor:
        """One normal of the batch's shape."""
        return self._draws.draw_one()
