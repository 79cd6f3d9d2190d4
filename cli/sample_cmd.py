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
    describe_seeds,
    noise_option,
    ode_solver_option,
    out_option,
    require_positive,
    resolve_seeds,
    run_dir_argument,
    run_options,
    run_setting,
    sample_batch_option,
    sampler_option,
    sampler_steps_option,
    seed_option,
    seeds_option,
    shard_option,
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
    show_default=run_setting("ald for point data and langevin for images"),
    help="pc corrector.",
)
@count_option(
    "--n",
    None,
    "Number of samples, of the seeds --seed .. --seed + N - 1.",
    show_default=str(DEFAULT_N),
)
@sample_batch_option
@seed_option("Seed of the first sample (the n-th has seed + n - 1).", default=None)
@seeds_option
@shard_option
@noise_option
@click.option(
    "--temperature",
    type=float,
    default=1.0,
    show_default=True,
    help="Scale of the prior noise (below 1: sharper, less diverse).",
)
@out_option(
    "Output path without suffix: writes PATH.npz (keys x, seeds) and PATH.png; with --shard "
    "I/K, PATH-shardIofK.npz and .png.",
    show_default="RUN_DIR/samples/SAMPLER[-classC]-seedSEED (--seeds: -seedsA-B)",
    dir_okay=True,  # PATH/ is the image files' folder, which other shards may have made
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
    help="Image runs: also write each sample as an 8-bit PNG named by its seed (000123.png) "
    "in the folder PATH/ (for tools that read a folder of images); the folder may hold other "
    "seeds' files (another shard's), never these seeds' own.",
)
@count_option(
    "--devices",
    None,
    "Split each batch over this many devices of this host (jax; the samples stay those of one "
    "device). On a machine without accelerators $SCOREGEN_CPU_DEVICES splits the CPU.",
    show_default="1",
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
    n: int | None,
    batch_size: int,
    seed: int | None,
    seeds: Any,
    shard: tuple[int, int] | None,
    noise: str,
    temperature: float,
    out: str | None,
    class_choice: str | None,
    guidance: float | None,
    image_files: bool,
    devices: int | None,
    backend: str,
    progress: bool,
    as_json: bool,
) -> None:
    """Draw samples from a run folder (or a checkpoint), in the data's original scale.

    One sample per seed: --seeds A-B (or --seed S --n N for S..S+N-1). The sample of a seed is
    the same on every backend and at every --batch-size, so --shard I/K splits the seeds over K
    processes or hosts that together write what one process writes.

    \b
    Example:
      scoregen sample runs/toy --sampler ode --n 2000 --out runs/toy/ode
      scoregen sample runs/digits --seeds 0-9999 --image-files --out fid/digits
      scoregen sample runs/digits --seeds 0-49999 --shard 1/4 --image-files --out fid/digits
      scoregen sample runs/digits --class all --n 100
    """
    require_positive(
        batch_size=batch_size,
        steps=steps,
        step_lr=step_lr,
        temperature=temperature,
        devices=devices,
    )
    chosen, first_position = resolve_seeds(seed, n, seeds, shard, DEFAULT_N)
    if guidance is not None and class_choice is None:
        raise click.UsageError("--guidance scales the guidance of --class; give a class too.")
    guidance = DEFAULT_GUIDANCE if guidance is None else guidance
    if guidance < 0:
        raise click.BadParameter(
            f"must not be negative, got {guidance}.", param_hint="'--guidance'"
        )
    use_backend(backend)
    from scoregen_keras import runs
    from scoregen_keras.training import distribution

    with library_errors(), distribution.sampling_scope(devices) as used:
        run = runs.load_run(run_dir)
        sampler = sampler or runs.default_sampler(run.config)
        guide = None
        if class_choice is not None:
            classifier = runs.load_run_classifier(run)
            guide = runs.class_guide(classifier, class_choice, guidance)
        named = f"seed{seed or 0}" if seeds is None else f"seeds{seeds[0]}-{seeds[-1]}"
        name = _default_name(sampler, named, guide)
        stem = runs.output_stem(out if out else run.paths.samples / name)
        folder = runs.image_files_folder(stem, run.config, chosen) if image_files else None
        if shard is not None:  # the image files are shared by the shards, the rest is not
            stem = stem.with_name(f"{stem.name}-shard{shard[0]}of{shard[1]}")
        pc = sampler == choices.PC_SAMPLER
        samples = runs.draw_samples(
            run.model,
            run.config,
            sampler=sampler,
            seeds=chosen,
            first_position=first_position,
            noise=noise,
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
        "n": len(chosen),
        "seeds": describe_seeds(chosen),
        **({} if shard is None else {"shard": f"{shard[0]}/{shard[1]}"}),
        "noise": noise,
        "devices": used,
        "batch_size": min(len(chosen), batch_size),
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
    shard = f", shard {summary['shard']}" if "shard" in summary else ""
    yield (
        f"{summary['n']} samples (seeds {summary['seeds']}{shard}) from {run.checkpoint} "
        f"(step {run.step}, {summary['sampler']}, NFE {summary['nfe']})"
    )
    if guide is not None:
        classes = "every class in turn" if len(guide.classes) > 1 else f"class {summary['class']}"
        yield f"guided to {classes} by {run.paths.classifier} (scale {summary['guidance']:g})"
    keys = "keys 'x', 'seeds'" + ("" if guide is None else " and the classes 'y'")
    yield f"samples: {summary['npz']}  ({keys}, original data scale)"
    yield f"plot:    {summary['png']}"
    if "image_files" in summary:
        yield f"images:  {summary['image_files']}/  ({summary['n']} PNG files named by seed)"


def _default_name(sampler: str, seeds: str, guide: Any) -> str:
    """SAMPLER-SEEDS, with the class index (or 'all') of a class-guided draw."""
    if guide is None:
        return f"{sampler}-{seeds}"
    which = "all" if len(guide.classes) > 1 else str(guide.classes[0])
    return f"{sampler}-class{which}-{seeds}"
