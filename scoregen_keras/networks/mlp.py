"""Toy MLP score network for low-dimensional data: the maths of ``reference.models.MLPScore``.

    u    = c                 (conditioning="t")   or  log(c)   (conditioning="sigma")
    emb  = concat(u, sin(freqs*u), cos(freqs*u)),  freqs = 2**arange(n_freq) * pi / 2
    h_0  = concat(x, emb);  h_{l+1} = act(h_l @ W_l + b_l);  out = h_L @ W_out + b_out

The network returns the raw output; the score is ``losses.precondition(net, sde)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

Tensor = Any

ACTIVATIONS = {"silu": ops.silu, "softplus": ops.softplus}
# conditioning -> map from the conditioning scalar c to the embedded scalar u
EMBEDDED_SCALAR = {"t": lambda c: c, "sigma": ops.log}
OUT_INIT_SCALE = 1e-2  # small output layer, as the reference: the initial score is close to 0


def sinusoidal_embedding(u: Tensor, n_freq: int) -> Tensor:
    """Fixed embedding concat(u, sin(freqs u), cos(freqs u)), freqs = 2**k * pi / 2, k < n_freq."""
    freqs = ops.convert_to_tensor(2.0 ** np.arange(n_freq) * (math.pi / 2), dtype=u.dtype)
    u = u[:, None]
    phase = u * freqs[None, :]
    return ops.concatenate([u, ops.sin(phase), ops.cos(phase)], axis=1)


@keras.saving.register_keras_serializable(package="scoregen")
class MLPScoreNet(keras.Model):
    """Noise-conditional MLP with a fixed sinusoidal embedding of t or log sigma; call(x, cond)."""

    conditioning: str = "t"

    def __init__(
        self,
        dim: int,
        hidden: Sequence[int] = (128, 128, 128),
        activation: str = "silu",
        conditioning: str = "t",
        n_freq: int = 8,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if conditioning not in EMBEDDED_SCALAR:
            raise ValueError(
                f"conditioning must be one of {sorted(EMBEDDED_SCALAR)}, got {conditioning!r}"
            )
        self.dim, self.hidden, self.n_freq = int(dim), tuple(int(h) for h in hidden), int(n_freq)
        self.activation, self.conditioning = activation, conditioning
        # LeCun normal (untruncated), as the reference: W ~ N(0, 1/fan_in)
        lecun = keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal")
        self.hidden_layers = [
            keras.layers.Dense(width, kernel_initializer=lecun, name=f"dense_{l}")
            for l, width in enumerate(self.hidden)
        ]
        self.out_layer = keras.layers.Dense(
            self.dim,
            kernel_initializer=keras.initializers.RandomNormal(stddev=OUT_INIT_SCALE),
            name="dense_out",
        )
        width = self.dim + 1 + 2 * self.n_freq
        for layer in [*self.hidden_layers, self.out_layer]:
            layer.build((None, width))
            width = layer.units
        self.built = True

    def embed(self, cond: Tensor) -> Tensor:
        """Embedding (batch, 1 + 2 n_freq) of the conditioning scalar cond (batch,)."""
        cond = ops.cast(cond, self.compute_dtype)
        return sinusoidal_embedding(EMBEDDED_SCALAR[self.conditioning](cond), self.n_freq)

    def call(self, x: Tensor, cond: Tensor, training: bool = False) -> Tensor:
        """Raw output (batch, dim) for x (batch, dim) and cond (batch,) (t or sigma)."""
        act = ACTIVATIONS[self.activation]
        h = ops.concatenate([ops.cast(x, self.compute_dtype), self.embed(cond)], axis=1)
        for layer in self.hidden_layers:
            h = act(layer(h))
        return self.out_layer(h)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (plus name, dtype, trainable)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.saving.serialize_keras_object(self.dtype_policy),
            "dim": self.dim,
            "hidden": list(self.hidden),
            "activation": self.activation,
            "conditioning": self.conditioning,
            "n_freq": self.n_freq,
        }


def load_reference_params(net: MLPScoreNet, params: Mapping[str, np.ndarray]) -> None:
    """Copy the weights of a ``reference.models.MLPScore`` ("W0", "b0", ..., "W_out", "b_out")."""
    names = [(f"W{l}", f"b{l}") for l in range(len(net.hidden_layers))] + [("W_out", "b_out")]
    layers = [*net.hidden_layers, net.out_layer]
    expected = {key for pair in names for key in pair}
    if set(params) != expected:
        raise ValueError(f"expected parameters {sorted(expected)}, got {sorted(params)}")
    for layer, (w_name, b_name) in zip(layers, names, strict=True):
        for variable, key in ((layer.kernel, w_name), (layer.bias, b_name)):
            value = np.asarray(params[key])
            if tuple(variable.shape) != value.shape:
                raise ValueError(f"{key}: shape {value.shape} != {tuple(variable.shape)}")
            variable.assign(value.astype(variable.dtype))
