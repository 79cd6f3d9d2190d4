"""`scoregen datasets` and `scoregen presets`: one line per built-in data set or preset;
`scoregen info RUN_DIR`: what a run folder holds and, for an imported model, where it came from.

The listings read keras-free parts of the library and start no backend; `info` reads the run's
JSON files only, through scoregen_keras.runs (which starts the backend).
"""

from __future__ import annotations

from typing import Any

import click

from cli.environment import use_backend
from cli.options import json_option, run_dir_argument, run_options
from cli.output import library_errors, report


def _table(rows: dict[str, str]) -> list[str]:
    """`name  description` lines with aligned names."""
    width = max(len(name) for name in rows)
    return [f"{name.ljust(width)}  {description}" for name, description in rows.items()]


@click.command("datasets")
@json_option
def datasets(as_json: bool) -> None:
    """List the built-in data sets and data sources, one line each.

    \b
    Example:
      scoregen datasets
    """
    from scoregen_keras.data import dataset_names

    rows = dataset_names()
    report(rows, as_json, _table(rows))


@click.command("presets")
@json_option
def presets(as_json: bool) -> None:
    """List the named training configurations, one line each (the default is marked).

    \b
    Example:
      scoregen presets
    """
    from scoregen_keras.choices import DEFAULT_PRESET
    from scoregen_keras.training import PRESETS

    rows = {
        name: ("(default) " if name == DEFAULT_PRESET else "") + preset["description"]
        for name, preset in PRESETS.items()
    }
    report(rows, as_json, _table(rows))


@click.command("info")
@run_dir_argument
@run_options(progress=False)
def info(run_dir: str, backend: str, as_json: bool) -> None:
    """Show a run folder's configuration and status; for an imported model also its source file,
    sha256 and the weights chosen.

    \b
    Example:
      scoregen info runs/celebahq
    """
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        summary = runs.run_info(run_dir)
    report(summary, as_json, _info_lines(summary))


def _info_lines(summary: dict[str, Any]) -> list[str]:
    """`name  value` lines of a run's summary, the nested ones flattened."""
    rows: dict[str, str] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            rows.update({f"{key}.{name}": str(item) for name, item in value.items()})
        else:
            rows[key] = str(value)
    return _table(rows)
