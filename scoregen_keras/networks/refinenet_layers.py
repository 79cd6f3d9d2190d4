"""RefineNet building blocks of NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020).

Channels-last Keras 3 ports of the layers in ermongroup/ncsn ``models/cond_refinenet_dilated.py``
and ermongroup/ncsnv2 ``models/layers.py`` / ``models/normalization.py``. Every block takes the
noise-level index ``sigma_index`` (int, shape (batch,)) as its second argument; the
unconditional normalisations ignore it, so one set of blocks serves both networks:

- ``normalization="cond_instance_norm++"``: CondInstanceNorm++ (NCSN v1, every block).
- ``normalization="instance_norm++"``: InstanceNorm++ (NCSNv2 residual blocks).
- ``normalization="none"``: no normalisation (NCSNv2 refine blocks).

Only ``keras.ops`` / ``keras.layers``; no backend imports.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

PACKAGE = "scoregen"

INSTANCE_NORM_EPS = 1e-5  # eps of torch.nn.InstanceNorm2d and of the mean standardisation
EMBEDDING_SCALE_MEAN = 1.0  # gamma, alpha initialised at N(1, 0.02) as in the reference code
EMBEDDING_SCALE_STDDEV = 0.02
# VarianceScaling(1/3, fan_in, uniform) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default
# Conv2d weight init, which the reference code uses (biases start at zero here, not uniform).
TORCH_DEFAULT_INIT_SCALE = 1.0 / 3.0
CRP_POOL_SIZE = 5  # 5x5 stride-1 pooling in the chained residual pooling
CRP_STAGES = 2  # pooling stages of each CRP block
RCU_STAGES = 2  # conv stages per residual conv unit
ADAPT_RCU_BLOCKS = 2  # RCUs adapting each input of a refine block
OUTPUT_RCU_BLOCKS = 1  # RCUs after the CRP (3 in the last refine block)
END_OUTPUT_RCU_BLOCKS = 3
KERNEL_SIZE = 3

NORMALIZATIONS = ("cond_instance_norm++", "instance_norm++", "none")


def conv_initializer() -> keras.initializers.Initializer:
    """Kernel initializer matching PyTorch's default Conv2d initialisation."""
    return keras.initializers.VarianceScaling(
        scale=TORCH_DEFAULT_INIT_SCALE, mode="fan_in", distribution="uniform"
    )


def conv3x3(
    filters: int, use_bias: bool = True, dilation: int = 1, name: str | None = None
) -> keras.layers.Conv2D:
    """3x3 'same' convolution (dilated when dilation > 1), as ``ncsn_conv3x3``."""
    return keras.layers.Conv2D(
        filters,
        KERNEL_SIZE,
        padding="same",
        dilation_rate=dilation,
        use_bias=use_bias,
        kernel_initializer=conv_initializer(),
        name=name,
    )


def bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """Interpolation matrix (size_out, size_in) of bilinear resizing with align_corners=True."""
    A = np.zeros((size_out, size_in), dtype=np.float32)
    if size_out == 1 or size_in == 1:
        A[:, 0] = 1.0
        return A
    position = np.arange(size_out) * (size_in - 1) / (size_out - 1)
    lower = np.minimum(np.floor(position).astype(int), size_in - 2)
    frac = position - lower
    A[np.arange(size_out), lower] += 1.0 - frac
    A[np.arange(size_out), lower + 1] += frac
    return A


def resize_bilinear_align_corners(x: Any, height: int, width: int) -> Any:
    """Resize (batch, h, w, c) to (batch, height, width, c): bilinear, align_corners=True."""
    h_in, w_in = int(x.shape[1]), int(x.shape[2])
    if (h_in, w_in) == (height, width):
        return x
    A_h = ops.convert_to_tensor(bilinear_matrix(h_in, height), dtype=x.dtype)
    A_w = ops.convert_to_tensor(bilinear_matrix(w_in, width), dtype=x.dtype)
    return ops.einsum("Hh,bhwc,Ww->bHWc", A_h, x, A_w)


def _instance_normalize(x: Any) -> tuple[Any, Any]:
    """Per-channel instance normalisation; returns (normalised x, channel means mu (batch, C))."""
    mu = ops.mean(x, axis=(1, 2), keepdims=True)
    centred = x - mu
    var = ops.mean(ops.square(centred), axis=(1, 2), keepdims=True)
    h = centred / ops.sqrt(var + INSTANCE_NORM_EPS)
    return h, ops.squeeze(mu, axis=(1, 2))


def _standardized_means(mu: Any) -> Any:
    """(mu_k - m) / sqrt(s^2 + eps) over channels, s^2 unbiased as torch.var (reference code)."""
    channels = mu.shape[-1]
    m = ops.mean(mu, axis=-1, keepdims=True)
    s2 = ops.var(mu, axis=-1, keepdims=True) * (channels / (channels - 1))
    return (mu - m) / ops.sqrt(s2 + INSTANCE_NORM_EPS)


@keras.saving.register_keras_serializable(package=PACKAGE)
class CondInstanceNormPlusPlus(keras.layers.Layer):
    """Conditional instance normalisation++ (NCSN eq. in Appendix A), one (γ, α, β) per σ level.

    z_k = γ[i,k] (x_k − μ_k)/s_k + β[i,k] + α[i,k] (μ_k − m)/s, with μ_k, s_k the spatial mean and
    std of channel k, m and s the mean and (unbiased) std of the μ_k over channels, i = σ index.
    """

    def __init__(self, num_classes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create the per-level embedding [γ | α | β] (L, 3C): γ, α init N(1, 0.02), β init 0."""
        self.channels = int(input_shape[-1])
        self.embedding = self.add_weight(
            shape=(self.num_classes, 3 * self.channels),
            initializer=self._embedding_initializer,
            name="embedding",
        )

    def _embedding_initializer(self, shape: tuple[int, int], dtype: Any = None) -> Any:
        """γ and α columns drawn from N(1, 0.02), β columns zero (reference initialisation)."""
        scale_init = keras.initializers.RandomNormal(
            mean=EMBEDDING_SCALE_MEAN, stddev=EMBEDDING_SCALE_STDDEV
        )
        scales = scale_init((shape[0], 2 * self.channels), dtype=dtype)
        return ops.concatenate([scales, ops.zeros((shape[0], self.channels), dtype=dtype)], axis=1)

    def call(self, x: Any, sigma_index: Any) -> Any:
        """Normalise x (batch, H, W, C) with the embeddings of sigma_index (batch,)."""
        h, mu = _instance_normalize(x)
        embedding = ops.take(self.embedding, ops.cast(sigma_index, "int32"), axis=0)
        gamma, alpha, beta = ops.split(embedding[:, None, None, :], 3, axis=-1)
        h = h + _standardized_means(mu)[:, None, None, :] * alpha
        return gamma * h + beta

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package=PACKAGE)
class InstanceNormPlusPlus(keras.layers.Layer):
    """Unconditional instance normalisation++ (NCSNv2): CondInstanceNorm++ with one γ, α, β."""

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create γ, α (init N(1, 0.02)) and β (init 0), one per channel."""
        channels = int(input_shape[-1])
        scale_init = keras.initializers.RandomNormal(
            mean=EMBEDDING_SCALE_MEAN, stddev=EMBEDDING_SCALE_STDDEV
        )
        self.gamma = self.add_weight(shape=(channels,), initializer=scale_init, name="gamma")
        self.alpha = self.add_weight(shape=(channels,), initializer=scale_init, name="alpha")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, x: Any, sigma_index: Any = None) -> Any:
        """Normalise x (batch, H, W, C); sigma_index is ignored."""
        h, mu = _instance_normalize(x)
        h = h + _standardized_means(mu)[:, None, None, :] * self.alpha
        return self.gamma * h + self.beta


def make_normalization(
    normalization: str, num_classes: int | None, name: str
) -> keras.layers.Layer | None:
    """The normalisation layer named by ``normalization`` (None for "none")."""
    if normalization == "cond_instance_norm++":
        if num_classes is None:
            raise ValueError("cond_instance_norm++ needs num_classes")
        return CondInstanceNormPlusPlus(num_classes, name=name)
    if normalization == "instance_norm++":
        return InstanceNormPlusPlus(name=name)
    if normalization == "none":
        return None
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def _normalize(norm: keras.layers.Layer | None, x: Any, sigma_index: Any) -> Any:
    """Apply an optional normalisation layer."""
    return x if norm is None else norm(x, sigma_index)


class _Block(keras.layers.Layer):
    """Common config of the blocks: normalisation kind and number of σ levels."""

    def __init__(
        self, normalization: str = "none", num_classes: int | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.normalization = normalization
        self.num_classes = num_classes

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "normalization": self.normalization,
            "num_classes": self.num_classes,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ConvMeanPool(keras.layers.Layer):
    """Convolution followed by 2x2 mean pooling; ``adjust_padding`` pads top/left for odd sizes."""

    def __init__(
        self,
        filters: int,
        kernel_size: int = KERNEL_SIZE,
        adjust_padding: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.filters = filters
        self.kernel_size = kernel_size
        self.adjust_padding = adjust_padding
        self.conv = keras.layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            kernel_initializer=conv_initializer(),
            name="conv",
        )

    def call(self, x: Any) -> Any:
        """(batch, H, W, C) -> (batch, ceil(H/2), ceil(W/2), filters)."""
        if self.adjust_padding:
            x = ops.pad(x, [[0, 0], [1, 0], [1, 0], [0, 0]])
        h = self.conv(x)
        return ops.average_pool(h, pool_size=2, strides=2, padding="valid")

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "adjust_padding": self.adjust_padding,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlock(_Block):
    """(Conditional) residual block: norm, ELU, conv, norm, ELU, conv, plus shortcut.

    ``resample="down"`` halves the resolution with ConvMeanPool, except when ``dilation > 1``:
    then (as in the reference code) the block keeps the resolution and uses dilated convs.
    """

    def __init__(
        self,
        input_dim: int,
        output_dim: int,
        resample: str | None = None,
        dilation: int = 1,
        adjust_padding: bool = False,
        normalization: str = "instance_norm++",
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(normalization, num_classes, **kwargs)
        if resample not in (None, "down"):
            raise ValueError(f"resample must be None or 'down', got {resample!r}")
        self.input_dim = input_dim
        self.output_dim = output_dim
        self.resample = resample
        self.dilation = dilation
        self.adjust_padding = adjust_padding
        downsample = resample == "down" and dilation == 1
        middle_dim = input_dim if resample == "down" else output_dim
        self.normalize1 = make_normalization(normalization, num_classes, "normalize1")
        self.conv1 = conv3x3(middle_dim, dilation=dilation, name="conv1")
        self.normalize2 = make_normalization(normalization, num_classes, "normalize2")
        if downsample:
            self.conv2 = ConvMeanPool(output_dim, adjust_padding=adjust_padding, name="conv2")
        else:
            self.conv2 = conv3x3(output_dim, dilation=dilation, name="conv2")
        self.shortcut = None
        if output_dim != input_dim or resample is not None:
            if downsample:
                self.shortcut = ConvMeanPool(
                    output_dim, kernel_size=1, adjust_padding=adjust_padding, name="shortcut"
                )
            elif dilation > 1:
                self.shortcut = conv3x3(output_dim, dilation=dilation, name="shortcut")
            else:
                self.shortcut = keras.layers.Conv2D(
                    output_dim, 1, kernel_initializer=conv_initializer(), name="shortcut"
                )

    def call(self, x: Any, sigma_index: Any = None) -> Any:
        """Residual update of x (batch, H, W, input_dim)."""
        h = ops.elu(_normalize(self.normalize1, x, sigma_index))
        h = self.conv1(h)
        h = ops.elu(_normalize(self.normalize2, h, sigma_index))
        h = self.conv2(h)
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return shortcut + h

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "input_dim": self.input_dim,
            "output_dim": self.output_dim,
            "resample": self.resample,
            "dilation": self.dilation,
            "adjust_padding": self.adjust_padding,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class RCUBlock(_Block):
    """Residual conv unit: n_blocks x (residual of n_stages x [norm, ELU, bias-free conv])."""

    def __init__(
        self,
        features: int,
        n_blocks: int,
        n_stages: int = RCU_STAGES,
        normalization: str = "none",
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(normalization, num_classes, **kwargs)
        self.features = features
        self.n_blocks = n_blocks
        self.n_stages = n_stages
        self.norms = [
            make_normalization(normalization, num_classes, f"norm_{i + 1}_{j + 1}")
            for i in range(n_blocks)
            for j in range(n_stages)
        ]
        self.convs = [
            conv3x3(features, use_bias=False, name=f"conv_{i + 1}_{j + 1}")
            for i in range(n_blocks)
            for j in range(n_stages)
        ]

    def call(self, x: Any, sigma_index: Any = None) -> Any:
        """Apply the residual units."""
        for i in range(self.n_blocks):
            residual = x
            for j in range(self.n_stages):
                k = i * self.n_stages + j
                x = self.convs[k](ops.elu(_normalize(self.norms[k], x, sigma_index)))
            x = x + residual
        return x

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "features": self.features,
            "n_blocks": self.n_blocks,
            "n_stages": self.n_stages,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class CRPBlock(_Block):
    """Chained residual pooling: x = ELU(x); path <- conv(pool(norm(path))); x += path, n_stages.

    ``pool="avg"`` (NCSN v1: 5x5 average pooling counting the zero padding, as torch's
    AvgPool2d) or ``"max"`` (NCSNv2: 5x5 max pooling).
    """

    def __init__(
        self,
        features: int,
        n_stages: int = CRP_STAGES,
        pool: str = "max",
        normalization: str = "none",
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(normalization, num_classes, **kwargs)
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.features = features
        self.n_stages = n_stages
        self.pool = pool
        self.norms = [
            make_normalization(normalization, num_classes, f"norm_{i + 1}") for i in range(n_stages)
        ]
        self.convs = [
            conv3x3(features, use_bias=False, name=f"conv_{i + 1}") for i in range(n_stages)
        ]

    def _pool(self, x: Any) -> Any:
        """5x5 stride-1 pooling that keeps the resolution."""
        if self.pool == "max":
            return ops.max_pool(x, pool_size=CRP_POOL_SIZE, strides=1, padding="same")
        pad = CRP_POOL_SIZE // 2
        x = ops.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        return ops.average_pool(x, pool_size=CRP_POOL_SIZE, strides=1, padding="valid")

    def call(self, x: Any, sigma_index: Any = None) -> Any:
        """Chained residual pooling of x."""
        x = ops.elu(x)
        path = x
        for norm, conv in zip(self.norms, self.convs, strict=True):
            path = conv(self._pool(_normalize(norm, path, sigma_index)))
            x = path + x
        return x

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "features": self.features,
            "n_stages": self.n_stages,
            "pool": self.pool,
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class MSFBlock(_Block):
    """Multi-resolution fusion: sum of conv(norm(x_i)), resized bilinearly to xs[0]'s size."""

    def __init__(
        self,
        in_planes: list[int],
        features: int,
        normalization: str = "none",
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(normalization, num_classes, **kwargs)
        self.in_planes = list(in_planes)
        self.features = features
        self.norms = [
            make_normalization(normalization, num_classes, f"norm_{i + 1}")
            for i in range(len(in_planes))
        ]
        self.convs = [conv3x3(features, name=f"conv_{i + 1}") for i in range(len(in_planes))]

    def call(self, xs: list[Any], sigma_index: Any = None) -> Any:
        """Fuse the inputs at the resolution of xs[0]."""
        height, width = int(xs[0].shape[1]), int(xs[0].shape[2])
        total = None
        for x, norm, conv in zip(xs, self.norms, self.convs, strict=True):
            h = conv(_normalize(norm, x, sigma_index))
            h = resize_bilinear_align_corners(h, height, width)
            total = h if total is None else total + h
        return total

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {**super().get_config(), "in_planes": self.in_planes, "features": self.features}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RefineBlock(_Block):
    """RefineNet block: RCU adaptation of each input, MSF fusion, CRP, output RCUs."""

    def __init__(
        self,
        in_planes: list[int],
        features: int,
        start: bool = False,
        end: bool = False,
        pool: str = "max",
        normalization: str = "none",
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(normalization, num_classes, **kwargs)
        self.in_planes = list(in_planes)
        self.features = features
        self.start = start
        self.end = end
        self.pool = pool
        norm_kwargs = {"normalization": normalization, "num_classes": num_classes}
        self.adapt_convs = [
            RCUBlock(planes, ADAPT_RCU_BLOCKS, name=f"adapt_conv_{i + 1}", **norm_kwargs)
            for i, planes in enumerate(in_planes)
        ]
        n_output_blocks = END_OUTPUT_RCU_BLOCKS if end else OUTPUT_RCU_BLOCKS
        self.output_convs = RCUBlock(features, n_output_blocks, name="output_convs", **norm_kwargs)
        self.msf = None if start else MSFBlock(in_planes, features, name="msf", **norm_kwargs)
        self.crp = CRPBlock(features, pool=pool, name="crp", **norm_kwargs)

    def call(self, xs: list[Any], sigma_index: Any = None) -> Any:
        """Refine the inputs (finest first); output at the resolution of xs[0]."""
        hs = [adapt(x, sigma_index) for adapt, x in zip(self.adapt_convs, xs, strict=True)]
        h = hs[0] if self.msf is None else self.msf(hs, sigma_index)
        h = self.crp(h, sigma_index)
        return self.output_convs(h, sigma_index)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            **super().get_config(),
            "in_planes": self.in_planes,
            "features": self.features,
            "start": self.start,
            "end": self.end,
            "pool": self.pool,
        }
