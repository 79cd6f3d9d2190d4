"""The FID Inception network: the 2015-12-05 TF Inception graph as pytorch-fid ports it.

The same function as ``pytorch_fid.inception.InceptionV3`` built with ``use_fid_inception=True``
(pytorch-fid 0.3.0), channels-last:

    x in [0, 1], (n, H, W, 3) RGB
    -> bilinear resize to 299 x 299 (half-pixel centres, no antialias: F.interpolate with
       align_corners=False), then 2x - 1
    -> torchvision's Inception3 stem and blocks with pytorch-fid's FID variants: Mixed_5b-5d
       (FIDInceptionA), 6b-6e (FIDInceptionC) and 7b (FIDInceptionE_1) pool their last branch by a
       3x3 average that does not count the padding, Mixed_7c (FIDInceptionE_2) by a 3x3 max
    -> pool3 = mean over the 8 x 8 map (n, 2048); logits = fc(pool3) (n, 1008)

Every conv is bias-free and followed by batch normalisation (eps 0.001, running statistics) and a
ReLU (torchvision's BasicConv2d). Layers and blocks carry pytorch-fid's names (Conv2d_1a_3x3,
Mixed_5b, ...; a block's convs branch1x1, branch5x5_1, ...), so the published state_dict
(``pt_inception-2015-12-05-6726825d.pth``) maps onto the network key by key: `torch_parameters`.
The network is always float32, whatever the global dtype policy: FID is defined in float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

Tensor = Any
TorchParameters = dict[str, tuple[keras.Variable, tuple[int, ...]]]
"""{state_dict key: (Keras variable, axes)}: the Keras value is the torch value transposed."""

FID_SIZE = 299
"""Height and width the network sees (pytorch-fid resizes every input to it)."""
POOL3_FEATURES = 2048
LOGITS = 1008
RGB_CHANNELS = 3
PIXEL_MAX_8BIT = 255.0
BN_EPS = 1e-3
"""Batch-norm epsilon of the TF graph (torchvision's BasicConv2d has the same)."""
FLOAT32 = "float32"
POOL_SIZE = 3
STEM_POOL_STRIDE = 2
INPUT_TRANSFORM = "input_transform"
"""Name of the layer that resizes and rescales the images (the fixtures' block 'input')."""

# torch layout -> Keras layout of a parameter: Keras array = torch array.transpose(axes)
CONV_AXES = (2, 3, 1, 0)  # (out, in, kH, kW) -> (kH, kW, in, out)
DENSE_AXES = (1, 0)  # (out, in) -> (in, out)
IDENTITY_AXES = (0,)  # vectors
UNUSED_TORCH_BUFFERS = ("num_batches_tracked",)
"""BatchNorm buffers a state_dict carries that inference never reads (a step counter)."""


class FIDError(ValueError):
    """Input the standard FID cannot use (weights, statistics, images): a one-sentence message."""


def error_cause(error: BaseException) -> str:
    """The first line of an exception's message (or its type name), quoted in a FIDError."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# ---------------------------------------------------------------------------- the architecture


@dataclasses.dataclass(frozen=True)
class Conv:
    """One BasicConv2d: conv (no bias) -> BN -> ReLU. padding "same" is torch's (k - 1) / 2."""

    name: str
    filters: int
    kernel: int | tuple[int, int]
    strides: int = 1
    padding: str = "same"

    def convs(self) -> Iterator[Conv]:
        """This conv."""
        yield self

    def apply(self, layers: Mapping[str, keras.layers.Layer], x: Tensor) -> Tensor:
        """The block's layer of this name applied to x."""
        return layers[self.name](x)

    def layer(self, name: str) -> keras.layers.Layer:
        """A top-level BasicConv2d (the stem's Conv2d_*)."""
        return BasicConv2d(self, name=name, dtype=FLOAT32)


@dataclasses.dataclass(frozen=True)
class Pool:
    """A 3x3 pooling; "same" pads by 1 (average: padding not counted; max: padding never wins)."""

    kind: str  # "avg" or "max"
    strides: int = 1
    padding: str = "same"

    def convs(self) -> Iterator[Conv]:
        """No convs."""
        yield from ()

    def apply(self, layers: Mapping[str, keras.layers.Layer], x: Tensor) -> Tensor:
        """Pool x; Keras' "same" average excludes the padding on every backend, as TF's does."""
        pool = ops.average_pool if self.kind == "avg" else ops.max_pool
        return pool(x, POOL_SIZE, self.strides, self.padding)

    def layer(self, name: str) -> keras.layers.Layer:
        """A top-level pooling layer (the stem's maxpool1 / maxpool2)."""
        pooling = keras.layers.AveragePooling2D if self.kind == "avg" else keras.layers.MaxPooling2D
        return pooling(POOL_SIZE, self.strides, self.padding, name=name, dtype=FLOAT32)


@dataclasses.dataclass(frozen=True)
class Branch:
    """Steps applied in turn."""

    steps: tuple[Conv | Pool | Fork, ...]

    def convs(self) -> Iterator[Conv]:
        """The convs of the steps, in order."""
        for step in self.steps:
            yield from step.convs()

    def apply(self, layers: Mapping[str, keras.layers.Layer], x: Tensor) -> Tensor:
        """x through every step."""
        for step in self.steps:
            x = step.apply(layers, x)
        return x


@dataclasses.dataclass(frozen=True)
class Fork:
    """Parallel branches whose outputs are concatenated along channels, in the order listed."""

    branches: tuple[Branch, ...]

    def convs(self) -> Iterator[Conv]:
        """The convs of the branches, in order."""
        for branch in self.branches:
            yield from branch.convs()

    def apply(self, layers: Mapping[str, keras.layers.Layer], x: Tensor) -> Tensor:
        """The branches' outputs of x, concatenated on channels."""
        return ops.concatenate([branch.apply(layers, x) for branch in self.branches], axis=-1)

    def layer(self, name: str) -> keras.layers.Layer:
        """A Mixed_* block."""
        return InceptionBlock(self, name=name, dtype=FLOAT32)


def fork(*branches: tuple[Conv | Pool | Fork, ...]) -> Fork:
    """A Fork of branches given as tuples of steps."""
    return Fork(tuple(Branch(steps) for steps in branches))


AVG_SAME, MAX_SAME = Pool("avg"), Pool("max")
MAX_STRIDE_2 = Pool("max", strides=STEM_POOL_STRIDE, padding="valid")


def inception_a(pool_features: int) -> Fork:
    """FIDInceptionA (Mixed_5b-5d): [1x1, 5x5, 3x3dbl, avg pool]."""
    return fork(
        (Conv("branch1x1", 64, 1),),
        (Conv("branch5x5_1", 48, 1), Conv("branch5x5_2", 64, 5)),
        (
            Conv("branch3x3dbl_1", 64, 1),
            Conv("branch3x3dbl_2", 96, 3),
            Conv("branch3x3dbl_3", 96, 3),
        ),
        (AVG_SAME, Conv("branch_pool", pool_features, 1)),
    )


def inception_b() -> Fork:
    """torchvision's InceptionB (Mixed_6a), the grid reduction 35 -> 17: [3x3, 3x3dbl, max]."""
    return fork(
        (Conv("branch3x3", 384, 3, strides=2, padding="valid"),),
        (
            Conv("branch3x3dbl_1", 64, 1),
            Conv("branch3x3dbl_2", 96, 3),
            Conv("branch3x3dbl_3", 96, 3, strides=2, padding="valid"),
        ),
        (MAX_STRIDE_2,),
    )


def inception_c(channels_7x7: int) -> Fork:
    """FIDInceptionC (Mixed_6b-6e): [1x1, 7x7, 7x7dbl, avg pool], 7x7 as 1x7 and 7x1."""
    c7 = channels_7x7
    return fork(
        (Conv("branch1x1", 192, 1),),
        (
            Conv("branch7x7_1", c7, 1),
            Conv("branch7x7_2", c7, (1, 7)),
            Conv("branch7x7_3", 192, (7, 1)),
        ),
        (
            Conv("branch7x7dbl_1", c7, 1),
            Conv("branch7x7dbl_2", c7, (7, 1)),
            Conv("branch7x7dbl_3", c7, (1, 7)),
            Conv("branch7x7dbl_4", c7, (7, 1)),
            Conv("branch7x7dbl_5", 192, (1, 7)),
        ),
        (AVG_SAME, Conv("branch_pool", 192, 1)),
    )


def inception_d() -> Fork:
    """torchvision's InceptionD (Mixed_7a), the grid reduction 17 -> 8: [3x3, 7x7x3, max]."""
    return fork(
        (Conv("branch3x3_1", 192, 1), Conv("branch3x3_2", 320, 3, strides=2, padding="valid")),
        (
            Conv("branch7x7x3_1", 192, 1),
            Conv("branch7x7x3_2", 192, (1, 7)),
            Conv("branch7x7x3_3", 192, (7, 1)),
            Conv("branch7x7x3_4", 192, 3, strides=2, padding="valid"),
        ),
        (MAX_STRIDE_2,),
    )


def inception_e(pool: Pool) -> Fork:
    """FIDInceptionE_1 (Mixed_7b, average pool) / E_2 (Mixed_7c, max pool): 3x3s split in two."""
    return fork(
        (Conv("branch1x1", 320, 1),),
        (
            Conv("branch3x3_1", 384, 1),
            fork((Conv("branch3x3_2a", 384, (1, 3)),), (Conv("branch3x3_2b", 384, (3, 1)),)),
        ),
        (
            Conv("branch3x3dbl_1", 448, 1),
            Conv("branch3x3dbl_2", 384, 3),
            fork((Conv("branch3x3dbl_3a", 384, (1, 3)),), (Conv("branch3x3dbl_3b", 384, (3, 1)),)),
        ),
        (pool, Conv("branch_pool", 192, 1)),
    )


# (name, what): pytorch-fid's blocks in order, from the resized input to Mixed_7c
ARCHITECTURE: tuple[tuple[str, Conv | Pool | Fork], ...] = (
    ("Conv2d_1a_3x3", Conv("Conv2d_1a_3x3", 32, 3, strides=2, padding="valid")),
    ("Conv2d_2a_3x3", Conv("Conv2d_2a_3x3", 32, 3, padding="valid")),
    ("Conv2d_2b_3x3", Conv("Conv2d_2b_3x3", 64, 3)),
    ("maxpool1", MAX_STRIDE_2),
    ("Conv2d_3b_1x1", Conv("Conv2d_3b_1x1", 80, 1)),
    ("Conv2d_4a_3x3", Conv("Conv2d_4a_3x3", 192, 3, padding="valid")),
    ("maxpool2", MAX_STRIDE_2),
    ("Mixed_5b", inception_a(pool_features=32)),
    ("Mixed_5c", inception_a(pool_features=64)),
    ("Mixed_5d", inception_a(pool_features=64)),
    ("Mixed_6a", inception_b()),
    ("Mixed_6b", inception_c(channels_7x7=128)),
    ("Mixed_6c", inception_c(channels_7x7=160)),
    ("Mixed_6d", inception_c(channels_7x7=160)),
    ("Mixed_6e", inception_c(channels_7x7=192)),
    ("Mixed_7a", inception_d()),
    ("Mixed_7b", inception_e(AVG_SAME)),
    ("Mixed_7c", inception_e(MAX_SAME)),
)
BLOCKS = (INPUT_TRANSFORM, *(name for name, _ in ARCHITECTURE), "avgpool")
"""Names of the layers whose outputs pytorch-fid's blocks correspond to, in order."""


# ---------------------------------------------------------------------------------- the layers


def torch_bilinear_taps(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source rows i0, i1 and the weight λ of i1 per output row, bit for bit as torch's kernel.

    F.interpolate(bilinear, align_corners=False): scale = float32(in / out); source = (dst + 0.5)
    · scale − 0.5 rounded once to float32 (the kernel's fused multiply-add; the product of two
    float32 is exact in float64), clamped at 0; i0 = floor, i1 = min(i0 + 1, in − 1), λ = source −
    i0. No antialias. An identity when in == out.
    """
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    source = ((np.arange(out_size) + 0.5) * scale - 0.5).astype(np.float32)
    source = np.maximum(source, np.float32(0.0))
    i0 = np.floor(source).astype(np.int32)
    return i0, np.minimum(i0 + 1, in_size - 1).astype(np.int32), source - i0.astype(np.float32)


def _traced_bilinear_taps(in_size: Tensor, out_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """`torch_bilinear_taps` for a size known only when the graph runs (a TF function retraced
    for varying image sizes): float32 without the fused rounding, so λ may differ from torch's by
    one float32 ulp of the source coordinate (≤ in · 2⁻²³)."""
    scale = ops.cast(in_size, FLOAT32) / float(out_size)
    source = ops.maximum((ops.arange(out_size, dtype=FLOAT32) + 0.5) * scale - 0.5, 0.0)
    i0 = ops.cast(ops.floor(source), "int32")
    i1 = ops.minimum(i0 + 1, ops.cast(in_size, "int32") - 1)
    return i0, i1, source - ops.cast(i0, FLOAT32)


def bilinear_resize(images: Tensor, size: int = FID_SIZE) -> Tensor:
    """(n, H, W, C) -> (n, size, size, C) as torch's F.interpolate(bilinear, align_corners=False).

    Written out (two taps per axis, width first as torch's kernel) because the backends' own
    resizes differ: TF's lands 1e-5 away from torch's for 512 x 384 -> 299.
    """
    for axis in (2, 1):
        static_size = images.shape[axis]
        if static_size is None:
            i0, i1, weight = _traced_bilinear_taps(ops.shape(images)[axis], size)
        else:
            i0, i1, weight = torch_bilinear_taps(int(static_size), size)
        # (size, 1, 1) against (size, W, C) rows, (size, 1) against (size, C) columns
        weight = ops.reshape(ops.cast(weight, images.dtype), (size,) + (1,) * (3 - axis))
        low, high = ops.take(images, i0, axis=axis), ops.take(images, i1, axis=axis)
        images = low * (1.0 - weight) + high * weight
    return images


@keras.saving.register_keras_serializable(package="scoregen")
class FIDInputTransform(keras.layers.Layer):
    """pytorch-fid's input path: images in [0, 1] resized to 299 x 299, then 2x - 1."""

    def call(self, images: Tensor) -> Tensor:
        """Resize (bilinear, align_corners=False) and rescale [0, 1] -> [-1, 1]."""
        return 2.0 * bilinear_resize(ops.cast(images, FLOAT32), FID_SIZE) - 1.0

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """(n, 299, 299, C)."""
        return (input_shape[0], FID_SIZE, FID_SIZE, input_shape[-1])


@keras.saving.register_keras_serializable(package="scoregen")
class BasicConv2d(keras.layers.Layer):
    """torchvision's BasicConv2d: Conv2d (bias-free) -> BatchNorm2d (eps 0.001) -> ReLU."""

    def __init__(self, spec: Conv, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.conv = keras.layers.Conv2D(
            spec.filters,
            spec.kernel,
            strides=spec.strides,
            padding=spec.padding,
            use_bias=False,
            kernel_initializer="zeros",  # always loaded from a state_dict
            name="conv",
            dtype=self.dtype_policy,
        )
        self.bn = keras.layers.BatchNormalization(
            epsilon=BN_EPS, name="bn", dtype=self.dtype_policy
        )

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Build the conv and the batch norm for `input_shape`."""
        self.conv.build(input_shape)
        self.bn.build(self.conv.compute_output_shape(input_shape))

    def call(self, x: Tensor) -> Tensor:
        """ReLU(BN(conv(x))) with the running statistics."""
        return ops.relu(self.bn(self.conv(x), training=False))

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """The conv's output shape."""
        return self.conv.compute_output_shape(input_shape)

    def torch_parameters(self, prefix: str | None = None) -> TorchParameters:
        """{state_dict key: (variable, axes)} of the conv and its BN: PREFIX.conv.weight, …"""
        prefix = self.name if prefix is None else prefix
        return {
            f"{prefix}.conv.weight": (self.conv.kernel, CONV_AXES),
            f"{prefix}.bn.weight": (self.bn.gamma, IDENTITY_AXES),
            f"{prefix}.bn.bias": (self.bn.beta, IDENTITY_AXES),
            f"{prefix}.bn.running_mean": (self.bn.moving_mean, IDENTITY_AXES),
            f"{prefix}.bn.running_var": (self.bn.moving_variance, IDENTITY_AXES),
        }


@keras.saving.register_keras_serializable(package="scoregen")
class InceptionBlock(keras.layers.Layer):
    """A Mixed_* block: parallel branches of BasicConv2d and pooling, concatenated on channels."""

    def __init__(self, spec: Fork, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.convs = {
            conv.name: BasicConv2d(conv, name=conv.name, dtype=self.dtype_policy)
            for conv in spec.convs()
        }

    def call(self, x: Tensor) -> Tensor:
        """The block's output: its branches concatenated in torchvision's order."""
        return self.spec.apply(self.convs, x)

    def torch_parameters(self) -> TorchParameters:
        """{state_dict key: (variable, axes)} of every conv of the block (keys Mixed_5b.…)."""
        return {
            key: value
            for name, conv in self.convs.items()
            for key, value in conv.torch_parameters(f"{self.name}.{name}").items()
        }


# ------------------------------------------------------------------------------- the network


def build_fid_inception() -> keras.Model:
    """The FID Inception network with zero weights (load them with `load_torch_state_dict`).

    A functional model: images (n, H, W, 3) in [0, 1] -> {"pool3": (n, 2048), "logits":
    (n, 1008)}; each of pytorch-fid's blocks is a layer of the same name (`BLOCKS`).
    """
    images = keras.Input((None, None, RGB_CHANNELS), name="images", dtype=FLOAT32)
    x = FIDInputTransform(name=INPUT_TRANSFORM, dtype=FLOAT32)(images)
    for name, spec in ARCHITECTURE:
        x = spec.layer(name)(x)
    pool3 = keras.layers.GlobalAveragePooling2D(name="avgpool", dtype=FLOAT32)(x)
    logits = keras.layers.Dense(LOGITS, kernel_initializer="zeros", name="fc", dtype=FLOAT32)(pool3)
    return keras.Model(images, {"pool3": pool3, "logits": logits}, name="fid_inception_v3")


def torch_parameters(network: keras.Model) -> TorchParameters:
    """{pytorch-fid state_dict key: (Keras variable, axes)} of the whole network.

    The keys are those of the published .pth less the BatchNorm step counters
    (`UNUSED_TORCH_BUFFERS`), which inference never reads.
    """
    parameters: TorchParameters = {}
    for name, _ in ARCHITECTURE:
        layer = network.get_layer(name)
        if hasattr(layer, "torch_parameters"):  # convs and blocks; the stem's pools have none
            parameters.update(layer.torch_parameters())
    fc = network.get_layer("fc")
    parameters["fc.weight"] = (fc.kernel, DENSE_AXES)
    parameters["fc.bias"] = (fc.bias, IDENTITY_AXES)
    return parameters


def torch_shape(variable: keras.Variable, axes: tuple[int, ...]) -> tuple[int, ...]:
    """The torch-layout shape of a Keras variable stored as torch.transpose(axes)."""
    shape = [0] * len(axes)
    for keras_axis, torch_axis in enumerate(axes):
        shape[torch_axis] = int(variable.shape[keras_axis])
    return tuple(shape)


def is_unused_buffer(key: str) -> bool:
    """True for a state_dict entry inference never reads (a BatchNorm's num_batches_tracked)."""
    return key.rsplit(".", 1)[-1] in UNUSED_TORCH_BUFFERS


def state_dict_mismatch(network: keras.Model, state_dict: Mapping[str, np.ndarray]) -> str | None:
    """Why `state_dict` does not fit the network (one clause naming the key), or None."""
    parameters = torch_parameters(network)
    missing = [key for key in parameters if key not in state_dict]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        return f"key {missing[0]!r}{more} is missing"
    unexpected = [key for key in state_dict if key not in parameters and not is_unused_buffer(key)]
    if unexpected:
        more = f" and {len(unexpected) - 1} more" if len(unexpected) > 1 else ""
        return f"key {unexpected[0]!r}{more} is not a parameter of the network"
    for key, (variable, axes) in parameters.items():
        expected, found = torch_shape(variable, axes), tuple(np.shape(state_dict[key]))
        if found != expected:
            return f"key {key!r} has shape {found}, the network's is {expected}"
    return None


def load_torch_state_dict(network: keras.Model, state_dict: Mapping[str, np.ndarray]) -> None:
    """Set the network's weights from pytorch-fid's state_dict (arrays under its key names).

    Raises FIDError, one sentence naming the key, on a missing or unexpected key or a wrong
    shape; the weights are then left untouched.
    """
    problem = state_dict_mismatch(network, state_dict)
    if problem is not None:
        raise FIDError(f"the weights do not fit the FID Inception network: {problem}.")
    for key, (variable, axes) in torch_parameters(network).items():
        variable.assign(np.transpose(np.asarray(state_dict[key], dtype=np.float32), axes))


def block_outputs_model(network: keras.Model) -> keras.Model:
    """The same network returning {name: output} for every block in `BLOCKS` and for "fc"."""
    names = (*BLOCKS, "fc")
    return keras.Model(
        network.input, {name: network.get_layer(name).output for name in names}, name="blocks"
    )


def fid_input(images: np.ndarray) -> np.ndarray:
    """Images as pytorch-fid feeds them: uint8 -> x / 255 (ToTensor), float32; floats in [0, 1].

    Shape (n, H, W, 3) RGB. Raises FIDError, one sentence, on another shape, dtype or range.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != RGB_CHANNELS:
        raise FIDError(f"images must have shape (n, H, W, 3), got {images.shape}.")
    if images.dtype == np.uint8:
        return images.astype(np.float32) / np.float32(PIXEL_MAX_8BIT)
    if not np.issubdtype(images.dtype, np.floating):
        raise FIDError(f"images must be uint8 or floating point in [0, 1], got {images.dtype}.")
    if not (np.all(np.isfinite(images)) and images.min() >= 0.0 and images.max() <= 1.0):
        raise FIDError("floating-point images must lie in [0, 1] (and be finite).")
    return images.astype(np.float32)


__all__ = [
    "ARCHITECTURE",
    "BLOCKS",
    "FID_SIZE",
    "INPUT_TRANSFORM",
    "LOGITS",
    "POOL3_FEATURES",
    "BasicConv2d",
    "FIDError",
    "FIDInputTransform",
    "InceptionBlock",
    "bilinear_resize",
    "block_outputs_model",
    "build_fid_inception",
    "error_cause",
    "fid_input",
    "is_unused_buffer",
    "load_torch_state_dict",
    "state_dict_mismatch",
    "torch_bilinear_taps",
    "torch_parameters",
    "torch_shape",
]
