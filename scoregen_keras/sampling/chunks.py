"""How the fixed-step samplers run: several steps per compiled call, compiled once per shape.

One call of a function compiled with ``backend.jit`` runs up to ``MAX_CHUNK_STEPS`` steps in a
``keras.ops.fori_loop`` over a table of per-step coefficients computed on the host, with the
chunk's normals drawn up front, so the per-step Python and dispatch cost is paid once per chunk.
Chunks are padded to a fixed length (the loop runs only over the real steps), so a step is traced
once per shape. Compiled chunks are reused across calls for the same (score_fn, sde, settings)
except where compilation bakes in the weights the score reads (JAX) and ``variables`` was not
given (see ``backend.jit``).
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import numpy as np
from keras import ops
from tqdm.auto import tqdm

from scoregen_keras import backend
from scoregen_keras.sampling.host import host_index, host_to_float
from scoregen_keras.sampling.noise import NOISE_BLOCK_ENTRIES, NoiseSource

Tensor = Any

COMPILED_CACHE_SIZE = 32  # compiled step functions kept for reuse across sampler calls
MAX_CHUNK_STEPS = 50  # sampler steps per compiled call (and per progress-bar update)
_COMPILED: OrderedDict[Hashable, Callable[..., Any]] = OrderedDict()


def clear_compiled() -> None:
    """Forget every compiled step function (e.g. after changing weights on JAX)."""
    _COMPILED.clear()


def compiled_count() -> int:
    """How many compiled step functions are kept for reuse."""
    return len(_COMPILED)


def compiled(
    fn: Callable[..., Any],
    *,
    key: Hashable,
    variables: Sequence[Any] | None = None,
    example_args: Callable[[], Sequence[Tensor]] | None = None,
) -> Callable[..., Any]:
    """backend.jit(fn), reused across calls for the same key where that is safe.

    The key must name everything ``fn`` closes over (score function, SDE, settings): on a hit
    the compiled function of an earlier ``fn`` is returned. Reuse is unsafe where compilation
    bakes in the weights the score reads (JAX) and ``variables`` does not list them.
    ``example_args`` makes ``backend.jit``'s example_args, only when compiling; the key must then
    fix their shapes and dtypes.
    """
    reusable = variables is not None or not backend.jit_bakes_variables()
    key = (key, None if variables is None else tuple(id(v) for v in variables))
    if reusable and key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    args = None if example_args is None else example_args()
    jitted = backend.jit(fn, variables=variables, example_args=args)
    if reusable:
        _COMPILED[key] = jitted
        while len(_COMPILED) > COMPILED_CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return jitted


def without_grad(sampler: Callable[..., Any]) -> Callable[..., Any]:
    """Run a sampler with gradient recording off (PyTorch; elsewhere a no-op)."""

    @functools.wraps(sampler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with backend.no_grad():
            return sampler(*args, **kwargs)

    return wrapped


def _chunk_length(draws_per_step: int, shape: Sequence[int]) -> int:
    """Steps per compiled call: MAX_CHUNK_STEPS, fewer where the chunk's normals would be large."""
    entries = max(1, draws_per_step * math.prod(shape))
    return max(1, min(MAX_CHUNK_STEPS, NOISE_BLOCK_ENTRIES // entries))


def _chunk_loop(step: Callable[..., Any]) -> Callable[..., Any]:
    """chunk(state, rows, z, count): ``count`` steps state <- step(state, rows[i], z[i])."""

    def chunk(state: Any, rows: Tensor, z: Tensor, count: Tensor) -> Any:
        def body(i: Tensor, state: Any) -> Any:
            return step(state, rows[i], z[i])

        return ops.fori_loop(0, count, body, state)

    return chunk


def _chunk_noise(
    source: NoiseSource | None, draws_per_step: int, noisy: np.ndarray, length: int
) -> Tensor:
    """Normals (length, draws_per_step, *shape) for one chunk, drawn in step order.

    Steps where ``noisy`` is False draw nothing and get zeros, as do the padding rows. Without
    draws (or source) the steps get an empty placeholder, shape (length, 0).
    """
    if source is None or draws_per_step == 0:
        return ops.zeros((length, 0))
    shape = (draws_per_step, *source.shape)
    n_noisy = int(np.sum(noisy))
    draws = ops.reshape(source.draw(n_noisy * draws_per_step), (n_noisy, *shape))
    if n_noisy == length:
        return draws
    index = np.full(length, n_noisy)  # row n_noisy is the appended zeros
    index[: len(noisy)] = np.where(noisy, np.cumsum(noisy) - 1, n_noisy)
    padded = ops.concatenate([draws, ops.zeros((1, *shape), dtype=draws.dtype)], axis=0)
    return ops.take(padded, host_index(index), axis=0)


def run_steps(
    step: Callable[[Any, Tensor, Tensor], Any],
    state: Any,
    table: Any,
    *,
    key: Hashable,
    noise: NoiseSource | None = None,
    draws_per_step: int = 0,
    noisy: np.ndarray | None = None,
    variables: Sequence[Any] | None = None,
    progress: bool = False,
    desc: str = "",
) -> Any:
    """state <- step(state, row, z) for each row of ``table``, several steps per compiled call.

    ``table`` (n_steps, k) holds each step's coefficients (host float64, cast to floatx). ``z``
    stacks the step's ``draws_per_step`` normals from ``noise``, shape (draws_per_step, *shape),
    drawn in step order; steps where ``noisy`` (default all True) is False draw none and get
    zeros. ``key`` names what ``step`` closes over (see `compiled`).
    """
    table = np.asarray(table, dtype=np.float64)
    table = table[:, None] if table.ndim == 1 else table
    noisy = np.ones(len(table), bool) if noisy is None else np.asarray(noisy, bool)
    length = _chunk_length(draws_per_step, () if noise is None else noise.shape)
    chunk = compiled(_chunk_loop(step), key=(key, length), variables=variables)
    bar = tqdm(total=len(table), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(table), length):
        rows = table[start : start + length]
        padded = np.concatenate([rows, np.repeat(rows[-1:], length - len(rows), axis=0)])
        z = _chunk_noise(noise, draws_per_step, noisy[start : start + length], length)
        state = chunk(state, host_to_float(padded), z, host_index(len(rows)))
        bar.update(len(rows))
    bar.close()
    return state
