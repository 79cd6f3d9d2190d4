"""backend.ops: each backend's form of FIR resampling, GroupNorm and dropout against NumPy."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from scipy.signal import convolve2d

from scoregen_keras.backend import ops as backend_ops

ATOL = 1e-5  # float32 sums of a few products of O(1) numbers
RTOL = 1e-5
FLOAT16_TOL = 5e-3  # float16 rounding of O(1) outputs (eps 2**-10)
# kept fraction of a dropout mask over N entries: sd sqrt(rate (1 - rate) / N); 5 sd of slack
DROPOUT_RATE = 0.1
DROPOUT_SHAPE = (8, 32, 32, 32)
DROPOUT_SLACK_SD = 5.0


def _np(x) -> np.ndarray:
    """Backend tensor -> NumPy."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def _reference_upfirdn2d(x: np.ndarray, kernel: np.ndarray, up: int, down: int, pad) -> np.ndarray:
    """Direct NumPy upfirdn2d: zero insertion, zero padding, true 2-D convolution, decimation."""
    kernel = np.outer(kernel, kernel) if kernel.ndim == 1 else kernel
    batch, height, width, channels = x.shape
    u = np.zeros((batch, height * up, width * up, channels), dtype=np.float64)
    u[:, ::up, ::up, :] = x
    p0, p1 = pad
    u = np.pad(u, [(0, 0), (p0, p1), (p0, p1), (0, 0)])
    out = np.stack(
        [
            np.stack([convolve2d(u[b, :, :, c], kernel, mode="valid") for c in range(channels)], -1)
            for b in range(batch)
        ]
    )
    return out[:, ::down, ::down, :]


# NCSN++'s cases (down (1, 1); up (2, 1); FIRConv2D's filters (1, 1) and (2, 2)), asymmetric
# pads, up and down together, a factor of 3
RESAMPLING = [
    (1, 2, (1, 1)),
    (2, 1, (2, 1)),
    (1, 1, (1, 1)),
    (1, 1, (2, 2)),
    (1, 2, (2, 1)),
    (2, 2, (1, 2)),
    (3, 1, (2, 1)),
    (2, 1, (0, 3)),
]


@pytest.mark.parametrize("taps", [4, 3])
@pytest.mark.parametrize(("up", "down", "pad"), RESAMPLING)
def test_separable_upfirdn2d_matches_direct_convolution(taps: int, up: int, down: int, pad):
    """A 1-D kernel k stands for outer(k, k); asymmetric taps check the flip."""
    rng = np.random.default_rng(taps)
    x = rng.standard_normal((2, 6, 6, 3)).astype("float32")
    kernel = rng.standard_normal(taps)
    got = _np(backend_ops.upfirdn2d(keras.ops.convert_to_tensor(x), kernel, up, down, pad))
    np.testing.assert_allclose(got, _reference_upfirdn2d(x, kernel, up, down, pad), atol=ATOL)


@pytest.mark.parametrize(("up", "down", "pad"), RESAMPLING)
def test_2d_upfirdn2d_matches_direct_convolution(up: int, down: int, pad) -> None:
    """A kernel that is no outer product (asymmetric, so a flip shows)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 5, 5, 2)).astype("float32")
    kernel = rng.standard_normal((4, 4))
    got = _np(backend_ops.upfirdn2d(keras.ops.convert_to_tensor(x), kernel, up, down, pad))
    np.testing.assert_allclose(got, _reference_upfirdn2d(x, kernel, up, down, pad), atol=ATOL)


def _reference_conv2d(x: np.ndarray, kernel: np.ndarray, strides: int, padding: str) -> np.ndarray:
    """Cross-correlation of channels-last x with a (kH, kW, in, out) kernel, Keras' padding
    (for "same", the extra row and column go at the end)."""
    taps = kernel.shape[0]
    if padding == "same":
        out = -(-x.shape[1] // strides)
        total = max((out - 1) * strides + taps - x.shape[1], 0)
        before, after = total // 2, total - total // 2
        x = np.pad(x, [(0, 0), (before, after), (before, after), (0, 0)])
    rows = (x.shape[1] - taps) // strides + 1
    out = np.zeros((x.shape[0], rows, rows, kernel.shape[-1]))
    for a in range(taps):
        for b in range(taps):
            window = x[:, a : a + strides * rows : strides, b : b + strides * rows : strides]
            out += window @ kernel[a, b]
    return out


@pytest.mark.parametrize(
    ("taps", "strides", "padding"),
    [(3, 1, "same"), (3, 2, "valid"), (1, 1, "valid"), (3, 2, "same"), (2, 1, "same")],
)
def test_conv2d_matches_cross_correlation(taps: int, strides: int, padding: str) -> None:
    """backend.conv2d = keras.ops.conv plus the bias, torch's fast path and its fallbacks."""
    rng = np.random.default_rng(taps + strides)
    x = rng.standard_normal((2, 6, 6, 3)).astype("float32")
    kernel = rng.standard_normal((taps, taps, 3, 4)).astype("float32")
    bias = rng.standard_normal(4).astype("float32")
    got = _np(backend_ops.conv2d(keras.ops.convert_to_tensor(x), kernel, bias, strides, padding))
    expected = _reference_conv2d(x, kernel, strides, padding) + bias
    np.testing.assert_allclose(got, expected, atol=ATOL)


def test_conv_transpose2d_scatters_the_kernel() -> None:
    """Each input pixel adds kernel (kH, kW, out, in) @ x at stride 2, padding "valid"."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    kernel = rng.standard_normal((3, 3, 5, 3)).astype("float32")
    got = _np(backend_ops.conv_transpose2d(keras.ops.convert_to_tensor(x), kernel, strides=2))
    expected = np.zeros((2, 9, 9, 5))
    for p in range(4):
        for q in range(4):
            expected[:, 2 * p : 2 * p + 3, 2 * q : 2 * q + 3] += np.einsum(
                "ni,aboi->nabo", x[:, p, q], kernel
            )
    np.testing.assert_allclose(got, expected, atol=ATOL)


@pytest.mark.parametrize("shape", [(2, 4, 4, 3), (5, 3)])
def test_dense_is_a_matrix_product_over_the_last_axis(shape: tuple[int, ...]) -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal(shape).astype("float32")
    kernel, bias = rng.standard_normal((3, 4)).astype("float32"), rng.standard_normal(4)
    got = _np(backend_ops.dense(keras.ops.convert_to_tensor(x), kernel, bias.astype("float32")))
    np.testing.assert_allclose(got, x @ kernel + bias, atol=ATOL)
    assert _np(backend_ops.dense(keras.ops.convert_to_tensor(x), kernel)).shape == (*shape[:-1], 4)


def _reference_group_norm(x: np.ndarray, groups: int, gamma, beta, eps: float) -> np.ndarray:
    """(x - mean) / sqrt(var + eps) over each example's group of channels (and all pixels)."""
    batch, channels = x.shape[0], x.shape[-1]
    grouped = x.astype(np.float64).reshape(batch, -1, groups, channels // groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    var = grouped.var(axis=(1, 3), keepdims=True)
    normed = ((grouped - mean) / np.sqrt(var + eps)).reshape(x.shape)
    return normed * gamma + beta


@pytest.mark.parametrize("shape", [(2, 4, 5, 12), (3, 7, 8)])
def test_group_norm_matches_the_formula(shape: tuple[int, ...]) -> None:
    """Per-group statistics of images and sequences, with a scale and a shift per channel."""
    rng = np.random.default_rng(0)
    x = (3.0 + 2.0 * rng.standard_normal(shape)).astype("float32")
    gamma, beta = rng.standard_normal((2, shape[-1])).astype("float32")
    got = _np(backend_ops.group_norm(keras.ops.convert_to_tensor(x), 4, gamma, beta, 1e-6))
    expected = _reference_group_norm(x, 4, gamma, beta, 1e-6)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)


def test_group_norm_keeps_float16_inputs_in_float16() -> None:
    """Mixed precision: float32 statistics, the input's dtype out."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 4, 8)).astype("float16")
    ones, zeros = np.ones(8, "float32"), np.zeros(8, "float32")
    got = backend_ops.group_norm(keras.ops.convert_to_tensor(x), 2, ones, zeros, 1e-6)
    assert keras.backend.standardize_dtype(got.dtype) == "float16"
    expected = _reference_group_norm(x.astype("float32"), 2, ones, zeros, 1e-6)
    np.testing.assert_allclose(_np(got).astype("float32"), expected, atol=FLOAT16_TOL)


def test_dropout_keeps_a_fraction_one_minus_rate_and_rescales() -> None:
    """Kept entries are x / (1 - rate), about 1 - rate of them; a new mask on every call, the
    same masks again from the same seed."""
    x = keras.ops.ones(DROPOUT_SHAPE)
    seed = keras.random.SeedGenerator(3)
    first, second = (_np(backend_ops.dropout(x, DROPOUT_RATE, seed)) for _ in range(2))
    n = first.size
    slack = DROPOUT_SLACK_SD * np.sqrt(DROPOUT_RATE * (1 - DROPOUT_RATE) / n)
    for mask in (first, second):
        np.testing.assert_allclose(np.unique(mask), [0.0, 1.0 / (1 - DROPOUT_RATE)], rtol=RTOL)
        assert abs(np.mean(mask != 0) - (1 - DROPOUT_RATE)) < slack
    assert np.mean(first != second) > DROPOUT_RATE  # independent masks differ in ~18% of entries
    again = keras.random.SeedGenerator(3)
    np.testing.assert_array_equal(_np(backend_ops.dropout(x, DROPOUT_RATE, again)), first)


def test_dropout_of_rate_zero_is_the_identity() -> None:
    x = keras.ops.ones((2, 3))
    assert backend_ops.dropout(x, 0.0, keras.random.SeedGenerator(0)) is x
