"""Exact likelihoods through the probability-flow ODE (Song et al. 2021, Appendix D.2), on Keras.

log p_eps(x) = log p_T(x_T) + int_eps^T div F(x_t, t) dt, with F = f - g^2 s / 2 the ODE drift.
The state (all examples flattened, plus one log-density increment per example) is integrated by
``scipy.integrate.solve_ivp`` (RK45) in float64; every right-hand side evaluates the drift and
its divergence on the backend (compiled through ``backend.jit``) in one call over the whole batch.
``method="dopri5"`` runs the same RK45 compiled on the backend instead
(``scoregen_keras.sampling.dopri``).
The divergence is exact (one forward-mode JVP per data dimension, all stacked into one batched
JVP; for low-dimensional data) or the Hutchinson-Skilling estimate v^T J_F v with ONE probe v per
example fixed for the whole solve. Same names, signature and numbers as ``reference.likelihood``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from keras import ops
from scipy.integrate import solve_ivp

from reference.utils import require_finite
from scoregen_keras import backend
from scoregen_keras.choices import DIVERGENCES, ODE_SOLVERS, PROBES
from scoregen_keras.sampling import dopri
from scoregen_keras.sampling.counter_noise import DEQUANTIZE_STREAM, PROBE_STREAM
from scoregen_keras.sampling.noise import NoiseSource, Seed
from scoregen_keras.sde import SDE, per_example, sum_over_dims, to_float

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]

UINT8_LEVELS = 256
METHODS = ODE_SOLVERS  # solve_ivp on the host; the same solver compiled
LOG_2 = math.log(2.0)
SQRT_2 = math.sqrt(2.0)


def draw_probe(seed: Seed, shape: tuple[int, ...], probe: str) -> Tensor:
    """Hutchinson probe v with E[v v^T] = I: Gaussian z, or Rademacher sign(z); one normal draw.

    ``seed`` as the samplers' (`sampling.noise`): with per-sample seeds, the probe of example i
    is draw 0 of its seed on the probe stream (``counter_noise.PROBE_STREAM``).
    """
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose from {PROBES}")
    z = NoiseSource(shape, seed, stream=PROBE_STREAM).draw_one()
    return ops.where(z >= 0.0, 1.0, -1.0) if probe == "rademacher" else z


def probability_flow_drift(score_fn: ScoreFn, sde: SDE) -> Callable[[Tensor, Tensor], Tensor]:
    """The drift f(x,t) - g(t)^2 s(x,t)/2 of the probability-flow ODE (Song et al. 2021, eq. 13)."""
    reverse = sde.reverse(score_fn, probability_flow=True)
    return lambda x, t: reverse.sde(x, t)[0]


def exact_divergence(
    drift_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor
) -> tuple[Tensor, Tensor]:
    """(F(x, t), tr dF/dx per example): e_j^T J_F e_j for every unit vector e_j, as ONE stacked JVP.

    The batch is repeated D times (D = number of data dimensions); row (b, j) carries the
    tangent e_j, so one batched forward-mode pass gives every diagonal entry of the Jacobian.
    """
    batch, dims = x.shape[0], tuple(x.shape[1:])
    n_dims = math.prod(dims)
    unit = ops.reshape(ops.eye(n_dims, dtype=x.dtype), (1, n_dims, *dims))
    tangents = ops.reshape(ops.tile(unit, (batch,) + (1,) * (len(dims) + 1)), (-1, *dims))
    x_rep = ops.reshape(ops.repeat(x[:, None], n_dims, axis=1), (-1, *dims))
    t_rep = ops.repeat(t, n_dims)
    drift_rep, jvp = backend.jvp(lambda y: drift_fn(y, t_rep), x_rep, tangents)
    diagonal = ops.sum(ops.reshape(jvp * tangents, (batch, n_dims, n_dims)), axis=2)
    drift = ops.reshape(drift_rep, (batch, n_dims, *dims))[:, 0]
    return drift, ops.sum(diagonal, axis=1)


def hutchinson_divergence(
    drift_fn: Callable[[Tensor, Tensor], Tensor], x: Tensor, t: Tensor, v: Tensor
) -> tuple[Tensor, Tensor]:
    """(F(x), v^T J_F v per example): the Hutchinson-Skilling estimate, E_v[v^T J v] = tr J."""
    drift, jvp = backend.jvp(lambda y: drift_fn(y, t), x, v)
    return drift, sum_over_dims(v * jvp)


def _state_rhs(
    score_fn: ScoreFn, sde: SDE, divergence: str, shape: tuple[int, ...], v: Tensor
) -> Callable[[Tensor, Tensor], Tensor]:
    """d/dt of the ODE state (x flattened, then one log-density increment per example) at time t.

    Instantaneous change of variables: d log p_t(x_t) / dt = -div F(x_t, t), so integrating
    div F from eps to T gives log p_eps(x) - log p_T(x_T).
    """
    drift_fn = probability_flow_drift(score_fn, sde)
    n_state = math.prod(shape)

    def state_rhs(y: Tensor, t: Tensor) -> Tensor:
        x_t = ops.reshape(y[:n_state], shape)
        t = per_example(t, x_t)
        if divergence == "exact":
            drift, div = exact_divergence(drift_fn, x_t, t)
        else:
            drift, div = hutchinson_divergence(drift_fn, x_t, t, v)
        return ops.concatenate([ops.reshape(drift, (-1,)), div])

    return state_rhs


def ode_likelihood(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    seed: Any = None,
    divergence: str = "exact",
    probe: str = "rademacher",
    *,  # the reference's score_jacobian_fn and jvp_fn come next there: keywords stay unambiguous
    eps: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    v: Tensor | None = None,
    prior_logp_fn: Callable[[Tensor], Tensor] | None = None,
    jit: bool = True,
    method: str = "RK45",
) -> tuple[np.ndarray, np.ndarray, int]:
    """log p_eps(x) per example in nats via the probability-flow ODE; returns (log_p, z, nfe).

    ``divergence="exact"``: tr J_F by one JVP per data dimension (low-dimensional data).
    ``"hutchinson"``: v^T J_F v with ONE probe per example fixed for the whole solve, either
    ``v`` or ``draw_probe(seed, x.shape, probe)``. ``prior_logp_fn`` defaults to
    ``sde.prior_logp``. log_p and z come back as float64 NumPy arrays (the solver's state);
    ``nfe`` counts ODE right-hand sides (each one forward-mode pass of the score).
    ``method``: "RK45", SciPy's ``solve_ivp`` on the host in float64, or "dopri5", the same
    RK45 compiled on the backend in the default float dtype (``scoregen_keras.sampling.dopri``).
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose from {DIVERGENCES}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    x = np.asarray(ops.convert_to_numpy(x), dtype=np.float64)
    shape, batch = x.shape, x.shape[0]
    eps = sde.eps if eps is None else eps
    prior_logp_fn = sde.prior_logp if prior_logp_fn is None else prior_logp_fn
    if divergence == "hutchinson" and v is None:
        if seed is None:
            raise ValueError('divergence="hutchinson" needs a seed (or a probe v)')
        v = draw_probe(seed, shape, probe)
    v = ops.zeros(shape) if v is None else to_float(v)  # unused by the exact divergence
    n_state = x.size
    # the state: x flattened, then the log-density increment of each example
    y0 = np.concatenate([x.ravel(), np.zeros(batch)])
    state_rhs = _state_rhs(score_fn, sde, divergence, shape, v)
    solve = _solve_compiled if method == dopri.METHOD else _solve_on_host
    with backend.no_grad():
        y, nfe = solve(state_rhs, y0, eps, sde.T, rtol, atol, jit)
        z = y[:n_state].reshape(shape)
        prior_logp = np.asarray(ops.convert_to_numpy(prior_logp_fn(to_float(z))), np.float64)
    return prior_logp + y[n_state:], z, nfe


def _solve_on_host(
    state_rhs: Callable[[Tensor, Tensor], Tensor],
    y0: np.ndarray,
    t_start: float,
    t_end: float,
    rtol: float,
    atol: float,
    jit: bool,
) -> tuple[np.ndarray, int]:
    """(y(t_end), NFE) by ``solve_ivp`` RK45 in float64, each right-hand side on the backend."""
    rhs = state_rhs
    if jit:  # every call has y0's shape and a scalar t
        rhs = backend.jit(state_rhs, example_args=[to_float(y0), to_float(t_start)])
    nfe = 0

    def ode_func(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        values = ops.convert_to_numpy(rhs(to_float(y), to_float(t)))
        return require_finite(np.asarray(values, np.float64), t)

    solution = solve_ivp(ode_func, (t_start, t_end), y0, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"likelihood ODE solve failed: {solution.message}")
    return solution.y[:, -1], nfe


def _solve_compiled(
    state_rhs: Callable[[Tensor, Tensor], Tensor],
    y0: np.ndarray,
    t_start: float,
    t_end: float,
    rtol: float,
    atol: float,
    jit: bool,
) -> tuple[np.ndarray, int]:
    """(y(t_end), NFE) by the same RK45 on the backend (``dopri``), in the default float dtype."""
    start = dopri.start(state_rhs, t_start, t_end, rtol, atol)
    steps = dopri.attempt_steps(state_rhs, t_start, t_end, rtol, atol)
    if jit:
        start, steps = backend.jit(start), backend.jit(steps)
    y, nfe = dopri.solve(start, steps, to_float(y0), t_start, t_end, desc="likelihood dopri5")
    return np.asarray(ops.convert_to_numpy(y), np.float64), nfe


def bits_per_dim(log_p: Tensor, n_dims: int, n_bins: int | None = None) -> Tensor:
    """Bits per dimension of log-densities in nats (NumPy in, NumPy out; tensors likewise).

    Without ``n_bins``: -log_p / (D log 2). With ``n_bins`` (256 for 8-bit data) the log-density
    is that of dequantised data scaled to [0, 1], and the discrete likelihood of the integer data
    gives bpd = -(log_p / D - log n_bins) / log 2: the continuous figure plus log2(n_bins) = 8
    bits for 8-bit data. (Data scaled to [-1, 1] first needs log_p + D log 2 to be in [0, 1].)
    """
    offset = 0.0 if n_bins is None else math.log(n_bins)
    return -(log_p / n_dims - offset) / LOG_2


def dequantize(
    x_int: Tensor, seed: Seed = None, n_bins: int = UINT8_LEVELS, z: Tensor | None = None
) -> Tensor:
    """Uniform dequantisation to [0, 1]: (x + u) / n_bins, u = Phi(z), z ~ N(0, I) (or given z).

    ``seed`` as the samplers': with per-sample seeds, z of example i is draw 0 of its seed on
    the dequantisation stream (``counter_noise.DEQUANTIZE_STREAM``).
    """
    x_int = to_float(x_int)
    if z is None:
        z = NoiseSource(tuple(x_int.shape), seed, stream=DEQUANTIZE_STREAM).draw_one()
    z = to_float(z)
    u = 0.5 * (1.0 + ops.erf(z / SQRT_2))  # Phi(z) ~ U(0, 1), as the reference draws it
    return (x_int + u) / n_bins


__all__ = [
    "DIVERGENCES",
    "PROBES",
    "UINT8_LEVELS",
    "bits_per_dim",
    "dequantize",
    "draw_probe",
    "exact_divergence",
    "hutchinson_divergence",
    "ode_likelihood",
    "probability_flow_drift",
]
