"""NCSN (Song & Ermon 2019) and NCSNv2 (Song & Ermon 2020) RefineNet score networks in Keras 3.

Architecture follows ermongroup/ncsn ``CondRefineNetDilated`` and ermongroup/ncsnv2 ``NCSNv2``
(``NCSNv2Deeper`` / ``NCSNv2Deepest`` through ``channel_multipliers`` / ``dilations``):

    begin conv -> stages of 2 residual blocks (ELU, dilated convs in the deep stages)
               -> RefineNet cascade (RCU, multi-resolution fusion, chained residual pooling),
                  deepest stage first -> norm -> ELU -> end conv.

Both networks follow the scoregen call convention ``net(x, cond, training=False)`` on
channels-last images and return the RAW output (the input's shape):

- ``NCSN`` (``conditioning = "sigma_index"``): ``cond`` (batch,) holds the index i of σ_i among the
  L = ``num_classes`` noise levels (float or int; cast to int32). Every normalisation is
  CondInstanceNorm++ with per-level (γ, α, β); CRP uses 5x5 average pooling.
- ``NCSNv2`` (``conditioning = "none"``): unconditional, ``cond`` is ignored; InstanceNorm++ in the
  residual blocks, no normalisation in the refine blocks, 5x5 max pooling in CRP. The reference's
  ``output / σ`` is NOT applied here: the ScoreModel divides by σ (std).

Differences from the reference code, by design: the reference maps data x ∈ [0, 1] to 2x − 1 inside
the network; here centring/scaling is the data scaler's and the ScoreModel's job (c_in · x), so the
network takes its input as given. Tensors are channels-last.

Parameter counts (built here, and equal to those of a transcription of the reference PyTorch
models, whose outputs these networks reproduce to float32 rounding with copied weights):

- ``ncsn/cifar10``   (NCSN, ngf=128, L=10, 32x32x3): 30,117,635
- ``ncsnv2/cifar10`` (NCSNv2, ngf=128, 32x32x3):     29,694,083
- ``ncsn/mnist`` (ngf=64, 28x28x1): 7,638,657;  ``ncsnv2/mnist`` (ngf=64): 7,426,881
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from scoregen_keras.networks.refinenet_layers import (
    PACKAGE,
    RefineBlock,
    ResidualBlock,
    conv3x3,
    make_normalization,
)

BLOCKS_PER_STAGE = 2  # residual blocks per resolution stage (res1 … res4 of the reference)
DOWNSAMPLE_FACTOR = 2

# (channel multipliers of ngf, dilations) per residual stage; stage 1 never resamples, every later
# stage is a "down" stage (which keeps the resolution when dilated, as in the reference code).
NCSN_CHANNEL_MULTIPLIERS = (1, 2, 2, 2)  # CondRefineNetDilated and NCSNv2 (32x32, 64x64)
NCSN_DILATIONS = (1, 1, 2, 4)
NCSNV2_DEEPER_CHANNEL_MULTIPLIERS = (1, 2, 2, 4, 4)  # NCSNv2Deeper (LSUN 96x128)
NCSNV2_DEEPER_DILATIONS = (1, 1, 1, 2, 4)
NCSNV2_DEEPEST_CHANNEL_MULTIPLIERS = (1, 2, 2, 2, 4, 4)  # NCSNv2Deepest (256x256)
NCSNV2_DEEPEST_DILATIONS = (1, 1, 1, 1, 2, 4)


class RefineNetScoreNetwork(keras.Model):
    """Shared RefineNet backbone of NCSN and NCSNv2 (use the subclasses)."""

    conditioning = "none"
    block_normalization = "instance_norm++"
    refine_normalization = "none"
    crp_pool = "max"

    def __init__(
        self,
        image_size: int,
        channels: int,
        ngf: int = 128,
        channel_multipliers: tuple[int, ...] = NCSN_CHANNEL_MULTIPLIERS,
        dilations: tuple[int, ...] = NCSN_DILATIONS,
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if len(channel_multipliers) != len(dilations) or len(dilations) < 2:
            raise ValueError("channel_multipliers and dilations need the same length (>= 2)")
        self.image_size = image_size
        self.channels = channels
        self.ngf = ngf
        self.channel_multipliers = tuple(channel_multipliers)
        self.dilations = tuple(dilations)
        self.num_classes = num_classes

        block_norm = {"normalization": self.block_normalization, "num_classes": num_classes}
        refine_norm = {"normalization": self.refine_normalization, "num_classes": num_classes}
        self.begin_conv = conv3x3(ngf, name="begin_conv")
        self.res_blocks = []
        features = [ngf * m for m in self.channel_multipliers]
        input_dim, resolution = ngf, image_size
        for stage, (output_dim, dilation) in enumerate(zip(features, self.dilations, strict=True)):
            resample = None if stage == 0 else "down"
            adjust_padding = resolution % DOWNSAMPLE_FACTOR == 1
            self.res_blocks.append(
                ResidualBlock(
                    input_dim,
                    output_dim,
                    resample=resample,
                    dilation=dilation,
                    adjust_padding=adjust_padding,
                    name=f"res{stage + 1}_1",
                    **block_norm,
                )
            )
            for j in range(1, BLOCKS_PER_STAGE):
                self.res_blocks.append(
                    ResidualBlock(
                        output_dim,
                        output_dim,
                        dilation=dilation,
                        name=f"res{stage + 1}_{j + 1}",
                        **block_norm,
                    )
                )
            if resample == "down" and dilation == 1:
                resolution = (resolution + 1) // DOWNSAMPLE_FACTOR
            input_dim = output_dim

        # refine1 takes the deepest stage alone; refine k takes [stage, previous refine output] and
        # outputs the features of the next shallower stage (the last one: ngf, with 3 output RCUs).
        n_stages = len(features)
        self.refine_blocks = []
        for k in range(n_stages):
            stage = n_stages - 1 - k
            out_features = features[max(stage - 1, 0)]
            in_planes = [features[stage]] if k == 0 else [features[stage], features[stage]]
            self.refine_blocks.append(
                RefineBlock(
                    in_planes,
                    out_features,
                    start=k == 0,
                    end=stage == 0,
                    pool=self.crp_pool,
                    name=f"refine{k + 1}",
                    **refine_norm,
                )
            )
        self.normalizer = make_normalization(self.block_normalization, num_classes, "normalizer")
        self.end_conv = conv3x3(channels, name="end_conv")

    def build(self, input_shape: tuple[int | None, ...]) -> None:
        """Create every weight by a symbolic call (cond is not recorded in the build config)."""
        batch = input_shape[0]
        self.call(keras.KerasTensor(tuple(input_shape)), keras.KerasTensor((batch,)))
        self.built = True

    def _sigma_index(self, cond: Any) -> Any:
        """The int32 σ index passed to the blocks (None for an unconditional network)."""
        if self.conditioning == "none":
            return None
        if cond is None:
            raise ValueError(f"{type(self).__name__} needs cond (the sigma index, shape (batch,))")
        return ops.cast(cond, "int32")

    def call(self, x: Any, cond: Any = None, training: bool = False) -> Any:
        """Raw network output of x (batch, H, W, C); the input's shape."""
        sigma_index = self._sigma_index(cond)
        h = self.begin_conv(x)
        stage_outputs = []
        for i, block in enumerate(self.res_blocks):
            h = block(h, sigma_index)
            if (i + 1) % BLOCKS_PER_STAGE == 0:
                stage_outputs.append(h)
        ref = None
        for refine, layer in zip(self.refine_blocks, reversed(stage_outputs), strict=True):
            ref = refine([layer] if ref is None else [layer, ref], sigma_index)
        h = ref if self.normalizer is None else self.normalizer(ref, sigma_index)
        return self.end_conv(ops.elu(h))

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {
            **keras.layers.Layer.get_config(self),
            "image_size": self.image_size,
            "channels": self.channels,
            "ngf": self.ngf,
            "channel_multipliers": list(self.channel_multipliers),
            "dilations": list(self.dilations),
        }


@keras.saving.register_keras_serializable(package=PACKAGE)
class NCSN(RefineNetScoreNetwork):
    """NCSN v1 (CondRefineNetDilated): σ-index conditioned RefineNet with CondInstanceNorm++."""

    conditioning = "sigma_index"
    block_normalization = "cond_instance_norm++"
    refine_normalization = "cond_instance_norm++"
    crp_pool = "avg"

    def __init__(
        self,
        image_size: int,
        channels: int,
        ngf: int = 128,
        num_classes: int = 10,
        channel_multipliers: tuple[int, ...] = NCSN_CHANNEL_MULTIPLIERS,
        dilations: tuple[int, ...] = NCSN_DILATIONS,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_size,
            channels,
            ngf=ngf,
            channel_multipliers=channel_multipliers,
            dilations=dilations,
            num_classes=num_classes,
            **kwargs,
        )

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments."""
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package=PACKAGE)
class NCSNv2(RefineNetScoreNetwork):
    """NCSNv2: unconditional RefineNet with InstanceNorm++ (the ScoreModel divides by σ)."""

    conditioning = "none"
    block_normalization = "instance_norm++"
    refine_normalization = "none"
    crp_pool = "max"

    def __init__(
        self,
        image_size: int,
        channels: int,
        ngf: int = 128,
        channel_multipliers: tuple[int, ...] = NCSN_CHANNEL_MULTIPLIERS,
        dilations: tuple[int, ...] = NCSN_DILATIONS,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            image_size,
            channels,
            ngf=ngf,
            channel_multipliers=channel_multipliers,
            dilations=dilations,
            **kwargs,
        )
