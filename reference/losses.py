"""Score-matching losses with hand-derived parameter gradients; each returns (loss, grads).

Every loss is a mean over the batch, and all of its randomness (projections v, noise z,
times t, noise-level indices) is passed in so that tests control it; `reference.train` draws it.

Constant conventions (the `reduce` argument of the noise-conditional losses), for a per-example
residual r of shape (batch, *dims):

* ``"squared_norm"``: ``sum(r**2)`` over dims, i.e. the design's ``‖σ s + z‖²``;
  the default of `denoising_score_matching` and `ncsn_loss`.
* ``"sum"``: ``0.5 * sum(r**2)`` over dims (score SDE code, ``reduce_mean=False``);
  the default of `continuous_loss`.
* ``"mean"``: ``mean(r**2)`` over dims (score SDE code, ``reduce_mean=True``).

All three options are accepted by all three noise-conditional losses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from reference.models import Grads, ScoreModel
from reference.utils import as_batch, batch_scalar

Array = np.ndarray

# reduce name -> (coefficient applied to sum over dims of r**2) as a function of the dim count
REDUCTIONS = {
    "squared_norm": lambda n_dims: 1.0,
    "sum": lambda n_dims: 0.5,
    "mean": lambda n_dims: 1.0 / n_dims,
}
WEIGHTINGS = ("std2", "likelihood")
PROJECTIONS = ("gaussian", "rademacher")


def _reduce_coefficient(reduce: str, x: Array) -> float:
    """c such that the per-example loss is c * sum over dims of the squared residual."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {sorted(REDUCTIONS)}, got {reduce!r}")
    return REDUCTIONS[reduce](int(np.prod(x.shape[1:])))


def _sum_dims(a: Array) -> Array:
    """Sum over every axis but the batch axis."""
    return a.reshape(len(a), -1).sum(axis=1)


def projections(rng: np.random.Generator, shape: tuple[int, ...], kind: str = "gaussian") -> Array:
    """Random projections v with E[v v^T] = I: standard normal or Rademacher (±1)."""
    if kind == "gaussian":
        return rng.standard_normal(shape)
    if kind == "rademacher":
        return 2.0 * rng.integers(0, 2, size=shape) - 1.0
    raise ValueError(f"kind must be one of {PROJECTIONS}, got {kind!r}")


def exact_score_matching(
    model: ScoreModel, x: Array, cond: Array | float | None = None
) -> tuple[float, Grads]:
    """Hyvärinen (2005) eq. 4: E[½‖s(x)‖² + tr ∇ₓs(x)] with the exact Jacobian trace.

    s is the raw model output at the fixed conditioning value `cond` (None: the model's
    default); the trace comes from pushing the identity through the network as d tangents.
    """
    n, d = x.shape
    eye = np.broadcast_to(np.eye(d), (n, d, d))
    s, jac, cache = model.jvp_forward(x, cond, eye)  # jac[b, k, j] = d s_j / d x_k
    per_example = 0.5 * np.sum(s**2, axis=1) + np.einsum("bkk->b", jac)
    grads = model.jvp_backward(cache, s / n, eye / n)
    return float(per_example.mean()), grads


def sliced_score_matching(
    model: ScoreModel,
    x: Array,
    v: Array,
    variance_reduced: bool = False,
    cond: Array | float | None = None,
) -> tuple[float, Grads]:
    """Song et al. (2019) SSM: E[vᵀ∇ₓs(x) v + ½(vᵀs(x))²]; SSM-VR uses ½‖s(x)‖² instead.

    One projection v[b] (batch, d) per example; vᵀ∇ₓs v comes from a forward-mode tangent.
    """
    n = len(x)
    s, s_dot, cache = model.jvp_forward(x, cond, v[:, None, :])  # s_dot = (∇ₓs) v
    s_dot = s_dot[:, 0, :]
    v_s = np.sum(v * s, axis=1)
    if variance_reduced:
        second, dsecond_ds = 0.5 * np.sum(s**2, axis=1), s
    else:
        second, dsecond_ds = 0.5 * v_s**2, v_s[:, None] * v
    per_example = np.sum(v * s_dot, axis=1) + second
    grads = model.jvp_backward(cache, dsecond_ds / n, v[:, None, :] / n)
    return float(per_example.mean()), grads


def _weighted_residual_loss(
    model: ScoreModel,
    x_t: Array,
    t: Array,
    alpha: Array,
    std: Array,
    scale: Array,
    target: Array,
    weight: Array,
    reduce: str,
) -> tuple[float, Grads]:
    """mean_b weight_b · reduce(scale_b s(x_t) + target_b): the shared core of DSM-type losses."""
    n = len(x_t)
    s, cache = model.score_forward(x_t, t, alpha, std)
    scale_b, weight_b = batch_scalar(scale, x_t), batch_scalar(weight, x_t)
    residual = scale_b * s + target
    coeff = _reduce_coefficient(reduce, x_t)
    per_example = weight * coeff * _sum_dims(residual**2)
    dscore = (2.0 * coeff / n) * weight_b * scale_b * residual
    grads, _ = model.score_backward(cache, dscore)
    return float(per_example.mean()), grads


def denoising_score_matching(
    model: ScoreModel, x: Array, z: Array, sigma: Array | float, reduce: str = "squared_norm"
) -> tuple[float, Grads]:
    """Vincent (2011) DSM with λ(σ)=σ²: E‖σ s(x + σz, σ) + z‖² (Song & Ermon 2019, eq. 6).

    sigma is a scalar or per-example (batch,); the score is the model's sigma-conditional score
    (alpha = 1, std = sigma); LinearScore ignores sigma.
    """
    sigma = as_batch(sigma, len(x))
    x_tilde = x + batch_scalar(sigma, x) * z
    ones = np.ones_like(sigma)
    return _weighted_residual_loss(model, x_tilde, sigma, ones, sigma, sigma, z, ones, reduce)


def ncsn_loss(
    model: ScoreModel,
    x: Array,
    z: Array,
    sigma_idx: Array,
    sigmas: Array,
    reduce: str = "squared_norm",
) -> tuple[float, Grads]:
    """NCSN objective (Song & Ermon 2019, eq. 6): DSM at σ = sigmas[sigma_idx] per example."""
    return denoising_score_matching(model, x, z, np.asarray(sigmas)[sigma_idx], reduce)


def continuous_loss(
    model: ScoreModel,
    sde: Any,
    x: Array,
    t: Array,
    z: Array,
    weighting: str = "std2",
    reduce: str = "sum",
) -> tuple[float, Grads]:
    """Score SDE objective (Song et al. 2021, eq. 7) at x_t = alpha x + std z.

    weighting="std2" (λ = std²): reduce(std·s + z);  "likelihood" (λ = g²): g²·reduce(s + z/std).
    """
    t = as_batch(t, len(x))
    alpha, std = sde.marginal_coefficients(t)
    x_t = batch_scalar(alpha, x) * x + batch_scalar(std, x) * z
    if weighting == "std2":
        scale, target, weight = std, z, np.ones_like(std)
    elif weighting == "likelihood":
        _, g = sde.sde(x_t, t)
        scale, target, weight = np.ones_like(std), z / batch_scalar(std, x), g**2
    else:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    return _weighted_residual_loss(model, x_t, t, alpha, std, scale, target, weight, reduce)
