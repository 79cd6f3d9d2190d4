"""Shared layers of NCSN++ / DDPM++ (Song et al. 2021, score SDEs), in keras.ops.

Everything is written in ``keras.ops`` and channels-last ``(batch, H, W, C)``:
Gaussian Fourier features and sinusoidal timestep embeddings, StyleGAN2's FIR resampling
(``upfirdn2d`` with the ``[1, 3, 3, 1]`` kernel) including the fused conv+resample layers,
DDPM and BigGAN residual blocks, the DDPM self-attention block and the ``Combine`` layer used
by the progressive input pyramid. FIR resampling, GroupNorm and dropout run through
``backend`` (``upfirdn2d``, ``group_norm``, ``dropout``), which picks each backend's fastest form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from scoregen_keras import backend
from scoregen_keras.backend import upfirdn2d

PACKAGE = "scoregen"

FIR_KERNEL: tuple[int, ...] = (1, 3, 3, 1)  # StyleGAN2 / NCSN++ resampling filter
RESAMPLE_FACTOR = 2  # every up/down-sampling step halves or doubles H and W
GROUPNORM_EPS = 1e-6
GROUPNORM_MAX_GROUPS = 32
GROUPNORM_CHANNELS_PER_GROUP = 4  # groups = min(channels // 4, 32), as in score_sde
SKIP_RESCALE = 1.0 / math.sqrt(2.0)  # (x + h) / sqrt(2) keeps the variance of a residual sum
MAX_POSITIONS = 10000  # base of the sinusoidal timestep embedding (Transformer / DDPM)
ZERO_INIT_SCALE = 1e-10  # score_sde replaces init_scale=0 by this tiny scale
NIN_INIT_SCALE = 0.1  # score_sde's layers.NIN(..., init_scale=0.1); its 1x1 convolutions use 1.0
DEFAULT_DROPOUT = 0.1


# ----------------------------------------------------------------------------- initialisers


def default_init(scale: float = 1.0) -> keras.initializers.Initializer:
    """DDPM initialiser: variance scaling, fan-average, uniform (scale 0 is read as 1e-10)."""
    scale = ZERO_INIT_SCALE if scale == 0 else scale
    return keras.initializers.VarianceScaling(scale=scale, mode="fan_avg", distribution="uniform")


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupNorm(keras.layers.GroupNormalization):
    """Keras' GroupNormalization on the channel axis (its weights and config), computed by
    ``backend.group_norm`` (torch's fused kernel on the torch backend)."""

    def call(self, inputs: keras.KerasTensor) -> keras.KerasTensor:
        """Normalise each example's channel groups, then scale by gamma and shift by beta."""
        gamma = self.gamma if self.scale else None
        beta = self.beta if self.center else None
        out = backend.group_norm(inputs, self.groups, gamma, beta, self.epsilon)
        return ops.cast(out, self.compute_dtype)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Dropout(keras.layers.Dropout):
    """Keras' Dropout (its seed generator and config) drawn by ``backend.dropout``."""

    def call(self, inputs: keras.KerasTensor, training: bool = False) -> keras.KerasTensor:
        """Inverted dropout while training, the identity otherwise."""
        if training and self.rate > 0:
            return backend.dropout(inputs, self.rate, self.seed_generator)
        return inputs


@keras.saving.register_keras_serializable(package=PACKAGE)
class Conv2D(keras.layers.Conv2D):
    """Keras' channels-last Conv2D (its weights and config) computed by ``backend.conv2d``
    (torch convolves the NCHW view, without Keras' layout copies)."""

    def call(self, inputs: keras.KerasTensor) -> keras.KerasTensor:
        """Convolution plus bias, then the activation; Keras' own for dilated or grouped ones."""
        plain = self.dilation_rate == (1, 1) and self.groups == 1 and len(set(self.strides)) == 1
        if not plain or self.data_format != "channels_last":
            return super().call(inputs)
        bias = self.bias if self.use_bias else None
        outputs = backend.conv2d(inputs, self.kernel, bias, self.strides[0], self.padding)
        return outputs if self.activation is None else self.activation(outputs)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Dense(keras.layers.Dense):
    """Keras' Dense (its weights and config) computed by ``backend.dense`` (torch: one addmm)."""

    def call(self, inputs: keras.KerasTensor, training: bool | None = None) -> keras.KerasTensor:
        """inputs @ kernel + bias over the last axis, then the activation."""
        outputs = backend.dense(inputs, self.kernel, self.bias)
        return outputs if self.activation is None else self.activation(outputs)


def group_norm(channels: int, name: str | None = None, groups: int | None = None) -> GroupNorm:
    """GroupNorm with eps 1e-6 and `groups` groups, default min(channels // 4, 32) (score_sde)."""
    if groups is None:
        groups = max(1, min(channels // GROUPNORM_CHANNELS_PER_GROUP, GROUPNORM_MAX_GROUPS))
    return GroupNorm(groups=groups, epsilon=GROUPNORM_EPS, name=name)


def conv3x3(filters: int, init_scale: float = 1.0, name: str | None = None) -> Conv2D:
    """3x3 'same' convolution with the DDPM initialiser and zero bias."""
    return Conv2D(
        filters, 3, padding="same", kernel_initializer=default_init(init_scale), name=name
    )


def nin(units: int, init_scale: float = NIN_INIT_SCALE, name: str | None = None) -> Dense:
    """Network-in-network (score_sde's NIN): a Dense on the channel axis, init scale 0.1."""
    return Dense(units, kernel_initializer=default_init(init_scale), name=name)


def conv1x1(units: int, name: str | None = None) -> Dense:
    """score_sde's ddpm_conv1x1: a 1x1 convolution (as a Dense), DDPM initialiser at scale 1."""
    return Dense(units, kernel_initializer=default_init(), name=name)


def dense(units: int, name: str | None = None) -> Dense:
    """Dense layer with the DDPM initialiser and zero bias."""
    return Dense(units, kernel_initializer=default_init(), name=name)


# ----------------------------------------------------------------------------- embeddings


def get_timestep_embedding(
    timesteps: keras.KerasTensor, embedding_dim: int, max_positions: int = MAX_POSITIONS
) -> keras.KerasTensor:
    """Sinusoidal embedding [sin(t w_k), cos(t w_k)], w_k = max_positions^(-k/(half-1)) (DDPM)."""
    half_dim = embedding_dim // 2
    timesteps = ops.cast(timesteps, "float32")
    exponent = -math.log(max_positions) / (half_dim - 1)
    freqs = ops.exp(ops.arange(half_dim, dtype="float32") * exponent)
    args = timesteps[:, None] * freqs[None, :]
    emb = ops.concatenate([ops.sin(args), ops.cos(args)], axis=-1)
    if embedding_dim % 2 == 1:
        emb = ops.pad(emb, [[0, 0], [0, 1]])
    return emb


@keras.saving.register_keras_serializable(package=PACKAGE)
class GaussianFourierProjection(keras.layers.Layer):
    """Gaussian Fourier features [sin(2π W x), cos(2π W x)] with fixed W ~ N(0, scale²)."""

    def __init__(self, embedding_size: int = 256, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.embedding_size = embedding_size
        self.scale = scale

    def build(self, input_shape: tuple) -> None:
        """Draw the fixed random frequencies W (non-trainable, saved with the model)."""
        self.W = self.add_weight(
            name="W",
            shape=(self.embedding_size,),
            initializer=keras.initializers.RandomNormal(stddev=self.scale),
            trainable=False,
        )

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        """Embed per-example scalars x (batch,) into (batch, 2 * embedding_size)."""
        x_proj = ops.cast(x, self.W.dtype)[:, None] * self.W[None, :] * (2.0 * math.pi)
        return ops.concatenate([ops.sin(x_proj), ops.cos(x_proj)], axis=-1)

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """(batch, 2 * embedding_size)."""
        return (input_shape[0], 2 * self.embedding_size)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "embedding_size": self.embedding_size, "scale": self.scale}


# ----------------------------------------------------------------------------- FIR resampling


def setup_kernel(k: Sequence[float]) -> np.ndarray:
    """2-D FIR kernel from a separable 1-D one (outer product), normalised to sum to one."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim == 1:
        k = np.outer(k, k)
    return k / np.sum(k)


def fir_filter(k: Sequence[float], gain: float = 1.0) -> np.ndarray:
    """`setup_kernel(k) * gain` in the form ``upfirdn2d`` takes: a 1-D k stays 1-D (separable,
    each axis carrying sqrt(gain)), a 2-D one is the normalised 2-D kernel."""
    k = np.asarray(k, dtype=np.float64)
    if k.ndim == 1:
        return k / np.sum(k) * math.sqrt(gain)
    return setup_kernel(k) * gain


def upsample_2d(
    x: keras.KerasTensor, k: Sequence[float] = FIR_KERNEL, factor: int = RESAMPLE_FACTOR
) -> keras.KerasTensor:
    """FIR upsampling by `factor`: a constant image stays constant away from the border."""
    kernel = fir_filter(k, factor**2)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))


def downsample_2d(
    x: keras.KerasTensor, k: Sequence[float] = FIR_KERNEL, factor: int = RESAMPLE_FACTOR
) -> keras.KerasTensor:
    """FIR downsampling by `factor` (anti-aliased; pixels outside the image count as zero)."""
    kernel = fir_filter(k)
    p = kernel.shape[0] - factor
    return upfirdn2d(x, kernel, down=factor, pad=((p + 1) // 2, p // 2))


def naive_upsample_2d(x: keras.KerasTensor, factor: int = RESAMPLE_FACTOR) -> keras.KerasTensor:
    """Nearest-neighbour upsampling by `factor`."""
    height, width, channels = x.shape[1], x.shape[2], x.shape[3]
    x = ops.reshape(x, (-1, height, 1, width, 1, channels))
    x = ops.concatenate([x] * factor, axis=2)
    x = ops.concatenate([x] * factor, axis=4)
    return ops.reshape(x, (-1, height * factor, width * factor, channels))


def naive_downsample_2d(x: keras.KerasTensor, factor: int = RESAMPLE_FACTOR) -> keras.KerasTensor:
    """Average pooling over factor x factor blocks, as the mean of the factor² strided slices
    (a mean over reshaped block axes reduces across the channels-last memory: 40x slower on
    torch)."""
    slices = [x[:, i::factor, j::factor, :] for i in range(factor) for j in range(factor)]
    return sum(slices[1:], slices[0]) * (1.0 / factor**2)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FIRConv2D(keras.layers.Layer):
    """Convolution fused with FIR 2x up/down-sampling (StyleGAN2's upsample_conv_2d & co.)."""

    def __init__(
        self,
        filters: int,
        kernel_size: int = 3,
        up: bool = False,
        down: bool = False,
        fir_kernel: Sequence[float] = FIR_KERNEL,
        use_bias: bool = True,
        init_scale: float = 1.0,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if up and down:
            raise ValueError("FIRConv2D cannot both upsample and downsample.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}.")
        self.filters = filters
        self.kernel_size = kernel_size
        self.up = up
        self.down = down
        self.fir_kernel = tuple(fir_kernel)
        self.use_bias = use_bias
        self.init_scale = init_scale
        # the FIR filter after the transposed conv (gain factor², as upsample_2d) or before the
        # strided conv, and its zero padding
        factor = RESAMPLE_FACTOR
        self._fir = fir_filter(self.fir_kernel, factor**2 if up else 1.0)
        taps = self._fir.shape[0]
        if up:  # transposed conv (H -> 2H + k - 2), then FIR filter back to 2H
            p = (taps - factor) - (kernel_size - 1)
            self._fir_pad = ((p + 1) // 2 + factor - 1, p // 2 + 1)
        else:  # FIR filter (H -> H + k - 2), then strided conv to H / 2
            p = (taps - factor) + (kernel_size - 1)
            self._fir_pad = ((p + 1) // 2, p // 2)

    def build(self, input_shape: tuple) -> None:
        """Create the convolution kernel (and bias)."""
        in_ch = input_shape[-1]
        # conv_transpose wants (k, k, out, in); conv wants (k, k, in, out)
        shape = (
            (self.kernel_size, self.kernel_size, self.filters, in_ch)
            if self.up
            else (self.kernel_size, self.kernel_size, in_ch, self.filters)
        )
        self.kernel = self.add_weight(
            name="kernel", shape=shape, initializer=default_init(self.init_scale)
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")
            if self.use_bias
            else None
        )

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        """Resample by 2 (up or down) and convolve; plain 'same' convolution otherwise."""
        factor = RESAMPLE_FACTOR
        if self.up:
            # score_sde flips the kernel spatially first (w[::-1, ::-1]): the fused op is then
            # "zero-insert, then cross-correlate with w", as the plain and the down-sampling
            # convolutions use w
            kernel = ops.flip(self.kernel, axis=(0, 1))
            x = backend.conv_transpose2d(x, kernel, strides=factor)
            x = upfirdn2d(x, self._fir, pad=self._fir_pad)
            return x if self.bias is None else x + self.bias
        if self.down:
            x = upfirdn2d(x, self._fir, pad=self._fir_pad)
            return backend.conv2d(x, self.kernel, self.bias, strides=factor, padding="valid")
        return backend.conv2d(x, self.kernel, self.bias, strides=1, padding="same")

    def compute_output_shape(self, input_shape: tuple) -> tuple:
        """Spatial size times 2 (up), divided by 2 (down) or kept."""
        batch, height, width, _ = input_shape
        scale = RESAMPLE_FACTOR if self.up else 1
        shrink = RESAMPLE_FACTOR if self.down else 1
        return (batch, height * scale // shrink, width * scale // shrink, self.filters)

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "up": self.up,
            "down": self.down,
            "fir_kernel": list(self.fir_kernel),
            "use_bias": self.use_bias,
            "init_scale": self.init_scale,
        }


class _Resample(keras.layers.Layer):
    """Shared state of Upsample / Downsample: FIR or naive resampling, optional 3x3 conv."""

    def __init__(
        self,
        out_ch: int | None = None,
        with_conv: bool = False,
        fir: bool = False,
        fir_kernel: Sequence[float] = FIR_KERNEL,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if with_conv and out_ch is None:
            raise ValueError(f"{type(self).__name__} with_conv=True needs out_ch.")
        self.out_ch = out_ch
        self.with_conv = with_conv
        self.fir = fir
        self.fir_kernel = tuple(fir_kernel)
        self.conv = self._make_conv() if with_conv else None

    def _make_conv(self) -> keras.layers.Layer:
        """The resampling convolution (FIR-fused or plain)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "out_ch": self.out_ch,
            "with_conv": self.with_conv,
            "fir": self.fir,
            "fir_kernel": list(self.fir_kernel),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class Upsample(_Resample):
    """2x upsampling: FIR or nearest neighbour, optionally with a (fused) 3x3 convolution."""

    def _make_conv(self) -> keras.layers.Layer:
        """FIR-fused transposed conv, or a 3x3 conv after nearest-neighbour upsampling."""
        if self.fir:
            return FIRConv2D(self.out_ch, 3, up=True, fir_kernel=self.fir_kernel, name="Conv2d_0")
        return conv3x3(self.out_ch, name="Conv_0")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        """(B, H, W, C) -> (B, 2H, 2W, out_ch)."""
        if self.fir:
            return self.conv(x) if self.with_conv else upsample_2d(x, self.fir_kernel)
        h = naive_upsample_2d(x)
        return self.conv(h) if self.with_conv else h


@keras.saving.register_keras_serializable(package=PACKAGE)
class Downsample(_Resample):
    """2x downsampling: FIR or average pooling, optionally with a (fused) strided 3x3 conv."""

    def _make_conv(self) -> keras.layers.Layer:
        """FIR-fused strided conv, or DDPM's strided 'valid' 3x3 conv."""
        if self.fir:
            return FIRConv2D(self.out_ch, 3, down=True, fir_kernel=self.fir_kernel, name="Conv2d_0")
        return Conv2D(
            self.out_ch,
            3,
            strides=RESAMPLE_FACTOR,
            padding="valid",
            kernel_initializer=default_init(),
            name="Conv_0",
        )

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        """(B, H, W, C) -> (B, H/2, W/2, out_ch)."""
        if self.fir:
            return self.conv(x) if self.with_conv else downsample_2d(x, self.fir_kernel)
        if self.with_conv:  # pad one pixel at the end, strided 'valid' conv (DDPM)
            return self.conv(ops.pad(x, [[0, 0], [0, 1], [0, 1], [0, 0]]))
        return naive_downsample_2d(x)


# ----------------------------------------------------------------------------- blocks


@keras.saving.register_keras_serializable(package=PACKAGE)
class Combine(keras.layers.Layer):
    """Combine the input pyramid with the main path: 1x1 conv of x, then concat or sum with y."""

    def __init__(self, out_ch: int, method: str = "cat", **kwargs) -> None:
        super().__init__(**kwargs)
        if method not in ("cat", "sum"):
            raise ValueError(f"Combine method {method!r} not recognised (cat, sum).")
        self.out_ch = out_ch
        self.method = method
        self.Conv_0 = conv1x1(out_ch, name="Conv_0")

    def call(self, x: keras.KerasTensor, y: keras.KerasTensor) -> keras.KerasTensor:
        """Conv1x1(x) concatenated with (cat) or added to (sum) y."""
        h = self.Conv_0(x)
        return ops.concatenate([h, y], axis=-1) if self.method == "cat" else h + y

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {**super().get_config(), "out_ch": self.out_ch, "method": self.method}


@keras.saving.register_keras_serializable(package=PACKAGE)
class AttnBlockpp(keras.layers.Layer):
    """Self-attention over the H*W positions (DDPM), residual with optional 1/sqrt(2) rescale."""

    def __init__(
        self,
        channels: int,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
        groups: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.channels = channels
        self.skip_rescale = skip_rescale
        self.init_scale = init_scale
        self.groups = groups  # GroupNorm groups; None = min(channels // 4, 32)
        self.GroupNorm_0 = group_norm(channels, name="GroupNorm_0", groups=groups)
        self.NIN_0 = nin(channels, name="NIN_0")
        self.NIN_1 = nin(channels, name="NIN_1")
        self.NIN_2 = nin(channels, name="NIN_2")
        self.NIN_3 = nin(channels, init_scale=init_scale, name="NIN_3")

    def call(self, x: keras.KerasTensor) -> keras.KerasTensor:
        """x + NIN(softmax(q kᵀ / sqrt(C)) v), q, k, v = NIN(GroupNorm(x))."""
        height, width, channels = x.shape[1], x.shape[2], x.shape[3]
        h = self.GroupNorm_0(x)
        q = ops.reshape(self.NIN_0(h), (-1, height * width, channels))
        k = ops.reshape(self.NIN_1(h), (-1, height * width, channels))
        v = ops.reshape(self.NIN_2(h), (-1, height * width, channels))
        w = ops.matmul(q, ops.transpose(k, (0, 2, 1))) * (channels**-0.5)
        w = ops.softmax(w, axis=-1)
        h = ops.reshape(ops.matmul(w, v), (-1, height, width, channels))
        h = self.NIN_3(h)
        return (x + h) * SKIP_RESCALE if self.skip_rescale else x + h

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "channels": self.channels,
            "skip_rescale": self.skip_rescale,
            "init_scale": self.init_scale,
            "groups": self.groups,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResnetBlockDDPMpp(keras.layers.Layer):
    """DDPM residual block: GN-act-conv, + Dense(act(temb)), GN-act-dropout-conv, 1x1 shortcut."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        use_temb: bool = True,
        conv_shortcut: bool = False,
        dropout: float = DEFAULT_DROPOUT,
        skip_rescale: bool = False,
        init_scale: float = 0.0,
        in_groups: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        out_ch = out_ch or in_ch
        self.in_ch = in_ch
        self.out_ch = out_ch
        self.use_temb = use_temb
        self.conv_shortcut = conv_shortcut
        self.dropout = dropout
        self.skip_rescale = skip_rescale
        self.init_scale = init_scale
        self.in_groups = in_groups  # groups of GroupNorm_0; None = min(in_ch // 4, 32)
        self.GroupNorm_0 = group_norm(in_ch, name="GroupNorm_0", groups=in_groups)
        self.Conv_0 = conv3x3(out_ch, name="Conv_0")
        self.Dense_0 = dense(out_ch, name="Dense_0") if use_temb else None
        self.GroupNorm_1 = group_norm(out_ch, name="GroupNorm_1")
        self.Dropout_0 = Dropout(dropout, name="Dropout_0")
        self.Conv_1 = conv3x3(out_ch, init_scale=init_scale, name="Conv_1")
        self.shortcut = None
        if in_ch != out_ch:
            self.shortcut = (
                conv3x3(out_ch, name="Conv_2") if conv_shortcut else nin(out_ch, name="NIN_0")
            )

    def call(
        self, x: keras.KerasTensor, temb: keras.KerasTensor | None = None, training: bool = False
    ) -> keras.KerasTensor:
        """(B, H, W, in_ch), temb (B, E) -> (B, H, W, out_ch)."""
        h = self.Conv_0(ops.silu(self.GroupNorm_0(x)))
        if temb is not None and self.Dense_0 is not None:
            h = h + self.Dense_0(ops.silu(temb))[:, None, None, :]
        h = self.Dropout_0(ops.silu(self.GroupNorm_1(h)), training=training)
        h = self.Conv_1(h)
        if self.shortcut is not None:
            x = self.shortcut(x)
        return (x + h) * SKIP_RESCALE if self.skip_rescale else x + h

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "in_ch": self.in_ch,
            "out_ch": self.out_ch,
            "use_temb": self.use_temb,
            "conv_shortcut": self.conv_shortcut,
            "dropout": self.dropout,
            "skip_rescale": self.skip_rescale,
            "init_scale": self.init_scale,
            "in_groups": self.in_groups,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResnetBlockBigGANpp(keras.layers.Layer):
    """BigGAN residual block with optional FIR (or naive) 2x up/down-sampling inside the block."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int | None = None,
        use_temb: bool = True,
        up: bool = False,
        down: bool = False,
        dropout: float = DEFAULT_DROPOUT,
        fir: bool = False,
        fir_kernel: Sequence[float] = FIR_KERNEL,
        skip_rescale: bool = True,
        init_scale: float = 0.0,
        in_groups: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if up and down:
            raise ValueError("A residual block cannot both upsample and downsample.")
        out_ch = out_ch or in_ch
        self.in_ch = in_ch
        self.out_ch = out_ch
        self.use_temb = use_temb
        self.up = up
        self.down = down
        self.dropout = dropout
        self.fir = fir
        self.fir_kernel = tuple(fir_kernel)
        self.skip_rescale = skip_rescale
        self.init_scale = init_scale
        self.in_groups = in_groups  # groups of GroupNorm_0; None = min(in_ch // 4, 32)
        self.GroupNorm_0 = group_norm(in_ch, name="GroupNorm_0", groups=in_groups)
        self.Conv_0 = conv3x3(out_ch, name="Conv_0")
        self.Dense_0 = dense(out_ch, name="Dense_0") if use_temb else None
        self.GroupNorm_1 = group_norm(out_ch, name="GroupNorm_1")
        self.Dropout_0 = Dropout(dropout, name="Dropout_0")
        self.Conv_1 = conv3x3(out_ch, init_scale=init_scale, name="Conv_1")
        self.Conv_2 = conv1x1(out_ch, name="Conv_2") if (in_ch != out_ch or up or down) else None

    def _resample(self, x: keras.KerasTensor) -> keras.KerasTensor:
        """Apply this block's up/down-sampling (identity when neither)."""
        if self.up:
            return upsample_2d(x, self.fir_kernel) if self.fir else naive_upsample_2d(x)
        if self.down:
            return downsample_2d(x, self.fir_kernel) if self.fir else naive_downsample_2d(x)
        return x

    def call(
        self, x: keras.KerasTensor, temb: keras.KerasTensor | None = None, training: bool = False
    ) -> keras.KerasTensor:
        """(B, H, W, in_ch), temb (B, E) -> (B, H', W', out_ch), H' = 2H (up), H/2 (down) or H."""
        h = self._resample(ops.silu(self.GroupNorm_0(x)))
        x = self._resample(x)
        h = self.Conv_0(h)
        if temb is not None and self.Dense_0 is not None:
            h = h + self.Dense_0(ops.silu(temb))[:, None, None, :]
        h = self.Dropout_0(ops.silu(self.GroupNorm_1(h)), training=training)
        h = self.Conv_1(h)
        if self.Conv_2 is not None:
            x = self.Conv_2(x)
        return (x + h) * SKIP_RESCALE if self.skip_rescale else x + h

    def get_config(self) -> dict:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "in_ch": self.in_ch,
            "out_ch": self.out_ch,
            "use_temb": self.use_temb,
            "up": self.up,
            "down": self.down,
            "dropout": self.dropout,
            "fir": self.fir,
            "fir_kernel": list(self.fir_kernel),
            "skip_rescale": self.skip_rescale,
            "init_scale": self.init_scale,
            "in_groups": self.in_groups,
        }
