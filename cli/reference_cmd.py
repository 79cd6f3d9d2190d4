"""`scoregen reference …`: run the pure NumPy reference (exact-score sampling, toy training)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from reference import samplers
from reference.datasets import EXACT_MIXTURES, TOY_SETS
from reference.metrics import compare_to_reference
from reference.models import MLPScore, noise_conditional_score
from reference.sde import VESDE, VPSDE, SubVPSDE, geometric_sigmas, ncsnv2_sigma_max
from reference.train import relative_score_error, train

SDES: dict[str, type] = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}
SAMPLERS = ("pc", "ald", "ode", "heun", "dpm-solver")
FIXED_STEP_ODE_METHODS = ("euler", "heun")
ODE_METHODS = ("RK45", "RK23", "DOP853", *FIXED_STEP_ODE_METHODS)
CHECKS_MODULE = "reference.checks"

ALD_LEVELS = 30
"""Default noise levels L of --sampler ald: ratio sigma_i/sigma_(i+1) ~ 1.34 over VE's 0.01..50.

(NCSN's L = 10 was chosen for sigma_1 = 1; over 0.01..50 it leaves 2-D samples too wide.)"""
ALD_STEPS_EACH = 100
"""NCSN's Langevin steps per noise level T."""


def _default_n_steps(fn: Callable[..., Any]) -> int:
    """The library default of a sampler's `n_steps` argument (so the CLI never duplicates it)."""
    return int(inspect.signature(fn).parameters["n_steps"].default)


DEFAULT_STEPS: dict[str, int] = {
    "pc": VESDE().N,
    "ald": ALD_LEVELS,
    "ode": _default_n_steps(samplers.ode_sample),
    "heun": _default_n_steps(samplers.edm_heun_sample),
    "dpm-solver": _default_n_steps(samplers.dpm_solver_pp_sample),
}

TRAIN_MODEL_COND = "log_sigma"
"""The MLP embeds log sigma: the VE noise scale spans four orders of magnitude."""
SIGMA_MAX_PROBE = 1000
"""Data points used to set sigma_max by NCSNv2's technique 1 (max pairwise distance)."""
RELATIVE_ERROR_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
RELATIVE_ERROR_POINTS = 2000
LOSS_WINDOW = 100
"""Number of final steps averaged into the reported training loss."""


# ------------------------------------------------------------------------------- validation


def _positive_int(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    """Click callback: accept None or an integer > 0."""
    if value is not None and value <= 0:
        raise click.BadParameter(f"must be a positive integer, got {value}.")
    return value


def _positive_float(
    ctx: click.Context, param: click.Parameter, value: float | None
) -> float | None:
    """Click callback: accept None or a number > 0."""
    if value is not None and not value > 0:
        raise click.BadParameter(f"must be a positive number, got {value}.")
    return value


def _writable_dir(directory: Path, param_hint: str) -> Path:
    """Create `directory` if needed and check it is writable, else raise click.BadParameter."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        reason = error.strerror or str(error)
        raise click.BadParameter(
            f"cannot create directory '{directory}' ({reason}).", param_hint=param_hint
        ) from error
    if not os.access(directory, os.W_OK | os.X_OK):
        raise click.BadParameter(f"directory '{directory}' is not writable.", param_hint=param_hint)
    return directory


def _jsonable(value: Any) -> Any:
    """Convert numpy scalars / arrays (also inside dicts and lists) to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def _format_value(value: Any) -> str:
    """Short human-readable form of a check value (floats to 4 significant digits)."""
    plain = _jsonable(value)
    if isinstance(plain, float):
        return f"{plain:.4g}"
    if isinstance(plain, list):
        return "[" + ", ".join(_format_value(v) for v in plain) + "]"
    if isinstance(plain, dict):
        return ", ".join(f"{k}={_format_value(v)}" for k, v in plain.items())
    return str(plain)


def _sample_checks(samples: np.ndarray, mixture: Any, rng: np.random.Generator) -> dict | None:
    """reference.checks.sample_checks(samples, mixture, rng) when that module exists, else None."""
    if importlib.util.find_spec(CHECKS_MODULE) is None:
        return None
    return importlib.import_module(CHECKS_MODULE).sample_checks(samples, mixture, rng)


# ------------------------------------------------------------------------------- commands


@click.group()
def reference() -> None:
    """Pure NumPy reference: exact-score sampling and toy training.

    \b
    Example:
      scoregen reference sample --dist mixture5 --sampler heun --out runs/heun
    """


def _run_sampler(
    sampler: str,
    mixture: Any,
    sde: Any,
    shape: tuple[int, int],
    rng: np.random.Generator,
    steps: int,
    options: dict[str, Any],
) -> tuple[np.ndarray, int]:
    """Call the library sampler named `sampler` with the mixture's exact score; (x, nfe)."""
    if sampler == "ald":
        if not hasattr(sde, "sigma_max"):
            raise click.UsageError("--sampler ald runs on VE noise levels; use --sde ve.")
        sigmas = geometric_sigmas(sde.sigma_max, sde.sigma_min, steps)
        return samplers.annealed_langevin(
            mixture.sigma_score_fn(), sigmas, shape, rng, n_steps_each=options["n_steps_each"]
        )
    score_fn = mixture.score_fn(sde)
    if sampler == "pc":
        return samplers.pc_sample(
            score_fn,
            sde,
            shape,
            rng,
            predictor=options["predictor"],
            corrector=options["corrector"],
            snr=options["snr"],
        )
    if sampler == "ode":
        return samplers.ode_sample(
            score_fn, sde, shape, rng, method=options["ode_method"], n_steps=steps
        )
    if sampler == "heun":
        return samplers.edm_heun_sample(score_fn, sde, shape, rng, n_steps=steps)
    return samplers.dpm_solver_pp_sample(score_fn, sde, shape, rng, n_steps=steps)


def _describe(sampler: str, sde_name: str, steps: int, options: dict[str, Any]) -> str:
    """One-line description of the sampler settings that matter, for printing and plot titles."""
    if sampler == "ald":
        return f"ald ({steps} noise levels x {options['n_steps_each']} Langevin steps)"
    if sampler == "pc":
        return (
            f"pc ({sde_name} SDE, {steps} steps, {options['predictor']} + {options['corrector']},"
            f" snr {options['snr']:g})"
        )
    if sampler == "ode" and options["ode_method"] not in FIXED_STEP_ODE_METHODS:
        return f"ode ({sde_name} SDE, adaptive {options['ode_method']})"
    detail = f"{options['ode_method']}, " if sampler == "ode" else ""
    return f"{sampler} ({sde_name} SDE, {detail}{steps} steps)"


@reference.command("sample")
@click.option(
    "--dist",
    type=click.Choice(sorted(EXACT_MIXTURES)),
    default="mixture5",
    show_default=True,
    help="Built-in distribution with an exact score.",
)
@click.option(
    "--sampler", type=click.Choice(SAMPLERS), default="pc", show_default=True, help="Sampler."
)
@click.option(
    "--sde",
    "sde_name",
    type=click.Choice(sorted(SDES)),
    default="ve",
    show_default=True,
    help="Forward SDE (ald always uses the VE noise levels).",
)
@click.option(
    "--steps",
    type=int,
    default=None,
    callback=_positive_int,
    show_default=", ".join(f"{name} {n}" for name, n in DEFAULT_STEPS.items()),
    help="Discretisation steps (pc: N; ald: noise levels L; heun/dpm-solver: sigma steps).",
)
@click.option(
    "--snr",
    type=float,
    default=0.16,
    callback=_positive_float,
    show_default=True,
    help="Signal-to-noise ratio of the pc corrector.",
)
@click.option(
    "--predictor",
    type=click.Choice(sorted(samplers.PREDICTORS)),
    default="reverse_diffusion",
    show_default=True,
    help="pc predictor.",
)
@click.option(
    "--corrector",
    type=click.Choice(sorted(samplers.CORRECTORS)),
    default="langevin",
    show_default=True,
    help="pc corrector.",
)
@click.option(
    "--ode-method",
    type=click.Choice(ODE_METHODS),
    default="RK45",
    show_default=True,
    help="ode solver: adaptive scipy methods ignore --steps; euler/heun use it.",
)
@click.option(
    "--n-steps-each",
    type=int,
    default=ALD_STEPS_EACH,
    callback=_positive_int,
    show_default=True,
    help="ald: Langevin steps per noise level.",
)
@click.option(
    "--n",
    "n_samples",
    type=int,
    default=2000,
    callback=_positive_int,
    show_default=True,
    help="Number of samples.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    show_default="runs/reference-<dist>-<sampler>",
    help="Output path prefix: writes PREFIX.npz (key 'x') and PREFIX.png.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def sample(
    dist: str,
    sampler: str,
    sde_name: str,
    steps: int | None,
    snr: float,
    predictor: str,
    corrector: str,
    ode_method: str,
    n_steps_each: int,
    n_samples: int,
    seed: int,
    out: Path | None,
    as_json: bool,
) -> None:
    """Sample a built-in 2-D mixture with its exact score and any sampler.

    \b
    Example:
      scoregen reference sample --dist mixture5 --sampler pc --sde vp --steps 500 --out runs/pc-vp
    """
    prefix = out if out is not None else Path("runs") / f"reference-{dist}-{sampler}"
    if prefix.suffix in (".npz", ".png"):
        prefix = prefix.with_suffix("")
    _writable_dir(prefix.parent, "--out")
    steps = DEFAULT_STEPS[sampler] if steps is None else steps
    mixture = EXACT_MIXTURES[dist]()
    sde = SDES[sde_name](N=steps) if sampler == "pc" else SDES[sde_name]()
    sample_rng, check_rng = np.random.default_rng(seed).spawn(2)
    options = {
        "predictor": predictor,
        "corrector": corrector,
        "snr": snr,
        "ode_method": ode_method,
        "n_steps_each": n_steps_each,
    }
    try:
        x, nfe = _run_sampler(
            sampler, mixture, sde, (n_samples, mixture.dim), sample_rng, steps, options
        )
    except NotImplementedError as error:
        raise click.UsageError(
            f"{sampler} with --sde {sde_name} (predictor {predictor}) is not available: {error}"
        ) from error
    from cli.plotting import save_scatter  # matplotlib is slow to import: only when plotting

    npz_path, png_path = Path(f"{prefix}.npz"), Path(f"{prefix}.png")
    np.savez(npz_path, x=x)
    description = _describe(sampler, sde_name, steps, options)
    title = f"{description}, NFE {nfe}"
    save_scatter(png_path, x, title, log_prob=mixture.log_prob)
    checks = _sample_checks(x, mixture, check_rng)
    if as_json:
        record = {
            "dist": dist,
            "sampler": sampler,
            "sde": sde_name,
            "steps": steps,
            "description": description,
            "n": n_samples,
            "seed": seed,
            "nfe": nfe,
            "checks": checks,
            "npz": str(npz_path),
            "png": str(png_path),
        }
        click.echo(json.dumps(_jsonable(record)))
        return
    click.echo(f"{description} on {dist}: {n_samples} samples, NFE {nfe}")
    for name, value in (checks or {}).items():
        click.echo(f"  {name}: {_format_value(value)}")
    click.echo(f"wrote {npz_path}")
    click.echo(f"wrote {png_path}")


def _with_progress(
    sample_data: Callable[[np.random.Generator, int], np.ndarray], bar: tqdm
) -> Callable[[np.random.Generator, int], np.ndarray]:
    """Wrap a data sampler so each batch drawn (one per training step) advances `bar`."""

    def sample_batch(rng: np.random.Generator, n: int) -> np.ndarray:
        """Draw a batch and tick the progress bar."""
        bar.update()
        return sample_data(rng, n)

    return sample_batch


@reference.command("train")
@click.option(
    "--dataset",
    type=click.Choice(list(TOY_SETS)),
    default="mixture5",
    show_default=True,
    help="Toy 2-D set (mixtures have exact scores: relative score error is reported).",
)
@click.option(
    "--steps",
    type=int,
    default=20000,
    callback=_positive_int,
    show_default=True,
    help="Maximum Adam steps (the time budget usually stops training first).",
)
@click.option("--batch-size", type=int, default=256, callback=_positive_int, show_default=True)
@click.option(
    "--lr", type=float, default=1e-3, callback=_positive_float, show_default=True, help="Adam lr."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option(
    "--time-budget",
    type=float,
    default=60.0,
    callback=_positive_float,
    show_default=True,
    help="Training wall-clock budget in seconds.",
)
@click.option(
    "--sample-steps",
    type=int,
    default=500,
    callback=_positive_int,
    show_default=True,
    help="PC sampler steps after training.",
)
@click.option(
    "--n-samples",
    type=int,
    default=2000,
    callback=_positive_int,
    show_default=True,
    help="Number of samples drawn after training.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    show_default="runs/reference-<dataset>",
    help="Output directory.",
)
def train_cmd(
    dataset: str,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    time_budget: float,
    sample_steps: int,
    n_samples: int,
    out: Path | None,
) -> None:
    """Train the NumPy MLP score model (continuous VE loss) on a toy set, then sample with PC.

    \b
    Example:
      scoregen reference train --dataset moons --time-budget 30 --out runs/moons
    """
    out_dir = _writable_dir(
        out if out is not None else Path("runs") / f"reference-{dataset}", "--out"
    )
    init_rng, train_rng, sample_rng, eval_rng = np.random.default_rng(seed).spawn(4)
    sample_data = TOY_SETS[dataset]
    probe = sample_data(init_rng, SIGMA_MAX_PROBE)
    sde = VESDE(sigma_max=ncsnv2_sigma_max(probe), N=sample_steps)
    model = MLPScore(probe.shape[1], cond=TRAIN_MODEL_COND, rng=init_rng)
    with tqdm(total=steps, desc=f"training on {dataset}", unit="step") as bar:
        history = train(
            model,
            "continuous",
            _with_progress(sample_data, bar),
            steps,
            batch_size,
            train_rng,
            lr=lr,
            time_budget_s=time_budget,
            sde=sde,
        )
    score_fn = noise_conditional_score(model, sde)
    x, nfe = samplers.pc_sample(score_fn, sde, (n_samples, probe.shape[1]), sample_rng)

    mixture = EXACT_MIXTURES[dataset]() if dataset in EXACT_MIXTURES else None
    score_errors = {}
    if mixture is not None:
        score_errors = {
            t: relative_score_error(score_fn, mixture, sde, t, eval_rng, RELATIVE_ERROR_POINTS)
            for t in RELATIVE_ERROR_TIMES
        }
    metrics = compare_to_reference(x, sample_data, eval_rng)

    paths = {
        "samples": out_dir / "samples.npz",
        "plot": out_dir / "samples.png",
        "params": out_dir / "params.npz",
        "config": out_dir / "config.json",
    }
    from cli.plotting import save_scatter  # matplotlib is slow to import: only when plotting

    np.savez(paths["samples"], x=x)
    np.savez(paths["params"], **model.params)
    save_scatter(
        paths["plot"],
        x,
        f"PC samples after {history.steps} steps",
        log_prob=None if mixture is None else mixture.log_prob,
        reference=sample_data(eval_rng, n_samples),
    )
    final_loss = float(np.mean(history.losses[-LOSS_WINDOW:]))
    record = {
        "dataset": dataset,
        "seed": seed,
        "steps_done": history.steps,
        "wall_time_s": history.wall_time_s,
        "batch_size": batch_size,
        "lr": lr,
        "loss": "continuous",
        "final_loss": final_loss,
        "sde": {"name": "ve", "sigma_min": sde.sigma_min, "sigma_max": sde.sigma_max, "N": sde.N},
        "model": {
            "name": "MLPScore",
            "dim": model.dim,
            "hidden": list(model.hidden),
            "activation": model.activation,
            "cond": model.cond,
            "n_freq": model.n_freq,
        },
        "sample_nfe": nfe,
        "relative_score_error": {str(t): e for t, e in score_errors.items()},
        "metrics": metrics,
    }
    paths["config"].write_text(json.dumps(_jsonable(record), indent=2))

    click.echo(
        f"trained {history.steps} steps in {history.wall_time_s:.1f} s; "
        f"loss (mean of last {min(LOSS_WINDOW, history.steps)}) {final_loss:.4g}"
    )
    for t, err in score_errors.items():
        click.echo(f"  relative score error at t={t:g}: {err:.4g}")
    click.echo(f"PC sampling: {n_samples} samples, NFE {nfe}")
    for name, entry in metrics.items():
        click.echo(
            f"  {name}: {entry['value']:.4g} (noise floor {entry['floor_mean']:.4g}"
            f" ± {entry['floor_std']:.2g})"
        )
    for label, path in paths.items():
        click.echo(f"wrote {label}: {path}")
