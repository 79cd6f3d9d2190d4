"""ScoreModel: fit with every loss, seeded reproducibility, EMA, warm-up, mixture benchmark."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from reference import models as ref_models
from reference import sde as ref_sde
from reference import train as ref_train
from reference.datasets import mixture5
from scoregen_keras import runs
from scoregen_keras.networks import get_network
from scoregen_keras.training.schedules import LinearWarmup, WarmupCosineDecay
from scoregen_keras.training.score_model import ScoreModel

BATCH = 64
FAST_LR = 3e-3


def toy_data(n: int, seed: int = 0) -> np.ndarray:
    """n float32 draws from the canonical 2-D mixture."""
    return mixture5().sample(np.random.default_rng(seed), n).astype("float32")


def make_model(
    sde: str = "ve", loss: str | None = None, init_seed: int = 0, **kwargs
) -> ScoreModel:
    """A compiled ScoreModel on the tiny MLP (weights from init_seed), warm-up off, fast lr."""
    keras.utils.set_random_seed(init_seed)
    conditioning = "sigma" if sde == "ncsn" else "t"
    model = ScoreModel(
        get_network("mlp/tiny", conditioning=conditioning), sde=sde, loss=loss, **kwargs
    )
    model.compile(learning_rate=FAST_LR, warmup_steps=0)
    return model


def weights(model: ScoreModel) -> list[np.ndarray]:
    """The network's trainable weights as NumPy arrays."""
    return [ops.convert_to_numpy(v.value) for v in model.network.trainable_variables]


def ema_weights(model: ScoreModel) -> list[np.ndarray]:
    """The EMA weights as NumPy arrays."""
    return [ops.convert_to_numpy(v.value) for v in model.ema_variables]


def paired_loss(model: ScoreModel, x: np.ndarray, seed_state: np.ndarray) -> float:
    """The model's loss on x with the seed generator reset to seed_state (common random numbers)."""
    state = model.seed_generator.state
    state.assign(ops.cast(seed_state, state.dtype))
    return float(model.evaluate(x, batch_size=len(x), verbose=0))


CASES = [
    ("ve", "dsm", {}),
    ("vp", "dsm", {"reduce": "mean"}),
    ("subvp", "dsm", {"weighting": "likelihood"}),
    ("ncsn", "ncsn", {"sigmas": [2.0, 1.0, 0.5, 0.25]}),
    ("ve", "ssm", {}),
    ("ncsn", "ssm_vr", {"sigmas": [2.0, 1.0, 0.5, 0.25], "projection": "rademacher"}),
    ("ve", "exact", {}),
]


@pytest.mark.parametrize(("sde", "loss", "kwargs"), CASES, ids=[f"{s}-{l}" for s, l, _ in CASES])
def test_fit_decreases_loss(sde: str, loss: str, kwargs: dict) -> None:
    """Training lowers the loss, measured on the same noise draws before and after."""
    model = make_model(sde, loss, seed=1, **kwargs)
    x_eval = toy_data(2048, seed=1)
    seed_state = ops.convert_to_numpy(model.seed_generator.state.value)
    before = paired_loss(model, x_eval, seed_state)
    history = model.fit(toy_data(BATCH * 40), batch_size=BATCH, epochs=1, verbose=0)
    after = paired_loss(model, x_eval, seed_state)
    assert np.isfinite(history.history["loss"]).all()
    assert after < before, (before, after)
    assert int(ops.convert_to_numpy(model.ema_updates.value)) == 40


def test_steps_that_loss_scaling_skips_still_count() -> None:
    """Loss scaling drops the 5 steps (non-finite gradients), yet the run has taken 5 steps."""
    model = make_model("ve", "dsm")
    model.compile(loss_scale=True)
    model.fit(toy_data(BATCH * 5) * np.nan, batch_size=BATCH, epochs=1, verbose=0)
    assert int(ops.convert_to_numpy(model.optimizer.iterations)) == 0
    assert runs.checkpoint_step(model) == 5


def test_same_seed_gives_identical_weights() -> None:
    """Two runs with the same seeds agree bit for bit; a different training seed does not."""
    x = toy_data(BATCH * 6)
    runs = []
    for seed in (5, 5, 6):
        model = make_model("ve", "dsm", seed=seed)
        model.fit(x, batch_size=BATCH, epochs=1, shuffle=False, verbose=0)
        runs.append(weights(model) + ema_weights(model))
    for a, b in zip(runs[0], runs[1], strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, c) for a, c in zip(runs[0], runs[2], strict=True))


def numpy_ema(initial: list[np.ndarray], history: list[list[np.ndarray]], rate: float) -> list:
    """NumPy oracle: EMA with decay min(rate, (1+n)/(10+n)) at update n = 1, 2, ..."""
    averages = [a.astype(np.float64) for a in initial]
    for n, values in enumerate(history, start=1):
        decay = min(rate, (1.0 + n) / (10.0 + n))
        averages = [decay * a + (1.0 - decay) * v for a, v in zip(averages, values, strict=True)]
    return averages


def test_ema_matches_numpy_recursion() -> None:
    """After k single-step fits the EMA equals the NumPy recursion over the recorded weights."""
    rate, steps = 0.5, 10  # warm-up decay < rate for n < 8, then the rate itself
    model = make_model("ve", "dsm", ema_rate=rate)
    initial = weights(model)
    np.testing.assert_array_equal(initial[0], ema_weights(model)[0])  # EMA starts at the weights
    x = toy_data(BATCH)
    history = []
    for _ in range(steps):
        model.fit(x, batch_size=BATCH, epochs=1, verbose=0)
        history.append(weights(model))
    expected = numpy_ema(initial, history, rate)
    for got, want in zip(ema_weights(model), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert int(ops.convert_to_numpy(model.ema_updates.value)) == steps


def test_ema_of_constant_weights_is_constant() -> None:
    """With a zero learning rate the weights never move, so neither does their average."""
    model = make_model("vp", "dsm")
    model.compile(learning_rate=0.0, warmup_steps=0)
    before = weights(model)
    model.fit(toy_data(BATCH * 3), batch_size=BATCH, epochs=1, verbose=0)
    for a, b in zip(before, ema_weights(model), strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-7)


def test_default_ema_rates() -> None:
    """0.999 for VE and NCSN, 0.9999 for VP and sub-VP (the papers' configs)."""
    rates = {sde: make_model(sde).ema_rate for sde in ("ve", "vp", "subvp", "ncsn")}
    assert rates == {"ve": 0.999, "vp": 0.9999, "subvp": 0.9999, "ncsn": 0.999}


def test_score_uses_ema_weights_and_swap_restores() -> None:
    """score(use_ema=True) equals the live score with the EMA swapped in; swapping back restores."""
    model = make_model("ve", "dsm")
    model.fit(toy_data(BATCH * 5), batch_size=BATCH, epochs=1, verbose=0)
    x, t = toy_data(16, seed=3), np.full(16, 0.3, "float32")
    live = ops.convert_to_numpy(model.score(x, t, use_ema=False))
    ema = ops.convert_to_numpy(model.score(x, t))
    assert not np.allclose(live, ema)
    with model.ema_weights():
        np.testing.assert_allclose(
            ops.convert_to_numpy(model.score(x, t, use_ema=False)), ema, rtol=1e-6, atol=1e-6
        )
    np.testing.assert_allclose(
        ops.convert_to_numpy(model.score(x, t, use_ema=False)), live, rtol=1e-6, atol=1e-6
    )
    np.testing.assert_allclose(ops.convert_to_numpy(model(x, t)), live, rtol=1e-6, atol=1e-6)


def test_warmup_schedule_values() -> None:
    """The n-th update (iteration n-1) uses lr * min(1, n / warmup)."""
    schedule = LinearWarmup(2e-4, 5000)
    for step, want in [(0, 2e-4 / 5000), (1, 8e-8), (2499, 1e-4), (4999, 2e-4), (10**6, 2e-4)]:
        np.testing.assert_allclose(float(ops.convert_to_numpy(schedule(step))), want, rtol=1e-6)
    assert float(ops.convert_to_numpy(LinearWarmup(1e-3, 0)(0))) == pytest.approx(1e-3)
    assert LinearWarmup.from_config(schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError):
        LinearWarmup(1e-3, -1)


def test_cosine_decay_schedule_values() -> None:
    """Warm-up as LinearWarmup, then lr (f + (1 - f)(1 + cos(pi p)) / 2), p the decay progress."""
    schedule = WarmupCosineDecay(1e-3, 100, 1100, final_fraction=0.1)
    half = 0.1 + 0.9 * 0.5  # p = 1/2 at update 600
    for step, want in [(0, 1e-5), (99, 1e-3), (599, 1e-3 * half), (1099, 1e-4), (5000, 1e-4)]:
        np.testing.assert_allclose(float(ops.convert_to_numpy(schedule(step))), want, rtol=1e-5)
    np.testing.assert_allclose(
        float(ops.convert_to_numpy(WarmupCosineDecay(1e-3, 0, 1000)(499))), 5e-4, rtol=1e-5
    )
    restored = WarmupCosineDecay.from_config(schedule.get_config())
    assert restored.get_config() == schedule.get_config()
    short = WarmupCosineDecay(1e-3, 100, 50)  # ends inside its warm-up: no decay
    np.testing.assert_allclose(float(ops.convert_to_numpy(short(49))), 5e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="total_steps"):
        WarmupCosineDecay(1e-3, 100, 0)
    with pytest.raises(ValueError, match="final_fraction"):
        WarmupCosineDecay(1e-3, 100, 1000, final_fraction=1.5)


def test_compile_with_decay_steps_decays_to_zero() -> None:
    """compile(decay_steps=n): a cosine to zero at update n after the warm-up."""
    keras.utils.set_random_seed(0)
    model = ScoreModel(get_network("mlp/tiny"), sde="ve")
    model.compile(learning_rate=1e-3, warmup_steps=1, decay_steps=3)
    model.fit(toy_data(BATCH * 3), batch_size=BATCH, epochs=1, verbose=0)
    assert isinstance(model.optimizer._learning_rate, WarmupCosineDecay)
    assert float(ops.convert_to_numpy(model.optimizer.learning_rate)) == pytest.approx(
        0.0, abs=1e-12
    )


def test_compile_defaults() -> None:
    """Default optimizer: Adam, eps 1e-8, global-norm clipping 1, lr 2e-4 warmed up over 5000."""
    keras.utils.set_random_seed(0)
    model = ScoreModel(get_network("mlp/tiny"), sde="ve")
    model.compile()
    opt = model.optimizer
    assert isinstance(opt, keras.optimizers.Adam)
    assert opt.global_clipnorm == 1.0 and opt.epsilon == 1e-8
    assert isinstance(opt._learning_rate, LinearWarmup)
    model.fit(toy_data(BATCH * 3), batch_size=BATCH, epochs=1, verbose=0)
    np.testing.assert_allclose(
        float(ops.convert_to_numpy(opt.learning_rate)), 2e-4 * 4 / 5000, rtol=1e-6
    )
    with pytest.raises(ValueError):
        model.compile(loss="mse")


def test_compile_builds_the_optimizer_of_a_built_model() -> None:
    """Adam's slots exist after compile when the model is built (fit then traces its step once
    on TensorFlow), not when it is not."""
    keras.utils.set_random_seed(0)
    model = ScoreModel(get_network("mlp/tiny"), sde="ve", input_shape=(None, 2))
    model.compile()
    assert model.optimizer.built
    assert len(model.optimizer.variables) > 2 * len(model.trainable_variables)
    unbuilt = ScoreModel(get_network("ncsnpp/tiny"), sde="ve")
    unbuilt.compile()
    assert not unbuilt.built and not unbuilt.optimizer.built


def test_config_round_trip_and_validation() -> None:
    """get_config / from_config round-trips; bad combinations are refused."""
    model = make_model("ncsn", "ncsn", sigmas=[1.0, 0.1], reduce="mean", seed=7)
    clone = ScoreModel.from_config(model.get_config())
    assert clone.get_config()["sigmas"] == [1.0, 0.1]
    assert {k: v for k, v in clone.get_config().items() if k != "name"} == {
        k: v for k, v in model.get_config().items() if k != "name"
    }
    net = get_network("mlp/tiny")
    with pytest.raises(ValueError):
        ScoreModel(net, sde="ncsn", loss="dsm")
    with pytest.raises(ValueError):
        ScoreModel(net, sde="ve", loss="ncsn")
    with pytest.raises(ValueError):
        ScoreModel(net, sde="ve", loss="ssm", weighting="likelihood")
    with pytest.raises(ValueError):
        ScoreModel(net, sde="xx")


# --- issue item 6: the Keras MLP matches the reference MLP on the mixture -----------------------

BENCH_STEPS, BENCH_BATCH, BENCH_LR, BENCH_T, BENCH_N = 1500, 128, 1e-3, 0.5, 20000
BENCH_RATIO = 1.5
LIVE_RATIO = 2.0  # sanity bound for the last iterate (measured 1.1x-1.45x)


@pytest.mark.slow
def test_mixture_score_error_matches_reference() -> None:
    """VE continuous loss on mixture5: relative score error at t=0.5 within 1.5x of the reference.

    Same budget on both sides: steps, batch, Adam lr (no warm-up, no clipping), fresh data each
    step (Keras: one epoch over steps * batch fresh draws), same network architecture.
    """
    mixture = mixture5()
    sde_ref = ref_sde.VESDE()
    rng = np.random.default_rng(0)
    reference_net = ref_models.MLPScore(2, rng=np.random.default_rng(1))
    ref_train.train(
        reference_net,
        "continuous",
        mixture.sample,
        steps=BENCH_STEPS,
        batch_size=BENCH_BATCH,
        rng=rng,
        lr=BENCH_LR,
        sde=sde_ref,
    )
    reference_score = ref_models.noise_conditional_score(reference_net, sde_ref)
    ref_error = ref_train.relative_score_error(
        reference_score, mixture, sde_ref, BENCH_T, np.random.default_rng(2), BENCH_N
    )

    keras.utils.set_random_seed(1)
    model = ScoreModel(get_network("mlp/toy"), sde="ve", loss="dsm", seed=0)
    model.compile(learning_rate=BENCH_LR, warmup_steps=0, global_clipnorm=None)
    data = mixture.sample(np.random.default_rng(3), BENCH_STEPS * BENCH_BATCH).astype("float32")
    model.fit(data, batch_size=BENCH_BATCH, epochs=1, verbose=0)

    def keras_score(use_ema: bool):
        return lambda x, t: ops.convert_to_numpy(model.score(x.astype("float32"), t, use_ema))

    errors = {
        name: ref_train.relative_score_error(
            keras_score(use_ema), mixture, sde_ref, BENCH_T, np.random.default_rng(2), BENCH_N
        )
        for name, use_ema in (("live", False), ("ema", True))
    }
    print(f"relative score error at t={BENCH_T}: reference {ref_error:.4f}, keras {errors}")
    # the EMA score is what score() and samplers use; the last iterate is noisier (constant lr)
    assert errors["ema"] <= BENCH_RATIO * ref_error, (errors, ref_error)
    assert errors["live"] <= LIVE_RATIO * ref_error, (errors, ref_error)
