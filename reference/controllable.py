"""Controllable generation with a score model: imputation and class-conditional sampling.

Both follow Song et al. 2021, Section 5 and Appendix I: imputation replaces the observed
coordinates by a forward-noised copy of the observed values after every predictor and corrector
update; class-conditional sampling adds a classifier's gradient to the score,
grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from reference.samplers import CORRECTORS, PREDICTORS, CountingScore, ScoreFn, pc_sample
from reference.utils import batch_scalar

LogPosteriorGradFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def impute(
    score_fn: ScoreFn,
    sde,
    x_obs: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_corrector_steps: int = 1,
    eps: float | None = None,
    denoise: bool = True,
    n_steps: int | None = None,
) -> tuple[np.ndarray, int]:
    """Impute the coordinates where ``mask`` is False given ``x_obs`` (batch, *dims) by PC sampling.

    ``mask`` (bool, True = observed) broadcasts against ``x_obs``; unobserved entries of ``x_obs``
    are ignored. After each corrector and each predictor update the observed coordinates are set
    to mean + std z with (mean, std) = ``sde.marginal_prob(x_obs, t)``. Draws: the prior
    (``sde.prior_sampling(rng, shape)``); then per step the corrector's normals, one replacement
    normal, the predictor's normal, one replacement normal. The result carries ``x_obs`` exactly
    at the observed coordinates.
    """
    counted = CountingScore(score_fn)
    predictor_fn, corrector_fn = PREDICTORS[predictor], CORRECTORS[corrector]
    eps = sde.eps if eps is None else eps
    n_steps = sde.N if n_steps is None else n_steps
    x_obs = np.asarray(x_obs, dtype=np.float64)
    observed = np.broadcast_to(np.asarray(mask, dtype=bool), x_obs.shape)
    x = np.where(observed, x_obs, sde.prior_sampling(rng, x_obs.shape))
    dt = -sde.T / n_steps

    def replace_observed(
        x: np.ndarray, x_mean: np.ndarray, t: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Put a draw of p_t(x_obs_t | x_obs) in the observed coordinates (score_sde inpainting)."""
        obs_mean, std = sde.marginal_prob(x_obs, t)
        obs_t = obs_mean + batch_scalar(std, x_obs) * rng.standard_normal(x_obs.shape)
        return np.where(observed, obs_t, x), np.where(observed, obs_mean, x_mean)

    x_mean = x
    for t in np.linspace(sde.T, eps, n_steps):
        t_vec = np.full(x.shape[0], t)
        x, x_mean = corrector_fn(counted, sde, x, t_vec, rng, snr, n_corrector_steps)
        x, x_mean = replace_observed(x, x_mean, t_vec)
        x, x_mean = predictor_fn(counted, sde, x, t_vec, rng, dt)
        x, x_mean = replace_observed(x, x_mean, t_vec)
    x = x_mean if denoise else x
    return np.where(observed, x_obs, x), counted.nfe


def guided_score(
    score_fn: ScoreFn,
    log_posterior_grad_fn: LogPosteriorGradFn,
    y: np.ndarray | int,
    scale: float = 1.0,
) -> ScoreFn:
    """score + scale * grad_x log p_t(y | x): the conditional score (Song et al. 2021, eq. 14)."""

    def score(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        labels = np.broadcast_to(np.asarray(y), (x.shape[0],))
        return score_fn(x, t) + scale * log_posterior_grad_fn(x, t, labels)

    return score


def class_conditional_sample(
    score_fn: ScoreFn,
    log_posterior_grad_fn: LogPosteriorGradFn,
    sde,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    y: np.ndarray | int,
    scale: float = 1.0,
    **pc_kwargs,
) -> tuple[np.ndarray, int]:
    """PC sampling of p(x | y) with the guided score; ``y`` int or (batch,) labels.

    ``log_posterior_grad_fn(x, t, y)`` is grad_x log p_t(y | x) of a (noise-conditional)
    classifier. Other keywords go to ``pc_sample``, whose draws this follows. NFE counts guided
    score evaluations (each one score plus one classifier gradient).
    """
    guided = guided_score(score_fn, log_posterior_grad_fn, y, scale)
    return pc_sample(guided, sde, shape, rng, **pc_kwargs)


def exact_log_posterior_grad_fn(mixture, sde) -> LogPosteriorGradFn:
    """grad_x log p_t(y | x) of a GaussianMixture perturbed by the SDE (exact classifier)."""

    def grad(x: np.ndarray, t: np.ndarray, y: np.ndarray) -> np.ndarray:
        alpha, std = sde.marginal_coefficients(t)
        return mixture.log_posterior_grad(x, y, alpha, std)

    return grad
