"""Compilation for repeated calls (`jit`), and host arrays moved onto the backend cheaply."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from scoregen_keras.backend.active import dispatch, name

Tensor = Any


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
    return dispatch({"tensorflow": _jit_tensorflow, "jax": _jit_jax, "torch": _jit_torch})(
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


def jit_bakes_variables() -> bool:
    """True where `jit` without `variables` compiles the variables it reads as constants (JAX)."""
    return name() == "jax"
