"""Score-matching losses: hand-derived gradients against finite differences, and their values."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from reference import losses
from reference.losses import (
    continuous_loss,
    denoising_score_matching,
    exact_score_matching,
    ncsn_loss,
    projections,
    sliced_score_matching,
)
from reference.models import (
    LinearScore,
    MLPScore,
    ScoreModel,
    flatten_grads,
    get_flat_params,
    set_flat_params,
)
from reference.sde import VESDE, VPSDE, SubVPSDE

FD_STEP = 1e-6  # central differences: truncation O(h²) and rounding O(eps/h) both ≈ 1e-10
FD_TOL = 1e-6  # relative norm error allowed between a hand gradient and finite differences
DIM, BATCH = 3, 6
SMALL_HIDDEN = (6, 5)  # small widths keep finite differences over every parameter fast
SMALL_N_FREQ = 2
T_MIN = 0.05  # keeps VP/sub-VP std away from 0 in the gradient checks
SDES = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}
SIGMAS = np.geomspace(2.0, 0.05, 4)


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """Relative norm error ‖a − b‖ / ‖b‖."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def make_model(kind: str, rng: np.random.Generator, cond: str = "t") -> ScoreModel:
    """A small model with order-one random parameters: "linear", "silu" or "softplus" MLP."""
    if kind == "linear":
        model: ScoreModel = LinearScore(DIM)
    else:
        model = MLPScore(
            DIM, SMALL_HIDDEN, activation=kind, cond=cond, n_freq=SMALL_N_FREQ, rng=rng
        )
    set_flat_params(model, 0.5 * rng.standard_normal(len(get_flat_params(model))))
    return model


def assert_gradient_matches_fd(
    model: ScoreModel, loss: Callable[[], tuple[float, dict[str, np.ndarray]]]
) -> None:
    """The loss's hand-derived gradient agrees with central finite differences of its value."""
    theta0 = get_flat_params(model)
    value, grads = loss()

    def loss_at(theta: np.ndarray) -> float:
        set_flat_params(model, theta)
        return loss()[0]

    fd = np.empty_like(theta0)
    for i in range(len(theta0)):
        step = np.zeros_like(theta0)
        step[i] = FD_STEP
        fd[i] = (loss_at(theta0 + step) - loss_at(theta0 - step)) / (2 * FD_STEP)
    set_flat_params(model, theta0)
    assert np.isfinite(value)
    err = rel_err(flatten_grads(model, grads), fd)
    assert err < FD_TOL, f"relative gradient error {err:.2e}"


MODELS = ["linear", "silu", "softplus"]


@pytest.mark.parametrize("kind", MODELS)
def test_exact_score_matching_gradient(kind: str) -> None:
    """Exact SM (Jacobian trace through the network) gradient vs finite differences."""
    rng = np.random.default_rng(10)
    model = make_model(kind, rng)
    x = rng.standard_normal((BATCH, DIM))
    cond = rng.uniform(0.1, 1.0, BATCH)
    assert_gradient_matches_fd(model, lambda: exact_score_matching(model, x, cond=cond))


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
@pytest.mark.parametrize("variance_reduced", [False, True])
def test_sliced_score_matching_gradient(kind: str, projection: str, variance_reduced: bool) -> None:
    """SSM / SSM-VR (JVP through the network) gradient vs finite differences."""
    rng = np.random.default_rng(11)
    model = make_model(kind, rng)
    x = rng.standard_normal((BATCH, DIM))
    v = projections(rng, x.shape, projection)

    def loss() -> tuple[float, dict[str, np.ndarray]]:
        return sliced_score_matching(model, x, v, variance_reduced=variance_reduced)

    assert_gradient_matches_fd(model, loss)


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("reduce", sorted(losses.REDUCTIONS))
def test_denoising_score_matching_gradient(kind: str, reduce: str) -> None:
    """DSM at per-example σ (sigma-preconditioned MLP, cond=log σ) vs finite differences."""
    rng = np.random.default_rng(12)
    model = make_model(kind, rng, cond="log_sigma")
    x = rng.standard_normal((BATCH, DIM))
    z = rng.standard_normal((BATCH, DIM))
    sigma = rng.uniform(0.05, 2.0, BATCH)
    assert_gradient_matches_fd(model, lambda: denoising_score_matching(model, x, z, sigma, reduce))


@pytest.mark.parametrize("kind", MODELS)
def test_ncsn_loss_gradient(kind: str) -> None:
    """NCSN loss (σ = sigmas[idx]) gradient vs finite differences."""
    rng = np.random.default_rng(13)
    model = make_model(kind, rng, cond="log_sigma")
    x = rng.standard_normal((BATCH, DIM))
    z = rng.standard_normal((BATCH, DIM))
    idx = rng.integers(0, len(SIGMAS), BATCH)
    assert_gradient_matches_fd(model, lambda: ncsn_loss(model, x, z, idx, SIGMAS))


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("weighting", ["std2", "likelihood"])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_continuous_loss_gradient(kind: str, sde_name: str, weighting: str, reduce: str) -> None:
    """Continuous SDE loss for VE / VP / sub-VP × both weightings × both reduces."""
    rng = np.random.default_rng(14)
    model = make_model(kind, rng, cond="t")
    sde = SDES[sde_name]()
    x = rng.standard_normal((BATCH, DIM))
    t = rng.uniform(T_MIN, 1.0, BATCH)
    z = rng.standard_normal((BATCH, DIM))
    assert_gradient_matches_fd(
        model, lambda: continuous_loss(model, sde, x, t, z, weighting=weighting, reduce=reduce)
    )


# ------------------------------------------------------------------------------------------
# values


def test_exact_score_matching_value_linear() -> None:
    """For s = Ax + b the objective is mean ½‖Ax + b‖² + tr A."""
    rng = np.random.default_rng(20)
    model = make_model("linear", rng)
    x = rng.standard_normal((BATCH, DIM))
    s = x @ model.params["A"].T + model.params["b"]
    expected = np.mean(0.5 * np.sum(s**2, 1)) + np.trace(model.params["A"])
    assert exact_score_matching(model, x)[0] == pytest.approx(expected, rel=1e-13)


@pytest.mark.parametrize("kind", MODELS)
@pytest.mark.parametrize("variance_reduced", [False, True])
def test_sliced_equals_exact_over_scaled_basis(kind: str, variance_reduced: bool) -> None:
    """With v over √d·e_k (E vvᵀ = I exactly), SSM and SSM-VR equal exact SM, gradients too."""
    rng = np.random.default_rng(21)
    model = make_model(kind, rng)
    x = rng.standard_normal((BATCH, DIM))
    c = rng.uniform(0.1, 1.0, BATCH)
    x_rep, c_rep = np.repeat(x, DIM, axis=0), np.repeat(c, DIM)
    v = np.tile(np.sqrt(DIM) * np.eye(DIM), (BATCH, 1))
    exact, g_exact = exact_score_matching(model, x, cond=c)
    sliced, g_sliced = sliced_score_matching(model, x_rep, v, variance_reduced, cond=c_rep)
    assert sliced == pytest.approx(exact, rel=1e-12)
    assert rel_err(flatten_grads(model, g_sliced), flatten_grads(model, g_exact)) < 1e-12


def test_projections() -> None:
    """Rademacher probes are ±1, Gaussian ones standard normal; both have E vvᵀ ≈ I."""
    rng = np.random.default_rng(22)
    n = 40000
    tol = 5 / np.sqrt(n)  # five standard errors of a second moment of order one
    for kind in ("gaussian", "rademacher"):
        v = projections(rng, (n, 2), kind)
        np.testing.assert_allclose(v.T @ v / n, np.eye(2), atol=tol * np.sqrt(3))
    assert set(np.unique(projections(rng, (100, 3), "rademacher"))) == {-1.0, 1.0}
    with pytest.raises(ValueError):
        projections(rng, (2, 2), "uniform")


def test_dsm_value_and_reductions() -> None:
    """DSM is mean ‖σ s(x+σz) + z‖² ("squared_norm"); "sum" halves it, "mean" divides by d."""
    rng = np.random.default_rng(23)
    model = make_model("linear", rng)
    x, z = rng.standard_normal((BATCH, DIM)), rng.standard_normal((BATCH, DIM))
    sigma = 0.7
    s = (x + sigma * z) @ model.params["A"].T + model.params["b"]
    expected = np.mean(np.sum((sigma * s + z) ** 2, axis=1))
    assert denoising_score_matching(model, x, z, sigma)[0] == pytest.approx(expected, rel=1e-13)
    assert denoising_score_matching(model, x, z, sigma, "sum")[0] == pytest.approx(expected / 2)
    assert denoising_score_matching(model, x, z, sigma, "mean")[0] == pytest.approx(expected / DIM)
    with pytest.raises(ValueError):
        denoising_score_matching(model, x, z, sigma, "max")


def test_dsm_mlp_uses_sigma_preconditioning() -> None:
    """For the MLP, σ s(x̃, σ) = out(x̃ / sqrt(1 + σ²), σ): DSM is ‖out + z‖²."""
    rng = np.random.default_rng(24)
    model = make_model("silu", rng, cond="log_sigma")
    x, z = rng.standard_normal((BATCH, DIM)), rng.standard_normal((BATCH, DIM))
    sigma = rng.uniform(0.1, 2.0, BATCH)
    x_tilde = x + sigma[:, None] * z
    out = model.forward(x_tilde / np.sqrt(1 + sigma[:, None] ** 2), sigma)[0]
    expected = np.mean(np.sum((out + z) ** 2, axis=1))
    assert denoising_score_matching(model, x, z, sigma)[0] == pytest.approx(expected, rel=1e-12)


def test_ncsn_is_dsm_at_indexed_sigmas() -> None:
    """ncsn_loss is DSM with the per-example σ = sigmas[idx]."""
    rng = np.random.default_rng(25)
    model = make_model("softplus", rng, cond="log_sigma")
    x, z = rng.standard_normal((BATCH, DIM)), rng.standard_normal((BATCH, DIM))
    idx = rng.integers(0, len(SIGMAS), BATCH)
    expected = denoising_score_matching(model, x, z, SIGMAS[idx])[0]
    assert ncsn_loss(model, x, z, idx, SIGMAS)[0] == expected


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_continuous_loss_values(sde_name: str) -> None:
    """std2: ½Σ‖std s + z‖²; likelihood: g²/std² times the std2 loss; "mean" = 2/d × "sum"."""
    rng = np.random.default_rng(26)
    model = make_model("linear", rng)
    sde = SDES[sde_name]()
    x, z = rng.standard_normal((BATCH, DIM)), rng.standard_normal((BATCH, DIM))
    t_scalar = 0.4
    t = np.full(BATCH, t_scalar)
    alpha, std = sde.marginal_coefficients(t)
    x_t = alpha[:, None] * x + std[:, None] * z
    s = x_t @ model.params["A"].T + model.params["b"]
    std2_sum = np.mean(0.5 * np.sum((std[:, None] * s + z) ** 2, axis=1))
    assert continuous_loss(model, sde, x, t, z)[0] == pytest.approx(std2_sum, rel=1e-13)
    mean = continuous_loss(model, sde, x, t, z, reduce="mean")[0]
    assert mean == pytest.approx(2 * std2_sum / DIM, rel=1e-13)
    g2 = sde.sde(x_t, t)[1][0] ** 2
    likelihood = continuous_loss(model, sde, x, t, z, weighting="likelihood")[0]
    assert likelihood == pytest.approx(g2 / std[0] ** 2 * std2_sum, rel=1e-12)
    with pytest.raises(ValueError):
        continuous_loss(model, sde, x, t, z, weighting="uniform")


def test_continuous_loss_is_zero_mean_residual_at_true_score() -> None:
    """N(0, I) data stays N(0, I) under VP, so s = −x is optimal: the loss gradient is noise."""
    rng = np.random.default_rng(27)
    sde = VPSDE()
    model = LinearScore(DIM)  # A = −I, b = 0: the score of N(0, I), which VP preserves
    n = 20000
    x, z = rng.standard_normal((n, DIM)), rng.standard_normal((n, DIM))
    t = rng.uniform(sde.eps, 1.0, n)
    _, grads = continuous_loss(model, sde, x, t, z)
    # the true score is a stationary point of the population loss: gradient is sampling noise
    tol = 5 * np.sqrt(DIM / n)  # five standard errors of a mean of order-one terms
    assert np.max(np.abs(flatten_grads(model, grads))) < tol
