"""Gaussians and Gaussian mixtures with exact scores at every noise level (the analytic oracle).

Every method takes optional per-example perturbation coefficients ``alpha`` and ``std`` (scalars
or shape (batch,)) and then describes the law of ``alpha X + std Z``, Z ~ N(0, I): a mixture with
means ``alpha mu_k`` and covariances ``alpha^2 Sigma_k + std^2 I``. Each covariance is
eigendecomposed once, Sigma_k = U_k diag(lam_k) U_k^T, so the perturbed covariance is
U_k diag(alpha^2 lam_k + std^2) U_k^T and no method loops over examples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import logsumexp, softmax

from reference.sde import SDE
from reference.utils import as_batch

LOG_2PI = np.log(2.0 * np.pi)


def _sample_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One categorical label per row of probs (batch, K) from a single call rng.random(batch)."""
    u = rng.random(probs.shape[0])
    cdf = np.cumsum(probs, axis=1)
    return np.minimum((u[:, None] >= cdf).sum(axis=1), probs.shape[1] - 1)


def _gaussian_log_density(diff: np.ndarray, eigvecs: np.ndarray, eigvals: np.ndarray) -> np.ndarray:
    """log N(diff; 0, U diag(lam) U^T) for diff (..., m), U (..., m, m), lam (..., m)."""
    y = np.einsum("...ij,...i->...j", eigvecs, diff)
    m = diff.shape[-1]
    return -0.5 * (np.sum(y**2 / eigvals, axis=-1) + np.sum(np.log(eigvals), axis=-1) + m * LOG_2PI)


class GaussianMixture:
    """sum_k w_k N(mu_k, Sigma_k) in d dimensions with full covariances."""

    def __init__(self, weights: np.ndarray, means: np.ndarray, covs: np.ndarray) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.means = np.atleast_2d(np.asarray(means, dtype=np.float64))
        self.covs = np.asarray(covs, dtype=np.float64).reshape(
            (*self.means.shape, self.means.shape[1])
        )
        if not np.isclose(self.weights.sum(), 1.0) or np.any(self.weights < 0):
            raise ValueError("mixture weights must be non-negative and sum to 1")
        if self.weights.shape[0] != self.means.shape[0]:
            raise ValueError("weights and means disagree on the number of components")
        with np.errstate(divide="ignore"):
            self.log_weights = np.log(self.weights)
        eigvals, self.eigvecs = np.linalg.eigh(self.covs)  # Sigma_k = U_k diag(lam_k) U_k^T
        self.eigvals = np.maximum(eigvals, 0.0)

    @property
    def dim(self) -> int:
        """Dimension d."""
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        """Number of components K."""
        return self.means.shape[0]

    # --- perturbation ---------------------------------------------------------------------
    def _coefficients(
        self, alpha: np.ndarray | float, std: np.ndarray | float, batch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-example alpha (batch,) and perturbed eigenvalues alpha^2 lam + std^2 (batch,K,d)."""
        alpha = as_batch(alpha, batch)
        std = as_batch(std, batch)
        eigvals = alpha[:, None, None] ** 2 * self.eigvals + std[:, None, None] ** 2
        return alpha, eigvals

    def _components(
        self, x: np.ndarray, alpha: np.ndarray | float, std: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-component log densities (batch, K), scores (batch, K, d), perturbed eigenvalues."""
        x = np.asarray(x, dtype=np.float64)
        alpha, eigvals = self._coefficients(alpha, std, x.shape[0])
        diff = x[:, None, :] - alpha[:, None, None] * self.means  # (batch, K, d)
        y = np.einsum("kij,bki->bkj", self.eigvecs, diff)  # coordinates in each eigenbasis
        log_norm = -0.5 * (
            np.sum(y**2 / eigvals, axis=-1) + np.sum(np.log(eigvals), axis=-1) + self.dim * LOG_2PI
        )
        component_scores = -np.einsum("kij,bkj->bki", self.eigvecs, y / eigvals)  # -Sigma^-1 diff
        return log_norm, component_scores, eigvals

    def _with_parameters(
        self, weights: np.ndarray, means: np.ndarray, covs: np.ndarray
    ) -> GaussianMixture:
        """A new distribution of the same family."""
        return GaussianMixture(weights, means, covs)

    def perturbed(self, alpha: float = 1.0, std: float = 0.0) -> GaussianMixture:
        """The law of alpha X + std Z for scalar alpha, std."""
        eye = np.eye(self.dim)
        return self._with_parameters(
            self.weights, alpha * self.means, alpha**2 * self.covs + std**2 * eye
        )

    def at_time(self, sde: SDE, t: float) -> GaussianMixture:
        """The marginal p_t of the SDE started from this distribution at t = 0 (scalar t)."""
        alpha, std = sde.marginal_coefficients(np.array([t], dtype=np.float64))
        return self.perturbed(float(alpha[0]), float(std[0]))

    def at_sigma(self, sigma: float) -> GaussianMixture:
        """The data perturbed by N(0, sigma^2 I) (NCSN noise level sigma)."""
        return self.perturbed(1.0, sigma)

    # --- sampling -------------------------------------------------------------------------
    def sample_with_labels(
        self,
        rng: np.random.Generator,
        n: int,
        alpha: np.ndarray | float = 1.0,
        std: np.ndarray | float = 0.0,
    ) -> tuple[np.ndarray, np.ndarray]:
        """n draws and their labels; draws rng.random(n), then rng.standard_normal((n, d))."""
        labels = _sample_labels(rng, np.broadcast_to(self.weights, (n, self.n_components)))
        alpha, eigvals = self._coefficients(alpha, std, n)
        z = rng.standard_normal((n, self.dim))
        rows = np.arange(n)
        noise = np.einsum("bij,bj->bi", self.eigvecs[labels], np.sqrt(eigvals[rows, labels]) * z)
        return alpha[:, None] * self.means[labels] + noise, labels

    def sample(
        self,
        rng: np.random.Generator,
        n: int,
        alpha: np.ndarray | float = 1.0,
        std: np.ndarray | float = 0.0,
    ) -> np.ndarray:
        """n draws (n, d); same random draws as sample_with_labels."""
        return self.sample_with_labels(rng, n, alpha, std)[0]

    # --- densities and scores -------------------------------------------------------------
    def log_prob(
        self, x: np.ndarray, alpha: np.ndarray | float = 1.0, std: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """log p(x) per example, shape (batch,)."""
        log_norm, _, _ = self._components(x, alpha, std)
        return logsumexp(self.log_weights + log_norm, axis=1)

    def posterior(
        self, x: np.ndarray, alpha: np.ndarray | float = 1.0, std: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """Class posterior p(k | x), shape (batch, K)."""
        log_norm, _, _ = self._components(x, alpha, std)
        return softmax(self.log_weights + log_norm, axis=1)

    def score(
        self, x: np.ndarray, alpha: np.ndarray | float = 1.0, std: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """grad_x log p(x) = sum_k p(k | x) s_k(x), s_k = -Sigma_k^-1 (x - mu_k); (batch, d)."""
        log_norm, component_scores, _ = self._components(x, alpha, std)
        responsibilities = softmax(self.log_weights + log_norm, axis=1)
        return np.einsum("bk,bkd->bd", responsibilities, component_scores)

    def score_jacobian(
        self, x: np.ndarray, alpha: np.ndarray | float = 1.0, std: np.ndarray | float = 0.0
    ) -> np.ndarray:
        """Hessian of log p: -sum_k r_k Sigma_k^-1 + sum_k r_k s_k s_k^T - s s^T; (batch, d, d)."""
        log_norm, component_scores, eigvals = self._components(x, alpha, std)
        r = softmax(self.log_weights + log_norm, axis=1)
        s = np.einsum("bk,bkd->bd", r, component_scores)
        precisions = np.einsum("kij,bkj,klj->bkil", self.eigvecs, 1.0 / eigvals, self.eigvecs)
        second_moment = np.einsum("bk,bki,bkj->bij", r, component_scores, component_scores)
        mean_precision = np.einsum("bk,bkij->bij", r, precisions)
        return -mean_precision + second_moment - s[:, :, None] * s[:, None, :]

    def log_posterior_grad(
        self,
        x: np.ndarray,
        k: np.ndarray | int,
        alpha: np.ndarray | float = 1.0,
        std: np.ndarray | float = 0.0,
    ) -> np.ndarray:
        """grad_x log p(k | x) = s_k(x) - s(x) for label k (int or (batch,)); shape (batch, d)."""
        log_norm, component_scores, _ = self._components(x, alpha, std)
        r = softmax(self.log_weights + log_norm, axis=1)
        s = np.einsum("bk,bkd->bd", r, component_scores)
        rows = np.arange(component_scores.shape[0])
        labels = np.broadcast_to(np.asarray(k, dtype=np.int64), rows.shape)
        return component_scores[rows, labels] - s

    def score_fn(self, sde: SDE) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The exact score s(x, t) of the SDE marginal p_t, t per example."""

        def score(x: np.ndarray, t: np.ndarray) -> np.ndarray:
            alpha, std = sde.marginal_coefficients(as_batch(t, x.shape[0]))
            return self.score(x, alpha, std)

        return score

    def sigma_score_fn(self) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
        """The exact score s(x, sigma) of the data plus N(0, sigma^2 I) noise, sigma per example."""

        def score(x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
            return self.score(x, 1.0, sigma)

        return score

    # --- conditioning ---------------------------------------------------------------------
    def conditional(
        self,
        mask: np.ndarray,
        x_obs: np.ndarray,
        alpha: np.ndarray | float = 1.0,
        std: np.ndarray | float = 0.0,
    ) -> MixtureConditional:
        """Per-example law of the free coordinates (mask False) given the observed ones (True)."""
        mask = np.asarray(mask, dtype=bool)
        x_obs = np.asarray(x_obs, dtype=np.float64)
        obs, free = np.flatnonzero(mask), np.flatnonzero(~mask)
        alpha, eigvals = self._coefficients(alpha, std, x_obs.shape[0])
        # perturbed covariances (batch, K, d, d) and means (batch, K, d)
        covs = np.einsum("kij,bkj,klj->bkil", self.eigvecs, eigvals, self.eigvecs)
        means = alpha[:, None, None] * self.means
        cov_oo = covs[:, :, obs[:, None], obs]
        cov_fo = covs[:, :, free[:, None], obs]
        cov_ff = covs[:, :, free[:, None], free]
        resid = x_obs[:, None, obs] - means[:, :, obs]  # (batch, K, n_obs)
        # Gaussian conditioning: mu_f + S_fo S_oo^-1 (x_o - mu_o), S_ff - S_fo S_oo^-1 S_of
        gain = np.swapaxes(np.linalg.solve(cov_oo, np.swapaxes(cov_fo, -1, -2)), -1, -2)
        cond_means = means[:, :, free] + np.einsum("bkfo,bko->bkf", gain, resid)
        cond_covs = cov_ff - np.einsum("bkfo,bkgo->bkfg", gain, cov_fo)
        # weights reweighted by each component's marginal density of x_obs
        obs_eigvals, obs_eigvecs = np.linalg.eigh(cov_oo)
        log_obs = _gaussian_log_density(resid, obs_eigvecs, obs_eigvals)
        log_weights = self.log_weights + log_obs
        log_weights = log_weights - logsumexp(log_weights, axis=1, keepdims=True)
        return MixtureConditional(mask, x_obs, log_weights, cond_means, cond_covs)


class Gaussian(GaussianMixture):
    """N(mean, cov) in d dimensions: a one-component GaussianMixture with the same methods."""

    def __init__(self, mean: np.ndarray, cov: np.ndarray) -> None:
        mean = np.asarray(mean, dtype=np.float64).reshape(-1)
        cov = np.asarray(cov, dtype=np.float64).reshape(mean.shape[0], mean.shape[0])
        super().__init__(np.ones(1), mean[None], cov[None])

    @property
    def mean(self) -> np.ndarray:
        """Mean vector (d,)."""
        return self.means[0]

    @property
    def cov(self) -> np.ndarray:
        """Covariance matrix (d, d)."""
        return self.covs[0]

    def _with_parameters(
        self, weights: np.ndarray, means: np.ndarray, covs: np.ndarray
    ) -> Gaussian:
        """A new Gaussian."""
        return Gaussian(means[0], covs[0])


class MixtureConditional:
    """Per-example Gaussian mixture over the free coordinates, given the observed ones."""

    def __init__(
        self,
        mask: np.ndarray,
        x_obs: np.ndarray,
        log_weights: np.ndarray,
        means: np.ndarray,
        covs: np.ndarray,
    ) -> None:
        self.mask = mask
        self.x_obs = x_obs
        self.log_weights = log_weights  # (batch, K)
        self.means = means  # (batch, K, n_free)
        self.covs = covs  # (batch, K, n_free, n_free)
        eigvals, self.eigvecs = np.linalg.eigh(covs)
        self.eigvals = np.maximum(eigvals, 0.0)

    @property
    def weights(self) -> np.ndarray:
        """Posterior component weights given x_obs, shape (batch, K)."""
        return np.exp(self.log_weights)

    def _free(self, x: np.ndarray) -> np.ndarray:
        """The free coordinates of x, given as full vectors (batch, d) or as (batch, n_free)."""
        x = np.asarray(x, dtype=np.float64)
        return x[:, ~self.mask] if x.shape[-1] == self.mask.shape[0] else x

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """Full vectors (batch, d), observed entries copied; draws rng.random, standard_normal."""
        batch, n_free = self.means.shape[0], self.means.shape[-1]
        labels = _sample_labels(rng, self.weights)
        z = rng.standard_normal((batch, n_free))
        rows = np.arange(batch)
        noise = np.einsum(
            "bij,bj->bi", self.eigvecs[rows, labels], np.sqrt(self.eigvals[rows, labels]) * z
        )
        x = self.x_obs.copy()
        x[:, ~self.mask] = self.means[rows, labels] + noise
        return x

    def log_prob(self, x: np.ndarray) -> np.ndarray:
        """log p(x_free | x_obs) per example, x as full vectors (batch, d) or (batch, n_free)."""
        diff = self._free(x)[:, None, :] - self.means
        return logsumexp(
            self.log_weights + _gaussian_log_density(diff, self.eigvecs, self.eigvals), axis=1
        )
