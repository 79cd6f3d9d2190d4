"""A run's classifier: class names saved with it, the choice of classes, guidance at NCSN noise
levels, class-wise pictures."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from reference import sde as reference_sde
from scoregen_keras import sde as keras_sde
from scoregen_keras.runs import RunError, plots
from scoregen_keras.runs.classifier import ALL_CLASSES, ClassGuide, class_guide, held_out_split
from scoregen_keras.training.checkpoint import load_checkpoint, save_checkpoint
from scoregen_keras.training.classifier import (
    NoiseConditionalClassifier,
    log_posterior_grad_fn,
    train_classifier,
)
from tests.keras.conftest import assert_scaled_close, to_numpy

NAMES = ("cat", "dog", "T-shirt/top")
SIGMA_TO_TIME_RTOL = 1e-5


@pytest.fixture
def classifier() -> NoiseConditionalClassifier:
    """A built, untrained classifier of 3 named classes for 2x2x1 images."""
    model = NoiseConditionalClassifier(3, "vp", hidden=(8,), seed=1, class_names=NAMES)
    model(keras_sde.to_float(np.zeros((1, 2, 2, 1))), keras_sde.to_float([0.5]))
    return model


def test_a_saved_classifier_keeps_its_classes_and_outputs(classifier, tmp_path):
    """save_checkpoint / load_checkpoint: the same class, names, SDE and logits."""
    x = keras_sde.to_float(np.random.default_rng(0).standard_normal((4, 2, 2, 1)))
    t = keras_sde.to_float([0.1, 0.4, 0.7, 1.0])
    save_checkpoint(classifier, tmp_path / "classifier.keras")
    loaded = load_checkpoint(tmp_path / "classifier.keras", compile=False)
    assert isinstance(loaded, NoiseConditionalClassifier)
    assert loaded.class_names == NAMES and loaded.sde.to_config() == classifier.sde.to_config()
    np.testing.assert_array_equal(to_numpy(loaded(x, t)), to_numpy(classifier(x, t)))
    with pytest.raises(ValueError, match="2 class names given for 3 classes"):
        NoiseConditionalClassifier(3, class_names=("a", "b"))
    assert NoiseConditionalClassifier(2).class_names == ("0", "1")


def test_training_is_the_same_for_the_same_seed():
    """Two trainings with one seed give the same weights (fit must not reorder the batches)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((64, 2)), rng.integers(0, 3, 64)
    first, second = (train_classifier(x, y, "ve", steps=6, batch_size=8, seed=2) for _ in "ab")
    for a, b in zip(first.get_weights(), second.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    other = train_classifier(x, y, "ve", steps=6, batch_size=8, seed=3).get_weights()
    assert not np.array_equal(other[0], first.get_weights()[0])


def test_classes_are_chosen_by_name_index_or_all(classifier):
    """A name, an index, or all in turn (cycled over the positions of a seed list, so a part
    starting at position 5 continues the cycle); anything else lists the names."""
    assert class_guide(classifier, "T-shirt/top", 2.0).classes == (2,)
    assert class_guide(classifier, "1", 1.0).classes == (1,)
    every = class_guide(classifier, ALL_CLASSES, 1.0)
    np.testing.assert_array_equal(every.labels(np.arange(7)), [0, 1, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(every.labels(np.arange(5, 9)), [2, 0, 1, 2])
    np.testing.assert_array_equal(class_guide(classifier, "dog", 1.0).labels([0, 1, 4]), [1, 1, 1])
    for unknown in ("horse", "3", "-1"):
        with pytest.raises(RunError, match="choose one of cat, dog, T-shirt/top"):
            class_guide(classifier, unknown, 1.0)


@pytest.mark.parametrize("name", ["VESDE", "VPSDE"])
def test_guidance_at_a_noise_level_is_the_classifier_at_its_time(name, rng):
    """At NCSN level sigma the guide adds scale * alpha grad_x log p_t(y | alpha x), t where
    sigma~(t) = sigma: the classifier at t(sigma) under VE (alpha = 1), scaled inputs under VP.
    t, alpha and sigma~ = std / alpha come from the float64 reference SDE."""
    config = {"sigma_min": 0.05, "sigma_max": 5.0} if name == "VESDE" else {}
    sde = keras_sde.SDES[name](N=4, **config)
    classifier = NoiseConditionalClassifier(3, sde, hidden=(8,), seed=1)
    t = np.array([0.1, 0.35, 0.6, 0.9])
    alpha, std = getattr(reference_sde, name)(N=4, **config).marginal_coefficients(t)
    x = rng.standard_normal((4, 2))
    scale, labels = 2.0, np.array([0, 1, 2, 0])  # all three classes cycled over the batch

    def no_score(x, noise):
        return ops.zeros_like(x)

    guided = ClassGuide(classifier, (0, 1, 2), scale).sigma_score_fn(no_score, labels)
    actual = guided(keras_sde.to_float(x), keras_sde.to_float(std / alpha))
    grad = log_posterior_grad_fn(classifier)
    scaled_x = keras_sde.to_float(alpha[:, None] * x)
    expected = scale * alpha[:, None] * to_numpy(grad(scaled_x, keras_sde.to_float(t), labels))
    assert_scaled_close(actual, expected, rtol=SIGMA_TO_TIME_RTOL)


def test_held_out_split_is_a_seeded_tenth():
    """Disjoint, covering, a tenth held out (at least one), the same for the same seed."""
    train, held_out = held_out_split(512, seed=3)
    assert len(held_out) == 51 and len(train) == 461
    np.testing.assert_array_equal(np.sort(np.concatenate([train, held_out])), np.arange(512))
    np.testing.assert_array_equal(held_out_split(512, seed=3)[1], held_out)
    assert len(held_out_split(3, seed=0)[1]) == 1
    with pytest.raises(RunError, match="at least 2 labelled examples"):
        held_out_split(1, seed=0)


def test_class_rows_put_one_class_on_each_row():
    """Rows as long as the commonest class, shorter ones padded with NaN; one class: as it is."""
    images = np.arange(5, dtype=np.float32).reshape(5, 1, 1, 1)
    grid, columns = plots.class_rows(images, np.array([0, 0, 0, 2, 2]))
    assert columns == 3
    np.testing.assert_array_equal(grid[:, 0, 0, 0], [0, 1, 2, 3, 4, np.nan])
    same, width = plots.class_rows(images, np.full(5, 1))
    assert width is None and same is images
    many = np.zeros((300, 1, 1, 1), np.float32)
    grid, columns = plots.class_rows(many, np.arange(300) % 3)
    assert columns == plots.MAX_GRID_IMAGES // 3 and len(grid) == 3 * columns
    grid, columns = plots.class_rows(images, np.array([0, 0, 0, 2, 2]), max_columns=2)
    assert columns == 2
    np.testing.assert_array_equal(grid[:, 0, 0, 0], [0, 1, 3, 4])


def _hues(path) -> np.ndarray:
    """Hue (0..1) of every clearly coloured pixel of a PNG."""
    from PIL import Image

    hsv = np.asarray(Image.open(path).convert("RGB").convert("HSV"), dtype=np.float64) / 255.0
    coloured = hsv[..., 1] > 0.2
    return hsv[..., 0][coloured]


def test_labelled_points_get_a_colour_per_class(tmp_path):
    """Two classes: blue and orange points (matplotlib's first two colours); unlabelled: red."""
    rng = np.random.default_rng(0)
    points = np.concatenate([rng.normal(-3, 0.3, (200, 2)), rng.normal(3, 0.3, (200, 2))])
    labels = np.repeat([0, 1], 200)
    hues = _hues(plots.save_scatter(tmp_path / "two.png", points, labels=labels, class_names=NAMES))
    blue, orange, red = (hues > 0.5) & (hues < 0.65), (hues > 0.03) & (hues < 0.15), hues > 0.9
    assert blue.sum() > 100 and orange.sum() > 100 and red.sum() == 0
    hues = _hues(plots.save_scatter(tmp_path / "one.png", points))
    assert ((hues > 0.9) | (hues < 0.02)).mean() > 0.95  # tab:red only
