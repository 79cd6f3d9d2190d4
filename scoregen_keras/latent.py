"""The latent side of the probability-flow ODE: the prior at a temperature, and interpolation.

``ode_encode`` maps data to its latent x_T and ``ode_sample(z=...)`` maps a latent back, a
bijection up to solver error (Song et al. 2021, section 4.3). Here:

- `tempered_prior`: the prior draw s z with its standard deviation s scaled by a temperature
  (every sampler's ``temperature`` kwarg goes through it; < 1 trades diversity for fidelity);
- `slerp` and `interpolate`: encode two batches, interpolate their latents along great circles
  (latents of a Gaussian prior concentrate on a sphere), decode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from scoregen_keras.sde import SDE, batch_scalar, to_float

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]

PRIOR_PROBE_SEED = 0  # fixed seed of the draw that reads off the prior's standard deviation
PRIOR_PROBE_SIZE = 64  # entries in that draw
PRIOR_PROBE_RTOL = 1e-5  # the SDE's prior draw must be s times the same normal to this tolerance
PARALLEL_COSINE = 1.0 - 1e-7  # above this cosine the latents are parallel: slerp becomes lerp


def prior_std(sde: SDE) -> float:
    """The standard deviation s of the SDE's prior N(0, s^2 I) (sigma_max for VE, 1 for VP).

    Read off ``sde.prior_sampling`` against ``keras.random.normal`` with the same fixed seed (the
    contract: the prior draw is s times a standard normal); raises if that does not hold.
    """
    shape = (PRIOR_PROBE_SIZE,)
    prior = np.asarray(ops.convert_to_numpy(sde.prior_sampling(PRIOR_PROBE_SEED, shape)), float)
    z = np.asarray(ops.convert_to_numpy(keras.random.normal(shape, seed=PRIOR_PROBE_SEED)), float)
    s = math.sqrt(float(np.sum(prior**2) / np.sum(z**2)))
    if not np.allclose(prior, s * z, rtol=PRIOR_PROBE_RTOL, atol=0.0):
        raise ValueError(f"{type(sde).__name__}.prior_sampling is not a scaled standard normal")
    return s


def tempered_prior(sde: SDE, z: Any, temperature: float = 1.0) -> Tensor:
    """The prior draw temperature * s * z for standard normals z (s = `prior_std`)."""
    return (temperature * prior_std(sde)) * to_float(z)


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
    from scoregen_keras.samplers import ode_encode, ode_sample  # samplers imports this module

    x_a, x_b = to_float(x_a), to_float(x_b)
    batch = ops.shape(x_a)[0]
    ode = {"method": method, "rtol": rtol, "atol": atol, "n_steps": n_steps, "eps": eps}
    common = {"progress": progress, "variables": variables}
    z, nfe_encode = ode_encode(score_fn, sde, ops.concatenate([x_a, x_b], 0), **ode, **common)
    z_path = slerp(z[:batch], z[batch:], np.linspace(0.0, 1.0, n))
    flat = ops.reshape(z_path, (n * batch, *x_a.shape[1:]))
    x, nfe_decode = ode_sample(score_fn, sde, tuple(flat.shape), None, z=flat, **ode, **common)
    return ops.reshape(x, (n, batch, *x_a.shape[1:])), nfe_encode + nfe_decode
