"""diffusers' NCSN++ (``UNet2DModel`` of skip blocks, as ``google/ncsnpp-*`` are published).

A ``ScoreSdeVePipeline`` folder holds ``model_index.json``, ``unet/config.json`` with
``unet/diffusion_pytorch_model.safetensors`` (or ``.bin``) and ``scheduler/scheduler_config.json``
of ``ScoreSdeVeScheduler``. The UNet is score_sde's VE NCSN++ with BigGAN blocks, FIR resampling,
``progressive="output_skip"``, ``progressive_input="input_skip"`` (combined by sum) and Fourier
features of log sigma; the network is called with sigma, maps x -> 2x - 1 when
``center_input_sample`` and divides its output by sigma, so its score is score_sde's VE
convention (``ImportSpec.preconditioning == "score_sde"``). diffusers computes some GroupNorm
group counts its own way (32 groups in the attention of ``AttnSkip*Block2D``, and
``min(in + skip // 4, 32)`` in the first GroupNorm of ``AttnSkipUpBlock2D``'s resnets, precedence
as written): scoregen's ``NCSNpp(groupnorm_rule="diffusers")`` reproduces them.

`translate_unet_config` refuses, in one sentence naming the field, what scoregen's NCSNpp cannot
express (another block type, multi-head attention, other activation, GroupNorm eps, ...);
`read_diffusers_folder` refuses a folder that holds no score model (e.g. a DDPM pipeline). It
reads the components where diffusers does (unet/ and scheduler/, else the folder itself: the hub's
google/ncsnpp-* keep both at the top) and renames the deprecated attention weights of 2022
checkpoints (query, key, value, proj_attn) as diffusers does on load.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from scoregen_keras import backend
from scoregen_keras.networks import layerspp
from scoregen_keras.networks.ncsnpp import TEMB_MULT, NCSNpp
from scoregen_keras.networks.score_sde_config import ImportSpec
from scoregen_keras.networks.score_sde_weights import (
    CONV1X1_KIND,
    CONV_KIND,
    LINEAR_KIND,
    NORM_KIND,
    VECTOR,
    ImportRefusedError,
    Kind,
    Leaf,
    Target,
    assign_state_dict,
    targets_of,
)

PIPELINE_CLASS = "ScoreSdeVePipeline"
UNET_CLASS = "UNet2DModel"
SCHEDULER_CLASS = "ScoreSdeVeScheduler"
MODEL_INDEX = "model_index.json"
UNET_CONFIG = "config.json"
SCHEDULER_CONFIG = "scheduler_config.json"
UNET, SCHEDULER = "unet", "scheduler"  # a pipeline's components: each in its folder, or at the top
# diffusers' deprecated AttentionBlock names (2022 checkpoints such as google/ncsnpp-*), renamed
# on load as diffusers' ModelMixin._convert_deprecated_attention_blocks does
DEPRECATED_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
DEPRECATED_ATTENTION_KEY = re.compile(
    r"^(?P<path>.*\.attentions\.\d+)\.(?P<name>query|key|value|proj_attn)\.(?P<kind>weight|bias)$"
)
WEIGHT_FILES = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")
DOWN_BLOCKS = {"SkipDownBlock2D": False, "AttnSkipDownBlock2D": True}  # type -> has attention
UP_BLOCKS = {"SkipUpBlock2D": False, "AttnSkipUpBlock2D": True}
BLOCK_PREFIX = "UNetRes"  # diffusers strips it from block type names
SKIP_BLOCK_CHANNELS = 3  # the skip blocks hard-code 3 image channels (skip convs 3 <-> C)
SKIP_RESCALE = math.sqrt(2.0)  # the skip blocks' fixed output_scale_factor
FOURIER_WEIGHT_KIND: Kind = (("W", "weight", VECTOR),)  # GaussianFourierProjection.weight
ACTIVATIONS = ("silu", "swish")

# field -> the value scoregen's NCSNpp reproduces (None: must be null / absent)
FIXED_FIELDS: dict[str, Any] = {
    "time_embedding_type": "fourier",
    "mid_block_type": "UNetMidBlock2D",
    "resnet_time_scale_shift": "default",
    "add_attention": True,
    "attention_head_dim": None,  # one head of all channels
    "class_embed_type": None,
    "num_class_embeds": None,
    "in_channels": SKIP_BLOCK_CHANNELS,
    "out_channels": SKIP_BLOCK_CHANNELS,
    "norm_eps": layerspp.GROUPNORM_EPS,
}


def _refuse_unless(ok: bool, message: str) -> None:
    """ImportRefusedError(message) unless ok."""
    if not ok:
        raise ImportRefusedError(message)


def _block_types(config: Mapping[str, Any], key: str, allowed: Mapping[str, bool]) -> list[bool]:
    """Per level, whether the block has attention; refused for any other block type."""
    kinds = []
    for name in config.get(key, ()):
        name = name[len(BLOCK_PREFIX) :] if name.startswith(BLOCK_PREFIX) else name
        _refuse_unless(
            name in allowed,
            f"unet {key} holds {name!r}, not one of {', '.join(allowed)} (NCSN++'s skip blocks).",
        )
        kinds.append(allowed[name])
    return kinds


def _square_size(config: Mapping[str, Any]) -> int:
    """sample_size as one int (a square image)."""
    size = config.get("sample_size")
    if isinstance(size, (list, tuple)):
        _refuse_unless(
            len(size) == 2 and size[0] == size[1], f"unet sample_size={size} is not square."
        )
        size = size[0]
    _refuse_unless(isinstance(size, int), f"unet sample_size={size!r} is not an image size.")
    return size


def translate_unet_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """NCSNpp constructor arguments of a diffusers UNet2DModel config; refused where not exact."""
    _refuse_unless(
        config.get("_class_name", UNET_CLASS) == UNET_CLASS,
        f"unet _class_name={config.get('_class_name')!r} is not {UNET_CLASS}.",
    )
    for key, value in FIXED_FIELDS.items():
        _refuse_unless(
            config.get(key, value) == value,
            f"unet {key}={config.get(key)!r} has no scoregen twin (it needs {value!r}).",
        )
    activation = config.get("act_fn", "silu")
    _refuse_unless(activation in ACTIVATIONS, f"unet act_fn={activation!r} is not silu.")
    down = _block_types(config, "down_block_types", DOWN_BLOCKS)
    up = _block_types(config, "up_block_types", UP_BLOCKS)
    _refuse_unless(
        up == down[::-1],
        "unet up_block_types do not mirror down_block_types (attention at the same levels).",
    )
    channels = [int(c) for c in config.get("block_out_channels", ())]
    _refuse_unless(
        len(channels) == len(down) > 0,
        "unet block_out_channels does not give one width per block.",
    )
    nf = channels[0]
    _refuse_unless(
        all(c % nf == 0 for c in channels),
        f"unet block_out_channels={channels} are not multiples of the first.",
    )
    _refuse_unless(
        math.isclose(float(config.get("mid_block_scale_factor", 1.0)), SKIP_RESCALE),
        "unet mid_block_scale_factor is not sqrt(2), the skip blocks' fixed rescaling.",
    )
    groups = {min(nf // 4, 32), min(channels[-1] // 4, 32)}
    for key in ("norm_num_groups", "attn_norm_num_groups"):
        value = config.get(key)
        _refuse_unless(
            value is None or {value} == groups,
            f"unet {key}={value} differs from the min(C // 4, 32) groups NCSN++ uses.",
        )
    _refuse_unless(
        config.get("time_embedding_dim") in (None, TEMB_MULT * nf),
        f"unet time_embedding_dim={config.get('time_embedding_dim')} is not 4 x {nf}.",
    )
    size = _square_size(config)
    levels = len(channels)
    _refuse_unless(
        size % 2 ** (levels - 1) == 0,
        f"unet sample_size={size} is not a multiple of 2^{levels - 1}.",
    )
    return {
        "image_size": size,
        "channels": SKIP_BLOCK_CHANNELS,
        "nf": nf,
        "ch_mult": [c // nf for c in channels],
        "num_res_blocks": int(config.get("layers_per_block", 2)),
        "attn_resolutions": [size // 2**i for i, attention in enumerate(down) if attention],
        "dropout": float(config.get("dropout", 0.0)),
        "resamp_with_conv": True,
        "conditional": True,
        "fir": True,
        "fir_kernel": list(layerspp.FIR_KERNEL),
        "skip_rescale": True,
        "resblock_type": "biggan",
        "progressive": "output_skip",
        "progressive_input": "input_skip",
        "progressive_combine": "sum",
        "init_scale": 0.0,
        "embedding_type": "fourier",
        "center_input": bool(config.get("center_input_sample", False)),
        "groupnorm_rule": "diffusers",
    }


def translate_scheduler_config(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict]:
    """(VE SDE config, PC sampler settings) of a ScoreSdeVeScheduler config."""
    name = config.get("_class_name")
    _refuse_unless(
        name == SCHEDULER_CLASS,
        f"scheduler _class_name={name!r} is not {SCHEDULER_CLASS}: the folder holds no score "
        "model.",
    )
    sde = {
        "type": "VESDE",
        "sigma_min": float(config.get("sigma_min", 0.01)),
        "sigma_max": float(config.get("sigma_max", 1348.0)),
        "N": int(config.get("num_train_timesteps", 2000)),
        "eps": float(config.get("sampling_eps", 1e-5)),
    }
    sampler = {
        "method": "pc",
        "predictor": "reverse_diffusion",
        "corrector": "langevin",
        "snr": float(config.get("snr", 0.15)),
        "n_corrector_steps": int(config.get("correct_steps", 1)),
        "denoise": True,  # the pipeline returns the last predictor step's mean
    }
    return sde, sampler


# ----------------------------------------------------------------------------- weight names


def _resnet_leaves(prefix: str, block: layerspp.ResnetBlockBigGANpp) -> Iterator[Leaf]:
    """A ResnetBlock2D: norm1, conv1, time_emb_proj, norm2, conv2, conv_shortcut."""
    yield f"{prefix}.norm1", block.GroupNorm_0, NORM_KIND
    yield f"{prefix}.conv1", block.Conv_0, CONV_KIND
    yield f"{prefix}.time_emb_proj", block.Dense_0, LINEAR_KIND
    yield f"{prefix}.norm2", block.GroupNorm_1, NORM_KIND
    yield f"{prefix}.conv2", block.Conv_1, CONV_KIND
    if block.Conv_2 is not None:
        yield f"{prefix}.conv_shortcut", block.Conv_2, CONV1X1_KIND


def _attention_leaves(prefix: str, block: layerspp.AttnBlockpp) -> Iterator[Leaf]:
    """An Attention (one head): group_norm, to_q, to_k, to_v, to_out.0."""
    yield f"{prefix}.group_norm", block.GroupNorm_0, NORM_KIND
    for name, layer in (("to_q", block.NIN_0), ("to_k", block.NIN_1), ("to_v", block.NIN_2)):
        yield f"{prefix}.{name}", layer, LINEAR_KIND
    yield f"{prefix}.to_out.0", block.NIN_3, LINEAR_KIND


def diffusers_leaves(net: NCSNpp) -> Iterator[Leaf]:
    """Every weight-holding layer of an NCSNpp of `translate_unet_config`, by diffusers key."""
    yield "time_proj", net.fourier_proj, FOURIER_WEIGHT_KIND
    yield "time_embedding.linear_1", net.temb_dense[0], LINEAR_KIND
    yield "time_embedding.linear_2", net.temb_dense[1], LINEAR_KIND
    yield "conv_in", net.conv_in, CONV_KIND
    down_blocks, down_samplers = iter(net.down_blocks), iter(net.down_samplers)
    pyramid_down, pyramid_combine = iter(net.pyramid_down), iter(net.pyramid_combine)
    levels = net.num_resolutions
    for level in range(levels):
        prefix = f"down_blocks.{level}"
        attention = net.all_resolutions[level] in net.attn_resolutions
        for j in range(net.num_res_blocks):
            yield from _resnet_leaves(f"{prefix}.resnets.{j}", next(down_blocks))
            if attention:
                yield from _attention_leaves(f"{prefix}.attentions.{j}", next(down_blocks))
        if level < levels - 1:
            yield from _resnet_leaves(f"{prefix}.resnet_down", next(down_samplers))
            next(pyramid_down)  # FirDownsample2D of the skip sample: no weights
            yield f"{prefix}.skip_conv", next(pyramid_combine).Conv_0, CONV1X1_KIND
    res_0, attn, res_1 = net.mid_blocks
    yield from _resnet_leaves("mid_block.resnets.0", res_0)
    yield from _attention_leaves("mid_block.attentions.0", attn)
    yield from _resnet_leaves("mid_block.resnets.1", res_1)
    up_blocks, up_attn = iter(net.up_blocks), iter(net.up_attn)
    up_samplers, pyramid_up = iter(net.up_samplers), iter(net.pyramid_up)
    for i, level in enumerate(reversed(range(levels))):
        prefix = f"up_blocks.{i}"
        for j in range(net.num_res_blocks + 1):
            yield from _resnet_leaves(f"{prefix}.resnets.{j}", next(up_blocks))
        if net.all_resolutions[level] in net.attn_resolutions:
            yield from _attention_leaves(f"{prefix}.attentions.0", next(up_attn))
        if level < levels - 1:
            next(pyramid_up)  # FirUpsample2D of the skip sample: no weights
        # the output pyramid's GroupNorm + conv: skip_norm / skip_conv, at full size the UNet's
        # conv_norm_out / conv_out
        norm, conv = ("skip_norm", "skip_conv") if level else ("conv_norm_out", "conv_out")
        yield (f"{prefix}.{norm}" if level else norm), next(pyramid_up), NORM_KIND
        yield (f"{prefix}.{conv}" if level else conv), next(pyramid_up), CONV_KIND
        if level:
            yield from _resnet_leaves(f"{prefix}.resnet_up", next(up_samplers))


def diffusers_targets(net: NCSNpp) -> dict[str, Target]:
    """{diffusers state_dict key: Target} of an NCSNpp built by `translate_unet_config`."""
    return targets_of(diffusers_leaves(net))


# ----------------------------------------------------------------------------- folders


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file, refused in one sentence when absent or malformed."""
    try:
        value = json.loads(path.read_text())  # a JSON file: no code runs
    except FileNotFoundError:
        raise ImportRefusedError(f"{path} does not exist.") from None
    except (OSError, ValueError) as error:
        raise ImportRefusedError(f"{path} is not readable JSON ({error}).") from None
    _refuse_unless(isinstance(value, dict), f"{path} does not hold a JSON object.")
    return value


def unet_weights_file(unet_dir: Path) -> Path:
    """The UNet's weight file: diffusion_pytorch_model.safetensors, else the .bin (refused when
    there is neither)."""
    for name in WEIGHT_FILES:
        if (unet_dir / name).exists():
            return unet_dir / name
    raise ImportRefusedError(f"{unet_dir} holds no {' or '.join(WEIGHT_FILES)}.")


def current_attention_names(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The state_dict with deprecated attention names (query, key, value, proj_attn) renamed to
    today's (to_q, to_k, to_v, to_out.0); other keys as they are."""
    renamed = {}
    for key, value in state_dict.items():
        match = DEPRECATED_ATTENTION_KEY.match(key)
        if match:
            key = f"{match['path']}.{DEPRECATED_ATTENTION[match['name']]}.{match['kind']}"
        renamed[key] = value
    return renamed


def read_unet_weights(unet_dir: Path) -> dict[str, np.ndarray]:
    """The UNet's state_dict from diffusion_pytorch_model.safetensors (or .bin, through torch),
    with today's attention names."""
    return current_attention_names(_read_weight_file(unet_dir))


def _read_weight_file(unet_dir: Path) -> dict[str, np.ndarray]:
    """The UNet's weight file as it is stored."""
    safetensors_file, bin_file = (unet_dir / name for name in WEIGHT_FILES)
    if unet_weights_file(unet_dir) == safetensors_file:
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            return load_file(str(safetensors_file))
        except (SafetensorError, OSError, ValueError) as error:
            raise ImportRefusedError(
                f"{safetensors_file} is not a safetensors file ({error})."
            ) from None
    try:
        return backend.read_torch_tensors(bin_file)
    except ModuleNotFoundError:
        raise ImportRefusedError(
            f"reading {bin_file} needs PyTorch: {backend.TORCH_INSTALL_HINT}."
        ) from None
    except ValueError as error:
        raise ImportRefusedError(f"{bin_file} is not a plain state_dict: {error}.") from None


def component_name(index: Mapping[str, Any], class_name: str, default: str) -> str:
    """The name model_index.json gives the component of this class (the hub's google/ncsnpp-*
    call their UNet "model"), else the default."""
    for name, value in index.items():
        if isinstance(value, list) and len(value) == 2 and value[1] == class_name:
            return name
    return default


def component_folder(pipeline: Path, name: str) -> Path:
    """Where a pipeline keeps a component: its own folder, else the pipeline's (diffusers' rule;
    the hub's google/ncsnpp-* keep the UNet and the scheduler at the top)."""
    folder = pipeline / name
    return folder if folder.is_dir() else pipeline


def read_diffusers_folder(path: str | Path) -> tuple[ImportSpec, dict[str, np.ndarray]]:
    """(ImportSpec, UNet state_dict) of a ScoreSdeVePipeline folder (components in unet/ and
    scheduler/, or all at the top as on the hub) or of its unet/ folder alone.

    Without a scheduler (a unet/ folder alone) the spec's ``sde`` and ``sampler`` are empty; its
    ``source`` is the weight file read.
    """
    path = Path(path)
    index_file = path / MODEL_INDEX
    sde: dict[str, Any] = {}
    sampler: dict[str, Any] = {}
    if index_file.exists():
        index = _read_json(index_file)
        _refuse_unless(
            index.get("_class_name") == PIPELINE_CLASS,
            f"{index_file} names {index.get('_class_name')!r}, not {PIPELINE_CLASS}: the folder "
            "holds no score model.",
        )
        scheduler_file = component_folder(path, component_name(index, SCHEDULER_CLASS, SCHEDULER))
        sde, sampler = translate_scheduler_config(_read_json(scheduler_file / SCHEDULER_CONFIG))
        unet_dir = component_folder(path, component_name(index, UNET_CLASS, UNET))
    else:
        unet_dir = path
    network_config = translate_unet_config(_read_json(unet_dir / UNET_CONFIG))
    weights_file = unet_weights_file(unet_dir)
    spec = ImportSpec(
        network="ncsnpp",
        network_config=network_config,
        sde=sde,
        data_centered=not network_config["center_input"],
        sampler=sampler,
        source=str(weights_file),
    )
    return spec, read_unet_weights(unet_dir)


def load_diffusers_weights(net: NCSNpp, state_dict: Mapping[str, Any], what: str = "UNet") -> None:
    """Assign a diffusers UNet2DModel state_dict to `net` (every key once, shapes checked)."""
    assign_state_dict(diffusers_targets(net), state_dict, what)


__all__ = [
    "component_folder",
    "component_name",
    "current_attention_names",
    "diffusers_leaves",
    "diffusers_targets",
    "load_diffusers_weights",
    "read_diffusers_folder",
    "read_unet_weights",
    "translate_scheduler_config",
    "translate_unet_config",
    "unet_weights_file",
]
