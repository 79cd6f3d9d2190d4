"""Tests of reference.controllable: imputation and class-conditional sampling with exact scores."""

from __future__ import annotations

import numpy as np
import pytest

from reference import checks, controllable
from reference.datasets import mixture5, separated4
from reference.distributions import Gaussian
from reference.sde import VESDE, VPSDE

SDES = {"ve": VESDE, "vp": VPSDE}
MASK = np.array([True, False])  # observe the first coordinate, impute the second
N_IMPUTED = 10_000
OBSERVED_VALUES = (-2.0, 0.0, 2.0)
CLASS_FRACTION = 0.99
N_PER_CLASS = 1000


class CountingRng:
    """Duck-typed rng counting standard_normal calls."""

    def __init__(self) -> None:
        self._rng = np.random.default_rng(0)
        self.calls = 0

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Draw and count."""
        self.calls += 1
        return self._rng.standard_normal(shape)


def test_impute_keeps_observed_values_nfe_and_draws():
    sde, target = VESDE(N=20), Gaussian(np.zeros(2), np.eye(2))
    x_obs = np.array([[1.5, 99.0], [-0.5, 99.0], [0.25, 99.0]])
    rng = CountingRng()
    x, nfe = controllable.impute(target.score_fn(sde), sde, x_obs, MASK, rng)
    np.testing.assert_array_equal(x[:, 0], x_obs[:, 0])
    assert np.all(np.abs(x[:, 1]) < 10.0)
    assert nfe == 20 * 2  # one corrector + one predictor score per step
    assert rng.calls == 1 + 20 * 4  # prior; corrector, replace, predictor, replace


@pytest.mark.parametrize("name", list(SDES))
def test_impute_gaussian_conditional(name):
    # correlated Gaussian: the conditional of x2 given x1 = 1.5 is N(-0.5 + 0.8, 1 - 0.64)
    sde = SDES[name]()
    target = Gaussian(np.array([0.5, -0.5]), np.array([[1.0, 0.8], [0.8, 1.0]]))
    x_obs = np.tile([1.5, 0.0], (4000, 1))
    x, _ = controllable.impute(target.score_fn(sde), sde, x_obs, MASK, np.random.default_rng(0))
    cond = target.conditional(MASK, x_obs[:1])
    assert abs(x[:, 1].mean() - cond.means[0, 0, 0]) < 0.04
    assert abs(x[:, 1].var() - cond.covs[0, 0, 0, 0]) < 0.04


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="replacement imputation (score_sde, Song et al. 2021 App. I) conditions the free "
    "coordinate on a NOISED copy of x_obs at each t, so its mode is chosen while x_obs is still "
    "blurred and cannot switch once the noise is small: on mixture5 it is measured far off the "
    "exact conditional (occupancy TV 0.13-0.25, log-density gap -0.2 to -1.5 nats).",
)
@pytest.mark.parametrize("value", OBSERVED_VALUES)
def test_impute_mixture5_matches_exact_conditional(value):
    mixture, sde = mixture5(), VESDE()
    x_obs = np.tile([value, 0.0], (N_IMPUTED, 1))
    x, nfe = controllable.impute(mixture.score_fn(sde), sde, x_obs, MASK, np.random.default_rng(0))

    def sample_conditional(rng, n):
        return mixture.conditional(MASK, np.tile([value, 0.0], (n, 1))).sample(rng)

    result = checks.sample_checks(
        x, mixture, np.random.default_rng(1), sample_true=sample_conditional
    )
    print("\n" + checks.format_row(f"impute x1={value}", nfe, result))
    assert result["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SDES))
def test_class_conditional_separated4(name):
    mixture, sde = separated4(), SDES[name]()
    labels = np.repeat(np.arange(mixture.n_components), N_PER_CLASS)
    x, _ = controllable.class_conditional_sample(
        mixture.score_fn(sde),
        controllable.exact_log_posterior_grad_fn(mixture, sde),
        sde,
        (labels.size, mixture.dim),
        np.random.default_rng(0),
        labels,
    )
    assigned = mixture.posterior(x).argmax(axis=1)
    for k in range(mixture.n_components):
        assert np.mean(assigned[labels == k] == k) >= CLASS_FRACTION


def test_guided_score_adds_scaled_posterior_gradient():
    mixture, sde = separated4(), VESDE()
    x, t = np.array([[0.1, 0.2], [1.0, -2.0]]), np.array([0.3, 0.6])
    grad_fn = controllable.exact_log_posterior_grad_fn(mixture, sde)
    guided = controllable.guided_score(mixture.score_fn(sde), grad_fn, 2, scale=3.0)
    expected = mixture.score_fn(sde)(x, t) + 3.0 * grad_fn(x, t, np.array([2, 2]))
    np.testing.assert_allclose(guided(x, t), expected)
