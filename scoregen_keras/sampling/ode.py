"""Integrating the probability-flow ODE: SciPy's RK45 on the host, RK45 compiled, fixed steps.

`integrate_ode` moves a batch from one time to another along dx/dt = f(x, t) - g(t)^2 s(x, t)/2
(Song et al. 2021, eq. 13): towards the data to sample, towards the prior to encode.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops
from scipy.integrate import solve_ivp
from tqdm.auto import tqdm

from reference.utils import require_finite
from scoregen_keras import backend
from scoregen_keras.sampling import dopri
from scoregen_keras.sampling.chunks import compiled, run_steps
from scoregen_keras.sde import SDE, per_example, to_float

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]
HEUN_WEIGHT = 0.5  # trapezoidal rule: the Heun step averages the two slopes equally


def probability_flow_drift(score_fn: ScoreFn, sde: SDE) -> Callable[[Tensor, Tensor], Tensor]:
    """The drift f(x,t) - g(t)^2 s(x,t)/2 of the probability-flow ODE (Song et al. 2021, eq. 13)."""
    reverse = sde.reverse(score_fn, probability_flow=True)
    return lambda x, t: reverse.sde(x, per_example(t, x))[0]


def _euler_update(drift: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """One Euler step x + h drift(x, t_cur); times = (t_cur, t_next, h)."""

    def step(x: Tensor, times: Tensor, z: Tensor) -> Tensor:
        t_cur, h = times[0], times[2]
        return x + h * drift(x, t_cur)

    return step


def _heun_update(drift: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """One Heun step: Euler predictor, then the trapezoidal average of the two slopes."""

    def step(x: Tensor, times: Tensor, z: Tensor) -> Tensor:
        t_cur, t_next, h = times[0], times[1], times[2]
        d_cur = drift(x, t_cur)
        x_next = x + h * d_cur
        d_next = drift(x_next, t_next)
        return x + h * (HEUN_WEIGHT * d_cur + (1.0 - HEUN_WEIGHT) * d_next)

    return step


@dataclasses.dataclass(frozen=True)
class FixedStepMethod:
    """A fixed-step ODE method: its step for a drift, and the drift evaluations per step."""

    make_update: Callable[[Callable[..., Tensor]], Callable[..., Tensor]]
    nfe_per_step: int


FIXED_STEP_METHODS = {
    "euler": FixedStepMethod(_euler_update, nfe_per_step=1),
    "heun": FixedStepMethod(_heun_update, nfe_per_step=2),
}


def integrate_ode(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    t_start: float,
    t_end: float,
    method: str = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    n_steps: int = 100,
    *,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Integrate the probability-flow ODE from t_start to t_end for the whole batch; (x, nfe).

    ``method``: any ``solve_ivp`` method on the host, "dopri5" (the same RK45 compiled), or the
    fixed-step "euler" / "heun" with ``n_steps`` steps.
    """
    drift = probability_flow_drift(score_fn, sde)
    if method == dopri.METHOD:
        key = ("ode", score_fn, sde, tuple(x.shape), t_start, t_end, rtol, atol)
        return _integrate_dopri5(key, drift, x, t_start, t_end, rtol, atol, progress, variables)
    if method in FIXED_STEP_METHODS:
        fixed = FIXED_STEP_METHODS[method]
        times = np.linspace(t_start, t_end, n_steps + 1)
        table = np.stack([times[:-1], times[1:], np.diff(times)], axis=1)  # (t_cur, t_next, h)
        x = run_steps(
            fixed.make_update(drift),
            x,
            table,
            key=("ode", method, score_fn, sde),
            variables=variables,
            progress=progress,
            desc=f"ode {method}",
        )
        return x, n_steps * fixed.nfe_per_step
    shape = tuple(x.shape)

    def packed_drift(packed: Tensor) -> Tensor:
        """The drift at packed = (t, *x.ravel()): one host-to-device transfer per NFE."""
        return drift(ops.reshape(packed[1:], shape), packed[0])

    floatx = keras.config.floatx()
    compiled_drift = compiled(
        packed_drift,
        key=("ode drift", score_fn, sde, shape, floatx),
        variables=variables,
        example_args=lambda: [backend.jit_argument(np.zeros(1 + math.prod(shape), floatx))],
    )
    bar = tqdm(desc=f"ode {method} (NFE)", disable=not progress, leave=False)
    nfe = 0

    def ode_func(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        bar.update()
        packed = np.concatenate([[t], y]).astype(floatx)
        d = compiled_drift(backend.jit_argument(packed))
        return require_finite(np.asarray(ops.convert_to_numpy(d), np.float64).ravel(), t)

    y0 = np.asarray(ops.convert_to_numpy(x), dtype=np.float64).ravel()
    solution = solve_ivp(ode_func, (t_start, t_end), y0, method=method, rtol=rtol, atol=atol)
    bar.close()
    if not solution.success:
        raise RuntimeError(f"probability-flow ODE solve failed: {solution.message}")
    return to_float(solution.y[:, -1].reshape(shape)), nfe


def _integrate_dopri5(
    key: Hashable,
    drift: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    t_start: float,
    t_end: float,
    rtol: float,
    atol: float,
    progress: bool,
    variables: Sequence[Any] | None,
) -> tuple[Tensor, int]:
    """SciPy's RK45 compiled on the backend (``dopri``), its compiled parts cached by key."""
    start = compiled(
        dopri.start(drift, t_start, t_end, rtol, atol),
        key=("dopri5 start", key),
        variables=variables,
    )
    attempt_steps = compiled(
        dopri.attempt_steps(drift, t_start, t_end, rtol, atol),
        key=("dopri5 steps", key),
        variables=variables,
    )
    return dopri.solve(start, attempt_steps, x, t_start, t_end, progress, "ode dopri5")
