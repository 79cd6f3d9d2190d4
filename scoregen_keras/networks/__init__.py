"""Score networks and a registry of named configurations; the standard FID's feature network.

Every score network is called as ``net(x, cond, training=False)``, returns the raw output of x's
shape and has an attribute ``conditioning`` in {"t", "sigma", "sigma_index", "none"}.
To register a network, import its class here and add one line per named config to CONFIGS.

The FID Inception network (`fid_inception`, its weights files `fid_weights`) is a feature
network, not a score network: it is built by `load_fid_inception` (or `build_fid_inception`,
weights to load), not through CONFIGS. The statistics of its features and the FID are results
(`scoregen_keras.runs.fid_statistics`).
"""

from __future__ import annotations

from typing import Any

import keras

from scoregen_keras.networks.fid_inception import FIDError, build_fid_inception
from scoregen_keras.networks.fid_weights import (
    convert_fid_weights,
    find_fid_weights,
    load_fid_inception,
)
from scoregen_keras.networks.mlp import MLPScoreNet
from scoregen_keras.networks.ncsn import NCSN, NCSNv2
from scoregen_keras.networks.ncsnpp import CONFIGS as NCSNPP_CONFIGS
from scoregen_keras.networks.ncsnpp import DDPMpp, NCSNpp

FLOAT32 = "float32"
# name -> (network class, default constructor arguments); get_network's kwargs override them
CONFIGS: dict[str, tuple[type[keras.Model], dict[str, Any]]] = {
    "mlp": (MLPScoreNet, {}),
    "mlp/toy": (MLPScoreNet, {"dim": 2, "hidden": (128, 128, 128), "activation": "silu"}),
    "mlp/tiny": (MLPScoreNet, {"dim": 2, "hidden": (32, 32), "n_freq": 4}),
    # NCSN (Song & Ermon 2019): CIFAR-10 ngf=128, MNIST ngf=64, L = num_classes = 10 levels
    "ncsn": (NCSN, {}),
    "ncsn/cifar10": (NCSN, {"image_size": 32, "channels": 3, "ngf": 128, "num_classes": 10}),
    "ncsn/mnist": (NCSN, {"image_size": 28, "channels": 1, "ngf": 64, "num_classes": 10}),
    "ncsn/digits": (NCSN, {"image_size": 8, "channels": 1, "ngf": 32, "num_classes": 10}),
    "ncsn/tiny": (NCSN, {"image_size": 8, "channels": 1, "ngf": 8, "num_classes": 4}),
    # NCSNv2 (Song & Ermon 2020), unconditional; its σ schedule (σ_1, L) is not a network setting.
    # No MNIST config in the paper: ngf=64 as NCSN's.
    "ncsnv2": (NCSNv2, {}),
    "ncsnv2/cifar10": (NCSNv2, {"image_size": 32, "channels": 3, "ngf": 128}),
    "ncsnv2/mnist": (NCSNv2, {"image_size": 28, "channels": 1, "ngf": 64}),
    "ncsnv2/digits": (NCSNv2, {"image_size": 8, "channels": 1, "ngf": 32}),
    "ncsnv2/tiny": (NCSNv2, {"image_size": 8, "channels": 1, "ngf": 8}),
    # NCSN++ / DDPM++ (Song et al. 2021): ncsnpp|ddpmpp, /cifar10[-deep], /digits, /mnist, /tiny
    **NCSNPP_CONFIGS,
}


def get_network(name: str, **config: Any) -> keras.Model:
    """Build the network registered as `name`, with `config` overriding its defaults.

    Its layers take the global dtype policy (e.g. mixed_bfloat16 inside
    ``distribute.precision_scope``); the network's own call, where the conditioning is
    embedded, runs in float32 (dtype="float32" unless `config` says otherwise).
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown network {name!r}; expected one of {sorted(CONFIGS)}")
    cls, defaults = CONFIGS[name]
    return cls(**{"dtype": FLOAT32, **defaults, **config})


__all__ = [
    "CONFIGS",
    "NCSN",
    "DDPMpp",
    "FIDError",
    "MLPScoreNet",
    "NCSNpp",
    "NCSNv2",
    "build_fid_inception",
    "convert_fid_weights",
    "find_fid_weights",
    "get_network",
    "load_fid_inception",
]
