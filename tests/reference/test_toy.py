"""Tests for the toy 2-D samplers in reference.toy and the TOY_SETS registry."""

from __future__ import annotations

import numpy as np
import pytest

from reference import toy
from reference.toy import TOY_SAMPLERS

N_LARGE = 20_000


@pytest.mark.parametrize("name", sorted(TOY_SAMPLERS))
def test_shape_dtype_and_determinism(name: str) -> None:
    """Each sampler returns (n, 2) float64 and is a function of the generator state only."""
    fn = TOY_SAMPLERS[name]
    a = fn(np.random.default_rng(5), 100)
    b = fn(np.random.default_rng(5), 100)
    assert a.shape == (100, 2) and a.dtype == np.float64
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, fn(np.random.default_rng(6), 100))
    assert fn(np.random.default_rng(0), 0).shape == (0, 2)


@pytest.mark.parametrize("name", sorted(TOY_SAMPLERS))
def test_roughly_unit_scale(name: str) -> None:
    """Coordinates have spread of order one and the sets are roughly centred."""
    x = TOY_SAMPLERS[name](np.random.default_rng(0), N_LARGE)
    std = x.std(axis=0)
    assert np.all(std > 0.4) and np.all(std < 1.6), std
    assert np.all(np.abs(x.mean(axis=0)) < 0.5)
    assert np.abs(x).max() < 4.0


@pytest.mark.parametrize("name", sorted(TOY_SAMPLERS))
def test_negative_n_rejected(name: str) -> None:
    """A negative sample count is an error, not an empty array."""
    with pytest.raises(ValueError):
        TOY_SAMPLERS[name](np.random.default_rng(0), -1)


def test_checkerboard_only_filled_squares() -> None:
    """Every point lies in a square with floor(x1) + floor(x2) even, inside [-2, 2]^2."""
    x = toy.checkerboard(np.random.default_rng(0), N_LARGE)
    assert np.all(np.abs(x) <= toy.CHECKERBOARD_HALF_WIDTH)
    cells = np.floor(x).astype(int)
    assert np.all((cells[:, 0] + cells[:, 1]) % 2 == 0)
    # all 8 filled cells are visited with equal probability 1/8
    _, counts = np.unique(cells, axis=0, return_counts=True)
    assert len(counts) == 8
    np.testing.assert_allclose(counts / N_LARGE, 1 / 8, atol=0.01)


def test_rings_radii_and_weights() -> None:
    """Radii sit on the four circles; ring occupancy is proportional to the radius."""
    x = toy.rings(np.random.default_rng(0), N_LARGE)
    r = np.linalg.norm(x, axis=1)
    nearest = np.argmin(np.abs(r[:, None] - toy.RINGS_RADII[None, :]), axis=1)
    assert np.all(np.abs(r - toy.RINGS_RADII[nearest]) < 6 * toy.RINGS_NOISE)
    frac = np.bincount(nearest, minlength=len(toy.RINGS_RADII)) / N_LARGE
    np.testing.assert_allclose(frac, toy.RINGS_RADII / toy.RINGS_RADII.sum(), atol=0.01)


def test_moons_two_halves() -> None:
    """Without noise the construction gives two unit half circles; with noise both are near."""
    x = toy.moons(np.random.default_rng(0), N_LARGE) + toy.MOONS_OFFSET / 2
    d_upper = np.abs(np.linalg.norm(x, axis=1) - 1.0)
    d_lower = np.abs(np.linalg.norm(x - toy.MOONS_OFFSET, axis=1) - 1.0)
    assert np.mean(np.minimum(d_upper, d_lower) < 4 * toy.MOONS_NOISE) > 0.99
    upper = d_upper < d_lower
    assert 0.45 < upper.mean() < 0.55


def test_spirals_point_symmetric() -> None:
    """The two spirals are mirror images through the origin: the set is symmetric under x → −x."""
    x = toy.spirals(np.random.default_rng(0), N_LARGE)
    radius = np.linalg.norm(x, axis=1)
    assert radius.max() < toy.SPIRALS_MAX_ANGLE * toy.SPIRALS_SCALE + 6 * toy.SPIRALS_NOISE
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.05)


def test_swiss_roll_radius_grows_with_angle() -> None:
    """Noise-free, the radius equals the roll parameter t / 7.5, in [1.5 pi, 4.5 pi] / 7.5."""
    x = toy.swiss_roll(np.random.default_rng(0), N_LARGE)
    r = np.linalg.norm(x, axis=1) * toy.SWISS_ROLL_SCALE
    low, high = toy.SWISS_ROLL_TURNS
    slack = 5 * toy.SWISS_ROLL_NOISE
    assert r.min() > low - slack and r.max() < high + slack


def test_toy_sets_registry() -> None:
    """TOY_SETS holds the exact mixtures and the toy samplers under one signature."""
    datasets = pytest.importorskip("reference.datasets")
    assert set(datasets.TOY_SETS) == set(datasets.EXACT_MIXTURES) | set(TOY_SAMPLERS)
    for name, fn in datasets.TOY_SETS.items():
        x = fn(np.random.default_rng(0), 50)
        assert x.shape == (50, 2), name
