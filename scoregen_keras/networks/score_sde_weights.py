"""Weights of score_sde's NCSN++ / DDPM++ onto scoregen's NCSNpp / DDPMpp, one module to one layer.

score_sde_pytorch (Song et al. 2021) keeps its network as one ``nn.ModuleList``, ``all_modules``,
filled in the order its constructor builds the U-Net; scoregen keeps the same layers in lists by
role (``down_blocks``, ``pyramid_up``, ...). `score_sde_modules` walks scoregen's lists in the
original's construction order, so ``all_modules.{i}`` is the i-th layer it returns, and
`score_sde_targets` names every Keras variable by its torch key. The two input-pyramid
resamplers score_sde shares across levels (``pyramid_downsample``, ``pyramid_upsample``) hold no
weights and are not in ``all_modules``; scoregen's per-level copies are skipped.

A state_dict here is a mapping from torch key to NumPy array in torch layout (what
``{k: v.numpy() for k, v in module.state_dict().items()}`` gives). `assign_state_dict` uses every
key exactly once and refuses, in one sentence naming the key, a missing key, an unexpected key,
a shape that differs (both shapes, in torch layout) or non-finite values; nothing is assigned
unless every check passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from scoregen_keras.networks import layerspp
from scoregen_keras.networks.ncsnpp import NCSNpp


class ImportRefusedError(ValueError):
    """A published checkpoint or configuration scoregen does not import (one-sentence message)."""


@dataclass(frozen=True)
class Layout:
    """How a torch tensor becomes a Keras variable: drop trailing unit axes, then permute."""

    axes: tuple[int, ...]  # Keras axis k is torch axis axes[k]
    squeeze: int = 0  # trailing size-1 axes dropped first (a 1x1 convolution held as a Dense)

    def to_keras(self, array: np.ndarray) -> np.ndarray:
        """The torch array in the Keras variable's layout."""
        if self.squeeze:
            array = array.reshape(array.shape[: array.ndim - self.squeeze])
        return np.transpose(array, self.axes)

    def to_source(self, array: np.ndarray) -> np.ndarray:
        """A Keras variable's array in the torch layout (the inverse of `to_keras`)."""
        array = np.transpose(array, np.argsort(self.axes))
        return array.reshape(*array.shape, *(1,) * self.squeeze)

    def source_shape(self, keras_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The torch shape that becomes a variable of `keras_shape`."""
        shape = [0] * len(self.axes)
        for keras_axis, torch_axis in enumerate(self.axes):
            shape[torch_axis] = int(keras_shape[keras_axis])
        return (*shape, *(1,) * self.squeeze)


VECTOR = Layout((0,))
CONV = Layout((2, 3, 1, 0))  # Conv2d (O, I, kH, kW) -> Conv2D kernel (kH, kW, I, O)
CONV_TRANSPOSE = Layout((2, 3, 0, 1))  # Conv2d (O, I, kH, kW) -> FIRConv2D(up) (kH, kW, O, I)
CONV1X1 = Layout((1, 0), squeeze=2)  # Conv2d (O, I, 1, 1) -> Dense kernel (I, O)
LINEAR = Layout((1, 0))  # Linear (out, in) -> Dense kernel (in, out)
NIN = Layout((0, 1))  # score_sde's NIN W (in, out) -> Dense kernel (in, out)

# a leaf kind: (Keras attribute, torch suffix, layout) for each variable of one Keras layer
Kind = tuple[tuple[str, str, Layout], ...]
NORM_KIND: Kind = (("gamma", "weight", VECTOR), ("beta", "bias", VECTOR))
CONV_KIND: Kind = (("kernel", "weight", CONV), ("bias", "bias", VECTOR))
CONV_TRANSPOSE_KIND: Kind = (("kernel", "weight", CONV_TRANSPOSE), ("bias", "bias", VECTOR))
CONV1X1_KIND: Kind = (("kernel", "weight", CONV1X1), ("bias", "bias", VECTOR))
LINEAR_KIND: Kind = (("kernel", "weight", LINEAR), ("bias", "bias", VECTOR))
NIN_KIND: Kind = (("kernel", "W", NIN), ("bias", "b", VECTOR))
FOURIER_KIND: Kind = (("W", "W", VECTOR),)

# a leaf: (torch key prefix, Keras layer, kind)
Leaf = tuple[str, keras.layers.Layer, Kind]


@dataclass(frozen=True)
class Target:
    """The Keras variable a torch key goes to, and how its array is laid out."""

    variable: Any
    layout: Layout

    @property
    def source_shape(self) -> tuple[int, ...]:
        """The torch shape this variable takes."""
        return self.layout.source_shape(tuple(self.variable.shape))


def targets_of(leaves: Iterator[Leaf]) -> dict[str, Target]:
    """{torch key: Target} of the leaves, each key once."""
    targets: dict[str, Target] = {}
    for prefix, layer, kind in leaves:
        for attribute, suffix, layout in kind:
            key = f"{prefix}.{suffix}"
            if key in targets:
                raise AssertionError(f"two variables map to {key!r}")
            targets[key] = Target(getattr(layer, attribute), layout)
    return targets


# ----------------------------------------------------------------------------- score_sde's modules


def _resnet_children(block: keras.layers.Layer) -> list[tuple[str, Any, Kind]]:
    """GroupNorm_0, Conv_0, Dense_0, GroupNorm_1 and Conv_1 of either residual block type."""
    return [
        ("GroupNorm_0", block.GroupNorm_0, NORM_KIND),
        ("Conv_0", block.Conv_0, CONV_KIND),
        ("Dense_0", block.Dense_0, LINEAR_KIND),
        ("GroupNorm_1", block.GroupNorm_1, NORM_KIND),
        ("Conv_1", block.Conv_1, CONV_KIND),
    ]


def _biggan_children(block: layerspp.ResnetBlockBigGANpp) -> list[tuple[str, Any, Kind]]:
    """The residual block's layers and its 1x1 shortcut (score_sde's ddpm_conv1x1)."""
    return [*_resnet_children(block), ("Conv_2", block.Conv_2, CONV1X1_KIND)]


def _ddpm_children(block: layerspp.ResnetBlockDDPMpp) -> list[tuple[str, Any, Kind]]:
    """The residual block's layers and its shortcut: a 3x3 conv (Conv_2) or a NIN (NIN_0)."""
    shortcut = ("Conv_2", CONV_KIND) if block.conv_shortcut else ("NIN_0", NIN_KIND)
    return [*_resnet_children(block), (shortcut[0], block.shortcut, shortcut[1])]


def _attention_children(block: layerspp.AttnBlockpp) -> list[tuple[str, Any, Kind]]:
    """GroupNorm_0 and the four NIN layers of the attention block."""
    nins = [(f"NIN_{i}", getattr(block, f"NIN_{i}"), NIN_KIND) for i in range(4)]
    return [("GroupNorm_0", block.GroupNorm_0, NORM_KIND), *nins]


def _downsample_children(layer: layerspp.Downsample) -> list[tuple[str, Any, Kind]]:
    """The fused FIR (Conv2d_0) or plain strided (Conv_0) convolution, when there is one."""
    return [("Conv2d_0" if layer.fir else "Conv_0", layer.conv, CONV_KIND)]


def _upsample_children(layer: layerspp.Upsample) -> list[tuple[str, Any, Kind]]:
    """The fused FIR transposed (Conv2d_0) or plain (Conv_0) convolution, when there is one."""
    if layer.fir:
        return [("Conv2d_0", layer.conv, CONV_TRANSPOSE_KIND)]
    return [("Conv_0", layer.conv, CONV_KIND)]


# score_sde's module class -> its parameters as (child name, Keras layer, kind); "" = the module
SCORE_SDE_CHILDREN = {
    layerspp.GaussianFourierProjection: lambda layer: [("", layer, FOURIER_KIND)],
    layerspp.Dense: lambda layer: [("", layer, LINEAR_KIND)],  # the embedding's nn.Linear
    layerspp.Conv2D: lambda layer: [("", layer, CONV_KIND)],
    layerspp.GroupNorm: lambda layer: [("", layer, NORM_KIND)],
    layerspp.ResnetBlockBigGANpp: _biggan_children,
    layerspp.ResnetBlockDDPMpp: _ddpm_children,
    layerspp.AttnBlockpp: _attention_children,
    layerspp.Combine: lambda layer: [("Conv_0", layer.Conv_0, CONV1X1_KIND)],
    layerspp.Downsample: _downsample_children,
    layerspp.Upsample: _upsample_children,
}


def score_sde_modules(net: NCSNpp) -> list[keras.layers.Layer]:
    """scoregen's layers in the order of score_sde's ``all_modules`` (NCSNpp.__init__)."""
    modules: list[keras.layers.Layer] = []
    if net.embedding_type == "fourier":
        modules.append(net.fourier_proj)
    modules.extend(net.temb_dense)
    modules.append(net.conv_in)
    down_blocks, down_samplers = iter(net.down_blocks), iter(net.down_samplers)
    pyramid_down, pyramid_combine = iter(net.pyramid_down), iter(net.pyramid_combine)
    for i_level in range(net.num_resolutions):
        attention = net.all_resolutions[i_level] in net.attn_resolutions
        for _ in range(net.num_res_blocks):
            modules.append(next(down_blocks))
            if attention:
                modules.append(next(down_blocks))
        if i_level == net.num_resolutions - 1:
            continue
        modules.append(next(down_samplers))
        if net.progressive_input == "input_skip":
            next(pyramid_down)  # score_sde's shared pyramid_downsample: not in all_modules
            modules.append(next(pyramid_combine))
        elif net.progressive_input == "residual":
            modules.append(next(pyramid_down))
    modules.extend(net.mid_blocks)
    up_blocks, up_attn = iter(net.up_blocks), iter(net.up_attn)
    up_samplers, pyramid_up = iter(net.up_samplers), iter(net.pyramid_up)
    for i_level in reversed(range(net.num_resolutions)):
        top_level = i_level == net.num_resolutions - 1
        modules.extend(next(up_blocks) for _ in range(net.num_res_blocks + 1))
        if net.all_resolutions[i_level] in net.attn_resolutions:
            modules.append(next(up_attn))
        if net.progressive == "output_skip":
            if not top_level:
                next(pyramid_up)  # score_sde's shared pyramid_upsample: not in all_modules
            modules.extend([next(pyramid_up), next(pyramid_up)])  # GroupNorm, conv3x3
        elif net.progressive == "residual":
            count = 2 if top_level else 1  # GroupNorm + conv3x3, or the FIR up-sampling conv
            modules.extend(next(pyramid_up) for _ in range(count))
        if i_level != 0:
            modules.append(next(up_samplers))
    if net.progressive != "output_skip":
        modules.extend([net.norm_out, net.conv_out])
    return modules


def score_sde_leaves(net: NCSNpp, prefix: str = "") -> Iterator[Leaf]:
    """Every weight-holding Keras layer of `net` with its score_sde key prefix."""
    for index, module in enumerate(score_sde_modules(net)):
        for child, layer, kind in SCORE_SDE_CHILDREN[type(module)](module):
            if layer is None:
                continue
            name = f"{prefix}all_modules.{index}" + (f".{child}" if child else "")
            yield name, layer, kind


def score_sde_targets(net: NCSNpp, prefix: str = "") -> dict[str, Target]:
    """{score_sde state_dict key: Target} for a built NCSNpp / DDPMpp."""
    return targets_of(score_sde_leaves(net, prefix))


# ----------------------------------------------------------------------------- assignment


def _more(keys: list[str]) -> str:
    """' (and N more)' when several keys share one complaint."""
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


def check_shapes(
    targets: Mapping[str, Target], state_dict: Mapping[str, Any], what: str = "checkpoint"
) -> None:
    """Raise ImportRefusedError unless the state_dict holds exactly the targets' keys and shapes
    (its values are not read: a memory-mapped checkpoint stays on disk)."""
    missing = [key for key in targets if key not in state_dict]
    if missing:
        raise ImportRefusedError(
            f"the {what} has no weight {missing[0]!r}{_more(missing)}, which the configuration "
            "needs."
        )
    unexpected = [key for key in state_dict if key not in targets]
    if unexpected:
        raise ImportRefusedError(
            f"the {what} holds {unexpected[0]!r}{_more(unexpected)}, which the configuration has "
            "no place for."
        )
    for key, target in targets.items():
        shape = tuple(np.shape(state_dict[key]))
        if shape != target.source_shape:
            raise ImportRefusedError(
                f"{key!r} has shape {shape} in the {what}, but the configuration needs "
                f"{target.source_shape}."
            )


def check_state_dict(
    targets: Mapping[str, Target], state_dict: Mapping[str, Any], what: str = "checkpoint"
) -> None:
    """Raise ImportRefusedError unless the state_dict holds exactly the targets' keys and shapes
    and only finite values."""
    check_shapes(targets, state_dict, what)
    for key in targets:
        if not np.all(np.isfinite(np.asarray(state_dict[key]))):
            raise ImportRefusedError(f"{key!r} in the {what} holds NaN or infinite values.")


def assign_state_dict(
    targets: Mapping[str, Target], state_dict: Mapping[str, Any], what: str = "checkpoint"
) -> None:
    """Check the state_dict (`check_state_dict`), then assign every array to its variable."""
    check_state_dict(targets, state_dict, what)
    for key, target in targets.items():
        value = target.layout.to_keras(np.asarray(state_dict[key]))
        dtype = keras.backend.standardize_dtype(target.variable.dtype)
        target.variable.assign(value.astype(dtype, copy=False))  # one copy: the variable's


__all__ = [
    "CONV",
    "CONV1X1",
    "CONV_TRANSPOSE",
    "LINEAR",
    "NIN",
    "VECTOR",
    "ImportRefusedError",
    "Layout",
    "Target",
    "assign_state_dict",
    "check_shapes",
    "check_state_dict",
    "score_sde_leaves",
    "score_sde_modules",
    "score_sde_targets",
    "targets_of",
]
