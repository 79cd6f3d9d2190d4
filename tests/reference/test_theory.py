"""Theory check (issue item 4): on Gaussian data the score-matching minimisers are known.

Data x ~ N(μ, Σ) in 2-D, model s(x) = A x + b (LinearScore). Every objective here is quadratic
in θ = (A, b), so its minimiser is one Newton step θ* = θ₀ − H⁻¹ g(θ₀) from anywhere, with H
built column by column from differences of the hand-derived gradients (exact for a quadratic).

* exact SM, SSM (Gaussian and Rademacher v), SSM-VR  →  A = −Σ⁻¹, b = Σ⁻¹μ
* DSM at σ                                         →  A = −(Σ+σ²I)⁻¹, b = (Σ+σ²I)⁻¹μ

Sampling tolerance. θ̂ is an M-estimator over n examples, so θ̂ − θ ≈ −H⁻¹ ḡ with ḡ the mean
of n i.i.d. per-example gradients at the true θ; its expected squared error is the sandwich
RMS² = tr(H⁻¹ C H⁻¹) / n, C the covariance of one example's gradient (estimated from
`N_COV` examples). We assert ‖θ̂ − θ‖ < K_SIGMA · RMS: a chi-like variable with 6 degrees of
freedom exceeds 4 times its RMS with negligible probability, and the seed is fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from reference.losses import (
    denoising_score_matching,
    exact_score_matching,
    projections,
    sliced_score_matching,
)
from reference.models import LinearScore, flatten_grads, get_flat_params, set_flat_params

MU = np.array([1.0, -0.5])
SIGMA = np.array([[1.5, 0.6], [0.6, 0.8]])
N = 20000
N_COV = 2000  # examples used to estimate the per-example gradient covariance C
K_SIGMA = 4.0
DSM_SIGMA = 0.5
SEED = 2024

LossFn = Callable[[LinearScore], tuple[float, dict[str, np.ndarray]]]


def theta_of(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Flat (A, b) in LinearScore's parameter order."""
    return np.concatenate([A.ravel(), b])


def gradient_at(model: LinearScore, loss: LossFn, theta: np.ndarray) -> np.ndarray:
    """The loss's hand-derived gradient at flat parameters theta."""
    set_flat_params(model, theta)
    return flatten_grads(model, loss(model)[1])


def minimise_quadratic(model: LinearScore, loss: LossFn) -> tuple[np.ndarray, np.ndarray]:
    """Minimiser and Hessian of a loss quadratic in θ: one Newton step from θ₀ = 0."""
    theta0 = np.zeros(len(get_flat_params(model)))
    g0 = gradient_at(model, loss, theta0)
    H = np.column_stack(
        [gradient_at(model, loss, e) - g0 for e in np.eye(len(theta0))]
    )  # unit steps are exact: the gradient is affine in θ
    H = 0.5 * (H + H.T)
    return theta0 - np.linalg.solve(H, g0), H


def sandwich_rms(
    model: LinearScore,
    per_example_loss: Callable[[LinearScore, int], tuple],
    theta: np.ndarray,
    H: np.ndarray,
) -> float:
    """sqrt(tr(H⁻¹ C H⁻¹) / N): the RMS error of the minimiser over N examples."""
    set_flat_params(model, theta)
    g = np.stack([flatten_grads(model, per_example_loss(model, i)[1]) for i in range(N_COV)])
    C = np.cov(g, rowvar=False)
    H_inv = np.linalg.inv(H)
    return float(np.sqrt(np.trace(H_inv @ C @ H_inv) / N))


@pytest.fixture(scope="module")
def data() -> dict[str, np.ndarray]:
    """x ~ N(MU, SIGMA), and the noise for DSM and the projections for SSM, all seeded."""
    rng = np.random.default_rng(SEED)
    x = rng.multivariate_normal(MU, SIGMA, size=N)
    return {
        "x": x,
        "z": rng.standard_normal(x.shape),
        "gaussian": projections(rng, x.shape, "gaussian"),
        "rademacher": projections(rng, x.shape, "rademacher"),
    }


def make_losses(
    data: dict[str, np.ndarray],
) -> dict[str, tuple[Callable[[LinearScore, slice], tuple], np.ndarray, np.ndarray]]:
    """name -> (loss on a slice of the examples, A target, b target)."""
    x, z = data["x"], data["z"]
    prec = np.linalg.inv(SIGMA)
    prec_noisy = np.linalg.inv(SIGMA + DSM_SIGMA**2 * np.eye(2))
    return {
        "exact": (lambda m, i: exact_score_matching(m, x[i]), -prec, prec @ MU),
        "ssm-gaussian": (
            lambda m, i: sliced_score_matching(m, x[i], data["gaussian"][i]),
            -prec,
            prec @ MU,
        ),
        "ssm-rademacher": (
            lambda m, i: sliced_score_matching(m, x[i], data["rademacher"][i]),
            -prec,
            prec @ MU,
        ),
        "ssm-vr": (
            lambda m, i: sliced_score_matching(m, x[i], data["gaussian"][i], variance_reduced=True),
            -prec,
            prec @ MU,
        ),
        "dsm": (
            lambda m, i: denoising_score_matching(m, x[i], z[i], DSM_SIGMA),
            -prec_noisy,
            prec_noisy @ MU,
        ),
    }


@pytest.mark.parametrize("name", ["exact", "ssm-gaussian", "ssm-rademacher", "ssm-vr", "dsm"])
def test_minimiser_recovers_gaussian_score(data: dict[str, np.ndarray], name: str) -> None:
    """‖θ̂ − θ_true‖ < K_SIGMA · sandwich RMS (see the module docstring)."""
    loss_on, A_true, b_true = make_losses(data)[name]
    model = LinearScore(2)
    everything = slice(None)
    theta_hat, H = minimise_quadratic(model, lambda m: loss_on(m, everything))
    theta_true = theta_of(A_true, b_true)
    rms = sandwich_rms(model, lambda m, i: loss_on(m, slice(i, i + 1)), theta_true, H)
    err = float(np.linalg.norm(theta_hat - theta_true))
    print(
        f"{name}: |theta_hat - theta| = {err:.4f}, tolerance {K_SIGMA} x RMS = {K_SIGMA * rms:.4f}"
    )
    assert err < K_SIGMA * rms


def test_exact_sm_minimiser_is_the_sample_precision(data: dict[str, np.ndarray]) -> None:
    """Noise-free: exact SM's minimiser is exactly −Σ̂⁻¹, Σ̂⁻¹μ̂ (Σ̂ the 1/n sample covariance)."""
    x = data["x"]
    model = LinearScore(2)
    theta_hat, _ = minimise_quadratic(model, lambda m: exact_score_matching(m, x))
    mu_hat = x.mean(axis=0)
    prec_hat = np.linalg.inv(np.cov(x, rowvar=False, bias=True))
    np.testing.assert_allclose(theta_hat, theta_of(-prec_hat, prec_hat @ mu_hat), rtol=1e-8)


def test_dsm_minimiser_is_least_squares(data: dict[str, np.ndarray]) -> None:
    """Noise-free: DSM's minimiser is the least-squares regression of −z/σ on x̃ = x + σz."""
    x, z = data["x"], data["z"]
    model = LinearScore(2)
    theta_hat, _ = minimise_quadratic(model, lambda m: denoising_score_matching(m, x, z, DSM_SIGMA))
    x_tilde = x + DSM_SIGMA * z
    design = np.column_stack([x_tilde, np.ones(N)])
    coef, *_ = np.linalg.lstsq(design, -z / DSM_SIGMA, rcond=None)  # rows: A^T then b
    np.testing.assert_allclose(theta_hat, theta_of(coef[:2].T, coef[2]), rtol=1e-8)
