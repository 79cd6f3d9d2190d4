"""A small training loop for the reference score models, and the relative score error metric."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reference import losses
from reference.models import Adam, Grads, ScoreModel
from reference.utils import as_batch

Array = np.ndarray
SampleData = Callable[[np.random.Generator, int], Array]
LossResult = tuple[float, Grads]


@dataclass
class TrainHistory:
    """What `train` did: the loss at every step, the number of steps and the wall time."""

    losses: list[float] = field(default_factory=list)
    steps: int = 0
    wall_time_s: float = 0.0


@dataclass
class _LossSetup:
    """Everything a step needs besides the data batch: the model, SDE / noise levels, options."""

    model: ScoreModel
    sde: Any
    sigmas: Array | None
    sigma: float | None
    eps: float
    projection: str
    kwargs: dict[str, Any]


# Each entry draws the loss's randomness from rng (in the order written) and evaluates the loss.


def _exact(rng: np.random.Generator, x: Array, c: _LossSetup) -> LossResult:
    """No randomness."""
    return losses.exact_score_matching(c.model, x, **c.kwargs)


def _sliced(rng: np.random.Generator, x: Array, c: _LossSetup) -> LossResult:
    """Draws v = projections(rng, x.shape, kind)."""
    v = losses.projections(rng, x.shape, c.projection)
    return losses.sliced_score_matching(c.model, x, v, **c.kwargs)


def _sliced_vr(rng: np.random.Generator, x: Array, c: _LossSetup) -> LossResult:
    """Draws v = projections(rng, x.shape, kind)."""
    v = losses.projections(rng, x.shape, c.projection)
    return losses.sliced_score_matching(c.model, x, v, variance_reduced=True, **c.kwargs)


def _dsm(rng: np.random.Generator, x: Array, c: _LossSetup) -> LossResult:
    """Draws z = rng.standard_normal(x.shape)."""
    if c.sigma is None:
        raise ValueError('loss="dsm" needs sigma')
    z = rng.standard_normal(x.shape)
    return losses.denoising_score_matching(c.model, x, z, c.sigma, **c.kwargs)


def _ncsn(rng: np.random.Generator, x: Array, c: _LossSetup) -> LossResult:
    """Draws sigma_idx = rng.integers(0, L, batch), then z = rng.standard_normal(x.shape)."""
    if c.sigmas is None:
        raise ValueError('loss="ncsn" needs sigmas')
    sigma_idx = rng.integers(0, len(c.sigmas), size=len(x))
    z = rng.standard_normal(x.shape)
    return losses.ncsn_loss(c.model, x, z, sigma_idx, c.sigmas, **c.kwargs)


def _continuous(rng: np.random.Generator, x: Array, c: _LossSetup) -> LossResult:
    """Draws t = rng.uniform(eps, T, batch), then z = rng.standard_normal(x.shape)."""
    if c.sde is None:
        raise ValueError('loss="continuous" needs sde')
    t = rng.uniform(c.eps, c.sde.T, size=len(x))
    z = rng.standard_normal(x.shape)
    return losses.continuous_loss(c.model, c.sde, x, t, z, **c.kwargs)


LOSSES: dict[str, Callable[[np.random.Generator, Array, _LossSetup], LossResult]] = {
    "exact": _exact,
    "sliced": _sliced,
    "sliced_vr": _sliced_vr,
    "dsm": _dsm,
    "ncsn": _ncsn,
    "continuous": _continuous,
}


def train(
    model: ScoreModel,
    loss: str,
    sample_data: SampleData,
    steps: int,
    batch_size: int,
    rng: np.random.Generator,
    lr: float = 1e-3,
    time_budget_s: float | None = None,
    sde: Any = None,
    sigmas: Array | None = None,
    sigma: float | None = None,
    eps: float | None = None,
    projection: str = "gaussian",
    grad_clip: float | None = None,
    optimizer: Adam | None = None,
    loss_kwargs: dict[str, Any] | None = None,
) -> TrainHistory:
    """Train `model` in place with Adam on one of `LOSSES` for `steps` steps or `time_budget_s`.

    Each step draws x = sample_data(rng, batch_size), then the loss's randomness from rng
    (see the `LOSSES` entries: t ~ U(eps, T) and z for "continuous", sigma indices and z for
    "ncsn", z for "dsm", v for the sliced losses). eps defaults to sde.eps. `loss_kwargs` go to
    the loss function (e.g. weighting / reduce, or cond for exact and sliced score matching).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {loss!r}")
    setup = _LossSetup(
        model=model,
        sde=sde,
        sigmas=None if sigmas is None else np.asarray(sigmas, dtype=np.float64),
        sigma=sigma,
        eps=(sde.eps if sde is not None else 0.0) if eps is None else eps,
        projection=projection,
        kwargs=dict(loss_kwargs or {}),
    )
    optimizer = Adam(lr=lr, grad_clip=grad_clip) if optimizer is None else optimizer
    history = TrainHistory()
    start = time.perf_counter()
    for _ in range(steps):
        x = sample_data(rng, batch_size)
        value, grads = LOSSES[loss](rng, x, setup)
        optimizer.step(model.params, grads)
        history.losses.append(value)
        history.steps += 1
        if time_budget_s is not None and time.perf_counter() - start >= time_budget_s:
            break
    history.wall_time_s = time.perf_counter() - start
    return history


def relative_score_error(
    score_fn: Callable[[Array, Array], Array],
    mixture: Any,
    sde: Any,
    t: float,
    rng: np.random.Generator,
    n: int,
) -> float:
    """E‖s_θ(x_t, t) − ∇log p_t(x_t)‖² / E‖∇log p_t(x_t)‖² under p_t, with the exact mixture score.

    Draws x0 = mixture.sample(rng, n), then z = rng.standard_normal(x0.shape).
    """
    t_b = as_batch(t, n)
    alpha, std = sde.marginal_coefficients(t_b)
    x0 = mixture.sample(rng, n)
    z = rng.standard_normal(x0.shape)
    x_t = alpha[:, None] * x0 + std[:, None] * z
    true_score = mixture.score(x_t, alpha, std)
    return float(np.sum((score_fn(x_t, t_b) - true_score) ** 2) / np.sum(true_score**2))
