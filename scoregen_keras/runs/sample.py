"""Drawing samples from a run's model in batches, and writing them (.npz, .png, image files)."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from tqdm.auto import tqdm

from scoregen_keras import backend, samplers
from scoregen_keras.choices import (
    BACKEND_NOISE,
    COUNTER_NOISE,
    NOISE_SOURCES,
    ODE_SOLVERS,
    SAMPLERS,
)
from scoregen_keras.data import Scaler
from scoregen_keras.runs import plots
from scoregen_keras.runs.config import (
    ald_options,
    corrector_norm_rule,
    default_corrector,
    given_options,
    pc_settings,
    reference_points,
    value_range,
)
from scoregen_keras.runs.folder import (
    DEFAULT_FOLDER_MODE,
    RunError,
    make_readable,
    one_line,
    output_stem,
)
from scoregen_keras.sampling.counter_noise import as_seeds
from scoregen_keras.training.score_model import ScoreModel

if TYPE_CHECKING:  # run_classifier imports this module
    from scoregen_keras.runs.classifier import ClassGuide


@dataclasses.dataclass
class Samples:
    """Samples in model space and in the data's original scale, with the cost of drawing them."""

    x: np.ndarray  # model space
    x_original: np.ndarray  # original scale (scaler inverse)
    nfe: int
    seconds: float
    sampler: str
    labels: np.ndarray | None = None  # class-guided samples: the class of each, in order
    class_names: tuple[str, ...] = ()
    seeds: np.ndarray | None = None  # the seed of each sample, in order (uint64)


def batch_layout(n: int, batch_size: int | None, multiple: int = 1) -> tuple[int, int]:
    """(batches, length): n samples in equal batches of at most batch_size (None: one batch).

    With several batches the length is a multiple of ``multiple``, so that labels cycled through
    the seeds by position (a guide's classes) repeat in every batch alike; RunError when
    batch_size is below ``multiple``.
    """
    if batch_size is None or n <= batch_size:
        return 1, n
    cap = batch_size - batch_size % multiple
    if cap == 0:
        raise RunError(
            f"batches that hold whole turns of the classes drawn (and split evenly over the "
            f"devices) need a batch size of at least {multiple}."
        )
    batches = math.ceil(n / cap)
    length = math.ceil(n / batches)
    return batches, length + (-length % multiple)


def sample_seeds(n: int | None, seed: int, seeds: Any | None) -> np.ndarray:
    """The samples' seeds, uint64: ``seeds`` when given (n, if given too, its length), else
    seed, seed+1, ..., seed+n-1; RunError for anything else."""
    if seeds is None:
        if n is None or n <= 0:
            raise RunError("the number of samples must be positive.")
        seeds = range(int(seed), int(seed) + int(n))
    try:
        chosen = as_seeds(seeds)
    except ValueError as error:
        raise RunError(f"{error}.") from error
    if n is not None and n != len(chosen):
        raise RunError(f"{n} samples were asked for with {len(chosen)} seeds; give one of them.")
    return chosen


def _batch_seeds(seeds: np.ndarray, index: int, length: int) -> np.ndarray:
    """The seeds of batch ``index``; the last batch padded with its last seed (samples dropped)."""
    chosen = seeds[index * length : (index + 1) * length]
    return np.concatenate([chosen, np.repeat(chosen[-1:], length - len(chosen))])


def draw_samples(
    model: ScoreModel,
    config: dict[str, Any],
    n: int | None = None,
    sampler: str = "pc",
    seed: int = 0,
    steps: int | None = None,
    snr: float | None = None,
    predictor: str | None = None,
    corrector: str | None = None,
    temperature: float | None = None,
    progress: bool = False,
    ode_solver: str = ODE_SOLVERS[0],
    batch_size: int | None = None,
    guide: ClassGuide | None = None,
    step_lr: float | None = None,
    *,
    seeds: Any | None = None,
    first_position: int = 0,
    noise: str = COUNTER_NOISE,
) -> Samples:
    """Draw samples with the EMA weights, one per seed; `steps` is per noise level for 'ald'.

    ``seeds``: the samples' seeds (integers in [0, 2^64)); without them seed, seed+1, ...,
    seed+n-1. With per-sample noise (``noise="counter"``) the sample of a seed depends on the
    seed and the sampler's settings only: not on the backend, on ``batch_size`` (which changes
    speed and memory only) or on the seeds beside it, except for the adaptive ODE solvers (step
    sizes shared by a batch: the same to their tolerance) and the Langevin corrector of a point
    run (score_sde's norms averaged over the batch). ``noise="backend"``: keras.random seeded
    with the first seed, one stream through every batch (the samples then depend on the backend
    and the batch size).

    PC: the options not given come from the run's own settings (`pc_settings`: an imported
    model's are the original's), else the corrector is `default_corrector` (ALD for point runs)
    and the Langevin corrector's norms `corrector_norm_rule` (per example for images). 'ald'
    takes `steps` and its step size `step_lr` from the run's config unless given
    (`ald_options`); the other samplers ignore `step_lr`. 'ode' runs fixed-step Heun with
    `steps`, else the adaptive `ode_solver` (RK45 or dopri5). The batches are equal (the last
    one padded, so that one compiled shape serves them all; `sample_batches` yields them one at
    a time). ``nfe`` is a batch's (for the adaptive ODE solver, the mean over batches). With a
    ``guide`` every sampler follows its class-guided score: the seed at position j of the whole
    seed list gets the class ``guide.classes[j mod K]``, where ``first_position`` is the
    position of ``seeds[0]`` (a shard's start), so shards and batches keep every seed's class.
    Inside `training.distribution.sampling_scope` each batch is split over that scope's devices
    (its length padded to a multiple of them).
    """
    seeds = sample_seeds(n, seed, seeds)
    batches = sample_batches(
        model,
        config,
        sampler=sampler,
        steps=steps,
        snr=snr,
        predictor=predictor,
        corrector=corrector,
        temperature=temperature,
        progress=progress,
        ode_solver=ode_solver,
        batch_size=batch_size,
        guide=guide,
        step_lr=step_lr,
        seeds=seeds,
        first_position=first_position,
        noise=noise,
    )
    start = time.perf_counter()
    drawn = list(batches)
    seconds = time.perf_counter() - start
    x = np.concatenate([batch for batch, _ in drawn])
    labels, class_names = None, ()
    if guide is not None:
        labels, class_names = guide.labels(first_position + np.arange(len(x))), guide.class_names
    scaler = Scaler.from_config(config["data"]["scaler"])
    nfe = round(float(np.mean([batch_nfe for _, batch_nfe in drawn])))
    return Samples(x, scaler.inverse(x), nfe, seconds, sampler, labels, class_names, seeds)


def sample_batches(
    model: ScoreModel,
    config: dict[str, Any],
    n: int | None = None,
    sampler: str = "pc",
    seed: int = 0,
    steps: int | None = None,
    snr: float | None = None,
    predictor: str | None = None,
    corrector: str | None = None,
    temperature: float | None = None,
    progress: bool = False,
    ode_solver: str = ODE_SOLVERS[0],
    batch_size: int | None = None,
    guide: ClassGuide | None = None,
    step_lr: float | None = None,
    *,
    seeds: Any | None = None,
    first_position: int = 0,
    noise: str = COUNTER_NOISE,
) -> Iterator[tuple[np.ndarray, int]]:
    """`draw_samples`'s batches one at a time: (x in model space, float32; the batch's NFE).

    The batches are those draw_samples concatenates (the last one cut to the seeds left), so a
    caller can use each and let it go (the standard FID of 50 000 samples streams them this
    way). Arguments as draw_samples'; checked before the first draw.
    """
    if sampler not in SAMPLERS:
        raise RunError(f"unknown sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}.")
    if noise not in NOISE_SOURCES:
        raise RunError(f"unknown noise '{noise}'; choose one of {', '.join(NOISE_SOURCES)}.")
    sizes = (n, steps, batch_size, step_lr)
    if any(size is not None and size <= 0 for size in sizes) or first_position < 0:
        raise RunError(
            "the number of samples, the batch size, the sampler steps and the step size must be "
            "positive."
        )
    seeds = sample_seeds(n, seed, seeds)
    devices = backend.batch_devices()  # a batch is split over them (`sampling_scope`)
    multiple = math.lcm(devices, 1 if guide is None else len(guide.classes))
    n_batches, length = batch_layout(len(seeds), batch_size, multiple)
    length += -length % devices  # one batch too: the padding seeds' samples are dropped
    shape = (length, *config["data"]["shape"])
    score_fn = model.score_fn(use_ema=True)
    if guide is not None:  # an NCSN score takes noise levels sigma where an SDE's takes t
        guided = guide.score_fn if model.sde is not None else guide.sigma_score_fn
        # every batch starts at a multiple of K past first_position (batch_layout): one labelling
        score_fn = guided(score_fn, guide.labels(first_position + np.arange(length)))
    draw = _batch_sampler(
        model,
        config,
        score_fn,
        sampler,
        steps,
        snr,
        predictor,
        corrector,
        temperature,
        progress,
        ode_solver,
        step_lr,
    )
    return _batches(draw, shape, seeds, n_batches, noise, progress)


def _batches(
    draw: Callable[[tuple[int, ...], Any], tuple[Any, int]],
    shape: tuple[int, ...],
    seeds: np.ndarray,
    n_batches: int,
    noise: str,
    progress: bool,
) -> Iterator[tuple[np.ndarray, int]]:
    """n_batches draws of `shape`, batch i from its seeds (or all from one backend stream), cut
    to one sample per seed in all."""
    stream = keras.random.SeedGenerator(int(seeds[0])) if noise == BACKEND_NOISE else None
    show_bar = progress and n_batches > 1  # None below: a bar on a terminal only
    length, left = shape[0], len(seeds)
    for index in tqdm(range(n_batches), desc="sample batches", disable=None if show_bar else True):
        x, nfe = draw(shape, stream if stream is not None else _batch_seeds(seeds, index, length))
        yield np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)[:left], nfe
        left -= length


def _batch_sampler(
    model: ScoreModel,
    config: dict[str, Any],
    score_fn: Callable[[Any, Any], Any],
    sampler: str,
    steps: int | None,
    snr: float | None,
    predictor: str | None,
    corrector: str | None,
    temperature: float | None,
    progress: bool,
    ode_solver: str,
    step_lr: float | None,
) -> Callable[[tuple[int, ...], Any], tuple[Any, int]]:
    """draw(shape, seed) -> (x, nfe): one batch of `draw_samples`'s sampler with its options,
    following ``score_fn`` (the model's EMA score, or a guided one)."""
    common = given_options(temperature=temperature, progress=progress or None)
    # the weights the EMA score reads: passed so a compiled step sees later weight updates (JAX)
    common["variables"] = model.score_variables(use_ema=True)

    def draw(shape: tuple[int, ...], seed: Any) -> tuple[Any, int]:
        """One batch of samples of this shape, and its NFE."""
        if model.sde is None:
            if sampler != "ald":
                raise RunError(
                    f"sampler '{sampler}' needs an SDE; this run uses discrete NCSN noise levels, "
                    "so use --sampler ald."
                )
            return samplers.annealed_langevin(
                score_fn, model.sigmas, shape, seed, **common, **ald_options(config, steps, step_lr)
            )
        if sampler == "pc":
            options = (
                {"corrector": default_corrector(config), "norm_rule": corrector_norm_rule(config)}
                | pc_settings(config)
                | given_options(predictor=predictor, corrector=corrector, snr=snr, n_steps=steps)
            )
            try:
                return samplers.pc_sample(score_fn, model.sde, shape, seed, **common, **options)
            except ValueError as error:  # e.g. too few steps for a VP chain: one sentence
                raise RunError(str(error)) from error
        if sampler == "ode":
            if ode_solver not in ODE_SOLVERS:
                raise RunError(
                    f"unknown ODE solver '{ode_solver}'; choose {' or '.join(ODE_SOLVERS)}."
                )
            method = (
                {"method": ode_solver} if steps is None else {"method": "heun", "n_steps": steps}
            )
            return samplers.ode_sample(score_fn, model.sde, shape, seed, **common, **method)
        if sampler == "heun":
            options = given_options(n_steps=steps, sigma_max=config.get("sampler_sigma_max"))
            return samplers.edm_heun_sample(score_fn, model.sde, shape, seed, **common, **options)
        if sampler == "dpm-solver":
            options = given_options(n_steps=steps, sigma_max=config.get("sampler_sigma_max"))
            return samplers.dpm_solver_pp_sample(
                score_fn, model.sde, shape, seed, **common, **options
            )
        raise RunError(
            "sampler 'ald' is for runs with discrete NCSN noise levels (--sde ncsn); "
            "use pc, ode, heun or dpm-solver for this SDE run."
        )

    return draw


def plot_samples(
    path: Path,
    x_model: np.ndarray,
    config: dict[str, Any],
    reference: np.ndarray | None = None,
    title: str = "samples",
    labels: np.ndarray | None = None,
    class_names: tuple[str, ...] = (),
) -> Path:
    """PNG of model-space samples: image grid, or 2-D scatter beside reference points.

    With ``labels``: one row of images per class, or one colour of points per class.
    """
    if config["data"]["kind"] == "images":
        columns = None
        if labels is not None:
            x_model, columns = plots.class_rows(x_model, labels)
        return plots.save_image_grid(path, x_model, value_range(config), columns)
    return plots.save_scatter(path, x_model, title, reference, labels, class_names)


def seed_file_names(seeds: np.ndarray) -> list[str]:
    """The PNG name of each seed's sample: the seed with at least IMAGE_FILE_DIGITS digits."""
    return [f"{int(seed):0{plots.IMAGE_FILE_DIGITS}d}.png" for seed in seeds]


def image_files_folder(stem: Path, config: dict[str, Any], seeds: Any) -> Path:
    """The folder STEM/ for one PNG per seed (``000123.png``), checked before sampling.

    Only image runs have one. The folder may exist already and hold other seeds' files (those of
    another process drawing other seeds of one list); RunError when a seed repeats or its file
    exists: a file is never overwritten.
    """
    if config["data"]["kind"] != "images":
        raise RunError("image files are written for image runs only; this run's data are points.")
    names = seed_file_names(as_seeds(seeds))
    if len(set(names)) != len(names):
        raise RunError("the seeds repeat; one image file per seed needs distinct seeds.")
    if stem.exists() and not stem.is_dir():
        raise RunError(f"{stem} exists and is not a folder; choose another --out.")
    taken = [name for name in names if (stem / name).exists()]
    if taken:
        raise RunError(
            f"{stem / taken[0]} exists ({len(taken)} of these seeds' files do); choose other "
            "seeds or another --out."
        )
    return stem


def save_samples(
    path: str | os.PathLike[str],
    samples: Samples,
    config: dict[str, Any],
    image_files: Path | None = None,
    progress: bool = False,
) -> tuple[Path, Path]:
    """Write PATH.npz (keys 'x', original scale, and 'seeds'; class-guided samples: their labels
    'y' too) and PATH.png; return both paths.

    With ``image_files`` (from `image_files_folder`), also every sample as an 8-bit PNG named by
    its seed in that folder, for tools that read a folder of images (a Fréchet distance with
    other weights, say). The files are written in a hidden sibling folder and moved in when all
    are complete, so an interrupted draw adds none.
    """
    stem = output_stem(path)
    try:
        npz = stem.with_name(stem.name + ".npz")
        fd, tmp = tempfile.mkstemp(prefix=f".{stem.name}.", suffix=".npz", dir=stem.parent)
        arrays = {"x": samples.x_original.astype(np.float32)}
        if samples.seeds is not None:
            arrays["seeds"] = np.asarray(samples.seeds, dtype=np.uint64)
        if samples.labels is not None:
            arrays["y"] = samples.labels
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        make_readable(Path(tmp))
        os.replace(tmp, npz)
        png = plot_samples(
            stem.with_name(stem.name + ".png"),
            samples.x,
            config,
            reference=reference_points(config),
            title=f"{samples.sampler} samples (NFE {samples.nfe})",
            labels=samples.labels,
            class_names=samples.class_names,
        )
        if image_files is not None:
            seeds = np.arange(len(samples.x)) if samples.seeds is None else samples.seeds
            _save_image_files(image_files, samples.x, seed_file_names(seeds), config, progress)
    except OSError as error:
        raise RunError(f"cannot write samples to {stem.parent} ({one_line(error)}).") from error
    return npz, png


def _save_image_files(
    folder: Path, x_model: np.ndarray, names: list[str], config: dict[str, Any], progress: bool
) -> None:
    """plots.save_image_files into a hidden sibling folder, then each file moved into `folder`
    (made if missing) when all are written."""
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        plots.save_image_files(partial, x_model, value_range(config), progress, names)
        folder.mkdir(mode=DEFAULT_FOLDER_MODE, exist_ok=True)
        for name in names:
            make_readable(partial / name)
            os.replace(partial / name, folder / name)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
