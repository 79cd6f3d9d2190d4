"""`scoregen inpaint RUN_DIR`: fill the unknown pixels of an image (thin over run_tasks)."""

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


@click.command("inpaint")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--image",
    "image_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Image file: PNG, JPEG, BMP, TIFF or WebP (0..255 spans the training data's range) or "
    ".npy (original data scale), of the model's size.",
)
@click.option(
    "--mask",
    "mask_path",
    type=click.Path(dir_okay=False),
    required=True,
    help="Image file or .npy of the image's size: white (.npy: 1 / True) = known, black = fill in.",
)
@replacement_steps_option
@replacement_snr_option
@step_lr_option
@click.option("--n", type=int, default=DEFAULT_N, show_default=True, help="Inpaintings to draw.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sampler.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="RUN_DIR/samples/inpaint-seedSEED",
    help="Output path: writes PATH.png (input, masked input, results) and PATH.npz "
    "(x: results, image, mask; original scale).",
)
@backend_option
@progress_option
@json_option
def inpaint(
    run_dir: str,
    image_path: str,
    mask_path: str,
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
    """Inpaint an image with a run's model: keep the known pixels, sample the rest.

    Predictor-corrector sampling with replacement, or annealed Langevin dynamics with
    replacement for a run of NCSN noise levels.

    \b
    Example:
      scoregen inpaint runs/digits --image digit.png --mask mask.png --n 8 --out runs/inpainted
    """
    require_positive(n=n, steps=steps, step_lr=step_lr)
    use_backend(backend)
    runs = importlib.import_module("scoregen_keras.runs")
    tasks = importlib.import_module("scoregen_keras.runs")
    try:
        config = tasks.run_config(run_dir)
        tasks.require_images(config, "inpainting")
        image = tasks.read_image(image_path, config)
        mask = tasks.read_mask(mask_path, config)
        run = runs.load_run(run_dir)
        stem = runs.output_stem(out if out else run.paths.samples / f"inpaint-seed{seed}")
        result = tasks.inpaint_image(
            run,
            image,
            mask,
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
        "known_fraction": round(float(mask.mean()), 6),
        "nfe": result.nfe,
        "seconds": round(result.seconds, 3),
        "npz": str(npz),
        "png": str(png),
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"{n} inpaintings from {run.checkpoint} (step {run.step}, "
        f"{summary['known_fraction']:.0%} of pixels known, NFE {result.nfe})"
    )
    click.echo(f"results: {npz}  (key 'x', original data scale)")
    click.echo(f"plot:    {png}  (input, masked input, results)")
