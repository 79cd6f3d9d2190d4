"""What a command says: its result as human lines or one JSON object, and the library's errors
as one line on stderr (exit 1; Click's usage errors exit 2, the group prints both)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from cli.environment import backend_started


def _keras_free_errors() -> tuple[type[Exception], ...]:
    """The errors of the library's parts that run before a backend is chosen."""
    from scoregen_keras.data import DataError
    from scoregen_keras.training import ConfigError, DistributeError

    return ConfigError, DataError, DistributeError


def _backend_errors() -> tuple[type[Exception], ...]:
    """The errors of the library's parts that run on keras (importing them imports keras)."""
    from scoregen_keras.networks.features import FeatureError
    from scoregen_keras.networks.fid_inception import FIDError
    from scoregen_keras.runs import RunError

    return FeatureError, FIDError, RunError


def library_error_types() -> tuple[type[Exception], ...]:
    """Every error the library raises with a one-sentence message for the user.

    Before keras is imported only the keras-free part can have raised one, and the others are
    not looked up: importing their modules would start a backend.
    """
    return _keras_free_errors() + (_backend_errors() if backend_started() else ())


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


@contextmanager
def library_errors() -> Iterator[None]:
    """Turn the library's one-sentence errors raised inside into a Click error (one line, exit 1).

    Any other exception passes on to the group's handler (one line naming its type, or the
    traceback with SCOREGEN_DEBUG).
    """
    try:
        yield
    except Exception as error:
        if not isinstance(error, library_error_types()):
            raise
        raise click.ClickException(first_line(error)) from error


def report(summary: dict[str, Any], as_json: bool, lines: Iterable[str]) -> None:
    """Print `summary` as one JSON object with --json, else the human `lines`."""
    if as_json:
        click.echo(json.dumps(summary))
        return
    for line in lines:
        click.echo(line)


def run_summary(run: Any, backend: str) -> dict[str, Any]:
    """The fields every run command reports: which run, checkpoint, step and backend."""
    return {
        "run_dir": str(run.paths.root),
        "checkpoint": str(run.checkpoint),
        "step": run.step,
        "backend": backend,
    }
