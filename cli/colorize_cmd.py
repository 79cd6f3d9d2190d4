"""`scoregen colorize RUN_DIR`: colour a grey image with a colour model (thin over run_tasks)."""

from __future__ import annotations

import importlib
import json

import click

from cli.options import (
    backend_option,
    json_option,
    progress_option,
    replacement_snr_option,
    replacement_steps_option,
    require_positive,
    run_summary,
    step_lr_option,
)
from cli.train_cmd import use_backend

DEFAULT_N = 8
GREY_OR_COLOUR = (1, 3)


@click.command("colorize")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--image",
    "image_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Grey or colour image file (0..255 spans the training data's range) or .npy (original "
    "data scale, 1 or 3 channels) of the model's size; only its grey level (mean of RGB) is used.",
)
@replacement_steps_option
@replacement_snr_option
@step_lr_option
@click.option("--n", type=int, default=DEFAULT_N, show_default=True, help="Colourings to draw.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="RUN_DIR/samples/colorize-seedSEED",
    help="Output path: writes PATH.png (grey input, results) and PATH.npz (x: results, grey; "
    "original scale).",
)
@backend_option
@progress_option
@json_option
def colorize(
    run_dir: str,
    image_path: str,
    steps: int | None,
    snr: float,
    step_lr: float | None,
    n: int,
    seed: int,
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
    require_positive(n=n, steps=steps, step_lr=step_lr)
    use_backend(backend)
    runs = importlib.import_module("scoregen_keras.runs")
    tasks = importlib.import_module("scoregen_keras.runs")
    try:
        config = tasks.run_config(run_dir)
        tasks.require_images(config, "colorization", channels=3)
        image = tasks.read_image(image_path, config, channels=GREY_OR_COLOUR)
        run = runs.load_run(run_dir)
        stem = runs.output_stem(out if out else run.paths.samples / f"colorize-seed{seed}")
        result = tasks.colorize_image(
            run,
            image,
            n=n,
            seed=seed,
            steps=steps,
            snr=snr,
            step_lr=step_lr,
            progress=progress and not as_json,
        )
        npz, png = tasks.save_controlled(stem, result, run.config)
    except runs.RunError as error:
        raise click.ClickException(str(error)) from error
    summary = {
        **run_summary(run, backend),
        "n": n,
        "nfe": result.nfe,
        "seconds": round(result.seconds, 3),
        "npz": str(npz),
        "png": str(png),
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(f"{n} colourings from {run.checkpoint} (step {run.step}, NFE {result.nfe})")
    click.echo(f"results: {npz}  (key 'x', original data scale)")
    click.echo(f"plot:    {png}  (grey input, results)")
