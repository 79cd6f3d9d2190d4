"""Forward SDEs of score-based generative modelling (Song et al. 2021) and NCSN noise schedules.

Time runs from 0 (data) to T (prior). Per-example times ``t`` have shape (batch,). Every class
follows the convention of the score SDE paper's code: ``discretize(x, t)`` returns ``(f, G)``
with ``x_{i+1} = x_i + f + G z`` and the discrete index of ``t`` is ``i = floor(t (N - 1) / T)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import optimize, stats

from reference.utils import as_batch, batch_scalar

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

LOG_2PI = np.log(2.0 * np.pi)


def _sum_over_dims(x: np.ndarray) -> np.ndarray:
    """Sum an array (batch, *dims) over all but the batch axis."""
    return x.reshape(x.shape[0], -1).sum(axis=1)


def _gaussian_prior_logp(z: np.ndarray, sigma: float) -> np.ndarray:
    """log N(z; 0, sigma^2 I) per example for z of shape (batch, *dims)."""
    dim = np.prod(z.shape[1:])
    return -0.5 * dim * (LOG_2PI + 2.0 * np.log(sigma)) - 0.5 * _sum_over_dims(z**2) / sigma**2


class SDE:
    """Abstract forward SDE dx = f(x, t) dt + g(t) dw on [0, T], discretised into N steps."""

    T: float = 1.0
    N: int
    eps: float

    def __init__(self, N: int) -> None:
        self.N = int(N)

    def get_config(self) -> dict[str, float | int]:
        """Constructor arguments of this SDE."""
        return {"N": self.N}

    def with_levels(self, N: int) -> SDE:
        """This SDE discretised into N levels (self when N already matches).

        A chain of n steps through `discretize`, `ancestral_step` or `langevin_alpha` must use the
        tables of N = n: over the levels of another N it removes the wrong noise per step.
        """
        return self if int(N) == self.N else type(self)(**{**self.get_config(), "N": int(N)})

    # --- continuous-time description -------------------------------------------------------
    def sde(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Drift f(x, t) of shape (batch, *dims) and diffusion g(t) of shape (batch,)."""
        raise NotImplementedError

    def marginal_coefficients(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(alpha(t), std(t)) such that x_t = alpha x_0 + std z given x_0."""
        raise NotImplementedError

    def marginal_prob(self, x0: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean (batch, *dims) and std (batch,) of the perturbation kernel p_t(x | x0)."""
        alpha, std = self.marginal_coefficients(as_batch(t, x0.shape[0]))
        return batch_scalar(alpha, x0) * x0, std

    @property
    def prior_std(self) -> float:
        """The standard deviation s of the Gaussian prior p_T = N(0, s^2 I)."""
        raise NotImplementedError

    def prior_sampling(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Draw from the prior N(0, s^2 I) with one call rng.standard_normal(shape)."""
        return rng.standard_normal(shape) * self.prior_std

    def prior_logp(self, z: np.ndarray) -> np.ndarray:
        """log N(z; 0, s^2 I) per example, shape (batch,)."""
        return _gaussian_prior_logp(z, self.prior_std)

    # --- discretisation ----------------------------------------------------------------------
    def discrete_index(self, t: np.ndarray | float) -> np.ndarray:
        """Index i = floor(t (N - 1) / T) of t in the discretisation, clipped to [0, N - 1]."""
        i = np.floor(np.asarray(t, dtype=np.float64) * (self.N - 1) / self.T).astype(np.int64)
        return np.clip(i, 0, self.N - 1)

    def discretize(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Euler–Maruyama step with dt = T/N: f = f(x, t) dt, G = g(t) sqrt(dt)."""
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * np.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (or probability-flow ODE) driven by score_fn(x, t)."""
        return ReverseSDE(self, score_fn, probability_flow)

    # --- hooks used by the samplers ----------------------------------------------------------
    def check_discrete_chain(self) -> None:
        """Raise ValueError when the N-level tables that PC steps read are unusable (never here)."""

    def ancestral_step(
        self, x: np.ndarray, t: np.ndarray, score: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Ancestral sampling step x_{i-1} = mean + std z given the score at (x, t_i)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no ancestral sampling rule; "
            "use the reverse_diffusion or euler_maruyama predictor instead."
        )

    def langevin_alpha(self, t: np.ndarray) -> np.ndarray:
        """alpha in the Langevin corrector's step size eps = 2 alpha (r ||z|| / ||s||)^2."""
        raise NotImplementedError

    def sigma_tilde(self, t: np.ndarray | float) -> np.ndarray:
        """sigma~(t) = std(t) / alpha(t): x_t / alpha = x_0 + sigma~ z (EDM / DPM-Solver scale)."""
        raise NotImplementedError

    def t_from_sigma_tilde(self, sigma: np.ndarray | float) -> np.ndarray:
        """Closed-form inverse of sigma_tilde."""
        raise NotImplementedError


class ReverseSDE:
    """Reverse-time SDE dx = [f - g^2 s] dt + g dw-bar, or its probability-flow ODE (pf=True)."""

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool = False) -> None:
        self.forward = forward
        self.score_fn = score_fn
        self.probability_flow = probability_flow
        self.T = forward.T
        self.N = forward.N
        self.eps = forward.eps

    @property
    def _score_weight(self) -> float:
        """1/2 for the probability-flow ODE, 1 for the reverse SDE."""
        return 0.5 if self.probability_flow else 1.0

    def sde(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reverse drift f - g^2 s (x 1/2 for the ODE) and diffusion g (0 for the ODE)."""
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t)
        rev_drift = drift - batch_scalar(diffusion**2, x) * score * self._score_weight
        rev_diffusion = np.zeros_like(diffusion) if self.probability_flow else diffusion
        return rev_drift, rev_diffusion

    def discretize(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Discrete reverse step: rev_f = f - G^2 s (x 1/2 for ODE), rev_G = G (0 for ODE)."""
        f, G = self.forward.discretize(x, t)
        score = self.score_fn(x, t)
        rev_f = f - batch_scalar(G**2, x) * score * self._score_weight
        rev_G = np.zeros_like(G) if self.probability_flow else G
        return rev_f, rev_G


class VESDE(SDE):
    """Variance-exploding SDE: sigma(t) = sigma_min (sigma_max/sigma_min)^t, f = 0."""

    eps = 1e-5

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000) -> None:
        super().__init__(N)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.log_ratio = np.log(self.sigma_max / self.sigma_min)
        # SMLD noise levels sigma_0 < ... < sigma_{N-1}
        self.discrete_sigmas = np.exp(np.linspace(np.log(sigma_min), np.log(sigma_max), self.N))

    def get_config(self) -> dict[str, float | int]:
        """Constructor arguments of this SDE."""
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, **super().get_config()}

    def _sigma(self, t: np.ndarray | float) -> np.ndarray:
        """sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
        return self.sigma_min * np.exp(np.asarray(t, dtype=np.float64) * self.log_ratio)

    def sde(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f = 0, g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min))."""
        t = as_batch(t, x.shape[0])
        return np.zeros_like(x), self._sigma(t) * np.sqrt(2.0 * self.log_ratio)

    def marginal_coefficients(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """alpha = 1, std = sigma(t)."""
        sigma = self._sigma(t)
        return np.ones_like(sigma), sigma

    @property
    def prior_std(self) -> float:
        """sigma_max: the prior is N(0, sigma_max^2 I)."""
        return self.sigma_max

    def _sigma_pair(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(sigma_i, sigma_{i-1}) of the SMLD levels at the index of t, with sigma_{-1} = 0."""
        i = self.discrete_index(t)
        sigma = self.discrete_sigmas[i]
        adjacent_sigma = np.where(i == 0, 0.0, self.discrete_sigmas[np.maximum(i - 1, 0)])
        return sigma, adjacent_sigma

    def discretize(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """SMLD chain: f = 0, G = sqrt(sigma_i^2 - sigma_{i-1}^2)."""
        sigma, adjacent_sigma = self._sigma_pair(as_batch(t, x.shape[0]))
        return np.zeros_like(x), np.sqrt(sigma**2 - adjacent_sigma**2)

    def ancestral_step(
        self, x: np.ndarray, t: np.ndarray, score: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """SMLD ancestral step with sigma_i and sigma_{i-1} (0 at i = 0).

        mean = x + (sigma_i^2 - sigma_{i-1}^2) score,
        std^2 = sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2.
        """
        sigma, adjacent_sigma = self._sigma_pair(as_batch(t, x.shape[0]))
        variance_step = sigma**2 - adjacent_sigma**2
        mean = x + batch_scalar(variance_step, x) * score
        std = np.sqrt(adjacent_sigma**2 * variance_step / sigma**2)
        return mean, std

    def langevin_alpha(self, t: np.ndarray) -> np.ndarray:
        """alpha = 1 for VE."""
        return np.ones_like(np.asarray(t, dtype=np.float64))

    def sigma_tilde(self, t: np.ndarray | float) -> np.ndarray:
        """sigma~(t) = sigma(t), since alpha = 1."""
        return self._sigma(t)

    def t_from_sigma_tilde(self, sigma: np.ndarray | float) -> np.ndarray:
        """t = log(sigma / sigma_min) / log(sigma_max / sigma_min)."""
        return np.log(np.asarray(sigma, dtype=np.float64) / self.sigma_min) / self.log_ratio


def discrete_chain_message(sde: SDE) -> str:
    """Why a VP / sub-VP SDE with N <= beta_max levels has no DDPM chain (beta_i = beta/N >= 1)."""
    beta_max = max(sde.beta_0, sde.beta_1)
    return (
        f"{type(sde).__name__} with N = {sde.N} levels has discrete betas up to "
        f"{beta_max / sde.N:.3g} >= 1, so its discrete chain (reverse diffusion, ancestral, "
        f"Langevin corrector) does not exist; use more than {beta_max:g} steps."
    )


class _LinearBetaSDE(SDE):
    """Shared part of VP and sub-VP: beta(t) = beta_0 + t (beta_1 - beta_0), f = -beta(t) x / 2."""

    eps = 1e-3

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000) -> None:
        super().__init__(N)
        self.beta_0 = float(beta_min)
        self.beta_1 = float(beta_max)
        # DDPM betas beta_i = linspace(beta_0/N, beta_1/N, N) and alphas_i = 1 - beta_i
        self.discrete_betas = np.linspace(self.beta_0 / self.N, self.beta_1 / self.N, self.N)
        self.alphas = 1.0 - self.discrete_betas

    def get_config(self) -> dict[str, float | int]:
        """Constructor arguments of this SDE."""
        return {"beta_min": self.beta_0, "beta_max": self.beta_1, **super().get_config()}

    def check_discrete_chain(self) -> None:
        """Raise ValueError unless every DDPM beta_i is below 1 (N > beta_max)."""
        if self.discrete_betas.max() >= 1.0:
            raise ValueError(discrete_chain_message(self))

    def beta(self, t: np.ndarray | float) -> np.ndarray:
        """beta(t) = beta_0 + t (beta_1 - beta_0)."""
        return self.beta_0 + np.asarray(t, dtype=np.float64) * (self.beta_1 - self.beta_0)

    def log_mean_coeff(self, t: np.ndarray | float) -> np.ndarray:
        """log alpha(t) = -t^2 (beta_1 - beta_0) / 4 - t beta_0 / 2."""
        t = np.asarray(t, dtype=np.float64)
        return -0.25 * t**2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def _t_from_integrated_beta(self, integral: np.ndarray) -> np.ndarray:
        """Solve int_0^t beta = beta_0 t + (beta_1 - beta_0) t^2 / 2 = integral for t >= 0."""
        # stable root of the quadratic, also valid when beta_1 == beta_0
        return (
            2.0
            * integral
            / (self.beta_0 + np.sqrt(self.beta_0**2 + 2.0 * (self.beta_1 - self.beta_0) * integral))
        )

    def _drift(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """f(x, t) = -beta(t) x / 2."""
        return -0.5 * batch_scalar(self.beta(t), x) * x

    @property
    def prior_std(self) -> float:
        """1: the prior is N(0, I)."""
        return 1.0

    def langevin_alpha(self, t: np.ndarray) -> np.ndarray:
        """alpha = alphas[i] = 1 - beta_i at the discrete index of t."""
        self.check_discrete_chain()
        return self.alphas[self.discrete_index(t)]


class VPSDE(_LinearBetaSDE):
    """Variance-preserving SDE (continuous DDPM): dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw."""

    def sde(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f = -beta(t) x / 2, g = sqrt(beta(t))."""
        t = as_batch(t, x.shape[0])
        return self._drift(x, t), np.sqrt(self.beta(t))

    def marginal_coefficients(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """alpha = exp(lmc), std = sqrt(1 - exp(2 lmc))."""
        lmc = self.log_mean_coeff(t)
        return np.exp(lmc), np.sqrt(-np.expm1(2.0 * lmc))

    def discretize(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """DDPM chain: f = sqrt(1 - beta_i) x - x, G = sqrt(beta_i)."""
        self.check_discrete_chain()
        beta = self.discrete_betas[self.discrete_index(as_batch(t, x.shape[0]))]
        return batch_scalar(np.sqrt(1.0 - beta), x) * x - x, np.sqrt(beta)

    def ancestral_step(
        self, x: np.ndarray, t: np.ndarray, score: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """DDPM ancestral: mean = (x + beta_i score) / sqrt(1 - beta_i), std = sqrt(beta_i)."""
        self.check_discrete_chain()
        beta = self.discrete_betas[self.discrete_index(as_batch(t, x.shape[0]))]
        mean = (x + batch_scalar(beta, x) * score) / batch_scalar(np.sqrt(1.0 - beta), x)
        return mean, np.sqrt(beta)

    def sigma_tilde(self, t: np.ndarray | float) -> np.ndarray:
        """sigma~ = sqrt(1 - alpha^2)/alpha = sqrt(exp(-2 lmc) - 1)."""
        return np.sqrt(np.expm1(-2.0 * self.log_mean_coeff(t)))

    def t_from_sigma_tilde(self, sigma: np.ndarray | float) -> np.ndarray:
        """Invert -2 lmc(t) = log(1 + sigma~^2) (a quadratic in t)."""
        return self._t_from_integrated_beta(np.log1p(np.asarray(sigma, dtype=np.float64) ** 2))


class SubVPSDE(_LinearBetaSDE):
    """Sub-VP SDE: VP drift, g = sqrt(beta(t) (1 - exp(-2 beta_0 t - (beta_1 - beta_0) t^2)))."""

    def sde(self, x: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """f = -beta(t) x / 2, g = sqrt(beta(t) (1 - exp(-2 int_0^t beta)))."""
        t = as_batch(t, x.shape[0])
        discount = -np.expm1(-2.0 * self.beta_0 * t - (self.beta_1 - self.beta_0) * t**2)
        return self._drift(x, t), np.sqrt(self.beta(t) * discount)

    def marginal_coefficients(self, t: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """alpha = exp(lmc), std = 1 - exp(2 lmc)."""
        lmc = self.log_mean_coeff(t)
        return np.exp(lmc), -np.expm1(2.0 * lmc)

    def ancestral_step(
        self, x: np.ndarray, t: np.ndarray, score: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Not defined for sub-VP (as in the score SDE code)."""
        raise NotImplementedError(
            "SubVPSDE has no ancestral sampling rule (as in the score SDE code); "
            "use the reverse_diffusion or euler_maruyama predictor instead."
        )

    def sigma_tilde(self, t: np.ndarray | float) -> np.ndarray:
        """sigma~ = (1 - alpha^2)/alpha = exp(-lmc) - exp(lmc) = 2 sinh(-lmc)."""
        return 2.0 * np.sinh(-self.log_mean_coeff(t))

    def t_from_sigma_tilde(self, sigma: np.ndarray | float) -> np.ndarray:
        """Invert -2 lmc(t) = 2 asinh(sigma~ / 2) (a quadratic in t)."""
        return self._t_from_integrated_beta(
            2.0 * np.arcsinh(0.5 * np.asarray(sigma, dtype=np.float64))
        )


FORWARD_SDES: dict[str, type[SDE]] = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}
"""The forward SDEs by their short names (those of the score SDE paper's configs)."""


# --- discrete NCSN noise levels and the NCSNv2 rules (Song & Ermon 2020) ---------------------


def geometric_sigmas(sigma_max: float, sigma_min: float, L: int) -> np.ndarray:
    """L geometric noise levels sigma_1 = sigma_max > ... > sigma_L = sigma_min."""
    return np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), int(L)))


def ncsnv2_sigma_max(data: np.ndarray, chunk_size: int = 1024) -> float:
    """Technique 1: sigma_1 = the largest pairwise Euclidean distance between data points."""
    x = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
    sq_norms = np.einsum("nd,nd->n", x, x)
    best, best_pair = -np.inf, (0, 0)
    for start in range(0, len(x), chunk_size):
        block = x[start : start + chunk_size]
        # ||a - b||^2 = ||a||^2 + ||b||^2 - 2 a.b, one chunk of rows against all points
        sq_dist = sq_norms[start : start + chunk_size, None] + sq_norms[None, :] - 2.0 * block @ x.T
        i, j = np.unravel_index(np.argmax(sq_dist), sq_dist.shape)
        if sq_dist[i, j] > best:
            best, best_pair = sq_dist[i, j], (start + i, j)
    # recompute the winning distance directly to avoid cancellation in the Gram expansion
    return float(np.linalg.norm(x[best_pair[0]] - x[best_pair[1]]))


def ncsnv2_gamma(dim: int, target: float = 0.5) -> float:
    """Technique 2: the ratio gamma = sigma_{i-1}/sigma_i > 1 solving overlap(gamma) = target.

    overlap(gamma) = Phi(sqrt(2D)(gamma - 1) + 3 gamma) - Phi(sqrt(2D)(gamma - 1) - 3 gamma).
    """
    root_2d = np.sqrt(2.0 * dim)
    three_sigmas = 3.0  # the paper's +/- 3 standard deviations

    def overlap(gamma: float) -> float:
        shift = root_2d * (gamma - 1.0)
        return stats.norm.cdf(shift + three_sigmas * gamma) - stats.norm.cdf(
            shift - three_sigmas * gamma
        )

    if root_2d <= three_sigmas:
        raise ValueError(
            f"technique 2 needs sqrt(2D) > 3 (D >= 5); got D = {dim}, the overlap never drops to "
            f"{target}"
        )
    upper = 2.0
    while overlap(upper) > target:
        upper *= 2.0
    return float(optimize.brentq(lambda g: overlap(g) - target, 1.0, upper, xtol=1e-14))


def ncsnv2_num_levels(sigma_max: float, sigma_min: float, gamma: float) -> int:
    """L = 1 + ceil(log(sigma_max / sigma_min) / log gamma), so the realised ratio is <= gamma."""
    return 1 + int(np.ceil(np.log(sigma_max / sigma_min) / np.log(gamma)))


def ncsnv2_variance_ratio(eps: float, sigma_L: float, gamma: float, T: int) -> float:
    """s_T^2 / sigma_i^2 after T Langevin steps x += a s + sqrt(2a) z, a = eps sigma_i^2/sigma_L^2.

    (1 - eps/sigma_L^2)^{2T} (gamma^2 - r) + r,
    r = 2 eps / (sigma_L^2 - sigma_L^2 (1 - eps/sigma_L^2)^2)
    (Song & Ermon 2020, Proposition 3).
    """
    u = eps / sigma_L**2
    stationary = 2.0 * u / (1.0 - (1.0 - u) ** 2)
    return float((1.0 - u) ** (2 * T) * (gamma**2 - stationary) + stationary)


def ncsnv2_step_size(sigma_L: float, gamma: float, T: int) -> float:
    """Technique 4: the eps that brings ncsnv2_variance_ratio closest to 1 (it is always > 1).

    eps is for NCSNv2's update x + alpha s + sqrt(2 alpha) z with alpha = eps sigma_i^2/sigma_L^2;
    for the NCSN paper's x + alpha/2 s + sqrt(alpha) z use 2 eps.
    """
    log_u_bounds = (np.log(1e-12), np.log(1.0))  # search u = eps / sigma_L^2 on a log scale

    def excess(log_u: float) -> float:
        return ncsnv2_variance_ratio(np.exp(log_u) * sigma_L**2, sigma_L, gamma, T) - 1.0

    result = optimize.minimize_scalar(
        excess, bounds=log_u_bounds, method="bounded", options={"xatol": 1e-10}
    )
    return float(np.exp(result.x) * sigma_L**2)


def ncsnv2_schedule(
    data: np.ndarray, sigma_min: float = 0.01, T: int = 5
) -> tuple[np.ndarray, float]:
    """NCSNv2 techniques 1, 2 and 4 together: (sigmas sigma_1 > ... > sigma_L, step size eps)."""
    gamma = ncsnv2_gamma(int(np.prod(np.shape(data)[1:])))  # before the pass over all pairs
    sigma_max = ncsnv2_sigma_max(data)
    if sigma_max <= sigma_min:
        raise ValueError(
            f"the largest distance between two data points, {sigma_max:.4g}, is not above "
            f"sigma_min = {sigma_min:g}"
        )
    sigmas = geometric_sigmas(sigma_max, sigma_min, ncsnv2_num_levels(sigma_max, sigma_min, gamma))
    realised_gamma = sigmas[0] / sigmas[1]
    return sigmas, ncsnv2_step_size(sigma_min, realised_gamma, T)
