"""pytorch-fid's Fréchet distance and the streaming feature moments, against its own outputs.

shared/fixtures/fid_inception/fid_formula_example.npz holds features, their np.mean / np.cov and
calculate_frechet_distance's value (pytorch-fid 0.3.0, SciPy 1.17.1), for full-rank covariances
and for a rank-deficient pair (40 and 30 samples in 64 dimensions).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg

from reference import metrics
from reference.metrics import FeatureMoments, frechet_distance
from tests.shared_fixtures import shared_fixture

FLOAT64_RTOL = 1e-10
EPS64 = np.finfo(np.float64).eps


@pytest.fixture(scope="module")
def example() -> dict[str, np.ndarray]:
    """The worked example of the distance."""
    with np.load(shared_fixture("fid_inception") / "fid_formula_example.npz") as data:
        return {key: data[key] for key in data.files}


def _moments(example: dict[str, np.ndarray], prefix: str = "") -> tuple[np.ndarray, ...]:
    """(mu1, sigma1, mu2, sigma2) of the example."""
    return tuple(example[prefix + key] for key in ("mu1", "sigma1", "mu2", "sigma2"))


def test_fixture_moments_are_numpys(example):
    """The example's moments are np.mean and np.cov (ddof 1) of its features."""
    for prefix in ("", "rankdef_"):
        for i in ("1", "2"):
            features = example[f"{prefix}features{i}"]
            np.testing.assert_allclose(example[f"{prefix}mu{i}"], features.mean(axis=0), 0, 1e-15)
            np.testing.assert_allclose(
                example[f"{prefix}sigma{i}"], np.cov(features, rowvar=False), 0, 1e-13
            )


def test_sqrtm_distance_is_pytorch_fids(example):
    """Full-rank covariances: pytorch-fid's value to float64 round-off."""
    assert not example["fallback_triggered"]
    value = frechet_distance(*_moments(example), method="sqrtm")
    assert value == pytest.approx(float(example["fid"]), rel=FLOAT64_RTOL)


def test_eigh_distance_agrees_on_full_rank(example):
    """The eigenvalue route gives the same distance where nothing is singular."""
    value = frechet_distance(*_moments(example), method="eigh")
    assert value == pytest.approx(float(example["fid"]), rel=FLOAT64_RTOL)


def _rank_deficient_tolerance(example: dict[str, np.ndarray]) -> float:
    """Round-off bound on tr sqrtm(σ1σ2) for a singular product, times 2 (the FID's factor).

    Each of the d − r null eigenvalues of σ1σ2 comes out of a float64 Schur decomposition as
    O(ε‖σ1σ2‖), so its square root adds up to √(ε‖σ1σ2‖) to the trace, whichever LAPACK ran.
    """
    _, sigma1, _, sigma2 = _moments(example, "rankdef_")
    product = sigma1 @ sigma2
    null_dim = len(product) - np.linalg.matrix_rank(product)
    return 2.0 * null_dim * np.sqrt(EPS64 * np.linalg.norm(product, 2))


def test_sqrtm_distance_rank_deficient(example):
    """Rank 39 and 29 < 64: pytorch-fid's value (no fallback on SciPy 1.17), within round-off."""
    assert not example["rankdef_fallback_triggered"]
    tolerance = _rank_deficient_tolerance(example)
    value = frechet_distance(*_moments(example, "rankdef_"), method="sqrtm")
    assert abs(value - float(example["rankdef_fid"])) <= tolerance
    # the fallback branch's value is far outside that bound: the test tells the branches apart
    assert abs(float(example["rankdef_fid_eps_branch"]) - float(example["rankdef_fid"])) > 100 * (
        tolerance
    )


def test_sqrtm_retries_with_eps_offset_when_not_finite(example, monkeypatch):
    """A non-finite sqrtm(σ1σ2) is retried on (σ1 + εI)(σ2 + εI): pytorch-fid's fallback value."""
    calls = []
    real_sqrtm = scipy.linalg.sqrtm

    def first_call_not_finite(matrix: np.ndarray) -> np.ndarray:
        """sqrtm whose first result is NaN (a singular product where SciPy gives up)."""
        calls.append(matrix)
        return np.full_like(matrix, np.nan) if len(calls) == 1 else real_sqrtm(matrix)

    monkeypatch.setattr(metrics.scipy.linalg, "sqrtm", first_call_not_finite)
    mu1, sigma1, mu2, sigma2 = _moments(example, "rankdef_")
    value = frechet_distance(mu1, sigma1, mu2, sigma2, method="sqrtm", eps=float(example["eps"]))
    assert len(calls) == 2
    offset = float(example["eps"]) * np.eye(len(sigma1))
    np.testing.assert_allclose(calls[1], (sigma1 + offset) @ (sigma2 + offset), rtol=0, atol=0)
    # the offset product is full rank: float64 agreement
    assert value == pytest.approx(float(example["rankdef_fid_eps_branch"]), rel=1e-9)


def test_sqrtm_imaginary_part_is_an_error():
    """A product with a negative eigenvalue has an imaginary square root: ValueError, one line."""
    with pytest.raises(ValueError, match="imaginary component") as info:
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.diag([-1.0, 1.0]), method="sqrtm")
    assert "\n" not in str(info.value)


def test_unknown_method_is_refused():
    """A method name that is neither eigh nor sqrtm."""
    with pytest.raises(ValueError, match="method must be one of"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2), method="svd")


# ------------------------------------------------------------------------ streaming moments


@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_feature_moments_match_numpy_over_uneven_batches(offset):
    """Batches of 1, 7, 0, 64, 3, ... rows give np.mean and np.cov (ddof 1) of all rows.

    offset 1e4 with unit spread: a naive Σxxᵀ − n x̄x̄ᵀ would lose ~8 of 16 digits to it.
    """
    rng = np.random.default_rng(26)
    features = offset + rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12))
    moments = FeatureMoments(12)
    bounds = [0, 1, 8, 8, 72, 75, 190, 300]
    for start, stop in itertools.pairwise(bounds):
        moments.update(features[start:stop])
    assert moments.count == 300
    expected_cov = np.cov(features, rowvar=False)
    mean_scale = np.max(np.abs(features))  # round-off of a mean scales with the values summed
    np.testing.assert_allclose(moments.mean(), features.mean(axis=0), 0, 1e-14 * mean_scale)
    scale = np.max(np.abs(expected_cov))
    np.testing.assert_allclose(moments.covariance(), expected_cov, rtol=0, atol=1e-12 * scale)


def test_feature_moments_match_the_example(example):
    """The fixture's mu and sigma from its features streamed in batches of 37."""
    for prefix in ("", "rankdef_"):
        features = example[f"{prefix}features1"]
        moments = FeatureMoments(features.shape[1])
        for start in range(0, len(features), 37):
            moments.update(features[start : start + 37])
        sigma = example[f"{prefix}sigma1"]
        np.testing.assert_allclose(moments.mean(), example[f"{prefix}mu1"], rtol=1e-14, atol=0)
        np.testing.assert_allclose(moments.covariance(), sigma, 0, 1e-12 * np.abs(sigma).max())


def test_feature_moments_bad_input():
    """Wrong width, fewer than 2 rows, nothing added: ValueError naming the problem."""
    moments = FeatureMoments(3)
    with pytest.raises(ValueError, match=r"shape \(b, 3\)"):
        moments.update(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="no features"):
        moments.mean()
    moments.update(np.ones((1, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        moments.covariance()
