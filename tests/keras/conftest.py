"""Fixtures for the Keras tests; the backend is whatever KERAS_BACKEND selects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest

FLOAT32_RTOL = 1e-5  # float32 port against the float64 reference: relative to the value's scale


def to_numpy(value: Any) -> np.ndarray:
    """A tensor (any backend) or array as a float64 NumPy array."""
    return np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64)


def assert_scaled_close(actual: Any, expected: Any, rtol: float = FLOAT32_RTOL) -> None:
    """|actual - expected| <= rtol * (|expected| + max |expected|), elementwise.

    The scale term keeps entries near 0 (cancellations of large terms) to a float32 tolerance.
    """
    actual, expected = to_numpy(actual), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = float(np.max(np.abs(expected))) if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


@pytest.fixture
def assert_close() -> Callable[..., None]:
    """The float32-vs-reference comparison `assert_scaled_close`."""
    return assert_scaled_close


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed NumPy generator: tests draw their inputs here and feed both implementations."""
    return np.random.default_rng(20240611)


@pytest.fixture
def float64_floatx():
    """Keras' default float set to float64 for one test (skipped where JAX is held to 32 bits)."""
    if keras.backend.backend() == "jax":
        import jax

        if not jax.config.read("jax_enable_x64"):
            pytest.skip("JAX computes in float32 unless jax_enable_x64 is set")
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    yield
    keras.config.set_floatx(previous)


# ------------------------------------------------------------------ FID Inception (issue 26)


@pytest.fixture(scope="session")
def fid_fixture() -> dict[str, Any]:
    """shared/fixtures/fid_inception: {"arrays": the random-weights archive, "json", "blocks",
    "state_dict": its 566 state_dict entries under the published keys}."""
    import json

    from tests.shared_fixtures import shared_fixture

    folder = shared_fixture("fid_inception")
    meta = json.loads((folder / "fid_inception_random.json").read_text())
    with np.load(folder / "fid_inception_random.npz") as data:
        arrays = {key: data[key] for key in data.files}
    with np.load(folder / "fid_inception_blocks.npz") as data:
        blocks = {key: data[key] for key in data.files}
    state_dict = {key: arrays[key] for key, _, _ in meta["keys"]}
    return {"arrays": arrays, "json": meta, "blocks": blocks, "state_dict": state_dict}


@pytest.fixture(scope="session")
def fid_network(fid_fixture: dict[str, Any]) -> keras.Model:
    """The FID Inception network with the fixture's random weights, built once per session."""
    from scoregen_keras.networks import fid_inception

    network = fid_inception.build_fid_inception()
    fid_inception.load_torch_state_dict(network, fid_fixture["state_dict"])
    return network
