"""Known-answer tests for the sample-based distances in reference.metrics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from reference import metrics
from reference.metrics import (
    compare_to_reference,
    energy_distance,
    frechet_distance,
    frechet_distance_from_samples,
    kernel_inception_distance,
    median_bandwidth,
    mmd_rbf,
    noise_floor,
    polynomial_mmd,
    sliced_wasserstein,
)


@pytest.fixture
def rng() -> np.random.Generator:
    """A fixed generator."""
    return np.random.default_rng(0)


def _gaussian(rng: np.random.Generator, n: int) -> np.ndarray:
    """Standard 2-D normal draws."""
    return rng.standard_normal((n, 2))


# --- sliced Wasserstein -------------------------------------------------------------------


def test_sw_identical_sets_is_zero(rng: np.random.Generator) -> None:
    """SW1 of a set with itself (any order) is exactly 0."""
    x = rng.standard_normal((300, 3))
    assert sliced_wasserstein(x, rng.permutation(x), rng) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shift", [0.5, -2.0])
def test_sw_1d_shift_is_abs_shift(rng: np.random.Generator, shift: float) -> None:
    """In 1-D, SW1 is W1, and W1 between a set and its translate is |shift|."""
    x = rng.standard_normal(200)
    assert sliced_wasserstein(x, x + shift, rng) == pytest.approx(abs(shift), rel=1e-12)


def test_sw_unequal_sizes_via_quantiles(rng: np.random.Generator) -> None:
    """Duplicating every point leaves the law unchanged: W1(x, [x, x] + s) = |s|."""
    x = rng.standard_normal(101)
    y = np.concatenate([x, x]) + 0.7
    assert sliced_wasserstein(x, y, rng) == pytest.approx(0.7, rel=1e-12)


def test_sw_unequal_sizes_matches_scipy(rng: np.random.Generator) -> None:
    """Unequal-size 1-D W1 agrees with scipy.stats.wasserstein_distance."""
    u, v = rng.standard_normal(37), 2.0 * rng.standard_normal(64) + 0.3
    expected = scipy.stats.wasserstein_distance(u, v)
    assert sliced_wasserstein(u, v, rng) == pytest.approx(expected, rel=1e-10)


def test_sw_2d_shift_uses_stated_draws() -> None:
    """For y = x + v, each projection's W1 is |θ·v|: the mean over the drawn unit directions."""
    x = np.random.default_rng(1).standard_normal((250, 2))
    v = np.array([1.5, -0.5])
    n_proj = 50
    theta = np.random.default_rng(7).standard_normal((n_proj, 2))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    expected = np.mean(np.abs(theta @ v))
    got = sliced_wasserstein(x, x + v, np.random.default_rng(7), n_projections=n_proj)
    assert got == pytest.approx(expected, rel=1e-10)


def test_sw_chunking_does_not_change_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processing projections in small chunks gives the same number."""
    data = np.random.default_rng(2).standard_normal((2, 80, 2))
    full = sliced_wasserstein(data[0], data[1], np.random.default_rng(3), 40)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 100)
    chunked = sliced_wasserstein(data[0], data[1], np.random.default_rng(3), 40)
    assert chunked == pytest.approx(full, rel=1e-12)


def test_sw_detects_different_distributions(rng: np.random.Generator) -> None:
    """Negative case: a shifted distribution is far above the noise floor."""
    x, y = _gaussian(rng, 500), _gaussian(rng, 500) + np.array([1.0, 0.0])
    floor, _ = noise_floor(lambda a, b: sliced_wasserstein(a, b, rng), _gaussian, 500, rng=rng)
    assert sliced_wasserstein(x, y, rng) > 5 * floor


# --- MMD ----------------------------------------------------------------------------------


def _mmd_brute_force(x: np.ndarray, y: np.ndarray, h: float) -> float:
    """Unbiased RBF MMD² with explicit loops (the definition, term by term)."""

    def k(a: np.ndarray, b: np.ndarray) -> float:
        """RBF kernel."""
        return float(np.exp(-np.sum((a - b) ** 2) / (2 * h**2)))

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_mmd_matches_brute_force(rng: np.random.Generator) -> None:
    """Vectorised unbiased MMD² equals the term-by-term definition on small sets."""
    x, y = rng.standard_normal((6, 2)), rng.standard_normal((9, 2)) + 0.5
    assert mmd_rbf(x, y, bandwidth=0.8) == pytest.approx(_mmd_brute_force(x, y, 0.8), rel=1e-12)


def test_mmd_default_bandwidth_is_median_heuristic(rng: np.random.Generator) -> None:
    """bandwidth=None uses the median pairwise distance of the pooled sample."""
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((5, 3))
    h = median_bandwidth(x, y)
    assert mmd_rbf(x, y) == pytest.approx(_mmd_brute_force(x, y, h), rel=1e-12)


def test_median_bandwidth_by_hand() -> None:
    """Points 0, 1, 3 on a line: distances 1, 3, 2, median 2."""
    assert median_bandwidth(np.array([0.0, 1.0]), np.array([3.0])) == pytest.approx(2.0)


def test_mmd_two_point_masses() -> None:
    """Point masses at a and b: MMD²_u = 2 − 2 exp(−‖a − b‖²/(2h²)) exactly."""
    x = np.tile([0.0, 0.0], (4, 1))
    y = np.tile([1.0, 1.0], (3, 1))
    h = 1.3
    expected = 2.0 - 2.0 * np.exp(-2.0 / (2 * h**2))
    assert mmd_rbf(x, y, bandwidth=h) == pytest.approx(expected, rel=1e-12)


def test_mmd_separates_distributions(rng: np.random.Generator) -> None:
    """Negative case: MMD² between different laws is far above the same-law value."""
    same = mmd_rbf(_gaussian(rng, 400), _gaussian(rng, 400))
    different = mmd_rbf(_gaussian(rng, 400), 1.5 * _gaussian(rng, 400))
    assert abs(same) < 0.01 < different


def test_mmd_rejects_bad_input(rng: np.random.Generator) -> None:
    """Mismatched dimensions, a single point, or a non-positive bandwidth raise ValueError."""
    with pytest.raises(ValueError):
        mmd_rbf(rng.standard_normal((5, 2)), rng.standard_normal((5, 3)))
    with pytest.raises(ValueError):
        mmd_rbf(rng.standard_normal((1, 2)), rng.standard_normal((5, 2)))
    with pytest.raises(ValueError):
        mmd_rbf(rng.standard_normal((5, 2)), rng.standard_normal((5, 2)), bandwidth=0.0)


# --- energy distance ----------------------------------------------------------------------


def test_energy_identical_sets_is_zero(rng: np.random.Generator) -> None:
    """Energy distance of a set with itself is 0."""
    x = rng.standard_normal((200, 2))
    assert energy_distance(x, x[::-1]) == pytest.approx(0.0, abs=1e-10)


def test_energy_by_hand() -> None:
    """x = {0, 2}, y = {1}: 2·E|X−Y| − E|X−X'| − E|Y−Y'| = 2·1 − 1 − 0 = 1."""
    assert energy_distance(np.array([0.0, 2.0]), np.array([1.0])) == pytest.approx(1.0)
    assert energy_distance(np.array([0.0]), np.array([3.0])) == pytest.approx(6.0)


def test_energy_matches_scipy_squared_in_1d(rng: np.random.Generator) -> None:
    """In 1-D, the value is scipy.stats.energy_distance squared."""
    u, v = rng.standard_normal(40), rng.standard_normal(55) + 0.4
    assert energy_distance(u, v) == pytest.approx(scipy.stats.energy_distance(u, v) ** 2)


def test_energy_chunking_does_not_change_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Row-chunked pairwise sums agree with the one-block computation."""
    data = np.random.default_rng(4).standard_normal((2, 90, 3))
    full = energy_distance(data[0], data[1])
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 50)
    assert energy_distance(data[0], data[1]) == pytest.approx(full, abs=1e-12)


def test_energy_detects_different_distributions(rng: np.random.Generator) -> None:
    """Negative case: a scaled law is far above the noise floor."""
    floor, _ = noise_floor(energy_distance, _gaussian, 300, rng=rng)
    assert energy_distance(_gaussian(rng, 300), 2.0 * _gaussian(rng, 300)) > 5 * floor


# --- Fréchet ------------------------------------------------------------------------------


def test_frechet_shifted_diagonal_gaussians() -> None:
    """Diagonal covariances: ‖Δμ‖² + Σ(√a − √b)²."""
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([1.0, 3.0, -1.0])
    a, b = np.array([1.0, 4.0, 0.25]), np.array([9.0, 1.0, 0.25])
    expected = 1.0 + 4.0 + (1 - 3) ** 2 + (2 - 1) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_frechet_full_covariances_match_sqrtm_of_the_product(rng: np.random.Generator) -> None:
    """Well-conditioned full covariances: tr√(C₁C₂) from SciPy's sqrtm of the product itself."""
    d = 4
    l1, l2 = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    cov1, cov2 = l1 @ l1.T + 0.1 * np.eye(d), l2 @ l2.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    cross = np.trace(scipy.linalg.sqrtm(cov1 @ cov2)).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * cross
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-10)


def test_frechet_singular_covariances_are_exact_and_quiet(rng: np.random.Generator) -> None:
    """Rank-deficient covariances (fewer samples than dimensions) give the exact value, no warning.

    C = A Aᵀ of rank 3 in 10 dimensions: FD(C, C) = 0; C₁ = diag(a, 0), C₂ = diag(0, b) (disjoint
    supports, √(C₁C₂) = 0): FD = tr C₁ + tr C₂.
    """
    a = rng.standard_normal((10, 3))
    cov, mu = a @ a.T, rng.standard_normal(10)
    cov1, cov2 = np.diag([2.0, 3.0, 0.0, 0.0]), np.diag([0.0, 0.0, 5.0, 7.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-10 * np.trace(cov))
        assert frechet_distance(np.zeros(4), cov1, np.zeros(4), cov2) == pytest.approx(17.0)


def test_frechet_same_gaussian_is_zero() -> None:
    """Identical Gaussians are at distance 0; shifting by Δ gives ‖Δ‖²."""
    cov = np.array([[2.0, 0.5], [0.5, 1.0]])
    mu = np.array([0.3, -0.2])
    assert frechet_distance(mu, cov, mu, cov) == pytest.approx(0.0, abs=1e-10)
    assert frechet_distance(mu, cov, mu + np.array([3.0, 4.0]), cov) == pytest.approx(25.0)


def test_frechet_from_samples_shift(rng: np.random.Generator) -> None:
    """A sample set and its translate by Δ have equal covariances: distance ‖Δ‖²."""
    x = rng.standard_normal((500, 3)) @ np.diag([1.0, 2.0, 0.5])
    delta = np.array([1.0, -2.0, 0.5])
    assert frechet_distance_from_samples(x, x + delta) == pytest.approx(delta @ delta, rel=1e-8)


def test_frechet_from_samples_1d(rng: np.random.Generator) -> None:
    """1-D sample sets: (μ₁ − μ₂)² + (s₁ − s₂)² with sample std (ddof=1)."""
    u, v = rng.standard_normal(50), 3 * rng.standard_normal(60) + 1
    expected = (u.mean() - v.mean()) ** 2 + (u.std(ddof=1) - v.std(ddof=1)) ** 2
    assert frechet_distance_from_samples(u, v) == pytest.approx(expected, rel=1e-8)


def test_frechet_rejects_mismatched_shapes() -> None:
    """Negative case: means and covariances of different sizes raise ValueError."""
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


# --- noise floor and report ---------------------------------------------------------------


def test_noise_floor_draw_order_and_statistics() -> None:
    """Pairs are (draw 2k, draw 2k+1) from sample_true; returns mean and ddof=1 std."""
    calls: list[int] = []

    def sample_true(rng: np.random.Generator, n: int) -> np.ndarray:
        """Deterministic 'sampler': constant arrays 0, 1, 2, ... in call order."""
        calls.append(n)
        return np.full((n, 1), float(len(calls) - 1))

    def metric(x: np.ndarray, y: np.ndarray) -> float:
        """Product of the two constants, so the pairing is visible."""
        return float(x[0, 0] * y[0, 0])

    mean, std = noise_floor(metric, sample_true, 3, n_pairs=3, rng=np.random.default_rng(0))
    values = np.array([0 * 1, 2 * 3, 4 * 5])
    assert calls == [3] * 6
    assert mean == pytest.approx(values.mean())
    assert std == pytest.approx(values.std(ddof=1))


def test_noise_floor_single_pair_has_zero_std(rng: np.random.Generator) -> None:
    """With one pair the spread is reported as 0; n_pairs < 1 is rejected."""
    _, std = noise_floor(energy_distance, _gaussian, 20, n_pairs=1, rng=rng)
    assert std == 0.0
    with pytest.raises(ValueError):
        noise_floor(energy_distance, _gaussian, 20, n_pairs=0, rng=rng)


def test_compare_to_reference_keys_and_separation(rng: np.random.Generator) -> None:
    """True samples sit near the floor; a shifted set is far above it on every metric."""
    good = compare_to_reference(_gaussian(rng, 300), _gaussian, rng, n_pairs=3)
    bad = compare_to_reference(_gaussian(rng, 300) + 1.0, _gaussian, rng, n_pairs=3)
    assert set(good) == {"sliced_wasserstein", "mmd_rbf", "energy"}
    for name, entry in bad.items():
        assert set(entry) == {"value", "floor_mean", "floor_std"}
        assert entry["value"] > entry["floor_mean"] + 5 * entry["floor_std"], name
        assert good[name]["value"] < bad[name]["value"], name


# --- KID ----------------------------------------------------------------------------------

KID_NULL_BOUND = 0.04
"""|KID| bound for two N(0, I_8) sets of 500 (20 subsets of 200): E = 0, measured sd 0.0084
over 200 seeds, so the bound is ~5 sd."""


def _poly_mmd_brute_force(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased cubic-kernel MMD² with explicit loops (the definition, term by term)."""
    d = x.shape[1]

    def k(a: np.ndarray, b: np.ndarray) -> float:
        """KID's polynomial kernel."""
        return float((a @ b / d + 1.0) ** 3)

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return kxx + kyy - 2 * kxy


def test_polynomial_mmd_matches_brute_force(rng: np.random.Generator) -> None:
    """Vectorised, chunked cubic-kernel MMD² equals the term-by-term definition."""
    x, y = rng.standard_normal((7, 3)), rng.standard_normal((5, 3)) + 0.4
    assert polynomial_mmd(x, y) == pytest.approx(_poly_mmd_brute_force(x, y), rel=1e-12)


def test_kid_by_hand() -> None:
    """x = {0, 1}, y = {0, 2} in 1-D, k = (ab + 1)³: kxx = 1, kyy = 1, kxy = 30/4, KID = −13."""
    x, y = np.array([0.0, 1.0]), np.array([0.0, 2.0])
    got = kernel_inception_distance(x, y, np.random.default_rng(0), n_subsets=3, subset_size=2)
    assert got == pytest.approx(-13.0, rel=1e-12)


def test_kid_full_subsets_do_not_depend_on_draws(rng: np.random.Generator) -> None:
    """With subset_size >= n = m each subset is a permutation: KID = MMD²_u of the full sets."""
    x, y = rng.standard_normal((30, 4)), rng.standard_normal((30, 4)) + 0.2
    got = kernel_inception_distance(x, y, rng, n_subsets=4, subset_size=100)
    assert got == pytest.approx(polynomial_mmd(x, y), rel=1e-10)


def test_kid_states_its_draw_order() -> None:
    """Subset indices: choice(n, s) then choice(m, s) per subset, from the given generator."""
    data = np.random.default_rng(5).standard_normal((2, 40, 3))
    x, y = data[0], data[1] + 0.5
    draws = np.random.default_rng(9)
    expected = []
    for _ in range(3):
        ix, iy = draws.choice(40, 10, replace=False), draws.choice(40, 10, replace=False)
        expected.append(polynomial_mmd(x[ix], y[iy]))
    got = kernel_inception_distance(x, y, np.random.default_rng(9), n_subsets=3, subset_size=10)
    assert got == pytest.approx(np.mean(expected), rel=1e-12)


def test_kid_identical_laws_near_zero_shifted_far(rng: np.random.Generator) -> None:
    """Same law: |KID| < KID_NULL_BOUND; a 0.3 shift per coordinate gives ~0.3 (negative case)."""
    same = kernel_inception_distance(
        rng.standard_normal((500, 8)), rng.standard_normal((500, 8)), rng, 20, 200
    )
    shifted = kernel_inception_distance(
        rng.standard_normal((500, 8)), rng.standard_normal((500, 8)) + 0.3, rng, 20, 200
    )
    assert abs(same) < KID_NULL_BOUND < 5 * KID_NULL_BOUND < shifted


def test_kid_rejects_bad_input(rng: np.random.Generator) -> None:
    """Mismatched dimensions, a subset of one, or no subsets raise ValueError."""
    x = rng.standard_normal((10, 2))
    with pytest.raises(ValueError):
        kernel_inception_distance(x, rng.standard_normal((10, 3)), rng)
    with pytest.raises(ValueError):
        kernel_inception_distance(x, x, rng, subset_size=1)
    with pytest.raises(ValueError):
        kernel_inception_distance(x, x, rng, n_subsets=0)
