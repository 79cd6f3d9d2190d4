"""Small array helpers shared by the reference modules."""

from __future__ import annotations

import numpy as np


def batch_scalar(s: np.ndarray | float, x: np.ndarray) -> np.ndarray:
    """Reshape a per-example scalar of shape (batch,) so it broadcasts against x (batch, *dims)."""
    s = np.asarray(s, dtype=np.float64)
    if s.ndim == 0:
        return s
    return s.reshape((-1,) + (1,) * (x.ndim - 1))


def as_batch(values: np.ndarray | float, batch: int) -> np.ndarray:
    """Broadcast a scalar or (batch,) array to a float64 array of shape (batch,)."""
    return np.broadcast_to(np.asarray(values, dtype=np.float64), (batch,)).copy()


def require_finite(values: np.ndarray, t: float) -> np.ndarray:
    """An ODE right-hand side for ``solve_ivp``, or ValueError if it holds a NaN or inf.

    SciPy's RK45 retries its first step forever when the derivative there is NaN.
    """
    if not np.all(np.isfinite(values)):
        raise ValueError(f"the ODE right-hand side is not finite at t = {t:.6g} (NaN or inf)")
    return values
