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

from scoregen_keras import samplers
from scoregen_keras.choices import ODE_SOLVERS, SAMPLERS
from scoregen_keras.data import Scaler
from scoregen_keras.runs import plots
from scoregen_keras.runs.config import (
    ald_options,
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


def batch_layout(n: int, batch_size: int | None, multiple: int = 1) -> tuple[int, int]:
    """(batches, length): n samples in equal batches of at most batch_size (None: one batch).

    With several batches the length is a multiple of ``multiple``, so that labels cycled through
    every batch (a guide's classes) continue from one batch to the next, as equal in number as n
    allows; RunError when batch_size is below ``multiple``.
    """
    if batch_size is None or n <= batch_size:
        return 1, n
    cap = batch_size - batch_size % multiple
    if cap == 0:
        raise RunError(
            f"drawing {multiple} classes in turn in several batches needs a batch size of at "
            f"least {multiple}."
        )
    batches = math.ceil(n / cap)
    length = math.ceil(n / batches)
    return batches, length + (-length % multiple)


def draw_samples(
    model: ScoreModel,
    config: dict[str, Any],
    n: int,
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
) -> Samples:
    """Draw n samples with the EMA weights; `steps` is per noise level for 'ald'.

    'ald' takes `steps` and its step size `step_lr` from the run's config unless given
    (`ald_options`); the other samplers ignore `step_lr`. 'pc' takes the predictor, corrector,
    snr, corrector steps and denoising not given from the run's own settings (`pc_settings`: an
    imported model's are the original's), else pc_sample's defaults.

    'ode' runs fixed-step Heun with `steps`, else the adaptive `ode_solver` (RK45 or dopri5).
    ``batch_size`` caps the samples drawn at once (None: all n). The batches are equal (the last
    one padded, so that one compiled shape serves them all) and draw from one seed generator, so
    the samples depend on the batch size as well as on the seed (`sample_batches` yields the
    same batches one at a time). ``nfe`` is a batch's (for the adaptive ODE solver, the mean over
    batches). With a ``guide`` every sampler follows its class-guided score, its classes in turn
    through the samples (`batch_layout`), and the samples come sorted by class (stable), with
    their labels.
    """
    start = time.perf_counter()
    drawn = list(
        sample_batches(
            model,
            config,
            n,
            sampler=sampler,
            seed=seed,
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
        )
    )
    seconds = time.perf_counter() - start
    x = np.concatenate([batch for batch, _ in drawn])
    labels, class_names = None, ()
    if guide is not None:
        labels = np.tile(guide.batch_labels(len(drawn[0][0])), len(drawn))[:n]
        order = np.argsort(labels, kind="stable")
        x, labels, class_names = x[order], labels[order], guide.class_names
    scaler = Scaler.from_config(config["data"]["scaler"])
    nfe = round(float(np.mean([batch_nfe for _, batch_nfe in drawn])))
    return Samples(x, scaler.inverse(x), nfe, seconds, sampler, labels, class_names)


def sample_batches(
    model: ScoreModel,
    config: dict[str, Any],
    n: int,
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
) -> Iterator[tuple[np.ndarray, int]]:
    """`draw_samples`'s batches one at a time: (x in model space, float32; the batch's NFE).

    The batches are those draw_samples concatenates (the last one cut so that n come out in all,
    guided classes unsorted), so a caller can use each and let it go (the standard FID of 50 000
    samples streams them this way). Arguments as draw_samples'; checked before the first draw.
    """
    if sampler not in SAMPLERS:
        raise RunError(f"unknown sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}.")
    sizes = (steps, batch_size, step_lr)
    if n <= 0 or any(size is not None and size <= 0 for size in sizes):
        raise RunError(
            "the number of samples, the batch size, the sampler steps and the step size must be "
            "positive."
        )
    n_batches, length = batch_layout(n, batch_size, 1 if guide is None else len(guide.classes))
    shape = (length, *config["data"]["shape"])
    score_fn = model.score_fn(use_ema=True)
    if guide is not None:  # an NCSN score takes noise levels sigma where an SDE's takes t
        guided = guide.score_fn if model.sde is not None else guide.sigma_score_fn
        score_fn = guided(score_fn, shape[0])
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
    return _batches(draw, shape, n, n_batches, seed, progress)


def _batches(
    draw: Callable[[tuple[int, ...], Any], tuple[Any, int]],
    shape: tuple[int, ...],
    n: int,
    n_batches: int,
    seed: int,
    progress: bool,
) -> Iterator[tuple[np.ndarray, int]]:
    """n_batches draws of `shape` from one seed stream, cut to n samples in all."""
    # one batch: the int seed, as the samplers take it; several: one stream through all of them
    seed_source = seed if n_batches == 1 else keras.random.SeedGenerator(seed)
    show_bar = progress and n_batches > 1  # None below: a bar on a terminal only
    left = n
    for _ in tqdm(range(n_batches), desc="sample batches", disable=None if show_bar else True):
        x, nfe = draw(shape, seed_source)
        yield np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32)[:left], nfe
        left -= shape[0]


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
            options = pc_settings(config) | given_options(
                predictor=predictor, corrector=corrector, snr=snr, n_steps=steps
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


def image_files_folder(stem: Path, config: dict[str, Any]) -> Path:
    """The folder STEM/ for one PNG per sample, checked before sampling (RunError).

    Only image runs have one, and it must not exist yet: it is written whole or not at all.
    """
    if config["data"]["kind"] != "images":
        raise RunError("image files are written for image runs only; this run's data are points.")
    if stem.exists():
        raise RunError(f"{stem} exists; choose another --out or remove it.")
    return stem


def save_samples(
    path: str | os.PathLike[str],
    samples: Samples,
    config: dict[str, Any],
    image_files: Path | None = None,
    progress: bool = False,
) -> tuple[Path, Path]:
    """Write PATH.npz (key 'x', original scale; class-guided samples: their labels 'y' too) and
    PATH.png; return both paths.

    With ``image_files`` (from `image_files_folder`), also every sample as an 8-bit PNG in that
    folder, for tools that read a folder of images (a Fréchet distance with other weights, say).
    The folder is filled under a hidden name and renamed when complete.
    """
    stem = output_stem(path)
    try:
        npz = stem.with_name(stem.name + ".npz")
        fd, tmp = tempfile.mkstemp(prefix=f".{stem.name}.", suffix=".npz", dir=stem.parent)
        labels = {} if samples.labels is None else {"y": samples.labels}
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, x=samples.x_original.astype(np.float32), **labels)
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
            _save_image_files(image_files, samples.x, config, progress)
    except OSError as error:
        raise RunError(f"cannot write samples to {stem.parent} ({one_line(error)}).") from error
    return npz, png


def _save_image_files(
    folder: Path, x_model: np.ndarray, config: dict[str, Any], progress: bool
) -> None:
    """plots.save_image_files into a hidden sibling folder, renamed to `folder` when complete."""
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        plots.save_image_files(partial, x_model, value_range(config), progress)
        make_readable(partial, DEFAULT_FOLDER_MODE)
        os.rename(partial, folder)  # a non-empty folder made meanwhile makes this fail
    finally:
        if partial.exists():
            shutil.rmtree(partial)
