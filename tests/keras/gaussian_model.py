"""A stand-in for a trained ScoreModel whose score is exact: data N(0, DATA_STD² I).

Perturbed by an SDE or by noise of level sigma the data stay Gaussian, so the score is known at
every t and sigma; runs.draw_samples and the run tasks read no more of a model than this.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
from keras import ops

DATA_STD = 0.5

Tensor = Any


def _per_example(values: Tensor, x: Tensor) -> Tensor:
    """(batch,) values shaped to broadcast against x (batch, *dims)."""
    return ops.reshape(values, (-1,) + (1,) * (len(x.shape) - 1))


def sigma_score(x: Tensor, sigma: Tensor) -> Tensor:
    """∇ log of N(0, (DATA_STD² + σ²) I), σ per example."""
    return -x / (DATA_STD**2 + ops.square(_per_example(sigma, x)))


def time_score(sde: Any) -> Any:
    """score_fn(x, t) = -x / (mean_coeff² DATA_STD² + std²) of the data perturbed by `sde`."""

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        mean, std = sde.marginal_prob(ops.ones_like(x), t)
        return -x / (ops.square(mean) * DATA_STD**2 + ops.square(_per_example(std, x)))

    return score_fn


def gaussian_model(sde: Any = None, sigmas: np.ndarray | None = None) -> SimpleNamespace:
    """What draw_samples and the run tasks read of a ScoreModel: an SDE model (score of t) or,
    with ``sde`` None, a model of the noise levels ``sigmas`` (score of sigma)."""
    return SimpleNamespace(
        sde=sde,
        sigmas=None if sigmas is None else ops.convert_to_tensor(sigmas, "float32"),
        score_fn=lambda use_ema=True: sigma_score if sde is None else time_score(sde),
        score_variables=lambda use_ema=True: [],
    )
