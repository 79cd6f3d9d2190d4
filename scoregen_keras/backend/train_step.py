"""Update non-trainable variables right after Keras' optimizer step (the EMA of the weights).

Keras' train_step is stateful on TensorFlow and PyTorch (variables are assigned) and stateless on
JAX (a state tuple goes in and out), so this needs a few lines per backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from scoregen_keras.backend.active import dispatch

Tensor = Any
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
    return dispatch(
        {
            "tensorflow": _train_then_update_stateful,
            "jax": _train_then_update_jax,
            "torch": _train_then_update_torch,
        }
    )(model, train_step, update_fn, *args)
