"""Tests of reference.likelihood: exact and Hutchinson probability-flow likelihoods on mixture5."""

from __future__ import annotations

import numpy as np
import pytest

from reference import likelihood
from reference.datasets import mixture5
from reference.distributions import Gaussian
from reference.sde import VESDE, VPSDE, SubVPSDE

SDES = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}
EXACT_TOL_NATS = 1e-3
# solve_ivp controls the RMS error over the whole flattened batch, so one point of a batch of B
# may carry ~sqrt(B) times the tolerance; 1e-7 keeps every point of 200 well inside 1e-3 nats
# (measured max error: VE 1.6e-5, VP 1.8e-5; at the default 1e-5 it is ~1e-2).
EXACT_ODE_TOL = 1e-7
N_POINTS = 200
N_PROBES = 200  # Hutchinson probes per point, one probe per (replicated) example and solve
N_HUTCHINSON_POINTS = 10
N_STANDARD_ERRORS = 4.0
HUTCHINSON_ODE_TOL = 1e-6


def mixture_fns(mixture, sde):
    """Exact score, score Jacobian, JVP and terminal log-density p_T of a mixture under an SDE."""

    def jacobian(x, t):
        return mixture.score_jacobian(x, *sde.marginal_coefficients(t))

    def jvp(x, t, v):
        return np.einsum("bij,bj->bi", jacobian(x, t), v)

    return mixture.score_fn(sde), jacobian, jvp, mixture.at_time(sde, sde.T).log_prob


def exact_logp_at_eps(mixture, sde, x):
    """log p_eps(x): the mixture perturbed to the ODE's end time eps."""
    alpha, std = sde.marginal_coefficients(np.array([sde.eps]))
    return mixture.log_prob(x, alpha[0], std[0])


@pytest.mark.parametrize("name", ["ve", "vp"])
def test_exact_divergence_matches_mixture_density(name):
    mixture, sde = mixture5(), SDES[name]()
    x = mixture.sample(np.random.default_rng(0), N_POINTS)
    score, jacobian, _, prior_logp = mixture_fns(mixture, sde)
    log_p, z, nfe = likelihood.ode_likelihood(
        score,
        sde,
        x,
        score_jacobian_fn=jacobian,
        rtol=EXACT_ODE_TOL,
        atol=EXACT_ODE_TOL,
        prior_logp_fn=prior_logp,
    )
    error = log_p - exact_logp_at_eps(mixture, sde, x)
    print(f"\n{name}: max |error| {np.abs(error).max():.2e} nats, NFE {nfe}")
    assert np.abs(error).max() < EXACT_TOL_NATS
    assert z.shape == x.shape and nfe > 0


@pytest.mark.parametrize("name", ["ve", "vp", "subvp"])
def test_gaussian_likelihood_with_sde_prior(name):
    # for a 1-D Gaussian the prior mismatch is small; checks sde.prior_logp is used by default
    sde, target = SDES[name](), Gaussian(np.array([0.0]), np.array([[1.0]]))
    x = np.array([[-1.0], [0.0], [2.0]])
    log_p, _, _ = likelihood.ode_likelihood(
        target.score_fn(sde),
        sde,
        x,
        score_jacobian_fn=lambda x, t: target.score_jacobian(x, *sde.marginal_coefficients(t)),
        rtol=1e-8,
        atol=1e-8,
    )
    exact = exact_logp_at_eps(target, sde, x)
    np.testing.assert_allclose(log_p, exact, atol=5e-3)


@pytest.mark.slow
@pytest.mark.parametrize("probe", ["rademacher", "gaussian"])
@pytest.mark.parametrize("use_jvp", [True, False], ids=["jvp", "finite_difference"])
@pytest.mark.parametrize("name", ["ve", "vp"])
def test_hutchinson_mean_matches_exact(name, probe, use_jvp):
    mixture, sde = mixture5(), SDES[name]()
    x = mixture.sample(np.random.default_rng(0), N_HUTCHINSON_POINTS)
    score, _, jvp, prior_logp = mixture_fns(mixture, sde)
    replicated = np.repeat(x, N_PROBES, axis=0)  # one independent probe per replicate
    log_p, _, _ = likelihood.ode_likelihood(
        score,
        sde,
        replicated,
        np.random.default_rng(1),
        divergence="hutchinson",
        probe=probe,
        jvp_fn=jvp if use_jvp else None,
        rtol=HUTCHINSON_ODE_TOL,
        atol=HUTCHINSON_ODE_TOL,
        prior_logp_fn=prior_logp,
    )
    log_p = log_p.reshape(N_HUTCHINSON_POINTS, N_PROBES)
    mean = log_p.mean(axis=1)
    standard_error = log_p.std(axis=1, ddof=1) / np.sqrt(N_PROBES)
    z_scores = (mean - exact_logp_at_eps(mixture, sde, x)) / standard_error
    print(f"\n{name} {probe} jvp={use_jvp}: max |z| {np.abs(z_scores).max():.2f}")
    assert np.all(np.abs(z_scores) < N_STANDARD_ERRORS)


def test_hutchinson_probe_is_fixed_per_solve():
    # a linear score has a constant Jacobian: v^T J v is then the same along the path, and with
    # Rademacher probes in 1-D v^T J v = J exactly, so Hutchinson equals the exact divergence
    sde, target = VPSDE(), Gaussian(np.array([0.3]), np.array([[0.5]]))
    x = np.array([[0.1], [1.0]])
    kwargs = {"rtol": 1e-8, "atol": 1e-8}
    jac = lambda x, t: target.score_jacobian(x, *sde.marginal_coefficients(t))  # noqa: E731
    exact, _, _ = likelihood.ode_likelihood(
        target.score_fn(sde), sde, x, score_jacobian_fn=jac, **kwargs
    )
    hutch, _, _ = likelihood.ode_likelihood(
        target.score_fn(sde), sde, x, np.random.default_rng(0), "hutchinson", **kwargs
    )
    np.testing.assert_allclose(hutch, exact, atol=1e-6)


def test_argument_errors():
    sde, target = VESDE(), Gaussian(np.zeros(1), np.eye(1))
    x = np.zeros((2, 1))
    with pytest.raises(ValueError):
        likelihood.ode_likelihood(target.score_fn(sde), sde, x)
    with pytest.raises(ValueError):
        likelihood.ode_likelihood(target.score_fn(sde), sde, x, divergence="hutchinson")
    with pytest.raises(ValueError):
        likelihood.ode_likelihood(target.score_fn(sde), sde, x, divergence="bogus")
    with pytest.raises(ValueError):
        likelihood.draw_probe(np.random.default_rng(0), (2, 1), "bogus")


def test_probes_have_identity_second_moment():
    rng = np.random.default_rng(0)
    rademacher = likelihood.draw_probe(rng, (100_000, 3), "rademacher")
    assert set(np.unique(rademacher)) == {-1.0, 1.0}
    for v in (rademacher, likelihood.draw_probe(rng, (100_000, 3), "gaussian")):
        np.testing.assert_allclose(v.T @ v / len(v), np.eye(3), atol=0.02)


def test_bits_per_dim_and_dequantize():
    log_p = np.array([-100.0, 0.0])
    np.testing.assert_allclose(likelihood.bits_per_dim(log_p, 10), -log_p / (10 * np.log(2)))
    # [0,1]-scaled 8-bit data: bpd = -(log_p / D - log 256) / log 2 = continuous bpd + 8
    np.testing.assert_allclose(
        likelihood.bits_per_dim(log_p, 10, 256), -log_p / (10 * np.log(2)) + 8.0
    )
    x_int = np.array([[0, 1, 255], [128, 7, 3]], dtype=np.uint8)
    x = likelihood.dequantize(x_int, np.random.default_rng(0))
    assert np.all(x >= x_int / 256) and np.all(x < (x_int.astype(float) + 1) / 256)
    np.testing.assert_array_equal(np.floor(x * 256), x_int)
    # uniform density on a [0,1]^D cube: log p = 0, so 8 bits/dim exactly
    np.testing.assert_allclose(likelihood.bits_per_dim(np.zeros(1), 3, 256), 8.0)
