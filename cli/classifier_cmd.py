"""`scoregen classifier RUN_DIR`: train the classifier that `scoregen sample --class` follows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from cli.environment import use_backend
from cli.options import count_option, require_positive, run_dir_argument, run_options, seed_option
from cli.output import library_errors, report

DEFAULT_STEPS = 2_000  # scoregen_keras.training.DEFAULT_STEPS of the classifier
DEFAULT_BATCH_SIZE = 256  # scoregen_keras.training.DEFAULT_BATCH_SIZE of the classifier


@click.command("classifier")
@run_dir_argument
@count_option("--steps", DEFAULT_STEPS, "Adam steps of training.")
@count_option("--batch-size", DEFAULT_BATCH_SIZE, "Batch size.")
@seed_option("Seed of the weights, the batches, the noise and the held-out tenth.")
@run_options()
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
    from scoregen_keras import runs

    with library_errors():
        run = runs.load_run(run_dir)
        result = runs.train_run_classifier(
            run, steps, batch_size, seed, progress=progress and not as_json
        )
    summary = {
        "run_dir": str(run.paths.root),
        "classifier": str(result.path),
        "report": str(result.report_path),
        **result.report,
    }
    report(summary, as_json, _lines(summary, steps))


def _lines(summary: dict[str, Any], steps: int) -> Iterator[str]:
    """What `scoregen classifier` prints: the training, the accuracy by noise level, the files."""
    yield (
        f"classifier of {len(summary['classes'])} classes trained on {summary['n_train']} "
        f"examples of {summary['data']} ({steps} steps, {summary['seconds']:.0f} s)"
    )
    yield f"accuracy on the {summary['n_held_out']} held-out examples, noised to time t:"
    yield f"  {'t':>8}  {'noise std':>10}  accuracy"
    for row in summary["accuracy"]:
        yield f"  {row['t']:8.3g}  {row['std']:10.3g}  {row['accuracy']:.3f}"
    yield f"  (the commonest class alone: {summary['majority_fraction']:.3f})"
    yield f"classifier: {summary['classifier']}"
    yield f"report:     {summary['report']}"
