"""runs.draw_samples: the PC chain takes `steps` steps over levels of its own, not the SDE's N;
samples drawn in batches are equal batches of one noise stream, which runs.sample_batches yields
one at a time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from keras import ops

from scoregen_keras import runs, samplers
from scoregen_keras.sde import VESDE, VPSDE
from tests.keras.gaussian_model import DATA_STD, gaussian_model

N_SAMPLES = 4000
STD_RTOL = 0.1  # 4 000 draws: the sample std's own error is ~1 %; a wrong chain misses by far more


CONFIG = {"data": {"shape": [2], "scaler": {"shift": 0.0, "scale": 1.0}}}


@pytest.mark.parametrize("sde", [VESDE(sigma_max=10.0), VPSDE()], ids=["ve", "vp"])
@pytest.mark.parametrize("steps", [100, None])
def test_pc_samples_have_the_data_spread_for_any_step_count(sde: Any, steps: int | None) -> None:
    """PC with steps != N (here 100 of N = 1000) samples the data as well as with N steps."""
    drawn = runs.draw_samples(gaussian_model(sde), CONFIG, N_SAMPLES, "pc", seed=0, steps=steps)
    assert drawn.nfe == 2 * (steps or sde.N)
    np.testing.assert_allclose(np.std(drawn.x, axis=0), DATA_STD, rtol=STD_RTOL)


def test_too_few_pc_steps_for_a_vp_chain_is_a_run_error() -> None:
    """10 steps of VP (beta_max 20): the chain's betas reach 2, refused in one sentence."""
    with pytest.raises(runs.RunError, match="use more than 20 steps"):
        runs.draw_samples(gaussian_model(VPSDE()), CONFIG, 8, "pc", seed=0, steps=10)


def test_batches_are_equal_in_size_and_draw_fresh_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    """10 samples, at most 4 at once: three batches of 4 (one shape), no batch repeating another."""
    shapes = []
    pc_sample = samplers.pc_sample

    def recording(score_fn: Any, sde: Any, shape: tuple[int, ...], *args: Any, **kwargs: Any):
        shapes.append(shape)
        return pc_sample(score_fn, sde, shape, *args, **kwargs)

    monkeypatch.setattr(samplers, "pc_sample", recording)
    model = gaussian_model(VESDE(sigma_max=10.0))
    drawn = runs.draw_samples(model, CONFIG, 10, "pc", seed=0, steps=20, batch_size=4)
    assert shapes == [(4, 2)] * 3
    assert drawn.x.shape == (10, 2) and drawn.nfe == 2 * 20
    assert len(np.unique(drawn.x, axis=0)) == 10  # one int seed per batch would repeat rows


def test_sample_batches_are_draw_samples_one_batch_at_a_time() -> None:
    """10 samples at most 4 at once: batches of 4, 4 and the last cut to 2, whose concatenation
    is exactly draw_samples' draw; bad sizes are refused before the first draw."""
    model = gaussian_model(VESDE(sigma_max=10.0))
    whole = runs.draw_samples(model, CONFIG, 10, "pc", seed=5, steps=20, batch_size=4)
    batches = list(runs.sample_batches(model, CONFIG, 10, "pc", seed=5, steps=20, batch_size=4))
    assert [len(x) for x, _ in batches] == [4, 4, 2]
    assert all(nfe == whole.nfe for _, nfe in batches)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), whole.x)
    with pytest.raises(runs.RunError, match="must be positive"):
        runs.sample_batches(model, CONFIG, 10, "pc", batch_size=0)


def test_one_batch_is_the_unbatched_draw() -> None:
    """A batch size of at least n draws exactly what draw_samples draws without one."""
    model = gaussian_model(VESDE(sigma_max=10.0))
    whole = runs.draw_samples(model, CONFIG, 10, "pc", seed=3, steps=20)
    batched = runs.draw_samples(model, CONFIG, 10, "pc", seed=3, steps=20, batch_size=10)
    np.testing.assert_array_equal(batched.x, whole.x)


def test_batched_samples_have_the_data_spread() -> None:
    """4 000 samples in three batches of 1 334 (two padding rows dropped) keep the data's std."""
    model = gaussian_model(VESDE(sigma_max=10.0))
    drawn = runs.draw_samples(model, CONFIG, N_SAMPLES, "pc", seed=0, steps=100, batch_size=1500)
    assert drawn.x.shape == (N_SAMPLES, 2)
    np.testing.assert_allclose(np.std(drawn.x, axis=0), DATA_STD, rtol=STD_RTOL)


@pytest.mark.parametrize("batch_size", [0, -2])
def test_a_batch_size_below_one_is_a_run_error(batch_size: int) -> None:
    """A batch size that is not positive: one sentence, before any sampling."""
    model = gaussian_model(VESDE())
    with pytest.raises(runs.RunError, match="batch size"):
        runs.draw_samples(model, CONFIG, 8, "pc", seed=0, steps=10, batch_size=batch_size)


@pytest.mark.parametrize(
    ("n", "batch_size", "multiple", "layout"),
    [
        (10, 4, 1, (3, 4)),  # three equal batches of 4, two padding rows
        (10, None, 1, (1, 10)),
        (20, 9, 5, (4, 5)),  # the cap rounded down to a multiple of the 5 classes
        (12, 5, 3, (4, 3)),
        (21, 10, 5, (3, 10)),  # 7 a batch would do, rounded up to 10
        (7, None, 5, (1, 7)),  # one batch: the labels cycle through it and are cut at n
        (4, 4, 5, (1, 4)),
    ],
)
def test_batch_layout(n: int, batch_size: int | None, multiple: int, layout: tuple) -> None:
    """(batches, length): at most batch_size at once; with several batches, the length a
    multiple of `multiple`, so labels cycled through every batch continue across batches."""
    assert runs.batch_layout(n, batch_size, multiple) == layout
    batches, length = layout
    assert batches * length >= n and (batch_size is None or length <= batch_size)


def test_a_batch_below_the_classes_cycled_is_a_run_error() -> None:
    """Cycling 5 classes through batches of at most 4 would never draw the fifth."""
    with pytest.raises(runs.RunError, match="batch size of at least 5"):
        runs.batch_layout(8, 4, 5)


NCSN_SIGMAS = np.array([1.0, 0.3, 0.1])
SAME_DRAWS = {"rtol": 1e-6, "atol": 1e-6}
"""draw_samples against the sampler called directly on the same seed (float32; a compiled step
may fuse its operations differently)."""


def _ncsn_model() -> SimpleNamespace:
    """A model of the levels NCSN_SIGMAS with the exact sigma-score of the data."""
    return gaussian_model(sigmas=NCSN_SIGMAS)


@pytest.mark.parametrize(
    ("options", "steps_each", "step_lr"),
    [({}, 7, 3e-3), ({"steps": 2, "step_lr": 1e-3}, 2, 1e-3)],
    ids=["the run's", "given"],
)
def test_annealed_langevin_takes_the_runs_settings_unless_given(
    options: dict, steps_each: int, step_lr: float
) -> None:
    """ald_steps_each / ald_step_lr of the config, or the steps and step size asked for."""
    model = _ncsn_model()
    config = {**CONFIG, "ald_steps_each": 7, "ald_step_lr": 3e-3}
    drawn = runs.draw_samples(model, config, 16, "ald", seed=4, **options)
    expected, nfe = samplers.annealed_langevin(
        model.score_fn(), model.sigmas, (16, 2), 4, n_steps_each=steps_each, step_lr=step_lr
    )
    assert drawn.nfe == nfe == len(NCSN_SIGMAS) * steps_each + 1
    np.testing.assert_allclose(drawn.x, ops.convert_to_numpy(expected), **SAME_DRAWS)


def test_a_run_without_settings_takes_ncsns_defaults() -> None:
    """A config without ald settings (runs before them): 100 steps a level at 2e-5."""
    model = _ncsn_model()
    drawn = runs.draw_samples(model, CONFIG, 8, "ald", seed=0)
    expected, nfe = samplers.annealed_langevin(model.score_fn(), model.sigmas, (8, 2), 0)
    assert drawn.nfe == nfe == len(NCSN_SIGMAS) * 100 + 1
    np.testing.assert_allclose(drawn.x, ops.convert_to_numpy(expected), **SAME_DRAWS)


def test_a_step_size_that_is_not_positive_is_a_run_error() -> None:
    with pytest.raises(runs.RunError, match="step size must be"):
        runs.draw_samples(_ncsn_model(), CONFIG, 8, "ald", seed=0, step_lr=0.0)
