"""Forward SDEs of score-based generative modelling (Song et al. 2021) in ``keras.ops``.

Same API and numbers as ``reference.sde``: time runs from 0 (data) to T (prior), per-example times
``t`` have shape (batch,), ``discretize(x, t)`` returns ``(f, G)`` with ``x_{i+1} = x_i + f + G z``
and the discrete index of ``t`` is ``i = floor(t (N - 1) / T)``. Discretisation tables are built
in float64 NumPy and cast to ``keras.config.floatx()``. An SDE round-trips through a plain dict:
``sde_from_config(sde.to_config())``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from reference.sde import discrete_chain_message  # the same one-sentence refusal as the oracle

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]

LOG_2PI = math.log(2.0 * math.pi)


def to_float(a: Any) -> Tensor:
    """Convert to a tensor of the default float dtype (such a tensor is returned as it is)."""
    floatx = keras.config.floatx()
    if isinstance(a, (float, int, np.ndarray, np.generic)):
        # cast on the host: TensorFlow graphs would otherwise hold a Python float as float32
        return ops.convert_to_tensor(np.asarray(a, dtype=floatx))
    if ops.is_tensor(a) and keras.backend.standardize_dtype(a.dtype) == floatx:
        return a  # skips two Keras ops, which eager PyTorch samplers would pay on every step
    return ops.cast(ops.convert_to_tensor(a), floatx)


def per_example(t: Any, x: Tensor) -> Tensor:
    """Broadcast a scalar or (batch,) value to a float tensor of shape (batch,) matching x."""
    t = to_float(t)
    if x.shape[0] is not None and tuple(t.shape) == (x.shape[0],):
        return t  # already per example: a sampler step would pay an eager PyTorch op for nothing
    return ops.broadcast_to(t, (ops.shape(x)[0],))


def batch_scalar(s: Tensor, x: Tensor) -> Tensor:
    """Reshape a per-example scalar (batch,) so it broadcasts against x (batch, *dims)."""
    trailing = (1,) * (len(x.shape) - 1)
    if len(s.shape) == 1:  # indexing: a fraction of ops.reshape's dispatch cost in eager PyTorch
        return s[(slice(None),) + (None,) * len(trailing)]
    return ops.reshape(s, (-1, *trailing))


def sum_over_dims(x: Tensor) -> Tensor:
    """Sum a tensor (batch, *dims) over all but the batch axis."""
    dims = tuple(range(1, len(x.shape)))
    return ops.sum(x, axis=dims) if dims else x


def _gaussian_prior_logp(z: Tensor, sigma: float) -> Tensor:
    """log N(z; 0, sigma^2 I) per example for z of shape (batch, *dims)."""
    z = to_float(z)
    dim = math.prod(z.shape[1:])
    log_norm = -0.5 * dim * (LOG_2PI + 2.0 * math.log(sigma))
    return log_norm - 0.5 * sum_over_dims(ops.square(z)) / sigma**2


class SDE:
    """Abstract forward SDE dx = f(x, t) dt + g(t) dw on [0, T], discretised into N steps."""

    T: float = 1.0
    N: int
    eps: float

    def __init__(self, N: int, eps: float | None = None) -> None:
        self.N = int(N)
        if eps is not None:
            self.eps = float(eps)

    # --- serialisation -----------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments of this SDE."""
        return {"N": self.N, "eps": self.eps}

    def to_config(self) -> dict[str, Any]:
        """Plain-dict description {"type": class name, **constructor arguments}."""
        return {"type": type(self).__name__, **self.get_config()}

    def with_levels(self, N: int) -> SDE:
        """This SDE discretised into N levels: self when N matches, else one cached copy per N.

        A chain of n steps through `discretize`, `ancestral_step` or `langevin_alpha` must use the
        tables of N = n: over the levels of another N it removes the wrong noise per step. The copy
        is cached so compiled samplers keyed on the SDE are reused across calls.
        """
        N = int(N)
        if N == self.N:
            return self
        copies = self.__dict__.setdefault("_copies_by_levels", {})
        if N not in copies:
            copies[N] = type(self)(**{**self.get_config(), "N": N})
        return copies[N]

    # --- continuous-time description ---------------------------------------------------------
    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Drift f(x, t) of shape (batch, *dims) and diffusion g(t) of shape (batch,)."""
        raise NotImplementedError

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """(alpha(t), std(t)) such that x_t = alpha x_0 + std z given x_0."""
        raise NotImplementedError

    def marginal_prob(self, x0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (batch, *dims) and std (batch,) of the perturbation kernel p_t(x | x0)."""
        x0 = to_float(x0)
        alpha, std = self.marginal_coefficients(per_example(t, x0))
        return batch_scalar(alpha, x0) * x0, std

    @property
    def prior_std(self) -> float:
        """The standard deviation s of the Gaussian prior p_T = N(0, s^2 I)."""
        raise NotImplementedError

    def prior_from_normal(self, z: Any, temperature: float = 1.0) -> Tensor:
        """The prior draw temperature * s * z for standard normals z (temperature < 1 trades
        diversity for fidelity)."""
        return (temperature * self.prior_std) * to_float(z)

    def prior_sampling(self, seed: Any, shape: tuple[int, ...]) -> Tensor:
        """Draw from the prior p_T (seed: int or keras.random.SeedGenerator)."""
        return self.prior_from_normal(keras.random.normal(shape, seed=seed))

    def prior_logp(self, z: Tensor) -> Tensor:
        """log N(z; 0, s^2 I) per example, shape (batch,)."""
        return _gaussian_prior_logp(z, self.prior_std)

    # --- discretisation ----------------------------------------------------------------------
    def discrete_index(self, t: Tensor) -> Tensor:
        """Index i = floor(t (N - 1) / T) of t in the discretisation, clipped to [0, N - 1]."""
        # the cast truncates towards zero: floor for t >= 0, and for t < 0 both clip to 0
        i = ops.cast(to_float(t) * (self.N - 1) / self.T, "int32")
        return ops.clip(i, 0, self.N - 1)

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Euler–Maruyama step with dt = T/N: f = f(x, t) dt, G = g(t) sqrt(dt)."""
        x = to_float(x)
        dt = self.T / self.N
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> ReverseSDE:
        """The reverse-time SDE (or probability-flow ODE) driven by score_fn(x, t)."""
        return ReverseSDE(self, score_fn, probability_flow)

    # --- hooks used by the samplers ----------------------------------------------------------
    def check_discrete_chain(self) -> None:
        """Raise ValueError when the N-level tables that PC steps read are unusable (never here)."""

    def ancestral_step(self, x: Tensor, t: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        """Ancestral sampling step x_{i-1} = mean + std z given the score at (x, t_i)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no ancestral sampling rule; "
            "use the reverse_diffusion or euler_maruyama predictor instead."
        )

    def langevin_alpha(self, t: Tensor) -> Tensor:
        """alpha in the Langevin corrector's step size eps = 2 alpha (r ||z|| / ||s||)^2."""
        raise NotImplementedError

    def sigma_tilde(self, t: Tensor) -> Tensor:
        """sigma~(t) = std(t) / alpha(t): x_t / alpha = x_0 + sigma~ z (EDM / DPM-Solver scale)."""
        raise NotImplementedError

    def t_from_sigma_tilde(self, sigma: Tensor) -> Tensor:
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

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Reverse drift f - g^2 s (x 1/2 for the ODE) and diffusion g (0 for the ODE)."""
        x = to_float(x)
        drift, diffusion = self.forward.sde(x, t)
        score = self.score_fn(x, t)
        rev_drift = drift - batch_scalar(ops.square(diffusion), x) * score * self._score_weight
        rev_diffusion = ops.zeros_like(diffusion) if self.probability_flow else diffusion
        return rev_drift, rev_diffusion

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Discrete reverse step: rev_f = f - G^2 s (x 1/2 for ODE), rev_G = G (0 for ODE)."""
        x = to_float(x)
        f, G = self.forward.discretize(x, t)
        score = self.score_fn(x, t)
        rev_f = f - batch_scalar(ops.square(G), x) * score * self._score_weight
        rev_G = ops.zeros_like(G) if self.probability_flow else G
        return rev_f, rev_G


class VESDE(SDE):
    """Variance-exploding SDE: sigma(t) = sigma_min (sigma_max/sigma_min)^t, f = 0."""

    eps = 1e-5

    def __init__(
        self,
        sigma_min: float = 0.01,
        sigma_max: float = 50.0,
        N: int = 1000,
        eps: float | None = None,
    ) -> None:
        super().__init__(N, eps)
        self.sigma_min = float(sigma_min)
        self.sigma_max = float(sigma_max)
        self.log_ratio = math.log(self.sigma_max / self.sigma_min)
        # SMLD noise levels sigma_0 < ... < sigma_{N-1}, and sigma_{i-1} with sigma_{-1} = 0;
        # the differences sigma_i^2 - sigma_{i-1}^2 are tabulated in float64 (no cancellation)
        sigmas = np.exp(np.linspace(np.log(self.sigma_min), np.log(self.sigma_max), self.N))
        adjacent = np.concatenate([[0.0], sigmas[:-1]])
        self.discrete_sigmas = to_float(sigmas)
        self._adjacent_sigmas = to_float(adjacent)
        self._variance_steps = to_float(sigmas**2 - adjacent**2)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments of this SDE."""
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, **super().get_config()}

    def _sigma(self, t: Tensor) -> Tensor:
        """sigma(t) = sigma_min (sigma_max / sigma_min)^t."""
        return self.sigma_min * ops.exp(to_float(t) * self.log_ratio)

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """f = 0, g(t) = sigma(t) sqrt(2 log(sigma_max / sigma_min))."""
        x = to_float(x)
        return ops.zeros_like(x), self._sigma(per_example(t, x)) * math.sqrt(2.0 * self.log_ratio)

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = 1, std = sigma(t)."""
        sigma = self._sigma(t)
        return ops.ones_like(sigma), sigma

    @property
    def prior_std(self) -> float:
        """sigma_max: the prior is N(0, sigma_max^2 I)."""
        return self.sigma_max

    def _levels(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(sigma_i, sigma_{i-1}, sigma_i^2 - sigma_{i-1}^2) at the index of t (sigma_{-1} = 0)."""
        i = self.discrete_index(t)
        return (
            ops.take(self.discrete_sigmas, i),
            ops.take(self._adjacent_sigmas, i),
            ops.take(self._variance_steps, i),
        )

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """SMLD chain: f = 0, G = sqrt(sigma_i^2 - sigma_{i-1}^2)."""
        x = to_float(x)
        variance_step = ops.take(self._variance_steps, self.discrete_index(per_example(t, x)))
        return ops.zeros_like(x), ops.sqrt(variance_step)

    def ancestral_step(self, x: Tensor, t: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        """SMLD ancestral step: mean = x + (sigma_i^2 - sigma_{i-1}^2) score,
        std^2 = sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2."""
        x, score = to_float(x), to_float(score)
        sigma, adjacent, variance_step = self._levels(per_example(t, x))
        mean = x + batch_scalar(variance_step, x) * score
        std = ops.sqrt(ops.square(adjacent) * variance_step / ops.square(sigma))
        return mean, std

    def langevin_alpha(self, t: Tensor) -> Tensor:
        """alpha = 1 for VE."""
        return ops.ones_like(to_float(t))

    def sigma_tilde(self, t: Tensor) -> Tensor:
        """sigma~(t) = sigma(t), since alpha = 1."""
        return self._sigma(t)

    def t_from_sigma_tilde(self, sigma: Tensor) -> Tensor:
        """t = log(sigma / sigma_min) / log(sigma_max / sigma_min)."""
        return ops.log(to_float(sigma) / self.sigma_min) / self.log_ratio


class _LinearBetaSDE(SDE):
    """Shared part of VP and sub-VP: beta(t) = beta_0 + t (beta_1 - beta_0), f = -beta(t) x / 2."""

    eps = 1e-3

    def __init__(
        self,
        beta_min: float = 0.1,
        beta_max: float = 20.0,
        N: int = 1000,
        eps: float | None = None,
    ) -> None:
        super().__init__(N, eps)
        self.beta_0 = float(beta_min)
        self.beta_1 = float(beta_max)
        # DDPM betas beta_i = linspace(beta_0/N, beta_1/N, N) and alphas_i = 1 - beta_i
        betas = np.linspace(self.beta_0 / self.N, self.beta_1 / self.N, self.N)
        self.discrete_betas = to_float(betas)
        self.alphas = to_float(1.0 - betas)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments of this SDE."""
        return {"beta_min": self.beta_0, "beta_max": self.beta_1, **super().get_config()}

    def check_discrete_chain(self) -> None:
        """Raise ValueError unless every DDPM beta_i is below 1 (N > beta_max); host-side."""
        if max(self.beta_0, self.beta_1) / self.N >= 1.0:
            raise ValueError(discrete_chain_message(self))

    def beta(self, t: Tensor) -> Tensor:
        """beta(t) = beta_0 + t (beta_1 - beta_0)."""
        return self.beta_0 + to_float(t) * (self.beta_1 - self.beta_0)

    def log_mean_coeff(self, t: Tensor) -> Tensor:
        """log alpha(t) = -t^2 (beta_1 - beta_0) / 4 - t beta_0 / 2."""
        t = to_float(t)
        return -0.25 * ops.square(t) * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def _t_from_integrated_beta(self, integral: Tensor) -> Tensor:
        """Solve int_0^t beta = beta_0 t + (beta_1 - beta_0) t^2 / 2 = integral for t >= 0."""
        # stable root of the quadratic, also valid when beta_1 == beta_0
        root = ops.sqrt(self.beta_0**2 + 2.0 * (self.beta_1 - self.beta_0) * integral)
        return 2.0 * integral / (self.beta_0 + root)

    def _drift(self, x: Tensor, t: Tensor) -> Tensor:
        """f(x, t) = -beta(t) x / 2."""
        return -0.5 * batch_scalar(self.beta(t), x) * x

    @property
    def prior_std(self) -> float:
        """1: the prior is N(0, I)."""
        return 1.0

    def langevin_alpha(self, t: Tensor) -> Tensor:
        """alpha = alphas[i] = 1 - beta_i at the discrete index of t."""
        self.check_discrete_chain()
        return ops.take(self.alphas, self.discrete_index(t))


class VPSDE(_LinearBetaSDE):
    """Variance-preserving SDE (continuous DDPM): dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw."""

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """f = -beta(t) x / 2, g = sqrt(beta(t))."""
        x = to_float(x)
        t = per_example(t, x)
        return self._drift(x, t), ops.sqrt(self.beta(t))

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = exp(lmc), std = sqrt(1 - exp(2 lmc))."""
        lmc = self.log_mean_coeff(t)
        return ops.exp(lmc), ops.sqrt(-ops.expm1(2.0 * lmc))

    def discretize(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """DDPM chain: f = sqrt(1 - beta_i) x - x, G = sqrt(beta_i)."""
        x = to_float(x)
        self.check_discrete_chain()
        beta = ops.take(self.discrete_betas, self.discrete_index(per_example(t, x)))
        # sqrt(1 - beta) - 1 = -beta / (1 + sqrt(1 - beta)), free of float32 cancellation
        decay = -beta / (1.0 + ops.sqrt(1.0 - beta))
        return batch_scalar(decay, x) * x, ops.sqrt(beta)

    def ancestral_step(self, x: Tensor, t: Tensor, score: Tensor) -> tuple[Tensor, Tensor]:
        """DDPM ancestral: mean = (x + beta_i score) / sqrt(1 - beta_i), std = sqrt(beta_i)."""
        x, score = to_float(x), to_float(score)
        self.check_discrete_chain()
        beta = ops.take(self.discrete_betas, self.discrete_index(per_example(t, x)))
        mean = (x + batch_scalar(beta, x) * score) / batch_scalar(ops.sqrt(1.0 - beta), x)
        return mean, ops.sqrt(beta)

    def sigma_tilde(self, t: Tensor) -> Tensor:
        """sigma~ = sqrt(1 - alpha^2)/alpha = sqrt(exp(-2 lmc) - 1)."""
        return ops.sqrt(ops.expm1(-2.0 * self.log_mean_coeff(t)))

    def t_from_sigma_tilde(self, sigma: Tensor) -> Tensor:
        """Invert -2 lmc(t) = log(1 + sigma~^2) (a quadratic in t)."""
        return self._t_from_integrated_beta(ops.log1p(ops.square(to_float(sigma))))


class SubVPSDE(_LinearBetaSDE):
    """Sub-VP SDE: VP drift, g = sqrt(beta(t) (1 - exp(-2 beta_0 t - (beta_1 - beta_0) t^2)))."""

    def sde(self, x: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """f = -beta(t) x / 2, g = sqrt(beta(t) (1 - exp(-2 int_0^t beta)))."""
        x = to_float(x)
        t = per_example(t, x)
        exponent = -2.0 * self.beta_0 * t - (self.beta_1 - self.beta_0) * ops.square(t)
        return self._drift(x, t), ops.sqrt(self.beta(t) * -ops.expm1(exponent))

    def marginal_coefficients(self, t: Tensor) -> tuple[Tensor, Tensor]:
        """alpha = exp(lmc), std = 1 - exp(2 lmc)."""
        lmc = self.log_mean_coeff(t)
        return ops.exp(lmc), -ops.expm1(2.0 * lmc)

    def sigma_tilde(self, t: Tensor) -> Tensor:
        """sigma~ = (1 - alpha^2)/alpha = exp(-lmc) - exp(lmc) = 2 sinh(-lmc)."""
        return 2.0 * ops.sinh(-self.log_mean_coeff(t))

    def t_from_sigma_tilde(self, sigma: Tensor) -> Tensor:
        """Invert -2 lmc(t) = 2 asinh(sigma~ / 2) (a quadratic in t)."""
        return self._t_from_integrated_beta(2.0 * ops.arcsinh(0.5 * to_float(sigma)))


SDES: dict[str, type[SDE]] = {cls.__name__: cls for cls in (VESDE, VPSDE, SubVPSDE)}


def sde_from_config(config: dict[str, Any]) -> SDE:
    """Rebuild an SDE from the dict written by `SDE.to_config`."""
    config = dict(config)
    name = config.pop("type")
    if name not in SDES:
        raise ValueError(f"unknown SDE type {name!r}; expected one of {sorted(SDES)}")
    return SDES[name](**config)


def geometric_sigmas(sigma_max: float, sigma_min: float, L: int) -> Tensor:
    """L geometric noise levels sigma_1 = sigma_max > ... > sigma_L = sigma_min (float tensor)."""
    return to_float(np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), int(L))))
