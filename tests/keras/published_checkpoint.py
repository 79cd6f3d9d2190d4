"""score_sde_pytorch's published ``checkpoint_N.pth`` layout, written from a state_dict.

run_lib.py saves ``{"optimizer": optimizer.state_dict(), "model": model.state_dict(), "ema":
ema.state_dict(), "step": step}`` of a ``DataParallel`` model: every model key prefixed
``module.``; ``ema`` = ``{"decay", "num_updates", "shadow_params"}`` with the shadow parameters a
list over the trainable parameters in ``named_parameters()`` order (the Fourier ``W``, created
with ``requires_grad=False``, and the ``sigmas`` buffer are not in it); Adam's state holds two
moments per trainable parameter. The state_dict given is in the original's order (buffers, here
``sigmas``, are not parameters).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np

BUFFERS = ("sigmas",)  # the registered buffer of score_sde's NCSNpp: no parameter
EMA_DECAY = 0.999
ADAM = {"lr": 2e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0, "amsgrad": False}


def write_published_checkpoint(
    path: Path,
    state_dict: Mapping[str, np.ndarray],
    fixed: Collection[str],
    ema: Mapping[str, np.ndarray] | None = None,
    step: int = 1,
) -> Path:
    """Write ``state_dict`` as the ``model`` of a published checkpoint and ``ema`` (default: the
    same weights) as its shadow parameters; ``fixed``: parameters that are not trainable."""
    import torch

    parameters = [key for key in state_dict if key not in BUFFERS]
    trainable = [key for key in parameters if key not in fixed]
    averaged = state_dict if ema is None else ema
    moments = {
        index: {
            "step": torch.tensor(float(step)),
            "exp_avg": torch.zeros(state_dict[key].shape),
            "exp_avg_sq": torch.zeros(state_dict[key].shape),
        }
        for index, key in enumerate(trainable)
    }
    checkpoint = {
        "optimizer": {
            "state": moments,
            "param_groups": [{**ADAM, "params": list(range(len(parameters)))}],
        },
        "model": {f"module.{k}": torch.from_numpy(np.array(v)) for k, v in state_dict.items()},
        "ema": {
            "decay": EMA_DECAY,
            "num_updates": step,
            "shadow_params": [torch.from_numpy(np.array(averaged[k])) for k in trainable],
        },
        "step": step,
    }
    torch.save(checkpoint, path)
    return path


def perturbed(
    state_dict: Mapping[str, np.ndarray], fixed: Collection[str], scale: float, seed: int
) -> dict[str, np.ndarray]:
    """The state_dict with N(0, scale^2) added to every trainable parameter (the raw weights of
    a run whose EMA is the given state_dict)."""
    rng = np.random.default_rng(seed)
    return {
        key: value
        if key in BUFFERS or key in fixed
        else (value + scale * rng.standard_normal(value.shape)).astype(value.dtype)
        for key, value in state_dict.items()
    }
