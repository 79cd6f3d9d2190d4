"""The one module that touches TensorFlow, JAX or PyTorch directly: autodiff and compilation.

Every public function dispatches on ``keras.backend.backend()`` to a few lines of backend code
that import their framework lazily, so importing this module costs nothing beyond Keras.
All functions nest: an input gradient taken inside `value_and_param_grad`'s loss is itself
differentiated w.r.t. the parameters (what exact and sliced score matching need).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

Tensor = Any
VjpFn = Callable[[Tensor], Tensor]


def name() -> str:
    """The active Keras backend: "tensorflow", "jax" or "torch"."""
    return keras.backend.backend()


def _dispatch(table: dict[str, Callable[..., Any]]) -> Callable[..., Any]:
    """The implementation for the active backend."""
    backend = name()
    if backend not in table:
        raise NotImplementedError(f"scoregen_keras does not support the {backend!r} backend")
    return table[backend]


# --- vector-Jacobian products (reverse mode) w.r.t. the input ------------------------------------


def _vjp_tensorflow(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool):
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    tape = tf.GradientTape(persistent=True)  # persistent: vjp_fn may be called many times
    with tape:
        tape.watch(x)
        y = fn(x)

    def vjp_fn(cotangent: Tensor) -> Tensor:
        return tape.gradient(
            y,
            x,
            output_gradients=tf.cast(cotangent, y.dtype),
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )

    return y, vjp_fn


def _vjp_jax(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool):
    import jax

    y, pullback = jax.vjp(fn, ops.convert_to_tensor(x))
    return y, lambda cotangent: pullback(ops.cast(cotangent, y.dtype))[0]


def _vjp_torch(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool):
    import torch

    x = ops.convert_to_tensor(x)
    with torch.enable_grad():
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        y = fn(x)

    def vjp_fn(cotangent: Tensor) -> Tensor:
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(
                y,
                x,
                grad_outputs=ops.cast(cotangent, y.dtype),
                create_graph=create_graph,
                retain_graph=True,
                allow_unused=True,
            )
        return torch.zeros_like(x) if grad is None else grad

    return y, vjp_fn


def vjp(
    fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = True
) -> tuple[Tensor, VjpFn]:
    """(y, vjp_fn) with y = fn(x) and vjp_fn(u) = uᵀ ∂y/∂x; vjp_fn may be called repeatedly.

    create_graph (PyTorch only; other backends always can) keeps the graph of the result so it
    can be differentiated again, e.g. w.r.t. parameters; pass False when sampling.
    """
    return _dispatch({"tensorflow": _vjp_tensorflow, "jax": _vjp_jax, "torch": _vjp_torch})(
        fn, x, create_graph
    )


def value_and_input_grad(
    fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = True
) -> tuple[Tensor, Tensor]:
    """(fn(x), ∇ₓ sum(fn(x))): e.g. the score of an energy, or the gradient of a log-density."""
    y, vjp_fn = vjp(fn, x, create_graph)
    return y, vjp_fn(ops.ones_like(y))


def input_gradient(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool = True) -> Tensor:
    """∇ₓ sum(fn(x)) (for per-example scalar fn this is the per-example gradient)."""
    return value_and_input_grad(fn, x, create_graph)[1]


# --- Jacobian-vector products (forward mode) -----------------------------------------------------


def jvp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(fn(x), J v) with J = ∂fn/∂x, by forward mode (``keras.ops.jvp`` on every backend)."""
    x = ops.convert_to_tensor(x)
    y, y_dot = ops.jvp(fn, (x,), (ops.cast(v, x.dtype),))
    # TensorFlow's ForwardAccumulator returns None for an output that does not depend on x
    return y, ops.zeros_like(y) if y_dot is None else y_dot


# --- gradients w.r.t. Keras variables ------------------------------------------------------------


def _param_grad_tensorflow(loss_fn: Callable[[], Tensor], variables: Sequence[Any]):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, list(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return loss, grads


def _param_grad_jax(loss_fn: Callable[[], Tensor], variables: Sequence[Any]):
    import jax

    def pure_loss(values: list[Tensor]) -> Tensor:
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return loss_fn()

    return jax.value_and_grad(pure_loss)([v.value for v in variables])


def _param_grad_torch(loss_fn: Callable[[], Tensor], variables: Sequence[Any]):
    import torch

    with torch.enable_grad():
        loss = loss_fn()
        grads = torch.autograd.grad(
            loss, [v.value for v in variables], allow_unused=True, materialize_grads=True
        )
    return loss.detach(), list(grads)


def value_and_param_grad(
    loss_fn: Callable[[], Tensor], variables: Sequence[Any]
) -> tuple[Tensor, list[Tensor]]:
    """(loss, [∂loss/∂v for v in variables]) for a scalar loss_fn() reading Keras variables.

    loss_fn must not assign to variables (no BatchNorm updates inside it).
    """
    return _dispatch(
        {"tensorflow": _param_grad_tensorflow, "jax": _param_grad_jax, "torch": _param_grad_torch}
    )(loss_fn, variables)


# --- compilation ---------------------------------------------------------------------------------


def _jit_tensorflow(
    fn: Callable[..., Any],
    variables: Sequence[Any] | None,
    jit_compile: bool,
    example_args: Sequence[Tensor] | None,
):
    import tensorflow as tf

    if example_args is None:
        # one tf.function per argument ranks: reduce_retracing relaxes the shapes of a later call,
        # across ranks to an unknown rank, which keras.ops.shape refuses
        by_ranks: dict[tuple[int, ...], Callable[..., Any]] = {}

        def call(*args: Any) -> Any:
            ranks = tuple(len(arg.shape) for arg in tf.nest.flatten(args))
            if ranks not in by_ranks:
                by_ranks[ranks] = tf.function(fn, jit_compile=jit_compile, reduce_retracing=True)
            return by_ranks[ranks](*args)

        return call
    compiled = tf.function(fn, jit_compile=jit_compile, reduce_retracing=True)
    # the concrete function is called without the tf.function's argument binding and trace
    # lookup: about 0.2 ms less per call on a 2-core CPU
    specs = [tf.TensorSpec.from_tensor(tf.convert_to_tensor(a)) for a in example_args]
    return compiled.get_concrete_function(*specs)


def _jit_jax(
    fn: Callable[..., Any],
    variables: Sequence[Any] | None,
    jit_compile: bool,
    example_args: Sequence[Tensor] | None,
):
    import jax

    if variables is None:
        return jax.jit(fn)
    variables = list(variables)

    @jax.jit
    def pure_fn(values: list[Tensor], *args: Any) -> Any:
        with keras.StatelessScope(state_mapping=list(zip(variables, values, strict=True))):
            return fn(*args)

    return lambda *args: pure_fn([v.value for v in variables], *args)


def _jit_torch(
    fn: Callable[..., Any],
    variables: Sequence[Any] | None,
    jit_compile: bool,
    example_args: Sequence[Tensor] | None,
):
    import torch

    return torch.compile(fn) if jit_compile else fn


def jit(
    fn: Callable[..., Any],
    variables: Sequence[Any] | None = None,
    jit_compile: bool = False,
    example_args: Sequence[Tensor] | None = None,
) -> Callable[..., Any]:
    """Compile fn(*tensors) for repeated calls with same-shaped tensor arguments.

    JAX: ``jax.jit`` (always XLA). Keras variables that fn reads are baked in as constants at
    the first trace unless listed in `variables`, whose current values are then passed on
    every call (so later weight updates are seen). Build networks before jitting.
    TensorFlow: ``tf.function`` (XLA only with jit_compile=True; variables are always live).
    PyTorch: fn unchanged, or ``torch.compile(fn)`` with jit_compile=True.
    Non-tensor arguments (Python floats, ints) must be bound beforehand (functools.partial).
    ``example_args``: tensors whose shapes and dtypes every call repeats, for a function called
    once per step from the host (a SciPy solver's right-hand side). TensorFlow then traces now
    and returns the concrete function, which must be called with tensors of exactly those
    shapes and dtypes. JAX (whose jitted calls already dispatch in C++) and PyTorch ignore it.
    """
    return _dispatch({"tensorflow": _jit_tensorflow, "jax": _jit_jax, "torch": _jit_torch})(
        fn, variables, jit_compile, example_args
    )


def from_host(array: np.ndarray) -> Tensor:
    """A copy of a host NumPy array as a tensor of the active backend, keeping its dtype.

    TensorFlow and JAX skip ``keras.ops.convert_to_tensor``'s checks (``tf.constant`` /
    ``jnp.asarray`` directly), which samplers that cross the host boundary once per score
    evaluation (``solve_ivp``) would pay every time. PyTorch goes through Keras, which also places
    the tensor on Keras' device.
    """
    backend = name()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.constant(array)
    if backend == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array)
    return ops.convert_to_tensor(array)


def jit_argument(array: np.ndarray) -> Any:
    """A host NumPy array as an argument of a function compiled by `jit`, by the cheapest route.

    JAX: the array itself, which the compiled call transfers in its C++ dispatch, sooner than a
    ``jnp.asarray`` first; elsewhere ``from_host(array)``.
    """
    return array if name() == "jax" else from_host(array)


@contextlib.contextmanager
def no_grad() -> Iterator[None]:
    """Context without gradient recording (PyTorch: torch.no_grad; elsewhere a no-op).

    Input gradients taken with `vjp` inside it still work.
    """
    if name() == "torch":
        import torch

        with torch.no_grad():
            yield
    else:
        yield


# =================================================================================================
# Train-step hook (section owned by the ScoreModel helper; appended, the code above is not theirs).
# Keras' train_step is stateful on TensorFlow / PyTorch (variables are assigned) and stateless on
# JAX (a state tuple goes in and out), so "update some non-trainable variables right after the
# optimizer step" (the EMA of the weights) needs these few lines per backend.
# =================================================================================================

# update_fn(trainable values, non-trainable values) -> {index in non_trainable_variables: value}
StateUpdateFn = Callable[[Sequence[Tensor], Sequence[Tensor]], dict[int, Tensor]]


def _assign_state_updates(model: Any, update_fn: StateUpdateFn) -> None:
    """Evaluate update_fn on the model's current variable values and assign the results."""
    non_trainable = model.non_trainable_variables
    updates = update_fn(
        [v.value for v in model.trainable_variables], [v.value for v in non_trainable]
    )
    for index, value in updates.items():
        non_trainable[index].assign(value)


def _train_then_update_stateful(
    model: Any, train_step: Callable[..., Any], update_fn: StateUpdateFn, data: Any
) -> Any:
    """TensorFlow: run the step, then assign (tf.function orders the reads after the step)."""
    logs = train_step(data)
    _assign_state_updates(model, update_fn)
    return logs


def _train_then_update_torch(
    model: Any, train_step: Callable[..., Any], update_fn: StateUpdateFn, data: Any
) -> Any:
    """PyTorch: run the step, then assign without recording a graph."""
    import torch

    logs = train_step(data)
    with torch.no_grad():
        _assign_state_updates(model, update_fn)
    return logs


def _train_then_update_jax(
    model: Any, train_step: Callable[..., Any], update_fn: StateUpdateFn, state: Any, data: Any
) -> Any:
    """JAX: run the stateless step, then replace entries of its non-trainable state."""
    logs, (trainable, non_trainable, optimizer_vars, metrics_vars) = train_step(state, data)
    non_trainable = list(non_trainable)
    for index, value in update_fn(trainable, non_trainable).items():
        non_trainable[index] = value
    return logs, (trainable, non_trainable, optimizer_vars, metrics_vars)


def train_step_then_update(
    model: Any, train_step: Callable[..., Any], update_fn: StateUpdateFn, *args: Any
) -> Any:
    """Run Keras' `train_step(*args)`, then set the model's non-trainable variables from update_fn.

    Call from an overridden ``Model.train_step(self, *args)`` with ``super().train_step``;
    update_fn sees the values after the optimizer step and must be pure (keras.ops only).
    """
    return _dispatch(
        {
            "tensorflow": _train_then_update_stateful,
            "jax": _train_then_update_jax,
            "torch": _train_then_update_torch,
        }
    )(model, train_step, update_fn, *args)


# =================================================================================================
# Sampler hook (section owned by the samplers helper; appended, the code above is not theirs).
# Whether `jit` freezes the Keras variables a function reads decides whether a compiled sampler
# step may be reused after the weights change.
# =================================================================================================


def jit_bakes_variables() -> bool:
    """True where `jit` without `variables` compiles the variables it reads as constants (JAX)."""
    return name() == "jax"


# =================================================================================================
# Distribution hook (section owned by the scaling-out helper; appended, the code above is not
# theirs). Data-parallel training on the JAX backend goes through keras.distribution (a device
# mesh; one SPMD program sees the whole global batch), on TensorFlow through tf.distribute (one
# replica per device, each running the train step on its slice of the global batch). Keras has
# neither for PyTorch. The policy (which mode, how many devices) is scoregen_keras.distribute's.
# =================================================================================================

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
    return _dispatch({"jax": _data_parallel_jax, "tensorflow": _data_parallel_tensorflow})(
        n_devices
    )


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


# Keras 3 fit under tf.distribute.MultiWorkerMirroredStrategy (keras-team/keras#20585, checked on
# 3.15.1) reduces the first distributed batch eagerly to build the model and reduces scalar logs
# along axis 0; both fail there. With these two hooks (used by ScoreModel) a model's fit runs.


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


# =================================================================================================
# Torch files (section owned by the FID helper; appended, the code above is not theirs). A .pth
# state_dict (pytorch-fid's published Inception weights) is read through torch itself under any
# Keras backend, with torch.load's weights_only unpickler, which refuses a pickle that would
# import or run code.
# =================================================================================================

TORCH_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)
"""What torch.load raises for a refused pickle, a corrupt archive, an empty or unreadable file."""
TORCH_CAUSE_MARK = "WeightsUnpickler error:"
"""What precedes the cause (the offending global or opcode) in torch's refusal."""
TORCH_PROTOCOL_WARNING = "Detected pickle protocol"


def _first_sentence(text: str) -> str:
    """Text up to its first full stop or line break."""
    return re.split(r"\.\s|\n", text.strip() + "\n", maxsplit=1)[0].rstrip(".")


def _torch_load_failure(error: BaseException) -> str:
    """What torch.load's (long, multi-line) message says, as one clause."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError):  # the weights_only unpickler said no
        cause = _first_sentence(text.split(TORCH_CAUSE_MARK, 1)[-1])
        return f"torch.load(weights_only=True) refused it, as no plain pickle of tensors ({cause})"
    return f"torch.load could not read it ({_first_sentence(text) or type(error).__name__})"


def read_torch_tensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The {name: array} of a file torch.save wrote from a dict of tensors (a state_dict).

    Read with ``torch.load(weights_only=True, map_location="cpu")``, so nothing in the file runs.
    Raises ModuleNotFoundError without torch, and ValueError (one clause, "torch.load could not
    read it (...)", "... refused it ...", "it holds a list, ...") for a file torch refuses or
    cannot read, or that holds anything but str -> tensor.
    """
    import torch

    try:
        with warnings.catch_warnings():  # a pickle protocol other than torch.save's is refused
            warnings.filterwarnings("ignore", TORCH_PROTOCOL_WARNING, UserWarning)
            loaded = torch.load(os.fspath(path), weights_only=True, map_location="cpu")
    except TORCH_LOAD_ERRORS as error:
        raise ValueError(_torch_load_failure(error)) from error
    if not isinstance(loaded, dict):
        raise ValueError(f"it holds a {type(loaded).__name__}, not a dict of tensors")
    arrays = {}
    for key, value in loaded.items():
        if not (isinstance(key, str) and isinstance(value, torch.Tensor)):
            raise ValueError(f"entry {key!r} is a {type(value).__name__}, not a named tensor")
        try:
            arrays[key] = value.detach().cpu().numpy()
        except TypeError as error:  # dtypes NumPy lacks (bfloat16)
            raise ValueError(
                f"entry {key!r} has dtype {value.dtype}, which NumPy cannot hold"
            ) from error
    return arrays
