"""Score-matching losses on Keras score functions, mirroring ``reference.losses`` name for name.

Every loss returns a scalar tensor, a mean over the batch; all randomness (projections v, noise
z, times t, noise-level indices) is passed in. Parameter gradients come from autodiff
(``backend.value_and_param_grad``); the reference's hand-derived gradients are the test oracle.

Constant conventions (``reduce``) for a per-example residual r of shape (batch, *dims), as in the
reference: "squared_norm" = sum(r**2) (default of DSM / NCSN), "sum" = 0.5 sum(r**2) (default of
`continuous_loss`), "mean" = mean(r**2).

The network -> score map (EDM-style preconditioning, shared with the reference) is
``score(x, t) = net(c_in x, cond) / std`` with ``c_in = 1 / sqrt(alpha^2 + std^2)``.
``precondition(..., preconditioning="score_sde")`` is instead score_sde's own map, for networks
trained by that code: ``score = net(x, cond) / std`` for VE (NCSN++ with scale_by_sigma: the
network outputs std times the score) and ``score = -net(x, cond) / std`` for VP and sub-VP (the
network outputs the noise z of x = alpha x0 + std z).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from scoregen_keras import backend
from scoregen_keras.choices import WEIGHTINGS
from scoregen_keras.sde import SDE, batch_scalar, per_example, sum_over_dims, to_float

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]

# reduce name -> coefficient applied to the sum over dims of r**2, as a function of the dim count
REDUCTIONS: dict[str, Callable[[int], float]] = {
    "squared_norm": lambda n_dims: 1.0,
    "sum": lambda n_dims: 0.5,
    "mean": lambda n_dims: 1.0 / n_dims,
}
PROJECTIONS = ("gaussian", "rademacher")
PRECONDITIONINGS = ("edm", "score_sde")
# score_sde's sign of the network output in the score, by SDE (models/utils.py get_score_fn)
SCORE_SDE_OUTPUT_SIGN = {"VESDE": 1.0, "VPSDE": -1.0, "SubVPSDE": -1.0}

# net.conditioning -> the scalar passed to the network, from (t, std) of the perturbation kernel
CONDITION_VALUE: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "t": lambda t, std: t,
    "sigma": lambda t, std: std,
    "none": lambda t, std: ops.zeros_like(t),
}


# --- preconditioning: raw network -> score --------------------------------------------------------


def _preconditioned(net: Any, x: Tensor, alpha: Tensor, std: Tensor, cond: Tensor) -> Tensor:
    """net(c_in x, cond) / std with c_in = 1 / sqrt(alpha^2 + std^2)."""
    # c_in gives the network unit-variance inputs for unit-variance data (EDM, Karras 2022)
    c_in = batch_scalar(ops.rsqrt(ops.square(alpha) + ops.square(std)), x)
    return net(c_in * x, cond) / batch_scalar(std, x)


def precondition(net: Any, sde: SDE, preconditioning: str = "edm") -> ScoreFn:
    """score_fn(x, t) of a network trained on an SDE, (alpha, std) = sde.marginal_coefficients(t).

    The network is conditioned on t or on std according to ``net.conditioning``;
    ``preconditioning`` is "edm" (net(c_in x, cond) / std) or "score_sde" (+-net(x, cond) / std).
    """
    if net.conditioning not in CONDITION_VALUE:
        raise ValueError(
            f"precondition needs conditioning in {sorted(CONDITION_VALUE)}, got "
            f"{net.conditioning!r}; use sigma_conditional_score for sigma-index networks"
        )
    if preconditioning not in PRECONDITIONINGS:
        raise ValueError(
            f"preconditioning must be one of {PRECONDITIONINGS}, got {preconditioning!r}"
        )
    to_cond = CONDITION_VALUE[net.conditioning]
    sign = SCORE_SDE_OUTPUT_SIGN.get(type(sde).__name__) if preconditioning == "score_sde" else None
    if preconditioning == "score_sde" and sign is None:
        raise ValueError(
            f"score_sde's preconditioning is defined for {sorted(SCORE_SDE_OUTPUT_SIGN)}"
        )

    def score_fn(x: Tensor, t: Tensor) -> Tensor:
        x = to_float(x)  # a host array times a PyTorch tensor would go through NumPy
        t = per_example(t, x)
        alpha, std = sde.marginal_coefficients(t)
        if sign is not None:
            return sign * net(x, to_cond(t, std)) / batch_scalar(std, x)
        return _preconditioned(net, x, alpha, std, to_cond(t, std))

    return score_fn


# the reference's name for the same map
noise_conditional_score = precondition


def sigma_conditional_score(net: Any, sigmas: Tensor | None = None) -> ScoreFn:
    """score_fn(x, sigma) for the NCSN family: alpha = 1, std = sigma.

    A "sigma_index" network receives the index of the nearest level of `sigmas` (log scale).
    """
    if net.conditioning == "sigma_index":
        if sigmas is None:
            raise ValueError("a sigma_index network needs the noise levels `sigmas`")
        log_levels = ops.log(ops.convert_to_tensor(sigmas, keras.config.floatx()))

        def to_cond(t: Tensor, std: Tensor) -> Tensor:
            distance = ops.abs(ops.log(std)[:, None] - log_levels[None, :])
            return ops.cast(ops.argmin(distance, axis=1), "int32")

    else:
        to_cond = CONDITION_VALUE[net.conditioning]

    def score_fn(x: Tensor, sigma: Tensor) -> Tensor:
        x = to_float(x)
        sigma = per_example(sigma, x)
        return _preconditioned(net, x, ops.ones_like(sigma), sigma, to_cond(sigma, sigma))

    return score_fn


# --- random projections ---------------------------------------------------------------------------


def projections(seed: Any, shape: tuple[int, ...], kind: str = "gaussian") -> Tensor:
    """Random projections v with E[v v^T] = I: standard normal or Rademacher (±1)."""
    if kind == "gaussian":
        return keras.random.normal(shape, seed=seed)
    if kind == "rademacher":
        bits = keras.random.randint(shape, 0, 2, seed=seed)
        return ops.cast(2 * bits - 1, keras.config.floatx())
    raise ValueError(f"kind must be one of {PROJECTIONS}, got {kind!r}")


# --- score matching without noise -----------------------------------------------------------------


def _flat(score_fn: Callable[[Tensor], Tensor], x: Tensor) -> tuple[Callable, Tensor]:
    """score_fn and x seen on flattened inputs (batch, D)."""
    shape = tuple(ops.shape(x))
    flat_x = ops.reshape(x, (shape[0], -1))

    def flat_fn(y: Tensor) -> Tensor:
        return ops.reshape(score_fn(ops.reshape(y, shape)), (shape[0], -1))

    return flat_fn, flat_x


def exact_score_matching(score_fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Hyvärinen (2005) eq. 4: E[½‖s(x)‖² + tr ∇ₓs(x)], the trace by one backward pass per dim.

    score_fn(x) is unconditional (close over a fixed conditioning); low dimensions only.
    """
    flat_fn, flat_x = _flat(score_fn, to_float(x))
    s, vjp_fn = backend.vjp(flat_fn, flat_x)
    dim = s.shape[1]
    eye = ops.eye(dim, dtype=s.dtype)
    trace = 0.0
    for i in range(dim):
        row = vjp_fn(ops.broadcast_to(eye[i], ops.shape(s)))  # e_iᵀ ∇ₓs per example
        trace = trace + row[:, i]
    return ops.mean(0.5 * ops.sum(ops.square(s), axis=1) + trace)


def _vjv_forward(score_fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor):
    """(s, vᵀ∇ₓs v) by one forward-mode tangent."""
    s, jv = backend.jvp(score_fn, x, v)
    return s, sum_over_dims(v * jv)


def _vjv_reverse(score_fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor):
    """(s, vᵀ∇ₓs v) by one backward pass."""
    s, vjp_fn = backend.vjp(score_fn, x)
    return s, sum_over_dims(vjp_fn(v) * v)


SSM_MODES = {"jvp": _vjv_forward, "vjp": _vjv_reverse}


def sliced_score_matching(
    score_fn: Callable[[Tensor], Tensor],
    x: Tensor,
    v: Tensor,
    variance_reduced: bool = False,
    *,
    mode: str = "vjp",
) -> Tensor:
    """Song et al. (2019) SSM: E[vᵀ∇ₓs(x) v + ½(vᵀs(x))²]; SSM-VR uses ½‖s(x)‖² instead.

    One projection v[b] per example, shape of x; mode "vjp" (reverse) or "jvp" (forward mode).
    """
    if mode not in SSM_MODES:
        raise ValueError(f"mode must be one of {sorted(SSM_MODES)}, got {mode!r}")
    x, v = to_float(x), to_float(v)
    s, vjv = SSM_MODES[mode](score_fn, x, v)
    if variance_reduced:
        second = 0.5 * sum_over_dims(ops.square(s))
    else:
        second = 0.5 * ops.square(sum_over_dims(v * s))
    return ops.mean(vjv + second)


# --- denoising score matching ---------------------------------------------------------------------


def _weighted_residual_loss(
    score: Tensor, scale: Tensor, target: Tensor, weight: Tensor, reduce: str
) -> Tensor:
    """mean_b weight_b · reduce(scale_b s + target_b): the shared core of DSM-type losses."""
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {sorted(REDUCTIONS)}, got {reduce!r}")
    coeff = REDUCTIONS[reduce](math.prod(score.shape[1:]))
    residual = batch_scalar(scale, score) * score + target
    return ops.mean(weight * coeff * sum_over_dims(ops.square(residual)))


def denoising_score_matching(
    score_fn: ScoreFn, x: Tensor, z: Tensor, sigma: Tensor, reduce: str = "squared_norm"
) -> Tensor:
    """Vincent (2011) DSM with λ(σ)=σ²: E‖σ s(x + σz, σ) + z‖² (Song & Ermon 2019, eq. 6).

    score_fn(x, sigma) is sigma-conditional (see `sigma_conditional_score`).
    """
    x, z = to_float(x), to_float(z)
    sigma = per_example(sigma, x)
    score = score_fn(x + batch_scalar(sigma, x) * z, sigma)
    return _weighted_residual_loss(score, sigma, z, ops.ones_like(sigma), reduce)


def ncsn_loss(
    score_fn: ScoreFn,
    x: Tensor,
    z: Tensor,
    sigma_idx: Tensor,
    sigmas: Tensor,
    reduce: str = "squared_norm",
) -> Tensor:
    """NCSN objective (Song & Ermon 2019, eq. 6): DSM at σ = sigmas[sigma_idx] per example."""
    sigmas = ops.convert_to_tensor(sigmas, keras.config.floatx())
    sigma = ops.take(sigmas, ops.cast(sigma_idx, "int32"))
    return denoising_score_matching(score_fn, x, z, sigma, reduce)


def continuous_loss(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    z: Tensor,
    weighting: str = "std2",
    reduce: str = "sum",
) -> Tensor:
    """Score SDE objective (Song et al. 2021, eq. 7) at x_t = alpha x + std z.

    weighting="std2" (λ = std²): reduce(std·s + z);  "likelihood" (λ = g²): g²·reduce(s + z/std).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    x, z = to_float(x), to_float(z)
    t = per_example(t, x)
    alpha, std = sde.marginal_coefficients(t)
    x_t = batch_scalar(alpha, x) * x + batch_scalar(std, x) * z
    score = score_fn(x_t, t)
    if weighting == "std2":
        return _weighted_residual_loss(score, std, z, ops.ones_like(std), reduce)
    _, g = sde.sde(x_t, t)  # likelihood weighting λ = g²
    target = z / batch_scalar(std, x)
    return _weighted_residual_loss(score, ops.ones_like(std), target, ops.square(g), reduce)
