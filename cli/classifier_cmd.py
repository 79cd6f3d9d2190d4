"""`scoregen classifier RUN_DIR`: train the classifier that `scoregen sample --class` follows."""

from __future__ import annotations

import importlib
import json

import click

from cli.options import backend_option, json_option, progress_option, require_positive
from cli.train_cmd import use_backend

# scoregen_keras.classifier's defaults (keras is imported later)
DEFAULT_STEPS = 2_000
DEFAULT_BATCH_SIZE = 256


@click.command("classifier")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--steps", type=int, default=DEFAULT_STEPS, show_default=True, help="Adam steps of training."
)
@click.option(
    "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, show_default=True, help="Batch size."
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the weights, the batches, the noise and the held-out tenth.",
)
@backend_option
@progress_option
@json_option
def classifier(
    run_dir: str,
    steps: int,
    batch_size: int,
    seed: int,
    backend: str,
    progress: bool,
    as_json: bool,
) -> None:
    """Train a noise-conditional classifier p_t(class | x_t) on a run's labelled data, for
    class-guided sampling (`scoregen sample RUN_DIR --class NAME`).

    The classifier (an MLP) learns from the run's training data noised by its SDE (for a run
    of NCSN noise levels, the VE SDE through those levels), all but a held-out tenth on which
    its accuracy at several times t is reported. It is saved as
    RUN_DIR/classifier.keras with its report RUN_DIR/classifier.json, replacing any earlier one.
    Data with classes: digits, mnist, fashion_mnist, cifar10, the toy mixtures (one class per
    component), an .npz file with labels 'y', or a folder with one subfolder per class.

    \b
    Example:
      scoregen classifier runs/digits
      scoregen sample runs/digits --class 3 --n 64
    """
    require_positive(steps=steps, batch_size=batch_size)
    use_backend(backend)
    data = importlib.import_module("scoregen_keras.data")
    runs = importlib.import_module("scoregen_keras.runs")
    run_classifier = importlib.import_module("scoregen_keras.runs.classifier")
    try:
        run = runs.load_run(run_dir)
        result = run_classifier.train_run_classifier(
            run, steps, batch_size, seed, progress=progress and not as_json
        )
    except (runs.RunError, data.DataError) as error:
        raise click.ClickException(str(error)) from error
    report = result.report
    if as_json:
        summary = {
            "run_dir": str(run.paths.root),
            "classifier": str(result.path),
            "report": str(result.report_path),
            **report,
        }
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"classifier of {len(report['classes'])} classes trained on {report['n_train']} "
        f"examples of {report['data']} ({steps} steps, {report['seconds']:.0f} s)"
    )
    click.echo(f"accuracy on the {report['n_held_out']} held-out examples, noised to time t:")
    click.echo(f"  {'t':>8}  {'noise std':>10}  accuracy")
    for row in report["accuracy"]:
        click.echo(f"  {row['t']:8.3g}  {row['std']:10.3g}  {row['accuracy']:.3f}")
    click.echo(f"  (the commonest class alone: {report['majority_fraction']:.3f})")
    click.echo(f"classifier: {result.path}")
    click.echo(f"report:     {result.report_path}")
