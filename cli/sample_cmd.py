"""`scoregen sample RUN_DIR`: draw samples from a trained run (thin over scoregen_keras.runs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from cli.environment import use_backend
from cli.options import (
    DEFAULT_SNR,
    choice_option,
    count_option,
    ode_solver_option,
    out_option,
    require_positive,
    run_dir_argument,
    run_options,
    run_setting,
    sample_batch_option,
    sampler_option,
    sampler_steps_option,
    seed_option,
    step_lr_option,
)
from cli.output import library_errors, report, run_summary
from scoregen_keras import choices

DEFAULT_N = 1_000
DEFAULT_GUIDANCE = 1.0  # the guided score of Song et al. (2021), eq. 14, unscaled


@click.command("sample")
@run_dir_argument
@sampler_option
@sampler_steps_option(adaptive_ode="--ode-solver")
@step_lr_option
@ode_solver_option
@click.option(
    "--snr",
    type=float,
    default=None,
    show_default=run_setting(DEFAULT_SNR),
    help="pc corrector's signal-to-noise ratio.",
)
@choice_option(
    "--predictor",
    names=choices.PREDICTORS,
    default=None,
    show_default=run_setting(choices.DEFAULT_PREDICTOR),
    help="pc predictor (none: corrector steps only).",
)
@choice_option(
    "--corrector",
    names=choices.CORRECTORS,
    default=None,
    show_default=run_setting(choices.DEFAULT_CORRECTOR),
    help="pc corrector.",
)
@count_option("--n", DEFAULT_N, "Number of samples.")
@sample_batch_option
@seed_option("Seed of the sampler.")
@click.option(
    "--temperature",
    type=float,
    default=1.0,
    show_default=True,
    help="Scale of the prior noise (below 1: sharper, less diverse).",
)
@out_option(
    "Output path without suffix: writes PATH.npz (key x) and PATH.png.",
    show_default="RUN_DIR/samples/SAMPLER[-classC]-seedSEED",
)
@click.option(
    "--class",
    "class_choice",
    type=str,
    default=None,
    help="Sample this class (a name or index of the run's classes), or 'all' of them in turn, "
    "guided by the classifier that `scoregen classifier RUN_DIR` trained.",
)
@click.option(
    "--guidance",
    type=float,
    default=None,
    show_default=str(DEFAULT_GUIDANCE),
    help="With --class: scale of the classifier's gradient in the guided score (0: none).",
)
@click.option(
    "--image-files",
    is_flag=True,
    default=False,
    help="Image runs: also write each sample as an 8-bit PNG in the folder PATH/ (for tools "
    "that read a folder of images); PATH/ must not exist yet.",
)
@run_options()
def sample(
    run_dir: str,
    sampler: str | None,
    steps: int | None,
    step_lr: float | None,
    ode_solver: str,
    snr: float | None,
    predictor: str | None,
    corrector: str | None,
    n: int,
    batch_size: int,
    seed: int,
    temperature: float,
    out: str | None,
    class_choice: str | None,
    guidance: float | None,
    image_files: bool,
    backend: str,
    progress: bool,
    as_json: bool,
) -> None:
    """Draw samples from a run folder (or a checkpoint), in the data's original scale.

    \b
    Example:
      scoregen sample runs/toy --sampler ode --n 2000 --out runs/toy/ode
      scoregen sample runs/digits --n 10000 --image-files --out fid/digits
      scoregen sample runs/digits --class all --n 100
    """
    require_positive(
        n=n, batch_size=batch_size, steps=steps, step_lr=step_lr, temperature=temperature
    )
    if guidance is not None and class_choice is None:
        raise click.UsageError("--guidance scales the guidance of --class; give a class too.")
    guidance = DEFAULT_GUIDANCE if guidance is None else guidance
    if guidance < 0:
        raise click.BadParameter(
            f"must not be negative, got {guidance}.", param_hint="'--guidance'"
        )
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        run = runs.load_run(run_dir)
        sampler = sampler or runs.default_sampler(run.config)
        guide = None
        if class_choice is not None:
            classifier = runs.load_run_classifier(run)
            guide = runs.class_guide(classifier, class_choice, guidance)
        stem = runs.output_stem(
            out if out else run.paths.samples / _default_name(sampler, seed, guide)
        )
        folder = runs.image_files_folder(stem, run.config) if image_files else None
        pc = sampler == choices.PC_SAMPLER
        samples = runs.draw_samples(
            run.model,
            run.config,
            n,
            sampler=sampler,
            seed=seed,
            steps=steps,
            ode_solver=ode_solver,
            snr=snr if pc else None,
            predictor=predictor if pc else None,
            corrector=corrector if pc else None,
            temperature=temperature,
            progress=progress and not as_json,
            batch_size=batch_size,
            guide=guide,
            step_lr=step_lr,
        )
        npz, png = runs.save_samples(
            stem, samples, run.config, folder, progress=progress and not as_json
        )
    summary = {
        **run_summary(run, backend),
        "sampler": sampler,
        "n": n,
        "batch_size": min(n, batch_size),
        "nfe": samples.nfe,
        "seconds": round(samples.seconds, 3),
        **({} if guide is None else {"class": class_choice, "guidance": guidance}),
        "npz": str(npz),
        "png": str(png),
        **({"image_files": str(folder)} if folder is not None else {}),
    }
    report(summary, as_json, _lines(summary, run, guide))


def _lines(summary: dict[str, Any], run: Any, guide: Any) -> Iterator[str]:
    """What `scoregen sample` prints: the draw, its guidance, and where the files are."""
    yield (
        f"{summary['n']} samples from {run.checkpoint} (step {run.step}, {summary['sampler']}, "
        f"NFE {summary['nfe']})"
    )
    if guide is not None:
        classes = "every class in turn" if len(guide.classes) > 1 else f"class {summary['class']}"
        yield f"guided to {classes} by {run.paths.classifier} (scale {summary['guidance']:g})"
    keys = "key 'x'" if guide is None else "keys 'x' and the classes 'y'"
    yield f"samples: {summary['npz']}  ({keys}, original data scale)"
    yield f"plot:    {summary['png']}"
    if "image_files" in summary:
        yield f"images:  {summary['image_files']}/  ({summary['n']} PNG files)"


def _default_name(sampler: str, seed: int, guide: Any) -> str:
    """SAMPLER-seedSEED, with the class index (or 'all') of a class-guided draw."""
    if guide is None:
        return f"{sampler}-seed{seed}"
    which = "all" if len(guide.classes) > 1 else str(guide.classes[0])
    return f"{sampler}-class{which}-seed{seed}"
