"""Controllable generation with a score model: imputation and class-conditional sampling.

``impute`` and class-conditional sampling follow Song et al. 2021, Section 5 and Appendix I:
imputation replaces the observed coordinates by a forward-noised copy of the observed values
after every predictor and corrector update; class-conditional sampling adds a classifier's
gradient to the score, grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x).

Replacement imputation is the standard method but it is biased, even with exact scores, when the
conditional is multimodal: the free coordinates pick a mode while the observed ones are still
blurred by noise and do not switch later (on the 5-component mixture ``mixture5`` the mode
occupancies are off by a total variation of 0.14-0.25). ``smc_impute`` (SMCDiff, Trippe et al.
2022) is asymptotically exact instead: a particle filter over the reverse diffusion, weighted by
how well each particle predicts the next point of a forward-noised trajectory of the observed
values. ``annealed_langevin_impute`` is replacement imputation for a model of NCSN noise levels.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import ndtr

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
    norm_rule: str = "batch",
) -> tuple[np.ndarray, int]:
    """Impute the coordinates where ``mask`` is False given ``x_obs`` (batch, *dims) by PC sampling.

    ``mask`` (bool, True = observed) broadcasts against ``x_obs``; unobserved entries of ``x_obs``
    are ignored. After each corrector and each predictor update the observed coordinates are set
    to mean + std z with (mean, std) = ``sde.marginal_prob(x_obs, t)``. Draws: the prior
    (``sde.prior_sampling(rng, shape)``); then per step the corrector's normals, one replacement
    normal, the predictor's normal, one replacement normal. The result carries ``x_obs`` exactly
    at the observed coordinates. ``n_steps`` other than sde.N runs on ``sde.with_levels(n_steps)``;
    ``norm_rule``: the Langevin corrector's norms (``samplers.NORM_RULES``).

    This is the standard method (score_sde's inpainting) and it is biased even with exact scores:
    the free coordinates are steered by a noised copy of ``x_obs`` and settle on a mode of a
    multimodal conditional before the observed values are sharp. Use ``smc_impute`` when the
    conditional itself must be reproduced.
    """
    counted = CountingScore(score_fn)
    predictor_fn, corrector_fn = PREDICTORS[predictor], CORRECTORS[corrector]
    eps = sde.eps if eps is None else eps
    sde = sde if n_steps is None else sde.with_levels(n_steps)
    n_steps = sde.N
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
        x, x_mean = corrector_fn(counted, sde, x, t_vec, rng, snr, n_corrector_steps, norm_rule)
        x, x_mean = replace_observed(x, x_mean, t_vec)
        x, x_mean = predictor_fn(counted, sde, x, t_vec, rng, dt)
        x, x_mean = replace_observed(x, x_mean, t_vec)
    x = x_mean if denoise else x
    return np.where(observed, x_obs, x), counted.nfe


def annealed_langevin_impute(
    score_fn: ScoreFn,
    sigmas: np.ndarray,
    x_obs: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
) -> tuple[np.ndarray, int]:
    """Impute where ``mask`` is False given ``x_obs`` by annealed Langevin dynamics (NCSN).

    ``score_fn(x, sigma)``, sigmas decreasing, steps as ``samplers.annealed_langevin``; before
    each Langevin step at level sigma the observed coordinates are set to x_obs + sigma z, a draw
    of the observed values noised to that level (the NCSN counterpart of ``impute``'s
    replacement). Draws: the start ``sigmas[0] * z``; then per step one replacement normal, the
    score, the step's normal. With ``denoise`` a final Tweedie step (one more NFE). The result
    carries ``x_obs`` exactly at the observed coordinates.
    """
    counted = CountingScore(score_fn)
    sigmas = np.asarray(sigmas, dtype=np.float64)
    x_obs = np.asarray(x_obs, dtype=np.float64)
    observed = np.broadcast_to(np.asarray(mask, dtype=bool), x_obs.shape)
    x = sigmas[0] * rng.standard_normal(x_obs.shape)
    for sigma in sigmas:
        alpha = step_lr * sigma**2 / sigmas[-1] ** 2  # NCSN Algorithm 1, line 3
        sigma_vec = np.full(x.shape[0], sigma)
        for _ in range(n_steps_each):
            x = np.where(observed, x_obs + sigma * rng.standard_normal(x_obs.shape), x)
            score = counted(x, sigma_vec)
            x = x + 0.5 * alpha * score + np.sqrt(alpha) * rng.standard_normal(x.shape)
    if denoise:
        x = x + sigmas[-1] ** 2 * counted(x, np.full(x.shape[0], sigmas[-1]))  # Tweedie
    return np.where(observed, x_obs, x), counted.nfe


N_PARTICLES = 1000
ESS_THRESHOLD = 0.5  # resample a filter when its effective sample size < this x n_particles
_BELOW_ONE = np.nextafter(1.0, 0.0)  # largest float < 1: keeps systematic offsets in [0, 1)


def systematic_resample(weights: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Systematic resampling: ancestors (batch, P) of weights (batch, P), offsets (batch,) in [0,1).

    Row b takes, for j = 0..P-1, the particle k whose cumulative-weight interval
    [W_{k-1}, W_k) holds (offsets[b] + j) / P, so particle k gets floor(P w_k) or ceil(P w_k)
    copies and E[copies] = P w_k when the offset is uniform.
    """
    weights = np.asarray(weights, dtype=np.float64)
    batch, n = weights.shape
    cdf = np.cumsum(weights, axis=1)
    cdf[:, -1] = 1.0  # round-off must not leave the last position past the end
    positions = (np.minimum(offsets, _BELOW_ONE)[:, None] + np.arange(n)) / n
    # one searchsorted for all rows: shift row b by b, so every row lies in its own [b, b + 1]
    shift = np.arange(batch)[:, None]
    counts = np.searchsorted((cdf + shift).ravel(), (positions + shift).ravel(), side="right")
    return counts.reshape(batch, n) - shift * n


def _normalise_log_weights(log_w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised log weights and weights of each row of (batch, P) unnormalised log weights."""
    log_w = log_w - log_w.max(axis=1, keepdims=True)
    log_w = log_w - np.log(np.exp(log_w).sum(axis=1, keepdims=True))
    return log_w, np.exp(log_w)


def smc_impute(
    score_fn: ScoreFn,
    sde,
    x_obs: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    n_particles: int = N_PARTICLES,
    ess_threshold: float = ESS_THRESHOLD,
    eps: float | None = None,
    denoise: bool = True,
    n_steps: int | None = None,
) -> tuple[np.ndarray, int]:
    """Impute where ``mask`` is False by SMCDiff (Trippe et al. 2022); x (batch, n_particles, ...).

    Every row of ``x_obs`` (batch, *dims) gets its own particle filter; ``mask`` (bool, True =
    observed) broadcasts against ``x_obs``. The observed coordinates follow ONE forward-noised
    trajectory y of ``x_obs`` per row, drawn through the forward chain
    y_{t_j} = y_{t_{j+1}} + f + G z with (f, G) = ``sde.discretize(y_{t_{j+1}}, t_j)`` on the grid
    t = linspace(T, eps, n_steps), from y = ``x_obs`` at the data end up to t_0 = T. Particles
    start from the prior and move by the reverse-diffusion step x' = x - f_rev + G z,
    (f_rev, G) = ``sde.reverse(score_fn).discretize(x, t_j)`` (one NFE per step for all particles).
    Before each step a particle is weighted by the reverse-transition likelihood of the next
    observed point, N(y_{t_{j+1}}; (x - f_rev)_obs, G^2 I) (the last step targets ``x_obs``
    itself), a filter whose effective sample size 1 / sum w^2 is below
    ``ess_threshold * n_particles`` is resampled systematically, then the free coordinates are
    proposed from the reverse transition and the observed ones set to y_{t_{j+1}}. The last step
    always resamples and returns the transition mean when ``denoise``.

    The forward noise is independent across coordinates, so given ``x_obs`` the trajectory y is
    independent of the free data coordinates: with exact scores the filter's target equals the
    exact conditional p(x_free | x_obs) up to the discretisation error of the reverse chain, and
    the population converges to it as n_particles grows (the bias is O(1 / n_particles)). The
    particles of one filter are equally weighted but share y and ancestors (not independent);
    they are shuffled, so each single slot is a draw from the filter's output. With the finite
    chain a filter's output still depends a little on its own y, so for many draws of one
    observation tile ``x_obs`` over several filters (mixture5: 100 filters x 100 particles for
    10^4 draws). Unlike replacement (``impute``) it is not biased on multimodal conditionals
    (asymptotically), at 1 NFE per step on batch x n_particles points.

    Draws: the prior (``sde.prior_sampling(rng, (batch, n_particles, *dims))``); the trajectory,
    one normal of x_obs.shape per step from the data end to T; then per step one normal (batch,)
    for the systematic offsets u = Phi(z) (drawn every step, used by the filters that resample)
    and, except at the last step when ``denoise``, one normal (batch, n_particles, *dims) for the
    proposal; finally one normal (batch, n_particles) whose argsort shuffles each filter.
    ``nfe`` counts score calls, each on all batch x n_particles particles.
    """
    counted = CountingScore(score_fn)
    eps = sde.eps if eps is None else eps
    sde = sde if n_steps is None else sde.with_levels(n_steps)
    n_steps = sde.N
    reverse = sde.reverse(counted)
    x_obs = np.asarray(x_obs, dtype=np.float64)
    batch, dims = x_obs.shape[0], x_obs.shape[1:]
    particle_shape = (batch, n_particles, *dims)
    flat_shape = (batch * n_particles, *dims)
    observed = np.broadcast_to(np.asarray(mask, dtype=bool), x_obs.shape)[:, None]
    times = np.linspace(sde.T, eps, n_steps)

    x = sde.prior_sampling(rng, particle_shape)
    # forward-noised observed trajectory: targets[j] at times[j], targets[n_steps] = x_obs
    targets = np.empty((n_steps + 1, *x_obs.shape))
    targets[n_steps] = x_obs
    for j in range(n_steps - 1, -1, -1):
        f, G = sde.discretize(targets[j + 1], np.full(batch, times[j]))
        noise = rng.standard_normal(x_obs.shape)
        targets[j] = targets[j + 1] + f + batch_scalar(G, x_obs) * noise
    x = np.where(observed, targets[0][:, None], x)

    log_w = np.zeros((batch, n_particles))
    unit_dims = (1,) * len(dims)
    for j, t in enumerate(times):
        last = j == n_steps - 1
        f_rev, G = reverse.discretize(x.reshape(flat_shape), np.full(batch * n_particles, t))
        mean = x - f_rev.reshape(particle_shape)
        G = np.broadcast_to(G, (batch * n_particles,)).reshape(batch, n_particles)
        # log N(y_next; mean_obs, G^2 I) up to a constant per filter (G depends on t only)
        resid = np.where(observed, targets[j + 1][:, None] - mean, 0.0)
        sq = np.sum(resid.reshape(batch, n_particles, -1) ** 2, axis=-1)
        log_w, w = _normalise_log_weights(log_w - 0.5 * sq / G**2)
        offsets = ndtr(rng.standard_normal((batch,)))
        resample = last | (1.0 / np.sum(w**2, axis=1) < ess_threshold * n_particles)
        ancestors = np.where(
            resample[:, None], systematic_resample(w, offsets), np.arange(n_particles)
        )
        mean = np.take_along_axis(mean, ancestors.reshape((batch, n_particles, *unit_dims)), 1)
        G = np.take_along_axis(G, ancestors, axis=1)
        log_w = np.where(resample[:, None], 0.0, log_w)
        if last and denoise:
            x = mean
        else:
            x = mean + G.reshape((batch, n_particles, *unit_dims)) * rng.standard_normal(
                particle_shape
            )
        x = np.where(observed, targets[j + 1][:, None], x)
    order = np.argsort(rng.standard_normal((batch, n_particles)), axis=1)
    x = np.take_along_axis(x, order.reshape((batch, n_particles, *unit_dims)), axis=1)
    return x, counted.nfe


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
