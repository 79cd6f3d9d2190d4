"""Toy 2-D data samplers without a closed-form density (checkerboard, swiss roll, moons, ...).

Every sampler has the signature ``fn(rng, n) -> (n, 2)`` float64 array, is pure NumPy, and is
scaled so that each coordinate has roughly unit spread (standard deviation between about 0.5 and
1.5). Uniform draws use ``rng.random`` / ``rng.integers``; every normal is drawn through
``rng.standard_normal(shape)``; each docstring states the order of draws.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

ToySampler = Callable[[np.random.Generator, int], np.ndarray]

CHECKERBOARD_HALF_WIDTH = 2.0
"""The checkerboard covers [-2, 2]^2 with 4 x 4 unit squares, half of them filled."""

SWISS_ROLL_TURNS = (1.5 * np.pi, 4.5 * np.pi)
"""Range of the roll parameter t (radians), as in scikit-learn's make_swiss_roll."""
SWISS_ROLL_SCALE = 7.5
SWISS_ROLL_NOISE = 0.5

MOONS_NOISE = 0.1
MOONS_OFFSET = np.array([1.0, 0.5])
"""Horizontal / vertical offset of the lower moon (scikit-learn's make_moons convention)."""

RINGS_RADII = np.array([0.5, 1.0, 1.5, 2.0])
RINGS_NOISE = 0.05

SPIRALS_MAX_ANGLE = 3.0 * np.pi
SPIRALS_SCALE = 1.0 / (1.5 * np.pi)
SPIRALS_NOISE = 0.1


def _check_n(n: int) -> int:
    """Validate the number of samples."""
    n = int(n)
    if n < 0:
        raise ValueError(f"number of samples must be non-negative, got {n}")
    return n


def checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniform on the filled squares of a 4 x 4 checkerboard over [-2, 2]^2.

    Construction: x1 ~ U(-2, 2); x2 ~ U(0, 1) - 2 k with k ~ U{0, 1} (two squares in every
    other row) shifted up by floor(x1) mod 2, so the filled squares alternate.
    Draws: x1 (n,), then u (n,), then k (n,). No normals.
    """
    n = _check_n(n)
    x1 = rng.random(n) * 2 * CHECKERBOARD_HALF_WIDTH - CHECKERBOARD_HALF_WIDTH
    u = rng.random(n)
    k = rng.integers(0, 2, size=n)
    x2 = u - 2.0 * k + np.mod(np.floor(x1), 2)
    return np.stack([x1, x2], axis=1).astype(np.float64)


def swiss_roll(rng: np.random.Generator, n: int) -> np.ndarray:
    """2-D swiss roll: (t cos t, t sin t) / 7.5 plus isotropic noise, t ~ U(1.5 pi, 4.5 pi).

    Construction follows scikit-learn's make_swiss_roll (the (x, z) plane) with noise std 0.5
    before the division by 7.5. Draws: t (n,) uniform, then noise rng.standard_normal((n, 2)).
    """
    n = _check_n(n)
    t_low, t_high = SWISS_ROLL_TURNS
    t = t_low + (t_high - t_low) * rng.random(n)
    noise = SWISS_ROLL_NOISE * rng.standard_normal((n, 2))
    x = np.stack([t * np.cos(t), t * np.sin(t)], axis=1) + noise
    return x / SWISS_ROLL_SCALE


def moons(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved half circles (scikit-learn's make_moons), centred, noise std 0.1.

    Upper moon: (cos a, sin a); lower moon: (1 - cos a, 1/2 - sin a); a ~ U(0, pi); each point
    picks a moon with probability 1/2; the result is shifted by -(1/2, 1/4) to centre it.
    Draws: moon label (n,), then a (n,) uniform, then noise rng.standard_normal((n, 2)).
    """
    n = _check_n(n)
    lower = rng.integers(0, 2, size=n).astype(bool)
    a = np.pi * rng.random(n)
    noise = MOONS_NOISE * rng.standard_normal((n, 2))
    upper_pts = np.stack([np.cos(a), np.sin(a)], axis=1)
    lower_pts = MOONS_OFFSET - upper_pts
    x = np.where(lower[:, None], lower_pts, upper_pts)
    return x - MOONS_OFFSET / 2 + noise


def rings(rng: np.random.Generator, n: int) -> np.ndarray:
    """Four concentric circles of radii 0.5, 1, 1.5, 2 plus isotropic noise of std 0.05.

    A point picks ring r with probability proportional to its radius (uniform density along the
    total arc length), then an angle a ~ U(0, 2 pi): (r cos a, r sin a) + noise.
    Draws: ring index (n,) via rng.choice, then a (n,) uniform, then rng.standard_normal((n, 2)).
    """
    n = _check_n(n)
    radius = rng.choice(RINGS_RADII, size=n, p=RINGS_RADII / RINGS_RADII.sum())
    a = 2 * np.pi * rng.random(n)
    noise = RINGS_NOISE * rng.standard_normal((n, 2))
    return radius[:, None] * np.stack([np.cos(a), np.sin(a)], axis=1) + noise


def spirals(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two interleaved Archimedean spirals (the classic "two spirals" set), noise std 0.1.

    Angle a = 3 pi sqrt(u), u ~ U(0, 1) (uniform density along the arc); point
    (-a cos a, a sin a) / (1.5 pi), negated for the second spiral (chosen with probability 1/2).
    Draws: u (n,), then spiral label (n,), then noise rng.standard_normal((n, 2)).
    """
    n = _check_n(n)
    a = SPIRALS_MAX_ANGLE * np.sqrt(rng.random(n))
    sign = np.where(rng.integers(0, 2, size=n) == 1, -1.0, 1.0)
    noise = SPIRALS_NOISE * rng.standard_normal((n, 2))
    x = SPIRALS_SCALE * np.stack([-a * np.cos(a), a * np.sin(a)], axis=1)
    return sign[:, None] * x + noise


TOY_SAMPLERS: dict[str, ToySampler] = {
    "checkerboard": checkerboard,
    "swiss_roll": swiss_roll,
    "moons": moons,
    "rings": rings,
    "spirals": spirals,
}
"""Name -> sampler ``fn(rng, n) -> (n, 2)`` for the toy sets without an exact density."""
