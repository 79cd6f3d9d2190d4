"""Per-sample counter-based normals (scoregen_keras.sampling.counter_noise).

The raw words against kept Philox implementations (NumPy's Philox-4x64, Random123's published
Philox-4x32-10 answers, TensorFlow's stateless Philox kernel); the documented counter layout; the
same normals for a seed whatever batch, companions or request sizes; the keras.ops twin bit for
bit in its words and to float32 rounding in its normals on the backend under test (run the file
under each KERAS_BACKEND); and the normals' distribution.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
from scipy import stats

from scoregen_keras.sampling import counter_noise
from scoregen_keras.sampling.counter_noise import (
    PHILOX_4X64,
    CounterNoise,
    counter_normals,
    philox,
)

# Random123 (Salmon et al. 2011) kat_vectors for philox4x32 with 10 rounds:
# (counter words, key words) -> output words
PHILOX_4X32_KNOWN_ANSWERS = (
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
)
# float32 evaluation of Box–Muller against float64, in units of 2^-24 (1 + radius): the angle
# 2 pi v rounds to half an ulp of 2 pi (4 units times the radius), log / sqrt / cos / sin and the
# products add a few more; 5.3 measured on the three backends
OPS_NORMAL_UNITS = 16
Z_BOUND = 5.0  # standard errors allowed for a Monte-Carlo mean or correlation
KS_ALPHA = 1e-4


def host_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniform uint32 words, high bits included."""
    return rng.integers(0, 2**32, size=n, dtype=np.uint64).astype(np.uint32)


def test_philox_4x64_is_numpy_philox_bit_for_bit(rng: np.random.Generator) -> None:
    """philox(PHILOX_4X64) reproduces np.random.Philox(key, counter).random_raw(), which outputs
    the block of counter + 1, + 2, ... (it steps its 256-bit counter before each block)."""
    for _ in range(5):
        key = [int(w) for w in rng.integers(0, 2**64, size=2, dtype=np.uint64)]
        counter = [int(w) for w in rng.integers(0, 2**64, size=4, dtype=np.uint64)]
        counter[0] = 2**64 - 2  # the second block carries into the next word
        value = sum(w << (64 * i) for i, w in enumerate(counter))
        n_blocks = 3
        # NumPy takes the 128-bit key and 256-bit counter as integers, word 0 lowest
        raw = np.random.Philox(key=key[0] + (key[1] << 64), counter=value).random_raw(4 * n_blocks)
        ours = []
        for step in range(1, n_blocks + 1):
            words = [np.uint64(((value + step) >> (64 * i)) % 2**64) for i in range(4)]
            ours.extend(int(w) for w in philox(words, [np.uint64(w) for w in key], PHILOX_4X64))
        assert ours == [int(w) for w in raw]


@pytest.mark.parametrize(("counter", "key", "expected"), PHILOX_4X32_KNOWN_ANSWERS)
def test_philox_4x32_known_answers(counter: tuple, key: tuple, expected: tuple) -> None:
    """Random123's published Philox-4x32-10 answers."""
    assert tuple(int(w) for w in philox(counter, key)) == expected


def test_philox_4x32_matches_tensorflow_stateless_philox(rng: np.random.Generator) -> None:
    """TensorFlow's stateless Philox kernel (an independent implementation): 64 blocks from one
    key and a 128-bit counter stepped by one a block. Host arithmetic, the same under every
    backend: checked in the TensorFlow run only (importing TensorFlow elsewhere costs seconds)."""
    if keras.backend.backend() != "tensorflow":
        pytest.skip("runs under KERAS_BACKEND=tensorflow")
    import tensorflow as tf

    key = int(rng.integers(0, 2**64, dtype=np.uint64))
    counter = [int(w) for w in rng.integers(0, 2**64, size=2, dtype=np.uint64)]
    n_blocks = 64
    raw = tf.raw_ops.StatelessRandomUniformFullIntV2(
        shape=[4 * n_blocks],
        key=tf.constant([key], tf.uint64),
        counter=tf.constant(counter, tf.uint64),
        alg=1,  # Philox
        dtype=tf.uint32,
    ).numpy()
    start = counter[0] + (counter[1] << 64)
    values = [(start + i) % 2**128 for i in range(n_blocks)]
    words = [np.array([(v >> (32 * j)) & 0xFFFFFFFF for v in values], np.uint32) for j in range(4)]
    key_words = (np.uint32(key & 0xFFFFFFFF), np.uint32(key >> 32))
    ours = np.stack(philox(words, key_words), axis=1).reshape(-1)
    np.testing.assert_array_equal(ours, raw)


def test_normals_follow_the_documented_counter_layout() -> None:
    """Element e of draw d of seed s is Box–Muller of philox((e // 4, d, stream, 0), key(s)):
    words 0, 1 give elements 4b, 4b + 1 and words 2, 3 give 4b + 2, 4b + 3."""
    seeds = np.array([7, 2**40 + 3], dtype=np.uint64)
    stream, first, k, n = 5, 11, 2, 6
    z = counter_normals(seeds, first, k, n, stream)
    for i, seed in enumerate(int(s) for s in seeds):
        key = (np.uint32(seed % 2**32), np.uint32(seed >> 32))
        for d in range(k):
            for e in range(n):
                words = philox((e // 4, first + d, stream, 0), key)
                pair = e % 4 // 2
                z_cos, z_sin = counter_noise.box_muller(words[2 * pair], words[2 * pair + 1])
                assert z[d, i, e] == (z_cos, z_sin)[e % 2]


def test_same_seed_same_normals_whatever_the_batch(rng: np.random.Generator) -> None:
    """A seed's draws are bit-identical alone, among 3 or among 64 other seeds, in any place, and
    however the draws are grouped into requests."""
    seed, shape = 2**33 + 12345, (3, 4, 2)
    alone = CounterNoise([seed], shape).draw_host(5)[:, 0]
    others = [int(s) for s in rng.integers(0, 2**63, size=63)]
    for batch in ([11, seed, 2**32], [*others[:37], seed, *others[37:]]):
        source = CounterNoise(batch, shape)
        at = batch.index(seed)
        grouped = np.concatenate([source.draw_host(2), source.draw_host(1), source.draw_host(2)])
        np.testing.assert_array_equal(grouped[:, at], alone)
    assert alone.dtype == keras.config.floatx()


def test_draws_reach_the_backend_unchanged(rng: np.random.Generator) -> None:
    """draw / draw_one give the backend the host floats bit for bit: the same on every backend."""
    seeds = rng.integers(0, 2**63, size=4)
    host = CounterNoise(seeds, (2, 3)).draw_host(4)
    source = CounterNoise(seeds, (2, 3))
    drawn = keras.ops.convert_to_numpy(source.draw(3))
    one = keras.ops.convert_to_numpy(source.draw_one())
    np.testing.assert_array_equal(np.concatenate([drawn, one[None]]), host)
    assert source.position == 4 and source.shape == (4, 2, 3)
    assert tuple(source.draw(0).shape) == (0, 4, 2, 3)


def test_start_and_stream() -> None:
    """``start`` skips draws; another stream gives other normals for the same seeds."""
    seeds = [0, 1, 2]
    np.testing.assert_array_equal(
        CounterNoise(seeds, (5,), start=3).draw_host(2), CounterNoise(seeds, (5,)).draw_host(5)[3:]
    )
    assert not np.any(
        CounterNoise(seeds, (5,), stream=1).draw_host(2) == CounterNoise(seeds, (5,)).draw_host(2)
    )


def test_seeds_are_64_bit() -> None:
    """The high word of the seed is part of the key: 2^32 + s differs from s; 2^64 - 1 works."""
    z = counter_normals(np.array([0, 2**32, 1, 2**32 + 1, 2**64 - 1], np.uint64), 0, 1, 8)
    assert len({tuple(row) for row in z[0]}) == 5


@pytest.mark.parametrize(
    "seeds", [[-1], [2**64], [1.5], [True], [], [[1, 2]], 7, np.array([1.0]), ["3"]]
)
def test_bad_seeds_are_refused(seeds: object) -> None:
    """Negative, too large, non-integer or empty seeds: one ValueError each."""
    with pytest.raises(ValueError, match="seeds must"):
        CounterNoise(seeds, (2,))


def test_draw_indices_are_32_bit() -> None:
    """The draw counter is one 32-bit word."""
    source = CounterNoise([0], (2,), start=2**32 - 2)
    source.draw_host(2)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        source.draw_host(1)
    with pytest.raises(ValueError, match="2\\*\\*32"):
        CounterNoise([0], (2,), stream=2**32)


# --------------------------------------------------------------------------- keras.ops twin


def test_ops_twin_words_are_the_host_words(rng: np.random.Generator) -> None:
    """philox4x32_ops in int32 keras.ops gives the host's words bit for bit (high bits set)."""
    n = 4096
    counter = [host_words(rng, n) for _ in range(4)]
    key = [host_words(rng, n) for _ in range(2)]
    expected = philox(counter, key)
    tensors = [keras.ops.convert_to_tensor(w.view(np.int32)) for w in (*counter, *key)]
    words = counter_noise.philox4x32_ops(tensors[:4], tensors[4:])
    for ours, theirs in zip(words, expected, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(ours).view(np.uint32), theirs)


def test_ops_twin_normals_to_float32_rounding(rng: np.random.Generator) -> None:
    """counter_normals_ops agrees with the host normals to OPS_NORMAL_UNITS 2^-24 (1 + radius)."""
    if keras.config.floatx() != "float32":
        pytest.skip("the bound is float32's")
    seeds = rng.integers(0, 2**64, size=64, dtype=np.uint64)
    first, k, n = 2**31 + 5, 3, 250  # a draw index with its high bit set
    expected = counter_normals(seeds, first, k, n)
    low, high = (
        keras.ops.convert_to_tensor(w.view(np.int32)) for w in counter_noise.seed_keys(seeds)
    )
    first_tensor = keras.ops.convert_to_tensor(np.array(first, np.uint32).view(np.int32))
    z = counter_noise.counter_normals_ops(low, high, first_tensor, k, n)
    z = np.asarray(keras.ops.convert_to_numpy(z), np.float64)
    pairs = expected.reshape(k, len(seeds), n // 2, 2)
    radius = np.repeat(np.hypot(pairs[..., 0], pairs[..., 1]), 2, axis=-1)
    assert z.shape == expected.shape
    assert np.max(np.abs(z - expected) / (1.0 + radius)) <= OPS_NORMAL_UNITS * 2.0**-24


# --------------------------------------------------------------------------- distribution


def many_normals() -> np.ndarray:
    """2^20 normals: 256 seeds x 4 draws x 1024 elements, float64 (k, batch, elements)."""
    return counter_normals(np.arange(256, dtype=np.uint64), 0, 4, 1024)


def test_moments_and_ks() -> None:
    """Mean, variance, skewness, excess kurtosis within Z_BOUND standard errors of N(0, 1)
    (n = 2^20: se 1/sqrt(n), sqrt(2/n), sqrt(6/n), sqrt(24/n)), and a KS test at 1e-4."""
    z = many_normals().ravel()
    n = z.size
    assert abs(np.mean(z)) <= Z_BOUND / math.sqrt(n)
    assert abs(np.var(z) - 1.0) <= Z_BOUND * math.sqrt(2.0 / n)
    assert abs(stats.skew(z)) <= Z_BOUND * math.sqrt(6.0 / n)
    assert abs(stats.kurtosis(z)) <= Z_BOUND * math.sqrt(24.0 / n)
    assert stats.kstest(z, "norm").pvalue > KS_ALPHA
    assert np.max(np.abs(z)) <= math.sqrt(2.0 * counter_noise.UNIFORM_BITS * math.log(2.0))


def test_seeds_draws_elements_and_pairs_are_uncorrelated() -> None:
    """Correlations between neighbouring seeds, draws, elements (within a Box–Muller pair, across
    pairs, across blocks), and between the squares of a pair, each within Z_BOUND / sqrt(n)."""
    z = many_normals()  # (draw, seed, element)
    pairs = {
        "seeds": (z[:, :-1], z[:, 1:]),
        "draws": (z[:-1], z[1:]),
        "elements in a pair": (z[..., 0::2], z[..., 1::2]),
        "pairs in a block": (z[..., 0::4], z[..., 2::4]),
        "blocks": (z[..., 3:-1:4], z[..., 4::4]),
        "squares in a pair": (z[..., 0::2] ** 2, z[..., 1::2] ** 2),
    }
    for name, (a, b) in pairs.items():
        a, b = a.ravel(), b.ravel()
        correlation = np.corrcoef(a, b)[0, 1]
        assert abs(correlation) <= Z_BOUND / math.sqrt(a.size), name
