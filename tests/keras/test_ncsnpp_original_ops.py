"""NCSN++ layers against NumPy re-derivations of score_sde's own operations.

The original (yang-song/score_sde_pytorch, models/up_or_down_sampling.py and layers.py) is
rewritten here in NumPy, NCHW and in its own weight layouts, step by step as its code computes;
scoregen's channels-last layers, given those weights transposed, must compute the same function.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from scoregen_keras.networks import layerspp

FACTOR = 2
FIR = (1, 3, 3, 1)
RTOL = 1e-5


def _np(x) -> np.ndarray:
    """Backend tensor -> NumPy float64."""
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def _setup_kernel(k) -> np.ndarray:
    """score_sde's _setup_kernel: outer product of the 1-D kernel, normalised to sum 1."""
    k = np.asarray(k, dtype=np.float64)
    k = np.outer(k, k) if k.ndim == 1 else k
    return k / k.sum()


def _upfirdn2d_nchw(x: np.ndarray, k: np.ndarray, pad: tuple[int, int]) -> np.ndarray:
    """upfirdn2d_native with up = down = 1: zero-pad, then true convolution (flipped kernel)."""
    p0, p1 = pad
    x = np.pad(x, [(0, 0), (0, 0), (p0, p1), (p0, p1)])
    kh, kw = k.shape
    flipped = k[::-1, ::-1]
    out_h, out_w = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    out = np.zeros((*x.shape[:2], out_h, out_w))
    for a in range(kh):
        for b in range(kw):
            out += flipped[a, b] * x[:, :, a : a + out_h, b : b + out_w]
    return out


def _conv_transpose2d_nchw(x: np.ndarray, w_t: np.ndarray, stride: int) -> np.ndarray:
    """torch's conv_transpose2d, padding 0: each input pixel scatters w_t (in, out, kH, kW)."""
    n, _, height, width = x.shape
    _, out_ch, kh, kw = w_t.shape
    out = np.zeros((n, out_ch, (height - 1) * stride + kh, (width - 1) * stride + kw))
    for p in range(height):
        for q in range(width):
            patch = np.einsum("ni,ioab->noab", x[:, :, p, q], w_t)
            out[:, :, p * stride : p * stride + kh, q * stride : q * stride + kw] += patch
    return out


def _original_upsample_conv_2d(x: np.ndarray, w: np.ndarray, k=FIR) -> np.ndarray:
    """score_sde's upsample_conv_2d for w (O, I, kH, kW): flip, swap to (I, O), transposed conv
    with stride 2, then upfirdn2d with pad ((p + 1) // 2 + 1, p // 2 + 1)."""
    conv = w.shape[-1]
    kernel = _setup_kernel(k) * FACTOR**2
    p = (kernel.shape[0] - FACTOR) - (conv - 1)
    w_t = np.transpose(w[:, :, ::-1, ::-1], (1, 0, 2, 3))  # w[..., ::-1, ::-1].permute(...)
    y = _conv_transpose2d_nchw(x, w_t, FACTOR)
    return _upfirdn2d_nchw(y, kernel, ((p + 1) // 2 + FACTOR - 1, p // 2 + 1))


def _original_conv_downsample_2d(x: np.ndarray, w: np.ndarray, k=FIR) -> np.ndarray:
    """score_sde's conv_downsample_2d: upfirdn2d with pad ((p+1)//2, p//2), stride-2 conv2d."""
    conv = w.shape[-1]
    kernel = _setup_kernel(k)
    p = (kernel.shape[0] - FACTOR) + (conv - 1)
    y = _upfirdn2d_nchw(x, kernel, ((p + 1) // 2, p // 2))
    out_h = (y.shape[2] - conv) // FACTOR + 1
    out_w = (y.shape[3] - conv) // FACTOR + 1
    out = np.zeros((x.shape[0], w.shape[0], out_h, out_w))
    for a in range(conv):
        for b in range(conv):
            window = y[:, :, a : a + FACTOR * out_h : FACTOR, b : b + FACTOR * out_w : FACTOR]
            out += np.einsum("nihw,oi->nohw", window, w[:, :, a, b])  # cross-correlation
    return out


def _fir_conv(w: np.ndarray, bias: np.ndarray, up: bool) -> layerspp.FIRConv2D:
    """scoregen's FIRConv2D holding the torch weight w (O, I, kH, kW) in its own layout."""
    out_ch, in_ch, conv, _ = w.shape
    layer = layerspp.FIRConv2D(out_ch, conv, up=up, down=not up, fir_kernel=FIR)
    layer.build((None, 4, 4, in_ch))
    # up: conv_transpose kernel (kH, kW, O, I); down: conv kernel (kH, kW, I, O)
    layout = (2, 3, 0, 1) if up else (2, 3, 1, 0)
    layer.kernel.assign(np.transpose(w, layout).astype("float32"))
    layer.bias.assign(bias.astype("float32"))
    return layer


@pytest.fixture(scope="module")
def conv_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An input (N, C, H, W), an asymmetric torch-layout weight (O, I, 3, 3) and a bias."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((5, 3, 3, 3))
    bias = rng.standard_normal(5)
    return x, w, bias


@pytest.mark.parametrize("up", [True, False], ids=["upsample_conv_2d", "conv_downsample_2d"])
def test_fused_fir_conv_matches_original(conv_case, up: bool) -> None:
    """FIRConv2D = score_sde's fused (transposed) convolution + upfirdn2d, kernel orientation
    included (the weight is asymmetric, so a spatially flipped kernel fails)."""
    x, w, bias = conv_case
    original = _original_upsample_conv_2d if up else _original_conv_downsample_2d
    expected = original(x, w) + bias[None, :, None, None]
    layer = _fir_conv(w, bias, up)
    got = _np(layer(np.transpose(x, (0, 2, 3, 1)).astype("float32")))
    expected = np.transpose(expected, (0, 2, 3, 1))
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=RTOL * np.abs(expected).max())


# ----------------------------------------------------------------------------- initialisation

NIN_SCALE = 0.1  # layers.NIN(in_dim, num_units, init_scale=0.1)
CONV1X1_SCALE = 1.0  # layers.ddpm_conv1x1(..., init_scale=1.)
INIT_CHANNELS = 64  # 4096 kernel entries: the sample variance is within ~1.4% (1 sd) of its mean
VARIANCE_SLACK = 0.15


def _assert_variance_scaling(kernel, scale: float) -> None:
    """Kernel drawn as score_sde's default_init(scale): U(±sqrt(3 scale / fan_avg)), fan_avg the
    mean of in and out (1x1 kernels)."""
    w = _np(kernel)
    fan_avg = (w.shape[0] + w.shape[1]) / 2
    variance = scale / fan_avg
    assert np.abs(w).max() <= np.sqrt(3 * variance)
    assert abs(w.var() / variance - 1) < VARIANCE_SLACK


def test_nin_layers_initialise_as_the_original() -> None:
    """NIN (attention q, k, v and the DDPM shortcut) at scale 0.1; the 1x1 convolutions
    (BigGAN shortcut, input-pyramid combiner) at 1.0; the attention output at init_scale."""
    c = INIT_CHANNELS
    keras.utils.set_random_seed(0)
    attn = layerspp.AttnBlockpp(c, init_scale=0.5)
    attn(np.zeros((1, 4, 4, c), "float32"))
    for layer in (attn.NIN_0, attn.NIN_1, attn.NIN_2):
        _assert_variance_scaling(layer.kernel, NIN_SCALE)
    _assert_variance_scaling(attn.NIN_3.kernel, 0.5)

    ddpm = layerspp.ResnetBlockDDPMpp(c, c * 2)
    ddpm(np.zeros((1, 4, 4, c), "float32"), np.zeros((1, 8), "float32"))
    _assert_variance_scaling(ddpm.shortcut.kernel, NIN_SCALE)

    biggan = layerspp.ResnetBlockBigGANpp(c, c * 2)
    biggan(np.zeros((1, 4, 4, c), "float32"), np.zeros((1, 8), "float32"))
    _assert_variance_scaling(biggan.Conv_2.kernel, CONV1X1_SCALE)

    combine = layerspp.Combine(c)
    combine(np.zeros((1, 4, 4, c), "float32"), np.zeros((1, 4, 4, c), "float32"))
    _assert_variance_scaling(combine.Conv_0.kernel, CONV1X1_SCALE)
