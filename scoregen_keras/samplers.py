"""Samplers for score-based models on Keras 3, name for name the samplers of ``reference.samplers``.

Every sampler takes a score function and returns ``(x, nfe)``: the final sample, shape
``(batch, *dims)``, and the number of score evaluations. Continuous-time samplers take
``score_fn(x, t)`` with ``t`` of shape ``(batch,)``; the NCSN samplers take ``score_fn(x, sigma)``.

Randomness: where the reference takes ``rng`` a sampler takes ``seed`` (int, a
``keras.random.SeedGenerator`` or None). Tests can instead hand in ``noise``: a callable
``noise(shape) -> array`` (e.g. ``np.random.default_rng(0).standard_normal``) or an iterable of
arrays, consumed in exactly the order the reference draws its normals, so both implementations
can be run on the same draws. Every normal a sampler draws has the sample's shape.

Compilation: the fixed-step samplers run their steps in chunks: one call of a function compiled
with ``backend.jit`` runs up to ``MAX_CHUNK_STEPS`` steps in a ``keras.ops.fori_loop`` over a
table of per-step coefficients computed on the host, with the chunk's normals drawn up front, so
the per-step Python and dispatch cost is paid once per chunk. Chunks are padded to a fixed length
(the loop runs only over the real steps), so a step is traced once per shape. Compiled chunks are
reused across calls for the same (score_fn, sde, settings) except where compilation bakes in
the weights the score reads (JAX) and ``variables`` was not given (see ``backend.jit``).
``temperature`` scales the prior draw (``latent.tempered_prior``); ``progress`` shows a tqdm bar
updated once per chunk.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops
from scipy.integrate import solve_ivp
from tqdm.auto import tqdm

from reference.utils import require_finite
from scoregen_keras import backend, dopri
from scoregen_keras.latent import tempered_prior
from scoregen_keras.sde import SDE, batch_scalar, per_example, sum_over_dims, to_float

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]
Seed = int | keras.random.SeedGenerator | None
Noise = Callable[[tuple[int, ...]], Any] | Iterable[Any] | None
StepFn = Callable[..., tuple[Tensor, Tensor]]

HEUN_WEIGHT = 0.5  # trapezoidal rule: the Heun step averages the two slopes equally
SQRT2_MINUS_1 = math.sqrt(2.0) - 1.0  # EDM's cap on the churn factor gamma_i
COMPILED_CACHE_SIZE = 32  # compiled step functions kept for reuse across sampler calls
# seeded normals are drawn in blocks of up to this many entries (16 MiB of float32), one random
# call per block instead of one per step
NOISE_BLOCK_ENTRIES = 2**22
MAX_CHUNK_STEPS = 50  # sampler steps per compiled call (and per progress-bar update)


# --------------------------------------------------------------------------- noise


class NoiseSource:
    """Standard normals of one shape, ``k`` per request: from a seed or from injected noise."""

    def __init__(self, shape: Sequence[int], seed: Seed = None, noise: Noise = None) -> None:
        """Draw with ``keras.random`` from ``seed``, or from ``noise`` (callable or iterable)."""
        self.shape = tuple(int(n) for n in shape)
        self._max_block = max(1, NOISE_BLOCK_ENTRIES // max(1, math.prod(self.shape)))
        self._block: Tensor | None = None
        self._block_size = self._position = 0
        self._generator = None
        self._callable: Callable[[tuple[int, ...]], Any] | None = None
        self._iterator: Iterator[Any] | None = None
        if noise is None:
            seeded = isinstance(seed, keras.random.SeedGenerator)
            self._generator = seed if seeded else keras.random.SeedGenerator(seed)
        elif callable(noise):
            self._callable = noise
        else:
            self._iterator = iter(noise)

    def _injected(self) -> np.ndarray:
        """The next injected normal, checked against the shape."""
        if self._callable is not None:
            value = self._callable(self.shape)
        else:
            try:
                value = next(self._iterator)
            except StopIteration:
                raise ValueError("the injected noise ran out of draws") from None
        value = np.asarray(value)
        if value.shape != self.shape:
            raise ValueError(f"injected noise has shape {value.shape}, expected {self.shape}")
        return value

    def _refill(self, k: int) -> None:
        """Make k draws available: a new block, twice the last one (so short runs draw little)."""
        if self._position + k <= self._block_size:
            return
        self._block_size = max(k, min(2 * self._block_size, self._max_block))
        shape = (self._block_size, *self.shape)
        self._block, self._position = keras.random.normal(shape, seed=self._generator), 0

    def _seeded(self, k: int) -> Tensor:
        """The next k seeded normals (k, *shape), cut from a block drawn at once."""
        self._refill(k)
        start, self._position = self._position, self._position + k
        # a gather with tensor indices: eager slicing with Python ints compiles per index on JAX
        return ops.take(self._block, _host_index(np.arange(start, self._position)), axis=0)

    def draw(self, k: int) -> Tensor:
        """k normals stacked on a new leading axis, shape (k, *shape) (k may be 0)."""
        if self._generator is not None:
            return self._seeded(k)
        if k == 0:
            return _host_to_float(np.zeros((0, *self.shape)))
        return _host_to_float(np.stack([self._injected() for _ in range(k)]))

    def draw_one(self) -> Tensor:
        """One normal of the sample's shape."""
        if self._generator is not None:
            self._refill(1)
            self._position += 1
            return ops.take(self._block, _host_index(self._position - 1), axis=0)
        return _host_to_float(self._injected())


# --------------------------------------------------------------------------- shared machinery

_COMPILED: OrderedDict[Hashable, Callable[..., Any]] = OrderedDict()


def clear_compiled() -> None:
    """Forget every compiled step function (e.g. after changing weights on JAX)."""
    _COMPILED.clear()


def _compiled(
    key: Hashable,
    build: Callable[[], Callable[..., Any]],
    variables: Sequence[Any] | None,
    build_example_args: Callable[[], Sequence[Tensor]] | None = None,
) -> Callable[..., Any]:
    """backend.jit(build()), reused across calls for the same key where that is safe.

    ``build_example_args`` makes ``backend.jit``'s example_args, only when compiling; the key
    must then fix their shapes and dtypes.
    """
    reusable = variables is not None or not backend.jit_bakes_variables()
    key = (key, None if variables is None else tuple(id(v) for v in variables))
    if reusable and key in _COMPILED:
        _COMPILED.move_to_end(key)
        return _COMPILED[key]
    example_args = None if build_example_args is None else build_example_args()
    fn = backend.jit(build(), variables=variables, example_args=example_args)
    if reusable:
        _COMPILED[key] = fn
        while len(_COMPILED) > COMPILED_CACHE_SIZE:
            _COMPILED.popitem(last=False)
    return fn


def _without_grad(sampler: Callable[..., Any]) -> Callable[..., Any]:
    """Run a sampler with gradient recording off (PyTorch; elsewhere a no-op)."""

    @functools.wraps(sampler)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with backend.no_grad():
            return sampler(*args, **kwargs)

    return wrapped


def _host_index(index: int | np.ndarray) -> Tensor:
    """A host integer (array) as an int32 tensor."""
    return backend.from_host(np.asarray(index, dtype=np.int32))


def _host_to_float(array: Any) -> Tensor:
    """A host array or scalar as a float tensor, cast on the host (a single transfer)."""
    return backend.from_host(np.asarray(array, dtype=keras.config.floatx()))


def _start(sde: SDE, source: NoiseSource, x_init: Any | None, temperature: float) -> Tensor:
    """x_init, or a prior draw scaled by temperature (one normal)."""
    if x_init is not None:
        return to_float(x_init)
    return tempered_prior(sde, source.draw_one(), temperature)


def _norm_per_example(v: Tensor) -> Tensor:
    """Euclidean norm of each example, shape (batch,)."""
    return ops.sqrt(sum_over_dims(ops.square(v)))


def _chunk_length(draws_per_step: int, shape: Sequence[int]) -> int:
    """Steps per compiled call: MAX_CHUNK_STEPS, fewer where the chunk's normals would be large."""
    entries = max(1, draws_per_step * math.prod(shape))
    return max(1, min(MAX_CHUNK_STEPS, NOISE_BLOCK_ENTRIES // entries))


def _chunk_loop(step: Callable[..., Any]) -> Callable[..., Any]:
    """chunk(state, rows, z, count): ``count`` steps state <- step(state, rows[i], z[i])."""

    def chunk(state: Any, rows: Tensor, z: Tensor, count: Tensor) -> Any:
        def body(i: Tensor, state: Any) -> Any:
            return step(state, rows[i], z[i])

        return ops.fori_loop(0, count, body, state)

    return chunk


def _chunk_noise(
    source: NoiseSource | None, draws_per_step: int, noisy: np.ndarray, length: int
) -> Tensor:
    """Normals (length, draws_per_step, *shape) for one chunk, drawn in step order.

    Steps where ``noisy`` is False draw nothing and get zeros, as do the padding rows. Without
    draws (or source) the steps get an empty placeholder, shape (length, 0).
    """
    if source is None or draws_per_step == 0:
        return ops.zeros((length, 0))
    shape = (draws_per_step, *source.shape)
    n_noisy = int(np.sum(noisy))
    draws = ops.reshape(source.draw(n_noisy * draws_per_step), (n_noisy, *shape))
    if n_noisy == length:
        return draws
    index = np.full(length, n_noisy)  # row n_noisy is the appended zeros
    index[: len(noisy)] = np.where(noisy, np.cumsum(noisy) - 1, n_noisy)
    padded = ops.concatenate([draws, ops.zeros((1, *shape), dtype=draws.dtype)], axis=0)
    return ops.take(padded, _host_index(index), axis=0)


def run_steps(
    key: Hashable,
    build_step: Callable[[], Callable[..., Any]],
    variables: Sequence[Any] | None,
    state: Any,
    table: Any,
    source: NoiseSource | None,
    draws_per_step: int = 0,
    noisy: np.ndarray | None = None,
    progress: bool = False,
    desc: str = "",
) -> Any:
    """Run ``step(state, row, z)`` over the rows of ``table``, several steps per compiled call.

    ``table`` (n_steps, k) holds each step's coefficients (host float64, cast to floatx); ``z``
    is the step's ``draws_per_step`` normals (shape (draws_per_step, *source.shape)), drawn in
    step order, none and zeros at steps where ``noisy`` (default all True) is False.
    """
    table = np.asarray(table, dtype=np.float64)
    table = table[:, None] if table.ndim == 1 else table
    noisy = np.ones(len(table), bool) if noisy is None else np.asarray(noisy, bool)
    length = _chunk_length(draws_per_step, () if source is None else source.shape)
    chunk = _compiled((key, length), lambda: _chunk_loop(build_step()), variables)
    bar = tqdm(total=len(table), desc=desc, disable=not progress, leave=False)
    for start in range(0, len(table), length):
        rows = table[start : start + length]
        padded = np.concatenate([rows, np.repeat(rows[-1:], length - len(rows), axis=0)])
        z = _chunk_noise(source, draws_per_step, noisy[start : start + length], length)
        state = chunk(state, _host_to_float(padded), z, _host_index(len(rows)))
        bar.update(len(rows))
    bar.close()
    return state


# --------------------------------------------------------------------------- Langevin / NCSN


@_without_grad
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
    source = NoiseSource(x.shape, seed, noise)
    conditioned = t is not None

    def build() -> Callable[..., Tensor]:
        def step(x: Tensor, t: Tensor, z: Tensor) -> Tensor:
            score = score_fn(x, per_example(t, x)) if conditioned else score_fn(x)
            return x + 0.5 * step_size * score + math.sqrt(step_size) * z[0]

        return step

    key = ("langevin", score_fn, conditioned, float(step_size))
    t_host = np.asarray(ops.convert_to_numpy(0.0 if t is None else t), dtype=np.float64)
    times = np.tile(np.broadcast_to(t_host, (x.shape[0],)), (n_steps, 1))  # (n_steps, batch)
    x = run_steps(key, build, variables, x, times, source, 1, progress=progress, desc="langevin")
    return x, n_steps


@_without_grad
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

    def build_step() -> Callable[..., Tensor]:
        def step(x: Tensor, coefficients: Tensor, z: Tensor) -> Tensor:
            sigma, alpha = coefficients[0], coefficients[1]
            score = score_fn(x, per_example(sigma, x))
            return x + 0.5 * alpha * score + ops.sqrt(alpha) * z[0]  # NCSN Algorithm 1, line 6

        return step

    alphas = step_lr * sigmas**2 / sigmas[-1] ** 2  # Algorithm 1, line 3
    table = np.repeat(np.stack([sigmas, alphas], axis=1), n_steps_each, axis=0)
    key = ("annealed_langevin", score_fn)
    x = run_steps(key, build_step, variables, x, table, source, 1, None, progress, "annealed ld")
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

    def build() -> Callable[..., Tensor]:
        def tweedie(x: Tensor, sigma: Tensor) -> Tensor:
            return x + ops.square(sigma) * score_fn(x, per_example(sigma, x))

        return tweedie

    return _compiled(("tweedie", score_fn), build, variables)(x, _host_to_float(sigma))


# --------------------------------------------------------------------------- predictors
# A predictor step maps (score_fn, sde, x, t, z, dt) to (x, x_mean), x_mean the noise-free part;
# z is the step's normal (the reference's rng draw). NFE per step: PREDICTOR_NFE.


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


# --------------------------------------------------------------------------- correctors
# A corrector step maps (score_fn, sde, x, t, z, snr, n_steps) to (x, x_mean); z stacks the
# n_steps normals, shape (n_steps, *x.shape). NFE per corrector step: CORRECTOR_NFE x n_steps.


def langevin_corrector(
    score_fn: ScoreFn, sde: SDE, x: Tensor, t: Tensor, z: Tensor, snr: float, n_steps: int
) -> tuple[Tensor, Tensor]:
    """Langevin corrector with the signal-to-noise step rule (Song et al. 2021, Algorithm 4).

    Step eps = 2 alpha (snr ||z|| / ||s||)^2, both norms per example then averaged over the batch,
    alpha = ``sde.langevin_alpha(t)``. Each step: one NFE, one normal z[j].
    """
    alpha = sde.langevin_alpha(t)
    x_mean = x
    for j in range(n_steps):
        grad = score_fn(x, t)
        grad_norm = ops.mean(_norm_per_example(grad))
        noise_norm = ops.mean(_norm_per_example(z[j]))
        step_size = batch_scalar(2.0 * alpha * ops.square(snr * noise_norm / grad_norm), x)
        x_mean = x + step_size * grad
        x = x_mean + ops.sqrt(2.0 * step_size) * z[j]
    return x, x_mean


def ald(
    score_fn: ScoreFn, sde: SDE, x: Tensor, t: Tensor, z: Tensor, snr: float, n_steps: int
) -> tuple[Tensor, Tensor]:
    """Annealed Langevin corrector: eps = 2 alpha (snr sigma_t)^2, sigma_t the marginal std.

    As score_sde's ``AnnealedLangevinDynamics``. Each step: one NFE, one normal z[j].
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
    score_fn: ScoreFn, sde: SDE, x: Tensor, t: Tensor, z: Tensor, snr: float, n_steps: int
) -> tuple[Tensor, Tensor]:
    """The identity corrector: no NFE, no draws."""
    return x, x


PREDICTORS: dict[str, StepFn] = {
    "euler_maruyama": euler_maruyama,
    "reverse_diffusion": reverse_diffusion,
    "ancestral": ancestral,
    "none": no_predictor,
}
CORRECTORS: dict[str, StepFn] = {"langevin": langevin_corrector, "ald": ald, "none": none}
# score evaluations (each followed by one normal) of a predictor step / of one corrector step
PREDICTOR_NFE = {"euler_maruyama": 1, "reverse_diffusion": 1, "ancestral": 1, "none": 0}
CORRECTOR_NFE = {"langevin": 1, "ald": 1, "none": 0}
# steps that read the SDE's N-level tables: checked on the host before a chain is compiled
READS_DISCRETE_CHAIN = {"reverse_diffusion", "ancestral", "langevin", "ald"}


def pc_steps(predictor: str, corrector: str, sde: SDE) -> tuple[StepFn, StepFn]:
    """The predictor and corrector step functions of these names, checked against the SDE.

    ValueError for unknown names, or when they read N-level tables the SDE cannot provide.
    """
    if predictor not in PREDICTORS or corrector not in CORRECTORS:
        raise ValueError(
            f"predictor must be one of {sorted(PREDICTORS)} and corrector one of "
            f"{sorted(CORRECTORS)}; got {predictor!r}, {corrector!r}"
        )
    if {predictor, corrector} & READS_DISCRETE_CHAIN:
        sde.check_discrete_chain()
    return PREDICTORS[predictor], CORRECTORS[corrector]


@_without_grad
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
    *,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Predictor-corrector sampling (Song et al. 2021, Algorithm 1), t = linspace(T, eps, N).

    At each step the corrector runs, then the predictor; dt = -T/N as in score_sde. ``n_steps``
    other than sde.N runs on ``sde.with_levels(n_steps)``, whose noise levels the chain visits.
    Draws as the reference: the prior (scaled by ``temperature``) unless ``x_init``; then per
    step the corrector's normals, then the predictor's. Returns the noise-free mean of the last
    step when ``denoise``.
    """
    eps = sde.eps if eps is None else eps
    sde = sde if n_steps is None else sde.with_levels(n_steps)
    n_steps = sde.N
    predictor_fn, corrector_fn = pc_steps(predictor, corrector, sde)
    n_corrector = CORRECTOR_NFE[corrector] * n_corrector_steps
    n_predictor = PREDICTOR_NFE[predictor]
    dt = -sde.T / n_steps
    source = NoiseSource(shape, seed, noise)
    x = _start(sde, source, x_init, temperature)

    def build() -> Callable[..., tuple[Tensor, Tensor]]:
        def step(state: tuple[Tensor, Tensor], t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
            x, t = state[0], per_example(t[0], state[0])
            x, _ = corrector_fn(score_fn, sde, x, t, z[:n_corrector], snr, n_corrector)
            z_predictor = z[n_corrector] if n_predictor else None
            return predictor_fn(score_fn, sde, x, t, z_predictor, dt)

        return step

    key = ("pc", score_fn, sde, predictor, corrector, float(snr), n_corrector, dt)
    times = np.linspace(sde.T, eps, n_steps)
    n_draws = n_corrector + n_predictor
    x, x_mean = run_steps(
        key, build, variables, (x, x), times, source, n_draws, None, progress, "pc"
    )
    return (x_mean if denoise else x), n_steps * n_draws


# --------------------------------------------------------------------------- probability-flow ODE


def probability_flow_drift(score_fn: ScoreFn, sde: SDE) -> Callable[[Tensor, Tensor], Tensor]:
    """The drift f(x,t) - g(t)^2 s(x,t)/2 of the probability-flow ODE (Song et al. 2021, eq. 13)."""
    reverse = sde.reverse(score_fn, probability_flow=True)
    return lambda x, t: reverse.sde(x, per_example(t, x))[0]


def _euler_update(drift: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """One Euler step x + h drift(x, t_cur); times = (t_cur, t_next, h)."""

    def step(x: Tensor, times: Tensor, z: Tensor) -> Tensor:
        t_cur, h = times[0], times[2]
        return x + h * drift(x, t_cur)

    return step


def _heun_update(drift: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """One Heun step: Euler predictor, then the trapezoidal average of the two slopes."""

    def step(x: Tensor, times: Tensor, z: Tensor) -> Tensor:
        t_cur, t_next, h = times[0], times[1], times[2]
        d_cur = drift(x, t_cur)
        x_next = x + h * d_cur
        d_next = drift(x_next, t_next)
        return x + h * (HEUN_WEIGHT * d_cur + (1.0 - HEUN_WEIGHT) * d_next)

    return step


# fixed-step ODE method -> (update builder, NFE per step)
FIXED_STEP_METHODS: dict[str, tuple[Callable[..., Callable[..., Tensor]], int]] = {
    "euler": (_euler_update, 1),
    "heun": (_heun_update, 2),
}


def _integrate_ode(
    score_fn: ScoreFn,
    sde: SDE,
    x: Tensor,
    t_start: float,
    t_end: float,
    method: str,
    rtol: float,
    atol: float,
    n_steps: int,
    progress: bool,
    variables: Sequence[Any] | None,
) -> tuple[Tensor, int]:
    """Integrate the probability-flow ODE from t_start to t_end for the whole batch; (x, nfe)."""
    drift = probability_flow_drift(score_fn, sde)
    if method == dopri.METHOD:
        key = ("ode", score_fn, sde, tuple(x.shape), t_start, t_end, rtol, atol)
        return _integrate_dopri5(key, drift, x, t_start, t_end, rtol, atol, progress, variables)
    if method in FIXED_STEP_METHODS:
        make_update, nfe_per_step = FIXED_STEP_METHODS[method]
        times = np.linspace(t_start, t_end, n_steps + 1)
        table = np.stack([times[:-1], times[1:], np.diff(times)], axis=1)  # (t_cur, t_next, h)
        key, build = ("ode", method, score_fn, sde), lambda: make_update(drift)
        x = run_steps(key, build, variables, x, table, None, 0, None, progress, f"ode {method}")
        return x, n_steps * nfe_per_step
    shape = tuple(x.shape)

    def packed_drift(packed: Tensor) -> Tensor:
        """The drift at packed = (t, *x.ravel()): one host-to-device transfer per NFE."""
        return drift(ops.reshape(packed[1:], shape), packed[0])

    floatx = keras.config.floatx()
    compiled_drift = _compiled(
        ("ode drift", score_fn, sde, shape, floatx),
        lambda: packed_drift,
        variables,
        lambda: [backend.jit_argument(np.zeros(1 + math.prod(shape), floatx))],
    )
    bar = tqdm(desc=f"ode {method} (NFE)", disable=not progress, leave=False)
    nfe = 0

    def ode_func(t: float, y: np.ndarray) -> np.ndarray:
        nonlocal nfe
        nfe += 1
        bar.update()
        packed = np.concatenate([[t], y]).astype(floatx)
        d = compiled_drift(backend.jit_argument(packed))
        return require_finite(np.asarray(ops.convert_to_numpy(d), np.float64).ravel(), t)

    y0 = np.asarray(ops.convert_to_numpy(x), dtype=np.float64).ravel()
    solution = solve_ivp(ode_func, (t_start, t_end), y0, method=method, rtol=rtol, atol=atol)
    bar.close()
    if not solution.success:
        raise RuntimeError(f"probability-flow ODE solve failed: {solution.message}")
    return to_float(solution.y[:, -1].reshape(shape)), nfe


def _integrate_dopri5(
    key: Hashable,
    drift: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    t_start: float,
    t_end: float,
    rtol: float,
    atol: float,
    progress: bool,
    variables: Sequence[Any] | None,
) -> tuple[Tensor, int]:
    """SciPy's RK45 compiled on the backend (``dopri``), its compiled parts cached by key."""
    start = _compiled(
        ("dopri5 start", key), lambda: dopri.start(drift, t_start, t_end, rtol, atol), variables
    )
    attempt_steps = _compiled(
        ("dopri5 steps", key),
        lambda: dopri.attempt_steps(drift, t_start, t_end, rtol, atol),
        variables,
    )
    return dopri.solve(start, attempt_steps, x, t_start, t_end, progress, "ode dopri5")


@_without_grad
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
    return _integrate_ode(
        score_fn, sde, x, sde.T, eps, method, rtol, atol, n_steps, progress, variables
    )


@_without_grad
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
    return _integrate_ode(
        score_fn, sde, to_float(x), eps, sde.T, method, rtol, atol, n_steps, progress, variables
    )


# --------------------------------------------------------------------------- sigma parameterisation


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


@_without_grad
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
    for heun, rows in ((True, slice(0, n_steps - 1)), (False, slice(n_steps - 1, n_steps))):
        key, build = ("edm", score_fn, sde, heun), lambda heun=heun: _edm_update(denoiser, heun)
        x = run_steps(
            key, build, variables, x, table[rows], source, 1, gamma[rows] > 0.0, progress, "edm"
        )  # Heun steps, then the last one (to sigma = 0) by Euler
    return x, 2 * n_steps - 1


DPM_SCHEDULES = ("logsnr", "time", "karras")


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


@_without_grad
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
    key, build = ("dpm++2m", score_fn, sde), lambda: _dpm_update(denoiser)
    x, _ = run_steps(key, build, variables, (x, x), table, None, 0, None, progress, "dpm++")
    final = _compiled(("tilde denoiser", score_fn, sde), lambda: denoiser, variables)
    x = final(x, per_example(_host_to_float(sigmas[-2]), x))  # first order to sigma = 0
    return x, n_steps
