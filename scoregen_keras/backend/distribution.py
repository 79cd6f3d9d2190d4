"""Data-parallel training hooks: devices, hosts, and the replica context.

On JAX a data-parallel step goes through keras.distribution (a device mesh; one SPMD program sees
the whole global batch), on TensorFlow through tf.distribute (one replica per device, each running
the train step on its slice of the global batch). Keras has neither for PyTorch. The policy
(which mode, how many devices) is `scoregen_keras.training.distribution`'s."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections.abc import Iterator
from typing import Any

import keras
from keras import ops

from scoregen_keras.backend.active import dispatch, name
from scoregen_keras.backend.compile import from_host

Tensor = Any
XLA_CPU_COUNT_FLAG = "--xla_force_host_platform_device_count"
JAX_HOST_ENV = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES")
TF_CONFIG_ENV = "TF_CONFIG"
_ACCELERATOR_KINDS = ("GPU", "TPU")


@dataclasses.dataclass(frozen=True)
class Replicas:
    """Where a data-parallel step runs: replicas over all hosts, and this process among them."""

    devices: int  # replicas (devices) over all processes
    process_index: int
    process_count: int
    feed_shard: tuple[int, int]  # (index, count): the slice of each global batch this process feeds
    description: str


def split_host_cpu(n: int) -> None:
    """Show the host CPU as n devices (for testing data parallelism without accelerators).

    Must run before the backend initialises its devices; afterwards it is a no-op, and the
    device count is what it is. JAX: the jax_num_cpu_devices option (or XLA_FLAGS set by the
    caller); TensorFlow: n logical CPU devices; PyTorch: nothing.
    """
    backend = name()
    if backend == "jax":
        import jax

        if XLA_CPU_COUNT_FLAG in os.environ.get("XLA_FLAGS", ""):
            return  # the caller chose the count through XLA_FLAGS
        with contextlib.suppress(RuntimeError):  # raised once the backends are initialised
            jax.config.update("jax_num_cpu_devices", int(n))
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        with contextlib.suppress(RuntimeError):  # raised once the runtime is initialised
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(int(n))]
            )


def requested_hosts() -> int:
    """Processes the environment asks to join (no backend start-up): 1 for a one-host run.

    JAX: $KERAS_DISTRIBUTION_NUM_PROCESSES (or 2+ addresses in $KERAS_DISTRIBUTION_JOB_ADDRESSES).
    TensorFlow: the workers (and chief) listed in $TF_CONFIG.
    """
    if name() == "tensorflow":
        text = os.environ.get(TF_CONFIG_ENV)
        if not text:
            return 1
        cluster = json.loads(text).get("cluster", {})
        return max(1, len(cluster.get("worker", [])) + len(cluster.get("chief", [])))
    processes = os.environ.get(JAX_HOST_ENV[1])
    if processes:
        return int(processes)
    return max(1, len([a for a in os.environ.get(JAX_HOST_ENV[0], "").split(",") if a]))


_TF_MULTI_WORKER: list[Any] = []  # the one MultiWorkerMirroredStrategy of this process


def _tf_multi_worker_strategy() -> Any:
    """tf.distribute.MultiWorkerMirroredStrategy from $TF_CONFIG, created once per process.

    It must exist before TensorFlow initialises its devices (it configures the collectives).
    """
    import tensorflow as tf

    if not _TF_MULTI_WORKER:
        _TF_MULTI_WORKER.append(tf.distribute.MultiWorkerMirroredStrategy())
    return _TF_MULTI_WORKER[0]


def _tf_task_index() -> int:
    """This process's position among the hosts of $TF_CONFIG (the chief, if any, first)."""
    config = json.loads(os.environ[TF_CONFIG_ENV])
    task = config.get("task", {})
    has_chief = bool(config.get("cluster", {}).get("chief"))
    if task.get("type", "worker") == "chief":
        return 0
    return int(task.get("index", 0)) + int(has_chief)


def initialize_hosts() -> int:
    """Join the multi-host run the environment describes; return the number of processes.

    JAX: keras.distribution.initialize() (reads $KERAS_DISTRIBUTION_JOB_ADDRESSES,
    $KERAS_DISTRIBUTION_NUM_PROCESSES and $KERAS_DISTRIBUTION_PROCESS_ID). TensorFlow: the
    MultiWorkerMirroredStrategy of $TF_CONFIG. PyTorch: 1.
    """
    if name() == "tensorflow":
        hosts = requested_hosts()
        if hosts > 1:
            _tf_multi_worker_strategy()
        return hosts
    if name() != "jax":
        return 1
    import jax

    if requested_hosts() > 1 and not jax.distributed.is_initialized():
        keras.distribution.initialize()
    return jax.process_count()


def _tf_local_devices() -> list[Any]:
    """This process's logical devices of the best kind (accelerators, else CPUs)."""
    import tensorflow as tf

    for kind in _ACCELERATOR_KINDS:
        found = tf.config.list_logical_devices(kind)
        if found:
            return found
    return tf.config.list_logical_devices("CPU")


def device_count() -> int:
    """Devices of the best kind (accelerators, else CPUs) over all processes of the run."""
    backend = name()
    if backend == "jax":
        import jax

        return jax.device_count()
    if backend == "tensorflow":
        if _TF_MULTI_WORKER:
            return int(_TF_MULTI_WORKER[0].num_replicas_in_sync)
        return len(_tf_local_devices())
    return 1


@contextlib.contextmanager
def _data_parallel_jax(n_devices: int) -> Iterator[Replicas]:
    """keras.distribution.DataParallel over n devices, set for the duration of the context."""
    import jax

    devices = keras.distribution.list_devices()
    chosen = devices if jax.process_count() > 1 else devices[:n_devices]
    previous = keras.distribution.distribution()
    # each process feeds its own slice of the global batch (StepBatches), so no auto-sharding
    keras.distribution.set_distribution(
        keras.distribution.DataParallel(devices=chosen, auto_shard_dataset=False)
    )
    try:
        yield Replicas(
            devices=len(chosen),
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            feed_shard=(jax.process_index(), jax.process_count()),
            description=f"keras.distribution.DataParallel over {', '.join(map(str, chosen))}",
        )
    finally:
        keras.distribution.set_distribution(previous)


@contextlib.contextmanager
def _data_parallel_tensorflow(n_devices: int) -> Iterator[Replicas]:
    """MirroredStrategy over n local devices (or the one multi-worker strategy), for the context."""
    import tensorflow as tf

    if _TF_MULTI_WORKER:
        strategy = _TF_MULTI_WORKER[0]
        hosts = requested_hosts()
        with strategy.scope():
            # every worker feeds the whole global batch; tf.distribute gives each replica its part
            yield Replicas(
                strategy.num_replicas_in_sync,
                _tf_task_index(),
                hosts,
                (0, 1),
                f"tf.distribute.MultiWorkerMirroredStrategy over {hosts} workers "
                f"({strategy.num_replicas_in_sync} replicas)",
            )
        return
    names = [device.name for device in _tf_local_devices()[:n_devices]]
    strategy = tf.distribute.MirroredStrategy(devices=names)
    with strategy.scope():
        # tf.distribute splits every global batch over the replicas itself
        yield Replicas(
            strategy.num_replicas_in_sync,
            0,
            1,
            (0, 1),
            f"tf.distribute.MirroredStrategy over {', '.join(names)}",
        )


def data_parallel(n_devices: int) -> contextlib.AbstractContextManager[Replicas]:
    """Context in which models are created and trained data-parallel over n devices.

    JAX: keras.distribution.DataParallel (all global devices when several processes run).
    TensorFlow: MirroredStrategy over the first n local devices, or on several hosts the
    MultiWorkerMirroredStrategy of `initialize_hosts`. Models must be built (or loaded) inside.
    """
    return dispatch({"jax": _data_parallel_jax, "tensorflow": _data_parallel_tensorflow})(n_devices)


def replica_position() -> tuple[Any, int]:
    """(index, count) of the replica running this code inside a tf.distribute step, else (0, 1).

    Only TensorFlow runs the step once per replica on a slice of the batch; JAX's data-parallel
    step is one program over the global batch, so it is (0, 1) there.
    """
    if name() != "tensorflow":
        return 0, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 0, 1
    return context.replica_id_in_sync_group, int(context.num_replicas_in_sync)


def scale_loss_for_replicas(loss: Tensor) -> Tensor:
    """loss / replicas inside a tf.distribute step (the gradients are then summed), else loss.

    Keras does this in its own `compute_loss`; a model that overrides it must do it too.
    """
    _, count = replica_position()
    return loss if count == 1 else loss / count


def clip_after_all_reduce(optimizer: Any) -> None:
    """Make a Keras optimizer clip the all-reduced gradient under tf.distribute (TensorFlow).

    Keras 3 clips (clipnorm, global_clipnorm, clipvalue) each replica's gradient before the
    optimizer sums them over replicas, which is not the clipping of the single-device step.
    Patched, the optimizer sums first, clips, and hands each replica 1/replicas of the result,
    which its own all-reduce sums back. No-op elsewhere and for optimizers that do not clip.
    """
    if name() != "tensorflow":
        return
    import tensorflow as tf

    inner = getattr(optimizer, "inner_optimizer", optimizer)  # LossScaleOptimizer wraps one
    if getattr(inner, "_scoregen_clips_after_all_reduce", False):
        return
    if inner.clipnorm is None and inner.global_clipnorm is None and inner.clipvalue is None:
        return
    clip_replica = inner._clip_gradients

    def clip(grads: list[Tensor]) -> list[Tensor]:
        context = tf.distribute.get_replica_context()
        if context is None or context.num_replicas_in_sync == 1:
            return clip_replica(grads)
        count = context.num_replicas_in_sync
        summed = context.all_reduce(tf.distribute.ReduceOp.SUM, list(grads))
        return [g / count for g in clip_replica(summed)]

    inner._clip_gradients = clip
    inner._scoregen_clips_after_all_reduce = True


def multi_worker() -> bool:
    """True when this process trains under TensorFlow's MultiWorkerMirroredStrategy."""
    return bool(_TF_MULTI_WORKER)


def first_local_batch(iterator: Any) -> Any:
    """The first local replica's part of the next batch of a Keras TF epoch iterator."""
    strategy = _TF_MULTI_WORKER[0]
    for _, _, batches in iterator:
        batch = next(batches)
        return keras.tree.map_structure(lambda v: strategy.experimental_local_results(v)[0], batch)
    return None


def logs_for_multi_worker(logs: dict[str, Any]) -> dict[str, Any]:
    """Scalar step logs as shape (1,) under several workers (Keras reduces them along axis 0)."""
    if not _TF_MULTI_WORKER:
        return logs
    return {key: ops.reshape(value, (1,)) for key, value in logs.items()}


def batch_devices() -> int:
    """Devices a batch is split over by `from_host_batch`: those of a JAX data-parallel
    distribution when one is set, else 1."""
    distribution = keras.distribution.distribution() if name() == "jax" else None
    if not isinstance(distribution, keras.distribution.DataParallel):
        return 1
    return int(distribution.device_mesh.devices.size)


def from_host_batch(array: Any, batch_axis: int = 0) -> Tensor:
    """A host array as a tensor, split along ``batch_axis`` over the devices of a JAX
    data-parallel distribution when one is set and the axis divides evenly (each device then
    holds its own samples' rows, and compiled steps run where their rows lie); else
    `from_host`. TensorFlow's strategies and PyTorch have no such placement here."""
    devices = batch_devices()
    if devices == 1 or array.shape[batch_axis] % devices:
        return from_host(array)
    distribution = keras.distribution.distribution()
    axes: list[str | None] = [None] * array.ndim
    axes[batch_axis] = distribution.batch_dim_name
    layout = keras.distribution.TensorLayout(axes, distribution.device_mesh)
    return keras.distribution.distribute_tensor(array, layout)
