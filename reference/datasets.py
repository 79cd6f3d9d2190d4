"""Toy 2-D data sets, including Gaussian mixtures whose density is known exactly."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from reference.distributions import GaussianMixture
from reference.toy import TOY_SAMPLERS, ToySampler


def _rotated_cov(scale_major: float, scale_minor: float, angle: float) -> np.ndarray:
    """Covariance with standard deviations (major, minor) rotated by `angle` radians."""
    c, s = np.cos(angle), np.sin(angle)
    rotation = np.array([[c, -s], [s, c]])
    return rotation @ np.diag([scale_major**2, scale_minor**2]) @ rotation.T


def mixture5() -> GaussianMixture:
    """The canonical test mixture: 5 unequal, anisotropic, well-separated 2-D Gaussians."""
    weights = np.array([0.35, 0.25, 0.2, 0.12, 0.08])
    means = np.array([[-2.0, -1.0], [2.0, 1.5], [0.0, 2.5], [2.5, -2.0], [-2.5, 2.0]])
    covs = np.stack(
        [
            _rotated_cov(0.6, 0.2, 0.3),
            _rotated_cov(0.5, 0.25, -0.8),
            _rotated_cov(0.4, 0.15, 1.2),
            _rotated_cov(0.3, 0.3, 0.0),
            _rotated_cov(0.45, 0.1, -0.4),
        ]
    )
    return GaussianMixture(weights, means, covs)


def separated4() -> GaussianMixture:
    """Four equal-weight isotropic components far apart: for class-conditional sampling checks."""
    means = np.array([[-3.0, -3.0], [-3.0, 3.0], [3.0, -3.0], [3.0, 3.0]])
    covs = np.stack([0.3**2 * np.eye(2)] * 4)
    return GaussianMixture(np.full(4, 0.25), means, covs)


EXACT_MIXTURES = {"mixture5": mixture5, "separated4": separated4}


def _mixture_sampler(factory: Callable[[], GaussianMixture]) -> ToySampler:
    """Wrap a mixture factory as a sampler ``fn(rng, n) -> (n, 2)`` (one mixture, built once)."""
    mixture = factory()

    def sample(rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw n points from the mixture."""
        return mixture.sample(rng, n)

    sample.__doc__ = f"Draw n points from `{factory.__name__}()` (exact density known)."
    return sample


TOY_SETS: dict[str, ToySampler] = {
    **{name: _mixture_sampler(factory) for name, factory in EXACT_MIXTURES.items()},
    **TOY_SAMPLERS,
}
"""Every built-in 2-D set as a sampler ``fn(rng, n) -> (n, 2)``: exact mixtures first."""
