"""`scoregen datasets` and `scoregen presets`: one line per built-in data set or preset.

Both read keras-free parts of the library: listing them starts no backend.
"""

from __future__ import annotations

import click

from cli.options import json_option
from cli.output import report


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
