"""NCSN++ and DDPM++ (Song et al. 2021, "Score-Based Generative Modeling through SDEs").

One U-Net backbone with the paper's options (BigGAN or DDPM residual blocks, FIR resampling,
progressive input/output pyramids, skip rescaling, Fourier or positional embeddings).
``NCSNpp`` (VE) is conditioned on sigma through Gaussian Fourier features of log sigma;
``DDPMpp`` (VP / sub-VP) on t through a sinusoidal embedding of ``t * time_scale``.

Call convention (shared by every scoregen network): ``net(x, cond, training=False)`` with
``x`` of shape (batch, H, W, C) and ``cond`` of shape (batch,); returns the raw output of x's
shape (no division by sigma: the ScoreModel's preconditioning does that). Images whose size
is not divisible by 2**(levels-1) are zero-padded (centred) inside the network and cropped back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
from keras import ops

from scoregen_keras.networks import layerspp
from scoregen_keras.networks.layerspp import (
    DEFAULT_DROPOUT,
    FIR_KERNEL,
    PACKAGE,
    RESAMPLE_FACTOR,
    SKIP_RESCALE,
    AttnBlockpp,
    Combine,
    Downsample,
    GaussianFourierProjection,
    ResnetBlockBigGANpp,
    ResnetBlockDDPMpp,
    Upsample,
    conv3x3,
    dense,
    get_timestep_embedding,
    group_norm,
)

DDPM_TIME_SCALE = 999.0  # t in [0, 1] -> DDPM's integer timestep range 0 .. N-1 (N = 1000)
FOURIER_SCALE = 16.0  # std of the Gaussian Fourier frequencies of NCSN++
TEMB_MULT = 4  # width of the time/noise embedding MLP: 4 * nf

PROGRESSIVE = ("none", "output_skip", "residual")
PROGRESSIVE_INPUT = ("none", "input_skip", "residual")
RESBLOCK_TYPES = ("ddpm", "biggan")
PROGRESSIVE_COMBINE = ("sum", "cat")
EMBEDDING_TYPES = ("fourier", "positional")
# GroupNorm group counts: score_sde's min(C // 4, 32) everywhere, or as diffusers' UNet2DModel
# computes them for its skip blocks (the published google/ncsnpp-* models): see _attn_groups and
# _up_block_groups
GROUPNORM_RULES = ("score_sde", "diffusers")
DIFFUSERS_ATTENTION_GROUPS = 32  # norm_num_groups=32 in the attention of Attn*Skip*Block2D


@keras.saving.register_keras_serializable(package=PACKAGE)
class NCSNpp(keras.Model):
    """NCSN++ U-Net (VE): conditioned on sigma through Gaussian Fourier features of log sigma."""

    conditioning = "sigma"

    def __init__(
        self,
        image_size: int = 32,
        channels: int = 3,
        nf: int = 128,
        ch_mult: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 4,
        attn_resolutions: Sequence[int] = (16,),
        dropout: float = DEFAULT_DROPOUT,
        resamp_with_conv: bool = True,
        conditional: bool = True,
        fir: bool = True,
        fir_kernel: Sequence[int] = FIR_KERNEL,
        skip_rescale: bool = True,
        resblock_type: str = "biggan",
        progressive: str = "none",
        progressive_input: str = "residual",
        progressive_combine: str = "sum",
        init_scale: float = 0.0,
        embedding_type: str = "fourier",
        fourier_scale: float = FOURIER_SCALE,
        time_scale: float = DDPM_TIME_SCALE,
        center_input: bool = False,
        groupnorm_rule: str = "score_sde",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        progressive, progressive_input = progressive.lower(), progressive_input.lower()
        resblock_type, embedding_type = resblock_type.lower(), embedding_type.lower()
        progressive_combine = progressive_combine.lower()
        for value, allowed, what in (
            (progressive, PROGRESSIVE, "progressive"),
            (progressive_input, PROGRESSIVE_INPUT, "progressive_input"),
            (resblock_type, RESBLOCK_TYPES, "resblock_type"),
            (embedding_type, EMBEDDING_TYPES, "embedding_type"),
            (progressive_combine, PROGRESSIVE_COMBINE, "progressive_combine"),
            (groupnorm_rule, GROUPNORM_RULES, "groupnorm_rule"),
        ):
            if value not in allowed:
                raise ValueError(f"{what}={value!r} not in {allowed}.")
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.nf = int(nf)
        self.ch_mult = tuple(int(m) for m in ch_mult)
        self.num_res_blocks = int(num_res_blocks)
        self.attn_resolutions = tuple(int(r) for r in attn_resolutions)
        self.dropout = float(dropout)
        self.resamp_with_conv = bool(resamp_with_conv)
        self.conditional = bool(conditional)
        self.fir = bool(fir)
        self.fir_kernel = tuple(fir_kernel)
        self.skip_rescale = bool(skip_rescale)
        self.resblock_type = resblock_type
        self.progressive = progressive
        self.progressive_input = progressive_input
        self.progressive_combine = progressive_combine
        self.init_scale = float(init_scale)
        self.embedding_type = embedding_type
        self.fourier_scale = float(fourier_scale)
        self.time_scale = float(time_scale)
        # data in [0, 1]: the network maps x -> 2x - 1 itself (score_sde with data.centered=False,
        # diffusers' center_input_sample)
        self.center_input = bool(center_input)
        self.groupnorm_rule = groupnorm_rule

        self.num_resolutions = len(self.ch_mult)
        multiple = RESAMPLE_FACTOR ** (self.num_resolutions - 1)
        self.padded_size = -(-self.image_size // multiple) * multiple
        self.all_resolutions = tuple(
            self.padded_size // RESAMPLE_FACTOR**i for i in range(self.num_resolutions)
        )
        self._build_layers()

    # ------------------------------------------------------------------ construction

    def _resblock(
        self, in_ch: int, out_ch: int | None = None, in_groups: int | None = None, **kw
    ) -> keras.layers.Layer:
        """A residual block of the configured type."""
        common = dict(
            in_ch=in_ch,
            out_ch=out_ch,
            use_temb=self.conditional,
            dropout=self.dropout,
            skip_rescale=self.skip_rescale,
            init_scale=self.init_scale,
            in_groups=in_groups,
        )
        if self.resblock_type == "ddpm":
            return ResnetBlockDDPMpp(**common)
        return ResnetBlockBigGANpp(fir=self.fir, fir_kernel=self.fir_kernel, **common, **kw)

    def _attn(self, channels: int, middle: bool = False) -> AttnBlockpp:
        """A self-attention block (`middle`: the bottleneck's)."""
        return AttnBlockpp(
            channels,
            skip_rescale=self.skip_rescale,
            init_scale=self.init_scale,
            groups=self._attn_groups(middle),
        )

    def _attn_groups(self, middle: bool) -> int | None:
        """GroupNorm groups of an attention block; None = min(C // 4, 32)."""
        if self.groupnorm_rule == "diffusers" and not middle:
            return DIFFUSERS_ATTENTION_GROUPS
        return None

    def _up_block_groups(self, in_ch: int, skip_ch: int, attention: bool) -> int | None:
        """GroupNorm_0 groups of an up-path block on concat(h, skip); None = min(C // 4, 32).

        diffusers' AttnSkipUpBlock2D writes min(in + skip // 4, 32): the precedence as written.
        """
        if self.groupnorm_rule == "diffusers" and attention:
            quarter_skip = skip_ch // layerspp.GROUPNORM_CHANNELS_PER_GROUP
            return min(in_ch + quarter_skip, DIFFUSERS_ATTENTION_GROUPS)
        return None

    def _build_layers(self) -> None:
        """Create every sub-layer, grouped by role; `call` consumes each list in order."""
        nf, channels = self.nf, self.channels
        temb_dim = TEMB_MULT * nf

        # time / noise-level embedding
        self.fourier_proj = None
        if self.embedding_type == "fourier":
            # float32 under mixed precision too: W log(sigma) 2 pi reaches ~100 rad (scale 16)
            self.fourier_proj = GaussianFourierProjection(
                embedding_size=nf, scale=self.fourier_scale, name="fourier_proj", dtype="float32"
            )
        self.temb_dense = [dense(temb_dim), dense(temb_dim)] if self.conditional else []

        self.conv_in = conv3x3(nf, name="conv_in")
        self.down_blocks: list[keras.layers.Layer] = []  # res blocks (+ attention) per level
        self.down_samplers: list[keras.layers.Layer] = []  # one per level but the last
        self.pyramid_down: list[keras.layers.Layer] = []  # input pyramid resampling
        self.pyramid_combine: list[keras.layers.Layer] = []  # input_skip combiners

        hs_c = [nf]
        in_ch = nf
        for i_level in range(self.num_resolutions):
            for _ in range(self.num_res_blocks):
                out_ch = nf * self.ch_mult[i_level]
                self.down_blocks.append(self._resblock(in_ch, out_ch))
                in_ch = out_ch
                if self.all_resolutions[i_level] in self.attn_resolutions:
                    self.down_blocks.append(self._attn(in_ch))
                hs_c.append(in_ch)
            if i_level == self.num_resolutions - 1:
                continue
            if self.resblock_type == "ddpm":
                self.down_samplers.append(
                    Downsample(
                        in_ch,
                        with_conv=self.resamp_with_conv,
                        fir=self.fir,
                        fir_kernel=self.fir_kernel,
                    )
                )
            else:
                self.down_samplers.append(self._resblock(in_ch, down=True))
            if self.progressive_input == "input_skip":
                self.pyramid_down.append(
                    Downsample(with_conv=False, fir=self.fir, fir_kernel=self.fir_kernel)
                )
                self.pyramid_combine.append(Combine(in_ch, method=self.progressive_combine))
                if self.progressive_combine == "cat":
                    in_ch *= 2
            elif self.progressive_input == "residual":
                self.pyramid_down.append(
                    Downsample(in_ch, with_conv=True, fir=self.fir, fir_kernel=self.fir_kernel)
                )
            hs_c.append(in_ch)

        in_ch = hs_c[-1]
        self.mid_blocks = [
            self._resblock(in_ch),
            self._attn(in_ch, middle=True),
            self._resblock(in_ch),
        ]

        self.up_blocks: list[keras.layers.Layer] = []  # res blocks per level
        self.up_attn: list[keras.layers.Layer] = []  # attention per level (where configured)
        self.up_samplers: list[keras.layers.Layer] = []  # one per level but the first
        self.pyramid_up: list[keras.layers.Layer] = []  # output pyramid layers
        for i_level in reversed(range(self.num_resolutions)):
            attention = self.all_resolutions[i_level] in self.attn_resolutions
            for _ in range(self.num_res_blocks + 1):
                out_ch = nf * self.ch_mult[i_level]
                skip_ch = hs_c.pop()
                groups = self._up_block_groups(in_ch, skip_ch, attention)
                self.up_blocks.append(self._resblock(in_ch + skip_ch, out_ch, in_groups=groups))
                in_ch = out_ch
            if attention:
                self.up_attn.append(self._attn(in_ch))
            if self.progressive == "output_skip":
                if i_level != self.num_resolutions - 1:
                    self.pyramid_up.append(Upsample(fir=self.fir, fir_kernel=self.fir_kernel))
                self.pyramid_up.append(group_norm(in_ch))
                self.pyramid_up.append(conv3x3(channels, init_scale=self.init_scale))
            elif self.progressive == "residual":
                if i_level == self.num_resolutions - 1:
                    self.pyramid_up.append(group_norm(in_ch))
                    self.pyramid_up.append(conv3x3(in_ch))
                else:
                    self.pyramid_up.append(
                        Upsample(in_ch, with_conv=True, fir=self.fir, fir_kernel=self.fir_kernel)
                    )
            if i_level != 0:
                if self.resblock_type == "ddpm":
                    self.up_samplers.append(
                        Upsample(
                            in_ch,
                            with_conv=self.resamp_with_conv,
                            fir=self.fir,
                            fir_kernel=self.fir_kernel,
                        )
                    )
                else:
                    self.up_samplers.append(self._resblock(in_ch, up=True))
        assert not hs_c, "skip-connection bookkeeping is off"

        self.norm_out = None
        self.conv_out = None
        if self.progressive != "output_skip":
            self.norm_out = group_norm(in_ch, name="norm_out")
            self.conv_out = conv3x3(channels, init_scale=self.init_scale, name="conv_out")

    # ------------------------------------------------------------------ forward

    def _embed(self, cond: keras.KerasTensor) -> keras.KerasTensor:
        """Embedding of the conditioning: Fourier(log sigma) or positional(t * time_scale)."""
        cond = ops.cast(cond, "float32")
        if self.embedding_type == "fourier":
            return self.fourier_proj(ops.log(cond))
        return get_timestep_embedding(cond * self.time_scale, self.nf)

    def build(self, input_shape: tuple) -> None:
        """Create every weight by tracing `call` on symbolic inputs (x's shape; cond: (batch,))."""
        x = keras.KerasTensor(tuple(input_shape))
        cond = keras.KerasTensor((input_shape[0],))
        self.compute_output_spec(x, cond)  # runs `call` symbolically: sub-layers build
        if self.fourier_proj is not None and not self.fourier_proj.built:
            self.fourier_proj.build(cond.shape)  # unconditional: unused, but score_sde keeps W
        self.built = True

    def _pad(self, x: keras.KerasTensor) -> tuple[keras.KerasTensor, tuple[int, int, int, int]]:
        """Zero-pad H and W (centred) up to a multiple of 2**(levels-1); return the crop box."""
        height, width = x.shape[1], x.shape[2]
        multiple = RESAMPLE_FACTOR ** (self.num_resolutions - 1)
        pad_h = -(-height // multiple) * multiple - height
        pad_w = -(-width // multiple) * multiple - width
        top, left = pad_h // 2, pad_w // 2
        if pad_h or pad_w:
            x = ops.pad(x, [[0, 0], [top, pad_h - top], [left, pad_w - left], [0, 0]])
        return x, (top, top + height, left, left + width)

    def call(
        self, x: keras.KerasTensor, cond: keras.KerasTensor, training: bool = False
    ) -> keras.KerasTensor:
        """Raw network output of x's shape for images x (B, H, W, C) and conditioning cond (B,)."""
        temb = None
        if self.conditional:
            temb = self._embed(cond)
            temb = self.temb_dense[1](ops.silu(self.temb_dense[0](temb)))

        if self.center_input:
            x = 2.0 * x - 1.0
        x, (top, bottom, left, right) = self._pad(x)

        down_blocks, down_samplers = iter(self.down_blocks), iter(self.down_samplers)
        pyramid_down, pyramid_combine = iter(self.pyramid_down), iter(self.pyramid_combine)
        input_pyramid = x if self.progressive_input != "none" else None

        # downsampling path
        hs = [self.conv_in(x)]
        for i_level in range(self.num_resolutions):
            for _ in range(self.num_res_blocks):
                h = next(down_blocks)(hs[-1], temb, training=training)
                if self.all_resolutions[i_level] in self.attn_resolutions:
                    h = next(down_blocks)(h)
                hs.append(h)
            if i_level == self.num_resolutions - 1:
                continue
            sampler = next(down_samplers)
            h = (
                sampler(hs[-1])
                if self.resblock_type == "ddpm"
                else sampler(hs[-1], temb, training=training)
            )
            if self.progressive_input == "input_skip":
                input_pyramid = next(pyramid_down)(input_pyramid)
                h = next(pyramid_combine)(input_pyramid, h)
            elif self.progressive_input == "residual":
                input_pyramid = next(pyramid_down)(input_pyramid)
                input_pyramid = input_pyramid + h
                if self.skip_rescale:
                    input_pyramid = input_pyramid * SKIP_RESCALE
                h = input_pyramid
            hs.append(h)

        # bottleneck
        res_0, attn, res_1 = self.mid_blocks
        h = res_0(hs[-1], temb, training=training)
        h = attn(h)
        h = res_1(h, temb, training=training)

        # upsampling path
        up_blocks, up_attn = iter(self.up_blocks), iter(self.up_attn)
        up_samplers, pyramid_up = iter(self.up_samplers), iter(self.pyramid_up)
        pyramid = None
        for i_level in reversed(range(self.num_resolutions)):
            for _ in range(self.num_res_blocks + 1):
                h = next(up_blocks)(
                    ops.concatenate([h, hs.pop()], axis=-1), temb, training=training
                )
            if self.all_resolutions[i_level] in self.attn_resolutions:
                h = next(up_attn)(h)
            top_level = i_level == self.num_resolutions - 1
            if self.progressive == "output_skip":
                if not top_level:
                    pyramid = next(pyramid_up)(pyramid)
                norm, conv = next(pyramid_up), next(pyramid_up)
                pyramid_h = conv(ops.silu(norm(h)))
                pyramid = pyramid_h if top_level else pyramid + pyramid_h
            elif self.progressive == "residual":
                if top_level:
                    norm, conv = next(pyramid_up), next(pyramid_up)
                    pyramid = conv(ops.silu(norm(h)))
                else:
                    pyramid = next(pyramid_up)(pyramid) + h
                    if self.skip_rescale:
                        pyramid = pyramid * SKIP_RESCALE
                    h = pyramid
            if i_level != 0:
                sampler = next(up_samplers)
                h = (
                    sampler(h)
                    if self.resblock_type == "ddpm"
                    else sampler(h, temb, training=training)
                )
        assert not hs, "skip-connection bookkeeping is off"

        if self.progressive == "output_skip":
            h = pyramid
        else:
            h = self.conv_out(ops.silu(self.norm_out(h)))
        return h[:, top:bottom, left:right, :]

    def get_config(self) -> dict:
        """Constructor arguments (JSON-serialisable)."""
        return {
            **super().get_config(),
            "image_size": self.image_size,
            "channels": self.channels,
            "nf": self.nf,
            "ch_mult": list(self.ch_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_resolutions": list(self.attn_resolutions),
            "dropout": self.dropout,
            "resamp_with_conv": self.resamp_with_conv,
            "conditional": self.conditional,
            "fir": self.fir,
            "fir_kernel": list(self.fir_kernel),
            "skip_rescale": self.skip_rescale,
            "resblock_type": self.resblock_type,
            "progressive": self.progressive,
            "progressive_input": self.progressive_input,
            "progressive_combine": self.progressive_combine,
            "init_scale": self.init_scale,
            "embedding_type": self.embedding_type,
            "fourier_scale": self.fourier_scale,
            "time_scale": self.time_scale,
            "center_input": self.center_input,
            "groupnorm_rule": self.groupnorm_rule,
        }

    @classmethod
    def from_config(cls, config: dict) -> NCSNpp:
        """Rebuild from `get_config`."""
        return cls(**config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class DDPMpp(NCSNpp):
    """DDPM++ U-Net (VP / sub-VP): the NCSN++ backbone conditioned on t (positional embedding)."""

    conditioning = "t"

    def __init__(
        self,
        fir: bool = False,
        progressive_input: str = "none",
        embedding_type: str = "positional",
        time_scale: float = DDPM_TIME_SCALE,
        **kwargs,
    ) -> None:
        super().__init__(
            fir=fir,
            progressive_input=progressive_input,
            embedding_type=embedding_type,
            time_scale=time_scale,
            **kwargs,
        )


# ---------------------------------------------------------------------------- named configs

_CIFAR10 = dict(
    image_size=32,
    channels=3,
    nf=128,
    ch_mult=(1, 2, 2, 2),
    num_res_blocks=4,
    attn_resolutions=(16,),
    dropout=DEFAULT_DROPOUT,
    resamp_with_conv=True,
    skip_rescale=True,
    resblock_type="biggan",
    progressive="none",
    progressive_combine="sum",
    init_scale=0.0,
)
_NCSNPP = dict(
    fir=True, progressive_input="residual", embedding_type="fourier", fourier_scale=FOURIER_SCALE
)
_DDPMPP = dict(
    fir=False, progressive_input="none", embedding_type="positional", time_scale=DDPM_TIME_SCALE
)
CIFAR10_DEEP_RES_BLOCKS = 8

_DIGITS = dict(
    image_size=8,
    channels=1,
    nf=32,
    ch_mult=(1, 2, 2),
    num_res_blocks=2,
    attn_resolutions=(4,),
    dropout=0.0,
)
_MNIST = dict(
    image_size=28,
    channels=1,
    nf=64,
    ch_mult=(1, 2, 2, 2),
    num_res_blocks=2,
    attn_resolutions=(16,),
    dropout=0.1,
)  # 28 is zero-padded to 32 inside the network
_TINY = dict(
    image_size=8,
    channels=1,
    nf=16,
    ch_mult=(1, 2),
    num_res_blocks=1,
    attn_resolutions=(4,),
    dropout=0.0,
)

# digits on a CPU: ncsnpp/tiny's shape without FIR resampling (on XLA CPU the FIR filters'
# backward pass cost more than the rest of a step)
_DIGITS_SMALL = {**_TINY, "fir": False}

NETWORKS: dict[str, type[NCSNpp]] = {"ncsnpp": NCSNpp, "ddpmpp": DDPMpp}

_DEEP = {"num_res_blocks": CIFAR10_DEEP_RES_BLOCKS}

# name -> (network class, constructor arguments), the format of networks.CONFIGS
CONFIGS: dict[str, tuple[type[NCSNpp], dict[str, Any]]] = {
    "ncsnpp": (NCSNpp, {}),  # class defaults = the CIFAR-10 configurations
    "ddpmpp": (DDPMpp, {}),
    "ncsnpp/cifar10": (NCSNpp, {**_CIFAR10, **_NCSNPP}),
    "ncsnpp/cifar10-deep": (NCSNpp, {**_CIFAR10, **_NCSNPP, **_DEEP}),
    "ddpmpp/cifar10": (DDPMpp, {**_CIFAR10, **_DDPMPP}),
    "ddpmpp/cifar10-deep": (DDPMpp, {**_CIFAR10, **_DDPMPP, **_DEEP}),
    "ncsnpp/digits": (NCSNpp, {**_CIFAR10, **_NCSNPP, **_DIGITS}),
    "ddpmpp/digits": (DDPMpp, {**_CIFAR10, **_DDPMPP, **_DIGITS}),
    "ncsnpp/digits-small": (NCSNpp, {**_CIFAR10, **_NCSNPP, **_DIGITS_SMALL}),
    "ncsnpp/mnist": (NCSNpp, {**_CIFAR10, **_NCSNPP, **_MNIST}),
    "ncsnpp/tiny": (NCSNpp, {**_CIFAR10, **_NCSNPP, **_TINY}),
    "ddpmpp/tiny": (DDPMpp, {**_CIFAR10, **_DDPMPP, **_TINY}),
}

PARAMETER_TARGETS: dict[str, float] = {
    "ncsnpp/cifar10": 62.7e6,
    "ncsnpp/cifar10-deep": 107.6e6,
    "ddpmpp/cifar10": 61.8e6,
    "ddpmpp/cifar10-deep": 106.6e6,
}
"""Parameter counts of the CIFAR-10 models as reported by Song et al. (2021)."""


def get_ncsnpp(name: str, **overrides: Any) -> NCSNpp:
    """Build the named NCSN++ / DDPM++ configuration, with keyword overrides."""
    if name not in CONFIGS:
        raise KeyError(f"unknown configuration {name!r}; known: {sorted(CONFIGS)}")
    cls, config = CONFIGS[name]
    return cls(**{**config, **overrides})


__all__ = [
    "CONFIGS",
    "DDPM_TIME_SCALE",
    "FOURIER_SCALE",
    "NETWORKS",
    "PARAMETER_TARGETS",
    "DDPMpp",
    "NCSNpp",
    "get_ncsnpp",
    "layerspp",
]
