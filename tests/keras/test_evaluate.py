"""evaluate_samples: true draws sit at the floor, wrong ones far above it; exact-density checks."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reference import sde as ref_sde
from reference.datasets import mixture5
from reference.distributions import GaussianMixture
from scoregen_keras import sde as k_sde
from scoregen_keras.data import load_dataset
from scoregen_keras.runs.evaluate import evaluate_samples, reference_sde

N = 400
PAIRS = 3
FLOOR_SPREADS = 5.0
"""A sample set drawn like the data lies within this many floor std of the floor mean (the
value and floor are both noisy: 5 sd leaves real slack for 3 pairs)."""


def _near_floor(entry: dict[str, float]) -> bool:
    """The value is within FLOOR_SPREADS floor spreads (plus its own spread) of the floor."""
    slack = FLOOR_SPREADS * (entry["floor_std"] + entry.get("value_std", 0.0))
    return abs(entry["value"] - entry["floor_mean"]) <= slack


def _far_above_floor(entry: dict[str, float]) -> bool:
    """The value exceeds the floor by more than FLOOR_SPREADS floor spreads and by 2x."""
    floor = entry["floor_mean"] + FLOOR_SPREADS * entry["floor_std"]
    return entry["value"] > max(floor, 2 * abs(entry["floor_mean"]))


def test_points_true_draws_at_floor_wrong_draws_above() -> None:
    """mixture5: fresh true draws score like the floor; a set shifted by 1 is far above it."""
    mixture = mixture5()
    rng = np.random.default_rng(0)
    data, good = mixture.sample(rng, 2 * N), mixture.sample(rng, N)
    report = evaluate_samples(good, data, "points", n_pairs=PAIRS, density=mixture)
    assert set(report) == {
        "sliced_wasserstein", "mmd_rbf", "energy", "logp_gap", "occupancy_tv",
    }  # fmt: skip
    for name, entry in report.items():
        assert set(entry) == {"value", "value_std", "floor_mean", "floor_std"}, name
        assert _near_floor(entry), (name, entry)
    bad = evaluate_samples(good + 1.0, data, "points", n_pairs=PAIRS, density=mixture)
    for name in ("sliced_wasserstein", "mmd_rbf", "energy"):
        assert _far_above_floor(bad[name]), (name, bad[name])
    assert bad["logp_gap"]["value"] < -1.0  # shifted points sit where the density is lower


def test_points_mode_imbalance_raises_occupancy_tv() -> None:
    """Samples with component weights (0.9, 0.025, ...) instead of mixture5's: TV ≈ 0.55."""
    mixture = mixture5()
    rng = np.random.default_rng(5)
    weights = np.array([0.9, 0.025, 0.025, 0.025, 0.025])
    imbalanced = GaussianMixture(weights, mixture.means, mixture.covs).sample(rng, N)
    report = evaluate_samples(
        imbalanced, mixture.sample(rng, 2 * N), "points", n_pairs=PAIRS, density=mixture
    )
    assert _far_above_floor(report["occupancy_tv"]), report["occupancy_tv"]


def test_points_too_narrow_samples_have_higher_log_density() -> None:
    """Samples pulled towards the component means have a positive exact log-density gap."""
    mixture = mixture5()
    rng = np.random.default_rng(1)
    data = mixture.sample(rng, 2 * N)
    x, labels = mixture.sample_with_labels(rng, N)
    narrow = mixture.means[labels] + 0.5 * (x - mixture.means[labels])
    report = evaluate_samples(narrow, data, "points", n_pairs=PAIRS, density=mixture)
    gap = report["logp_gap"]
    assert gap["value"] > gap["floor_mean"] + FLOOR_SPREADS * gap["floor_std"]


def test_nll_gap_zero_for_the_exact_model_positive_for_a_wrong_one() -> None:
    """With model log p = exact log p the gap is exactly 0; a wider model has a positive gap."""
    mixture = mixture5()
    rng = np.random.default_rng(2)
    data, samples = mixture.sample(rng, 2 * N), mixture.sample(rng, N)
    exact = evaluate_samples(
        samples, data, "points", n_pairs=1, density=mixture, model_log_prob=mixture.log_prob,
        n_nll=50,
    )  # fmt: skip
    assert exact["nll_gap"] == {"value": 0.0, "std_error": 0.0, "n": 50}
    wide = mixture.perturbed(1.0, 0.5)
    wrong = evaluate_samples(
        samples, data, "points", n_pairs=1, density=mixture, model_log_prob=wide.log_prob,
        n_nll=50,
    )  # fmt: skip
    assert wrong["nll_gap"]["value"] > 5 * wrong["nll_gap"]["std_error"] > 0


def test_digits_images_real_at_floor_noise_far_above() -> None:
    """Digits features: held-back real digits score like the floor; uniform noise does not."""
    x = load_dataset("digits").x
    order = np.random.default_rng(3).permutation(len(x))
    samples, data = x[order[:300]], x[order[300:]]
    report = evaluate_samples(samples, data, "images", n_pairs=PAIRS)
    assert set(report) == {"fd_digits", "kid_digits", "class_confidence_digits"}
    for name, entry in report.items():
        assert _near_floor(entry), (name, entry)
    noise = np.random.default_rng(4).random(samples.shape)
    bad = evaluate_samples(noise, data, "images", n_pairs=PAIRS)
    assert _far_above_floor(bad["fd_digits"]) and _far_above_floor(bad["kid_digits"])
    # 16-level pixel range: the same images on the 0..16 scale give the same figures
    scaled = evaluate_samples(16 * samples, 16 * data, "images", n_pairs=1, pixel_range=(0, 16))
    plain = evaluate_samples(samples, data, "images", n_pairs=1)
    assert scaled["fd_digits"]["value"] == pytest.approx(plain["fd_digits"]["value"], rel=1e-4)


def test_bad_arguments() -> None:
    """Unknown kind, mismatched shapes, no pairs: ValueError."""
    x = np.zeros((10, 2))
    with pytest.raises(ValueError, match="kind"):
        evaluate_samples(x, x, "audio")
    with pytest.raises(ValueError, match="shape"):
        evaluate_samples(x, np.zeros((10, 3)), "points")
    with pytest.raises(ValueError, match="n_pairs"):
        evaluate_samples(x, x, "points", n_pairs=0)


@pytest.mark.parametrize(
    "keras_sde",
    [
        k_sde.VESDE(sigma_min=0.02, sigma_max=30.0, N=500, eps=1e-4),
        k_sde.VPSDE(beta_min=0.2, beta_max=15.0, N=800),
        k_sde.SubVPSDE(beta_min=0.3, beta_max=10.0, N=700),
    ],
    ids=lambda sde: type(sde).__name__,
)
def test_reference_sde_has_the_keras_sdes_parameters(keras_sde: k_sde.SDE) -> None:
    """The NumPy twin of a non-default Keras SDE: same class, N, eps and marginal coefficients."""
    twin = reference_sde(keras_sde)
    assert type(twin) is getattr(ref_sde, type(keras_sde).__name__)
    assert (twin.N, twin.eps) == (keras_sde.N, keras_sde.eps)
    t = np.array([1e-3, 0.1, 0.5, 1.0], dtype=np.float32)
    for ours, theirs in zip(
        twin.marginal_coefficients(t), keras_sde.marginal_coefficients(t), strict=True
    ):
        np.testing.assert_allclose(ours, keras.ops.convert_to_numpy(theirs), rtol=1e-5)
