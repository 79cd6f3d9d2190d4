"""Network operations with a faster form on some backends: FIR resampling, convolution,
GroupNorm, dropout.

Each function computes the same thing on every backend (to float32 round-off; dropout draws its
own random stream per backend) and picks the form that backend runs fastest:

- ``upfirdn2d``: torch one depthwise convolution (transposed when upsampling) on the NCHW view of
  the channels-last tensor; JAX, for a separable kernel, shifted slices summed along H then W,
  which XLA fuses into a few loops (its depthwise convolution and the gradient of it are slow on
  a CPU); TensorFlow and 2-D kernels a depthwise convolution in keras.ops. Kernels are built once
  per shape and dtype, not per call.
- ``conv2d`` / ``conv_transpose2d``: torch's convolutions on the NCHW view of channels-last
  tensors (Keras copies to NCHW and back around each); ``dense``: torch's ``F.linear`` (the bias
  added inside); elsewhere keras.ops.
- ``group_norm``: torch's fused ``F.group_norm`` on the NCHW view (no copy); elsewhere Keras'
  GroupNormalization formula in keras.ops.
- ``dropout``: JAX masks from XLA's ``RngBitGenerator`` with its threefry algorithm (as fast as
  Keras' jax.random masks, at a fifth of their compilation); elsewhere ``keras.random.dropout``.
"""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np
from keras import ops

from scoregen_keras.backend.active import dispatch

Tensor = Any
CHANNELS_LAST_TO_FIRST = (0, 3, 1, 2)
CHANNELS_FIRST_TO_LAST = (0, 2, 3, 1)
GROUP_NORM_DTYPE = "float32"  # statistics in float32 also for float16 / bfloat16 inputs (Keras)
UINT32_LEVELS = 2**32
# second half of the 128-bit RngBitGenerator key, from the 64-bit Keras seed (golden ratio bits)
KEY_SPREAD = 0x9E3779B9


# ----------------------------------------------------------------------------- FIR resampling


def _full_kernel(kernel: np.ndarray) -> np.ndarray:
    """The 2-D kernel: the outer product of a separable 1-D kernel with itself, or as given."""
    return np.outer(kernel, kernel) if kernel.ndim == 1 else kernel


def _key(kernel: np.ndarray) -> tuple:
    """A hashable stand-in for a kernel (for the per-shape caches)."""
    return kernel.shape, kernel.astype(np.float64).tobytes()


@functools.lru_cache(maxsize=64)
def _depthwise_kernel(key: tuple, channels: int) -> np.ndarray:
    """The flipped 2-D kernel tiled over channels, (kH, kW, channels, 1), float64."""
    shape, data = key
    kernel = _full_kernel(np.frombuffer(data, np.float64).reshape(shape))
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])  # true convolution = flipped correlation
    return np.tile(flipped[:, :, None, None], (1, 1, channels, 1))


def _zero_insert(x: Tensor, up: int) -> Tensor:
    """x[i] moved to position up * i of H and W, zeros between (and up - 1 after the last)."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    x = ops.reshape(x, (-1, height, 1, width, 1, channels))
    x = ops.pad(x, [[0, 0], [0, 0], [0, up - 1], [0, 0], [0, up - 1], [0, 0]])
    return ops.reshape(x, (-1, height * up, width * up, channels))


def _upfirdn2d_depthwise(
    x: Tensor, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]
) -> Tensor:
    """Zero insertion, zero padding, a depthwise convolution with stride `down` (keras.ops)."""
    if up > 1:
        x = _zero_insert(x, up)
    pad0, pad1 = pad
    x = ops.pad(x, [[0, 0], [pad0, pad1], [pad0, pad1], [0, 0]])
    depthwise = _depthwise_kernel(_key(kernel), x.shape[-1])
    depthwise = ops.convert_to_tensor(depthwise, dtype=x.dtype)
    return ops.depthwise_conv(x, depthwise, strides=down, padding="valid")


def _taps_on_axis(
    x: Tensor, taps: np.ndarray, up: int, down: int, pad: tuple[int, int], axis: int
) -> Tensor:
    """1-D upfirdn along `axis` as sums of shifted slices of x, one output phase per `up`.

    Output j = up q + r reads the zero-inserted, padded signal v at j + i (i over the flipped
    taps), which is x[q + (r + i - pad0) / up] where that is a whole number and zero otherwise.
    """
    length = x.shape[axis]
    flipped = taps[::-1]
    pad0, pad1 = pad
    out_len = length * up + pad0 + pad1 - len(taps) + 1
    per_phase = -(-out_len // up)
    terms = [
        [(float(flipped[i]), (r + i - pad0) // up) for i in range(len(taps))
         if (r + i - pad0) % up == 0 and flipped[i] != 0]
        for r in range(up)
    ]  # fmt: skip
    offsets = [d for phase in terms for _, d in phase]
    before = max(0, -min(offsets))
    after = max(0, per_phase - 1 + max(offsets) - (length - 1))
    widths = [[0, 0]] * 4
    widths[axis] = [before, after]
    padded = ops.pad(x, widths)

    def shifted(offset: int) -> Tensor:
        index = [slice(None)] * 4
        index[axis] = slice(offset + before, offset + before + per_phase)
        return padded[tuple(index)]

    phases = [sum(c * shifted(d) for c, d in phase) for phase in terms]
    if up == 1:
        y = phases[0]
    else:  # interleave the phases: (..., per_phase, up, ...) -> (..., per_phase * up, ...)
        y = ops.stack(phases, axis=axis + 1)
        shape = list(y.shape)
        shape[0] = -1
        shape[axis : axis + 2] = [per_phase * up]
        y = ops.reshape(y, shape)
        if per_phase * up != out_len:
            index = [slice(None)] * 4
            index[axis] = slice(0, out_len)
            y = y[tuple(index)]
    if down > 1:
        index = [slice(None)] * 4
        index[axis] = slice(0, None, down)
        y = y[tuple(index)]
    return y


def _upfirdn2d_separable(
    x: Tensor, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]
) -> Tensor:
    """A separable kernel along H, then W, as shifted slices (keras.ops); 2-D ones as depthwise."""
    if kernel.ndim != 1:
        return _upfirdn2d_depthwise(x, kernel, up, down, pad)
    for axis in (1, 2):
        x = _taps_on_axis(x, kernel, up, down, pad, axis)
    return x


@functools.lru_cache(maxsize=64)
def _torch_kernel(key: tuple, flip: bool, dtype: Any, device: Any) -> Any:
    """The 2-D kernel as a torch tensor (1, 1, kH, kW), flipped for a correlation."""
    import torch

    shape, data = key
    kernel = _full_kernel(np.frombuffer(data, np.float64).reshape(shape))
    kernel = np.ascontiguousarray(kernel[::-1, ::-1] if flip else kernel)
    return torch.tensor(kernel[None, None], dtype=dtype, device=device)


def _upfirdn2d_torch(
    x: Tensor, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]
) -> Tensor:
    """One depthwise (transposed, for up > 1) convolution of the NCHW view of x (torch)."""
    from torch.nn import functional

    size = _full_kernel(kernel).shape
    if size[0] != size[1]:
        return _upfirdn2d_depthwise(x, kernel, up, down, pad)
    channels, taps, (pad0, pad1) = x.shape[-1], size[0], pad
    h = x.permute(*CHANNELS_LAST_TO_FIRST)  # channels-last memory: a view, no copy
    if up > 1:
        # the transposed convolution scatters x with the kernel: upfirdn's output is its full
        # output from taps - 1 - pad0 to taps - up - pad1 before the end
        weight = _torch_kernel(_key(kernel), False, h.dtype, h.device)
        crop0, crop1 = taps - 1 - pad0, taps - up - pad1
        common = max(0, min(crop0, crop1))
        weight = weight.expand(channels, 1, taps, taps)
        h = functional.conv_transpose2d(h, weight, stride=up, padding=common, groups=channels)
        rest0, rest1 = crop0 - common, crop1 - common
        if rest0 or rest1:
            h = functional.pad(h, (-rest0, -rest1, -rest0, -rest1))  # negative widths crop
        if down > 1:
            h = h[:, :, ::down, ::down]
    else:
        weight = _torch_kernel(_key(kernel), True, h.dtype, h.device)
        weight = weight.expand(channels, 1, taps, taps)
        padding = pad0 if pad0 == pad1 else 0
        if pad0 != pad1:
            h = functional.pad(h, (pad0, pad1, pad0, pad1))
        h = functional.conv2d(h, weight, stride=down, padding=padding, groups=channels)
    return h.permute(*CHANNELS_FIRST_TO_LAST)


def upfirdn2d(
    x: Tensor, kernel: np.ndarray, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)
) -> Tensor:
    """StyleGAN2's upfirdn2d on channels-last x: zero-insert (up), pad, FIR-filter, stride (down).

    kernel: a 2-D FIR kernel, or a 1-D one standing for the separable kernel outer(k, k). The
    filter is a true convolution (the kernel flipped), applied to every channel alike; pixels
    outside the image count as zero.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    return dispatch(
        {
            "tensorflow": _upfirdn2d_depthwise,
            "jax": _upfirdn2d_separable,
            "torch": _upfirdn2d_torch,
        }
    )(x, kernel, int(up), int(down), (int(pad[0]), int(pad[1])))


# ----------------------------------------------------------------------------- convolution


def _conv2d_keras(
    x: Tensor, kernel: Tensor, bias: Tensor | None, strides: int, padding: str
) -> Tensor:
    """keras.ops.conv, then the bias."""
    y = ops.conv(x, kernel, strides=strides, padding=padding)
    return y if bias is None else ops.add(y, bias)


def _torch_padding(kernel_shape: tuple[int, ...], strides: int, padding: str) -> int | None:
    """torch's symmetric padding for Keras' `padding`, None where it has none ("same" with an
    even kernel or a stride: Keras pads those unevenly)."""
    if padding == "valid":
        return 0
    rows, cols = kernel_shape[0], kernel_shape[1]
    if strides == 1 and rows == cols and rows % 2 == 1:
        return (rows - 1) // 2
    return None


def _conv2d_torch(
    x: Tensor, kernel: Tensor, bias: Tensor | None, strides: int, padding: str
) -> Tensor:
    """F.conv2d on the NCHW view of channels-last x, the bias inside (torch).

    Keras' torch conv copies x to NCHW and back to channels-last memory every call; the view
    lets oneDNN run on channels-last memory as it is, and its output permuted back is
    contiguous channels-last again.
    """
    from torch.nn import functional

    pad = _torch_padding(tuple(kernel.shape), strides, padding)
    if pad is None:
        return _conv2d_keras(x, kernel, bias, strides, padding)
    kernel = ops.convert_to_tensor(kernel)
    bias = None if bias is None else ops.convert_to_tensor(bias)
    h = x.permute(*CHANNELS_LAST_TO_FIRST)
    weight = kernel.permute(3, 2, 0, 1)  # (kH, kW, in, out) -> (out, in, kH, kW)
    y = functional.conv2d(h, weight, bias, stride=strides, padding=pad)
    return y.permute(*CHANNELS_FIRST_TO_LAST)


def conv2d(
    x: Tensor, kernel: Tensor, bias: Tensor | None = None, strides: int = 1, padding: str = "valid"
) -> Tensor:
    """Keras' ``ops.conv`` of channels-last x with a (kH, kW, in, out) kernel, plus bias (out,)."""
    return dispatch({"tensorflow": _conv2d_keras, "jax": _conv2d_keras, "torch": _conv2d_torch})(
        x, kernel, bias, int(strides), padding
    )


def _dense_keras(x: Tensor, kernel: Tensor, bias: Tensor | None) -> Tensor:
    """keras.ops.matmul, then the bias."""
    y = ops.matmul(x, kernel)
    return y if bias is None else ops.add(y, bias)


def _dense_torch(x: Tensor, kernel: Tensor, bias: Tensor | None) -> Tensor:
    """F.linear with the transposed kernel as a view: one addmm with the bias inside (torch)."""
    from torch.nn import functional

    kernel = ops.convert_to_tensor(kernel)
    bias = None if bias is None else ops.convert_to_tensor(bias)
    return functional.linear(x, kernel.T, bias)


def dense(x: Tensor, kernel: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ kernel (in, out) over the last axis of x, plus bias (out,)."""
    return dispatch({"tensorflow": _dense_keras, "jax": _dense_keras, "torch": _dense_torch})(
        x, kernel, bias
    )


def _conv_transpose2d_keras(x: Tensor, kernel: Tensor, strides: int) -> Tensor:
    """keras.ops.conv_transpose, padding "valid"."""
    return ops.conv_transpose(x, kernel, strides=strides, padding="valid")


def _conv_transpose2d_torch(x: Tensor, kernel: Tensor, strides: int) -> Tensor:
    """F.conv_transpose2d on the NCHW view of channels-last x (torch)."""
    from torch.nn import functional

    weight = ops.convert_to_tensor(kernel).permute(3, 2, 0, 1)  # -> (in, out, kH, kW)
    y = functional.conv_transpose2d(x.permute(*CHANNELS_LAST_TO_FIRST), weight, stride=strides)
    return y.permute(*CHANNELS_FIRST_TO_LAST)


def conv_transpose2d(x: Tensor, kernel: Tensor, strides: int = 1) -> Tensor:
    """Keras' ``ops.conv_transpose`` (padding "valid") of channels-last x with a
    (kH, kW, out, in) kernel: (H - 1) * strides + kH rows out."""
    return dispatch(
        {
            "tensorflow": _conv_transpose2d_keras,
            "jax": _conv_transpose2d_keras,
            "torch": _conv_transpose2d_torch,
        }
    )(x, kernel, int(strides))


# ----------------------------------------------------------------------------- GroupNorm


def _group_norm_keras(
    x: Tensor, groups: int, gamma: Tensor | None, beta: Tensor | None, epsilon: float
) -> Tensor:
    """Keras' GroupNormalization on the last axis: moments per group, then scale and shift."""
    dtype, rank, channels = x.dtype, len(x.shape), x.shape[-1]
    group_shape = (groups, channels // groups)
    grouped = ops.cast(ops.reshape(x, (-1, *x.shape[1:-1], *group_shape)), GROUP_NORM_DTYPE)
    axes = [*range(1, rank - 1), rank]  # all but the batch and the group axes
    mean, variance = ops.moments(grouped, axes=axes, keepdims=True)
    inv = ops.rsqrt(variance + epsilon)
    if gamma is not None:
        inv = inv * ops.reshape(ops.cast(gamma, GROUP_NORM_DTYPE), group_shape)
    shift = -mean * inv
    if beta is not None:
        shift = shift + ops.reshape(ops.cast(beta, GROUP_NORM_DTYPE), group_shape)
    return ops.cast(ops.reshape(grouped * inv + shift, (-1, *x.shape[1:])), dtype)


def _group_norm_torch(
    x: Tensor, groups: int, gamma: Tensor | None, beta: Tensor | None, epsilon: float
) -> Tensor:
    """torch's fused group_norm on the channels-first view of channels-last x (no copy)."""
    import torch
    from torch.nn import functional

    rank = x.ndim
    to_first = (0, rank - 1, *range(1, rank - 1))
    to_last = (0, *range(2, rank), 1)
    h = x.permute(*to_first).to(torch.float32)  # GROUP_NORM_DTYPE
    gamma = None if gamma is None else ops.cast(gamma, GROUP_NORM_DTYPE)
    beta = None if beta is None else ops.cast(beta, GROUP_NORM_DTYPE)
    y = functional.group_norm(h, groups, gamma, beta, epsilon)
    return y.permute(*to_last).to(x.dtype)


def group_norm(
    x: Tensor, groups: int, gamma: Tensor | None, beta: Tensor | None, epsilon: float
) -> Tensor:
    """Group normalisation over the last (channel) axis of x (batch, ..., C), statistics in
    float32: (x - mean) / sqrt(var + epsilon) per example and group, times gamma plus beta (C,)."""
    return dispatch(
        {"tensorflow": _group_norm_keras, "jax": _group_norm_keras, "torch": _group_norm_torch}
    )(x, int(groups), gamma, beta, float(epsilon))


# ----------------------------------------------------------------------------- dropout


def _dropout_keras(x: Tensor, rate: float, seed: keras.random.SeedGenerator) -> Tensor:
    """keras.random.dropout."""
    return keras.random.dropout(x, rate, seed=seed)


def _dropout_jax(x: Tensor, rate: float, seed: keras.random.SeedGenerator) -> Tensor:
    """A mask of XLA's RngBitGenerator (threefry) keyed by the generator's next seed (JAX)."""
    import jax
    import jax.numpy as jnp

    words = jnp.asarray(seed.next(), dtype=jnp.uint32)
    key = jnp.concatenate([words, words ^ jnp.uint32(KEY_SPREAD)])
    # XLA's threefry: its default (Philox on a CPU) ran 2.7x slower here
    algorithm = jax.lax.RandomAlgorithm.RNG_THREE_FRY
    _, bits = jax.lax.rng_bit_generator(key, x.shape, dtype=jnp.uint32, algorithm=algorithm)
    keep = bits >= jnp.uint32(round(rate * UINT32_LEVELS))  # P(keep) = 1 - rate
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


def dropout(x: Tensor, rate: float, seed: keras.random.SeedGenerator) -> Tensor:
    """Inverted dropout: each entry zeroed with probability `rate`, the rest divided by 1 - rate;
    one draw of `seed` per call (the streams differ between backends)."""
    if rate <= 0.0:
        return x
    if rate >= 1.0:
        return ops.zeros_like(x)
    return dispatch({"tensorflow": _dropout_keras, "jax": _dropout_jax, "torch": _dropout_keras})(
        x, float(rate), seed
    )
