"""Latent interpolation through the probability-flow ODE.

``ode_encode`` maps data to its latent x_T and ``ode_sample(z=...)`` maps a latent back, a
bijection up to solver error (Song et al. 2021, section 4.3). `slerp` and `interpolate` encode two
batches, interpolate their latents along great circles (latents of a Gaussian prior concentrate on
a sphere), and decode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from keras import ops

from scoregen_keras.sampling.chunks import without_grad
from scoregen_keras.sampling.ode import integrate_ode
from scoregen_keras.sde import SDE, batch_scalar, to_float

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]
PARALLEL_COSINE = 1.0 - 1e-7  # above this cosine the latents are parallel: slerp becomes lerp


def slerp(z_a: Any, z_b: Any, fractions: Sequence[float] | np.ndarray) -> Tensor:
    """Spherical interpolation per example, shape (n, batch, *dims) for n fractions in [0, 1].

    z(f) = sin((1 - f) theta) / sin(theta) z_a + sin(f theta) / sin(theta) z_b, theta the angle
    between z_a and z_b (Shoemake 1985); linear where they are parallel.
    """
    z_a, z_b = to_float(z_a), to_float(z_b)
    batch = ops.shape(z_a)[0]
    flat_a, flat_b = ops.reshape(z_a, (batch, -1)), ops.reshape(z_b, (batch, -1))
    norms = ops.sqrt(ops.sum(ops.square(flat_a), 1) * ops.sum(ops.square(flat_b), 1))
    cosine = ops.clip(ops.sum(flat_a * flat_b, 1) / norms, -1.0, 1.0)
    parallel = cosine > PARALLEL_COSINE
    theta = ops.arccos(ops.where(parallel, 0.0, cosine))
    sin_theta = ops.where(parallel, 1.0, ops.sin(theta))
    path = []
    for f in map(float, np.asarray(fractions, dtype=np.float64)):
        w_a = ops.where(parallel, 1.0 - f, ops.sin((1.0 - f) * theta) / sin_theta)
        w_b = ops.where(parallel, f, ops.sin(f * theta) / sin_theta)
        path.append(batch_scalar(w_a, z_a) * z_a + batch_scalar(w_b, z_b) * z_b)
    return ops.stack(path)


@without_grad
def interpolate(
    score_fn: ScoreFn,
    sde: SDE,
    x_a: Any,
    x_b: Any,
    n: int,
    method: str = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    n_steps: int = 100,
    eps: float | None = None,
    *,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Interpolate between x_a and x_b (batch, *dims) through their latents; (path, nfe).

    Encodes both with ``ode_encode`` (one solve), takes n slerp points from z_a to z_b, and
    decodes them with ``ode_sample(z=...)`` (one solve); path has shape (n, batch, *dims), its
    ends the reconstructions of x_a and x_b. ODE settings as in ``ode_sample``.
    """
    x_a, x_b = to_float(x_a), to_float(x_b)
    batch = ops.shape(x_a)[0]
    eps = sde.eps if eps is None else eps
    solver = {"method": method, "rtol": rtol, "atol": atol, "n_steps": n_steps}
    common = {"progress": progress, "variables": variables}
    x = ops.concatenate([x_a, x_b], 0)
    z, nfe_encode = integrate_ode(score_fn, sde, x, eps, sde.T, **solver, **common)
    z_path = slerp(z[:batch], z[batch:], np.linspace(0.0, 1.0, n))
    flat = ops.reshape(z_path, (n * batch, *x_a.shape[1:]))
    x, nfe_decode = integrate_ode(score_fn, sde, flat, sde.T, eps, **solver, **common)
    return ops.reshape(x, (n, batch, *x_a.shape[1:])), nfe_encode + nfe_decode
