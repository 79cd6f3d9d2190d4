"""The only framework-specific code: autodiff, compilation, train-step and distribution hooks,
and the network operations with a faster form on some backends (FIR resampling, convolution,
GroupNorm, dropout).

Every public function dispatches on ``keras.backend.backend()`` to a few lines of backend code that
import their framework lazily, so importing this package costs nothing beyond Keras (design rule 2).
"""

from scoregen_keras.backend.active import dispatch, name
from scoregen_keras.backend.autodiff import (
    VjpFn,
    input_gradient,
    jvp,
    no_grad,
    value_and_input_grad,
    value_and_param_grad,
    vjp,
)
from scoregen_keras.backend.compile import from_host, jit, jit_argument, jit_bakes_variables
from scoregen_keras.backend.distribution import (
    JAX_HOST_ENV,
    TF_CONFIG_ENV,
    XLA_CPU_COUNT_FLAG,
    Replicas,
    batch_devices,
    clip_after_all_reduce,
    data_parallel,
    device_count,
    first_local_batch,
    from_host_batch,
    initialize_hosts,
    logs_for_multi_worker,
    multi_worker,
    replica_position,
    requested_hosts,
    scale_loss_for_replicas,
    split_host_cpu,
)
from scoregen_keras.backend.ops import (
    conv2d,
    conv_transpose2d,
    dense,
    dropout,
    group_norm,
    upfirdn2d,
)
from scoregen_keras.backend.torch_files import (
    TORCH_INSTALL_HINT,
    read_torch_file,
    read_torch_tensors,
)
from scoregen_keras.backend.train_step import StateUpdateFn, train_step_then_update

__all__ = [
    "JAX_HOST_ENV",
    "TF_CONFIG_ENV",
    "TORCH_INSTALL_HINT",
    "XLA_CPU_COUNT_FLAG",
    "Replicas",
    "StateUpdateFn",
    "VjpFn",
    "batch_devices",
    "clip_after_all_reduce",
    "conv2d",
    "conv_transpose2d",
    "data_parallel",
    "dense",
    "device_count",
    "dispatch",
    "dropout",
    "first_local_batch",
    "from_host",
    "from_host_batch",
    "group_norm",
    "initialize_hosts",
    "input_gradient",
    "jit",
    "jit_argument",
    "jit_bakes_variables",
    "jvp",
    "logs_for_multi_worker",
    "multi_worker",
    "name",
    "no_grad",
    "read_torch_file",
    "read_torch_tensors",
    "replica_position",
    "requested_hosts",
    "scale_loss_for_replicas",
    "split_host_cpu",
    "train_step_then_update",
    "upfirdn2d",
    "value_and_input_grad",
    "value_and_param_grad",
    "vjp",
]
