"""Controllable generation with a score model: imputation, inpainting, colorization, guidance.

Song et al. 2021, Section 5 and Appendix I. Imputation / inpainting / colorization run
predictor-corrector sampling and, after every corrector and every predictor update, replace the
observed part by a forward-noised copy of the observation drawn from p_t(y_obs(t) | y_obs)
(``sde.marginal_prob``). The observed part is a set of coordinates of ``decouple(x)`` for an
orthonormal linear map: the identity for inpainting, and for colorization the per-pixel channel
rotation whose first row is (1, 1, 1)/sqrt(3), so that the observed channel is the grey image.
A model of NCSN noise levels has ``annealed_langevin_with_replacement`` instead (and
``annealed_langevin_impute`` on coordinates): annealed Langevin dynamics with the observed part
set to y_obs + sigma z before each step.
Class-conditional sampling adds a classifier's gradient to the score,
grad log p_t(x | y) = grad log p_t(x) + grad log p_t(y | x) (eq. 14).

Same names, signatures and random draws as ``reference.controllable``; ``seed`` replaces ``rng``
as in ``scoregen_keras.samplers`` (an int S for the per-sample seeds S, S+1, ..., one seed per
sample, a ``CounterNoise``, or a ``keras.random.SeedGenerator`` for the backend's stream), and
``noise`` (a callable ``noise(shape)`` such as a NumPy generator's ``standard_normal``, or an
iterable) may inject the normals in the reference's order. With per-sample seeds, draw d of a
sample is the d-th normal in the order each docstring states (PC with replacement: draw 0 the
prior, then per step the corrector's normals, a replacement normal, the predictor's, a
replacement normal; annealed Langevin with replacement: draw 0 the start, then per step a
replacement normal and the step's), so a result depends on its seed alone, not on its batch
(with ``norm_rule="per_example"`` or a corrector other than Langevin). Class-guided sampling
draws as ``pc_sample``; each example's label rides with it. The PC steps run compiled in chunks
(``sampling.run_steps``), the noise drawn outside.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from scoregen_keras import backend
from scoregen_keras.samplers import pc_sample, pc_steps, tweedie_denoise
from scoregen_keras.sampling import Noise, NoiseSource, run_steps
from scoregen_keras.sde import SDE, batch_scalar, per_example, to_float
from scoregen_keras.training.classifier import log_posterior_grad_fn as classifier_grad_fn

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]
LogPosteriorGradFn = Callable[[Tensor, Tensor, Tensor], Tensor]
LinearMap = Callable[[Tensor], Tensor]

# Orthonormal colour decoupling (score_sde's colorizer): row 0 = grey direction (1, 1, 1)/sqrt(3);
# rows 1, 2 span the colour plane. decouple(x) = x M^T per pixel, couple(y) = y M (M^-1 = M^T).
COLOR_DECOUPLING = np.array(
    [
        [1.0, 1.0, 1.0],
        [-2.0, 1.0, 1.0],
        [0.0, 1.0, -1.0],
    ]
) / np.array([[math.sqrt(3.0)], [math.sqrt(6.0)], [math.sqrt(2.0)]])
GREY_CHANNEL = 0
N_COLOR_CHANNELS = 3


def identity(x: Tensor) -> Tensor:
    """The identity map (inpainting and imputation observe coordinates of x itself)."""
    return x


def pc_sample_with_replacement(
    score_fn: ScoreFn,
    sde: SDE,
    y_obs: Tensor,
    mask: Tensor,
    seed: Any = None,
    decouple: LinearMap = identity,
    couple: LinearMap = identity,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_corrector_steps: int = 1,
    eps: float | None = None,
    denoise: bool = True,
    n_steps: int | None = None,
    norm_rule: str = "batch",
    x_init: Tensor | None = None,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """PC sampling (Song et al. 2021, Alg. 1) that keeps ``decouple(x)[mask]`` on ``y_obs``.

    ``y_obs`` (batch, *dims) lives in the decoupled space (``decouple`` orthonormal, ``couple`` its
    inverse) and ``mask`` (True = observed) broadcasts against it. Draws: the prior (scaled by
    ``temperature``; none with ``x_init``), then per step the corrector's normals, one replacement
    normal, the predictor's normal, one replacement normal. t = linspace(T, eps, n_steps) and
    dt = -T/n_steps on ``sde.with_levels(n_steps)``; returns the noise-free mean of the last step
    when ``denoise``. ``norm_rule``: the Langevin corrector's norms (``samplers.NORM_RULES``).
    Steps run compiled in chunks as ``scoregen_keras.samplers.pc_sample``'s
    (``progress``, ``variables``: as there).
    """
    eps = sde.eps if eps is None else eps
    sde = sde if n_steps is None else sde.with_levels(n_steps)
    n_steps = sde.N
    predictor_step, corrector_step = pc_steps(predictor, corrector, sde, norm_rule)
    n_corrector = corrector_step.nfe * n_corrector_steps  # the corrector's normals per step
    n_predictor = predictor_step.nfe
    dt = -sde.T / n_steps
    y_obs = to_float(y_obs)
    shape = tuple(y_obs.shape)
    observed = ops.broadcast_to(ops.convert_to_tensor(mask, "bool"), shape)
    source = NoiseSource(shape, seed, noise)
    if x_init is None:
        x = sde.prior_from_normal(source.draw_one(), temperature)
    else:
        x = to_float(x_init)

    def step(state: tuple[Tensor, ...], t: Tensor, z: Tensor) -> tuple[Tensor, ...]:
        """Corrector, replacement, predictor, replacement at t; z stacks the step's normals."""
        x, x_mean, y_obs, observed = state  # the observation rides along, not baked in
        t = per_example(t[0], x)

        def replace(x: Tensor, x_mean: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
            """Observed part := a draw of p_t(y_obs(t) | y_obs); the mean: its mean."""
            obs_mean, std = sde.marginal_prob(y_obs, t)
            obs_t = obs_mean + batch_scalar(std, y_obs) * z
            return (
                couple(ops.where(observed, obs_t, decouple(x))),
                couple(ops.where(observed, obs_mean, decouple(x_mean))),
            )

        x, x_mean = corrector_step(
            score_fn, sde, x, t, z[:n_corrector], snr, n_corrector, norm_rule
        )
        x, x_mean = replace(x, x_mean, z[n_corrector])
        z_predictor = z[n_corrector + 1] if n_predictor else None
        x, x_mean = predictor_step(score_fn, sde, x, t, z_predictor, dt)
        return (*replace(x, x_mean, z[-1]), y_obs, observed)

    settings = (predictor, corrector, float(snr), n_corrector, norm_rule)
    key = ("pc with replacement", score_fn, sde, *settings)
    x = couple(ops.where(observed, y_obs, decouple(x)))
    with backend.no_grad():
        x, x_mean, _, _ = run_steps(
            step,
            (x, x, y_obs, observed),
            np.linspace(sde.T, eps, n_steps),
            key=(*key, dt, decouple, couple),
            noise=source,
            draws_per_step=n_corrector + n_predictor + 2,  # two replacement normals per step
            variables=variables,
            progress=progress,
            desc="pc with replacement",
        )
    x = x_mean if denoise else x
    return couple(ops.where(observed, y_obs, decouple(x))), n_steps * (n_corrector + n_predictor)


def impute(
    score_fn: ScoreFn,
    sde: SDE,
    x_obs: Tensor,
    mask: Tensor,
    seed: Any = None,
    predictor: str = "reverse_diffusion",
    corrector: str = "langevin",
    snr: float = 0.16,
    n_corrector_steps: int = 1,
    eps: float | None = None,
    denoise: bool = True,
    n_steps: int | None = None,
    norm_rule: str = "batch",
    x_init: Tensor | None = None,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Impute the coordinates where ``mask`` is False given ``x_obs`` (batch, *dims) by PC sampling.

    ``mask`` (bool, True = observed) broadcasts against ``x_obs``; unobserved entries of ``x_obs``
    are ignored. Draws as ``reference.controllable.impute`` (prior, then per step the corrector's
    normals, a replacement normal, the predictor's normal, a replacement normal). The result
    carries ``x_obs`` exactly at the observed coordinates.
    """
    return pc_sample_with_replacement(
        score_fn,
        sde,
        x_obs,
        mask,
        seed,
        predictor=predictor,
        corrector=corrector,
        snr=snr,
        n_corrector_steps=n_corrector_steps,
        eps=eps,
        denoise=denoise,
        n_steps=n_steps,
        norm_rule=norm_rule,
        x_init=x_init,
        noise=noise,
        temperature=temperature,
        progress=progress,
        variables=variables,
    )


def inpaint(
    score_fn: ScoreFn,
    sde: SDE,
    x_obs: Tensor,
    mask: Tensor,
    seed: Any = None,
    **pc_kwargs: Any,
) -> tuple[Tensor, int]:
    """Inpaint images (batch, H, W, C): keep the pixels where ``mask`` is True (as ``impute``)."""
    return impute(score_fn, sde, x_obs, mask, seed, **pc_kwargs)


def annealed_langevin_with_replacement(
    score_fn: ScoreFn,
    sigmas: Any,
    y_obs: Tensor,
    mask: Tensor,
    seed: Any = None,
    decouple: LinearMap = identity,
    couple: LinearMap = identity,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Annealed Langevin dynamics (NCSN Algorithm 1, ``score_fn(x, sigma)``, sigmas decreasing)
    that keeps ``decouple(x)[mask]`` on ``y_obs`` noised to the current level.

    Before each Langevin step at level sigma the observed part is set to y_obs + sigma z;
    ``y_obs``, ``mask``, ``decouple`` and ``couple`` as in ``pc_sample_with_replacement``. Draws
    as ``reference.controllable.annealed_langevin_impute``: the start ``sigmas[0] * z`` (scaled by
    ``temperature``), then per step a replacement normal and the step's normal. With ``denoise``
    a final Tweedie step (one more NFE). Steps run compiled in chunks.
    """
    sigmas = np.asarray(ops.convert_to_numpy(sigmas), dtype=np.float64)
    y_obs = to_float(y_obs)
    shape = tuple(y_obs.shape)
    observed = ops.broadcast_to(ops.convert_to_tensor(mask, "bool"), shape)
    source = NoiseSource(shape, seed, noise)
    x = sigmas[0] * temperature * source.draw_one()

    def step(state: tuple[Tensor, ...], levels: Tensor, z: Tensor) -> tuple[Tensor, ...]:
        """Replacement at level sigma, then one Langevin step of size alpha."""
        x, y_obs, observed = state  # the observation rides along, not baked in
        sigma, alpha = levels[0], levels[1]
        x = couple(ops.where(observed, y_obs + sigma * z[0], decouple(x)))
        score = score_fn(x, per_example(sigma, x))
        x = x + 0.5 * alpha * score + ops.sqrt(alpha) * z[1]  # NCSN Algorithm 1, line 6
        return x, y_obs, observed

    alphas = step_lr * sigmas**2 / sigmas[-1] ** 2  # NCSN Algorithm 1, line 3
    table = np.repeat(np.stack([sigmas, alphas], axis=1), n_steps_each, axis=0)
    with backend.no_grad():
        x, _, _ = run_steps(
            step,
            (x, y_obs, observed),
            table,
            key=("annealed langevin with replacement", score_fn, decouple, couple),
            noise=source,
            draws_per_step=2,  # a replacement normal and the Langevin step's normal
            variables=variables,
            progress=progress,
            desc="annealed ld with replacement",
        )
        nfe = len(table)
        if denoise:
            x = tweedie_denoise(score_fn, x, sigmas[-1], variables)
            nfe += 1
    return couple(ops.where(observed, y_obs, decouple(x))), nfe


def annealed_langevin_impute(
    score_fn: ScoreFn,
    sigmas: Any,
    x_obs: Tensor,
    mask: Tensor,
    seed: Any = None,
    n_steps_each: int = 100,
    step_lr: float = 2e-5,
    denoise: bool = True,
    noise: Noise = None,
    temperature: float = 1.0,
    progress: bool = False,
    variables: Sequence[Any] | None = None,
) -> tuple[Tensor, int]:
    """Impute where ``mask`` is False given ``x_obs`` by annealed Langevin dynamics (NCSN), as
    ``reference.controllable.annealed_langevin_impute``: ``annealed_langevin_with_replacement``
    on the coordinates of x itself."""
    return annealed_langevin_with_replacement(
        score_fn,
        sigmas,
        x_obs,
        mask,
        seed,
        n_steps_each=n_steps_each,
        step_lr=step_lr,
        denoise=denoise,
        noise=noise,
        temperature=temperature,
        progress=progress,
        variables=variables,
    )


def decouple_colors(x: Tensor) -> Tensor:
    """Per-pixel rotation y = M x to (grey, colour, colour) channels, x (..., 3)."""
    return ops.einsum("...j,ij->...i", to_float(x), to_float(COLOR_DECOUPLING))


def couple_colors(y: Tensor) -> Tensor:
    """Inverse of ``decouple_colors``: x = M^T y."""
    return ops.einsum("...i,ij->...j", to_float(y), to_float(COLOR_DECOUPLING))


def colorize(
    score_fn: ScoreFn,
    sde: SDE,
    x_grey: Tensor,
    seed: Any = None,
    **pc_kwargs: Any,
) -> tuple[Tensor, int]:
    """Colour images (batch, H, W, 3) whose grey channel (mean of RGB) is that of ``x_grey``.

    ``x_grey`` is (batch, H, W, 1) intensities or (batch, H, W, 3) colour images (only their
    grey channel is used). PC sampling with replacement of decouple(x)[..., 0], the grey channel
    of the orthonormal colour decoupling ``COLOR_DECOUPLING``; keywords as ``impute``.
    """
    y_obs, mask = grey_observation(x_grey)
    return pc_sample_with_replacement(
        score_fn,
        sde,
        y_obs,
        mask,
        seed,
        decouple=decouple_colors,
        couple=couple_colors,
        **pc_kwargs,
    )


def grey_observation(x_grey: Tensor) -> tuple[Tensor, np.ndarray]:
    """(y_obs, mask) of colorization in the decoupled space: the grey channel of ``x_grey``.

    ``x_grey`` is (batch, H, W, 1) intensities or (batch, H, W, 3) colour images; pass the pair
    with ``decouple_colors`` / ``couple_colors`` to a sampler with replacement.
    """
    x_grey = to_float(x_grey)
    if x_grey.shape[-1] != N_COLOR_CHANNELS:
        x_grey = ops.repeat(x_grey, N_COLOR_CHANNELS, axis=-1)
    return decouple_colors(x_grey), np.arange(N_COLOR_CHANNELS) == GREY_CHANNEL


# --------------------------------------------------------------------------- class-conditional


def guided_score(
    score_fn: ScoreFn,
    log_posterior_grad_fn: LogPosteriorGradFn,
    y: Tensor | int,
    scale: float = 1.0,
) -> ScoreFn:
    """score + scale * grad_x log p_t(y | x): the conditional score (Song et al. 2021, eq. 14)."""

    def score(x: Tensor, t: Tensor) -> Tensor:
        labels = ops.broadcast_to(ops.cast(ops.convert_to_tensor(y), "int32"), (x.shape[0],))
        return score_fn(x, t) + scale * log_posterior_grad_fn(x, t, labels)

    return score


def class_conditional_sample(
    score_fn: ScoreFn,
    log_posterior_grad_fn: LogPosteriorGradFn | keras.Model,
    sde: SDE,
    shape: tuple[int, ...],
    seed: Any = None,
    y: Tensor | int = 0,
    scale: float = 1.0,
    **pc_kwargs: Any,
) -> tuple[Tensor, int]:
    """PC sampling of p(x | y) with the guided score; ``y`` int or (batch,) labels.

    ``log_posterior_grad_fn(x, t, y)`` is grad_x log p_t(y | x); a trained
    ``NoiseConditionalClassifier`` may be passed instead. Other keywords go to
    ``scoregen_keras.samplers.pc_sample`` (which draws as the reference's). NFE counts
    guided score evaluations (each one score plus one classifier gradient).
    """
    if isinstance(log_posterior_grad_fn, keras.Model):
        log_posterior_grad_fn = classifier_grad_fn(log_posterior_grad_fn)
    guided = guided_score(score_fn, log_posterior_grad_fn, y, scale)
    return pc_sample(guided, sde, shape, seed, **pc_kwargs)
