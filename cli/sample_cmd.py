"""`scoregen sample RUN_DIR`: draw samples from a trained run (thin over scoregen_keras.runs)."""

from __future__ import annotations

import importlib
import json
from typing import Any

import click

from cli.options import (
    DEFAULT_SNR,
    backend_option,
    json_option,
    ode_solver_option,
    progress_option,
    require_positive,
    run_summary,
    sample_batch_option,
    sampler_option,
    step_lr_option,
)
from cli.train_cmd import use_backend

PREDICTORS = ("reverse_diffusion", "euler_maruyama", "ancestral")
CORRECTORS = ("langevin", "ald", "none")
DEFAULT_N = 1_000
DEFAULT_GUIDANCE = 1.0  # the guided score of Song et al. (2021), eq. 14, unscaled


@click.command("sample")
@click.argument("run_dir", type=click.Path())
@sampler_option
@click.option(
    "--steps",
    type=int,
    default=None,
    show_default="sampler default",
    help="Sampler steps (ald: steps per noise level, else the run's ald_steps_each; ode: fixed "
    "Heun steps, else --ode-solver).",
)
@step_lr_option
@ode_solver_option
@click.option("--snr", type=float, default=DEFAULT_SNR, show_default=True, help="pc corrector.")
@click.option(
    "--predictor",
    type=click.Choice(PREDICTORS),
    default="reverse_diffusion",
    show_default=True,
    help="pc predictor.",
)
@click.option(
    "--corrector",
    type=click.Choice(CORRECTORS),
    default="langevin",
    show_default=True,
    help="pc corrector.",
)
@click.option("--n", type=int, default=DEFAULT_N, show_default=True, help="Number of samples.")
@sample_batch_option
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler.")
@click.option(
    "--temperature",
    type=float,
    default=1.0,
    show_default=True,
    help="Scale of the prior noise (below 1: sharper, less diverse).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="RUN_DIR/samples/SAMPLER[-classC]-seedSEED",
    help="Output path without suffix: writes PATH.npz (key x) and PATH.png.",
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
@backend_option
@progress_option
@json_option
def sample(
    run_dir: str,
    sampler: str | None,
    steps: int | None,
    step_lr: float | None,
    ode_solver: str,
    snr: float,
    predictor: str,
    corrector: str,
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
    runs = importlib.import_module("scoregen_keras.runs")
    try:
        run = runs.load_run(run_dir)
        sampler = sampler or runs.default_sampler(run.config)
        guide = None
        if class_choice is not None:
            run_classifier = importlib.import_module("scoregen_keras.runs.classifier")
            classifier = run_classifier.load_run_classifier(run)
            guide = run_classifier.class_guide(classifier, class_choice, guidance)
        stem = runs.output_stem(
            out if out else run.paths.samples / _default_name(sampler, seed, guide)
        )
        folder = runs.image_files_folder(stem, run.config) if image_files else None
        samples = runs.draw_samples(
            run.model,
            run.config,
            n,
            sampler=sampler,
            seed=seed,
            steps=steps,
            ode_solver=ode_solver,
            snr=snr if sampler == "pc" else None,
            predictor=predictor if sampler == "pc" else None,
            corrector=corrector if sampler == "pc" else None,
            temperature=temperature,
            progress=progress and not as_json,
            batch_size=batch_size,
            guide=guide,
            step_lr=step_lr,
        )
        npz, png = runs.save_samples(
            stem, samples, run.config, folder, progress=progress and not as_json
        )
    except runs.RunError as error:
        raise click.ClickException(str(error)) from error
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
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{n} samples from {run.checkpoint} (step {run.step}, {sampler}, NFE {samples.nfe})")
    if guide is not None:
        classes = "every class in turn" if len(guide.classes) > 1 else f"class {class_choice}"
        click.echo(f"guided to {classes} by {run.paths.classifier} (scale {guidance:g})")
    keys = "key 'x'" if guide is None else "keys 'x' and the classes 'y'"
    click.echo(f"samples: {npz}  ({keys}, original data scale)")
    click.echo(f"plot:    {png}")
    if folder is not None:
        click.echo(f"images:  {folder}/  ({n} PNG files)")


def _default_name(sampler: str, seed: int, guide: Any) -> str:
    """SAMPLER-seedSEED, with the class index (or 'all') of a class-guided draw."""
    if guide is None:
        return f"{sampler}-seed{seed}"
    which = "all" if len(guide.classes) > 1 else str(guide.classes[0])
    return f"{sampler}-class{which}-seed{seed}"
