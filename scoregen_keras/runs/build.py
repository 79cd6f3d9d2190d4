"""A ScoreModel and its training data from a resolved run configuration."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from reference import sde as reference_sde
from scoregen_keras.data import DataError, Dataset, load_dataset, model_pixel_range
from scoregen_keras.networks import CONFIGS, get_network
from scoregen_keras.runs.folder import RunError, one_line
from scoregen_keras.training import distribution as distribute
from scoregen_keras.training.presets import (
    NCSNV2_RULES,
    NCSNV2_SIGMA_MIN,
    NCSNV2_STEPS_EACH,
)
from scoregen_keras.training.score_model import NCSN, SDE_NAMES, ScoreModel

if TYPE_CHECKING:  # run_classifier imports this module
    pass


def load_run_data(spec: str, config: dict[str, Any], n: int, seed: int) -> Dataset:
    """A data set in the run's model space (its image size and centring), of the run's shape.

    DataError when it cannot be loaded; RunError when its examples have another shape.
    """
    shape = tuple(int(d) for d in config["data"]["shape"])
    dataset = load_dataset(
        spec,
        n=n,
        seed=seed,
        image_size=shape[0] if config["data"]["kind"] == "images" else None,
        centered=bool(config.get("centered", False)),
    )
    if tuple(dataset.shape) != shape:
        raise RunError(
            f"the data {spec} have examples of shape {tuple(dataset.shape)}, but the run's model "
            f"takes {shape}."
        )
    return dataset


def _network_family(model_name: str) -> str:
    """'mlp' for 'mlp/toy', 'ncsnpp' for 'ncsnpp/digits', ..."""
    return model_name.split("/", 1)[0]


def network_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments of the run's network: its named config plus model_config."""
    name = config["model"]
    if name not in CONFIGS:
        raise RunError(f"unknown model '{name}'; choose one of {', '.join(sorted(CONFIGS))}.")
    arguments = {**CONFIGS[name][1], **config.get("model_config", {})}
    family = _network_family(name)
    if family == "mlp":
        arguments.setdefault("conditioning", "sigma" if config["sde"] == NCSN else "t")
    if family == "ncsn" and config["sde"] == NCSN and "num_scales" in config["sde_config"]:
        arguments.setdefault("num_classes", int(config["sde_config"]["num_scales"]))
    return arguments


def expected_shape(arguments: dict[str, Any]) -> tuple[int, ...] | None:
    """Shape of one example the network takes, from its arguments (None when not stated)."""
    if "dim" in arguments:
        return (int(arguments["dim"]),)
    channels = arguments.get("num_channels", arguments.get("channels"))
    if "image_size" in arguments and channels is not None:
        size = int(arguments["image_size"])
        return (size, size, int(channels))
    return None


def _sde_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """ScoreModel's sde / sigmas arguments from the run config."""
    sde_config = dict(config.get("sde_config", {}))
    if config["sde"] == NCSN:
        if not sde_config:
            return {"sde": NCSN}
        sigma_max = float(sde_config["sigma_max"])
        sigma_min = float(sde_config["sigma_min"])
        levels = int(sde_config["num_scales"])
        sigmas = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), levels))
        return {"sde": NCSN, "sigmas": [float(s) for s in sigmas]}
    if "num_scales" in sde_config:
        sde_config["N"] = sde_config.pop("num_scales")
    return {"sde": {"type": SDE_NAMES[config["sde"]], **sde_config}}


def apply_ncsnv2_rules(
    config: dict[str, Any], x: np.ndarray, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The config with NCSNv2's rules applied when its sde_config says rules = "ncsnv2".

    Song & Ermon (2020): sigma_1 is the largest distance between two training examples ``x``
    (model space; technique 1), the levels fall geometrically to sigma_min by the ratio that the
    data's dimension calls for (technique 2), and annealed Langevin takes ald_steps_each (else
    NCSNV2_STEPS_EACH) steps a level at technique 4's step size unless ald_step_lr is set. What
    the rules picked is recorded under "ncsnv2_rules" and told to ``log``. Other configs come
    back unchanged.
    """
    log = log or (lambda message: None)
    sde_config = dict(config["sde_config"])
    if sde_config.pop("rules", None) != NCSNV2_RULES:
        return config
    sigma_min = float(sde_config.get("sigma_min", NCSNV2_SIGMA_MIN))
    steps_each = int(config.get("ald_steps_each") or NCSNV2_STEPS_EACH)
    try:
        reference_sde.ncsnv2_gamma(int(np.prod(x.shape[1:])))  # data of too few dimensions fail now
        # technique 1 compares every pair of examples: minutes for tens of thousands of images
        log(f"NCSNv2's rules: the largest distance between {len(x)} training examples ...")
        sigmas, eps = reference_sde.ncsnv2_schedule(x, sigma_min, steps_each)
    except ValueError as error:
        message = f"NCSNv2's rules cannot set noise levels for these data: {error}."
        raise RunError(message) from error
    # NCSNv2's step x + eps s + sqrt(2 eps) z is the samplers' x + alpha/2 s + sqrt(alpha) z
    step_lr = 2.0 * eps
    picked = {
        "sigma_max": float(sigmas[0]),
        "sigma_min": sigma_min,
        "num_scales": len(sigmas),
        "gamma": float(sigmas[0] / sigmas[1]),
        "ald_steps_each": steps_each,
        "ald_step_lr": step_lr,
    }
    log(
        f"NCSNv2's rules: sigma {picked['sigma_max']:.4g} -> {sigma_min:g} in {len(sigmas)} "
        f"levels (ratio {picked['gamma']:.4f}), annealed Langevin {steps_each} steps a level at "
        f"{step_lr:.3g}"
    )
    return {
        **config,
        "sde_config": {key: picked[key] for key in ("sigma_max", "sigma_min", "num_scales")},
        "ald_steps_each": steps_each,
        "ald_step_lr": config.get("ald_step_lr") or step_lr,
        "ncsnv2_rules": picked,
    }


def build_model(config: dict[str, Any], data_shape: tuple[int, ...]) -> ScoreModel:
    """A compiled ScoreModel for the config, built for examples of `data_shape`."""
    arguments = network_arguments(config)
    if _network_family(config["model"]) == "mlp" and "dim" not in arguments:
        arguments["dim"] = int(np.prod(data_shape))
    wanted = expected_shape(arguments)
    if wanted is not None and tuple(wanted) != tuple(data_shape):
        raise RunError(
            f"the data have examples of shape {tuple(data_shape)} but model '{config['model']}' "
            f"takes {tuple(wanted)}; choose a matching --model or set model_config."
        )
    keras.utils.set_random_seed(int(config["seed"]))
    precision = config.get("precision", distribute.FLOAT32)
    try:
        with distribute.precision_scope(precision):  # the network's layers; the rest is float32
            network = get_network(config["model"], **arguments)
    except (TypeError, ValueError) as error:
        raise RunError(f"cannot build model '{config['model']}' ({one_line(error)}).") from error
    try:
        model = ScoreModel(
            network,
            **_sde_arguments(config),
            loss=config["loss"],
            weighting=config["weighting"],
            reduce=config["reduce"],
            ema_rate=config["ema"],
            seed=int(config["seed"]),
            input_shape=(None, *data_shape),
        )
    except (TypeError, ValueError) as error:
        raise RunError(f"invalid model configuration ({one_line(error)}).") from error
    model.compile(
        learning_rate=float(config["lr"]),
        warmup_steps=int(config["warmup"]),
        decay_steps=int(config["steps"]) if config.get("lr_decay", "none") != "none" else None,
        global_clipnorm=config["grad_clip"],
        loss_scale=distribute.needs_loss_scaling(precision),
    )
    return model


def comparable_config(network_config: dict[str, Any]) -> dict[str, Any]:
    """A network's config without its (auto-generated) name, JSON-normalised."""
    return json.loads(json.dumps({k: v for k, v in network_config.items() if k != "name"}))


def data_info(dataset: Dataset) -> dict[str, Any]:
    """What config.json records about the training data (and the split it came from, if any)."""
    info = {
        "name": dataset.name,
        "kind": dataset.kind,
        "shape": list(dataset.shape),
        "n": len(dataset.x),
        "scaler": dataset.scaler.to_config(),
        # images: the pixel scale's black and white, which need not occur in the data
        "value_range": list(model_pixel_range(dataset.scaler))
        if dataset.kind == "images"
        else [float(np.min(dataset.x)), float(np.max(dataset.x))],
    }
    if dataset.split is not None:
        info["split"] = dataset.split
    if dataset.labels is not None:
        info["classes"] = list(dataset.class_names)
    return info


def training_data(config: dict[str, Any], progress: bool = False) -> Dataset:
    """The config's data set, in model space (``progress``: a bar while image files are read)."""
    wanted = expected_shape(network_arguments(config))
    image_size = config.get("image_size") or (wanted[0] if wanted and len(wanted) == 3 else None)
    dataset = load_dataset(
        config["dataset"],
        n=int(config["n_train"]),
        seed=int(config["seed"]),
        image_size=image_size,
        centered=bool(config["centered"]),
        progress=progress,
    )
    if len(dataset.x) == 0:
        raise DataError(f"data set {config['dataset']} is empty.")
    return dataset
