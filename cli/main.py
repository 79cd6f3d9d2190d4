"""Entry point of the `scoregen` console script: the top-level Click group `main`."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from cli import __version__
from cli.classifier_cmd import classifier
from cli.colorize_cmd import colorize
from cli.environment import DEBUG_ENV
from cli.evaluate_cmd import evaluate
from cli.fid_cmd import fid
from cli.import_cmd import import_group
from cli.info_cmd import datasets, info, presets
from cli.inpaint_cmd import inpaint
from cli.interpolate_cmd import interpolate
from cli.likelihood_cmd import likelihood
from cli.reference_cmd import reference
from cli.sample_cmd import sample
from cli.train_cmd import train

EXIT_FAILURE = 1
COMMANDS = (
    reference,
    train,
    sample,
    datasets,
    presets,
    likelihood,
    inpaint,
    colorize,
    interpolate,
    evaluate,
    fid,
    classifier,
    import_group,
    info,
)
"""Every command of `scoregen`: a new one is its module, imported above, and its name here."""


def _fail(message: str, exit_code: int = EXIT_FAILURE) -> None:
    """Print one 'Error: …' line on stderr and exit with `exit_code`."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(exit_code)


class ScoregenGroup(click.Group):
    """A Click group that reports every failure as one line on stderr, never a traceback."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the command; in standalone mode turn errors into one-line messages and exit codes."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:
            error.show()  # shows the help text, as Click does for a bare group
            sys.exit(error.exit_code)
        except click.ClickException as error:
            _fail(error.format_message(), error.exit_code)
        except click.Abort:
            _fail("aborted.")
        except Exception as error:  # top-level handler: one line unless debugging
            if os.environ.get(DEBUG_ENV):
                raise
            _fail(f"{error} ({type(error).__name__}; set {DEBUG_ENV}=1 for the traceback)")
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=ScoregenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, message="%(prog)s %(version)s")
def main() -> None:
    """scoregen: score-based generative modelling (NCSN, score SDEs) in NumPy and Keras 3.

    \b
    Example:
      scoregen reference sample --dist mixture5 --sampler pc --out runs/demo
    """


for command in COMMANDS:
    main.add_command(command)

if __name__ == "__main__":
    main()
