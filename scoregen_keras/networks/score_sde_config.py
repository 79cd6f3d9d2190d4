"""score_sde's configurations (``config.to_dict()``) as scoregen networks, SDEs and conventions.

`translate_score_sde_config` turns the original's ``data`` / ``model`` / ``training`` /
``sampling`` fields into an `ImportSpec`: the scoregen network class and its constructor
arguments, the SDE, and the map from network output to score. A field value scoregen cannot
express exactly is refused in one sentence naming the field (`ImportRefusedError`); fields the
original's NCSN++ never reads (``normalization``, ``attention_type``, ``conv_size``: it hard-codes
GroupNorm, DDPM attention and 3x3 convolutions) and the training run's own settings (batch size,
iterations, data set, augmentation) are not checked.

The conventions, as the original computes them (models/utils.py get_score_fn, models/ncsnpp.py):
- VE (NCSN++, ``scale_by_sigma``): the network is called with sigma(t); with ``data.centered``
  false the data are in [0, 1] and the network maps x -> 2x - 1 itself; score = output / sigma.
- VP and sub-VP (DDPM++, or NCSN++ trained on them): the network is called with 999 t (its
  positional embedding); score = -output / std(t).
scoregen states them exactly: ``center_input`` on the network, the network's own conditioning
(NCSNpp: sigma; DDPMpp: t, embedded as 999 t) and ``preconditioning="score_sde"`` in
``losses.precondition`` / ``ScoreModel``.

`BUILTIN_CONFIGS` mirrors the original's config files (configs/ve, vp, subvp of
yang-song/score_sde_pytorch), named by their paths; `list_configs` lists them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from scoregen_keras.networks.ncsnpp import (
    DDPM_TIME_SCALE,
    NETWORKS,
    PROGRESSIVE,
    PROGRESSIVE_COMBINE,
    PROGRESSIVE_INPUT,
    RESBLOCK_TYPES,
    NCSNpp,
)
from scoregen_keras.networks.score_sde_weights import (
    ImportRefusedError,
    assign_state_dict,
    score_sde_targets,
)

SIGMAS_BUFFER = "sigmas"  # score_sde's registered buffer: its noise levels, not a weight
SIGMAS_RTOL = 1e-6  # the buffer is float32
# sampling_eps of the original's run_lib.py, by SDE
SAMPLING_EPS = {"vesde": 1e-5, "vpsde": 1e-3, "subvpsde": 1e-3}
SDE_TYPES = {"vesde": "VESDE", "vpsde": "VPSDE", "subvpsde": "SubVPSDE"}
NETWORK_OF_SDE = {"vesde": "ncsnpp", "vpsde": "ddpmpp", "subvpsde": "ddpmpp"}
EMBEDDING_OF_SDE = {"vesde": "fourier", "vpsde": "positional", "subvpsde": "positional"}
SCALE_BY_SIGMA_OF_SDE = {"vesde": True, "vpsde": False, "subvpsde": False}
PREDICTORS = {  # score_sde's predictor name -> scoregen's
    "euler_maruyama": "euler_maruyama",
    "reverse_diffusion": "reverse_diffusion",
    "ancestral_sampling": "ancestral",
    "none": "none",
}
CORRECTORS = {"langevin": "langevin", "ald": "ald", "none": "none"}
SAMPLING_METHODS = ("pc", "ode")
NONLINEARITY = "swish"
MODEL_NAME = "ncsnpp"  # models/ncsnpp.py; "ddpm", "ncsn", "ncsnv2" are other architectures

# model fields that become NCSNpp arguments of the same name
NETWORK_FIELDS = (
    "nf",
    "ch_mult",
    "num_res_blocks",
    "attn_resolutions",
    "dropout",
    "resamp_with_conv",
    "conditional",
    "fir",
    "fir_kernel",
    "skip_rescale",
    "resblock_type",
    "progressive",
    "progressive_input",
    "progressive_combine",
    "init_scale",
    "embedding_type",
)
LIST_FIELDS = ("ch_mult", "attn_resolutions", "fir_kernel")
CHOICES = {  # model fields with named values, as NCSNpp accepts them
    "progressive": PROGRESSIVE,
    "progressive_input": PROGRESSIVE_INPUT,
    "resblock_type": RESBLOCK_TYPES,
    "progressive_combine": PROGRESSIVE_COMBINE,
}


@dataclass(frozen=True)
class ImportSpec:
    """A published score model as scoregen runs it: network, SDE and the output -> score map.

    ``preconditioning`` "score_sde": score = net(x, cond) / std (VE) or -net(x, cond) / std
    (VP, sub-VP), the network conditioned on its own ``conditioning`` (NCSNpp: std = sigma(t);
    DDPMpp: t, embedded as 999 t), and x given as it is (``network_config["center_input"]``:
    the network maps [0, 1] data to 2x - 1 itself).
    """

    network: str  # a key of networks.ncsnpp.NETWORKS
    network_config: dict[str, Any]
    sde: dict[str, Any]  # sde.to_config() form
    data_centered: bool  # data in [-1, 1] (True) or [0, 1]
    preconditioning: str = "score_sde"
    ema_rate: float | None = None
    sampler: dict[str, Any] = field(default_factory=dict)  # pc_sample / ode_sample settings
    loss: dict[str, Any] = field(default_factory=dict)  # ScoreModel loss settings of training
    source: str = ""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the data."""
        size = self.network_config["image_size"]
        return (size, size, self.network_config["channels"])

    @property
    def conventions(self) -> str:
        """The data range, network input and output -> score map, in one sentence."""
        data = "[-1, 1]" if self.data_centered else "[0, 1] (the network maps x to 2x - 1)"
        cond = "sigma(t)" if self.network == "ncsnpp" else f"{DDPM_TIME_SCALE:g} t"
        sign = "-" if self.sde.get("type") in ("VPSDE", "SubVPSDE") else ""
        return f"data in {data}, network called with {cond}, score = {sign}output / std(t)"

    def build_network(self) -> NCSNpp:
        """The scoregen network, built for the data shape (random weights)."""
        net = NETWORKS[self.network](**self.network_config, dtype="float32")
        net.build((1, *self.image_shape))
        return net

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fields."""
        return asdict(self)


def _section(config: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """One of data / model / training / sampling, refused when absent."""
    section = config.get(name)
    if not isinstance(section, Mapping):
        raise ImportRefusedError(f"the configuration has no {name!r} section.")
    return section


def _field(section: Mapping[str, Any], where: str, key: str) -> Any:
    """section[key], refused in one sentence when absent."""
    if key not in section:
        raise ImportRefusedError(
            f"the configuration has no {where}.{key}, which the network needs."
        )
    return section[key]


def _require(ok: bool, message: str) -> None:
    """Refuse with `message` (one sentence) unless ok."""
    if not ok:
        raise ImportRefusedError(message)


def _sde(model: Mapping[str, Any], sde_name: str) -> dict[str, Any]:
    """scoregen's SDE config of the original's model fields (N = num_scales)."""
    config: dict[str, Any] = {
        "type": SDE_TYPES[sde_name],
        "N": int(_field(model, "model", "num_scales")),
        "eps": SAMPLING_EPS[sde_name],
    }
    if sde_name == "vesde":
        config["sigma_min"] = float(_field(model, "model", "sigma_min"))
        config["sigma_max"] = float(_field(model, "model", "sigma_max"))
    else:
        config["beta_min"] = float(_field(model, "model", "beta_min"))
        config["beta_max"] = float(_field(model, "model", "beta_max"))
    return config


def _sampler(sampling: Mapping[str, Any]) -> dict[str, Any]:
    """pc_sample / ode_sample settings of the original's sampling section ({} without one)."""
    if not sampling:
        return {}
    method = sampling.get("method", "pc")
    _require(method in SAMPLING_METHODS, f"sampling.method={method!r} is not one of pc, ode.")
    if method == "ode":
        return {"method": "ode"}
    predictor = _field(sampling, "sampling", "predictor")
    corrector = _field(sampling, "sampling", "corrector")
    _require(predictor in PREDICTORS, f"sampling.predictor={predictor!r} has no scoregen twin.")
    _require(corrector in CORRECTORS, f"sampling.corrector={corrector!r} has no scoregen twin.")
    _require(
        not sampling.get("probability_flow", False),
        "sampling.probability_flow=True (a probability-flow predictor) has no scoregen twin.",
    )
    return {
        "method": "pc",
        "predictor": PREDICTORS[predictor],
        "corrector": CORRECTORS[corrector],
        "snr": float(_field(sampling, "sampling", "snr")),
        "n_corrector_steps": int(_field(sampling, "sampling", "n_steps_each")),
        "denoise": bool(_field(sampling, "sampling", "noise_removal")),
    }


def _network_config(data: Mapping[str, Any], model: Mapping[str, Any]) -> dict[str, Any]:
    """NCSNpp / DDPMpp constructor arguments of the original's data and model fields."""
    config: dict[str, Any] = {
        "image_size": int(_field(data, "data", "image_size")),
        "channels": int(_field(data, "data", "num_channels")),
        "center_input": not bool(_field(data, "data", "centered")),
    }
    for key in NETWORK_FIELDS:
        value = _field(model, "model", key)
        config[key] = [int(v) for v in value] if key in LIST_FIELDS else value
    if config["embedding_type"] == "fourier":
        config["fourier_scale"] = float(_field(model, "model", "fourier_scale"))
    else:
        config["time_scale"] = DDPM_TIME_SCALE
    levels = len(config["ch_mult"])
    multiple = 2 ** (levels - 1)
    _require(
        config["image_size"] % multiple == 0,
        f"data.image_size={config['image_size']} is not a multiple of 2^{levels - 1}, which "
        "the original's U-Net of model.ch_mult needs.",
    )
    return config


def translate_score_sde_config(config: Mapping[str, Any], source: str = "") -> ImportSpec:
    """The ImportSpec of a score_sde ``config.to_dict()``; ImportRefusedError where not exact."""
    data, model = _section(config, "data"), _section(config, "model")
    training = _section(config, "training")
    sde_name = _field(training, "training", "sde")
    _require(sde_name in SDE_TYPES, f"training.sde={sde_name!r} is not vesde, vpsde or subvpsde.")
    name = _field(model, "model", "name")
    _require(name == MODEL_NAME, f"model.name={name!r} is not NCSN++ / DDPM++ ('ncsnpp').")
    # sub-VP models are always called with continuous times (get_score_fn)
    continuous = bool(_field(training, "training", "continuous")) or sde_name == "subvpsde"
    _require(
        continuous,
        f"training.continuous=False with {sde_name} (the discrete SMLD / DDPM conditioning) has "
        "no scoregen twin.",
    )
    embedding = _field(model, "model", "embedding_type")
    _require(
        embedding == EMBEDDING_OF_SDE[sde_name],
        f"model.embedding_type={embedding!r} with {sde_name} has no scoregen twin (it needs "
        f"{EMBEDDING_OF_SDE[sde_name]!r}).",
    )
    scale_by_sigma = bool(_field(model, "model", "scale_by_sigma"))
    _require(
        scale_by_sigma == SCALE_BY_SIGMA_OF_SDE[sde_name],
        f"model.scale_by_sigma={scale_by_sigma} with {sde_name} has no scoregen twin.",
    )
    nonlinearity = _field(model, "model", "nonlinearity")
    _require(
        nonlinearity == NONLINEARITY,
        f"model.nonlinearity={nonlinearity!r} is not 'swish', the one scoregen's NCSN++ has.",
    )
    network_config = _network_config(data, model)
    for key, allowed in CHOICES.items():
        _require(
            str(network_config[key]).lower() in allowed,
            f"model.{key}={network_config[key]!r} is not one of {', '.join(allowed)}.",
        )
    reduce_mean = bool(training.get("reduce_mean", False))
    likelihood = bool(training.get("likelihood_weighting", False))
    return ImportSpec(
        network=NETWORK_OF_SDE[sde_name],
        network_config=network_config,
        sde=_sde(model, sde_name),
        data_centered=bool(data["centered"]),
        ema_rate=float(model["ema_rate"]) if "ema_rate" in model else None,
        sampler=_sampler(config.get("sampling", {})),
        loss={
            "reduce": "mean" if reduce_mean else "sum",
            "weighting": "likelihood" if likelihood else "std2",
        },
        source=source,
    )


def score_sde_sigmas(config: Mapping[str, Any]) -> np.ndarray:
    """The original's ``sigmas`` buffer: geometric from sigma_max down to sigma_min, num_scales."""
    model = _section(config, "model")
    sigma_max = float(_field(model, "model", "sigma_max"))
    sigma_min = float(_field(model, "model", "sigma_min"))
    count = int(_field(model, "model", "num_scales"))
    return np.exp(np.linspace(math.log(sigma_max), math.log(sigma_min), count))


def load_score_sde_weights(
    net: NCSNpp,
    state_dict: Mapping[str, Any],
    config: Mapping[str, Any],
    prefix: str = "",
    what: str = "checkpoint",
) -> None:
    """Assign a score_sde state_dict to `net`; its ``sigmas`` buffer must be the config's."""
    buffer_key = f"{prefix}{SIGMAS_BUFFER}"
    if buffer_key in state_dict:
        stored = np.asarray(state_dict[buffer_key], dtype=np.float64)
        expected = score_sde_sigmas(config)
        _require(
            stored.shape == expected.shape
            and np.allclose(stored, expected, rtol=SIGMAS_RTOL, atol=0.0),
            f"the {what}'s {buffer_key!r} (noise levels {stored.max():g} .. {stored.min():g}, "
            f"{stored.size} of them) is not the configuration's ({expected[0]:g} .. "
            f"{expected[-1]:g}, {expected.size}).",
        )
        state_dict = {key: value for key, value in state_dict.items() if key != buffer_key}
    assign_state_dict(score_sde_targets(net, prefix), state_dict, what)


# ----------------------------------------------------------------------------- built-in configs


def _merge(*parts: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Section-wise merge of config dicts, later parts winning (ConfigDict overrides)."""
    merged: dict[str, dict[str, Any]] = {}
    for part in parts:
        for section, fields in part.items():
            merged.setdefault(section, {}).update(fields)
    return merged


_CIFAR10_DEFAULTS = {  # configs/default_cifar10_configs.py
    "training": {
        "batch_size": 128,
        "n_iters": 1300001,
        "likelihood_weighting": False,
        "continuous": True,
        "reduce_mean": False,
    },
    "sampling": {"n_steps_each": 1, "noise_removal": True, "probability_flow": False, "snr": 0.16},
    "data": {
        "dataset": "CIFAR10",
        "image_size": 32,
        "random_flip": True,
        "centered": False,
        "uniform_dequantization": False,
        "num_channels": 3,
    },
    "model": {
        "sigma_min": 0.01,
        "sigma_max": 50.0,
        "num_scales": 1000,
        "beta_min": 0.1,
        "beta_max": 20.0,
        "dropout": 0.1,
        "embedding_type": "fourier",
    },
}
_LSUN_DEFAULTS = {  # configs/default_lsun_configs.py
    "training": {
        "batch_size": 64,
        "n_iters": 2400001,
        "likelihood_weighting": False,
        "continuous": True,
        "reduce_mean": False,
    },
    "sampling": {"n_steps_each": 1, "noise_removal": True, "probability_flow": False, "snr": 0.075},
    "data": {
        "dataset": "LSUN",
        "image_size": 256,
        "random_flip": True,
        "uniform_dequantization": False,
        "centered": False,
        "num_channels": 3,
    },
    "model": {
        "sigma_max": 378.0,
        "sigma_min": 0.01,
        "num_scales": 2000,
        "beta_min": 0.1,
        "beta_max": 20.0,
        "dropout": 0.0,
        "embedding_type": "fourier",
    },
}
_NCSNPP_MODEL = {  # the model block shared by the NCSN++ / DDPM++ files
    "name": "ncsnpp",
    "normalization": "GroupNorm",
    "nonlinearity": "swish",
    "nf": 128,
    "ch_mult": [1, 2, 2, 2],
    "num_res_blocks": 4,
    "attn_resolutions": [16],
    "resamp_with_conv": True,
    "conditional": True,
    "fir": True,
    "fir_kernel": [1, 3, 3, 1],
    "skip_rescale": True,
    "resblock_type": "biggan",
    "progressive": "none",
    "progressive_input": "residual",
    "progressive_combine": "sum",
    "attention_type": "ddpm",
    "init_scale": 0.0,
    "fourier_scale": 16,
    "conv_size": 3,
}
_VE = {
    "training": {"sde": "vesde", "continuous": True},
    "sampling": {"method": "pc", "predictor": "reverse_diffusion", "corrector": "langevin"},
    "model": {"scale_by_sigma": True, "ema_rate": 0.999},
}


def _vp_like(sde: str) -> dict[str, dict[str, Any]]:
    """The VP / sub-VP files' shared settings (continuous, Euler-Maruyama, centred data)."""
    return {
        "training": {"sde": sde, "continuous": True, "reduce_mean": True},
        "sampling": {"method": "pc", "predictor": "euler_maruyama", "corrector": "none"},
        "data": {"centered": True},
        "model": {"scale_by_sigma": False, "ema_rate": 0.9999, "embedding_type": "positional"},
    }


_DDPMPP = {"model": {"fir": False, "progressive_input": "none"}}
_DEEP = {"training": {"n_iters": 950001}, "model": {"num_res_blocks": 8}}
_LSUN_256_MODEL = {  # the 256x256 NCSN++ of church / bedroom / CelebA-HQ / FFHQ
    "model": {
        "ch_mult": [1, 1, 2, 2, 2, 2, 2],
        "num_res_blocks": 2,
        "progressive": "output_skip",
        "progressive_input": "input_skip",
    }
}
_HQ_1024 = {  # configs/ve/{ffhq,celebahq}_ncsnpp_continuous.py (standalone files)
    "training": {
        "batch_size": 8,
        "n_iters": 2400001,
        "sde": "vesde",
        "continuous": True,
        "likelihood_weighting": False,
    },
    "sampling": {
        "method": "pc",
        "predictor": "reverse_diffusion",
        "corrector": "langevin",
        "probability_flow": False,
        "snr": 0.15,
        "n_steps_each": 1,
        "noise_removal": True,
    },
    "data": {
        "image_size": 1024,
        "centered": False,
        "random_flip": True,
        "uniform_dequantization": False,
        "num_channels": 3,
    },
    "model": {
        **_NCSNPP_MODEL,
        "scale_by_sigma": True,
        "sigma_max": 1348.0,
        "num_scales": 2000,
        "ema_rate": 0.9999,
        "sigma_min": 0.01,
        "nf": 16,
        "ch_mult": [1, 2, 4, 8, 16, 32, 32, 32],
        "num_res_blocks": 1,
        "dropout": 0.0,
        "progressive": "output_skip",
        "progressive_input": "input_skip",
        "embedding_type": "fourier",
    },
}
_CIFAR10_NCSNPP = _merge(_CIFAR10_DEFAULTS, {"model": _NCSNPP_MODEL})
_LSUN_NCSNPP = _merge(_LSUN_DEFAULTS, {"model": _NCSNPP_MODEL}, _VE, _LSUN_256_MODEL)

BUILTIN_CONFIGS: dict[str, dict[str, dict[str, Any]]] = {
    "ve/cifar10_ncsnpp_continuous": _merge(_CIFAR10_NCSNPP, _VE),
    "ve/cifar10_ncsnpp_deep_continuous": _merge(_CIFAR10_NCSNPP, _VE, _DEEP),
    "vp/cifar10_ddpmpp_continuous": _merge(_CIFAR10_NCSNPP, _vp_like("vpsde"), _DDPMPP),
    "vp/cifar10_ddpmpp_deep_continuous": _merge(_CIFAR10_NCSNPP, _vp_like("vpsde"), _DDPMPP, _DEEP),
    "vp/cifar10_ncsnpp_continuous": _merge(_CIFAR10_NCSNPP, _vp_like("vpsde")),
    "vp/cifar10_ncsnpp_deep_continuous": _merge(_CIFAR10_NCSNPP, _vp_like("vpsde"), _DEEP),
    "subvp/cifar10_ddpmpp_continuous": _merge(_CIFAR10_NCSNPP, _vp_like("subvpsde"), _DDPMPP),
    "subvp/cifar10_ddpmpp_deep_continuous": _merge(
        _CIFAR10_NCSNPP, _vp_like("subvpsde"), _DDPMPP, _DEEP
    ),
    "subvp/cifar10_ncsnpp_continuous": _merge(_CIFAR10_NCSNPP, _vp_like("subvpsde")),
    "subvp/cifar10_ncsnpp_deep_continuous": _merge(_CIFAR10_NCSNPP, _vp_like("subvpsde"), _DEEP),
    "ve/celebahq_256_ncsnpp_continuous": _merge(
        _LSUN_NCSNPP, {"data": {"dataset": "CelebAHQ"}, "model": {"sigma_max": 348.0}}
    ),
    "ve/ffhq_256_ncsnpp_continuous": _merge(
        _LSUN_NCSNPP, {"data": {"dataset": "FFHQ"}, "model": {"sigma_max": 348.0}}
    ),
    "ve/church_ncsnpp_continuous": _merge(
        _LSUN_NCSNPP, {"data": {"category": "church_outdoor"}, "model": {"sigma_max": 380.0}}
    ),
    "ve/bedroom_ncsnpp_continuous": _merge(_LSUN_NCSNPP, {"data": {"category": "bedroom"}}),
    "ve/ffhq_ncsnpp_continuous": _merge(
        _HQ_1024, {"training": {"reduce_mean": True}, "data": {"dataset": "FFHQ"}}
    ),
    "ve/celebahq_ncsnpp_continuous": _merge(
        _HQ_1024, {"training": {"reduce_mean": False}, "data": {"dataset": "CelebAHQ"}}
    ),
}
"""The original's continuous NCSN++ / DDPM++ configuration files, in ``config.to_dict()`` form
(data, model, training, sampling; eval, optim and device left out), by file path."""


def list_configs() -> list[str]:
    """Names of the built-in configurations."""
    return sorted(BUILTIN_CONFIGS)


def score_sde_spec(config: str | Mapping[str, Any]) -> ImportSpec:
    """The ImportSpec of a built-in configuration name or of a ``config.to_dict()`` mapping."""
    if isinstance(config, str):
        if config not in BUILTIN_CONFIGS:
            raise ImportRefusedError(
                f"no built-in configuration {config!r}; known: {', '.join(list_configs())}."
            )
        return translate_score_sde_config(BUILTIN_CONFIGS[config], source=config)
    return translate_score_sde_config(config)


__all__ = [
    "BUILTIN_CONFIGS",
    "ImportSpec",
    "list_configs",
    "load_score_sde_weights",
    "score_sde_sigmas",
    "score_sde_spec",
    "translate_score_sde_config",
]
