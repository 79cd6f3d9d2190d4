"""scoregen_keras.likelihood against reference.likelihood and against exact mixture densities."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops
from scipy.special import erfinv

from reference import likelihood as ref_likelihood
from reference import models as ref_models
from reference import sde as ref_sde
from reference.datasets import mixture5
from scoregen_keras import likelihood
from scoregen_keras import sde as keras_sde
from scoregen_keras.losses import precondition
from scoregen_keras.networks import get_network
from scoregen_keras.networks.mlp import load_reference_params
from scoregen_keras.sampling import NoiseSource
from tests.keras.conftest import assert_scaled_close, to_numpy
from tests.keras.mixture_ops import keras_mixture

SDES = {
    "ve": (ref_sde.VESDE, keras_sde.VESDE),
    "vp": (ref_sde.VPSDE, keras_sde.VPSDE),
}
N_COMPARE = 8
N_ACCURACY = 32
ACCURACY_NATS = 1e-2  # issue 4: ode_likelihood within 1e-2 nats of the exact log-density
ACCURACY_ODE_TOL = 1e-6  # solve_ivp's error is RMS over the batch: tighter than the 1e-5 default
LOGP_RTOL = 1e-4  # float32 drift and divergence vs the float64 reference, same RK45 steps
N_HUTCHINSON_POINTS = 4
N_PROBES = 64
N_STANDARD_ERRORS = 4.0
FLOAT64_RTOL = 1e-10  # the same arithmetic in float64, up to the order of the additions
MLP_OUT_BOOST = 100.0  # scale the reference MLP's small initial output layer to an O(1) score


def mixture_setup(name: str) -> tuple:
    """(reference mixture, keras twin, reference SDE, keras SDE)."""
    ref_cls, keras_cls = SDES[name]
    mixture = mixture5()
    return mixture, keras_mixture(mixture), ref_cls(), keras_cls()


def reference_jacobian(mixture, sde):
    """Exact score Jacobian of the perturbed reference mixture, (x, t) -> (batch, d, d)."""
    return lambda x, t: mixture.score_jacobian(x, *sde.marginal_coefficients(t))


def reference_jvp(mixture, sde):
    """Exact score JVP of the perturbed reference mixture."""
    jacobian = reference_jacobian(mixture, sde)
    return lambda x, t, v: np.einsum("bij,bj->bi", jacobian(x, t), v)


def exact_logp_at_eps(mixture, sde, x: np.ndarray) -> np.ndarray:
    """log p_eps(x) of the mixture perturbed to the ODE's end time eps (reference SDE)."""
    alpha, std = sde.marginal_coefficients(np.array([sde.eps]))
    return mixture.log_prob(x, alpha[0], std[0])


@pytest.mark.parametrize("method", likelihood.METHODS)
@pytest.mark.parametrize("name", list(SDES))
def test_exact_divergence_matches_reference(name, method):
    mixture, kmix, ref, sde = mixture_setup(name)
    x = mixture.sample(np.random.default_rng(0), N_COMPARE)
    expected, z_ref, nfe_ref = ref_likelihood.ode_likelihood(
        mixture.score_fn(ref), ref, x, score_jacobian_fn=reference_jacobian(mixture, ref)
    )
    log_p, z, nfe = likelihood.ode_likelihood(kmix.score_fn(sde), sde, x, method=method)
    assert_scaled_close(log_p, expected, LOGP_RTOL)
    assert_scaled_close(z, z_ref, LOGP_RTOL)
    if method == "RK45":  # the compiled solver's float32 state may take a step more or less
        assert nfe == nfe_ref


@pytest.mark.parametrize("divergence", likelihood.DIVERGENCES)
def test_dopri5_takes_the_steps_of_solve_ivp_in_float64(float64_floatx, divergence):
    _, kmix, _, sde = mixture_setup("vp")
    x = mixture5().sample(np.random.default_rng(4), N_COMPARE)
    settings = {"divergence": divergence, "seed": 0}
    want, z_want, nfe_host = likelihood.ode_likelihood(kmix.score_fn(sde), sde, x, **settings)
    log_p, z, nfe = likelihood.ode_likelihood(
        kmix.score_fn(sde), sde, x, method="dopri5", **settings
    )
    assert nfe == nfe_host
    assert_scaled_close(log_p, want, FLOAT64_RTOL)
    assert_scaled_close(z, z_want, FLOAT64_RTOL)


@pytest.mark.parametrize(
    ("name", "probe", "method"),
    [("ve", "rademacher", "RK45"), ("vp", "gaussian", "RK45"), ("vp", "rademacher", "dopri5")],
)
def test_hutchinson_matches_reference_with_the_same_probe(name, probe, method):
    mixture, kmix, ref, sde = mixture_setup(name)
    x = mixture.sample(np.random.default_rng(1), N_COMPARE)
    expected, _, _ = ref_likelihood.ode_likelihood(
        mixture.score_fn(ref),
        ref,
        x,
        np.random.default_rng(2),
        divergence="hutchinson",
        probe=probe,
        jvp_fn=reference_jvp(mixture, ref),
    )
    v = ref_likelihood.draw_probe(np.random.default_rng(2), x.shape, probe)  # the reference's
    log_p, _, _ = likelihood.ode_likelihood(
        kmix.score_fn(sde), sde, x, divergence="hutchinson", probe=probe, v=v, method=method
    )
    assert_scaled_close(log_p, expected, LOGP_RTOL)


@pytest.mark.parametrize("method", likelihood.METHODS)
@pytest.mark.parametrize("name", list(SDES))
def test_exact_divergence_within_tolerance_of_mixture_density(name, method):
    mixture, kmix, ref, sde = mixture_setup(name)
    x = mixture.sample(np.random.default_rng(3), N_ACCURACY)
    alpha_T, std_T = sde.marginal_coefficients(keras_sde.to_float([sde.T]))

    def exact_prior_logp(z):
        """log p_T of the perturbed mixture: isolates the ODE and divergence error from the
        prior mismatch (N(0, sigma_max^2) vs p_T costs up to ~0.02 nats on mixture5 for VE)."""
        return kmix.log_prob(z, alpha_T[0], std_T[0])

    log_p, _, _ = likelihood.ode_likelihood(
        kmix.score_fn(sde),
        sde,
        x,
        rtol=ACCURACY_ODE_TOL,
        atol=ACCURACY_ODE_TOL,
        prior_logp_fn=exact_prior_logp,
        method=method,
    )
    error = log_p - exact_logp_at_eps(mixture, ref, x)
    print(f"\n{name}: max |error| {np.abs(error).max():.2e} nats")
    assert np.abs(error).max() < ACCURACY_NATS


@pytest.mark.parametrize("probe", likelihood.PROBES)
def test_hutchinson_is_unbiased(probe):
    """The mean over independent probes matches the exact-divergence likelihood."""
    mixture, kmix, _, sde = mixture_setup("vp")
    points = mixture.sample(np.random.default_rng(4), N_HUTCHINSON_POINTS)
    x = np.repeat(points, N_PROBES, axis=0)  # one probe per replicated example
    score = kmix.score_fn(sde)
    estimates, _, _ = likelihood.ode_likelihood(
        score, sde, x, seed=5, divergence="hutchinson", probe=probe
    )
    exact, _, _ = likelihood.ode_likelihood(score, sde, points)
    estimates = estimates.reshape(N_HUTCHINSON_POINTS, N_PROBES)
    standard_error = estimates.std(axis=1, ddof=1) / np.sqrt(N_PROBES)
    assert np.all(np.abs(estimates.mean(axis=1) - exact) < N_STANDARD_ERRORS * standard_error)


@pytest.mark.parametrize("name", list(SDES))
def test_mlp_score_matches_reference_mlp(name):
    """A network holding the reference MLP's weights: autodiff JVPs vs the reference's
    finite-difference Hutchinson and its exact divergence from a Jacobian by differences."""
    ref_cls, keras_cls = SDES[name]
    ref, sde = ref_cls(), keras_cls()
    model = ref_models.MLPScore(2, hidden=(32, 32), n_freq=4, rng=np.random.default_rng(6))
    model.params["W_out"] = model.params["W_out"] * MLP_OUT_BOOST
    net = get_network("mlp/tiny")
    load_reference_params(net, model.params)
    x = mixture5().sample(np.random.default_rng(7), N_COMPARE)
    v = ref_likelihood.draw_probe(np.random.default_rng(8), x.shape, "rademacher")
    expected, _, _ = ref_likelihood.ode_likelihood(
        ref_models.noise_conditional_score(model, ref),
        ref,
        x,
        np.random.default_rng(8),
        divergence="hutchinson",
    )
    log_p, _, _ = likelihood.ode_likelihood(
        precondition(net, sde), sde, x, divergence="hutchinson", v=v
    )
    assert_scaled_close(log_p, expected, LOGP_RTOL)


def test_bits_per_dim_and_dequantize_match_reference():
    rng = np.random.default_rng(9)
    x_int = rng.integers(0, likelihood.UINT8_LEVELS, size=(3, 4, 4, 1))
    z = np.random.default_rng(10).standard_normal(x_int.shape)
    expected = ref_likelihood.dequantize(x_int, np.random.default_rng(10))
    x = likelihood.dequantize(x_int, z=z)
    assert_scaled_close(x, expected)
    assert np.all((to_numpy(x) >= x_int / 256.0) & (to_numpy(x) <= (x_int + 1) / 256.0))
    drawn = to_numpy(likelihood.dequantize(x_int, seed=0))
    assert np.all(np.floor(drawn * likelihood.UINT8_LEVELS) == x_int)
    log_p = np.array([-100.0, 20.0])
    for n_bins in (None, likelihood.UINT8_LEVELS):
        np.testing.assert_allclose(
            likelihood.bits_per_dim(log_p, 16, n_bins),
            ref_likelihood.bits_per_dim(log_p, 16, n_bins),
        )
    # a uniform density on [0, 1]^D (log p = 0) of 8-bit data is exactly 8 bits/dim
    assert float(likelihood.bits_per_dim(np.zeros(1), 16, likelihood.UINT8_LEVELS)[0]) == 8.0


def test_probes_and_dequantisation_are_per_example_draws_of_their_own_streams():
    """With per-example seeds the probe and the dequantisation noise of an example depend on its
    seed alone (not on its batch), and the two streams differ from each other and from a
    sampler's (counter_noise's PROBE_STREAM, DEQUANTIZE_STREAM, SAMPLER_STREAM)."""
    seeds = np.arange(20, 24)
    probes = to_numpy(likelihood.draw_probe(seeds, (4, 3), "gaussian"))
    np.testing.assert_array_equal(
        to_numpy(likelihood.draw_probe(seeds[2:], (2, 3), "gaussian")), probes[2:]
    )
    sampler_draw = to_numpy(NoiseSource((4, 3), seeds).draw_one())
    x_int = np.zeros((4, 3))
    u = to_numpy(likelihood.dequantize(x_int, seeds, n_bins=1))
    z = to_numpy(likelihood.dequantize(x_int[:2], seeds[:2], n_bins=1))
    np.testing.assert_array_equal(z, u[:2])
    dequantize_z = np.sqrt(2.0) * erfinv(2.0 * u - 1.0)  # u = Phi(z)
    for a, b in ((probes, sampler_draw), (probes, dequantize_z), (dequantize_z, sampler_draw)):
        assert np.abs(a - b).min() > 1e-4  # independent draws, not the same numbers
    rademacher = to_numpy(likelihood.draw_probe(seeds, (4, 3), "rademacher"))
    np.testing.assert_array_equal(rademacher, np.where(probes >= 0.0, 1.0, -1.0))


def test_rejects_bad_arguments():
    sde = keras_sde.VESDE()
    x = np.zeros((2, 2))
    score = keras_mixture(mixture5()).score_fn(sde)
    with pytest.raises(ValueError, match="divergence"):
        likelihood.ode_likelihood(score, sde, x, divergence="trace")
    with pytest.raises(ValueError, match="seed"):
        likelihood.ode_likelihood(score, sde, x, divergence="hutchinson")
    with pytest.raises(ValueError, match="method"):
        likelihood.ode_likelihood(score, sde, x, method="euler")
    with pytest.raises(ValueError, match="probe"):
        likelihood.draw_probe(0, (2, 2), "uniform")


@pytest.mark.parametrize("method", likelihood.METHODS)
def test_images_of_any_shape(method):
    """(batch, H, W, C) data: exact divergence equals the trace over all H*W*C dimensions."""
    sde = keras_sde.VPSDE()

    def score(x, t):
        """Score of N(0, I) under the VP SDE (which keeps it N(0, I)): -x."""
        return -x

    x = np.random.default_rng(11).standard_normal((2, 2, 2, 3))
    log_p, z, _ = likelihood.ode_likelihood(score, sde, x, method=method)
    exact = sde.prior_logp(keras_sde.to_float(x))
    assert_scaled_close(log_p, to_numpy(exact), LOGP_RTOL)
    np.testing.assert_allclose(z, x, atol=1e-4)
    hutchinson, _, _ = likelihood.ode_likelihood(
        score, sde, x, seed=0, divergence="hutchinson", method=method
    )
    assert_scaled_close(hutchinson, to_numpy(exact), LOGP_RTOL)  # J_F = 0: no estimator noise
    assert ops.ndim(keras_sde.to_float(z)) == 4
