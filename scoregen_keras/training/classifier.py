"""A noise-conditional classifier p_t(y | x_t) for class-conditional sampling (Song et al. 2021).

The classifier sees x_t = alpha(t) x_0 + std(t) z, the forward SDE's noised data at t ~ U(eps, T),
and is trained with `model.fit` on the cross-entropy of the clean labels. Its input is scaled by
c_in = 1 / sqrt(alpha^2 + std^2) (as the score networks' preconditioning, so unit-variance data
gives unit-variance inputs at every t) and t enters through the MLP score net's sinusoidal
embedding. ``log_posterior_grad_fn`` turns it into grad_x log p_t(y | x), by reverse mode on the
backend, for the guided score s(x, t) + scale * grad_x log p_t(y | x).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import keras
import numpy as np
from keras import ops

from scoregen_keras import backend
from scoregen_keras import sde as sde_lib
from scoregen_keras.data import numbered_classes
from scoregen_keras.networks.mlp import ACTIVATIONS, sinusoidal_embedding
from scoregen_keras.training.score_model import TRAIN_EPS, resolve_sde

Tensor = Any
LogPosteriorGradFn = Callable[[Tensor, Tensor, Tensor], Tensor]

DEFAULT_HIDDEN = (128, 128)
DEFAULT_N_FREQ = 8
CLASSIFIER_LEARNING_RATE = 1e-3
DEFAULT_STEPS = 2000
DEFAULT_BATCH_SIZE = 256


@keras.saving.register_keras_serializable(package="scoregen")
class NoiseConditionalClassifier(keras.Model):
    """MLP over concat(c_in x_t (flattened), emb(t)) -> class logits; call(x, t)."""

    def __init__(
        self,
        n_classes: int,
        sde: str | sde_lib.SDE | dict[str, Any] = "ve",
        hidden: Sequence[int] = DEFAULT_HIDDEN,
        activation: str = "silu",
        n_freq: int = DEFAULT_N_FREQ,
        seed: int | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        """n_classes logits; ``sde`` ("ve" | "vp" | "subvp", an SDE or its config) sets c_in.

        ``class_names`` (default "0", "1", ...) name the classes, and are saved with the model.
        """
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        self.n_classes, self.n_freq = int(n_classes), int(n_freq)
        names = numbered_classes(self.n_classes) if class_names is None else class_names
        self.class_names = tuple(str(name) for name in names)
        if len(self.class_names) != self.n_classes:
            raise ValueError(f"{len(self.class_names)} class names given for {n_classes} classes")
        self.hidden, self.activation, self.seed = tuple(int(h) for h in hidden), activation, seed
        self.sde = resolve_sde(sde)
        if self.sde is None:
            raise ValueError("a noise-conditional classifier needs an SDE, not 'ncsn'")

        def init(index: int) -> keras.initializers.Initializer:
            """Glorot-uniform, seeded per layer when a seed is given."""
            return keras.initializers.GlorotUniform(None if seed is None else seed + index)

        self.hidden_layers = [
            keras.layers.Dense(width, kernel_initializer=init(l), name=f"dense_{l}")
            for l, width in enumerate(self.hidden)
        ]
        self.out_layer = keras.layers.Dense(
            self.n_classes, kernel_initializer=init(len(self.hidden)), name="logits"
        )

    def build(self, x_shape: Sequence[int | None], t_shape: Sequence[int | None]) -> None:
        """Create the weights for examples of shape x_shape = (batch, *dims); saved and reloaded."""
        width = math.prod(x_shape[1:]) + 1 + 2 * self.n_freq  # flattened x, then emb(t)
        for layer in self.hidden_layers:
            layer.build((None, width))
            width = layer.units
        self.out_layer.build((None, width))

    def call(self, x: Tensor, t: Tensor, training: bool = False) -> Tensor:
        """Logits (batch, n_classes) of x_t (batch, *dims) at times t (batch,)."""
        x = sde_lib.to_float(x)
        t = sde_lib.per_example(t, x)
        alpha, std = self.sde.marginal_coefficients(t)
        c_in = ops.rsqrt(ops.square(alpha) + ops.square(std))
        x_flat = ops.reshape(x, (ops.shape(x)[0], -1)) * c_in[:, None]
        h = ops.concatenate([x_flat, sinusoidal_embedding(t, self.n_freq)], axis=1)
        act = ACTIVATIONS[self.activation]
        for layer in self.hidden_layers:
            h = act(layer(h))
        return self.out_layer(h)

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments (plus name and trainable)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "n_classes": self.n_classes,
            "sde": self.sde.to_config(),
            "hidden": list(self.hidden),
            "activation": self.activation,
            "n_freq": self.n_freq,
            "seed": self.seed,
            "class_names": list(self.class_names),
        }


class NoisedDataClassifier(keras.Model):
    """Training wrapper: call(x_0) draws t ~ U(eps, T) then z, and classifies x_t."""

    def __init__(
        self,
        classifier: NoiseConditionalClassifier,
        train_eps: float = TRAIN_EPS,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Wrap ``classifier``; the noise comes from a SeedGenerator(seed) held here."""
        super().__init__(**kwargs)
        self.classifier = classifier
        self.train_eps = float(train_eps)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x: Tensor, training: bool = False) -> Tensor:
        """Logits of a forward-noised copy of x; draws t (batch,), then z of x's shape."""
        x = sde_lib.to_float(x)
        sde = self.classifier.sde
        t = keras.random.uniform(
            (ops.shape(x)[0],), self.train_eps, sde.T, dtype=x.dtype, seed=self.seed_generator
        )
        z = keras.random.normal(ops.shape(x), dtype=x.dtype, seed=self.seed_generator)
        mean, std = sde.marginal_prob(x, t)
        return self.classifier(mean + sde_lib.batch_scalar(std, x) * z, t, training=training)


class _LabelledBatches(keras.utils.PyDataset):
    """``steps`` batches (x[i], y[i]) of examples drawn with replacement, made one at a time."""

    def __init__(
        self, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int, seed: int
    ) -> None:
        """Indices from default_rng(seed).integers: batch k is draws k b .. (k + 1) b - 1."""
        super().__init__()
        self.x, self.y = x, y
        index = np.random.default_rng(seed).integers(0, len(x), steps * batch_size)
        self.index = index.reshape(steps, batch_size)

    def __len__(self) -> int:
        """Number of batches (training steps)."""
        return len(self.index)

    def __getitem__(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Examples and labels of batch k."""
        return self.x[self.index[k]], self.y[self.index[k]]


def train_classifier(
    x: np.ndarray,
    y: np.ndarray,
    sde: str | sde_lib.SDE | dict[str, Any],
    steps: int = DEFAULT_STEPS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    n_classes: int | None = None,
    hidden: Sequence[int] = DEFAULT_HIDDEN,
    learning_rate: float = CLASSIFIER_LEARNING_RATE,
    train_eps: float = TRAIN_EPS,
    verbose: int = 0,
    class_names: Sequence[str] | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> NoiseConditionalClassifier:
    """Train a NoiseConditionalClassifier on (x, y) noised by ``sde`` with ``model.fit``.

    ``steps`` Adam steps of ``batch_size`` examples drawn with replacement (NumPy generator of
    ``seed``), made batch by batch; weights and noise are seeded from ``seed`` too. Labels are
    ints in [0, n_classes); n_classes defaults to len(class_names), else to max(y) + 1.
    """
    x = np.asarray(x, dtype=keras.config.floatx())
    y = np.asarray(y, dtype=np.int32)
    if n_classes is None:
        n_classes = int(y.max()) + 1 if class_names is None else len(class_names)
    classifier = NoiseConditionalClassifier(
        int(n_classes), sde, hidden=hidden, seed=seed, class_names=class_names
    )
    trainer = NoisedDataClassifier(classifier, train_eps=train_eps, seed=seed)
    trainer.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    batches = _LabelledBatches(x, y, steps, batch_size, seed)
    # shuffle=False: fit would shuffle the batches' order with Python's unseeded `random`
    trainer.fit(batches, epochs=1, verbose=verbose, callbacks=list(callbacks), shuffle=False)
    return classifier


def log_posterior_grad_fn(classifier: keras.Model) -> LogPosteriorGradFn:
    """fn(x, t, y) = grad_x log p_t(y | x) = grad_x log_softmax(classifier(x, t))[y] (backprop)."""

    def grad(x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        x = sde_lib.to_float(x)
        labels = ops.broadcast_to(ops.cast(ops.convert_to_tensor(y), "int32"), (x.shape[0],))
        one_hot = ops.one_hot(labels, classifier.n_classes, dtype=x.dtype)

        def log_posterior(x_in: Tensor) -> Tensor:
            return ops.sum(ops.log_softmax(classifier(x_in, t), axis=-1) * one_hot, axis=-1)

        return backend.input_gradient(log_posterior, x, create_graph=False)

    return grad
