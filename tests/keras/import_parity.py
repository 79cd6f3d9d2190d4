"""The score-SDE import against the original code's outputs (shared/fixtures/score_sde_pytorch and
diffusers): each check is one function returning its largest relative difference, which
tests/keras/test_score_sde_import.py and tests/cli/test_import_cli.py hold to the fixtures'
tolerances and benchmarks/import_scale.py tabulates per backend.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from scoregen_keras import losses
from scoregen_keras import sde as sde_lib
from scoregen_keras.networks.diffusers_ncsnpp import load_diffusers_weights, read_diffusers_folder
from scoregen_keras.networks.score_sde_config import (
    ImportSpec,
    load_score_sde_weights,
    translate_score_sde_config,
)
from scoregen_keras.samplers import pc_sample

SCORE_SDE_NAMES = ("ncsnpp_ve_c3", "ddpmpp_vp_c3")
FIXTURE_INPUTS = ("x", "t", "sigma", "time_cond", "y", "y_raw")
DIFFUSERS_PIPELINE = "ncsnpp_small"
# float32 port against float32 torch (the fixtures' README: torch's own f32 vs f64 is <= 6.1e-6)
RTOL = 1e-5
PC_RTOL = 1e-4  # the diffusers README: a float32 port meets 1e-4 on final_mean
NON_TRAINABLE_MODULES = ("GaussianFourierProjection",)  # its W: requires_grad=False in score_sde


def to_numpy(x: Any) -> np.ndarray:
    """Backend tensor -> NumPy float64."""
    return np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)


def relative_l2(actual: Any, expected: Any) -> float:
    """Largest per-example ||actual - expected|| / ||expected||."""
    a, e = to_numpy(actual), np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise AssertionError(f"shapes differ: {a.shape} and {e.shape}")
    a, e = a.reshape(len(a), -1), e.reshape(len(e), -1)
    return float(np.max(np.linalg.norm(a - e, axis=1) / np.linalg.norm(e, axis=1)))


# ----------------------------------------------------------------------------- score_sde_pytorch


def score_sde_fixture(folder: Path, name: str) -> tuple[dict, dict, dict]:
    """(config JSON, state_dict in the original's order, inputs / outputs) of a fixture."""
    info = json.loads((folder / f"{name}.json").read_text())
    with np.load(folder / f"{name}.npz") as data:
        arrays = {key: data[key] for key in data.files}
    state_dict = {k: v for k, v in arrays.items() if k not in FIXTURE_INPUTS}
    return info, state_dict, {k: arrays[k] for k in FIXTURE_INPUTS}


def fixed_parameters(info: dict) -> set[str]:
    """The fixture's parameters the original does not train (the Fourier W), from its JSON."""
    return {
        key
        for module in info["modules"]
        if module["class"] in NON_TRAINABLE_MODULES
        for key in module["params"]
    }


def score_sde_network(folder: Path, name: str) -> tuple[ImportSpec, Any, dict, dict, dict]:
    """(spec, network with the fixture's weights, config JSON, state_dict, io)."""
    info, state_dict, io = score_sde_fixture(folder, name)
    spec = translate_score_sde_config(info["config"])
    net = spec.build_network()
    load_score_sde_weights(net, state_dict, info["config"])
    return spec, net, info, state_dict, io


def network_condition(spec: ImportSpec, io: dict) -> np.ndarray:
    """The network's own conditioning: sigma (NCSNpp) or t (DDPMpp, which embeds 999 t)."""
    return io["sigma"] if spec.network == "ncsnpp" else io["t"]


def expected_score(spec: ImportSpec, io: dict) -> np.ndarray:
    """get_score_fn's score of the fixture: y (VE, scale_by_sigma) or -y / std(t) (VP)."""
    if spec.sde["type"] == "VESDE":
        return io["y"]
    return -io["y"] / io["sigma"][:, None, None, None]


def network_output_error(spec: ImportSpec, net: Any, io: dict) -> float:
    """The network's raw output against the original's (scale_by_sigma off)."""
    return relative_l2(net(io["x"], network_condition(spec, io)), io["y_raw"])


def score_error(score: Callable[[Any, Any], Any], spec: ImportSpec, io: dict) -> float:
    """score(x, t) against the original's score of the fixture."""
    return relative_l2(score(io["x"], io["t"]), expected_score(spec, io))


def edm_score_error(spec: ImportSpec, net: Any, io: dict) -> float:
    """The same weights through scoregen's default (EDM) preconditioning: another function."""
    edm = losses.precondition(net, sde_lib.sde_from_config(spec.sde))
    return score_error(edm, spec, io)


# ----------------------------------------------------------------------------- diffusers


def diffusers_network(folder: Path) -> tuple[ImportSpec, Any, dict]:
    """(spec, network with the fixture's weights, UNet state_dict)."""
    spec, state_dict = read_diffusers_folder(folder / DIFFUSERS_PIPELINE)
    net = spec.build_network()
    load_diffusers_weights(net, state_dict)
    return spec, net, state_dict


def diffusers_output_error(score: Callable[[Any, Any], Any], folder: Path, key: str = "y") -> float:
    """score(x, sigma) against unet(x, sigma).sample (key "y"; "y_f64": the float64 model)."""
    with np.load(folder / f"{DIFFUSERS_PIPELINE}_io.npz") as io:
        return relative_l2(score(io["x"], io["sigma"]), io[key])


def diffusers_unet_score(net: Any) -> Callable[[Any, Any], np.ndarray]:
    """unet(x, sigma).sample of the network: net(x, sigma) / sigma."""
    return lambda x, sigma: to_numpy(net(x, sigma)) / np.asarray(sigma)[:, None, None, None]


def pc_pipeline_error(spec: ImportSpec, net: Any, folder: Path) -> float:
    """pc_sample fed the pipeline's recorded draws against ScoreSdeVePipeline's final mean:
    VE SDE of N = num_inference_steps levels, t = linspace(1, eps)."""
    with np.load(folder / f"{DIFFUSERS_PIPELINE}_pc.npz") as data:
        run = {key: data[key] for key in data.files}
    if list(run["draw_kind"][:3]) != ["init", "corrector", "predictor"]:
        raise AssertionError(f"unexpected draw order {run['draw_kind'][:3]}")
    steps = int(run["num_inference_steps"])
    sde = sde_lib.sde_from_config({**spec.sde, "N": steps})
    score_fn = losses.precondition(net, sde, spec.preconditioning)
    sampler = spec.sampler
    x, nfe = pc_sample(
        score_fn,
        sde,
        run["draws"].shape[1:],
        seed=None,
        predictor=sampler["predictor"],
        corrector=sampler["corrector"],
        snr=sampler["snr"],
        n_corrector_steps=sampler["n_corrector_steps"],
        denoise=sampler["denoise"],
        noise=iter(run["draws"]),
    )
    if nfe != 2 * steps:
        raise AssertionError(f"{nfe} score evaluations, not {2 * steps}")
    return relative_l2(x, run["final_mean"])


# ----------------------------------------------------------------------------- the table


def parity_table(score_sde: Path, diffusers: Path) -> dict[str, float]:
    """Every check above on this backend: name -> largest relative difference."""
    from scoregen_keras.training.score_model import ScoreModel

    table: dict[str, float] = {}
    for name in SCORE_SDE_NAMES:
        spec, net, _, _, io = score_sde_network(score_sde, name)
        table[f"{name} network output"] = network_output_error(spec, net, io)
        model = ScoreModel(net, sde=spec.sde, preconditioning="score_sde")
        table[f"{name} score"] = score_error(model.score, spec, io)
    spec, net, _ = diffusers_network(diffusers)
    table["diffusers unet output"] = diffusers_output_error(diffusers_unet_score(net), diffusers)
    table["diffusers unet output (float64 model)"] = diffusers_output_error(
        diffusers_unet_score(net), diffusers, "y_f64"
    )
    table["diffusers PC pipeline final mean"] = pc_pipeline_error(spec, net, diffusers)
    return table


TOLERANCES = {
    "network output": RTOL,
    "score": RTOL,
    "unet output": RTOL,
    "final mean": PC_RTOL,
}
"""The tolerance of each check, by the end of its name (the fixtures' READMEs)."""


def tolerance(check: str) -> float:
    """The tolerance of a check of `parity_table` (by the end of its name)."""
    stem = check.split(" (")[0]
    for end, value in TOLERANCES.items():
        if stem.endswith(end):
            return value
    raise KeyError(f"no tolerance for {check!r}")
