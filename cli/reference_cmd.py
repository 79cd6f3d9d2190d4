"""`scoregen reference …`: run the pure NumPy reference (exact-score sampling, toy training).

Its options offer the names of the reference's own registries (distributions, SDEs, predictors,
correctors, ODE methods, toy sets) and the samplers of `scoregen_keras.choices`; nothing here
imports keras.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from cli.options import Decorator, choice_option, json_option, out_option, seed_option
from reference import samplers
from reference.checks import sample_checks
from reference.datasets import EXACT_MIXTURES, TOY_SETS
from reference.metrics import compare_to_reference
from reference.models import MLPScore, noise_conditional_score
from reference.sde import FORWARD_SDES, VESDE, geometric_sigmas, ncsnv2_sigma_max
from reference.train import relative_score_error, train
from scoregen_keras import choices

ALD_LEVELS = 30
"""Default noise levels L of --sampler ald: ratio sigma_i/sigma_(i+1) ~ 1.34 over VE's 0.01..50.

(NCSN's L = 10 was chosen for sigma_1 = 1; over 0.01..50 it leaves 2-D samples too wide.)"""
TRAIN_MODEL_COND = "log_sigma"
"""The MLP embeds log sigma: the VE noise scale spans four orders of magnitude."""
SIGMA_MAX_PROBE = 1000
"""Data points used to set sigma_max by NCSNv2's technique 1 (max pairwise distance)."""
RELATIVE_ERROR_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)
RELATIVE_ERROR_POINTS = 2000
LOSS_WINDOW = 100
"""Number of final steps averaged into the reported training loss."""
SAMPLE_SUFFIXES = (".npz", ".png")


# ------------------------------------------------------------------------------- validation


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """Click callback: accept None or a number > 0."""
    if value is not None and not value > 0:
        kind = "integer" if isinstance(value, int) else "number"
        raise click.BadParameter(f"must be a positive {kind}, got {value}.")
    return value


def positive_option(
    flag: str, default: float | None, help: str | None, *names: str, **settings: Any
) -> Decorator:
    """An option that must be positive; its type is its default's (int without one)."""
    settings.setdefault("type", int if default is None else type(default))
    settings.setdefault("show_default", default is not None)
    return click.option(flag, *names, default=default, callback=_positive, help=help, **settings)


def registry_option(flag: str, registry: Any, default: str, help: str, *names: str) -> Decorator:
    """An option whose values are the names of a registry of `reference`."""
    return choice_option(flag, *names, names=tuple(registry), default=default, help=help)


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


# ------------------------------------------------------------------------------- samplers


@dataclass(frozen=True)
class Draw:
    """One sampling request: the mixture with its exact score, the SDE, and the settings."""

    mixture: Any
    sde: Any
    shape: tuple[int, int]
    rng: np.random.Generator
    steps: int
    options: dict[str, Any]


def _annealed_langevin(draw: Draw) -> tuple[np.ndarray, int]:
    """NCSN's annealed Langevin dynamics over `steps` geometric levels of the VE SDE's range."""
    if not hasattr(draw.sde, "sigma_max"):
        raise click.UsageError("--sampler ald runs on VE noise levels; use --sde ve.")
    sigmas = geometric_sigmas(draw.sde.sigma_max, draw.sde.sigma_min, draw.steps)
    return samplers.annealed_langevin(
        draw.mixture.sigma_score_fn(),
        sigmas,
        draw.shape,
        draw.rng,
        n_steps_each=draw.options["n_steps_each"],
    )


def _pc(draw: Draw) -> tuple[np.ndarray, int]:
    """Predictor-corrector sampling (the SDE carries the steps)."""
    return samplers.pc_sample(
        draw.mixture.score_fn(draw.sde),
        draw.sde,
        draw.shape,
        draw.rng,
        predictor=draw.options["predictor"],
        corrector=draw.options["corrector"],
        snr=draw.options["snr"],
    )


def _ode(draw: Draw) -> tuple[np.ndarray, int]:
    """The probability-flow ODE by --ode-method."""
    score_fn = draw.mixture.score_fn(draw.sde)
    method = draw.options["ode_method"]
    return samplers.ode_sample(
        score_fn, draw.sde, draw.shape, draw.rng, method=method, n_steps=draw.steps
    )


def _heun(draw: Draw) -> tuple[np.ndarray, int]:
    """EDM's Heun sampler."""
    score_fn = draw.mixture.score_fn(draw.sde)
    return samplers.edm_heun_sample(score_fn, draw.sde, draw.shape, draw.rng, n_steps=draw.steps)


def _dpm_solver(draw: Draw) -> tuple[np.ndarray, int]:
    """DPM-Solver++(2M)."""
    score_fn = draw.mixture.score_fn(draw.sde)
    return samplers.dpm_solver_pp_sample(
        score_fn, draw.sde, draw.shape, draw.rng, n_steps=draw.steps
    )


def _default(fn: Callable[..., Any], argument: str = "n_steps") -> Any:
    """The reference's default of a sampler's argument (so the CLI never restates it)."""
    return inspect.signature(fn).parameters[argument].default


@dataclass(frozen=True)
class Sampler:
    """How `scoregen reference sample` runs one of choices.SAMPLERS, and its default steps."""

    run: Callable[[Draw], tuple[np.ndarray, int]]
    default_steps: int


SAMPLERS: dict[str, Sampler] = {
    "pc": Sampler(_pc, VESDE().N),
    "ald": Sampler(_annealed_langevin, ALD_LEVELS),
    "ode": Sampler(_ode, _default(samplers.ode_sample)),
    "heun": Sampler(_heun, _default(samplers.edm_heun_sample)),
    "dpm-solver": Sampler(_dpm_solver, _default(samplers.dpm_solver_pp_sample)),
}
"""Every name of choices.SAMPLERS (tests/cli/test_reference_cli.py checks it)."""


def _describe(sampler: str, sde_name: str, steps: int, options: dict[str, Any]) -> str:
    """One-line description of the sampler settings that matter, for printing and plot titles."""
    if sampler == "ald":
        return f"ald ({steps} noise levels x {options['n_steps_each']} Langevin steps)"
    if sampler == "pc":
        return (
            f"pc ({sde_name} SDE, {steps} steps, {options['predictor']} + {options['corrector']},"
            f" snr {options['snr']:g})"
        )
    if sampler == "ode" and options["ode_method"] not in samplers.FIXED_STEP_ODE_METHODS:
        return f"ode ({sde_name} SDE, adaptive {options['ode_method']})"
    detail = f"{options['ode_method']}, " if sampler == "ode" else ""
    return f"{sampler} ({sde_name} SDE, {detail}{steps} steps)"


# ------------------------------------------------------------------------------- commands


@click.group()
def reference() -> None:
    """Pure NumPy reference: exact-score sampling and toy training.

    \b
    Example:
      scoregen reference sample --dist mixture5 --sampler heun --out runs/heun
    """


@reference.command("sample")
@registry_option("--dist", EXACT_MIXTURES, "mixture5", "Built-in distribution with an exact score.")
@choice_option("--sampler", names=choices.SAMPLERS, default=choices.PC_SAMPLER, help="Sampler.")
@registry_option(
    "--sde",
    FORWARD_SDES,
    "ve",
    "Forward SDE (ald always uses the VE noise levels).",
    "sde_name",
)
@positive_option(
    "--steps",
    None,
    "Discretisation steps (pc: N; ald: noise levels L; heun/dpm-solver: sigma steps).",
    show_default=", ".join(f"{name} {s.default_steps}" for name, s in SAMPLERS.items()),
)
@positive_option(
    "--snr", _default(samplers.pc_sample, "snr"), "Signal-to-noise ratio of the pc corrector."
)
@registry_option(
    "--predictor", samplers.PREDICTORS, _default(samplers.pc_sample, "predictor"), "pc predictor."
)
@registry_option(
    "--corrector", samplers.CORRECTORS, _default(samplers.pc_sample, "corrector"), "pc corrector."
)
@registry_option(
    "--ode-method",
    samplers.ODE_METHODS,
    _default(samplers.ode_sample, "method"),
    "ode solver: adaptive scipy methods ignore --steps; euler/heun use it.",
)
@positive_option(
    "--n-steps-each",
    _default(samplers.annealed_langevin, "n_steps_each"),
    "ald: Langevin steps per noise level.",
)
@positive_option("--n", 2000, "Number of samples.", "n_samples")
@seed_option("Random seed.")
@out_option(
    "Output path prefix: writes PREFIX.npz (key 'x') and PREFIX.png.",
    show_default="runs/reference-<dist>-<sampler>",
    path_type=Path,
)
@json_option
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
    if prefix.suffix in SAMPLE_SUFFIXES:
        prefix = prefix.with_suffix("")
    _writable_dir(prefix.parent, "--out")
    steps = SAMPLERS[sampler].default_steps if steps is None else steps
    mixture = EXACT_MIXTURES[dist]()
    sde_class = FORWARD_SDES[sde_name]
    sde = sde_class(N=steps) if sampler == choices.PC_SAMPLER else sde_class()
    sample_rng, check_rng = np.random.default_rng(seed).spawn(2)
    options = {
        "predictor": predictor,
        "corrector": corrector,
        "snr": snr,
        "ode_method": ode_method,
        "n_steps_each": n_steps_each,
    }
    draw = Draw(mixture, sde, (n_samples, mixture.dim), sample_rng, steps, options)
    try:
        x, nfe = SAMPLERS[sampler].run(draw)
    except NotImplementedError as error:
        raise click.UsageError(
            f"{sampler} with --sde {sde_name} (predictor {predictor}) is not available: {error}"
        ) from error
    from cli.plotting import save_scatter  # matplotlib is slow to import: only when plotting

    npz_path, png_path = (Path(f"{prefix}{suffix}") for suffix in SAMPLE_SUFFIXES)
    np.savez(npz_path, x=x)
    description = _describe(sampler, sde_name, steps, options)
    save_scatter(png_path, x, f"{description}, NFE {nfe}", log_prob=mixture.log_prob)
    checks = sample_checks(x, mixture, check_rng)
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
    if as_json:
        click.echo(json.dumps(_jsonable(record)))
        return
    click.echo(f"{description} on {dist}: {n_samples} samples, NFE {nfe}")
    for name, value in checks.items():
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


def _train_lines(record: dict[str, Any], paths: dict[str, Path]) -> Iterator[str]:
    """What `scoregen reference train` prints: the training, the score errors, the metrics."""
    steps = record["steps_done"]
    yield (
        f"trained {steps} steps in {record['wall_time_s']:.1f} s; "
        f"loss (mean of last {min(LOSS_WINDOW, steps)}) {record['final_loss']:.4g}"
    )
    for t, err in record["relative_score_error"].items():
        yield f"  relative score error at t={float(t):g}: {err:.4g}"
    yield f"PC sampling: {record['n_samples']} samples, NFE {record['sample_nfe']}"
    for name, entry in record["metrics"].items():
        yield (
            f"  {name}: {entry['value']:.4g} (noise floor {entry['floor_mean']:.4g}"
            f" ± {entry['floor_std']:.2g})"
        )
    for label, path in paths.items():
        yield f"wrote {label}: {path}"


@reference.command("train")
@registry_option(
    "--dataset",
    TOY_SETS,
    "mixture5",
    "Toy 2-D set (mixtures have exact scores: relative score error is reported).",
)
@positive_option(
    "--steps", 20000, "Maximum Adam steps (the time budget usually stops training first)."
)
@positive_option("--batch-size", 256, "Examples per Adam step.")
@positive_option("--lr", 1e-3, "Adam lr.")
@seed_option("Random seed.")
@positive_option("--time-budget", 60.0, "Training wall-clock budget in seconds.")
@positive_option("--sample-steps", 500, "PC sampler steps after training.")
@positive_option("--n-samples", 2000, "Number of samples drawn after training.")
@out_option(
    "Output directory.", show_default="runs/reference-<dataset>", folder=True, path_type=Path
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
    record = {
        "dataset": dataset,
        "seed": seed,
        "steps_done": history.steps,
        "wall_time_s": history.wall_time_s,
        "batch_size": batch_size,
        "lr": lr,
        "loss": "continuous",
        "final_loss": float(np.mean(history.losses[-LOSS_WINDOW:])),
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
    for line in _train_lines({**record, "n_samples": n_samples}, paths):
        click.echo(line)
