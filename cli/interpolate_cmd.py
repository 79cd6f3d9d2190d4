"""`scoregen interpolate RUN_DIR`: interpolate two examples through the ODE latent space."""

from __future__ import annotations

import click

from cli.environment import use_backend
from cli.options import (
    count_option,
    input_file_option,
    out_option,
    require_at_least,
    require_positive,
    run_dir_argument,
    run_options,
    seed_option,
)
from cli.output import library_errors, report, run_summary

DEFAULT_FRAMES = 8
MIN_FRAMES = 2


@click.command("interpolate")
@run_dir_argument
@count_option("--n-frames", DEFAULT_FRAMES, "Frames of the path, both ends included.")
@click.option(
    "--a", "index_a", type=int, default=None, help="Index of the first end in the run's data."
)
@click.option(
    "--b", "index_b", type=int, default=None, help="Index of the second end in the run's data."
)
@input_file_option(
    "--a-file",
    "First end from a file: .npy (original data scale) or, for images, an image file.",
)
@input_file_option("--b-file", "Second end, as --a-file.")
@count_option(
    "--steps",
    None,
    "Fixed Heun steps of each ODE solve (encode, decode).",
    show_default="adaptive RK45",
)
@seed_option("Seed that picks the ends not given by index or file (two distinct examples).")
@out_option(
    "Output path: writes PATH.png (image strip, or the path over the data in 2-D) and "
    "PATH.npz (x: frames, ends, fractions; original scale).",
    show_default="RUN_DIR/samples/interpolate-A-B",
)
@run_options(progress=False)
def interpolate(
    run_dir: str,
    n_frames: int,
    index_a: int | None,
    index_b: int | None,
    a_file_path: str | None,
    b_file_path: str | None,
    steps: int | None,
    seed: int,
    out: str | None,
    backend: str,
    as_json: bool,
) -> None:
    """Encode two examples with the probability-flow ODE, slerp their latents, decode the path.

    \b
    Example:
      scoregen interpolate runs/digits --a 0 --b 7 --n-frames 8 --out runs/digits/path
    """
    require_at_least("--n-frames", n_frames, MIN_FRAMES)
    require_positive(steps=steps)
    for index, path, name in ((index_a, a_file_path, "a"), (index_b, b_file_path, "b")):
        if index is not None and path is not None:
            raise click.UsageError(f"give --{name} or --{name}-file, not both.")
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        config = runs.run_config(run_dir)
        runs.require_sde(config, "interpolation")
        examples = None
        if a_file_path is None or b_file_path is None:
            examples = runs.training_examples(config)
            index_a, index_b = runs.pick_indices(len(examples), index_a, index_b, seed)
        x_a = runs.pick_example(config, examples, None if a_file_path else index_a, a_file_path)
        x_b = runs.pick_example(config, examples, None if b_file_path else index_b, b_file_path)
        run = runs.load_run(run_dir)
        label = f"{'file' if a_file_path else index_a}-{'file' if b_file_path else index_b}"
        stem = runs.output_stem(out if out else run.paths.samples / f"interpolate-{label}")
        result = runs.interpolate_examples(run, x_a, x_b, n_frames, steps=steps)
        npz, png = runs.save_interpolation(stem, result, run.config, examples)
    summary = {
        **run_summary(run, backend),
        "a": a_file_path or index_a,
        "b": b_file_path or index_b,
        "n_frames": n_frames,
        "nfe": result.nfe,
        "seconds": round(result.seconds, 3),
        "npz": str(npz),
        "png": str(png),
    }
    lines = [
        f"{n_frames} frames from {summary['a']} to {summary['b']} with {run.checkpoint} "
        f"(step {run.step}, NFE {result.nfe})",
        f"frames: {npz}  (key 'x', original data scale)",
        f"plot:   {png}",
    ]
    report(summary, as_json, lines)
