"""`scoregen evaluate RUN_DIR`: sample a run and score the samples against its data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from cli.environment import use_backend
from cli.options import (
    count_option,
    fid_weights_option,
    input_file_option,
    noise_option,
    require_at_least,
    require_positive,
    run_dir_argument,
    run_options,
    sample_batch_option,
    sampler_option,
    sampler_steps_option,
    seed_option,
    seeds_option,
)
from cli.output import library_errors, report

DEFAULT_N = 1_000
DEFAULT_PAIRS = 5  # scoregen_keras.runs.DEFAULT_PAIRS
DEFAULT_NLL_POINTS = 200  # scoregen_keras.runs.DEFAULT_NLL_POINTS
METRICS_FILE = "metrics.json"
MIN_SAMPLES, MIN_PAIRS, MIN_NLL_POINTS = 2, 1, 0


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
@run_dir_argument
@count_option(
    "--n",
    None,
    "Number of samples, of the seeds --seed .. --seed + N - 1.",
    show_default=str(DEFAULT_N),
)
@sample_batch_option
@sampler_option
@sampler_steps_option(adaptive_ode="RK45")
@seed_option("Seed of the first sample (without --seeds), of the splits and the metrics.")
@seeds_option
@noise_option
@count_option(
    "--pairs", DEFAULT_PAIRS, "Random splits of the data into halves for the real-vs-real floor."
)
@count_option(
    "--n-nll",
    DEFAULT_NLL_POINTS,
    "Data points for the model-vs-exact NLL gap (exact mixtures only; 0 skips it).",
)
@click.option(
    "--data",
    "data_spec",
    default=None,
    show_default="the run's data set",
    help="Data set to compare with, as for train (e.g. digits:held-out for a run trained on "
    "digits:train, or npz:PATH of held-out examples).",
)
@input_file_option(
    "--imagenet-weights",
    "Local keras.applications InceptionV3 'notop' .h5 ImageNet weights, the feature space of "
    "fd_inception_imagenet and kid_inception_imagenet (images other than 8x8 digits).",
    show_default="$SCOREGEN_IMAGENET_INCEPTION_WEIGHTS, else download",
)
@input_file_option(
    "--fid-stats",
    "Report the standard FID of the samples against this statistics file (pytorch-fid's .npz, "
    "e.g. written by scoregen fid --save-stats), in place of the metrics against --data.",
)
@fid_weights_option
@run_options()
def evaluate(
    run_dir: str,
    n: int | None,
    batch_size: int,
    sampler: str | None,
    steps: int | None,
    seed: int,
    seeds: Any,
    noise: str,
    pairs: int,
    n_nll: int,
    data_spec: str | None,
    imagenet_weights_path: str | None,
    fid_stats_path: str | None,
    inception_weights_path: str | None,
    backend: str,
    progress: bool,
    as_json: bool,
) -> None:
    """Sample a run, compare the samples with its data, write RUN_DIR/metrics.json.

    Every metric is printed beside its floor: the same metric between two random halves of
    the real data (mean ± std over --pairs splits). --data compares with other data than the
    run's, such as the held-out part of a split data set.

    --fid-stats reports the standard FID instead (pytorch-fid's network and formula; samples
    quantised to 8 bits as PNGs), streamed in batches: with --n 50000 and the statistics of
    CIFAR-10's train set it is the figure the papers report.

    \b
    Example:
      scoregen evaluate runs/toy --n 2000 --sampler ode
      scoregen evaluate runs/digits --data digits:held-out
      scoregen evaluate runs/cifar10 --n 50000 --fid-stats cifar10_train_stats.npz
    """
    if seeds is not None and n is not None:
        raise click.UsageError("give the samples by --seeds or by --n, not both.")
    n = len(seeds) if seeds is not None else DEFAULT_N if n is None else n
    for flag, value, low in (
        ("--n" if seeds is None else "--seeds", n, MIN_SAMPLES),
        ("--pairs", pairs, MIN_PAIRS),
        ("--n-nll", n_nll, MIN_NLL_POINTS),
    ):
        require_at_least(flag, value, low)
    require_positive(batch_size=batch_size, steps=steps)
    if fid_stats_path is not None and data_spec is not None:
        raise click.UsageError("--fid-stats compares with its statistics file; drop --data.")
    if inception_weights_path is not None and fid_stats_path is None:
        raise click.UsageError(
            "--inception-weights are the FID network's, used with --fid-stats; the ImageNet "
            "InceptionV3 of fd_inception_imagenet takes --imagenet-weights."
        )
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        run = runs.load_run(run_dir)
        sampler = sampler or runs.default_sampler(run.config)
        result = runs.evaluate_run(
            run,
            n,
            sampler=sampler,
            seed=seed,
            steps=steps,
            n_pairs=pairs,
            n_nll=n_nll,
            imagenet_weights=imagenet_weights_path,
            progress=progress and not as_json,
            against=data_spec,
            batch_size=batch_size,
            fid_statistics=fid_stats_path,
            fid_weights=inception_weights_path,
            seeds=seeds,
            noise=noise,
        )
    path = Path(run.paths.root) / METRICS_FILE
    try:
        runs.write_json_atomic(path, result)
    except OSError as error:
        raise click.ClickException(f"cannot write {path} ({runs.one_line(error)}).") from error
    result["metrics_file"] = str(path)
    report(result, as_json, _lines(result, run, sampler, n))


def _lines(result: dict[str, Any], run: Any, sampler: str, n: int) -> Iterator[str]:
    """What `scoregen evaluate` prints: the draw, the table of metrics, the metrics file."""
    yield (
        f"{n} samples from {run.checkpoint} (step {run.step}, {sampler}, NFE {result['nfe']}) "
        f"against {result['against']}"
    )
    yield from format_table(result["metrics"])
    yield f"metrics: {result['metrics_file']}"
