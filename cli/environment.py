"""What must happen before the first keras import: the backend, threads, logging, JAX's cache.

Keras reads KERAS_BACKEND once, when it is first imported, and TensorFlow and OpenBLAS read
their variables when they start; so a command calls `use_backend` before it imports the library,
and nothing in cli/ imports keras (or scoregen_keras modules that do) at import time.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import click

from scoregen_keras.choices import BACKENDS, DEFAULT_BACKEND

BACKEND_ENV = "KERAS_BACKEND"
DEBUG_ENV = "SCOREGEN_DEBUG"
"""Set this environment variable to any non-empty value to see tracebacks instead of one line
(and TensorFlow's native messages on stderr)."""
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
    return os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND


def backend_started() -> bool:
    """Whether keras was imported in this process (its backend is then fixed)."""
    return "keras" in sys.modules


def silence_native_stderr() -> None:
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


def default_jax_compilation_cache() -> None:
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


def _start(backend: str) -> None:
    """Set the environment the backend reads at start-up, then import keras on it."""
    os.environ[BACKEND_ENV] = backend
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if backend == "jax":
        default_jax_compilation_cache()
    silence_native_stderr()
    try:
        import keras  # noqa: F401  (reads KERAS_BACKEND now)
    except ImportError as error:
        raise click.ClickException(
            f"the {backend} backend is not installed ({error}); pip install {backend}."
        ) from error


def use_backend(backend: str) -> None:
    """Start keras on `backend`; fail if keras already runs on another backend in this process."""
    if backend not in BACKENDS:
        raise click.BadParameter(
            f"unknown backend '{backend}'; choose one of {', '.join(BACKENDS)}.",
            param_hint="'--backend'",
        )
    if not backend_started():
        _start(backend)
    import keras

    active = keras.backend.backend()
    if active != backend:
        raise click.ClickException(
            f"keras is already running on the {active} backend in this process; "
            f"run scoregen in a fresh process for --backend {backend}."
        )
