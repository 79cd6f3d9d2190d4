"""Per-sample counter-based normals: the noise of sample i is a function of (seed_i, draw, element).

Element e of draw d of a sample with seed s is read off Philox-4x32-10 (Salmon et al. 2011,
"Parallel random numbers: as easy as 1, 2, 3") under the key (s mod 2^32, s div 2^32) at the
counter (e div 4, d, stream, 0). Nothing else enters: not the backend, the batch the sample sits
in or its place there, the device, nor how the draws are grouped into requests. A block's four
words (w0, w1, w2, w3) make its four normals by Box–Muller on 24-bit uniforms:
u = ((w0 >> 8) + 1) 2^-24 in (0, 1], v = (w1 >> 8) 2^-24 in [0, 1),
(z0, z1) = sqrt(-2 ln u) (cos 2 pi v, sin 2 pi v), and (z2, z3) likewise from (w2, w3); so
|z| <= sqrt(48 ln 2) = 5.77 (a standard normal's mass beyond is 8e-9).

The host implementation is the definition: NumPy uint32 words with their products in uint64, the
transform in float64, rounded once to floatx, so every backend receives the same floats. The
``*_ops`` functions are its twin in ``keras.ops`` int32 arithmetic for code compiled on the device:
the same words bit for bit on TensorFlow, JAX and PyTorch (JAX has no 64-bit integers by default,
hence 16-bit halves for the high words), the normals computed in floatx.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from typing import Any

import keras
import numpy as np
from keras import ops

from scoregen_keras import backend

Tensor = Any
Words = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]

PHILOX_ROUNDS = 10  # Philox-4xW-10, the variant Random123, NumPy and TensorFlow ship
WORDS_PER_BLOCK = 4  # words (and normals) per counter
UNIFORM_BITS = 24  # bits of each uniform: exact in float32, so the device twin forms the same one
DROPPED_BITS = 32 - UNIFORM_BITS
UNIFORM_STEP = 2.0**-UNIFORM_BITS
WORD_LIMIT = 2**32  # draw counters and streams are 32-bit words
SEED_LIMIT = 2**64  # a seed is the 64-bit key
PIECE_LANES = 2**14  # counters hashed per host pass: the temporaries then stay in the CPU cache
# streams: independent uses of one seed (the Philox counter's third word)
SAMPLER_STREAM = 0
"""A sampler's normals, in the order its docstring states (draw 0 first)."""
PROBE_STREAM = 1
"""The likelihood's Hutchinson probe (one draw per example)."""
DEQUANTIZE_STREAM = 2
"""The likelihood's uniform dequantisation of integer data (one draw per example)."""


@dataclasses.dataclass(frozen=True)
class PhiloxWord:
    """The word size W of Philox-4xW: its dtype, round multipliers, Weyl key bumps, mulhilo."""

    dtype: type
    multipliers: tuple[int, int]
    weyl: tuple[int, int]
    mulhilo: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def _mulhilo32(a: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """High and low uint32 words of the 64-bit products a * m (exact in uint64)."""
    product = a.astype(np.uint64) * np.uint64(m)
    return (product >> np.uint64(32)).astype(np.uint32), product.astype(np.uint32)


def _mulhilo64(a: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """High and low uint64 words of the 128-bit products a * m, from 32-bit halves."""
    half, mask = np.uint64(32), np.uint64(0xFFFFFFFF)
    a_hi, a_lo = a >> half, a & mask
    m_hi, m_lo = np.uint64(m >> 32), np.uint64(m & 0xFFFFFFFF)
    lo_lo, hi_lo, lo_hi = a_lo * m_lo, a_hi * m_lo, a_lo * m_hi
    middle = (lo_lo >> half) + (hi_lo & mask) + (lo_hi & mask)  # < 3 * 2^32: no overflow
    high = a_hi * m_hi + (hi_lo >> half) + (lo_hi >> half) + (middle >> half)
    return high, a * np.uint64(m)


PHILOX_4X32 = PhiloxWord(np.uint32, (0xD2511F53, 0xCD9E8D57), (0x9E3779B9, 0xBB67AE85), _mulhilo32)
# NumPy's np.random.Philox: the same rounds on 64-bit words (the tests check philox against it)
PHILOX_4X64 = PhiloxWord(
    np.uint64,
    (0xD2E7470EE14C6C93, 0xCA5A826395121157),
    (0x9E3779B97F4A7C15, 0xBB67AE8584CAA73B),
    _mulhilo64,
)


def philox(counter: Iterable[Any], key: Iterable[Any], word: PhiloxWord = PHILOX_4X32) -> Words:
    """Philox-4xW-10 of each counter under its key: 4 counter words and 2 key words (arrays that
    broadcast together) to the 4 output words (Salmon et al. 2011, Figure 2)."""
    c0, c1, c2, c3 = (np.asarray(w, word.dtype) for w in counter)
    k0, k1 = (np.asarray(w, word.dtype) for w in key)
    bump0, bump1 = (word.dtype(w) for w in word.weyl)
    with np.errstate(over="ignore"):  # the key schedule wraps around by design
        for _ in range(PHILOX_ROUNDS):
            hi0, lo0 = word.mulhilo(c0, word.multipliers[0])
            hi1, lo1 = word.mulhilo(c2, word.multipliers[1])
            c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
            k0, k1 = k0 + bump0, k1 + bump1
    return c0, c1, c2, c3


def box_muller(radius_words: np.ndarray, angle_words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two standard normals (float64) from two uint32 words each: the 24-bit uniforms u in (0, 1]
    and v in [0, 1) give sqrt(-2 ln u) (cos 2 pi v, sin 2 pi v) (Box & Muller 1958)."""
    u = ((radius_words >> DROPPED_BITS) + 1.0) * UNIFORM_STEP
    angle = (angle_words >> DROPPED_BITS) * (2.0 * math.pi * UNIFORM_STEP)
    radius = np.sqrt(-2.0 * np.log(u))
    return radius * np.cos(angle), radius * np.sin(angle)


def _is_integer(value: Any) -> bool:
    """True for a Python or NumPy integer (bools are not seeds)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def as_seeds(seeds: Iterable[Any]) -> np.ndarray:
    """Per-sample seeds as uint64 (batch,); ValueError unless a non-empty 1-d sequence of
    integers in [0, 2^64)."""
    try:  # dtype object keeps Python integers exact (NumPy would make floats of some mixtures)
        values = np.asarray(seeds if isinstance(seeds, np.ndarray) else list(seeds), dtype=object)
    except TypeError:
        values = np.empty(0, dtype=object)
    if values.ndim != 1 or values.size == 0 or not all(_is_integer(s) for s in values):
        raise ValueError("seeds must be a non-empty 1-d sequence of integers")
    if not all(0 <= int(s) < SEED_LIMIT for s in values):
        raise ValueError("seeds must lie in [0, 2**64)")
    return np.array([int(s) for s in values], dtype=np.uint64)


def seed_keys(seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Philox key of each seed: its low and high 32-bit words, uint32 (batch,) each."""
    low = (seeds & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    high = (seeds >> np.uint64(32)).astype(np.uint32)
    return low, high


def _check_range(first_draw: int, k: int, stream: int) -> None:
    """ValueError unless the draws first_draw .. first_draw + k - 1 and the stream fit a word."""
    if not (0 <= first_draw and first_draw + k <= WORD_LIMIT and 0 <= stream < WORD_LIMIT):
        raise ValueError("draw indices and the stream must lie in [0, 2**32)")


def _blocks(n_elements: int) -> int:
    """Counters per draw of one sample: one per WORDS_PER_BLOCK elements."""
    n_blocks = -(-n_elements // WORDS_PER_BLOCK)
    if n_blocks > WORD_LIMIT:
        raise ValueError(f"a sample of {n_elements} elements needs more than 2**32 counters")
    return n_blocks


def _pair_words(words: Words, n_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """The (radius, angle) words of the first n_pairs Box–Muller pairs in element order."""
    radius = np.stack([words[0], words[2]], axis=-1)
    angle = np.stack([words[1], words[3]], axis=-1)
    flat = (*radius.shape[:-2], 2 * radius.shape[-2])
    return radius.reshape(flat)[..., :n_pairs], angle.reshape(flat)[..., :n_pairs]


def counter_normals(
    seeds: np.ndarray, first_draw: int, k: int, n_elements: int, stream: int = 0
) -> np.ndarray:
    """Draws first_draw .. first_draw + k - 1 of every seed: float64 (k, batch, n_elements).

    ``seeds``: uint64 (batch,) as ``as_seeds`` makes them (anything else is checked by it).
    """
    seeds = seeds if isinstance(seeds, np.ndarray) and seeds.dtype == np.uint64 else as_seeds(seeds)
    _check_range(first_draw, k, stream)
    n_blocks, n_pairs = _blocks(n_elements), -(-n_elements // 2)
    key_lo, key_hi = seed_keys(seeds)
    draws = np.arange(first_draw, first_draw + k, dtype=np.uint32)[:, None, None]
    blocks = np.arange(n_blocks, dtype=np.uint32)
    out = np.empty((k, len(seeds), 2 * n_pairs))
    rows = max(1, PIECE_LANES // max(1, k * n_blocks))  # samples per pass
    for start in range(0, len(seeds), rows):
        piece = slice(start, start + rows)
        key = (key_lo[piece, None], key_hi[piece, None])
        words = philox((blocks, draws, stream, 0), key)
        radius, angle = _pair_words(words, n_pairs)
        z = np.stack(box_muller(radius, angle), axis=-1)
        out[:, piece] = z.reshape(*z.shape[:-2], 2 * n_pairs)
    return out[..., :n_elements]


class CounterNoise:
    """Standard normals of shape (batch, *sample_shape), ``k`` per request in draw order, those of
    sample i a function of (seeds[i], draw index, element) only (``counter_normals``).

    The samplers' noise source: ``draw(k)`` gives (k, batch, *sample_shape) and moves the draw
    counter on by k; ``stream`` separates independent uses of one seed (e.g. a sampler's normals
    from a likelihood's probes); ``position`` is the next draw's index.
    """

    def __init__(
        self, seeds: Iterable[Any], sample_shape: Iterable[int], stream: int = 0, start: int = 0
    ) -> None:
        """Seeds in [0, 2^64), one per sample; draws start at index ``start``."""
        self.seeds = as_seeds(seeds)
        self.sample_shape = tuple(int(n) for n in sample_shape)
        self.shape = (len(self.seeds), *self.sample_shape)
        _check_range(start, 0, stream)
        self.stream, self.position = int(stream), int(start)

    def draw_host(self, k: int) -> np.ndarray:
        """The next k draws as a host array (k, *shape) of floatx."""
        n_elements = math.prod(self.sample_shape)
        z = counter_normals(self.seeds, self.position, k, n_elements, self.stream)
        self.position += k
        return z.reshape(k, *self.shape).astype(keras.config.floatx())

    def draw(self, k: int) -> Tensor:
        """The next k draws stacked on a new leading axis, a tensor (k, *shape); under a
        data-parallel distribution split over its devices along the batch (`from_host_batch`)."""
        return backend.from_host_batch(self.draw_host(k), batch_axis=1)

    def draw_one(self) -> Tensor:
        """The next draw, a tensor of shape ``shape`` (split over devices as ``draw``)."""
        return backend.from_host_batch(self.draw_host(1)[0], batch_axis=0)


# --------------------------------------------------------------------------- keras.ops twin


def _int32(word: int) -> int:
    """The int32 whose bits are those of the uint32 ``word``."""
    return word - WORD_LIMIT if word >= WORD_LIMIT // 2 else word


def _shift_right(x: Tensor, bits: int) -> Tensor:
    """Logical right shift of int32 words: the arithmetic shift, its sign copies masked off."""
    return ops.bitwise_and(ops.right_shift(x, bits), (1 << (32 - bits)) - 1)


def _mulhilo_ops(a: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """High and low words of a * m (a int32 words, m a uint32 constant), from 16-bit halves.

    With a = a1 2^16 + a0, m = m1 2^16 + m0: each partial sum below is < 2^32, so int32
    wraparound keeps its bits, and high = a1 m1 + (t1 >> 16) + (t2 >> 16) exactly.
    """
    m1, m0 = m >> 16, m & 0xFFFF
    a1, a0 = _shift_right(a, 16), ops.bitwise_and(a, 0xFFFF)
    t1 = a1 * m0 + _shift_right(a0 * m0, 16)
    t2 = a0 * m1 + ops.bitwise_and(t1, 0xFFFF)
    high = a1 * m1 + _shift_right(t1, 16) + _shift_right(t2, 16)
    return high, a * _int32(m)


def philox4x32_ops(counter: Iterable[Tensor], key: Iterable[Tensor]) -> tuple[Tensor, ...]:
    """``philox`` (4x32) in keras.ops: int32 tensors holding uint32 bits, broadcast together."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    m0, m1 = PHILOX_4X32.multipliers
    bump0, bump1 = (_int32(w) for w in PHILOX_4X32.weyl)
    for _ in range(PHILOX_ROUNDS):
        hi0, lo0 = _mulhilo_ops(c0, m0)
        hi1, lo1 = _mulhilo_ops(c2, m1)
        c0 = ops.bitwise_xor(ops.bitwise_xor(hi1, c1), k0)
        c2 = ops.bitwise_xor(ops.bitwise_xor(hi0, c3), k1)
        c1, c3 = lo1, lo0
        k0, k1 = k0 + bump0, k1 + bump1
    return c0, c1, c2, c3


def box_muller_ops(radius_words: Tensor, angle_words: Tensor) -> tuple[Tensor, Tensor]:
    """``box_muller`` in keras.ops on int32 words, in floatx (the uniforms are exact there)."""
    floatx = keras.config.floatx()
    u = (ops.cast(_shift_right(radius_words, DROPPED_BITS), floatx) + 1.0) * UNIFORM_STEP
    angle = ops.cast(_shift_right(angle_words, DROPPED_BITS), floatx) * (
        2.0 * math.pi * UNIFORM_STEP
    )
    radius = ops.sqrt(-2.0 * ops.log(u))
    return radius * ops.cos(angle), radius * ops.sin(angle)


def counter_normals_ops(
    key_lo: Tensor, key_hi: Tensor, first_draw: Tensor, k: int, n_elements: int, stream: int = 0
) -> Tensor:
    """``counter_normals`` in keras.ops: keys int32 (batch,) (``seed_keys``' bits), first_draw an
    int32 scalar tensor; floatx (k, batch, n_elements)."""
    n_blocks, n_pairs = _blocks(n_elements), -(-n_elements // 2)
    draws = ops.reshape(first_draw + ops.arange(k, dtype="int32"), (k, 1, 1))
    blocks = ops.arange(n_blocks, dtype="int32")
    shape = (k, ops.shape(key_lo)[0], n_blocks)
    counter = [ops.broadcast_to(c, shape) for c in (blocks, draws, _int32(stream), 0)]
    key = [ops.broadcast_to(ops.reshape(w, (1, -1, 1)), shape) for w in (key_lo, key_hi)]
    words = philox4x32_ops([ops.cast(c, "int32") for c in counter], key)
    radius = ops.reshape(ops.stack([words[0], words[2]], axis=-1), (*shape[:2], -1))
    angle = ops.reshape(ops.stack([words[1], words[3]], axis=-1), (*shape[:2], -1))
    z = ops.stack(box_muller_ops(radius[..., :n_pairs], angle[..., :n_pairs]), axis=-1)
    return ops.reshape(z, (*shape[:2], 2 * n_pairs))[..., :n_elements]
