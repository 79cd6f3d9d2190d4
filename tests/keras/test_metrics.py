"""scoregen_keras.metrics against reference.metrics, hand-computed values and analytic cases."""

from __future__ import annotations

import numpy as np
import pytest

from reference import metrics as ref
from scoregen_keras import metrics
from tests.keras.conftest import FLOAT32_RTOL

KID_NULL_BOUND = 0.04
"""|KID| bound for two N(0, I_8) sets of 500 (20 subsets of 200): E = 0, measured sd 0.0084
over 200 seeds with the reference, so the bound is ~5 sd."""
ZERO_ATOL = 1e-6
"""A float32 'exact zero': round-off of sums of O(1) terms."""


def _exact_moments(
    rng: np.random.Generator, n: int, mean: np.ndarray, variances: np.ndarray
) -> np.ndarray:
    """n points whose sample mean is `mean` and unbiased sample covariance diag(variances)."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
    return z * np.sqrt(variances) + mean


# --- sliced Wasserstein -------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [(300, 300), (120, 77)])
def test_sw_matches_reference_with_same_projections(
    rng: np.random.Generator, sizes: tuple[int, int]
) -> None:
    """Handed the reference's direction draw, SW1 equals the reference (equal/unequal sizes)."""
    x = rng.standard_normal((sizes[0], 3))
    y = 1.5 * rng.standard_normal((sizes[1], 3)) + 0.4
    theta = np.random.default_rng(3).standard_normal((50, 3))
    expected = ref.sliced_wasserstein(x, y, np.random.default_rng(3), n_projections=50)
    got = metrics.sliced_wasserstein(x, y, projections=theta)
    assert got == pytest.approx(expected, rel=FLOAT32_RTOL)


def test_sw_seeded_is_reproducible_and_exact_in_1d(rng: np.random.Generator) -> None:
    """Same seed, same value; in 1-D θ = ±1, so SW1 of a translate is |shift|; identical → 0."""
    x = rng.standard_normal((200, 2))
    first = metrics.sliced_wasserstein(x, x + 0.3, seed=5)
    assert metrics.sliced_wasserstein(x, x + 0.3, seed=5) == first
    u = rng.standard_normal(150)
    assert metrics.sliced_wasserstein(u, u - 0.7, seed=1) == pytest.approx(0.7, rel=FLOAT32_RTOL)
    assert metrics.sliced_wasserstein(x, rng.permutation(x), seed=2) == pytest.approx(
        0.0, abs=ZERO_ATOL
    )


def test_sw_chunking_does_not_change_result(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Projections processed in small chunks give the same number."""
    x, y = rng.standard_normal((80, 2)), rng.standard_normal((60, 2))
    theta = rng.standard_normal((40, 2))
    full = metrics.sliced_wasserstein(x, y, projections=theta)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 300)
    chunked = metrics.sliced_wasserstein(x, y, projections=theta)
    assert chunked == pytest.approx(full, rel=FLOAT32_RTOL)


def test_sw_rejects_bad_projections(rng: np.random.Generator) -> None:
    """Projections of the wrong width raise ValueError."""
    x = rng.standard_normal((10, 2))
    with pytest.raises(ValueError):
        metrics.sliced_wasserstein(x, x, projections=np.ones((4, 3)))


# --- MMD ----------------------------------------------------------------------------------


def test_mmd_by_hand() -> None:
    """x = {0, 1}, y = {0, 2}, h = 1: kxx = e^{-1/2}, kyy = e^{-2}, so MMD²_u = (e^{-2} − 1)/2."""
    got = metrics.mmd_rbf(np.array([0.0, 1.0]), np.array([0.0, 2.0]), bandwidth=1.0)
    assert got == pytest.approx((np.exp(-2.0) - 1.0) / 2.0, rel=FLOAT32_RTOL)


def test_mmd_matches_reference(rng: np.random.Generator) -> None:
    """Given and median-heuristic bandwidths: same value as the reference."""
    x, y = rng.standard_normal((90, 2)), 1.3 * rng.standard_normal((70, 2)) + 0.5
    assert metrics.mmd_rbf(x, y, 0.8) == pytest.approx(ref.mmd_rbf(x, y, 0.8), rel=FLOAT32_RTOL)
    assert metrics.mmd_rbf(x, y) == pytest.approx(ref.mmd_rbf(x, y), rel=FLOAT32_RTOL)


def test_median_bandwidth_matches_reference_with_subsampling(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The median heuristic, also on the strided subset used above MEDIAN_MAX_POINTS."""
    x, y = rng.standard_normal((41, 3)), rng.standard_normal((30, 3))
    expected = ref.median_bandwidth(x, y)
    assert metrics.median_bandwidth(x, y) == pytest.approx(expected, rel=FLOAT32_RTOL)
    monkeypatch.setattr(metrics, "MEDIAN_MAX_POINTS", 25)
    monkeypatch.setattr(ref, "MEDIAN_MAX_POINTS", 25)
    expected_subset = ref.median_bandwidth(x, y)
    assert expected_subset != expected
    assert metrics.median_bandwidth(x, y) == pytest.approx(expected_subset, rel=FLOAT32_RTOL)


def test_mmd_identical_law_small_different_law_large(rng: np.random.Generator) -> None:
    """Negative case: a scaled law is far above the same-law value."""
    same = metrics.mmd_rbf(rng.standard_normal((400, 2)), rng.standard_normal((400, 2)))
    different = metrics.mmd_rbf(rng.standard_normal((400, 2)), 1.5 * rng.standard_normal((400, 2)))
    assert abs(same) < 0.01 < different


# --- energy -------------------------------------------------------------------------------


def test_energy_by_hand_and_identical_sets(rng: np.random.Generator) -> None:
    """{0, 2} vs {1}: 2·1 − 1 − 0 = 1; {0} vs {3}: 6; a set against itself reversed: 0."""
    assert metrics.energy_distance(np.array([0.0, 2.0]), np.array([1.0])) == pytest.approx(1.0)
    assert metrics.energy_distance(np.array([0.0]), np.array([3.0])) == pytest.approx(6.0)
    x = rng.standard_normal((200, 2))
    assert metrics.energy_distance(x, x[::-1]) == pytest.approx(0.0, abs=ZERO_ATOL)


def test_energy_matches_reference_and_chunking(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same value as the reference, with one block or many small row chunks."""
    x, y = rng.standard_normal((90, 3)), 2.0 * rng.standard_normal((50, 3))
    expected = ref.energy_distance(x, y)
    assert metrics.energy_distance(x, y) == pytest.approx(expected, rel=FLOAT32_RTOL)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 50)
    assert metrics.energy_distance(x, y) == pytest.approx(expected, rel=FLOAT32_RTOL)


# --- Fréchet ------------------------------------------------------------------------------


def test_frechet_of_moments_matches_reference(rng: np.random.Generator) -> None:
    """Full covariances: the host computation equals the reference."""
    a, b = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
    mu1, mu2 = rng.standard_normal(4), rng.standard_normal(4)
    expected = ref.frechet_distance(mu1, cov1, mu2, cov2)
    assert metrics.frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-12)


def test_frechet_from_samples_analytic(rng: np.random.Generator) -> None:
    """Sets with exact moments: ‖Δμ‖² (equal covariances) and + Σ(√a − √b)² (diagonal ones)."""
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([1.0, 3.0, -1.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    x = _exact_moments(rng, 400, mu1, a)
    shift = np.sum((mu1 - mu2) ** 2)
    got_shift = metrics.frechet_distance_from_samples(x, x - mu1 + mu2)
    assert got_shift == pytest.approx(shift, rel=FLOAT32_RTOL)
    y = _exact_moments(rng, 300, mu2, b)
    expected = shift + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert metrics.frechet_distance_from_samples(x, y) == pytest.approx(expected, rel=1e-4)


def test_frechet_from_samples_matches_reference(rng: np.random.Generator) -> None:
    """Correlated sets: same value as the reference's moments and matrix square root."""
    x = rng.standard_normal((300, 5)) @ rng.standard_normal((5, 5))
    y = rng.standard_normal((200, 5)) @ rng.standard_normal((5, 5)) + 1.0
    expected = ref.frechet_distance_from_samples(x, y)
    assert metrics.frechet_distance_from_samples(x, y) == pytest.approx(expected, rel=1e-4)


# --- KID ----------------------------------------------------------------------------------


def test_kid_by_hand() -> None:
    """x = {0, 1}, y = {0, 2} in 1-D, k = (ab + 1)³: kxx = 1, kyy = 1, kxy = 30/4, KID = −13."""
    got = metrics.kernel_inception_distance(
        np.array([0.0, 1.0]), np.array([0.0, 2.0]), seed=0, n_subsets=2, subset_size=2
    )
    assert got == pytest.approx(-13.0, rel=FLOAT32_RTOL)


def test_kid_matches_reference_with_same_seed(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """seed = s reproduces the reference with rng = default_rng(s), chunked or not."""
    x, y = rng.standard_normal((60, 6)), 1.2 * rng.standard_normal((50, 6)) + 0.3
    expected = ref.kernel_inception_distance(x, y, np.random.default_rng(4), 5, 20)
    got = metrics.kernel_inception_distance(x, y, seed=4, n_subsets=5, subset_size=20)
    assert got == pytest.approx(expected, rel=FLOAT32_RTOL)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 7)
    assert metrics.kernel_inception_distance(x, y, 4, 5, 20) == pytest.approx(expected, rel=1e-5)


def test_kid_identical_laws_near_zero_shifted_far(rng: np.random.Generator) -> None:
    """Same law: |KID| < KID_NULL_BOUND; a 0.3 shift per coordinate gives ~0.3 (negative case)."""
    same = metrics.kernel_inception_distance(
        rng.standard_normal((500, 8)), rng.standard_normal((500, 8)), 1, 20, 200
    )
    shifted = metrics.kernel_inception_distance(
        rng.standard_normal((500, 8)), rng.standard_normal((500, 8)) + 0.3, 2, 20, 200
    )
    assert abs(same) < KID_NULL_BOUND < 5 * KID_NULL_BOUND < shifted


def test_kid_given_subsets(rng: np.random.Generator) -> None:
    """Explicit index pairs are used as given."""
    x, y = rng.standard_normal((20, 2)), rng.standard_normal((20, 2))
    subsets = [(np.arange(10), np.arange(10, 20))]
    expected = ref.polynomial_mmd(x[:10], y[10:])
    got = metrics.kernel_inception_distance(x, y, subsets=subsets)
    assert got == pytest.approx(expected, rel=FLOAT32_RTOL)


# --- noise floor and input checks ---------------------------------------------------------


def test_noise_floor_matches_reference() -> None:
    """An int rng seeds default_rng: same pairs, same metric values, same mean and std."""

    def sample_true(rng: np.random.Generator, n: int) -> np.ndarray:
        """Standard 2-D normal draws."""
        return rng.standard_normal((n, 2))

    expected = ref.noise_floor(
        ref.energy_distance, sample_true, 50, 3, rng=np.random.default_rng(8)
    )
    got = metrics.noise_floor(metrics.energy_distance, sample_true, 50, 3, rng=8)
    np.testing.assert_allclose(got, expected, rtol=1e-4)


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: metrics.mmd_rbf(a, b[:, :1]),
        lambda a, b: metrics.mmd_rbf(a[:1], b),
        lambda a, b: metrics.mmd_rbf(a, b, bandwidth=0.0),
        lambda a, b: metrics.energy_distance(a, b[:, :1]),
        lambda a, b: metrics.sliced_wasserstein(a, b, n_projections=0),
        lambda a, b: metrics.kernel_inception_distance(a, b, subset_size=1),
        lambda a, b: metrics.frechet_distance_from_samples(a, b[:, :1]),
    ],
)
def test_bad_input_raises(rng: np.random.Generator, call) -> None:
    """Mismatched dimensions, too few points, bad bandwidth or counts: ValueError."""
    with pytest.raises(ValueError):
        call(rng.standard_normal((5, 2)), rng.standard_normal((5, 2)))
