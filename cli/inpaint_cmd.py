"""`scoregen inpaint RUN_DIR`: fill the unknown pixels of an image (thin over runs)."""

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


@click.command("inpaint")
@run_dir_argument
@input_file_option(
    "--image",
    "Image file: PNG, JPEG, BMP, TIFF or WebP (0..255 spans the training data's range) or "
    ".npy (original data scale), of the model's size.",
    required=True,
)
@input_file_option(
    "--mask",
    "Image file or .npy of the image's size: white (.npy: 1 / True) = known, black = fill in.",
    required=True,
)
@replacement_options
@count_option(
    "--n",
    None,
    "Inpaintings to draw, of the seeds --seed .. --seed + N - 1.",
    show_default=str(DEFAULT_N),
)
@seed_option("Seed of the first result (the n-th has seed + n - 1).", default=None)
@seeds_option
@out_option(
    "Output path: writes PATH.png (input, masked input, results) and PATH.npz "
    "(x: results, seeds, image, mask; original scale).",
    show_default="RUN_DIR/samples/inpaint-seedSEED (--seeds: -seedsA-B)",
)
@run_options()
def inpaint(
    run_dir: str,
    image_path: str,
    mask_path: str,
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
    """Inpaint an image with a run's model: keep the known pixels, sample the rest.

    Predictor-corrector sampling with replacement, or annealed Langevin dynamics with
    replacement for a run of NCSN noise levels.

    \b
    Example:
      scoregen inpaint runs/digits --image digit.png --mask mask.png --n 8 --out runs/inpainted
    """
    require_positive(steps=steps, step_lr=step_lr)
    chosen, _ = resolve_seeds(seed, n, seeds, None, DEFAULT_N)
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        config = runs.run_config(run_dir)
        runs.require_images(config, "inpainting")
        image = runs.read_image(image_path, config)
        mask = runs.read_mask(mask_path, config)
        run = runs.load_run(run_dir)
        named = f"seed{seed or 0}" if seeds is None else f"seeds{seeds[0]}-{seeds[-1]}"
        stem = runs.output_stem(out if out else run.paths.samples / f"inpaint-{named}")
        sampling = {"seeds": chosen, "steps": steps, "snr": snr, "step_lr": step_lr}
        result = runs.inpaint_image(run, image, mask, **sampling, progress=progress and not as_json)
        npz, png = runs.save_controlled(stem, result, run.config)
    known = round(float(mask.mean()), 6)
    summary = {
        **run_summary(run, backend),
        "n": len(chosen),
        "seeds": describe_seeds(chosen),
        "known_fraction": known,
        "nfe": result.nfe,
        "seconds": round(result.seconds, 3),
        "npz": str(npz),
        "png": str(png),
    }
    lines = [
        f"{len(chosen)} inpaintings from {run.checkpoint} (step {run.step}, {known:.0%} of "
        f"pixels known, NFE {result.nfe})",
        f"results: {npz}  (keys 'x', 'seeds'; original data scale)",
        f"plot:    {png}  (input, masked input, results)",
    ]
    report(summary, as_json, lines)
