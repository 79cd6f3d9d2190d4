"""Tests of reference.distributions: exact densities, scores, conditionals of Gaussian mixtures."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, stats

from reference.datasets import mixture5
from reference.distributions import Gaussian, GaussianMixture
from reference.sde import SDE, VESDE, VPSDE, SubVPSDE

FD_STEP = 1e-5
FD_RTOL = 1e-7
FLOAT_RTOL = 1e-10
QUAD_RTOL = 1e-8
N_SAMPLES = 40_000
N_STANDARD_ERRORS = 4.0
BATCH = 6


def _random_cov(rng: np.random.Generator, d: int) -> np.ndarray:
    """A well-conditioned full covariance."""
    A = rng.standard_normal((d, d))
    return A @ A.T / d + 0.3 * np.eye(d)


def _gaussian3() -> Gaussian:
    """A 3-D Gaussian with a full covariance."""
    rng = np.random.default_rng(10)
    return Gaussian(np.array([0.5, -1.0, 2.0]), _random_cov(rng, 3))


def _mixture3() -> GaussianMixture:
    """A 3-D mixture of three overlapping components with full covariances."""
    rng = np.random.default_rng(11)
    means = np.array([[0.0, 0.0, 0.0], [1.5, -0.5, 1.0], [-1.0, 1.0, 0.5]])
    covs = np.stack([_random_cov(rng, 3) for _ in range(3)])
    return GaussianMixture(np.array([0.5, 0.3, 0.2]), means, covs)


def _mixture1d() -> GaussianMixture:
    """A 1-D bimodal mixture."""
    return GaussianMixture(
        np.array([0.3, 0.7]), np.array([[-1.0], [2.0]]), np.array([[[0.25]], [[0.8]]])
    )


DISTRIBUTIONS = [_gaussian3, _mixture3, mixture5]
DIST_IDS = ["gaussian3", "mixture3", "mixture5"]
# clean, shared scalar perturbation, and per-example (alpha, std) as for a VP marginal
PERTURBATIONS = [
    (1.0, 0.0),
    (0.8, 0.5),
    (np.linspace(0.2, 1.0, BATCH), np.linspace(0.05, 1.5, BATCH)),
]
PERT_IDS = ["clean", "scalar", "per_example"]


def _points(dist: GaussianMixture, seed: int = 12) -> np.ndarray:
    """Test points spread around the distribution."""
    rng = np.random.default_rng(seed)
    return dist.means[rng.integers(dist.n_components, size=BATCH)] + rng.standard_normal(
        (BATCH, dist.dim)
    )


def _central_difference(fn, x: np.ndarray) -> np.ndarray:
    """d fn(x)[b, ...] / d x[b, j] by central differences, stacked on a new last axis."""
    columns = []
    for j in range(x.shape[1]):
        step = np.zeros_like(x)
        step[:, j] = FD_STEP
        columns.append((fn(x + step) - fn(x - step)) / (2 * FD_STEP))
    return np.stack(columns, axis=-1)


def _scipy_log_prob(dist: GaussianMixture, x: np.ndarray, alpha: float, std: float) -> np.ndarray:
    """Independent oracle: log sum_k w_k N(x; alpha mu_k, alpha^2 Sigma_k + std^2 I) via scipy."""
    eye = np.eye(dist.dim)
    log_terms = [
        np.log(w) + stats.multivariate_normal(alpha * m, alpha**2 * c + std**2 * eye).logpdf(x)
        for w, m, c in zip(dist.weights, dist.means, dist.covs, strict=True)
    ]
    return np.logaddexp.reduce(np.reshape(log_terms, (dist.n_components, -1)), axis=0)


# --- densities against independent oracles --------------------------------------------------


@pytest.mark.parametrize("make", DISTRIBUTIONS, ids=DIST_IDS)
@pytest.mark.parametrize(("alpha", "std"), PERTURBATIONS, ids=PERT_IDS)
def test_log_prob_matches_scipy(make, alpha, std) -> None:
    """log_prob with per-example (alpha, std) equals scipy's density, example by example."""
    dist = make()
    x = _points(dist)
    alphas, stds = np.broadcast_to(alpha, BATCH), np.broadcast_to(std, BATCH)
    expected = [_scipy_log_prob(dist, x[b : b + 1], alphas[b], stds[b])[0] for b in range(BATCH)]
    np.testing.assert_allclose(dist.log_prob(x, alpha, std), expected, rtol=FLOAT_RTOL)


@pytest.mark.parametrize(("alpha", "std"), [(1.0, 0.0), (0.6, 0.4), (1.0, 2.0)])
def test_log_prob_is_normalised_in_1d(alpha: float, std: float) -> None:
    """The 1-D mixture density integrates to 1, clean and perturbed."""
    dist = _mixture1d()
    total, _ = integrate.quad(
        lambda x: np.exp(dist.log_prob(np.array([[x]]), alpha, std)[0]), -np.inf, np.inf
    )
    np.testing.assert_allclose(total, 1.0, rtol=QUAD_RTOL)


@pytest.mark.parametrize(("alpha", "std"), [(1.0, 0.3), (0.5, 0.9)])
def test_perturbed_density_is_the_convolution(alpha: float, std: float) -> None:
    """p(x) of alpha X + std Z equals int p_X(y) N(x; alpha y, std^2) dy, by quadrature."""
    dist = _mixture1d()
    clean = lambda y: np.exp(dist.log_prob(np.array([[y]]))[0])  # noqa: E731
    xs = np.array([-2.0, -0.4, 0.3, 1.1, 2.5])
    convolved = [
        integrate.quad(lambda y, x=x: clean(y) * stats.norm.pdf(x, alpha * y, std), -12, 12)[0]
        for x in xs
    ]
    np.testing.assert_allclose(
        np.exp(dist.log_prob(xs[:, None], alpha, std)), convolved, rtol=QUAD_RTOL
    )


def test_log_prob_is_stable_far_away() -> None:
    """logsumexp keeps log_prob finite where every component density underflows."""
    dist = mixture5()
    x = np.array([[200.0, -300.0]])
    log_p = dist.log_prob(x)
    np.testing.assert_allclose(log_p, _scipy_log_prob(dist, x, 1.0, 0.0), rtol=FLOAT_RTOL)
    assert np.all(np.isfinite(dist.score(x)))


# --- scores and their Jacobians against finite differences ---------------------------------


@pytest.mark.parametrize("make", DISTRIBUTIONS, ids=DIST_IDS)
@pytest.mark.parametrize(("alpha", "std"), PERTURBATIONS, ids=PERT_IDS)
def test_score_is_gradient_of_log_prob(make, alpha, std) -> None:
    """score == central-difference gradient of log_prob."""
    dist = make()
    x = _points(dist)
    fd = _central_difference(lambda y: dist.log_prob(y, alpha, std), x)
    np.testing.assert_allclose(dist.score(x, alpha, std), fd, rtol=FD_RTOL, atol=FD_RTOL)


@pytest.mark.parametrize("make", DISTRIBUTIONS, ids=DIST_IDS)
@pytest.mark.parametrize(("alpha", "std"), PERTURBATIONS, ids=PERT_IDS)
def test_score_jacobian_is_jacobian_of_score(make, alpha, std) -> None:
    """score_jacobian == central-difference Jacobian of score, and it is symmetric."""
    dist = make()
    x = _points(dist)
    jac = dist.score_jacobian(x, alpha, std)
    fd = _central_difference(lambda y: dist.score(y, alpha, std), x)
    np.testing.assert_allclose(jac, fd, rtol=FD_RTOL, atol=FD_RTOL)
    np.testing.assert_allclose(jac, np.swapaxes(jac, 1, 2), atol=1e-12)


def test_gaussian_score_is_linear() -> None:
    """Perturbed N(m, S) is N(alpha m, C), C = alpha^2 S + std^2 I: score -C^-1 (x - alpha m)."""
    dist = _gaussian3()
    x = _points(dist)
    alpha, std = 0.7, 0.4
    cov = alpha**2 * dist.cov + std**2 * np.eye(3)
    precision = np.linalg.inv(cov)
    np.testing.assert_allclose(
        dist.score(x, alpha, std), -(x - alpha * dist.mean) @ precision, rtol=FLOAT_RTOL
    )
    np.testing.assert_allclose(
        dist.score_jacobian(x, alpha, std), np.broadcast_to(-precision, (BATCH, 3, 3)), rtol=1e-9
    )


# --- noise levels: at_time, at_sigma, score_fn ----------------------------------------------


@pytest.mark.parametrize("sde", [VESDE(), VPSDE(), SubVPSDE()], ids=["ve", "vp", "subvp"])
def test_at_time_and_score_fn_match_per_example_perturbation(sde: SDE) -> None:
    """at_time and score_fn(sde) use (alpha, std) = sde.marginal_coefficients(t)."""
    dist = mixture5()
    t = np.linspace(0.02, 0.9, BATCH)
    x = _points(dist)
    alpha, std = sde.marginal_coefficients(t)
    per_example = dist.score(x, alpha, std)
    np.testing.assert_allclose(dist.score_fn(sde)(x, t), per_example, rtol=FLOAT_RTOL)
    for b in range(BATCH):
        marginal = dist.at_time(sde, t[b])
        assert isinstance(marginal, GaussianMixture)
        np.testing.assert_allclose(
            marginal.log_prob(x[b : b + 1]), dist.log_prob(x[b : b + 1], alpha[b], std[b])
        )
        np.testing.assert_allclose(marginal.score(x[b : b + 1]), per_example[b : b + 1])


def test_at_sigma_and_sigma_score_fn() -> None:
    """at_sigma(sigma) and sigma_score_fn() are the data plus N(0, sigma^2 I)."""
    dist = mixture5()
    x = _points(dist)
    sigma = np.geomspace(0.01, 3.0, BATCH)
    np.testing.assert_allclose(
        dist.sigma_score_fn()(x, sigma), dist.score(x, 1.0, sigma), rtol=FLOAT_RTOL
    )
    np.testing.assert_allclose(
        dist.at_sigma(0.5).log_prob(x), _scipy_log_prob(dist, x, 1.0, 0.5), rtol=FLOAT_RTOL
    )


def test_gaussian_at_time_stays_gaussian() -> None:
    """Perturbing a Gaussian returns a Gaussian with alpha m and alpha^2 S + std^2 I."""
    dist = _gaussian3()
    sde = VPSDE()
    marginal = dist.at_time(sde, 0.4)
    alpha, std = sde.marginal_coefficients(np.array([0.4]))
    assert isinstance(marginal, Gaussian)
    np.testing.assert_allclose(marginal.mean, alpha[0] * dist.mean)
    np.testing.assert_allclose(marginal.cov, alpha[0] ** 2 * dist.cov + std[0] ** 2 * np.eye(3))


# --- class posterior -----------------------------------------------------------------------


@pytest.mark.parametrize(("alpha", "std"), PERTURBATIONS, ids=PERT_IDS)
def test_posterior_is_normalised_bayes_rule(alpha, std) -> None:
    """p(k | x) sums to 1 and equals w_k p_k(x) / p(x) computed with scipy."""
    dist = _mixture3()
    x = _points(dist)
    posterior = dist.posterior(x, alpha, std)
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, rtol=1e-14)
    alphas, stds = np.broadcast_to(alpha, BATCH), np.broadcast_to(std, BATCH)
    for k in range(dist.n_components):
        single = GaussianMixture(np.ones(1), dist.means[k : k + 1], dist.covs[k : k + 1])
        expected = [
            np.exp(
                np.log(dist.weights[k])
                + _scipy_log_prob(single, x[b : b + 1], alphas[b], stds[b])[0]
                - _scipy_log_prob(dist, x[b : b + 1], alphas[b], stds[b])[0]
            )
            for b in range(BATCH)
        ]
        np.testing.assert_allclose(posterior[:, k], expected, rtol=FLOAT_RTOL)


@pytest.mark.parametrize(("alpha", "std"), PERTURBATIONS, ids=PERT_IDS)
def test_log_posterior_grad_is_gradient(alpha, std) -> None:
    """grad_x log p(k | x) == central differences, for an int label and per-example labels."""
    dist = _mixture3()
    x = _points(dist)
    labels = np.arange(BATCH) % dist.n_components
    rows = np.arange(BATCH)
    for k in (1, labels):
        log_post = lambda y, k=k: np.log(dist.posterior(y, alpha, std)[rows, k])  # noqa: E731
        fd = _central_difference(log_post, x)
        np.testing.assert_allclose(
            dist.log_posterior_grad(x, k, alpha, std), fd, rtol=FD_RTOL, atol=FD_RTOL
        )


# --- sampling -------------------------------------------------------------------------------


def _mixture_moments(dist: GaussianMixture, alpha: float, std: float) -> tuple[np.ndarray, ...]:
    """Mean and covariance of alpha X + std Z."""
    mean = dist.weights @ dist.means
    centred = dist.means - mean
    cov = np.einsum("k,kij->ij", dist.weights, dist.covs) + np.einsum(
        "k,ki,kj->ij", dist.weights, centred, centred
    )
    return alpha * mean, alpha**2 * cov + std**2 * np.eye(dist.dim)


@pytest.mark.parametrize(("alpha", "std"), [(1.0, 0.0), (0.6, 0.7)])
def test_samples_have_the_right_moments_and_labels(alpha: float, std: float) -> None:
    """Sample mean, variances and label frequencies agree with the exact values (4 SE)."""
    dist = _mixture3()
    x, labels = dist.sample_with_labels(np.random.default_rng(13), N_SAMPLES, alpha, std)
    mean, cov = _mixture_moments(dist, alpha, std)
    se_mean = np.sqrt(np.diag(cov) / N_SAMPLES)
    np.testing.assert_array_less(np.abs(x.mean(axis=0) - mean), N_STANDARD_ERRORS * se_mean)
    # var of (x - m)(y - m) estimated from the samples themselves
    products = (x - mean)[:, :, None] * (x - mean)[:, None, :]
    se_cov = products.std(axis=0) / np.sqrt(N_SAMPLES)
    np.testing.assert_array_less(np.abs(products.mean(axis=0) - cov), N_STANDARD_ERRORS * se_cov)
    freq = np.bincount(labels, minlength=dist.n_components) / N_SAMPLES
    se_freq = np.sqrt(dist.weights * (1 - dist.weights) / N_SAMPLES)
    np.testing.assert_array_less(np.abs(freq - dist.weights), N_STANDARD_ERRORS * se_freq)


def test_sample_uses_the_same_draws_as_sample_with_labels() -> None:
    """sample(rng, n) is the first output of sample_with_labels with the same generator state."""
    dist = mixture5()
    x = dist.sample(np.random.default_rng(14), 50)
    y, _ = dist.sample_with_labels(np.random.default_rng(14), 50)
    np.testing.assert_array_equal(x, y)


# --- conditionals --------------------------------------------------------------------------


def test_gaussian_conditional_is_the_textbook_formula() -> None:
    """mu_u + S_uo S_oo^-1 (x_o - mu_o), S_uu - S_uo S_oo^-1 S_ou, checked through log_prob."""
    dist = _gaussian3()
    mask = np.array([True, False, True])
    x = _points(dist)
    cond = dist.conditional(mask, x)
    o, u = mask, ~mask
    S = dist.cov
    gain = S[np.ix_(u, o)] @ np.linalg.inv(S[np.ix_(o, o)])
    mean = dist.mean[u] + (x[:, o] - dist.mean[o]) @ gain.T
    cov = S[np.ix_(u, u)] - gain @ S[np.ix_(o, u)]
    np.testing.assert_allclose(cond.means[:, 0], mean, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(cond.covs[:, 0], np.broadcast_to(cov, (BATCH, 1, 1)), rtol=1e-9)
    expected = stats.norm.logpdf(x[:, u][:, 0], mean[:, 0], np.sqrt(cov[0, 0]))
    np.testing.assert_allclose(cond.log_prob(x), expected, rtol=FLOAT_RTOL)


@pytest.mark.parametrize("mask", [[True, False, False], [False, True, True], [True, True, False]])
@pytest.mark.parametrize(("alpha", "std"), PERTURBATIONS, ids=PERT_IDS)
def test_mixture_conditional_is_joint_over_marginal(mask, alpha, std) -> None:
    """log p(x_u | x_o) = log p(x) - log p(x_o), with p(x_o) the mixture of observed marginals."""
    dist = _mixture3()
    mask = np.array(mask)
    x = _points(dist)
    observed = GaussianMixture(dist.weights, dist.means[:, mask], dist.covs[:, mask][:, :, mask])
    expected = dist.log_prob(x, alpha, std) - observed.log_prob(x[:, mask], alpha, std)
    cond = dist.conditional(mask, x, alpha, std)
    np.testing.assert_allclose(cond.log_prob(x), expected, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(cond.log_prob(x[:, ~mask]), expected, rtol=FLOAT_RTOL)
    # the updated weights are the class posterior given the observed coordinates only
    np.testing.assert_allclose(
        cond.weights, observed.posterior(x[:, mask], alpha, std), rtol=FLOAT_RTOL
    )


def test_mixture_conditional_samples() -> None:
    """Conditional samples keep x_obs and have the conditional mean sum_k w_k m_k (4 SE)."""
    dist = _mixture3()
    mask = np.array([True, False, True])
    x_obs = np.repeat(_points(dist)[:1], N_SAMPLES, axis=0)
    cond = dist.conditional(mask, x_obs)
    x = cond.sample(np.random.default_rng(15))
    np.testing.assert_array_equal(x[:, mask], x_obs[:, mask])
    exact_mean = np.einsum("k,kf->f", cond.weights[0], cond.means[0])
    free = x[:, ~mask]
    se = free.std(axis=0) / np.sqrt(N_SAMPLES)
    np.testing.assert_array_less(np.abs(free.mean(axis=0) - exact_mean), N_STANDARD_ERRORS * se)


def test_conditional_with_nothing_observed_is_the_distribution() -> None:
    """An all-False mask gives back the distribution itself."""
    dist = mixture5()
    x = _points(dist)
    cond = dist.conditional(np.zeros(2, dtype=bool), x)
    np.testing.assert_allclose(cond.log_prob(x), dist.log_prob(x), rtol=FLOAT_RTOL)
