"""Exact Gaussian-mixture scores in keras.ops, mirroring reference GaussianMixture.score.

``keras_mixture(mixture)`` wraps a reference mixture; ``.score_fn(sde)`` is its exact s(x, t).

The law of alpha X + std Z for X ~ sum_k w_k N(mu_k, Sigma_k) is a mixture with means alpha mu_k
and covariances alpha^2 Sigma_k + std^2 I = U_k diag(alpha^2 lam_k + std^2) U_k^T, so the score
needs no per-example loop (alpha, std per example).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from keras import ops

from scoregen_keras.sde import SDE, per_example, to_float

Tensor = Any

LOG_2PI = float(np.log(2.0 * np.pi))


class MixtureScore:
    """Exact scores of a reference GaussianMixture perturbed by per-example (alpha, std)."""

    def __init__(self, mixture: Any) -> None:
        """Copy the mixture's log-weights, means and eigendecomposed covariances as tensors."""
        self.log_weights = to_float(mixture.log_weights)
        self.means = to_float(mixture.means)
        self.eigvecs = to_float(mixture.eigvecs)
        self.eigvals = to_float(mixture.eigvals)
        self.dim = int(mixture.dim)

    def score(self, x: Tensor, alpha: Tensor, std: Tensor) -> Tensor:
        """grad_x log p(x) = sum_k p(k | x) s_k(x), s_k = -Sigma_k^-1 (x - alpha mu_k)."""
        x = to_float(x)
        alpha, std = per_example(alpha, x), per_example(std, x)
        eigvals = (
            ops.square(alpha)[:, None, None] * self.eigvals + ops.square(std)[:, None, None]
        )  # (batch, K, d)
        diff = x[:, None, :] - alpha[:, None, None] * self.means
        y = ops.einsum("kij,bki->bkj", self.eigvecs, diff)  # coordinates in each eigenbasis
        # log N up to the constant d log(2 pi) / 2, which the posterior normalisation cancels
        log_norm = -0.5 * (ops.sum(ops.square(y) / eigvals, -1) + ops.sum(ops.log(eigvals), -1))
        component_scores = -ops.einsum("kij,bkj->bki", self.eigvecs, y / eigvals)
        # the softmax over components, spelt out: Keras warns on a softmax over one component
        log_joint = self.log_weights + log_norm
        responsibilities = ops.exp(log_joint - ops.logsumexp(log_joint, axis=1, keepdims=True))
        return ops.einsum("bk,bkd->bd", responsibilities, component_scores)

    def log_prob(self, x: Tensor, alpha: Tensor = 1.0, std: Tensor = 0.0) -> Tensor:
        """log p(x) per example, shape (batch,)."""
        x = to_float(x)
        alpha, std = per_example(alpha, x), per_example(std, x)
        eigvals = ops.square(alpha)[:, None, None] * self.eigvals + ops.square(std)[:, None, None]
        diff = x[:, None, :] - alpha[:, None, None] * self.means
        y = ops.einsum("kij,bki->bkj", self.eigvecs, diff)
        log_norm = -0.5 * (
            ops.sum(ops.square(y) / eigvals, -1)
            + ops.sum(ops.log(eigvals), -1)
            + self.dim * LOG_2PI
        )
        return ops.logsumexp(self.log_weights + log_norm, axis=1)

    def score_fn(self, sde: SDE) -> Callable[[Tensor, Tensor], Tensor]:
        """The exact score s(x, t) of the SDE marginal p_t, t per example."""

        def score(x: Tensor, t: Tensor) -> Tensor:
            alpha, std = sde.marginal_coefficients(per_example(t, x))
            return self.score(x, alpha, std)

        return score

    def sigma_score_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        """The exact score s(x, sigma) of the data plus N(0, sigma^2 I) noise, sigma per example."""

        def score(x: Tensor, sigma: Tensor) -> Tensor:
            sigma = per_example(sigma, x)
            return self.score(x, ops.ones_like(sigma), sigma)

        return score


def keras_mixture(mixture: Any) -> MixtureScore:
    """The keras.ops twin of a ``reference.distributions.GaussianMixture``."""
    return MixtureScore(mixture)
