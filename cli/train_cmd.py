"""`scoregen train`: train a score model into a run folder (thin over scoregen_keras.runs).

The configuration is settled (preset, --config file, options) before a backend is chosen: the
presets are plain Python, so a bad setting costs no backend start.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from cli.environment import use_backend
from cli.options import (
    Decorator,
    backend_option,
    choice_option,
    json_option,
    progress_option,
)
from cli.output import library_errors, report
from scoregen_keras import choices

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
DEFAULT_RUNS_DIR = "runs"
FROM_PRESET = "from the preset"


def setting_option(flag: str, help: str, **settings: Any) -> Decorator:
    """An option that overrides one setting of the preset (None: the preset's value)."""
    settings.setdefault("show_default", FROM_PRESET)
    return click.option(flag, default=None, help=help, **settings)


def _parse_toml(text: bytes) -> Any:
    """Parse TOML with the standard library's tomllib (Python 3.11+)."""
    try:
        import tomllib
    except ImportError as error:  # Python 3.10
        raise click.ClickException("TOML config files need Python 3.11; use JSON.") from error
    return tomllib.loads(text.decode())


def read_config_file(path: str) -> dict[str, Any]:
    """Configuration overrides from a TOML (.toml) or JSON file, as a flat dict."""
    file = Path(path)
    try:
        text = file.read_bytes()
    except OSError as error:
        raise click.ClickException(f"cannot read config file {path} ({error.strerror}).") from error
    try:
        values = _parse_toml(text) if file.suffix == ".toml" else json.loads(text)
    except (ValueError, UnicodeDecodeError) as error:  # TOMLDecodeError, JSONDecodeError
        kind = "TOML" if file.suffix == ".toml" else "JSON"
        first = str(error).splitlines()[0]
        raise click.ClickException(f"config file {path} is not valid {kind} ({first}).") from error
    if not isinstance(values, dict):
        raise click.ClickException(f"config file {path} must hold a table / object of settings.")
    return values


def _default_out(preset: str) -> Path:
    """runs/PRESET-YYYYmmdd-HHMMSS."""
    return Path(DEFAULT_RUNS_DIR) / f"{preset}-{time.strftime('%Y%m%d-%H%M%S')}"


def _lines(result: Any) -> Iterator[str]:
    """Tell the user where everything is."""
    yield f"run folder:   {result.run_dir}  ({result.status}, step {result.step})"
    yield f"config:       {result.config}"
    yield f"checkpoint:   {result.checkpoint}"
    yield f"metrics:      {result.metrics}"
    if result.sample_plot is not None:
        yield f"sample plot:  {result.sample_plot}"
    if result.final_loss is not None:
        yield f"final loss:   {result.final_loss:.4g}  ({result.seconds:.1f} s of training)"
    yield f"next:         scoregen sample {result.run_dir}"


@click.command("train")
@backend_option
@choice_option(
    "--preset",
    names=choices.PRESETS,
    default=None,
    show_default=choices.DEFAULT_PRESET,
    metavar="PRESET",
    help="Named configuration (list them with `scoregen presets`).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML or JSON file of settings (keys as in a run's config.json).",
)
@setting_option("--dataset", "Data set name, npz:PATH, npy:PATH or a folder.")
@setting_option(
    "--model",
    f"Network: a family or family/configuration, one of {', '.join(choices.NETWORKS)}.",
    type=click.Choice(choices.NETWORKS),
    metavar="NETWORK",
)
@setting_option("--sde", "Noise process.", type=click.Choice(choices.SDES))
@setting_option("--loss", "Score-matching loss.", type=click.Choice(choices.LOSSES))
@setting_option("--steps", "Total optimizer steps.", type=int)
@setting_option("--batch-size", "Examples per step.", type=int)
@setting_option("--lr", "Peak learning rate (after warm-up).", type=float)
@setting_option("--ema", "EMA rate of the weights, in [0, 1).", type=float)
@setting_option("--seed", "Seed of data, weights and noise.", type=int)
@setting_option(
    "--distribute",
    "data-parallel: split each global batch over devices (JAX, TensorFlow).",
    type=click.Choice(choices.DISTRIBUTE_MODES),
    show_default=choices.DISTRIBUTE_MODES[0],
)
@setting_option(
    "--devices",
    "Devices for --distribute data-parallel.",
    type=click.IntRange(min=1),
    show_default="all",
)
@setting_option(
    "--precision",
    "Network precision (sigma, time embeddings, SDE and loss stay float32).",
    type=click.Choice(choices.PRECISIONS),
    show_default=choices.PRECISIONS[0],
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    show_default="runs/PRESET-TIMESTAMP",
    help="Run folder to create (or to continue with --resume).",
)
@click.option(
    "--resume", is_flag=True, default=False, help="Continue the run in --out from its latest."
)
@progress_option
@json_option
def train(
    backend: str,
    preset: str | None,
    config_file: str | None,
    out: str | None,
    resume: bool,
    progress: bool,
    as_json: bool,
    **settings: Any,
) -> None:
    """Train a score model; with no options, the toy 2-D mixture (5 minutes on 2 CPU cores).

    Settings are applied in order: the preset, then the --config file, then the options.

    \b
    Example:
      scoregen train --preset digits --steps 2000 --out runs/digits
      scoregen train --preset digits --distribute data-parallel --devices 4
      scoregen train --precision mixed_bfloat16
    """
    file_values = read_config_file(config_file) if config_file else {}
    preset = preset or file_values.pop("preset", None) or choices.DEFAULT_PRESET
    file_values.pop("preset", None)
    overrides = {**file_values, **{k: v for k, v in settings.items() if v is not None}}
    distribute = overrides.get("distribute", choices.DISTRIBUTE_MODES[0])
    if resume and out is None:
        raise click.UsageError("--resume needs --out RUN_DIR, the run to continue.")
    if settings["devices"] is not None and distribute == choices.DISTRIBUTE_MODES[0]:
        raise click.UsageError("--devices needs --distribute data-parallel.")
    from scoregen_keras.training import check_support, resolve_config

    with library_errors():
        config = overrides if resume else resolve_config(preset, overrides)
        check_support(distribute, backend)
    use_backend(backend)
    from scoregen_keras import runs

    run_dir = Path(out) if out else _default_out(preset)
    log = (lambda message: None) if as_json else (lambda message: click.echo(message, err=True))
    if not as_json:
        click.echo(f"training {preset if not resume else 'resumed run'} on {backend} -> {run_dir}")
    try:
        with library_errors():
            result = runs.train_run(config, run_dir, resume=resume, progress=progress, log=log)
    except KeyboardInterrupt:
        click.echo(
            f"Interrupted before a checkpoint was saved; {run_dir} is not complete.", err=True
        )
        sys.exit(EXIT_INTERRUPTED)
    report(result.to_json(), as_json, _lines(result))
    if result.status == runs.STATUS_INTERRUPTED:
        click.echo(
            f"Interrupted: checkpoint saved at step {result.step}; continue with "
            f"`scoregen train --resume --out {run_dir}`.",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
