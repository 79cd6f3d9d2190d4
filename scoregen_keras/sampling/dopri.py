"""Dormand–Prince 5(4) in backend ops, with the step-size control of SciPy's ``RK45``.

The adaptive solver of ``solve_ivp(method="RK45")`` written as two pure functions of backend
tensors, so that a whole ODE solve compiles into a few calls instead of one host round trip per
function evaluation: ``start`` (the first derivative and SciPy's initial step, 2 NFE) and
``attempt_steps`` (up to a fixed number of attempted steps of 6 NFE each, in a while loop);
``solve`` calls them from the host until the state says FINISHED.
Tableau, error norm (RMS over every entry of y), safety factor, step bounds and the initial step
selection (Hairer, Nørsett & Wanner, Solving ODEs I, sec. II.4) follow
``scipy.integrate._ivp.rk`` and ``common.select_initial_step``, so in float64 the steps, the NFE
and the solution agree with ``solve_ivp`` to rounding. One departure: the smallest allowed step
is 10 eps |t| rather than 10 ulp(t) (at most twice as large; it only decides when a solve fails).
A NaN in the drift fails the solve (as a step below min_step), where SciPy's RK45 can loop forever
on a NaN first step (the host solvers check each evaluation: ``reference.utils.require_finite``).

The state is (t, y, f, h_abs, rejected, status, attempts): the time, the solution and its
derivative, the next step size, whether the last attempt was rejected (int32), the status
(RUNNING, FINISHED or FAILED) and the number of attempted steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops
from scipy.integrate import RK45
from tqdm.auto import tqdm

from scoregen_keras.choices import ODE_SOLVERS
from scoregen_keras.sde import to_float

Tensor = Any
Drift = Callable[[Tensor, Tensor], Tensor]  # drift(y, t) with t a scalar tensor
State = tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]
METHOD = ODE_SOLVERS[1]  # the method name ode_sample, ode_encode and ode_likelihood take for it
RUNNING, FINISHED, FAILED = 0, 1, 2  # FAILED: the step fell below min_step, or is NaN
# scipy.integrate._ivp.rk: the step-size controller's constants
SAFETY = 0.9
MIN_FACTOR = 0.2  # largest decrease of the step after a rejection
MAX_FACTOR = 10.0  # largest increase after an accepted step
ERROR_EXPONENT = -1.0 / (RK45.error_estimator_order + 1)
# scipy.integrate._ivp.common.select_initial_step
TINY_NORM, DEFAULT_H0, H0_FRACTION, H0_GROWTH_CAP = 1e-5, 1e-6, 0.01, 100.0
FLAT_NORM, FLAT_H1_FRACTION = 1e-15, 1e-3
START_NFE = 2  # f(t0, y0) and the probe of the initial step
NFE_PER_ATTEMPT = RK45.n_stages  # FSAL: the 7th stage is the next step's first
MIN_STEP_ULPS = 10.0
ATTEMPTS_PER_CALL = 20  # attempted steps per compiled call (and per progress-bar update)


def _rms(v: Tensor) -> Tensor:
    """SciPy's norm: the root mean square over every entry."""
    return ops.sqrt(ops.mean(v * v))


def _combine(weights: np.ndarray, slopes: list[Tensor]) -> Tensor:
    """sum_j weights[j] slopes[j], skipping zero weights."""
    terms = [float(w) * k for w, k in zip(weights, slopes, strict=True) if w != 0.0]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def start(drift: Drift, t_start: float, t_end: float, rtol: float, atol: float) -> Callable:
    """y0 -> the initial state: f0 = drift(y0, t_start) and SciPy's first step size (2 NFE)."""
    direction = float(np.sign(t_end - t_start))
    interval = abs(t_end - t_start)
    order = RK45.error_estimator_order

    def initial_state(y0: Tensor) -> State:
        y0 = to_float(y0)
        t0 = to_float(t_start)
        f0 = drift(y0, t0)
        scale = atol + ops.abs(y0) * rtol
        d0, d1 = _rms(y0 / scale), _rms(f0 / scale)
        negligible = ops.logical_or(d0 < TINY_NORM, d1 < TINY_NORM)
        h0 = ops.where(
            negligible, to_float(DEFAULT_H0), H0_FRACTION * d0 / ops.maximum(d1, TINY_NORM)
        )
        h0 = ops.minimum(h0, interval)
        f1 = drift(y0 + h0 * direction * f0, t0 + h0 * direction)
        d2 = _rms((f1 - f0) / scale) / h0
        flat = ops.logical_and(d1 <= FLAT_NORM, d2 <= FLAT_NORM)
        steep = ops.maximum(ops.maximum(d1, d2), FLAT_NORM)
        h1 = ops.where(
            flat,
            ops.maximum(to_float(DEFAULT_H0), h0 * FLAT_H1_FRACTION),
            ops.power(H0_FRACTION / steep, 1.0 / (order + 1)),
        )
        h_abs = ops.minimum(ops.minimum(H0_GROWTH_CAP * h0, h1), interval)
        zero = ops.convert_to_tensor(0, "int32")
        status = ops.convert_to_tensor(FINISHED if interval == 0.0 else RUNNING, "int32")
        return t0, y0, f0, h_abs, zero, status, zero

    return initial_state


def attempt_steps(
    drift: Drift,
    t_start: float,
    t_end: float,
    rtol: float,
    atol: float,
    max_attempts: int = ATTEMPTS_PER_CALL,
) -> Callable:
    """state -> state after up to ``max_attempts`` attempted steps, stopping when not RUNNING."""
    a, b, c, e = RK45.A, RK45.B, RK45.C, RK45.E
    direction = float(np.sign(t_end - t_start))
    eps = float(np.finfo(keras.config.floatx()).eps)
    tiny = float(np.finfo(keras.config.floatx()).tiny)  # keeps min_step > 0 at t = 0
    t_bound = to_float(t_end)
    # Python operators where they suffice: each keras.ops call costs a dispatch in eager PyTorch

    def attempt(*state: Tensor) -> State:
        t, y, f, h_abs, rejected, status, attempts = state
        retry = rejected > 0
        min_step = MIN_STEP_ULPS * ops.maximum(eps * abs(t), tiny)
        # a new step starts at least at min_step; a retry keeps the shrunk size and may fail
        h_abs = ops.where(retry, h_abs, ops.maximum(h_abs, min_step))
        too_small = ~(h_abs >= min_step)  # NaN too: SciPy would retry forever
        t_new = t + direction * h_abs
        t_new = ops.where(direction * (t_new - t_end) > 0, t_bound, t_new)
        h = t_new - t
        slopes = [f]
        for s in range(1, len(c)):
            slopes.append(drift(y + h * _combine(a[s, :s], slopes), t + float(c[s]) * h))
        y_new = y + h * _combine(b, slopes)
        f_new = drift(y_new, t + h)
        slopes.append(f_new)
        scale = atol + ops.maximum(abs(y), abs(y_new)) * rtol
        error_norm = _rms(h * _combine(e, slopes) / scale)
        accepted = error_norm < 1.0
        proposed = SAFETY * ops.power(error_norm, ERROR_EXPONENT)  # inf when error_norm is 0
        # after an accepted step: grow at most MAX_FACTOR, or not at all right after a rejection
        grow = ops.minimum(ops.where(retry, 1.0, MAX_FACTOR), proposed)
        # as Python's max in SciPy, a NaN error shrinks the step by MIN_FACTOR (until it fails)
        shrink = ops.where(proposed > MIN_FACTOR, proposed, MIN_FACTOR)
        keep = accepted & ~too_small
        reached = keep & (direction * (t_new - t_end) >= 0)
        # RUNNING 0, FINISHED 1, FAILED 2 (reached and too_small exclude each other)
        status = ops.cast(reached, "int32") * FINISHED + ops.cast(too_small, "int32") * FAILED
        return (
            ops.where(keep, t_new, t),
            ops.where(keep, y_new, y),
            ops.where(keep, f_new, f),
            abs(h) * ops.where(accepted, grow, shrink),
            ops.cast(~accepted, "int32"),
            status,
            attempts + 1 - ops.cast(too_small, "int32"),
        )

    def running(*state: Tensor) -> Tensor:
        return state[5] == RUNNING

    def steps(state: State) -> State:
        return tuple(
            ops.while_loop(running, attempt, tuple(state), maximum_iterations=max_attempts)
        )

    return steps


def solve(
    initial_state: Callable[[Tensor], State],
    steps: Callable[[State], State],
    y0: Tensor,
    t_start: float,
    t_end: float,
    progress: bool = False,
    desc: str = METHOD,
) -> tuple[Tensor, int]:
    """(y(t_end), NFE) from the (compiled) ``start`` and ``attempt_steps`` functions.

    The host only reads the status and the time between calls (for the progress bar).
    RuntimeError when the step size falls below min_step or becomes NaN.
    """
    state = initial_state(y0)
    bar = tqdm(total=100, desc=f"{desc} (% of time)", disable=not progress, leave=False)
    status = int(ops.convert_to_numpy(state[5]))  # FINISHED already when t_end == t_start
    while status == RUNNING:
        state = steps(state)
        status = int(ops.convert_to_numpy(state[5]))
        done = (float(ops.convert_to_numpy(state[0])) - t_start) / (t_end - t_start)
        bar.update(round(100 * min(max(done, 0.0), 1.0)) - bar.n)
    if status == FINISHED:
        bar.update(100 - bar.n)
    bar.close()
    if status == FAILED:
        raise RuntimeError(
            f"{desc} failed: the step size fell below the spacing of floats or became NaN "
            "(is the right-hand side finite?)"
        )
    attempts = int(ops.convert_to_numpy(state[6]))
    return state[1], START_NFE + NFE_PER_ATTEMPT * attempts
