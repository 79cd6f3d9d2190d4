"""`scoregen datasets` and `scoregen presets`: one line per built-in data set or preset."""

from __future__ import annotations

import importlib
import json

import click


def _print_table(rows: dict[str, str], as_json: bool) -> None:
    """Print `name  description` lines with aligned names, or one JSON object."""
    if as_json:
        click.echo(json.dumps(rows))
        return
    width = max(len(name) for name in rows)
    for name, description in rows.items():
        click.echo(f"{name.ljust(width)}  {description}")


@click.command("datasets")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object.")
def datasets(as_json: bool) -> None:
    """List the built-in data sets and data sources, one line each.

    \b
    Example:
      scoregen datasets
    """
    data = importlib.import_module("scoregen_keras.data")
    _print_table(data.dataset_names(), as_json)


@click.command("presets")
@click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object.")
def presets(as_json: bool) -> None:
    """List the named training configurations, one line each (the default is marked).

    \b
    Example:
      scoregen presets
    """
    module = importlib.import_module("scoregen_keras.training.presets")
    rows = {
        name: ("(default) " if name == module.DEFAULT_PRESET else "") + preset["description"]
        for name, preset in module.PRESETS.items()
    }
    _print_table(rows, as_json)
