"""`scoregen colorize RUN_DIR`: colour a grey image with a colour model (thin over runs)."""

from __future__ import annotations

from typing import Any

import click

from cli.environment import use_backend
from cli.options import (
    count_option,
    describe_seeds,
    input_file_option,
    out_option,
    replacement_options,
    require_positive,
    resolve_seeds,
    run_dir_argument,
    run_options,
    seed_option,
    seeds_option,
)
from cli.output import library_errors, report, run_summary

DEFAULT_N = 8
GREY_OR_COLOUR = (1, 3)


@click.command("colorize")
@run_dir_argument
@input_file_option(
    "--image",
    "Grey or colour image file (0..255 spans the training data's range) or .npy (original "
    "data scale, 1 or 3 channels) of the model's size; only its grey level (mean of RGB) is used.",
    required=True,
)
@replacement_options
@count_option(
    "--n",
    None,
    "Colourings to draw, of the seeds --seed .. --seed + N - 1.",
    show_default=str(DEFAULT_N),
)
@seed_option("Seed of the first result (the n-th has seed + n - 1).", default=None)
@seeds_option
@out_option(
    "Output path: writes PATH.png (grey input, results) and PATH.npz (x: results, seeds, grey; "
    "original scale).",
    show_default="RUN_DIR/samples/colorize-seedSEED (--seeds: -seedsA-B)",
)
@run_options()
def colorize(
    run_dir: str,
    image_path: str,
    steps: int | None,
    snr: float | None,
    step_lr: float | None,
    n: int | None,
    seed: int | None,
    seeds: Any,
    out: str | None,
    backend: str,
    progress: bool,
    as_json: bool,
) -> None:
    """Colour a grey image with a run's 3-channel model: results keep its grey level.

    Predictor-corrector sampling with replacement, or annealed Langevin dynamics with
    replacement for a run of NCSN noise levels.

    \b
    Example:
      scoregen colorize runs/cifar10 --image grey.png --n 8 --out runs/coloured
    """
    require_positive(steps=steps, step_lr=step_lr)
    chosen, _ = resolve_seeds(seed, n, seeds, None, DEFAULT_N)
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        config = runs.run_config(run_dir)
        runs.require_images(config, "colorization", channels=runs.COLOR_CHANNELS)
        image = runs.read_image(image_path, config, channels=GREY_OR_COLOUR)
        run = runs.load_run(run_dir)
        named = f"seed{seed or 0}" if seeds is None else f"seeds{seeds[0]}-{seeds[-1]}"
        stem = runs.output_stem(out if out else run.paths.samples / f"colorize-{named}")
        sampling = {"seeds": chosen, "steps": steps, "snr": snr, "step_lr": step_lr}
        result = runs.colorize_image(run, image, **sampling, progress=progress and not as_json)
        npz, png = runs.save_controlled(stem, result, run.config)
    summary = {
        **run_summary(run, backend),
        "n": len(chosen),
        "seeds": describe_seeds(chosen),
        "nfe": result.nfe,
        "seconds": round(result.seconds, 3),
        "npz": str(npz),
        "png": str(png),
    }
    lines = [
        f"{len(chosen)} colourings from {run.checkpoint} (step {run.step}, NFE {result.nfe})",
        f"results: {npz}  (keys 'x', 'seeds'; original data scale)",
        f"plot:    {png}  (grey input, results)",
    ]
    report(summary, as_json, lines)
