"""Options shared by the commands, each defined once, and the checks Click does not make.

Every `click.Choice` offers a tuple of `scoregen_keras.choices` (keras-free), so an option lists
exactly the names the library accepts (tests/test_choices.py checks every option). Defaults that
the library sets and --help must show before keras is imported are restated here;
tests/cli/test_sample_cli.py checks them against the library.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from cli import environment
from scoregen_keras import choices

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

DEFAULT_SNR = 0.16  # score SDE paper, VE on CIFAR-10 (scoregen_keras.runs.SNR_DEFAULT)
NCSN_STEPS_EACH = 100  # annealed Langevin's default steps per noise level (NCSN paper)
NCSN_STEP_LR = 2e-5  # annealed Langevin's default step size (NCSN paper)
DEFAULT_SAMPLE_BATCH = 1_000
"""As many as the default --n: a default run draws in one batch, as draw_samples does."""


def run_setting(default: object) -> str:
    """--help's default of a sampler setting a run may fix (an imported model: the original's)."""
    return f"the run's, else {default}"


def compose(*decorators: Decorator) -> Decorator:
    """One decorator applying `decorators` in the order written above a function."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def choice_option(
    *flags: str, names: tuple[str, ...], default: str | None, help: str, **settings: Any
) -> Decorator:
    """An option whose values are `names`: a tuple of scoregen_keras.choices or, under `scoregen
    reference`, the names of a registry of `reference`; its default shows in --help."""
    settings.setdefault("show_default", default is not None)
    return click.option(*flags, type=click.Choice(names), default=default, help=help, **settings)


def count_option(flag: str, default: int | None, help: str, **settings: Any) -> Decorator:
    """An integer option such as --n or --steps (checked by `require_positive`)."""
    settings.setdefault("show_default", default is not None)
    return click.option(flag, type=int, default=default, help=help, **settings)


def seed_option(help: str) -> Decorator:
    """--seed, 0 by default."""
    return count_option("--seed", 0, help)


def out_option(
    help: str, show_default: str | None = None, folder: bool = False, **path: Any
) -> Decorator:
    """--out: where the command writes (a file stem, or a folder); `path`: click.Path's settings."""
    kind = click.Path(file_okay=False, **path) if folder else click.Path(dir_okay=False, **path)
    return click.option("--out", type=kind, default=None, show_default=show_default, help=help)


def input_file_option(flag: str, help: str, **settings: Any) -> Decorator:
    """An input file, passed to the command as `<name>_path` (--image -> image_path)."""
    name = flag.removeprefix("--").replace("-", "_") + "_path"
    path = click.Path(dir_okay=False)
    return click.option(flag, name, type=path, default=None, help=help, **settings)


run_dir_argument = click.argument("run_dir", type=click.Path())
DEFAULT_FID_BATCH = 50  # pytorch-fid's --batch-size (scoregen_keras.runs.DEFAULT_BATCH_SIZE)
fid_weights_option = input_file_option(
    "--inception-weights",
    "The FID Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or the .npz "
    "`scoregen fid convert-weights` writes from it (no PyTorch needed).",
    show_default="$SCOREGEN_FID_WEIGHTS, else the cache folder, else downloaded there",
)
backend_option = choice_option(
    "--backend",
    names=choices.BACKENDS,
    default=environment.default_backend,
    show_default="$KERAS_BACKEND, else tensorflow",
    help="Keras backend.",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, default=False, help="Print one JSON object."
)
progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)


def run_options(progress: bool = True) -> Decorator:
    """The options that close every run command: --backend, --progress, --json."""
    return compose(backend_option, *([progress_option] if progress else []), json_option)


ode_solver_option = choice_option(
    "--ode-solver",
    names=choices.ODE_SOLVERS,
    default=choices.ODE_SOLVERS[0],
    help="Adaptive ODE solver: RK45 by SciPy on the host, one round trip per evaluation, or "
    "dopri5, the same RK45 compiled on the backend (same steps).",
)
sampler_option = choice_option(
    "--sampler",
    names=choices.SAMPLERS,
    default=None,
    show_default="pc; ald for a run of NCSN noise levels",
    help="pc (predictor-corrector), ald (annealed Langevin, NCSN runs), ode, heun, dpm-solver.",
)


def sampler_steps_option(adaptive_ode: str) -> Decorator:
    """--steps of `--sampler`; `adaptive_ode` names what ode runs without it."""
    return count_option(
        "--steps",
        None,
        "Sampler steps (ald: steps per noise level, else the run's ald_steps_each; ode: fixed "
        f"Heun steps, else {adaptive_ode}).",
        show_default="sampler default",
    )


sample_batch_option = count_option(
    "--batch-size",
    DEFAULT_SAMPLE_BATCH,
    "Samples drawn at once; lower it when memory runs out (the samples depend on it).",
)
step_lr_option = click.option(
    "--step-lr",
    type=float,
    default=None,
    show_default=f"the run's ald_step_lr, else {NCSN_STEP_LR:g}",
    help="Annealed Langevin step size eps, alpha_i = eps sigma_i^2 / sigma_L^2 (runs of NCSN "
    "noise levels only).",
)
# inpaint / colorize: predictor-corrector with replacement, annealed Langevin for NCSN levels
replacement_options = compose(
    count_option(
        "--steps",
        None,
        "Predictor-corrector steps (a run of NCSN noise levels: Langevin steps per level).",
        show_default=f"the SDE's N; NCSN levels: the run's ald_steps_each, else {NCSN_STEPS_EACH}",
    ),
    click.option(
        "--snr",
        type=float,
        default=None,
        show_default=run_setting(DEFAULT_SNR),
        help="PC corrector (not used by a run of NCSN noise levels).",
    ),
    step_lr_option,
)


def require_positive(**options: float | None) -> None:
    """Reject any given option value that is not positive (None means "not given")."""
    for name, value in options.items():
        if value is not None and value <= 0:
            flag = "--" + name.replace("_", "-")
            raise click.BadParameter(f"must be positive, got {value}.", param_hint=f"'{flag}'")


def require_at_least(flag: str, value: int, low: int) -> None:
    """Reject an option value below `low`."""
    if value < low:
        raise click.BadParameter(f"must be at least {low}, got {value}.", param_hint=f"'{flag}'")
