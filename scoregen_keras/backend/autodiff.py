"""Autodiff on the active backend: input VJPs and JVPs, parameter gradients, no-grad contexts.

Every function nests: an input gradient taken inside `value_and_param_grad`'s loss is itself
differentiated w.r.t. the parameters (what exact and sliced score matching need)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
from keras import ops

from scoregen_keras.backend.active import dispatch, name

Tensor = Any
VjpFn = Callable[[Tensor], Tensor]


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
    return dispatch({"tensorflow": _vjp_tensorflow, "jax": _vjp_jax, "torch": _vjp_torch})(
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


def jvp(fn: Callable[[Tensor], Tensor], x: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """(fn(x), J v) with J = ∂fn/∂x, by forward mode (``keras.ops.jvp`` on every backend)."""
    x = ops.convert_to_tensor(x)
    y, y_dot = ops.jvp(fn, (x,), (ops.cast(v, x.dtype),))
    # TensorFlow's ForwardAccumulator returns None for an output that does not depend on x
    return y, ops.zeros_like(y) if y_dot is None else y_dot


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
    return dispatch(
        {"tensorflow": _param_grad_tensorflow, "jax": _param_grad_jax, "torch": _param_grad_torch}
    )(loss_fn, variables)


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
