"""Training loop and relative score error; issue item 8 (an MLP learns the mixture5 score)."""

from __future__ import annotations

import contextlib
import time

import numpy as np
import pytest

from reference import losses
from reference.datasets import mixture5
from reference.models import Adam, LinearScore, MLPScore, get_flat_params, noise_conditional_score
from reference.sde import VESDE, VPSDE, geometric_sigmas
from reference.train import LOSSES, relative_score_error, train

BATCH = 32
EVAL_N = 20000  # examples for the relative score error estimate


def gaussian_sampler(rng: np.random.Generator, n: int) -> np.ndarray:
    """N((1, -1), diag(0.5, 2)) data."""
    return np.array([1.0, -1.0]) + np.sqrt([0.5, 2.0]) * rng.standard_normal((n, 2))


def small_mlp(cond: str = "t") -> MLPScore:
    """A tiny seeded MLP for smoke tests."""
    return MLPScore(2, (16,), cond=cond, n_freq=2, rng=np.random.default_rng(0))


def test_history_and_exact_sm_progress() -> None:
    """History records every step; exact SM on a linear model moves towards −Σ⁻¹."""
    model = LinearScore(2)
    rng = np.random.default_rng(1)
    steps = 1500
    history = train(model, "exact", gaussian_sampler, steps, 256, rng, lr=1e-2)
    assert history.steps == steps == len(history.losses)
    assert history.wall_time_s > 0
    assert np.mean(history.losses[-100:]) < np.mean(history.losses[:100])
    # A → −diag(1/0.5, 1/2), b → Σ⁻¹μ = (2, −0.5): loose, Adam noise at lr 1e-2 with batch 256
    np.testing.assert_allclose(model.params["A"], -np.diag([2.0, 0.5]), atol=0.15)
    np.testing.assert_allclose(model.params["b"], [2.0, -0.5], atol=0.15)


def test_continuous_draw_order() -> None:
    """The first recorded loss is the loss at x, then t ~ U(eps, T), then z, drawn from rng."""
    sde = VPSDE()
    model = small_mlp()
    theta0 = get_flat_params(model)
    history = train(
        model, "continuous", gaussian_sampler, 1, BATCH, np.random.default_rng(5), sde=sde
    )
    model.params = small_mlp().params
    np.testing.assert_array_equal(get_flat_params(model), theta0)
    rng = np.random.default_rng(5)
    x = gaussian_sampler(rng, BATCH)
    t = rng.uniform(sde.eps, sde.T, BATCH)
    z = rng.standard_normal(x.shape)
    assert history.losses[0] == losses.continuous_loss(model, sde, x, t, z)[0]


def test_ncsn_draw_order() -> None:
    """NCSN draws x, then the σ indices, then z."""
    sigmas = geometric_sigmas(1.0, 0.01, 5)
    model = small_mlp("log_sigma")
    history = train(
        model, "ncsn", gaussian_sampler, 1, BATCH, np.random.default_rng(6), sigmas=sigmas
    )
    model.params = small_mlp("log_sigma").params
    rng = np.random.default_rng(6)
    x = gaussian_sampler(rng, BATCH)
    idx = rng.integers(0, len(sigmas), BATCH)
    z = rng.standard_normal(x.shape)
    assert history.losses[0] == losses.ncsn_loss(model, x, z, idx, sigmas)[0]


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_every_loss_trains_finitely(loss: str) -> None:
    """Each loss name runs a few steps and changes the parameters."""
    model = small_mlp("log_sigma")
    theta0 = get_flat_params(model)
    history = train(
        model,
        loss,
        gaussian_sampler,
        5,
        BATCH,
        np.random.default_rng(7),
        sde=VESDE(),
        sigmas=geometric_sigmas(1.0, 0.01, 4),
        sigma=0.3,
        projection="rademacher",
        grad_clip=1.0,
    )
    assert history.steps == 5 and np.all(np.isfinite(history.losses))
    assert not np.array_equal(get_flat_params(model), theta0)


def test_time_budget_stops_early_and_bad_names_raise() -> None:
    """A zero time budget stops after one step; unknown losses / missing inputs raise."""
    rng = np.random.default_rng(0)
    history = train(
        small_mlp(), "continuous", gaussian_sampler, 100, BATCH, rng, sde=VESDE(), time_budget_s=0.0
    )
    assert history.steps == 1
    with pytest.raises(ValueError):
        train(small_mlp(), "l2", gaussian_sampler, 1, BATCH, np.random.default_rng(0))
    with pytest.raises(ValueError):
        train(small_mlp(), "continuous", gaussian_sampler, 1, BATCH, np.random.default_rng(0))


def test_relative_score_error_reference_points() -> None:
    """0 for the exact score, 1 for the zero score, δ² for (1 + δ)·exact score."""
    mixture, sde, t = mixture5(), VESDE(), 0.5
    exact = mixture.score_fn(sde)
    delta = 0.1
    err = {
        "exact": relative_score_error(exact, mixture, sde, t, np.random.default_rng(0), 2000),
        "zero": relative_score_error(
            lambda x, tt: np.zeros_like(x), mixture, sde, t, np.random.default_rng(0), 2000
        ),
        "scaled": relative_score_error(
            lambda x, tt: (1 + delta) * exact(x, tt),
            mixture,
            sde,
            t,
            np.random.default_rng(0),
            2000,
        ),
    }
    assert err["exact"] < 1e-20
    assert err["zero"] == pytest.approx(1.0)
    assert err["scaled"] == pytest.approx(delta**2)


# ------------------------------------------------------------------------------------------
# Issue item 8: MLPScore + continuous VE loss (λ = std²) on mixture5, ≤ 60 s on 2 CPU cores.
ITEM8_HIDDEN = (64, 64)
ITEM8_N_FREQ = 4
ITEM8_BATCH = 256
ITEM8_LR = 3e-3
ITEM8_LR_DROP = 10.0  # second phase at lr / 10 removes most of Adam's end-of-training noise
ITEM8_STEPS = (8000, 3000)  # (phase 1, phase 2); each phase is also capped by its time budget
ITEM8_BUDGET_S = (40.0, 15.0)  # together under the 60 s limit
ITEM8_SEED = 0
ITEM8_TIMES = (0.1, 0.25, 0.5, 0.75, 1.0)
ITEM8_ASSERT_T, ITEM8_MAX_ERROR = 0.5, 0.1


def _single_blas_thread() -> contextlib.AbstractContextManager:
    """One BLAS thread if threadpoolctl is present: at these sizes threads only add overhead."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@pytest.mark.slow
def test_mlp_learns_mixture5_score_with_continuous_ve_loss() -> None:
    """Relative score error < 0.1 at t = 0.5 after at most 60 s of training (item 8)."""
    mixture, sde = mixture5(), VESDE()
    rng = np.random.default_rng(ITEM8_SEED)
    model = MLPScore(2, ITEM8_HIDDEN, cond="log_sigma", n_freq=ITEM8_N_FREQ, rng=rng)
    optimizer = Adam(lr=ITEM8_LR)
    start = time.perf_counter()
    steps_done = []
    with _single_blas_thread():
        for steps, budget in zip(ITEM8_STEPS, ITEM8_BUDGET_S, strict=True):
            history = train(
                model,
                "continuous",
                mixture.sample,
                steps,
                ITEM8_BATCH,
                rng,
                time_budget_s=budget,
                sde=sde,
                optimizer=optimizer,
                loss_kwargs={"weighting": "std2"},
            )
            steps_done.append(history.steps)
            optimizer.lr /= ITEM8_LR_DROP
        wall = time.perf_counter() - start
        score_fn = noise_conditional_score(model, sde)
        errors = {
            t: relative_score_error(score_fn, mixture, sde, t, np.random.default_rng(1), EVAL_N)
            for t in ITEM8_TIMES
        }
    print(f"\nitem 8: steps {steps_done}, training wall time {wall:.1f} s")
    for t, e in errors.items():
        print(
            f"  t = {t:4.2f}  sigma = {sde.marginal_coefficients(np.array([t]))[1][0]:7.3f}"
            f"  relative score error = {e:.4f}"
        )
    assert wall <= sum(ITEM8_BUDGET_S) + 5.0  # a step overrunning a budget is short
    assert errors[ITEM8_ASSERT_T] < ITEM8_MAX_ERROR
