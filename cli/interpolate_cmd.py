"""`scoregen interpolate RUN_DIR`: interpolate two examples through the ODE latent space."""

from __future__ import annotations

import importlib
import json

import click

from cli.options import backend_option, json_option, require_positive, run_summary
from cli.train_cmd import use_backend

DEFAULT_FRAMES = 8
MIN_FRAMES = 2


@click.command("interpolate")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--n-frames",
    type=int,
    default=DEFAULT_FRAMES,
    show_default=True,
    help="Frames of the path, both ends included.",
)
@click.option(
    "--a", "index_a", type=int, default=None, help="Index of the first end in the run's data."
)
@click.option(
    "--b", "index_b", type=int, default=None, help="Index of the second end in the run's data."
)
@click.option(
    "--a-file",
    type=click.Path(dir_okay=False),
    default=None,
    help="First end from a file: .npy (original data scale) or, for images, an image file.",
)
@click.option(
    "--b-file", type=click.Path(dir_okay=False), default=None, help="Second end, as --a-file."
)
@click.option(
    "--steps",
    type=int,
    default=None,
    show_default="adaptive RK45",
    help="Fixed Heun steps of each ODE solve (encode, decode).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed that picks the ends not given by index or file (two distinct examples).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="RUN_DIR/samples/interpolate-A-B",
    help="Output path: writes PATH.png (image strip, or the path over the data in 2-D) and "
    "PATH.npz (x: frames, ends, fractions; original scale).",
)
@backend_option
@json_option
def interpolate(
    run_dir: str,
    n_frames: int,
    index_a: int | None,
    index_b: int | None,
    a_file: str | None,
    b_file: str | None,
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
    if n_frames < MIN_FRAMES:
        raise click.BadParameter(
            f"must be at least {MIN_FRAMES}, got {n_frames}.", param_hint="'--n-frames'"
        )
    require_positive(steps=steps)
    for index, path, name in ((index_a, a_file, "a"), (index_b, b_file, "b")):
        if index is not None and path is not None:
            raise click.UsageError(f"give --{name} or --{name}-file, not both.")
    use_backend(backend)
    runs = importlib.import_module("scoregen_keras.runs")
    tasks = importlib.import_module("scoregen_keras.runs")
    try:
        config = tasks.run_config(run_dir)
        tasks.require_sde(config, "interpolation")
        examples = None
        if a_file is None or b_file is None:
            examples = tasks.training_examples(config)
            index_a, index_b = tasks.pick_indices(len(examples), index_a, index_b, seed)
        x_a = tasks.pick_example(config, examples, None if a_file else index_a, a_file)
        x_b = tasks.pick_example(config, examples, None if b_file else index_b, b_file)
        run = runs.load_run(run_dir)
        label = f"{'file' if a_file else index_a}-{'file' if b_file else index_b}"
        stem = runs.output_stem(out if out else run.paths.samples / f"interpolate-{label}")
        result = tasks.interpolate_examples(run, x_a, x_b, n_frames, steps=steps)
        npz, png = tasks.save_interpolation(stem, result, run.config, examples)
    except runs.RunError as error:
        raise click.ClickException(str(error)) from error
    summary = {
        **run_summary(run, backend),
        "a": a_file or index_a,
        "b": b_file or index_b,
        "n_frames": n_frames,
        "nfe": result.nfe,
        "seconds": round(result.seconds, 3),
        "npz": str(npz),
        "png": str(png),
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"{n_frames} frames from {summary['a']} to {summary['b']} with {run.checkpoint} "
        f"(step {run.step}, NFE {result.nfe})"
    )
    click.echo(f"frames: {npz}  (key 'x', original data scale)")
    click.echo(f"plot:   {png}")
