"""Samplers for score models: Langevin, annealed Langevin, predictor-corrector, ODE, EDM, DPM++.

Every sampler takes a score function and returns ``(x, nfe)``: the final sample, shape
``(batch, *dims)``, and the number of score evaluations. Continuous-time samplers take
``score_fn(x, t)`` with ``t`` of shape ``(batch,)``; the NCSN samplers take ``score_fn(x, sigma)``.
Every normal is drawn through ``rng.standard_normal(shape)``; each docstring states the order.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
from scipy.integrate import solve_ivp

from reference.utils import as_batch, batch_scalar, require_finite

ScoreFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
StepFn = Callable[..., tuple[np.ndarray, np.ndarray]]

HEUN_WEIGHT = 0.5  # trapezoidal rule: the Heun step averages the two slopes equally
SQRT2_MINUS_1 = np.sqrt(2.0) - 1.0  # EDM's cap on the churn factor gamma_i
FIXED_STEP_ODE_METHODS = ("euler", "heun")
ADAPTIVE_ODE_METHODS = ("RK45", "RK23", "DOP853")
"""The explicit Runge-Kutta methods of solve_ivp (the implicit ones estimate a D x D Jacobian)."""
ODE_METHODS = (*ADAPTIVE_ODE_METHODS, *FIXED_STEP_ODE_METHODS)


class CountingScore:
    """Wrap a score function and count its evaluations (the NFE)."""

    def __init__(self, score_fn: Callable[..., np.ndarray]) -> None:
        """Wrap ``score_fn``; ``nfe`` starts at zero."""
        self.score_fn = score_fn
        self.nfe = 0

    def __call__(self, *args: np.ndarray) -> np.ndarray:
        """Evaluate the wrapped score and count one evaluation."""
        self.nfe += 1
        return self.score_fn(*args)


# --------------------------------------------------------------------------- Langevin / NCSN


def langevin(
    score_fn: Callable[..., np.ndarray],
    x: np.ndarray,
    rng: np.random.Generator,
    step_size: float,
    n_steps: int,
    t: np.ndarray | float | None = None,
) -> tuple[np.ndarray, int]:
    """Unadjusted Langevin dynamics; ``score_fn(x)`` or ``score_fn(x, t)`` when ``t`` is given.

    Update (Song & Ermon 2019, eq. 4): x <- x + (eps/2) s(x) + sqrt(eps) z.
    Draws one ``standard_normal(x.shape)`` per step, after that step's score evaluation.
    """
    x = np.asarray(x, dtype=np.float64)
    t_vec = None if t is None else as_batch(t, x.shape[0])
    for _ in range(n_steps):
        score = score_fn(x) if t_vec is None else score_fn(x, t_vec)
        z = rng.standard_normal(x.shape)
        x = x + 0.5 * step_size * score + np.sqrt(step_size) * z
    return x, n_steps


def annealed_langevin(
    score_fn: ScoreFn,
    sigmas: np.ndarray,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
    x_init: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Annealed Langevin dynamics, Algorithm 1 of NCSN; ``score_fn(x, sigma)``, sigmas decreasing.

    Step at level i: alpha_i = step_lr * sigma_i^2 / sigma_L^2. The start is ``x_init`` or
    ``sigmas[0] * z`` (one ``standard_normal(shape)``, drawn first); then one
    ``standard_normal(shape)`` per Langevin step after its score. With ``denoise`` a final
    Tweedie step x + sigma_L^2 s(x, sigma_L) is taken (one more NFE, no noise).
    """
    sigmas = np.asarray(sigmas, dtype=np.float64)
    x = sigmas[0] * rng.standard_normal(shape) if x_init is None else np.array(x_init, float)
    batch = x.shape[0]
    nfe = 0
    for sigma in sigmas:
        alpha = step_lr * sigma**2 / sigmas[-1] ** 2  # NCSN Algorithm 1, line 3
        sigma_vec = np.full(batch, sigma)
        for _ in range(n_steps_each):
            score = score_fn(x, sigma_vec)
            z = rng.standard_normal(x.shape)
            x = x + 0.5 * alpha * score + np.sqrt(alpha) * z
            nfe += 1
    if denoise:
        sigma_last = np.full(batch, sigmas[-1])
        x = x + sigmas[-1] ** 2 * score_fn(x, sigma_last)  # Tweedie's formula
        nfe += 1
    return x, nfe


# --------------------------------------------------------------------------- predictors
# A predictor step maps (score_fn, sde, x, t, rng, dt) to (x, x_mean), x_mean the noise-free part.


def euler_maruyama(
    score_fn: ScoreFn, sde, x: np.ndarray, t: np.ndarray, rng: np.random.Generator, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Euler–Maruyama step of the reverse SDE; one score NFE, then one normal of x.shape."""
    drift, diffusion = sde.reverse(score_fn).sde(x, t)
    x_mean = x + drift * dt  # reverse SDE (Song et al. 2021, eq. 6), dt < 0
    z = rng.standard_normal(x.shape)
    return x_mean + batch_scalar(diffusion, x) * np.sqrt(-dt) * z, x_mean


def reverse_diffusion(
    score_fn: ScoreFn, sde, x: np.ndarray, t: np.ndarray, rng: np.random.Generator, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Reverse-diffusion step through the reverse discretisation; one NFE, then one normal."""
    f, G = sde.reverse(score_fn).discretize(x, t)
    x_mean = x - f  # reverse of x_{i+1} = x_i + f_i + G_i z (Song et al. 2021, eq. 46)
    z = rng.standard_normal(x.shape)
    return x_mean + batch_scalar(G, x) * z, x_mean


def ancestral(
    score_fn: ScoreFn, sde, x: np.ndarray, t: np.ndarray, rng: np.random.Generator, dt: float
) -> tuple[np.ndarray, np.ndarray]:
    """Ancestral-sampling step (SMLD / DDPM) through ``sde.ancestral_step``; one NFE, one normal."""
    x_mean, std = sde.ancestral_step(x, t, score_fn(x, t))
    z = rng.standard_normal(x.shape)
    return x_mean + batch_scalar(std, x) * z, x_mean


# --------------------------------------------------------------------------- correctors
# A corrector step maps (score_fn, sde, x, t, rng, snr, n_steps, norm_rule) to (x, x_mean);
# norm_rule is a key of NORM_RULES (read by the Langevin corrector only).


def _norm_per_example(v: np.ndarray) -> np.ndarray:
    """Euclidean norm of each example, shape (batch,)."""
    return np.linalg.norm(v.reshape(v.shape[0], -1), axis=-1)


def _norm_batch_mean(v: np.ndarray) -> np.ndarray:
    """The examples' Euclidean norms averaged over the batch (a scalar), as score_sde."""
    return np.mean(_norm_per_example(v))


NORM_RULES = {"batch": _norm_batch_mean, "per_example": _norm_per_example}
"""The Langevin corrector's norms ||z||, ||s|| in its step rule: per example then averaged over
the batch (score_sde's; couples the samples of a batch), or per example (batch-independent)."""


def langevin_corrector(
    score_fn: ScoreFn,
    sde,
    x: np.ndarray,
    t: np.ndarray,
    rng: np.random.Generator,
    snr: float,
    n_steps: int,
    norm_rule: str = "batch",
) -> tuple[np.ndarray, np.ndarray]:
    """Langevin corrector with the signal-to-noise step rule (Song et al. 2021, Algorithm 4).

    Step eps = 2 alpha (snr ||z|| / ||s||)^2, alpha = ``sde.langevin_alpha(t)``, the norms by
    ``norm_rule`` (`NORM_RULES`): "batch", per example then averaged over the batch (score_sde),
    or "per_example". Each step: one NFE, then one normal of x.shape.
    """
    alpha = sde.langevin_alpha(t)
    norm = NORM_RULES[norm_rule]
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        z = rng.standard_normal(x.shape)
        grad_norm, noise_norm = norm(grad), norm(z)
        step_size = batch_scalar(2.0 * alpha * (snr * noise_norm / grad_norm) ** 2, x)
        x_mean = x + step_size * grad
        x = x_mean + np.sqrt(2.0 * step_size) * z
    return x, x_mean


def ald(
    score_fn: ScoreFn,
    sde,
    x: np.ndarray,
    t: np.ndarray,
    rng: np.random.Generator,
    snr: float,
    n_steps: int,
    norm_rule: str = "batch",
) -> tuple[np.ndarray, np.ndarray]:
    """Annealed Langevin corrector: eps = 2 alpha (snr sigma_t)^2, sigma_t the marginal std.

    As score_sde's ``AnnealedLangevinDynamics``; its step reads no norms (``norm_rule`` unused).
    Each step: one NFE, then one normal of x.shape.
    """
    alpha = sde.langevin_alpha(t)
    _, std = sde.marginal_coefficients(t)
    step_size = batch_scalar(2.0 * alpha * (snr * std) ** 2, x)
    x_mean = x
    for _ in range(n_steps):
        grad = score_fn(x, t)
        z = rng.standard_normal(x.shape)
        x_mean = x + step_size * grad
        x = x_mean + np.sqrt(2.0 * step_size) * z
    return x, x_mean


def none(
    score_fn: ScoreFn,
    sde,
    x: np.ndarray,
    t: np.ndarray,
    rng: np.random.Generator,
    snr: float,
    n_steps: int,
    norm_rule: str = "batch",
) -> tuple[np.ndarray, np.ndarray]:
    """The identity corrector: no NFE, no draws."""
    return x, x


PREDICTORS: dict[str, StepFn] = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral": ancestral,
    "none": lambda score_fn, sde, x, t, rng, dt: (x, x),
}
CORRECTORS: dict[str, StepFn] = {"langevin": langevin_corrector, "ald": ald, "none": none}


def pc_sample(
    score_fn: ScoreFn,
    sde,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_corrector_steps: int = 1,
    eps: float | None = None,
    denoise: bool = True,
    x_init: np.ndarray | None = None,
    n_steps: int | None = None,
    norm_rule: str = "batch",
) -> tuple[np.ndarray, int]:
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1), t = linspace(T, eps, N).

    At each step the corrector runs, then the predictor; dt = -T/N as in score_sde. ``n_steps``
    other than sde.N runs on ``sde.with_levels(n_steps)``, whose noise levels the chain visits.
    ``norm_rule``: the Langevin corrector's norms (`NORM_RULES`; "batch" is score_sde's).
    Draws: the prior (``sde.prior_sampling(rng, shape)``) unless ``x_init``; then per step the
    corrector's normals, then the predictor's. Returns the noise-free mean of the last step when
    ``denoise``.
    """
    counted = CountingScore(score_fn)
    predictor_fn, corrector_fn = PREDICTORS[predictor], CORRECTORS[corrector]
    eps = sde.eps if eps is None else eps
    sde = sde if n_steps is None else sde.with_levels(n_steps)
    n_steps = sde.N
    x = sde.prior_sampling(rng, shape) if x_init is None else np.array(x_init, dtype=np.float64)
    dt = -sde.T / n_steps
    x_mean = x
    for t in np.linspace(sde.T, eps, n_steps):
        t_vec = np.full(x.shape[0], t)
        x, x_mean = corrector_fn(counted, sde, x, t_vec, rng, snr, n_corrector_steps, norm_rule)
        x, x_mean = predictor_fn(counted, sde, x, t_vec, rng, dt)
    return (x_mean if denoise else x), counted.nfe


# --------------------------------------------------------------------------- probability-flow ODE


def probability_flow_drift(
    score_fn: ScoreFn, sde
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The drift f(x,t) - g(t)^2 s(x,t)/2 of the probability-flow ODE (Song et al. 2021, eq. 13)."""
    reverse = sde.reverse(score_fn, probability_flow=True)
    return lambda x, t: reverse.sde(x, t)[0]


def _integrate_ode(
    drift: Callable[[np.ndarray, np.ndarray], np.ndarray],
    x: np.ndarray,
    t_start: float,
    t_end: float,
    method: str,
    rtol: float,
    atol: float,
    n_steps: int,
) -> tuple[np.ndarray, int]:
    """Integrate dx/dt = drift(x, t) from t_start to t_end for the whole batch; return (x, nfe)."""
    shape, batch = x.shape, x.shape[0]
    if method in FIXED_STEP_ODE_METHODS:
        times = np.linspace(t_start, t_end, n_steps + 1)
        nfe = 0
        for t_cur, t_next in itertools.pairwise(times):
            h = t_next - t_cur
            d_cur = drift(x, np.full(batch, t_cur))
            x_next = x + h * d_cur
            nfe += 1
            if method == "heun":
                d_next = drift(x_next, np.full(batch, t_next))
                x_next = x + h * (HEUN_WEIGHT * d_cur + (1.0 - HEUN_WEIGHT) * d_next)
                nfe += 1
            x = x_next
        return x, nfe
    nfe = 0

    def ode_func(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        return require_finite(drift(y.reshape(shape), np.full(batch, t)).ravel(), t)

    solution = solve_ivp(ode_func, (t_start, t_end), x.ravel(), method=method, rtol=rtol, atol=atol)
    if not solution.success:
        raise RuntimeError(f"probability-flow ODE solve failed: {solution.message}")
    return solution.y[:, -1].reshape(shape), nfe


def ode_sample(
    score_fn: ScoreFn,
    sde,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    method: str = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    n_steps: int = 100,
    eps: float | None = None,
    z: np.ndarray | None = None,
) -> tuple[np.ndarray, int]:
    """Sample by integrating the probability-flow ODE from T to eps.

    ``method``: any ``solve_ivp`` method (default RK45, NFE = its function evaluations) or the
    fixed-step "euler" / "heun" with ``n_steps`` steps. Draws the latent via
    ``sde.prior_sampling(rng, shape)`` unless ``z`` is given.
    """
    eps = sde.eps if eps is None else eps
    x = sde.prior_sampling(rng, shape) if z is None else np.array(z, dtype=np.float64)
    drift = probability_flow_drift(score_fn, sde)
    return _integrate_ode(drift, x, sde.T, eps, method, rtol, atol, n_steps)


def ode_encode(
    score_fn: ScoreFn,
    sde,
    x: np.ndarray,
    method: str = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    n_steps: int = 100,
    eps: float | None = None,
) -> tuple[np.ndarray, int]:
    """Encode data into the latent by integrating the probability-flow ODE from eps to T."""
    eps = sde.eps if eps is None else eps
    drift = probability_flow_drift(score_fn, sde)
    return _integrate_ode(
        drift, np.array(x, dtype=np.float64), eps, sde.T, method, rtol, atol, n_steps
    )


# --------------------------------------------------------------------------- sigma parameterisation


def tilde_denoiser(score_fn: ScoreFn, sde) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """D(x~; sigma~) = x~ + sigma~^2 grad log p(x~) on x~ = x / alpha (Karras et al. 2022, eq. 3).

    With t = t(sigma~) and alpha = alpha(t): grad_{x~} log p(x~) = alpha * score(alpha x~, t).
    ``sigma`` is shape (batch,).
    """

    def denoise(x_tilde: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        t = sde.t_from_sigma_tilde(sigma)
        alpha, _ = sde.marginal_coefficients(t)
        a = batch_scalar(alpha, x_tilde)
        return x_tilde + batch_scalar(sigma**2, x_tilde) * a * score_fn(a * x_tilde, t)

    return denoise


def karras_sigmas(sigma_min: float, sigma_max: float, n_steps: int, rho: float) -> np.ndarray:
    """Karras et al. 2022 rho-schedule (eq. 5): n_steps decreasing sigmas, then sigma_N = 0."""
    ramp = np.arange(n_steps) / max(n_steps - 1, 1)
    inv_rho_min, inv_rho_max = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (inv_rho_max + ramp * (inv_rho_min - inv_rho_max)) ** rho
    return np.append(sigmas, 0.0)


def _sigma_range(sde, sigma_min: float | None, sigma_max: float | None) -> tuple[float, float]:
    """Default sigma~ range: sigma~(eps) to sigma~(T) of the SDE."""
    if sigma_min is None:
        sigma_min = float(sde.sigma_tilde(np.array([sde.eps]))[0])
    if sigma_max is None:
        sigma_max = float(sde.sigma_tilde(np.array([sde.T]))[0])
    return sigma_min, sigma_max


def edm_heun_sample(
    score_fn: ScoreFn,
    sde,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    n_steps: int = 18,
    rho: float = 7.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> tuple[np.ndarray, int]:
    """EDM's stochastic/deterministic Heun sampler (Karras et al. 2022, Algorithm 2).

    Runs on x~ = x / alpha with sigma~ = ``sde.sigma_tilde(t)`` (default range sigma~(eps) to
    sigma~(T)); the last step (to sigma = 0) is Euler, so NFE = 2 n_steps - 1. Draws: the start
    x_0 = sigma_0 * z (one ``standard_normal(shape)``), then, only at steps with gamma_i > 0, one
    ``standard_normal(shape)`` for the churn noise.
    """
    sigma_min, sigma_max = _sigma_range(sde, sigma_min, sigma_max)
    counted = CountingScore(score_fn)
    denoiser = tilde_denoiser(counted, sde)
    t_steps = karras_sigmas(sigma_min, sigma_max, n_steps, rho)
    batch = shape[0]
    x_next = t_steps[0] * rng.standard_normal(shape)
    gamma_max = min(s_churn / n_steps, SQRT2_MINUS_1)
    for i, (t_cur, t_next) in enumerate(itertools.pairwise(t_steps)):
        x_cur = x_next
        gamma = gamma_max if s_tmin <= t_cur <= s_tmax else 0.0
        t_hat = t_cur + gamma * t_cur
        x_hat = x_cur
        if gamma > 0.0:
            eps_i = s_noise * rng.standard_normal(shape)
            x_hat = x_cur + np.sqrt(t_hat**2 - t_cur**2) * eps_i
        d_cur = (x_hat - denoiser(x_hat, np.full(batch, t_hat))) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur  # Euler step of dx/dsigma = (x - D)/sigma
        if i < n_steps - 1:
            d_prime = (x_next - denoiser(x_next, np.full(batch, t_next))) / t_next
            x_next = x_hat + (t_next - t_hat) * (HEUN_WEIGHT * d_cur + (1 - HEUN_WEIGHT) * d_prime)
    return x_next, counted.nfe


DPM_SCHEDULES = ("logsnr", "time", "karras")


def dpm_solver_sigmas(
    sde, n_steps: int, schedule: str, sigma_min: float, sigma_max: float, eps: float, rho: float
) -> np.ndarray:
    """The n_steps decreasing sigma~ of DPM-Solver++ followed by sigma = 0.

    "logsnr": uniform in lambda = -log sigma~ (Lu et al.'s choice); "time": uniform in t from T to
    eps, sigma~ = sde.sigma_tilde(t); "karras": the rho-schedule of EDM.
    """
    if schedule == "logsnr":
        return np.append(np.geomspace(sigma_max, sigma_min, n_steps), 0.0)
    if schedule == "time":
        return np.append(sde.sigma_tilde(np.linspace(sde.T, eps, n_steps)), 0.0)
    if schedule == "karras":
        return karras_sigmas(sigma_min, sigma_max, n_steps, rho)
    raise ValueError(f"unknown schedule {schedule!r}; choose from {DPM_SCHEDULES}")


def dpm_solver_pp_sample(
    score_fn: ScoreFn,
    sde,
    shape: tuple[int, ...],
    rng: np.random.Generator,
    n_steps: int = 20,
    schedule: str = "logsnr",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
) -> tuple[np.ndarray, int]:
    """DPM-Solver++(2M): multistep second-order data-prediction solver (Lu et al. 2022, Alg. 2).

    Runs on x~ = x / alpha with lambda = -log sigma~; ``schedule`` picks the steps (see
    ``dpm_solver_sigmas``; default uniform in lambda from sigma~(T) to sigma~(eps)). The first step
    and the last (to sigma = 0, which returns the denoised x) are first order. NFE = n_steps.
    Draws the start x_0 = sigma_0 * z, one ``standard_normal(shape)``.
    """
    sigma_min, sigma_max = _sigma_range(sde, sigma_min, sigma_max)
    counted = CountingScore(score_fn)
    denoiser = tilde_denoiser(counted, sde)
    sigmas = dpm_solver_sigmas(sde, n_steps, schedule, sigma_min, sigma_max, sde.eps, rho)
    batch = shape[0]
    x = sigmas[0] * rng.standard_normal(shape)
    x0_prev, h_prev = None, None
    for sigma_cur, sigma_next in itertools.pairwise(sigmas):
        x0 = denoiser(x, np.full(batch, sigma_cur))
        if sigma_next == 0.0:
            x = x0  # first-order step to sigma = 0 (h = infinity)
            break
        h = np.log(sigma_cur) - np.log(sigma_next)  # lambda_next - lambda_cur
        d = x0
        if x0_prev is not None:
            r = h_prev / h
            d = (1.0 + 1.0 / (2.0 * r)) * x0 - (1.0 / (2.0 * r)) * x0_prev
        # DPM-Solver++(2M) update (Lu et al. 2022, eq. 15) in x~: x <- (s'/s) x - expm1(-h) D
        x = (sigma_next / sigma_cur) * x - np.expm1(-h) * d
        x0_prev, h_prev = x0, h
    return x, counted.nfe
