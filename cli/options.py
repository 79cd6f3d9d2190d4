"""Options and checks shared by the commands that work on a run folder."""

from __future__ import annotations

from typing import Any

import click

from cli.train_cmd import BACKENDS, default_backend

backend_option = click.option(
    "--backend",
    type=str,
    default=default_backend,
    show_default="$KERAS_BACKEND, else tensorflow",
    help=f"Keras backend: {', '.join(BACKENDS)}.",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, default=False, help="Print one JSON object."
)
progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)

# adaptive probability-flow ODE solvers: SciPy's RK45 on the host, the same RK45 compiled
ODE_SOLVERS = ("RK45", "dopri5")  # scoregen_keras.runs.ODE_SOLVERS (keras is imported later)
ode_solver_option = click.option(
    "--ode-solver",
    type=click.Choice(ODE_SOLVERS),
    default=ODE_SOLVERS[0],
    show_default=True,
    help="Adaptive ODE solver: RK45 by SciPy on the host, one round trip per evaluation, or "
    "dopri5, the same RK45 compiled on the backend (same steps).",
)

SAMPLERS = ("pc", "ald", "ode", "heun", "dpm-solver")  # scoregen_keras.runs.SAMPLERS
sampler_option = click.option(
    "--sampler",
    type=click.Choice(SAMPLERS),
    default=None,
    show_default="pc; ald for a run of NCSN noise levels",
    help="pc (predictor-corrector), ald (annealed Langevin, NCSN runs), ode, heun, dpm-solver.",
)

DEFAULT_SNR = 0.16  # score SDE paper, VE on CIFAR-10 (scoregen_keras.run_tasks.SNR_DEFAULT)
NCSN_STEPS_EACH = 100  # annealed Langevin's default steps per noise level (NCSN paper)
# inpaint / colorize: predictor-corrector with replacement, annealed Langevin for NCSN levels
replacement_steps_option = click.option(
    "--steps",
    type=int,
    default=None,
    show_default=f"the SDE's N; NCSN levels: the run's ald_steps_each, else {NCSN_STEPS_EACH}",
    help="Predictor-corrector steps (a run of NCSN noise levels: Langevin steps per level).",
)
replacement_snr_option = click.option(
    "--snr",
    type=float,
    default=DEFAULT_SNR,
    show_default=True,
    help="PC corrector (not used by a run of NCSN noise levels).",
)

NCSN_STEP_LR = 2e-5  # annealed Langevin's default step size (NCSN paper)
step_lr_option = click.option(
    "--step-lr",
    type=float,
    default=None,
    show_default=f"the run's ald_step_lr, else {NCSN_STEP_LR:g}",
    help="Annealed Langevin step size eps, alpha_i = eps sigma_i^2 / sigma_L^2 (runs of NCSN "
    "noise levels only).",
)

# as many as the default --n: a default run draws in one batch, as draw_samples does by default
DEFAULT_SAMPLE_BATCH = 1_000
sample_batch_option = click.option(
    "--batch-size",
    type=int,
    default=DEFAULT_SAMPLE_BATCH,
    show_default=True,
    help="Samples drawn at once; lower it when memory runs out (the samples depend on it).",
)


def require_positive(**options: float | None) -> None:
    """Reject any given option value that is not positive (None means "not given")."""
    for name, value in options.items():
        if value is not None and value <= 0:
            flag = "--" + name.replace("_", "-")
            raise click.BadParameter(f"must be positive, got {value}.", param_hint=f"'{flag}'")


def run_summary(run: Any, backend: str) -> dict[str, Any]:
    """The fields every run command reports: which run, checkpoint, step and backend."""
    return {
        "run_dir": str(run.paths.root),
        "checkpoint": str(run.checkpoint),
        "step": run.step,
        "backend": backend,
    }
