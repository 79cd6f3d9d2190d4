"""Published score-SDE networks in scoregen: score_sde_pytorch state_dicts and diffusers folders.

Against the fixtures of the original code (../shared/fixtures/score_sde_pytorch, diffusers): the
network output, every layer's activation, the score through ``preconditioning="score_sde"``, the
PC sampler on the pipeline's recorded draws; the converter's and the translators' refusals; every
built-in configuration against a re-derivation of the original's state_dict shapes.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scoregen_keras.networks.diffusers_ncsnpp import (
    diffusers_targets,
    load_diffusers_weights,
    read_diffusers_folder,
    translate_unet_config,
)
from scoregen_keras.networks.score_sde_config import (
    BUILTIN_CONFIGS,
    list_configs,
    load_score_sde_weights,
    score_sde_spec,
    translate_score_sde_config,
)
from scoregen_keras.networks.score_sde_weights import (
    ImportRefusedError,
    score_sde_modules,
    score_sde_targets,
)
from scoregen_keras.training.score_model import ScoreModel
from tests.frameworks import require_torch
from tests.keras import import_parity as parity
from tests.keras.import_parity import PC_RTOL, RTOL, SCORE_SDE_NAMES
from tests.keras.score_sde_shapes import original_state_dict_shapes
from tests.shared_fixtures import shared_fixture

# published parameter counts (3-4 significant digits: Song et al. 2021, and issue 24's 65.6 M)
PUBLISHED_PARAMETERS = {
    "ve/cifar10_ncsnpp_continuous": 62.7e6,
    "ve/cifar10_ncsnpp_deep_continuous": 107.6e6,
    "vp/cifar10_ddpmpp_continuous": 61.8e6,
    "vp/cifar10_ddpmpp_deep_continuous": 106.6e6,
    "ve/celebahq_256_ncsnpp_continuous": 65.6e6,
}
PUBLISHED_RTOL = 1e-3
EDM_DEPARTURE = 100  # the EDM map of the same weights departs by far more than RTOL
GROUP_COUNT_DEPARTURE = 1e-2  # score_sde's group counts on diffusers' weights: another function


def score_sde_folder() -> Path:
    """shared/fixtures/score_sde_pytorch (skipped, or failed under CI, when absent)."""
    return shared_fixture("score_sde_pytorch")


def diffusers_folder() -> Path:
    """shared/fixtures/diffusers (skipped, or failed under CI, when absent)."""
    return shared_fixture("diffusers")


def _np(x) -> np.ndarray:
    """Backend tensor -> NumPy float64."""
    return parity.to_numpy(x)


def _fixture(name: str) -> tuple[dict, dict, dict]:
    """(config JSON, state_dict, inputs/outputs) of a score_sde_pytorch fixture."""
    return parity.score_sde_fixture(score_sde_folder(), name)


@pytest.fixture(scope="module", params=SCORE_SDE_NAMES)
def score_sde_case(request) -> tuple:
    """(name, spec, network with the fixture's weights, config JSON, state_dict, io)."""
    spec, net, info, state_dict, io = parity.score_sde_network(score_sde_folder(), request.param)
    return request.param, spec, net, info, state_dict, io


@pytest.fixture(scope="module")
def diffusers_case() -> tuple:
    """(spec, network with the fixture's weights, state_dict)."""
    return parity.diffusers_network(diffusers_folder())


def _cond(spec, io: dict) -> np.ndarray:
    """The network's own conditioning: sigma (NCSNpp) or t (DDPMpp, which embeds 999 t)."""
    return parity.network_condition(spec, io)


# ----------------------------------------------------------------------------- (a) outputs


def test_score_sde_network_output_matches_the_original(score_sde_case) -> None:
    _, spec, net, _, _, io = score_sde_case
    assert parity.network_output_error(spec, net, io) <= RTOL


def test_score_sde_score_matches_the_original(score_sde_case) -> None:
    """ScoreModel(preconditioning="score_sde") gives get_score_fn's score: y (VE, scale_by_sigma)
    or -y / std(t) (VP); the fixture's sigma is std(t)."""
    _, spec, net, _, _, io = score_sde_case
    model = ScoreModel(net, sde=spec.sde, preconditioning="score_sde")
    assert parity.score_error(model.score, spec, io) <= RTOL
    # today's EDM map is another function of the same weights
    assert parity.edm_score_error(spec, net, io) > EDM_DEPARTURE * RTOL


def test_weights_in_the_torch_layout_give_back_the_state_dict(score_sde_case) -> None:
    """Layout.to_source inverts to_keras: every variable of the loaded network, in the torch
    layout, is the fixture's array (what the benchmark writes its checkpoint with)."""
    _, _, net, _, state_dict, _ = score_sde_case
    for key, target in score_sde_targets(net).items():
        source = target.layout.to_source(_np(target.variable.value))
        np.testing.assert_array_equal(source, state_dict[key])


@contextlib.contextmanager
def _recording(layers: list) -> Iterator[dict[int, np.ndarray]]:
    """Record each layer's output (by position in `layers`) while the context is open."""
    outputs: dict[int, np.ndarray] = {}
    originals = []
    for index, layer in enumerate(layers):
        call = layer.call

        def recorded(*args, _call=call, _index=index, **kwargs):
            out = _call(*args, **kwargs)
            outputs[_index] = _np(out)
            return out

        originals.append((layer, call))
        layer.call = recorded
    try:
        yield outputs
    finally:
        for layer, call in originals:
            layer.call = call


def test_every_layer_matches_the_originals_activation(score_sde_case) -> None:
    """all_modules[i]'s output, i in order: names the first layer that departs."""
    name, spec, net, info, _, io = score_sde_case
    acts = np.load(score_sde_folder() / f"{name}.acts.npz")
    modules = score_sde_modules(net)
    assert len(modules) == len(info["modules"])
    with _recording(modules) as outputs:
        net(io["x"], _cond(spec, io))
    for index, module in enumerate(info["modules"]):
        expected = acts[f"act/{index:03d}/{module['class']}"]
        scale = np.abs(expected).max()
        error = np.abs(outputs[index] - expected).max() / scale
        assert error <= RTOL, f"all_modules.{index} ({module['class']}) departs: {error:.2e}"


def test_diffusers_network_output_matches_diffusers(diffusers_case) -> None:
    """unet(x, sigma).sample = net(x, sigma) / sigma, to float32 against float64 torch too."""
    _, net, _ = diffusers_case
    score = parity.diffusers_unet_score(net)
    assert parity.diffusers_output_error(score, diffusers_folder()) <= RTOL
    assert parity.diffusers_output_error(score, diffusers_folder(), "y_f64") <= RTOL


@pytest.mark.slow
def test_diffusers_group_counts_matter(diffusers_case) -> None:
    """The same weights with score_sde's group counts give another function (fixed 32 groups in
    the skip blocks' attention, min(in + skip // 4, 32) in AttnSkipUpBlock2D's resnets)."""
    spec, _, state_dict = diffusers_case
    config = {**spec.network_config, "groupnorm_rule": "score_sde"}
    plain = type(spec)(**{**spec.to_dict(), "network_config": config}).build_network()
    load_diffusers_weights(plain, state_dict)
    score = parity.diffusers_unet_score(plain)
    assert parity.diffusers_output_error(score, diffusers_folder()) > GROUP_COUNT_DEPARTURE


# ----------------------------------------------------------------------------- (d) PC sampler


def test_pc_sampler_reproduces_the_diffusers_pipeline(diffusers_case) -> None:
    """pc_sample on the pipeline's recorded draws (init, then per step corrector, predictor)
    follows ScoreSdeVePipeline: VE SDE of N = num_inference_steps levels, t = linspace(1, eps)."""
    spec, net, _ = diffusers_case
    assert parity.pc_pipeline_error(spec, net, diffusers_folder()) <= PC_RTOL


# ----------------------------------------------------------------------------- (b) refusals


def _one_weight(state_dict: dict) -> tuple[str, np.ndarray]:
    """A non-square 4-D weight of the state_dict (so a transposed copy has another shape)."""
    return next((k, v) for k, v in state_dict.items() if v.ndim == 4 and v.shape[0] != v.shape[1])


def test_missing_key_is_refused(score_sde_case) -> None:
    _, _, net, info, state_dict, _ = score_sde_case
    key = next(iter(k for k in state_dict if k != "sigmas"))
    broken = {k: v for k, v in state_dict.items() if k != key}
    with pytest.raises(ImportRefusedError, match=f"no weight '{key}'"):
        load_score_sde_weights(net, broken, info["config"])


def test_unexpected_key_is_refused(score_sde_case) -> None:
    _, _, net, info, state_dict, _ = score_sde_case
    broken = {**state_dict, "all_modules.99.weight": np.zeros(3, "float32")}
    with pytest.raises(ImportRefusedError, match=re.escape("'all_modules.99.weight', which")):
        load_score_sde_weights(net, broken, info["config"])


def test_shape_mismatch_names_the_key_and_both_shapes(score_sde_case) -> None:
    """Refused before anything is assigned: the network keeps its weights."""
    _, _, net, info, state_dict, _ = score_sde_case
    key, value = _one_weight(state_dict)
    swapped = np.swapaxes(value, 0, 1)
    before = [_np(v) for v in net.weights]
    message = re.escape(f"'{key}' has shape {swapped.shape}") + ".*" + re.escape(f"{value.shape}.")
    with pytest.raises(ImportRefusedError, match=message):
        load_score_sde_weights(net, {**state_dict, key: swapped}, info["config"])
    assert all(np.array_equal(b, _np(v)) for b, v in zip(before, net.weights, strict=True))


def test_non_finite_weight_is_refused(score_sde_case) -> None:
    _, _, net, info, state_dict, _ = score_sde_case
    key, value = _one_weight(state_dict)
    broken = {**state_dict, key: np.full_like(value, np.nan)}
    with pytest.raises(ImportRefusedError, match=f"'{key}' .*NaN"):
        load_score_sde_weights(net, broken, info["config"])


def test_noise_levels_of_another_configuration_are_refused(score_sde_case) -> None:
    """The sigmas buffer must be the configuration's sigma_max .. sigma_min, num_scales."""
    _, _, net, info, state_dict, _ = score_sde_case
    config = {**info["config"], "model": {**info["config"]["model"], "sigma_max": 90.0}}
    with pytest.raises(ImportRefusedError, match=r"'sigmas'.*not the configuration's"):
        load_score_sde_weights(net, state_dict, config)


def test_diffusers_weights_of_another_size_are_refused(diffusers_case) -> None:
    _, net, state_dict = diffusers_case
    broken = dict(state_dict)
    broken["conv_in.weight"] = np.zeros((16, 3, 3, 3), "float32")
    with pytest.raises(ImportRefusedError, match=r"'conv_in.weight' has shape \(16, 3, 3, 3\)"):
        load_diffusers_weights(net, broken)


def _fixture_config(name: str) -> dict:
    """The config.to_dict() of a score_sde fixture."""
    return json.loads((score_sde_folder() / f"{name}.json").read_text())["config"]


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("model", "name", "ddpm", "model.name='ddpm'"),
        ("training", "continuous", False, "training.continuous=False"),
        ("model", "embedding_type", "positional", "model.embedding_type='positional'"),
        ("model", "scale_by_sigma", False, "model.scale_by_sigma=False"),
        ("model", "nonlinearity", "elu", "model.nonlinearity='elu'"),
        ("data", "image_size", 18, "data.image_size=18"),
        ("training", "sde", "cld", "training.sde='cld'"),
        ("model", "progressive", "sideways", "progressive='sideways'"),
    ],
)
def test_score_sde_configs_scoregen_cannot_express_are_refused(section, key, value, message):
    config = _fixture_config("ncsnpp_ve_c3")
    config = {**config, section: {**config[section], key: value}}
    with pytest.raises(ImportRefusedError, match=message):
        translate_score_sde_config(config)


def test_missing_config_field_and_unknown_name_are_refused() -> None:
    config = _fixture_config("ddpmpp_vp_c3")
    config = {**config, "model": {k: v for k, v in config["model"].items() if k != "nf"}}
    with pytest.raises(ImportRefusedError, match=r"no model\.nf"):
        translate_score_sde_config(config)
    with pytest.raises(ImportRefusedError, match="no built-in configuration 've/mnist'"):
        score_sde_spec("ve/mnist")


def _unet_config() -> dict:
    return json.loads((diffusers_folder() / "ncsnpp_small" / "unet" / "config.json").read_text())


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("attention_head_dim", 8, "attention_head_dim=8"),
        ("down_block_types", ["DownBlock2D"] * 3, "'DownBlock2D'"),
        ("time_embedding_type", "positional", "time_embedding_type='positional'"),
        ("norm_eps", 1e-5, "norm_eps=1e-05"),
        ("act_fn", "gelu", "act_fn='gelu'"),
        ("up_block_types", ["SkipUpBlock2D"] * 3, "do not mirror"),
        ("block_out_channels", [32, 48, 64], "not multiples"),
    ],
)
def test_diffusers_configs_scoregen_cannot_express_are_refused(key, value, message) -> None:
    with pytest.raises(ImportRefusedError, match=message):
        translate_unet_config({**_unet_config(), key: value})


def _copy_pipeline(tmp_path: Path) -> Path:
    folder = tmp_path / "pipeline"
    shutil.copytree(diffusers_folder() / "ncsnpp_small", folder)
    return folder


def test_folders_without_a_score_model_are_refused(tmp_path) -> None:
    folder = _copy_pipeline(tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "DDPMPipeline"}))
    with pytest.raises(ImportRefusedError, match=r"'DDPMPipeline'.*holds no score model"):
        read_diffusers_folder(folder)
    (folder / "model_index.json").write_text(json.dumps(index))
    scheduler = folder / "scheduler" / "scheduler_config.json"
    scheduler.write_text(json.dumps({"_class_name": "DDPMScheduler"}))
    with pytest.raises(ImportRefusedError, match=r"'DDPMScheduler'.*holds no score model"):
        read_diffusers_folder(folder)


def test_unet_folder_without_weights_is_refused(tmp_path) -> None:
    folder = _copy_pipeline(tmp_path)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ImportRefusedError, match="holds no diffusion_pytorch_model"):
        read_diffusers_folder(folder)


def test_unet_folder_alone_gives_the_network_without_an_sde(diffusers_case) -> None:
    _, net, state_dict = diffusers_case
    spec, alone = read_diffusers_folder(diffusers_folder() / "ncsnpp_small" / "unet")
    assert spec.sde == {} and spec.sampler == {}
    assert sorted(alone) == sorted(state_dict) == sorted(diffusers_targets(net))


def test_the_hubs_flat_layout_and_deprecated_attention_names(tmp_path, diffusers_case) -> None:
    """google/ncsnpp-* keep config.json, the weights and scheduler_config.json at the top, and
    name the attention weights query / key / value / proj_attn: the same weights come back."""
    from safetensors.numpy import save_file

    _, _, state_dict = diffusers_case
    folder = _copy_pipeline(tmp_path)
    for component in ("unet", "scheduler"):
        for item in (folder / component).iterdir():
            item.rename(folder / item.name)
        (folder / component).rmdir()
    old_names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    deprecated = {}
    for key, value in state_dict.items():
        for new, old in old_names.items():
            if ".attentions." in key and f".{new}." in key:
                key = key.replace(f".{new}.", f".{old}.")
        deprecated[key] = value
    assert sorted(deprecated) != sorted(state_dict)
    save_file(deprecated, str(folder / "diffusion_pytorch_model.safetensors"))
    spec, loaded = read_diffusers_folder(folder)
    assert spec.sde["sigma_max"] == 348.0  # the scheduler config at the top was read
    assert sorted(loaded) == sorted(state_dict)
    assert all(np.array_equal(loaded[k], v) for k, v in state_dict.items())


def test_the_unet_is_found_under_the_name_model_index_gives_it(tmp_path, diffusers_case) -> None:
    """google/ncsnpp-ffhq-1024's model_index.json calls the UNet "model"."""
    _, _, state_dict = diffusers_case
    folder = _copy_pipeline(tmp_path)
    (folder / "unet").rename(folder / "model")
    index = json.loads((folder / "model_index.json").read_text())
    index["model"] = index.pop("unet")
    (folder / "model_index.json").write_text(json.dumps(index))
    _, loaded = read_diffusers_folder(folder)
    assert all(np.array_equal(loaded[k], v) for k, v in state_dict.items())


def test_bin_weights_read_through_torch(tmp_path, diffusers_case) -> None:
    """diffusion_pytorch_model.bin (torch.save of the state_dict) gives the same weights."""
    torch = require_torch()  # reading .bin weights needs PyTorch
    _, _, state_dict = diffusers_case
    folder = _copy_pipeline(tmp_path)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    tensors = {k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}
    torch.save(tensors, folder / "unet" / "diffusion_pytorch_model.bin")
    _, loaded = read_diffusers_folder(folder)
    assert all(np.array_equal(loaded[k], v) for k, v in state_dict.items())


# ----------------------------------------------------------------------------- (c) configurations


@pytest.mark.parametrize("name", SCORE_SDE_NAMES)
def test_shape_oracle_matches_the_fixture_state_dicts(name: str) -> None:
    """The re-derivation of the original's state_dict (tests/keras/score_sde_shapes.py) gives
    the fixtures' real keys and shapes."""
    info, state_dict, _ = _fixture(name)
    real = {k: v.shape for k, v in state_dict.items() if k != "sigmas"}
    assert original_state_dict_shapes(info["config"]) == real
    assert sum(math.prod(s) for s in real.values()) == info["n_parameters"]


@pytest.mark.parametrize("name", list_configs())
def test_builtin_configuration_translates(name: str) -> None:
    """Every built-in configuration translates; its conventions are score_sde's."""
    spec = score_sde_spec(name)
    config = BUILTIN_CONFIGS[name]
    ve = config["training"]["sde"] == "vesde"
    assert spec.network == ("ncsnpp" if ve else "ddpmpp")
    assert spec.network_config["center_input"] is ve  # VE data in [0, 1]; VP / sub-VP centred
    assert spec.preconditioning == "score_sde"
    assert spec.sde["N"] == config["model"]["num_scales"]
    assert spec.sde["eps"] == (1e-5 if ve else 1e-3)


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMETERS))
def test_builtin_parameter_counts_match_the_published_figures(name: str) -> None:
    count = sum(math.prod(s) for s in original_state_dict_shapes(BUILTIN_CONFIGS[name]).values())
    assert abs(count / PUBLISHED_PARAMETERS[name] - 1) < PUBLISHED_RTOL


def _tiny(**model) -> dict:
    """The VE fixture's configuration cut to 8x8, two levels, with model fields overridden."""
    config = _fixture_config("ncsnpp_ve_c3")
    small = {"ch_mult": [1, 2], "attn_resolutions": [4], **model}
    return {
        **config,
        "data": {**config["data"], "image_size": 8},
        "model": {**config["model"], **small},
    }


TINY_VARIANTS = {  # every progressive / progressive_input / resblock / FIR / combine value:
    # the model fields _tiny overrides (the fixture is read when a test runs)
    "output_skip+input_skip": {"progressive": "output_skip", "progressive_input": "input_skip"},
    "residual+none": {"progressive": "residual", "progressive_input": "none"},
    "ddpm+fir": {"resblock_type": "ddpm", "progressive": "residual"},
    "ddpm-no-fir-no-conv+cat": {
        "resblock_type": "ddpm",
        "fir": False,
        "resamp_with_conv": False,
        "conditional": False,
        "progressive_input": "input_skip",
        "progressive_combine": "cat",
    },
}


@pytest.mark.parametrize("name", sorted(TINY_VARIANTS))
def test_mapping_of_every_architecture_variant(name: str) -> None:
    """scoregen's network names every torch key of the original, with its shape, exactly once."""
    config = _tiny(**TINY_VARIANTS[name])
    spec = translate_score_sde_config(config)
    net = spec.build_network()
    targets = score_sde_targets(net)
    expected = original_state_dict_shapes(config)
    assert {k: t.source_shape for k, t in targets.items()} == expected
    assert net.count_params() == sum(math.prod(s) for s in expected.values())


@pytest.mark.slow
@pytest.mark.parametrize("name", list_configs())
def test_builtin_network_has_the_originals_parameters(name: str) -> None:
    """Built in full (several seconds each): keys, shapes and count equal the original's."""
    spec = score_sde_spec(name)
    net = spec.build_network()
    expected = original_state_dict_shapes(BUILTIN_CONFIGS[name])
    assert {k: t.source_shape for k, t in score_sde_targets(net).items()} == expected
    assert net.count_params() == sum(math.prod(s) for s in expected.values())
