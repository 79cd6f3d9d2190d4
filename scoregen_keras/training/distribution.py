"""Scaling out: which devices a training run uses and in which precision (backend-agnostic policy).

`--distribute data-parallel` splits every global batch over devices; each device holds a replica
of the weights, and the gradients are summed over devices before one optimizer step, so the step
is that of one device with the same global batch:

| backend | one host | several hosts |
| --- | --- | --- |
| JAX | `keras.distribution.DataParallel` | the same, after `keras.distribution.initialize()` |
| TensorFlow | `tf.distribute.MirroredStrategy` | `MultiWorkerMirroredStrategy` from `$TF_CONFIG` |
| PyTorch | refused: `TORCH_UNSUPPORTED` | refused |

The per-example noise stays independent: ScoreModel draws the noise of the whole global batch
and each tf.distribute replica keeps its own rows (JAX runs one program over the global batch),
so a data-parallel run draws the very numbers of a single-device run with the same seed.

`precision` is a Keras dtype policy for the *network's layers* only: the network's own call,
σ, t and their embeddings, the SDE coefficients, the preconditioning and the loss stay in
float32. `mixed_float16` adds dynamic loss scaling (keras.optimizers.LossScaleOptimizer).

The framework calls (meshes, strategies, virtual devices) are in `backend.py`; this module only
decides what to ask for and checks that it can be had.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import os
from collections.abc import Iterator
from typing import Any

from scoregen_keras.choices import DISTRIBUTE_MODES, PRECISIONS

NONE, DATA_PARALLEL = DISTRIBUTE_MODES
FLOAT32, MIXED_FLOAT16, MIXED_BFLOAT16 = PRECISIONS
CPU_DEVICES_ENV = "SCOREGEN_CPU_DEVICES"
"""Split the host CPU into this many devices before the backend starts (testing without GPUs)."""

DATA_PARALLEL_BACKENDS = {
    "jax": "keras.distribution.DataParallel (keras.distribution.initialize for several hosts)",
    "tensorflow": "tf.distribute.MirroredStrategy (MultiWorkerMirroredStrategy for several hosts)",
}
TORCH_UNSUPPORTED = (
    "data-parallel training is not available on the torch backend: Keras {version} implements "
    "its distribution API (keras.distribution) for JAX only, and model.fit uses tf.distribute "
    "strategies on TensorFlow only; it has no PyTorch distributed (DDP) support. "
    "Use --backend jax or --backend tensorflow, or train on one device."
)


class DistributeError(ValueError):
    """A distribution or precision setting cannot be used here; the message is one sentence."""


def keras_version() -> str:
    """The installed Keras release (read without importing keras)."""
    try:
        return importlib.metadata.version("keras")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def check_support(distribute: str, backend_name: str) -> None:
    """Raise DistributeError when `distribute` cannot run on `backend_name` (no import needed)."""
    if distribute not in DISTRIBUTE_MODES:
        raise DistributeError(
            f"unknown distribute '{distribute}'; choose one of {', '.join(DISTRIBUTE_MODES)}."
        )
    if distribute == DATA_PARALLEL and backend_name not in DATA_PARALLEL_BACKENDS:
        if backend_name == "torch":
            raise DistributeError(TORCH_UNSUPPORTED.format(version=keras_version()))
        raise DistributeError(f"data-parallel training is not available on {backend_name!r}.")


def check_precision(precision: str) -> None:
    """Raise DistributeError for a precision that is not a supported Keras policy."""
    if precision not in PRECISIONS:
        raise DistributeError(
            f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}."
        )


# ------------------------------------------------------------------------------ precision


@contextlib.contextmanager
def precision_scope(precision: str = FLOAT32) -> Iterator[None]:
    """Context in which new Keras layers take the dtype policy `precision` (restored on exit).

    Build (or load) networks inside it; models keep the policy they were built with.
    """
    import keras

    check_precision(precision)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def needs_loss_scaling(precision: str) -> bool:
    """float16 has a narrow exponent range: small gradients underflow without loss scaling."""
    return precision == MIXED_FLOAT16


# ------------------------------------------------------------------------------ placement


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run trains: mode, replicas (devices over all hosts), this process among processes."""

    mode: str
    devices: int
    process_index: int
    process_count: int
    feed_shard: tuple[int, int]  # (index, count): this process feeds that slice of each batch
    description: str

    @property
    def is_chief(self) -> bool:
        """The process that writes the run folder (process 0)."""
        return self.process_index == 0


SINGLE_DEVICE = Placement(NONE, 1, 0, 1, (0, 1), "one device")


def requested_cpu_devices() -> int | None:
    """$SCOREGEN_CPU_DEVICES as a positive integer, or None when unset."""
    text = os.environ.get(CPU_DEVICES_ENV)
    if not text:
        return None
    message = f"{CPU_DEVICES_ENV} must be a positive integer, got {text!r}."
    try:
        value = int(text)
    except ValueError as error:
        raise DistributeError(message) from error
    if value <= 0:
        raise DistributeError(message)
    return value


def choose_devices(
    requested: int | None, available: int, processes: int, batch_size: int | None
) -> int:
    """The replica count for a data-parallel run, or DistributeError with the reason."""
    if requested is None:
        requested = available
    if requested > available:
        hint = (
            f"; on a machine without accelerators set {CPU_DEVICES_ENV}={requested} to split the "
            "CPU into virtual devices (for testing)"
            if processes == 1
            else ""
        )
        raise DistributeError(
            f"--devices {requested} asks for more devices than the {available} available{hint}."
        )
    if processes > 1 and requested != available:
        raise DistributeError(
            f"with {processes} hosts, data-parallel training uses all {available} devices; "
            f"leave out --devices (got {requested})."
        )
    if batch_size is not None and batch_size % requested:
        raise DistributeError(
            f"the global batch size {batch_size} does not split evenly over {requested} devices; "
            f"choose a multiple of {requested}."
        )
    return requested


@contextlib.contextmanager
def training_scope(config: dict[str, Any]) -> Iterator[Placement]:
    """Context in which a run's model is built (or loaded) and trained, as config asks.

    "none": nothing changes. "data-parallel": optional virtual CPU devices, multi-host start-up,
    then the backend's data-parallel scope (restored on exit). Raises DistributeError.
    """
    from scoregen_keras import backend

    mode = config.get("distribute", NONE)
    check_support(mode, backend.name())
    if mode == NONE:
        yield SINGLE_DEVICE
        return
    cpu_devices = requested_cpu_devices()
    if cpu_devices is not None:
        backend.split_host_cpu(cpu_devices)
    processes = backend.initialize_hosts()
    available = backend.device_count()
    batch_size = config.get("batch_size")  # missing only from the overrides of a failed resume
    devices = choose_devices(config.get("devices"), available, processes, batch_size)
    if batch_size is not None and batch_size % processes:
        raise DistributeError(
            f"the global batch size {batch_size} does not split evenly over {processes} hosts."
        )
    with backend.data_parallel(devices) as replicas:
        yield Placement(
            DATA_PARALLEL,
            replicas.devices,
            replicas.process_index,
            replicas.process_count,
            replicas.feed_shard,
            replicas.description,
        )


# ------------------------------------------------------------------------------ sampling

SAMPLING_BACKENDS = ("jax",)
SAMPLING_UNSUPPORTED = (
    "sampling on several devices of one host is available on the jax backend only: there the "
    "batch's state and per-sample noise are placed split over keras.distribution.DataParallel's "
    "devices and the compiled steps follow them; on tensorflow each compiled chunk would have to "
    "run per replica under tf.distribute (strategy.run on per-replica slices, then gathered), "
    "and Keras has no distribution for torch. Use --backend jax, or one device per process with "
    "--shard."
)


@contextlib.contextmanager
def sampling_scope(devices: int | None) -> Iterator[int]:
    """Context in which a run is loaded and sampled on ``devices`` devices of this host, the
    batch split along its samples (JAX: keras.distribution.DataParallel); yields the count.

    Each sample keeps its per-seed noise, so the samples are those of one device (to float32
    rounding). None or 1: nothing changes. Raises DistributeError.
    """
    from scoregen_keras import backend

    if devices is None or devices == 1:
        yield 1
        return
    if backend.name() not in SAMPLING_BACKENDS:
        raise DistributeError(SAMPLING_UNSUPPORTED)
    cpu_devices = requested_cpu_devices()
    if cpu_devices is not None:
        backend.split_host_cpu(cpu_devices)
    chosen = choose_devices(devices, backend.device_count(), 1, None)
    with backend.data_parallel(chosen) as replicas:
        yield replicas.devices
