"""The state_dict keys and shapes of score_sde_pytorch's NCSNpp for a configuration, re-derived.

An oracle independent of scoregen's network: it follows the original's NCSNpp.__init__
(models/ncsnpp.py, layerspp.py) module by module and lists what each module registers, in torch
layouts. Checked against the fixtures' real state_dicts; used to check scoregen's mapping and
parameter counts on configurations too large to run the original on here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Shapes = dict[str, tuple[int, ...]]
TEMB_MULT = 4


def _conv(c_in: int, c_out: int, k: int) -> Shapes:
    return {"weight": (c_out, c_in, k, k), "bias": (c_out,)}


def _linear(c_in: int, c_out: int) -> Shapes:
    return {"weight": (c_out, c_in), "bias": (c_out,)}


def _norm(c: int) -> Shapes:
    return {"weight": (c,), "bias": (c,)}


def _nin(c_in: int, c_out: int) -> Shapes:
    return {"W": (c_in, c_out), "b": (c_out,)}


def _children(**children: Shapes) -> Shapes:
    return {f"{name}.{k}": v for name, params in children.items() for k, v in params.items()}


def original_state_dict_shapes(config: Mapping[str, Any]) -> Shapes:
    """{state_dict key: torch shape} of score_sde's NCSNpp(config), without the sigmas buffer."""
    m, d = config["model"], config["data"]
    nf, ch_mult, n_blocks = m["nf"], list(m["ch_mult"]), m["num_res_blocks"]
    channels, conditional = d["num_channels"], m["conditional"]
    levels = len(ch_mult)
    resolutions = [d["image_size"] // 2**i for i in range(levels)]
    fir, with_conv = m["fir"], m["resamp_with_conv"]
    biggan = m["resblock_type"] == "biggan"
    progressive, progressive_input = m["progressive"], m["progressive_input"]
    combine_cat = m["progressive_combine"] == "cat"
    modules: list[Shapes] = []

    def resblock(c_in: int, c_out: int | None = None, resample: bool = False) -> Shapes:
        c_out = c_out or c_in
        params = {
            "GroupNorm_0": _norm(c_in),
            "Conv_0": _conv(c_in, c_out, 3),
            **({"Dense_0": _linear(TEMB_MULT * nf, c_out)} if conditional else {}),
            "GroupNorm_1": _norm(c_out),
            "Conv_1": _conv(c_out, c_out, 3),
        }
        if biggan and (c_in != c_out or resample):
            params["Conv_2"] = _conv(c_in, c_out, 1)  # ddpm_conv1x1
        elif not biggan and c_in != c_out:
            params["NIN_0"] = _nin(c_in, c_out)
        return _children(**params)

    def attention(c: int) -> Shapes:
        return _children(GroupNorm_0=_norm(c), **{f"NIN_{i}": _nin(c, c) for i in range(4)})

    def resample(c_in: int, c_out: int, conv: bool) -> Shapes:
        return (
            _children(**{("Conv2d_0" if fir else "Conv_0"): _conv(c_in, c_out, 3)}) if conv else {}
        )

    if m["embedding_type"] == "fourier":
        modules.append({"W": (nf,)})
        embed_dim = 2 * nf
    else:
        embed_dim = nf
    if conditional:
        modules += [_linear(embed_dim, TEMB_MULT * nf), _linear(TEMB_MULT * nf, TEMB_MULT * nf)]
    modules.append(_conv(channels, nf, 3))
    skips, c, pyramid_c = [nf], nf, channels
    for level in range(levels):
        for _ in range(n_blocks):
            modules.append(resblock(c, nf * ch_mult[level]))
            c = nf * ch_mult[level]
            if resolutions[level] in m["attn_resolutions"]:
                modules.append(attention(c))
            skips.append(c)
        if level == levels - 1:
            continue
        modules.append(resblock(c, resample=True) if biggan else resample(c, c, with_conv))
        if progressive_input == "input_skip":
            modules.append(_children(Conv_0=_conv(pyramid_c, c, 1)))  # Combine
            c = 2 * c if combine_cat else c
        elif progressive_input == "residual":
            modules.append(resample(pyramid_c, c, True))
            pyramid_c = c
        skips.append(c)
    c = skips[-1]
    modules += [resblock(c), attention(c), resblock(c)]
    pyramid_c = 0
    for level in reversed(range(levels)):
        for _ in range(n_blocks + 1):
            modules.append(resblock(c + skips.pop(), nf * ch_mult[level]))
            c = nf * ch_mult[level]
        if resolutions[level] in m["attn_resolutions"]:
            modules.append(attention(c))
        if progressive == "output_skip":
            modules += [_norm(c), _conv(c, channels, 3)]
        elif progressive == "residual" and level == levels - 1:
            modules += [_norm(c), _conv(c, c, 3)]
            pyramid_c = c
        elif progressive == "residual":
            modules.append(_children(**{("Conv2d_0" if fir else "Conv_0"): _conv(pyramid_c, c, 3)}))
            pyramid_c = c
        if level != 0:
            modules.append(resblock(c, resample=True) if biggan else resample(c, c, with_conv))
    if progressive != "output_skip":
        modules += [_norm(c), _conv(c, channels, 3)]
    return {
        f"all_modules.{i}.{key}": shape
        for i, params in enumerate(modules)
        for key, shape in params.items()
    }
