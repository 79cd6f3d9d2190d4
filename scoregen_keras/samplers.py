"""Samplers for score-based models on Keras 3, name for name the samplers of ``reference.samplers``.

Every sampler takes a score function and returns ``(x, nfe)``: the final sample, shape
``(batch, *dims)``, and the number of score evaluations. Continuous-time samplers take
``score_fn(x, t)`` with ``t`` of shape ``(batch,)``; the NCSN samplers take ``score_fn(x, sigma)``.

Randomness: where the reference takes ``rng`` a sampler takes ``seed``: an int S (the samples'
seeds S, S+1, ...), one seed per sample, a ``CounterNoise``, or a ``keras.random.SeedGenerator``
(the backend's stream, an opt-in); or ``noise`` injected by a test, consumed in the order the
reference draws its normals (`scoregen_keras.sampling.noise`). With per-sample seeds, draw d of a
sample (one normal of its shape) is a function of its seed and d alone, d counting the normals
in the order each docstring states, from 0:

- `pc_sample`: draw 0 the prior (none with ``x_init``); then per step the corrector's
  ``n_corrector_steps`` normals (langevin, ald; none for "none"), then the predictor's one
  (none for "none");
- `annealed_langevin`: draw 0 the start sigma_1 z (none with ``x_init``); then one per Langevin
  step, level after level;
- `langevin`: one per step;
- `ode_sample`: draw 0 the latent (none with ``z``), nothing after;
- `edm_heun_sample`: draw 0 the start sigma_0 z; then one churn normal per step with
  gamma_i > 0 only;
- `dpm_solver_pp_sample`: draw 0 the start sigma_0 z, nothing after.

So a sample depends on neither the backend, nor the batch it is drawn in, nor its place there,
wherever the sampler's arithmetic is per example: every sampler here except the Langevin
corrector with ``norm_rule="batch"`` (score_sde's step rule, norms averaged over the batch) and
the adaptive ODE solvers (RK45 / dopri5), whose step sizes are chosen for the whole batch, so that
a sample agrees across batch sizes only to the solver's tolerance.
Compilation: the fixed-step samplers run several steps per compiled call
(`scoregen_keras.sampling.chunks`); ``variables`` lists the weights the score reads, so that a
compiled step sees their later values on JAX. ``temperature`` scales the prior draw
(``SDE.prior_from_normal``); ``progress`` shows a tqdm bar updated once per chunk.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from keras import ops

from scoregen_keras.choices import DPM_SCHEDULES
from scoregen_keras.sampling.chunks import compiled, run_steps, without_grad
from scoregen_keras.sampling.host import host_to_float
from scoregen_keras.sampling.noise import Noise, NoiseSource, Seed
from scoregen_keras.sampling.ode import HEUN_WEIGHT, integrate_ode
from scoregen_keras.sampling.ode import probability_flow_drift as probability_flow_drift
from scoregen_keras.sde import SDE, batch_scalar, per_example, sum_over_dims, to_float

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]
StepFn = Callable[..., tuple[Tensor, Tensor]]
SQRT2_MINUS_1 = math.sqrt(2.0) - 1.0  # EDM's cap on the churn factor gamma_i


def _start(sde: SDE, source: NoiseSource, x_init: Any | None, temperature: float) -> Tensor:
    """x_init, or a prior draw scaled by temperature (one normal)."""
    if x_init is not None:
        return to_float(x_init)
    return sde.prior_from_normal(source.draw_one(), temperature)


def _norm_per_example(v: Tensor) -> Tensor:
    """Euclidean norm of each example, shape (batch,)."""
    return ops.sqrt(sum_over_dims(ops.square(v)))


def _norm_batch_mean(v: Tensor) -> Tensor:
    """The examples' Euclidean norms averaged over the batch (a scalar), as score_sde."""
    return ops.mean(_norm_per_example(v))


NORM_RULES = {"batch": _norm_batch_mean, "per_example": _norm_per_example}
"""The Langevin corrector's norms ||z||, ||s|| in its step rule: per example then averaged over
the batch (score_sde's; couples the samples of a batch), or per example (batch-independent)."""


@without_grad
def langevin(
    score_fn: Callable[..., Tensor],
    x: Any,
    seed: Seed,
    step_size: float,
    n_steps: int,
    t: Any | None = None,
    *,
    noise: Noise = None,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Unadjusted Langevin dynamics; ``score_fn(x)`` or ``score_fn(x, t)`` when ``t`` is given.

    Update (Song & Ermon 2019, eq. 4): x <- x + (eps/2) s(x) + sqrt(eps) z; one normal per step.
    """
    x = to_float(x)
    conditioned = t is not None

    def step(x: Tensor, t: Tensor, z: Tensor) -> Tensor:
        score = score_fn(x, per_example(t, x)) if conditioned else score_fn(x)
        return x + 0.5 * step_size * score + math.sqrt(step_size) * z[0]

    t_host = np.asarray(ops.convert_to_numpy(0.0 if t is None else t), dtype=np.float64)
    times = np.tile(np.broadcast_to(t_host, (x.shape[0],)), (n_steps, 1))  # (n_steps, batch)
    x = run_steps(
        step,
        x,
        times,
        key=("langevin", score_fn, conditioned, float(step_size)),
        noise=NoiseSource(x.shape, seed, noise),
        draws_per_step=1,
        variables=variables,
        progress=progress,
        desc="langevin",
    )
    return x, n_steps


@without_grad
def annealed_langevin(
    score_fn: ScoreFn,
    sigmas: Any,
    shape: tuple[int, ...],
    seed: Seed,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
    x_init: Any | None = None,
    *,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Annealed Langevin dynamics, Algorithm 1 of NCSN; ``score_fn(x, sigma)``, sigmas decreasing.

    Step at level i: alpha_i = step_lr sigma_i^2 / sigma_L^2. Draws as the reference: the start
    ``temperature * sigmas[0] * z`` unless ``x_init``, then one normal per Langevin step. With
    ``denoise`` a final Tweedie step x + sigma_L^2 s(x, sigma_L) is taken (one more NFE).
    """
    sigmas = np.asarray(ops.convert_to_numpy(sigmas), dtype=np.float64)
    source = NoiseSource(shape, seed, noise)
    if x_init is None:
        x = sigmas[0] * temperature * source.draw_one()
    else:
        x = to_float(x_init)

    def step(x: Tensor, coefficients: Tensor, z: Tensor) -> Tensor:
        sigma, alpha = coefficients[0], coefficients[1]
        score = score_fn(x, per_example(sigma, x))
        return x + 0.5 * alpha * score + ops.sqrt(alpha) * z[0]  # NCSN Algorithm 1, line 6

    alphas = step_lr * sigmas**2 / sigmas[-1] ** 2  # Algorithm 1, line 3
    table = np.repeat(np.stack([sigmas, alphas], axis=1), n_steps_each, axis=0)
    x = run_steps(
        step,
        x,
        table,
        key=("annealed_langevin", score_fn),
        noise=source,
        draws_per_step=1,
        variables=variables,
        progress=progress,
        desc="annealed ld",
    )
    nfe = len(table)
    if denoise:
        x = tweedie_denoise(score_fn, x, sigmas[-1], variables)
        nfe += 1
    return x, nfe


def tweedie_denoise(
    score_fn: ScoreFn, x: Tensor, sigma: float, variables: Sequence[Any] | None = None
) -> Tensor:
    """x + sigma^2 s(x, sigma): Tweedie's formula, the mean of the clean data given x at noise
    level sigma; one NFE, compiled (``variables`` as for the samplers)."""

    def tweedie(x: Tensor, sigma: Tensor) -> Tensor:
        return x + ops.square(sigma) * score_fn(x, per_example(sigma, x))

    denoise = compiled(tweedie, key=("tweedie", score_fn), variables=variables)
    return denoise(x, host_to_float(sigma))


# --------------------------------------------------------------------------- predictor-corrector
# A predictor step maps (score_fn, sde, x, t, z, dt) to (x, x_mean), x_mean the noise-free part and
# z the step's normal (the reference's rng draw). A corrector step maps (score_fn, sde, x, t, z,
# snr, n_steps, norm_rule) to (x, x_mean), z stacking its n_steps normals, shape
# (n_steps, *x.shape); norm_rule is a key of NORM_RULES (read by the Langevin corrector only).


def euler_maruyama(
    score_fn: ScoreFn, sde: SDE, x: Tensor, t: Tensor, z: Tensor, dt: float
) -> tuple[Tensor, Tensor]:
    """Euler–Maruyama step of the reverse SDE; one NFE, one normal z."""
    drift, diffusion = sde.reverse(score_fn).sde(x, t)
    x_mean = x + drift * dt  # reverse SDE (Song et al. 2021, eq. 6), dt < 0
    return x_mean + batch_scalar(diffusion, x) * math.sqrt(-dt) * z, x_mean


def reverse_diffusion(
    score_fn: ScoreFn, sde: SDE, x: Tensor, t: Tensor, z: Tensor, dt: float
) -> tuple[Tensor, Tensor]:
    """Reverse-diffusion step through the reverse discretisation; one NFE, one normal z."""
    f, G = sde.reverse(score_fn).discretize(x, t)
    x_mean = x - f  # reverse of x_{i+1} = x_i + f_i + G_i z (Song et al. 2021, eq. 46)
    return x_mean + batch_scalar(G, x) * z, x_mean


def ancestral(
    score_fn: ScoreFn, sde: SDE, x: Tensor, t: Tensor, z: Tensor, dt: float
) -> tuple[Tensor, Tensor]:
    """Ancestral-sampling step (SMLD / DDPM) through ``sde.ancestral_step``; one NFE, one normal."""
    x_mean, std = sde.ancestral_step(x, t, score_fn(x, t))
    return x_mean + batch_scalar(std, x) * z, x_mean


def no_predictor(
    score_fn: ScoreFn, sde: SDE, x: Tensor, t: Tensor, z: Tensor, dt: float
) -> tuple[Tensor, Tensor]:
    """The identity predictor: no NFE, no draws."""
    return x, x


def langevin_corrector(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    z: Tensor,
    snr: float,
    n_steps: int,
    norm_rule: str = "batch",
) -> tuple[Tensor, Tensor]:
    """Langevin corrector with the signal-to-noise step rule (Song et al. 2021, Algorithm 4).

    Step eps = 2 alpha (snr ||z|| / ||s||)^2, alpha = ``sde.langevin_alpha(t)``, the norms by
    ``norm_rule`` (`NORM_RULES`): "batch", per example then averaged over the batch (score_sde),
    or "per_example". Each step: one NFE, one normal z[j].
    """
    alpha = sde.langevin_alpha(t)
    norm = NORM_RULES[norm_rule]
    x_mean = x
    for j in range(n_steps):
        grad = score_fn(x, t)
        grad_norm, noise_norm = norm(grad), norm(z[j])
        step_size = batch_scalar(2.0 * alpha * ops.square(snr * noise_norm / grad_norm), x)
        x_mean = x + step_size * grad
        x = x_mean + ops.sqrt(2.0 * step_size) * z[j]
    return x, x_mean


def ald(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    z: Tensor,
    snr: float,
    n_steps: int,
    norm_rule: str = "batch",
) -> tuple[Tensor, Tensor]:
    """Annealed Langevin corrector: eps = 2 alpha (snr sigma_t)^2, sigma_t the marginal std.

    As score_sde's ``AnnealedLangevinDynamics``; its step reads no norms (``norm_rule`` unused).
    Each step: one NFE, one normal z[j].
    """
    alpha = sde.langevin_alpha(t)
    _, std = sde.marginal_coefficients(t)
    step_size = batch_scalar(2.0 * alpha * ops.square(snr * std), x)
    x_mean = x
    for j in range(n_steps):
        grad = score_fn(x, t)
        x_mean = x + step_size * grad
        x = x_mean + ops.sqrt(2.0 * step_size) * z[j]
    return x, x_mean


def none(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    t: Tensor,
    z: Tensor,
    snr: float,
    n_steps: int,
    norm_rule: str = "batch",
) -> tuple[Tensor, Tensor]:
    """The identity corrector: no NFE, no draws."""
    return x, x


@dataclasses.dataclass(frozen=True)
class PCStep:
    """A predictor or corrector step and what it asks of the sampler that runs it."""

    fn: StepFn
    nfe: int
    """Score evaluations of one (corrector) step, each followed by one normal."""
    reads_discrete_chain: bool
    """Whether it reads the SDE's N-level tables, which are checked on the host first."""

    def __call__(self, *args: Any) -> tuple[Tensor, Tensor]:
        """The step itself."""
        return self.fn(*args)


PREDICTORS = {
    "reverse_diffusion": PCStep(reverse_diffusion, nfe=1, reads_discrete_chain=True),
    "euler_maruyama": PCStep(euler_maruyama, nfe=1, reads_discrete_chain=False),
    "ancestral": PCStep(ancestral, nfe=1, reads_discrete_chain=True),
    "none": PCStep(no_predictor, nfe=0, reads_discrete_chain=False),
}
CORRECTORS = {
    "langevin": PCStep(langevin_corrector, nfe=1, reads_discrete_chain=True),
    "ald": PCStep(ald, nfe=1, reads_discrete_chain=True),
    "none": PCStep(none, nfe=0, reads_discrete_chain=False),
}


def pc_steps(
    predictor: str, corrector: str, sde: SDE, norm_rule: str = "batch"
) -> tuple[PCStep, PCStep]:
    """The predictor and corrector steps of these names, checked against the SDE.

    ValueError for unknown names (the norm rule's too), or when they read N-level tables the SDE
    cannot provide.
    """
    if predictor not in PREDICTORS or corrector not in CORRECTORS:
        raise ValueError(
            f"predictor must be one of {sorted(PREDICTORS)} and corrector one of "
            f"{sorted(CORRECTORS)}; got {predictor!r}, {corrector!r}"
        )
    if norm_rule not in NORM_RULES:
        raise ValueError(f"norm_rule must be one of {sorted(NORM_RULES)}; got {norm_rule!r}")
    steps = PREDICTORS[predictor], CORRECTORS[corrector]
    if any(step.reads_discrete_chain for step in steps):
        sde.check_discrete_chain()
    return steps


@without_grad
def pc_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    seed: Seed,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_corrector_steps: int = 1,
    eps: float | None = None,
    denoise: bool = True,
    x_init: Any | None = None,
    n_steps: int | None = None,
    norm_rule: str = "batch",
    *,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1), t = linspace(T, eps, N).

    At each step the corrector runs, then the predictor; dt = -T/N as in score_sde. ``n_steps``
    other than sde.N runs on ``sde.with_levels(n_steps)``, whose noise levels the chain visits.
    ``norm_rule``: the Langevin corrector's norms (`NORM_RULES`; "batch" is score_sde's).
    Draws as the reference: the prior (scaled by ``temperature``) unless ``x_init``; then per
    step the corrector's normals, then the predictor's. Returns the noise-free mean of the last
    step when ``denoise``.
    """
    eps = sde.eps if eps is None else eps
    sde = sde if n_steps is None else sde.with_levels(n_steps)
    n_steps = sde.N
    predictor_step, corrector_step = pc_steps(predictor, corrector, sde, norm_rule)
    n_corrector = corrector_step.nfe * n_corrector_steps  # the corrector's normals per step
    n_draws = n_corrector + predictor_step.nfe
    source = NoiseSource(shape, seed, noise)
    x = _start(sde, source, x_init, temperature)
    dt = -sde.T / n_steps

    def step(state: tuple[Tensor, Tensor], t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """The corrector, then the predictor at t; z stacks their normals in that order."""
        x, t = state[0], per_example(t[0], state[0])
        x, _ = corrector_step(score_fn, sde, x, t, z[:n_corrector], snr, n_corrector, norm_rule)
        z_predictor = z[n_corrector] if predictor_step.nfe else None
        return predictor_step(score_fn, sde, x, t, z_predictor, dt)

    settings = (predictor, corrector, float(snr), n_corrector, norm_rule, dt)
    x, x_mean = run_steps(
        step,
        (x, x),
        np.linspace(sde.T, eps, n_steps),
        key=("pc", score_fn, sde, *settings),
        noise=source,
        draws_per_step=n_draws,
        variables=variables,
        progress=progress,
        desc="pc",
    )
    return (x_mean if denoise else x), n_steps * n_draws


@without_grad
def ode_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    seed: Seed,
    method: str = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    n_steps: int = 100,
    eps: float | None = None,
    z: Any | None = None,
    *,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Sample by integrating the probability-flow ODE from T to eps.

    ``method``: any ``solve_ivp`` method (default RK45 on the host, the drift evaluated on the
    backend; NFE = its function evaluations); "dopri5", the same RK45 compiled whole on the
    backend (no host round trip per NFE); or the fixed-step "euler" / "heun" with ``n_steps``
    steps, compiled. Draws the latent (one normal, scaled by ``temperature``) unless ``z``.
    """
    eps = sde.eps if eps is None else eps
    x = _start(sde, NoiseSource(shape, seed, noise), z, temperature)
    solver = {"method": method, "rtol": rtol, "atol": atol, "n_steps": n_steps}
    return integrate_ode(
        score_fn, sde, x, sde.T, eps, **solver, progress=progress, variables=variables
    )


@without_grad
def ode_encode(
    score_fn: ScoreFn,
    sde: SDE,
    x: Any,
    method: str = "RK45",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    n_steps: int = 100,
    eps: float | None = None,
    *,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Encode data into the latent by integrating the probability-flow ODE from eps to T."""
    eps = sde.eps if eps is None else eps
    solver = {"method": method, "rtol": rtol, "atol": atol, "n_steps": n_steps}
    return integrate_ode(
        score_fn, sde, to_float(x), eps, sde.T, **solver, progress=progress, variables=variables
    )


def tilde_denoiser(score_fn: ScoreFn, sde: SDE) -> Callable[[Tensor, Tensor], Tensor]:
    """D(x~; sigma~) = x~ + sigma~^2 grad log p(x~) on x~ = x / alpha (Karras et al. 2022, eq. 3).

    With t = t(sigma~) and alpha = alpha(t): grad_{x~} log p(x~) = alpha * score(alpha x~, t).
    ``sigma`` is shape (batch,).
    """

    def denoise(x_tilde: Tensor, sigma: Tensor) -> Tensor:
        t = sde.t_from_sigma_tilde(sigma)
        alpha, _ = sde.marginal_coefficients(t)
        a = batch_scalar(alpha, x_tilde)
        return x_tilde + batch_scalar(ops.square(sigma), x_tilde) * a * score_fn(a * x_tilde, t)

    return denoise


def karras_sigmas(sigma_min: float, sigma_max: float, n_steps: int, rho: float) -> np.ndarray:
    """The rho-schedule of Karras et al. 2022 (eq. 5): n_steps decreasing sigmas, then 0."""
    ramp = np.arange(n_steps) / max(n_steps - 1, 1)
    inv_rho_min, inv_rho_max = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigmas = (inv_rho_max + ramp * (inv_rho_min - inv_rho_max)) ** rho
    return np.append(sigmas, 0.0)


def _host_sigma_tilde(sde: SDE, t: np.ndarray) -> np.ndarray:
    """sde.sigma_tilde at host times t, as float64 NumPy."""
    return np.asarray(ops.convert_to_numpy(sde.sigma_tilde(to_float(t))), dtype=np.float64)


def _sigma_range(sde: SDE, sigma_min: float | None, sigma_max: float | None) -> tuple[float, float]:
    """Default sigma~ range: sigma~(eps) to sigma~(T) of the SDE."""
    if sigma_min is None:
        sigma_min = float(_host_sigma_tilde(sde, np.array([sde.eps]))[0])
    if sigma_max is None:
        sigma_max = float(_host_sigma_tilde(sde, np.array([sde.T]))[0])
    return sigma_min, sigma_max


def _edm_update(denoiser: Callable[..., Tensor], heun: bool) -> Callable[..., Tensor]:
    """One EDM step t_cur -> t_hat -> t_next; levels = (churn std, t_hat, t_next); Euler or Heun.

    The churn std is s_noise sqrt(t_hat^2 - t_cur^2); z holds one normal (zeros without churn).
    """

    def step(x_cur: Tensor, levels: Tensor, z: Tensor) -> Tensor:
        churn_std, t_hat, t_next = levels[0], levels[1], levels[2]
        x_hat = x_cur + churn_std * z[0]  # churn (churn_std includes s_noise): raise to t_hat
        d_cur = (x_hat - denoiser(x_hat, per_example(t_hat, x_hat))) / t_hat
        x_next = x_hat + (t_next - t_hat) * d_cur  # Euler step of dx/dsigma = (x - D)/sigma
        if heun:
            d_prime = (x_next - denoiser(x_next, per_example(t_next, x_next))) / t_next
            x_next = x_hat + (t_next - t_hat) * (HEUN_WEIGHT * d_cur + (1 - HEUN_WEIGHT) * d_prime)
        return x_next

    return step


@without_grad
def edm_heun_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    seed: Seed,
    n_steps: int = 18,
    rho: float = 7.0,
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    *,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """EDM's stochastic/deterministic Heun sampler (Karras et al. 2022, Algorithm 2).

    Runs on x~ = x / alpha with sigma~ = ``sde.sigma_tilde(t)`` (default range sigma~(eps) to
    sigma~(T)); the last step (to sigma = 0) is Euler, so NFE = 2 n_steps - 1. Draws as the
    reference: the start x_0 = temperature sigma_0 z, then, only at steps with gamma_i > 0, one
    normal for the churn noise.
    """
    sigma_min, sigma_max = _sigma_range(sde, sigma_min, sigma_max)
    denoiser = tilde_denoiser(score_fn, sde)
    t_steps = karras_sigmas(sigma_min, sigma_max, n_steps, rho)
    source = NoiseSource(shape, seed, noise)
    x = t_steps[0] * temperature * source.draw_one()
    t_cur, t_next = t_steps[:-1], t_steps[1:]
    gamma_max = min(s_churn / n_steps, SQRT2_MINUS_1)
    gamma = np.where((s_tmin <= t_cur) & (t_cur <= s_tmax), gamma_max, 0.0)
    t_hat = t_cur + gamma * t_cur
    table = np.stack([s_noise * np.sqrt(t_hat**2 - t_cur**2), t_hat, t_next], axis=1)
    # Heun steps, then the last one (to sigma = 0) by Euler
    for heun, rows in ((True, slice(0, n_steps - 1)), (False, slice(n_steps - 1, n_steps))):
        x = run_steps(
            _edm_update(denoiser, heun),
            x,
            table[rows],
            key=("edm", score_fn, sde, heun),
            noise=source,
            draws_per_step=1,
            noisy=gamma[rows] > 0.0,
            variables=variables,
            progress=progress,
            desc="edm",
        )
    return x, 2 * n_steps - 1


def dpm_solver_sigmas(
    sde: SDE,
    n_steps: int,
    schedule: str,
    sigma_min: float,
    sigma_max: float,
    eps: float,
    rho: float,
) -> np.ndarray:
    """The n_steps decreasing sigma~ of DPM-Solver++ followed by sigma = 0 (host, float64).

    "logsnr": uniform in lambda = -log sigma~ (Lu et al.'s choice); "time": uniform in t from T to
    eps, sigma~ = sde.sigma_tilde(t); "karras": the rho-schedule of EDM.
    """
    if schedule == "logsnr":
        return np.append(np.geomspace(sigma_max, sigma_min, n_steps), 0.0)
    if schedule == "time":
        return np.append(_host_sigma_tilde(sde, np.linspace(sde.T, eps, n_steps)), 0.0)
    if schedule == "karras":
        return karras_sigmas(sigma_min, sigma_max, n_steps, rho)
    raise ValueError(f"unknown schedule {schedule!r}; choose from {DPM_SCHEDULES}")


def _dpm_update(denoiser: Callable[..., Tensor]) -> Callable[..., tuple[Tensor, Tensor]]:
    """One DPM-Solver++(2M) step; coefficients = (sigma, sigma'/sigma, -expm1(-h), c).

    c = 1/(2r) weighs the previous denoised x (0: first order).
    """

    def step(
        state: tuple[Tensor, Tensor], coefficients: Tensor, z: Tensor
    ) -> tuple[Tensor, Tensor]:
        (x, x0_prev), (sigma_cur, ratio, phi, c) = state, (coefficients[j] for j in range(4))
        x0 = denoiser(x, per_example(sigma_cur, x))
        d = x0 + c * (x0 - x0_prev)  # (1 + 1/(2r)) x0 - 1/(2r) x0_prev
        # DPM-Solver++(2M) update (Lu et al. 2022, eq. 15) in x~: x <- (s'/s) x - expm1(-h) D
        return ratio * x + phi * d, x0

    return step


@without_grad
def dpm_solver_pp_sample(
    score_fn: ScoreFn,
    sde: SDE,
    shape: tuple[int, ...],
    seed: Seed,
    n_steps: int = 20,
    schedule: str = "logsnr",
    sigma_min: float | None = None,
    sigma_max: float | None = None,
    rho: float = 7.0,
    *,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """DPM-Solver++(2M): multistep second-order data-prediction solver (Lu et al. 2022, Alg. 2).

    Runs on x~ = x / alpha with lambda = -log sigma~; ``schedule`` picks the steps (see
    ``dpm_solver_sigmas``). The first step and the last (to sigma = 0, which returns the denoised
    x) are first order. NFE = n_steps. Draws the start x_0 = temperature sigma_0 z, one normal.
    """
    sigma_min, sigma_max = _sigma_range(sde, sigma_min, sigma_max)
    denoiser = tilde_denoiser(score_fn, sde)
    sigmas = dpm_solver_sigmas(sde, n_steps, schedule, sigma_min, sigma_max, sde.eps, rho)
    source = NoiseSource(shape, seed, noise)
    x = sigmas[0] * temperature * source.draw_one()
    sigma_cur, sigma_next = sigmas[:-2], sigmas[1:-1]  # the steps before the last (to sigma = 0)
    h = np.log(sigma_cur) - np.log(sigma_next)  # lambda_next - lambda_cur
    c = np.zeros_like(h)  # c = 1/(2r), r = h_prev / h; 0 at the first step (first order)
    c[1:] = h[1:] / (2.0 * h[:-1])
    table = np.stack([sigma_cur, sigma_next / sigma_cur, -np.expm1(-h), c], axis=1)
    x, _ = run_steps(
        _dpm_update(denoiser),
        (x, x),
        table,
        key=("dpm++2m", score_fn, sde),
        variables=variables,
        progress=progress,
        desc="dpm++",
    )
    final = compiled(denoiser, key=("tilde denoiser", score_fn, sde), variables=variables)
    x = final(x, per_example(host_to_float(sigmas[-2]), x))  # first order to sigma = 0
    return x, n_steps
