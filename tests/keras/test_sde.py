"""The Keras SDEs reproduce reference.sde method by method (float32, relative 1e-5)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reference import sde as ref_sde
from scoregen_keras import backend
from scoregen_keras import sde as k_sde
from tests.keras.conftest import to_numpy

BATCH = 16
SHAPE = (BATCH, 3, 2)  # non-flat dims exercise the per-example broadcasting
SDE_PAIRS = {
    "VESDE": (ref_sde.VESDE, k_sde.VESDE, {"sigma_min": 0.02, "sigma_max": 30.0, "N": 500}),
    "VPSDE": (ref_sde.VPSDE, k_sde.VPSDE, {"beta_min": 0.1, "beta_max": 20.0, "N": 1000}),
    "SubVPSDE": (ref_sde.SubVPSDE, k_sde.SubVPSDE, {"beta_min": 0.2, "beta_max": 15.0, "N": 800}),
}


@pytest.fixture(params=sorted(SDE_PAIRS))
def pair(request):
    """(reference SDE, Keras SDE) built with the same arguments."""
    ref_cls, k_cls, kwargs = SDE_PAIRS[request.param]
    return ref_cls(**kwargs), k_cls(**kwargs)


@pytest.fixture
def inputs(rng, pair):
    """x (batch, 3, 2), t in [eps, T] (float32 values, ends included) and a score-like array."""
    ref, _ = pair
    x = rng.standard_normal(SHAPE).astype(np.float32)
    t = rng.uniform(ref.eps, ref.T, BATCH).astype(np.float32)
    t[:2] = [ref.eps, ref.T]
    score = rng.standard_normal(SHAPE).astype(np.float32)
    return x, t, score


def f64(a: np.ndarray) -> np.ndarray:
    """The float32 test input, exactly, as float64 for the reference."""
    return np.asarray(a, dtype=np.float64)


def test_attributes(pair):
    ref, k = pair
    assert (k.T, k.N, k.eps) == (ref.T, ref.N, ref.eps)


def test_with_levels_matches_reference_and_is_cached(pair, inputs, assert_close):
    """with_levels(n) is the reference's SDE with N = n; one object per n for the compile cache."""
    ref, k = pair
    x, t, _ = inputs
    assert k.with_levels(k.N) is k
    coarse = k.with_levels(40)
    assert coarse is k.with_levels(40)
    assert coarse.to_config() == {**k.to_config(), "N": 40}
    ref_coarse = ref.with_levels(40)
    for got, want in zip(
        coarse.discretize(x, t), ref_coarse.discretize(f64(x), f64(t)), strict=True
    ):
        assert_close(got, want)


def test_sde(pair, inputs, assert_close):
    ref, k = pair
    x, t, _ = inputs
    for got, want in zip(k.sde(x, t), ref.sde(f64(x), f64(t)), strict=True):
        assert_close(got, want)


def test_marginal_coefficients_and_prob(pair, inputs, assert_close):
    ref, k = pair
    x, t, _ = inputs
    for got, want in zip(
        k.marginal_coefficients(t), ref.marginal_coefficients(f64(t)), strict=True
    ):
        assert_close(got, want)
    for got, want in zip(k.marginal_prob(x, t), ref.marginal_prob(f64(x), f64(t)), strict=True):
        assert_close(got, want)


def test_marginal_prob_scalar_t(pair, inputs, assert_close):
    ref, k = pair
    x, _, _ = inputs
    for got, want in zip(k.marginal_prob(x, 0.5), ref.marginal_prob(f64(x), 0.5), strict=True):
        assert_close(got, want)


def test_prior_logp(pair, inputs, assert_close):
    ref, k = pair
    x, _, _ = inputs
    z = 3.0 * x
    assert_close(k.prior_logp(z), ref.prior_logp(f64(z)))


def test_prior_sampling_shape_and_scale(pair):
    ref, k = pair
    shape = (4000, 2)
    z = to_numpy(k.prior_sampling(0, shape))
    assert z.shape == shape
    expected_std = np.exp(ref.prior_logp(np.zeros((1, 1)))[0] * -1.0) / np.sqrt(2.0 * np.pi)
    assert abs(z.std() / expected_std - 1.0) < 0.05
    seeded = to_numpy(k.prior_sampling(keras.random.SeedGenerator(1), shape))
    assert not np.allclose(seeded, z)


def test_discrete_index(pair, inputs):
    """Also outside [0, T], where the index clips (the floor of a small negative t is -1)."""
    ref, k = pair
    _, t, _ = inputs
    np.testing.assert_array_equal(to_numpy(k.discrete_index(t)), ref.discrete_index(f64(t)))
    outside = np.array([-3.0, -0.5 / (ref.N - 1), -1e-7, 1.0 + 1e-3, 5.0], np.float32) * ref.T
    np.testing.assert_array_equal(to_numpy(k.discrete_index(outside)), [0, 0, 0] + [ref.N - 1] * 2)
    np.testing.assert_array_equal(
        to_numpy(k.discrete_index(outside)), ref.discrete_index(f64(outside))
    )


def test_discretize(pair, inputs, assert_close):
    ref, k = pair
    x, t, _ = inputs
    for got, want in zip(k.discretize(x, t), ref.discretize(f64(x), f64(t)), strict=True):
        assert_close(got, want)


@pytest.mark.parametrize("probability_flow", [False, True])
def test_reverse(pair, inputs, probability_flow, assert_close):
    ref, k = pair
    x, t, score = inputs
    ref_rev = ref.reverse(lambda x_, t_: f64(score), probability_flow)
    k_rev = k.reverse(lambda x_, t_: keras.ops.convert_to_tensor(score), probability_flow)
    assert (k_rev.T, k_rev.N, k_rev.eps) == (ref_rev.T, ref_rev.N, ref_rev.eps)
    for method in ("sde", "discretize"):
        got = getattr(k_rev, method)(x, t)
        want = getattr(ref_rev, method)(f64(x), f64(t))
        for g, w in zip(got, want, strict=True):
            assert_close(g, w)


def test_ancestral_step(pair, inputs, assert_close):
    ref, k = pair
    x, t, score = inputs
    try:
        want = ref.ancestral_step(f64(x), f64(t), f64(score))
    except NotImplementedError:
        with pytest.raises(NotImplementedError):
            k.ancestral_step(x, t, score)
        return
    for got, w in zip(k.ancestral_step(x, t, score), want, strict=True):
        assert_close(got, w)


def test_langevin_alpha(pair, inputs, assert_close):
    ref, k = pair
    _, t, _ = inputs
    assert_close(k.langevin_alpha(t), ref.langevin_alpha(f64(t)))


def test_sigma_tilde_and_inverse(pair, inputs, assert_close):
    ref, k = pair
    _, t, _ = inputs
    assert_close(k.sigma_tilde(t), ref.sigma_tilde(f64(t)))
    sigma = ref.sigma_tilde(f64(t)).astype(np.float32)
    assert_close(k.t_from_sigma_tilde(sigma), ref.t_from_sigma_tilde(f64(sigma)))


def test_config_round_trip(pair, inputs, assert_close):
    _, k = pair
    x, t, _ = inputs
    config = k.to_config()
    rebuilt = k_sde.sde_from_config(config)
    assert type(rebuilt) is type(k)
    assert rebuilt.to_config() == config
    for got, want in zip(rebuilt.sde(x, t), k.sde(x, t), strict=True):
        assert_close(got, to_numpy(want))


def test_eps_override_round_trips():
    sde = k_sde.VESDE(eps=1e-4)
    assert sde.eps == 1e-4
    assert k_sde.sde_from_config(sde.to_config()).eps == 1e-4
    assert k_sde.VESDE().eps == ref_sde.VESDE().eps


def test_unknown_sde_type_raises():
    with pytest.raises(ValueError, match="unknown SDE"):
        k_sde.sde_from_config({"type": "NoSuchSDE"})


def test_geometric_sigmas(assert_close):
    assert_close(k_sde.geometric_sigmas(1.0, 0.01, 10), ref_sde.geometric_sigmas(1.0, 0.01, 10))


def test_to_float_keeps_a_float64_host_value_exact_in_compiled_code(float64_floatx):
    # a TensorFlow graph used to hold a Python float as float32 before the cast to float64
    compiled = backend.jit(lambda x: x + k_sde.to_float(1e-3))
    got = keras.ops.convert_to_numpy(compiled(k_sde.to_float(np.zeros(2))))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, [1e-3, 1e-3])


def test_to_float_casts_host_values_and_passes_float_tensors_through():
    floatx = keras.config.floatx()
    as_float = k_sde.to_float(np.array([1.5, 2.0]))  # float64 on the host
    assert keras.backend.standardize_dtype(as_float.dtype) == floatx
    np.testing.assert_array_equal(to_numpy(as_float), [1.5, 2.0])
    assert keras.backend.standardize_dtype(k_sde.to_float(3).dtype) == floatx
    integers = keras.ops.convert_to_tensor(np.array([1, 2], np.int32))
    assert keras.backend.standardize_dtype(k_sde.to_float(integers).dtype) == floatx
    already = keras.ops.ones((2,), dtype=floatx)
    assert k_sde.to_float(already) is already


def test_per_example_gives_one_float_time_per_example():
    """A scalar, a (1,) or a (batch,) time becomes a floatx tensor of shape (batch,)."""
    x = k_sde.to_float(np.zeros((3, 2, 2)))
    floatx = keras.config.floatx()
    for t, expected in ((0.5, [0.5] * 3), ([0.25], [0.25] * 3), ([0.1, 0.2, 0.3], [0.1, 0.2, 0.3])):
        got = k_sde.per_example(np.asarray(t), x)
        assert tuple(got.shape) == (3,) and keras.backend.standardize_dtype(got.dtype) == floatx
        np.testing.assert_allclose(to_numpy(got), expected, rtol=1e-7)
    integer_times = k_sde.per_example(keras.ops.convert_to_tensor(np.array([0, 1, 1])), x)
    assert keras.backend.standardize_dtype(integer_times.dtype) == floatx
