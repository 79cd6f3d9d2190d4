"""The latent side: the prior at a temperature, slerp, and the ODE encode / decode round trip."""

from __future__ import annotations

import numpy as np
import pytest

from reference.datasets import mixture5
from scoregen_keras import samplers
from scoregen_keras import sde as keras_sde
from scoregen_keras.sampling import latent
from tests.keras.conftest import assert_scaled_close, to_numpy
from tests.keras.mixture_ops import keras_mixture

BATCH, DIM = 6, 2
ROUND_TRIP_RTOL = 1e-3  # ||decode(encode(x)) - x|| / ||x||, per example
TIGHT_TOL = 1e-7  # RK45 rtol = atol for the round trip
SDES = {"ve": keras_sde.VESDE, "vp": keras_sde.VPSDE, "subvp": keras_sde.SubVPSDE}
PRIOR_STDS = {"ve": keras_sde.VESDE().sigma_max, "vp": 1.0, "subvp": 1.0}


@pytest.fixture(scope="module")
def mixture():
    """mixture5, its keras.ops exact scores, and a few of its samples."""
    mix = mixture5()
    return mix, keras_mixture(mix), mix.sample(np.random.default_rng(0), BATCH)


@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_prior_std_and_temperature(sde_name):
    sde = SDES[sde_name]()
    assert sde.prior_std == pytest.approx(PRIOR_STDS[sde_name], rel=1e-6)
    z = np.random.default_rng(1).standard_normal((BATCH, DIM))
    assert_scaled_close(sde.prior_from_normal(z, 0.7), 0.7 * PRIOR_STDS[sde_name] * z)
    drawn = to_numpy(sde.prior_sampling(3, (4096, DIM)))
    assert drawn.std() == pytest.approx(PRIOR_STDS[sde_name], rel=0.05)  # 8192 draws: 1.1 % s.e.


def numpy_slerp(a: np.ndarray, b: np.ndarray, f: float) -> np.ndarray:
    """Row-wise slerp in float64."""
    cos = np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    theta = np.arccos(np.clip(cos, -1.0, 1.0))[:, None]
    return (np.sin((1 - f) * theta) * a + np.sin(f * theta) * b) / np.sin(theta)


def test_slerp_matches_formula_and_handles_parallel_latents():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((BATCH, 3, 2)), rng.standard_normal((BATCH, 3, 2))
    fractions = np.linspace(0.0, 1.0, 5)
    path = to_numpy(latent.slerp(a, b, fractions))
    assert path.shape == (5, BATCH, 3, 2)
    for f, z in zip(fractions, path, strict=True):
        want = numpy_slerp(a.reshape(BATCH, -1), b.reshape(BATCH, -1), f).reshape(a.shape)
        assert_scaled_close(z, want)
    parallel = to_numpy(latent.slerp(a, 2.0 * a, [0.5]))[0]
    assert_scaled_close(parallel, 1.5 * a)


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_encode_then_decode_reconstructs(mixture, sde_name):
    _, keras_mix, x = mixture
    sde = SDES[sde_name]()
    score_fn = keras_mix.score_fn(sde)
    tol = {"rtol": TIGHT_TOL, "atol": TIGHT_TOL}
    z, _ = samplers.ode_encode(score_fn, sde, x, **tol)
    x_rec, _ = samplers.ode_sample(score_fn, sde, x.shape, None, z=z, **tol)
    error = np.linalg.norm(to_numpy(x_rec) - x, axis=1) / np.linalg.norm(x, axis=1)
    assert np.max(error) < ROUND_TRIP_RTOL, error


def test_interpolate_ends_at_the_inputs(mixture):
    _, keras_mix, x = mixture
    sde = keras_sde.VPSDE()
    x_a, x_b = x[: BATCH // 2], x[BATCH // 2 :]
    n = 4
    path, nfe = latent.interpolate(
        keras_mix.score_fn(sde), sde, x_a, x_b, n, rtol=TIGHT_TOL, atol=TIGHT_TOL
    )
    path = to_numpy(path)
    assert path.shape == (n, BATCH // 2, DIM)
    assert nfe > 0
    for end, target in ((path[0], x_a), (path[-1], x_b)):
        error = np.linalg.norm(end - target, axis=1) / np.linalg.norm(target, axis=1)
        assert np.max(error) < ROUND_TRIP_RTOL, error
    assert np.all(np.isfinite(path))
