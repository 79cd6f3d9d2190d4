"""ScoreModel: a network, a noise process and a score-matching loss, trained with `model.fit`.

The noise process is an SDE ("ve", "vp", "subvp"; the score SDE paper) or a discrete NCSN
schedule ("ncsn": geometric sigmas, Song & Ermon 2019). The network's raw output becomes a score
through the shared preconditioning ``score = net(c_in x, cond) / std`` (``losses.precondition``).

Training draws all of its randomness from one ``keras.random.SeedGenerator`` held by the model,
in this order per step: the noise level (t ~ U(train_eps, T), or a sigma index ~ U{0..L-1}),
then z ~ N(0, I) of the data's shape, then (sliced losses) the projections v. A fixed seed
therefore reproduces a run, and the generator's state is saved with the model so a resumed run
continues the same stream. (`evaluate` draws from the same generator, so interleaving it with
training changes the training draws.) Under tf.distribute every replica draws the noise of the
whole global batch and keeps its own rows, so the noise of different examples stays independent
and equals that of a single-device run.

Mixed precision: the network may compute in float16 / bfloat16 (its layers' dtype policy); this
model stays float32: σ, t, the SDE coefficients, the preconditioning and the loss.

After every optimizer step an exponential moving average (EMA) of the network's trainable weights
is updated (score_sde: decay min(rate, (1+n)/(10+n)) at update n). The EMA weights are what
`score(..., use_ema=True)` and `score_fn()` use, for samplers.

``model(x)`` without a conditioning is the identity: Keras' train step always makes one forward
pass before the loss, and this model's loss (which evaluates the network on noisy data) lives in
`compute_loss`, so that pass costs nothing. ``model(x, cond)`` is the score with the live weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import keras
from keras import ops

import scoregen_keras.networks  # noqa: F401  (registers the networks for deserialisation)
from scoregen_keras import backend, losses
from scoregen_keras import sde as sde_lib
from scoregen_keras.choices import NCSN_SDE
from scoregen_keras.training.ema import EMA_RATE_VE, EMA_RATE_VP, ema_decay, ema_update
from scoregen_keras.training.schedules import (
    DEFAULT_LEARNING_RATE,
    DEFAULT_WARMUP_STEPS,
    LinearWarmup,
    WarmupCosineDecay,
)

Tensor = Any
ScoreFn = Callable[[Tensor, Tensor], Tensor]

NCSN = NCSN_SDE
# short names of the SDEs -> class names understood by sde.sde_from_config
SDE_NAMES = {"ve": "VESDE", "vp": "VPSDE", "subvp": "SubVPSDE"}
# EMA rates of the papers' configs, by noise process (SDE class name or "ncsn")
DEFAULT_EMA_RATES = {
    "VESDE": EMA_RATE_VE,
    "VPSDE": EMA_RATE_VP,
    "SubVPSDE": EMA_RATE_VP,
    NCSN: EMA_RATE_VE,
}
# NCSN defaults for 32x32 images (design.md): sigma_1 = 1, sigma_L = 0.01, L = 10
NCSN_SIGMA_MAX, NCSN_SIGMA_MIN, NCSN_NUM_SCALES = 1.0, 0.01, 10
# smallest training time t ~ U(eps, T) of the continuous loss (score_sde get_sde_loss_fn, all SDEs)
TRAIN_EPS = 1e-5
# Adam of the score SDE paper's configs
ADAM_BETA_1, ADAM_BETA_2, ADAM_EPSILON = 0.9, 0.999, 1e-8
GLOBAL_CLIPNORM = 1.0
# loss name -> noise processes it trains with
SDE_LOSSES = ("dsm", "ssm", "ssm_vr", "exact")
NCSN_LOSSES = ("ncsn", "ssm", "ssm_vr", "exact")
SCORE_MATCHING_VARIANTS = {"ssm": "sliced", "ssm_vr": "sliced_vr", "exact": "exact"}
SEED_STATE_KEY = "seed_generator_state"


class _NetworkCall:
    """A network seen as net(x, cond) with its `conditioning` attribute, as `losses` expects."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], conditioning: str) -> None:
        """Wrap fn(x, cond) -> raw output."""
        self.fn = fn
        self.conditioning = conditioning

    def __call__(self, x: Tensor, cond: Tensor) -> Tensor:
        """Raw network output, in float32 even when the network computes in float16 / bfloat16."""
        return sde_lib.to_float(self.fn(x, cond))


def resolve_sde(sde: str | sde_lib.SDE | dict[str, Any]) -> sde_lib.SDE | None:
    """SDE object from a short name, an SDE or its `to_config()` dict; None for "ncsn"."""
    if isinstance(sde, sde_lib.SDE):
        return sde
    if isinstance(sde, dict):
        return sde_lib.sde_from_config(sde)
    if sde == NCSN:
        return None
    if sde not in SDE_NAMES:
        raise ValueError(
            f"sde must be one of {[*SDE_NAMES, NCSN]}, an SDE or its config; got {sde!r}"
        )
    return sde_lib.sde_from_config({"type": SDE_NAMES[sde]})


@keras.saving.register_keras_serializable(package="scoregen")
class ScoreModel(keras.Model):
    """Score model trained by `fit`: network + SDE or NCSN sigmas + loss, with an EMA of weights."""

    def __init__(
        self,
        network: keras.Model,
        sde: str | sde_lib.SDE | dict[str, Any] = "ve",
        sigmas: Sequence[float] | None = None,
        loss: str | None = None,
        weighting: str = "std2",
        reduce: str | None = None,
        ema_rate: float | None = None,
        seed: int = 0,
        projection: str = "gaussian",
        train_eps: float = TRAIN_EPS,
        input_shape: Sequence[int | None] | None = None,
        preconditioning: str = "edm",
        **kwargs: Any,
    ) -> None:
        """Set up the model; it is built at once when the network is (or input_shape is given).

        sde: "ve" | "vp" | "subvp" (paper defaults), an SDE object or its config, or "ncsn".
        sigmas: the NCSN noise levels, decreasing (default geometric 1 -> 0.01, 10 levels).
        loss: "dsm" (continuous SDE loss; default for SDEs), "ncsn" (default for "ncsn"), "ssm",
            "ssm_vr", "exact". weighting ("std2" | "likelihood") and reduce ("sum" | "mean" |
            "squared_norm"; None = the loss function's default) apply to "dsm" / "ncsn".
        ema_rate: None = 0.999 for VE / NCSN, 0.9999 for VP / sub-VP.
        preconditioning: the network -> score map, "edm" (net(c_in x, cond) / std) or
            "score_sde" (the map of score_sde's trained networks; ``losses.precondition``).
        """
        super().__init__(**kwargs)
        self.network = network
        self.sde = resolve_sde(sde)
        self.noise_kind = NCSN if self.sde is None else type(self.sde).__name__
        if self.sde is None:
            levels = sde_lib.geometric_sigmas(NCSN_SIGMA_MAX, NCSN_SIGMA_MIN, NCSN_NUM_SCALES)
            self.sigma_values = [
                float(s) for s in (ops.convert_to_numpy(levels) if sigmas is None else sigmas)
            ]
            self.sigmas = sde_lib.to_float(self.sigma_values)
        else:
            if sigmas is not None:
                raise ValueError('sigmas are for sde="ncsn" only')
            self.sigma_values, self.sigmas = None, None
        allowed = NCSN_LOSSES if self.sde is None else SDE_LOSSES
        self.loss_name = allowed[0] if loss is None else loss
        if self.loss_name not in allowed:
            raise ValueError(f"loss must be one of {allowed} for this noise process, got {loss!r}")
        if weighting not in losses.WEIGHTINGS:
            raise ValueError(f"weighting must be one of {losses.WEIGHTINGS}, got {weighting!r}")
        if weighting != "std2" and self.loss_name != "dsm":
            raise ValueError('weighting="likelihood" applies to loss="dsm" only')
        if reduce is not None and reduce not in losses.REDUCTIONS:
            raise ValueError(f"reduce must be one of {sorted(losses.REDUCTIONS)}, got {reduce!r}")
        if projection not in losses.PROJECTIONS:
            raise ValueError(f"projection must be one of {losses.PROJECTIONS}, got {projection!r}")
        self.weighting, self.reduce, self.projection = weighting, reduce, projection
        if preconditioning not in losses.PRECONDITIONINGS:
            raise ValueError(
                f"preconditioning must be one of {losses.PRECONDITIONINGS}, got {preconditioning!r}"
            )
        if preconditioning != "edm" and self.sde is None:
            raise ValueError('preconditioning="score_sde" needs an SDE, not sde="ncsn"')
        self.preconditioning = preconditioning
        self.ema_rate = float(DEFAULT_EMA_RATES[self.noise_kind] if ema_rate is None else ema_rate)
        self.seed = int(seed)
        self.train_eps = float(train_eps)
        self.seed_generator = keras.random.SeedGenerator(self.seed)
        self._data_shape: tuple[int | None, ...] | None = None
        if input_shape is not None or network.built:
            self.build(input_shape)

    # --- state ------------------------------------------------------------------------------
    def build(self, input_shape: Sequence[int | None] | None = None) -> None:
        """Build the network (if needed) from the data shape, then create the EMA variables."""
        if input_shape is not None:
            self._data_shape = tuple(input_shape)
        if not self.network.built:
            if self._data_shape is None:
                raise ValueError("ScoreModel needs input_shape=(batch, *dims) to build the network")
            batch = 1 if self._data_shape[0] is None else self._data_shape[0]
            x = ops.zeros((batch, *self._data_shape[1:]))
            self.network(x, self._cond_for_network(ops.ones((batch,))))
        self.ema_variables = [
            self.add_weight(
                shape=tuple(v.shape),
                dtype=v.dtype,
                initializer=lambda shape, dtype, source=v: ops.copy(source.value),
                trainable=False,
                name=f"ema_{i}",
            )
            for i, v in enumerate(self.network.trainable_variables)
        ]
        self.ema_updates = self.add_weight(
            shape=(), dtype="int32", initializer="zeros", trainable=False, name="ema_updates"
        )
        self.built = True

    def _cond_for_network(self, level: Tensor) -> Tensor:
        """A dummy conditioning of the network's kind for building (index 0 or the given level)."""
        if self.network.conditioning == "sigma_index":
            return ops.zeros(ops.shape(level), dtype="int32")
        return level

    def get_build_config(self) -> dict[str, Any]:
        """The data shape the model was built for (None when the network came built)."""
        return {"input_shape": None if self._data_shape is None else list(self._data_shape)}

    def build_from_config(self, config: dict[str, Any]) -> None:
        """Rebuild on load (no-op when __init__ already built from a built network)."""
        if not self.built:
            self.build(config.get("input_shape"))

    def save_own_variables(self, store: Any) -> None:
        """Save the EMA variables and counter plus the seed generator's state."""
        super().save_own_variables(store)
        store[SEED_STATE_KEY] = ops.convert_to_numpy(self.seed_generator.state.value)

    def load_own_variables(self, store: Any) -> None:
        """Load what `save_own_variables` wrote (seed state cast to this backend's dtype)."""
        own = {key: store[key] for key in store.keys() if key != SEED_STATE_KEY}
        super().load_own_variables(own)
        if SEED_STATE_KEY in store.keys():
            state = self.seed_generator.state
            state.assign(ops.cast(ops.convert_to_tensor(store[SEED_STATE_KEY][...]), state.dtype))

    # --- scores -----------------------------------------------------------------------------
    def _score_from(self, net: _NetworkCall) -> ScoreFn:
        """Preconditioned score function of a network call: (x, t) for SDEs, (x, sigma) for NCSN."""
        if self.sde is None:
            return losses.sigma_conditional_score(net, self.sigmas)
        return losses.precondition(net, self.sde, self.preconditioning)

    def _live_network(self, training: bool) -> _NetworkCall:
        """The network with its current (training) weights."""
        return _NetworkCall(
            lambda x, cond: self.network(x, cond, training=training), self.network.conditioning
        )

    def _ema_network(self) -> _NetworkCall:
        """The network evaluated with the EMA weights (a stateless call; nothing is swapped)."""

        def call(x: Tensor, cond: Tensor) -> Tensor:
            out, _ = self.network.stateless_call(
                [v.value for v in self.ema_variables],
                [v.value for v in self.network.non_trainable_variables],
                x,
                cond,
                training=False,
            )
            return out

        return _NetworkCall(call, self.network.conditioning)

    def score_fn(self, use_ema: bool = True) -> ScoreFn:
        """score_fn(x, t) (SDE) or score_fn(x, sigma) (NCSN); EMA weights by default."""
        return self._score_from(self._ema_network() if use_ema else self._live_network(False))

    def score_variables(self, use_ema: bool = True) -> list[Any]:
        """The variables `score_fn(use_ema)` reads, for a compiled sampler to take as arguments
        (``backend.jit``'s ``variables``: on JAX it then sees their current values)."""
        weights = self.ema_variables if use_ema else self.network.trainable_variables
        return [*weights, *self.network.non_trainable_variables]

    def score(self, x: Tensor, t: Tensor, use_ema: bool = True) -> Tensor:
        """Score at x and t (SDE) or sigma (NCSN), scalar or (batch,); EMA weights by default."""
        return self.score_fn(use_ema)(sde_lib.to_float(x), t)

    def call(self, x: Tensor, cond: Tensor | None = None, training: bool = False) -> Tensor:
        """Identity without cond (fit's no-op forward pass); else the score with live weights."""
        if cond is None:
            return x
        return self._score_from(self._live_network(training))(sde_lib.to_float(x), cond)

    # --- EMA --------------------------------------------------------------------------------
    def swap_ema(self) -> None:
        """Exchange the network's trainable weights and the EMA weights (call twice to undo)."""
        for source, average in zip(
            self.network.trainable_variables, self.ema_variables, strict=True
        ):
            live = ops.copy(source.value)
            source.assign(average.value)
            average.assign(live)

    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[ScoreModel]:
        """Context in which the network holds the EMA weights (restored on exit)."""
        self.swap_ema()
        try:
            yield self
        finally:
            self.swap_ema()

    def _ema_state_update(
        self, trainable: Sequence[Tensor], non_trainable: Sequence[Tensor]
    ) -> dict[int, Tensor]:
        """EMA step on state values: {index in non_trainable_variables: new value}."""
        train_index = {id(v): i for i, v in enumerate(self.trainable_variables)}
        state_index = {id(v): i for i, v in enumerate(self.non_trainable_variables)}
        count_index = state_index[id(self.ema_updates)]
        n = non_trainable[count_index] + 1
        decay = ema_decay(self.ema_rate, n)
        pairs = [
            (state_index[id(a)], train_index[id(s)])
            for s, a in zip(self.network.trainable_variables, self.ema_variables, strict=True)
            if id(s) in train_index
        ]
        averages = ema_update(
            [non_trainable[i] for i, _ in pairs], [trainable[j] for _, j in pairs], decay
        )
        updates = {i: value for (i, _), value in zip(pairs, averages, strict=True)}
        updates[count_index] = n
        return updates

    def train_step(self, *args: Any) -> Any:
        """Keras' train step, then the EMA update on the new weights."""
        logs = backend.train_step_then_update(
            self, super().train_step, self._ema_state_update, *args
        )
        return backend.logs_for_multi_worker(logs)

    def _maybe_symbolic_build(self, iterator: Any = None, data_batch: Any = None) -> None:
        """Keras' (TensorFlow) build before fit; several workers build from a local batch."""
        if backend.multi_worker() and iterator is not None:
            iterator, data_batch = None, backend.first_local_batch(iterator)
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    # --- loss -------------------------------------------------------------------------------
    def _draw_level(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """(cond, alpha, std, sigma_idx): t ~ U(train_eps, T), or a sigma index ~ U{0..L-1}."""
        batch = ops.shape(x)[0]
        if self.sde is None:
            index = self._draw_rows(
                lambda shape: keras.random.randint(
                    shape, 0, len(self.sigma_values), dtype="int32", seed=self.seed_generator
                ),
                (batch,),
            )
            sigma = ops.take(self.sigmas, index)
            return sigma, ops.ones_like(sigma), sigma, index
        t = self._draw_rows(
            lambda shape: keras.random.uniform(
                shape, self.train_eps, self.sde.T, dtype=x.dtype, seed=self.seed_generator
            ),
            (batch,),
        )
        alpha, std = self.sde.marginal_coefficients(t)
        return t, alpha, std, None

    def _draw_rows(self, draw: Callable[[tuple], Tensor], shape: tuple) -> Tensor:
        """draw(shape), or under tf.distribute this replica's rows of the global batch's draw."""
        index, count = backend.replica_position()
        if count == 1:
            return draw(shape)
        rows = shape[0]
        full = draw((rows * count, *shape[1:]))
        return ops.slice(full, (index * rows,) + (0,) * (len(shape) - 1), shape)

    def _normal_like(self, x: Tensor) -> Tensor:
        """z ~ N(0, I) of x's shape and dtype, drawn from the model's generator."""
        return self._draw_rows(
            lambda shape: keras.random.normal(shape, dtype=x.dtype, seed=self.seed_generator),
            tuple(ops.shape(x)),
        )

    def _reduce_kwargs(self) -> dict[str, str]:
        """The reduce argument, only when set (else the loss function's default)."""
        return {} if self.reduce is None else {"reduce": self.reduce}

    def _denoising_loss(self, x: Tensor, score_fn: ScoreFn) -> Tensor:
        """'dsm' (continuous SDE loss) or 'ncsn' (multi-sigma DSM)."""
        cond, _, _, index = self._draw_level(x)
        z = self._normal_like(x)
        if self.sde is None:
            return losses.ncsn_loss(score_fn, x, z, index, self.sigmas, **self._reduce_kwargs())
        return losses.continuous_loss(
            score_fn, self.sde, x, cond, z, weighting=self.weighting, **self._reduce_kwargs()
        )

    def _score_matching_loss(self, x: Tensor, score_fn: ScoreFn) -> Tensor:
        """'ssm' / 'ssm_vr' / 'exact' on noisy data x_n = alpha x + std z, weighted by std².

        With y = x_n / std, the score of y is ŝ(y) = std s(std y), and Hyvärinen's objective
        J(ŝ) = E[½‖ŝ‖² + tr ∇_y ŝ] equals std² E[½‖s‖² + tr ∇_x s]: the λ = std² weighting of
        NCSN's annealed sliced score matching, per example, with no weights in the loss itself.
        """
        cond, alpha, std, _ = self._draw_level(x)
        z = self._normal_like(x)
        std_b = sde_lib.batch_scalar(std, x)
        y = (sde_lib.batch_scalar(alpha, x) * x + std_b * z) / std_b

        def scaled_score(y_in: Tensor) -> Tensor:
            return std_b * score_fn(std_b * y_in, cond)

        if self.loss_name == "exact":
            return losses.exact_score_matching(scaled_score, y)
        v = self._draw_rows(
            lambda shape: losses.projections(self.seed_generator, shape, self.projection),
            tuple(ops.shape(x)),
        )
        return losses.sliced_score_matching(
            scaled_score, y, v, variance_reduced=self.loss_name == "ssm_vr"
        )

    def compute_loss(
        self,
        x: Tensor = None,
        y: Tensor = None,
        y_pred: Tensor = None,
        sample_weight: Tensor = None,
        training: bool = True,
    ) -> Tensor:
        """The model's score-matching loss on the batch x (y, y_pred and sample_weight unused)."""
        x = sde_lib.to_float(x)
        score_fn = self._score_from(self._live_network(training))
        if self.loss_name in ("dsm", "ncsn"):
            loss = self._denoising_loss(x, score_fn)
        else:
            loss = self._score_matching_loss(x, score_fn)
        if self.losses:
            loss = loss + ops.sum(self.losses)
        return backend.scale_loss_for_replicas(loss)

    # --- compile / config -------------------------------------------------------------------
    def compile(
        self,
        optimizer: keras.optimizers.Optimizer | str | None = None,
        learning_rate: float = DEFAULT_LEARNING_RATE,
        warmup_steps: int = DEFAULT_WARMUP_STEPS,
        decay_steps: int | None = None,
        global_clipnorm: float | None = GLOBAL_CLIPNORM,
        loss_scale: bool = False,
        **kwargs: Any,
    ) -> None:
        """Compile; by default Adam(lr with linear warm-up, eps 1e-8) and global-norm clipping 1.

        learning_rate, warmup_steps, decay_steps and global_clipnorm only shape the default
        optimizer; with decay_steps the rate decays by a cosine to zero at that update.
        loss_scale wraps the optimizer in a LossScaleOptimizer (dynamic loss scaling, for a
        network in mixed_float16). Under tf.distribute, clipping acts on the summed gradient.
        The loss is the model's own (set at construction); `loss=` must not be given.
        The optimizer is built here when the model is: TensorFlow then traces fit's step once
        (a first trace that creates the optimizer's variables is traced again).
        """
        if kwargs.get("loss") is not None:
            raise ValueError("ScoreModel's loss is chosen at construction (loss=...), not compile")
        if optimizer is None:
            schedule = (
                LinearWarmup(learning_rate, warmup_steps)
                if decay_steps is None
                else WarmupCosineDecay(learning_rate, warmup_steps, decay_steps)
            )
            optimizer = keras.optimizers.Adam(
                learning_rate=schedule,
                beta_1=ADAM_BETA_1,
                beta_2=ADAM_BETA_2,
                epsilon=ADAM_EPSILON,
                global_clipnorm=global_clipnorm,
            )
        if loss_scale and not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        super().compile(optimizer=optimizer, **kwargs)
        backend.clip_after_all_reduce(self.optimizer)
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def compile_from_config(self, config: dict[str, Any]) -> None:
        """Re-compile on load with the saved optimizer (built, so that its state can load)."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def get_config(self) -> dict[str, Any]:
        """Serialisable configuration (the network nested as a Keras object)."""
        return {
            "name": self.name,
            "trainable": self.trainable,
            "network": keras.saving.serialize_keras_object(self.network),
            "sde": NCSN if self.sde is None else self.sde.to_config(),
            "sigmas": self.sigma_values,
            "loss": self.loss_name,
            "weighting": self.weighting,
            "reduce": self.reduce,
            "ema_rate": self.ema_rate,
            "seed": self.seed,
            "projection": self.projection,
            "train_eps": self.train_eps,
            "preconditioning": self.preconditioning,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> ScoreModel:
        """Inverse of get_config."""
        config = dict(config)
        config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)
