"""`scoregen evaluate RUN_DIR`: sample a run and score the samples against its data."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import click

from cli.options import (
    backend_option,
    json_option,
    progress_option,
    require_positive,
    sample_batch_option,
    sampler_option,
)
from cli.train_cmd import use_backend

DEFAULT_N = 1_000
DEFAULT_PAIRS = 5
DEFAULT_NLL_POINTS = 200
METRICS_FILE = "metrics.json"


def _cell(entry: dict[str, Any], key: str, spread: str) -> str:
    """'value ± spread' for one table cell, or '-' when the metric has no such figure."""
    if key not in entry:
        return "-"
    text = f"{entry[key]:.4g}"
    return f"{text} ± {entry[spread]:.2g}" if spread in entry else text


def format_table(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """One line per metric: value (± spread over reference halves) and the real-vs-real floor."""
    lines = [f"{'metric':<26}{'value':>22}{'floor (real vs real)':>24}"]
    lines.append("-" * len(lines[0]))
    for name, entry in metrics.items():
        spread = "value_std" if "value_std" in entry else "std_error"
        value = _cell(entry, "value", spread)
        lines.append(f"{name:<26}{value:>22}{_cell(entry, 'floor_mean', 'floor_std'):>24}")
    return lines


@click.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--n", type=int, default=DEFAULT_N, show_default=True, help="Number of samples.")
@sample_batch_option
@sampler_option
@click.option(
    "--steps",
    type=int,
    default=None,
    show_default="sampler default",
    help="Sampler steps (ald: steps per noise level, else the run's ald_steps_each; ode: fixed "
    "Heun steps, else RK45).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of sampler and splits.")
@click.option(
    "--pairs",
    "n_pairs",
    type=int,
    default=DEFAULT_PAIRS,
    show_default=True,
    help="Random splits of the data into halves for the real-vs-real floor.",
)
@click.option(
    "--n-nll",
    type=int,
    default=DEFAULT_NLL_POINTS,
    show_default=True,
    help="Data points for the model-vs-exact NLL gap (exact mixtures only; 0 skips it).",
)
@click.option(
    "--data",
    "data_spec",
    default=None,
    show_default="the run's data set",
    help="Data set to compare with, as for train (e.g. digits:held-out for a run trained on "
    "digits:train, or npz:PATH of held-out examples).",
)
@click.option(
    "--inception-weights",
    type=click.Path(dir_okay=False),
    default=None,
    show_default="$SCOREGEN_INCEPTION_WEIGHTS, else download",
    help="Local InceptionV3 'notop' .h5 weights for images other than 8x8 digits.",
)
@backend_option
@progress_option
@json_option
def evaluate(
    run_dir: str,
    n: int,
    batch_size: int,
    sampler: str | None,
    steps: int | None,
    seed: int,
    n_pairs: int,
    n_nll: int,
    data_spec: str | None,
    inception_weights: str | None,
    backend: str,
    progress: bool,
    as_json: bool,
) -> None:
    """Sample a run, compare the samples with its data, write RUN_DIR/metrics.json.

    Every metric is printed beside its floor: the same metric between two random halves of
    the real data (mean ± std over --pairs splits). --data compares with other data than the
    run's, such as the held-out part of a split data set.

    \b
    Example:
      scoregen evaluate runs/toy --n 2000 --sampler ode
      scoregen evaluate runs/digits --data digits:held-out
    """
    for name, value, low in (("--n", n, 2), ("--pairs", n_pairs, 1), ("--n-nll", n_nll, 0)):
        if value < low:
            raise click.BadParameter(f"must be at least {low}, got {value}.", param_hint=name)
    require_positive(batch_size=batch_size, steps=steps)
    use_backend(backend)
    runs = importlib.import_module("scoregen_keras.runs")
    data = importlib.import_module("scoregen_keras.data")
    features = importlib.import_module("scoregen_keras.networks.features")
    evaluation = importlib.import_module("scoregen_keras.runs.evaluate")
    try:
        run = runs.load_run(run_dir)
        sampler = sampler or runs.default_sampler(run.config)
        result = evaluation.evaluate_run(
            run,
            n,
            sampler=sampler,
            seed=seed,
            steps=steps,
            n_pairs=n_pairs,
            n_nll=n_nll,
            inception_weights=inception_weights,
            progress=progress and not as_json,
            against=data_spec,
            batch_size=batch_size,
        )
    except (runs.RunError, data.DataError, features.FeatureError) as error:
        raise click.ClickException(runs.one_line(error)) from error
    path = Path(run.paths.root) / METRICS_FILE
    try:
        runs.write_json_atomic(path, result)
    except OSError as error:
        raise click.ClickException(f"cannot write {path} ({runs.one_line(error)}).") from error
    result["metrics_file"] = str(path)
    if as_json:
        click.echo(json.dumps(result))
        return
    click.echo(
        f"{n} samples from {run.checkpoint} (step {run.step}, {sampler}, NFE {result['nfe']}) "
        f"against {result['against']}"
    )
    for line in format_table(result["metrics"]):
        click.echo(line)
    click.echo(f"metrics: {path}")
