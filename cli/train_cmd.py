"""`scoregen train`: train a score model into a run folder (thin over scoregen_keras.runs).

Nothing here imports keras or scoregen_keras at import time: `use_backend` sets KERAS_BACKEND
first, then the command imports the library.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

BACKENDS = ("tensorflow", "jax", "torch")
DEFAULT_BACKEND = "tensorflow"
SDES = ("ve", "vp", "subvp", "ncsn")
LOSSES = ("dsm", "ncsn", "ssm", "ssm_vr", "exact")
DISTRIBUTE_MODES = ("none", "data-parallel")  # as scoregen_keras.presets (not imported here)
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention
DEFAULT_RUNS_DIR = "runs"
FROM_PRESET = "from the preset"
DEBUG_ENV = "SCOREGEN_DEBUG"  # as in cli.main: tracebacks and native messages stay visible
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "OPENBLAS_NUM_THREADS": "1"}
"""Environment defaults set before the backend is imported (the user's values win)."""
JAX_CACHE_DIR_ENV = "JAX_COMPILATION_CACHE_DIR"  # JAX's own variable: empty turns the cache off
# every compiled function, however quick to compile: the many small ones (each random
# initializer shape, each sampler chunk) are what a fresh process spends its first seconds on
JAX_CACHE_MIN_COMPILE_ENV = {"JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
# bytes, the least recently used dropped first; JAX needs the filelock package to enforce it
JAX_CACHE_MAX_SIZE_ENV = {"JAX_COMPILATION_CACHE_MAX_SIZE": str(2**30)}


def default_backend() -> str:
    """The backend from $KERAS_BACKEND, else tensorflow."""
    return os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND


def _silence_native_stderr() -> None:
    """Send file descriptor 2 to /dev/null and keep Python's sys.stderr on the real stream.

    TensorFlow's C++ runtime writes start-up and device messages straight to descriptor 2; the
    user should see scoregen's own lines only. Skipped under a test runner (sys.stderr swapped),
    when stderr has no descriptor, and when SCOREGEN_DEBUG is set.
    """
    if os.environ.get(DEBUG_ENV) or sys.stderr is not sys.__stderr__:
        return
    try:
        sys.stderr.flush()
        real = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    sys.stderr = sys.__stderr__ = os.fdopen(real, "w", buffering=1, encoding="utf-8")


def jax_cache_dir() -> Path:
    """Where scoregen keeps JAX's compiled code by default: $XDG_CACHE_HOME/scoregen/jax."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "scoregen" / "jax"


def _default_jax_compilation_cache() -> None:
    """Turn on JAX's persistent compilation cache, unless the user set one or it is unwritable.

    A later process reuses what an earlier one compiled for the same model and shapes.
    """
    if JAX_CACHE_DIR_ENV in os.environ:
        return
    folder = jax_cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return
    if os.access(folder, os.W_OK):
        os.environ[JAX_CACHE_DIR_ENV] = str(folder)
        limits = JAX_CACHE_MIN_COMPILE_ENV
        if importlib.util.find_spec("filelock") is not None:
            limits = {**limits, **JAX_CACHE_MAX_SIZE_ENV}
        for key, value in limits.items():
            os.environ.setdefault(key, value)


def use_backend(backend: str) -> None:
    """Set KERAS_BACKEND, then import keras; fail if keras already runs on another backend."""
    if backend not in BACKENDS:
        raise click.BadParameter(
            f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}.",
            param_hint="'--backend'",
        )
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = backend
        for key, value in QUIET_ENV.items():
            os.environ.setdefault(key, value)
        if backend == "jax":
            _default_jax_compilation_cache()
        _silence_native_stderr()
        try:
            importlib.import_module("keras")
        except ImportError as error:
            raise click.ClickException(
                f"the {backend} backend is not installed ({error}); pip install {backend}."
            ) from error
    keras = importlib.import_module("keras")
    active = keras.backend.backend()
    if active != backend:
        raise click.ClickException(
            f"keras is already running on the {active} backend in this process; "
            f"run scoregen in a fresh process for --backend {backend}."
        )


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


def _check_distribute(mode: str, backend: str) -> None:
    """Fail before the backend starts when `mode` cannot run on it (e.g. data-parallel + torch)."""
    distribute = importlib.import_module("scoregen_keras.training.distribution")
    try:
        distribute.check_support(mode, backend)
    except distribute.DistributeError as error:
        raise click.ClickException(str(error)) from error


def _print_summary(result: Any) -> None:
    """Tell the user where everything is."""
    click.echo(f"run folder:   {result.run_dir}  ({result.status}, step {result.step})")
    click.echo(f"config:       {result.config}")
    click.echo(f"checkpoint:   {result.checkpoint}")
    click.echo(f"metrics:      {result.metrics}")
    if result.sample_plot is not None:
        click.echo(f"sample plot:  {result.sample_plot}")
    if result.final_loss is not None:
        click.echo(f"final loss:   {result.final_loss:.4g}  ({result.seconds:.1f} s of training)")
    click.echo(f"next:         scoregen sample {result.run_dir}")


@click.command("train")
@click.option(
    "--backend",
    type=str,
    default=default_backend,
    show_default="$KERAS_BACKEND, else tensorflow",
    help=f"Keras backend: {', '.join(BACKENDS)}.",
)
@click.option(
    "--preset",
    type=str,
    default=None,
    show_default="toy",
    help="Named configuration (list them with `scoregen presets`).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    default=None,
    help="TOML or JSON file of settings (keys as in a run's config.json).",
)
@click.option(
    "--dataset",
    default=None,
    show_default=FROM_PRESET,
    help="Data set name, npz:PATH, npy:PATH or a folder.",
)
@click.option(
    "--model",
    default=None,
    show_default=FROM_PRESET,
    help="Network config, e.g. mlp/toy or ncsnpp/digits.",
)
@click.option(
    "--sde", type=click.Choice(SDES), default=None, show_default=FROM_PRESET, help="Noise process."
)
@click.option(
    "--loss",
    type=click.Choice(LOSSES),
    default=None,
    show_default=FROM_PRESET,
    help="Score-matching loss.",
)
@click.option(
    "--steps", type=int, default=None, show_default=FROM_PRESET, help="Total optimizer steps."
)
@click.option(
    "--batch-size", type=int, default=None, show_default=FROM_PRESET, help="Examples per step."
)
@click.option(
    "--lr",
    type=float,
    default=None,
    show_default=FROM_PRESET,
    help="Peak learning rate (after warm-up).",
)
@click.option(
    "--ema",
    type=float,
    default=None,
    show_default=FROM_PRESET,
    help="EMA rate of the weights, in [0, 1).",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    show_default=FROM_PRESET,
    help="Seed of data, weights and noise.",
)
@click.option(
    "--distribute",
    type=click.Choice(DISTRIBUTE_MODES),
    default=None,
    show_default="none",
    help="data-parallel: split each global batch over devices (JAX, TensorFlow).",
)
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=None,
    show_default="all",
    help="Devices for --distribute data-parallel.",
)
@click.option(
    "--precision",
    type=click.Choice(PRECISIONS),
    default=None,
    show_default="float32",
    help="Network precision (sigma, time embeddings, SDE and loss stay float32).",
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
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)
@click.option("--json", "as_json", is_flag=True, default=False, help="Print one JSON object.")
def train(
    backend: str,
    preset: str | None,
    config_file: str | None,
    dataset: str | None,
    model: str | None,
    sde: str | None,
    loss: str | None,
    steps: int | None,
    batch_size: int | None,
    lr: float | None,
    ema: float | None,
    seed: int | None,
    distribute: str | None,
    devices: int | None,
    precision: str | None,
    out: str | None,
    resume: bool,
    progress: bool,
    as_json: bool,
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
    preset = preset or file_values.pop("preset", None)
    file_values.pop("preset", None)
    options = {
        "dataset": dataset,
        "model": model,
        "sde": sde,
        "loss": loss,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "ema": ema,
        "seed": seed,
        "distribute": distribute,
        "devices": devices,
        "precision": precision,
    }
    overrides = {**file_values, **{k: v for k, v in options.items() if v is not None}}
    if resume and out is None:
        raise click.UsageError("--resume needs --out RUN_DIR, the run to continue.")
    if devices is not None and overrides.get("distribute", "none") == "none":
        raise click.UsageError("--devices needs --distribute data-parallel.")
    presets = importlib.import_module("scoregen_keras.training.presets")
    preset = preset or presets.DEFAULT_PRESET
    try:
        config = overrides if resume else presets.resolve_config(preset, overrides)
    except presets.ConfigError as error:
        raise click.ClickException(str(error)) from error
    use_backend(backend)
    _check_distribute(overrides.get("distribute", "none"), backend)
    runs = importlib.import_module("scoregen_keras.runs")
    data = importlib.import_module("scoregen_keras.data")
    run_dir = Path(out) if out else _default_out(preset)
    log = (lambda message: None) if as_json else (lambda message: click.echo(message, err=True))
    if not as_json:
        click.echo(f"training {preset if not resume else 'resumed run'} on {backend} -> {run_dir}")
    try:
        result = runs.train_run(config, run_dir, resume=resume, progress=progress, log=log)
    except (runs.RunError, data.DataError, presets.ConfigError) as error:
        raise click.ClickException(str(error)) from error
    except KeyboardInterrupt:
        click.echo(
            f"Interrupted before a checkpoint was saved; {run_dir} is not complete.", err=True
        )
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(result.to_json()))
    else:
        _print_summary(result)
    if result.status == runs.STATUS_INTERRUPTED:
        click.echo(
            f"Interrupted: checkpoint saved at step {result.step}; continue with "
            f"`scoregen train --resume --out {run_dir}`.",
            err=True,
        )
        sys.exit(EXIT_INTERRUPTED)
