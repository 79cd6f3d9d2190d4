"""Exact likelihoods through the probability-flow ODE (Song et al. 2021, Appendix D.2).

log p_eps(x) = log p_T(x_T) + int_eps^T div F(x_t, t) dt, with F = f - g^2 s / 2 the ODE drift,
integrated jointly with the state by ``scipy.integrate.solve_ivp`` over the whole (flattened)
batch. The result is the density of the SDE marginal at ``eps`` (for VE, sigma(eps) ~ sigma_min
is never zero), in nats per example. Bits/dim and uniform dequantisation of 8-bit data are here too.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.integrate import solve_ivp
from scipy.special import ndtr

from reference.samplers import probability_flow_drift
from reference.utils import batch_scalar, require_finite

FD_REL_STEP = 1e-3  # finite-difference step of the score JVP, relative to the marginal std(t)
UINT8_LEVELS = 256
DIVERGENCES = ("exact", "hutchinson")
PROBES = ("rademacher", "gaussian")

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
JacobianFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
JvpFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _sum_over_dims(x: np.ndarray) -> np.ndarray:
    """Sum (batch, *dims) over all but the batch axis."""
    return x.reshape(x.shape[0], -1).sum(axis=1)


def draw_probe(rng: np.random.Generator, shape: tuple[int, ...], probe: str) -> np.ndarray:
    """Hutchinson probe v with E[v v^T] = I: Gaussian z, or Rademacher sign(z); one normal draw."""
    if probe not in PROBES:
        raise ValueError(f"unknown probe {probe!r}; choose from {PROBES}")
    z = rng.standard_normal(shape)
    return np.where(z >= 0.0, 1.0, -1.0) if probe == "rademacher" else z


def _drift_jvp(sde, x: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """J_f v by a central difference; exact for the affine forward drift of VE, VP and sub-VP."""
    return 0.5 * (sde.sde(x + v, t)[0] - sde.sde(x - v, t)[0])


def _drift_divergence(sde, x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """tr J_f per example: J_f e_j for every unit vector e_j, evaluated as one stacked batch."""
    batch, dims = x.shape[0], x.shape[1:]
    n_dims = int(np.prod(dims))
    unit = np.eye(n_dims).reshape((1, n_dims, *dims))
    x_rep = np.broadcast_to(x[:, None], (batch, n_dims, *dims)).reshape((-1, *dims))
    jvp = _drift_jvp(
        sde,
        x_rep,
        np.repeat(t, n_dims),
        np.broadcast_to(unit, (batch, n_dims, *dims)).reshape((-1, *dims)),
    )
    return np.einsum("bjj->b", jvp.reshape(batch, n_dims, n_dims))


def finite_difference_jvp(score_fn: ScoreFn, sde, fd_rel_step: float = FD_REL_STEP) -> JvpFn:
    """J_s v ~ (s(x + h v) - s(x - h v)) / 2h with h = fd_rel_step * std(t): two score NFE."""

    def jvp(x: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        _, std = sde.marginal_coefficients(t)
        h = batch_scalar(fd_rel_step * std, x)
        return (score_fn(x + h * v, t) - score_fn(x - h * v, t)) / (2.0 * h)

    return jvp


def ode_likelihood(
    score_fn: ScoreFn,
    sde,
    x: np.ndarray,
    rng: np.random.Generator | None = None,
    divergence: str = "exact",
    probe: str = "rademacher",
    score_jacobian_fn: JacobianFn | None = None,
    eps: float | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    jvp_fn: JvpFn | None = None,
    prior_logp_fn: Callable[[np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """log p_eps(x) per example in nats via the probability-flow ODE; returns (log_p, z, nfe).

    ``divergence="exact"``: div F = tr J_f - g^2 tr(score_jacobian_fn(x, t)) / 2, with
    ``score_jacobian_fn`` returning (batch, D, D). ``"hutchinson"``: div F ~ v^T J_F v, ONE probe v
    per example fixed for the whole solve (drawn first: ``draw_probe(rng, x.shape, probe)``); the
    score's JVP comes from ``jvp_fn(x, t, v)`` or, if absent, central finite differences
    (``finite_difference_jvp``). The drift's own Jacobian is applied by differences (exact, f being
    affine). ``prior_logp_fn`` defaults to ``sde.prior_logp``. ``nfe`` counts ODE right-hand sides.
    """
    if divergence not in DIVERGENCES:
        raise ValueError(f"unknown divergence {divergence!r}; choose from {DIVERGENCES}")
    x = np.array(x, dtype=np.float64)
    shape, batch = x.shape, x.shape[0]
    eps = sde.eps if eps is None else eps
    prior_logp_fn = sde.prior_logp if prior_logp_fn is None else prior_logp_fn
    drift_fn = probability_flow_drift(score_fn, sde)
    if divergence == "exact":
        if score_jacobian_fn is None:
            raise ValueError('divergence="exact" needs score_jacobian_fn(x, t) -> (batch, D, D)')

        def div_fn(x_t: np.ndarray, t: np.ndarray) -> np.ndarray:
            _, g = sde.sde(x_t, t)
            trace_js = np.einsum(
                "bjj->b", score_jacobian_fn(x_t, t).reshape(batch, x_t[0].size, -1)
            )
            return _drift_divergence(sde, x_t, t) - 0.5 * g**2 * trace_js

    else:
        if rng is None:
            raise ValueError('divergence="hutchinson" needs rng for the probe')
        v = draw_probe(rng, shape, probe)
        score_jvp = finite_difference_jvp(score_fn, sde) if jvp_fn is None else jvp_fn

        def div_fn(x_t: np.ndarray, t: np.ndarray) -> np.ndarray:
            _, g = sde.sde(x_t, t)
            jvp_f = _drift_jvp(sde, x_t, t, v) - batch_scalar(0.5 * g**2, x_t) * score_jvp(
                x_t, t, v
            )
            return _sum_over_dims(v * jvp_f)  # Hutchinson-Skilling: E[v^T J v] = tr J

    nfe = 0
    n_state = x.size

    def ode_func(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        x_t, t_vec = y[:n_state].reshape(shape), np.full(batch, t)
        # instantaneous change of variables: d log p_t(x_t) / dt = -div F(x_t, t)
        return require_finite(np.concatenate([drift_fn(x_t, t_vec).ravel(), div_fn(x_t, t_vec)]), t)

    y0 = np.concatenate([x.ravel(), np.zeros(batch)])
    solution = solve_ivp(ode_func, (eps, sde.T), y0, method="RK45", rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"likelihood ODE solve failed: {solution.message}")
    z = solution.y[:n_state, -1].reshape(shape)
    delta_logp = solution.y[n_state:, -1]
    return prior_logp_fn(z) + delta_logp, z, nfe


def bits_per_dim(log_p: np.ndarray, n_dims: int, n_bins: int | None = None) -> np.ndarray:
    """Bits per dimension of log-densities in nats.

    Without ``n_bins``: -log_p / (D log 2). With ``n_bins`` (256 for 8-bit data) the log-density
    is that of dequantised data scaled to [0, 1], and the discrete likelihood of the integer data
    gives bpd = -(log_p / D - log n_bins) / log 2, i.e. the continuous figure plus log2(n_bins).
    """
    log_p = np.asarray(log_p, dtype=np.float64)
    offset = 0.0 if n_bins is None else np.log(n_bins)
    return -(log_p / n_dims - offset) / np.log(2.0)


def dequantize(
    x_int: np.ndarray, rng: np.random.Generator, n_bins: int = UINT8_LEVELS
) -> np.ndarray:
    """Uniform dequantisation to [0, 1]: (x + u) / n_bins, u = Phi(z), z = rng.standard_normal."""
    u = ndtr(rng.standard_normal(np.shape(x_int)))  # Phi(z) ~ U(0, 1)
    return (np.asarray(x_int, dtype=np.float64) + u) / n_bins
