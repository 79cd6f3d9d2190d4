"""Feature extractors: the shipped digits classifier, class confidence, the Inception paths."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from keras import ops

from scoregen_keras.data import load_dataset
from scoregen_keras.networks import features

MIN_ACCURACY = 0.95  # the shipped weights reach 0.997 held out (data/README.md)
N_CLASSES = features.DIGITS_CLASSES


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The digits as load_dataset gives them ([0, 1], (n, 8, 8, 1)) and their labels."""
    from sklearn.datasets import load_digits

    return load_dataset("digits").x, load_digits().target


@pytest.fixture
def fresh_inception_cache():
    """No InceptionV3 model cached before or after the test."""
    features._cached_imagenet_inception.cache_clear()
    yield
    features._cached_imagenet_inception.cache_clear()


# --------------------------------------------------------------------------------- digits


def test_shipped_weights_classify_the_digits(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """On this backend the shipped weights reach >= 0.95 accuracy, held out and overall."""
    x, y = digits
    _, held_out = features.digits_split(len(x))
    probs = features.digits_class_probabilities(x)
    assert probs.shape == (len(x), N_CLASSES)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    predicted = np.argmax(probs, axis=1)
    assert np.mean(predicted[held_out] == y[held_out]) >= MIN_ACCURACY
    assert np.mean(predicted == y) >= MIN_ACCURACY


def test_digits_features_shape_and_input_layouts(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """(n, 64) features; (n, 8, 8) and (n, 64) inputs give the same; other sizes are refused."""
    x = digits[0][:20]
    feats = features.digits_features(x)
    assert feats.shape == (20, features.DIGITS_FEATURES) and np.isfinite(feats).all()
    np.testing.assert_allclose(features.digits_features(x[..., 0]), feats, rtol=1e-6)
    np.testing.assert_allclose(features.digits_features(x.reshape(20, 64)), feats, rtol=1e-6)
    with pytest.raises(ValueError):
        features.digits_features(np.zeros((2, 9, 9, 1)))


def test_digits_split_is_fixed_and_disjoint() -> None:
    """20 % held out, disjoint from the train part, the same on every call."""
    train, held_out = features.digits_split(1797)
    assert len(held_out) == 359 and len(train) == 1438
    assert not set(train) & set(held_out)
    np.testing.assert_array_equal(features.digits_split(1797)[1], held_out)


def test_missing_or_mismatched_weights_give_feature_error(tmp_path: Path) -> None:
    """A missing file or arrays of the wrong shape raise FeatureError naming the file."""
    with pytest.raises(features.FeatureError, match="does not exist"):
        features.digits_classifier(tmp_path / "none.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **{"conv1.0": np.zeros((2, 2))})
    with pytest.raises(features.FeatureError, match="do not fit"):
        features.digits_classifier(bad)


def test_shipped_weights_prefer_the_source_tree(tmp_path: Path) -> None:
    """data/ of the source tree first, then the installed copy; the first name when neither."""
    tree, installed = tmp_path / "tree.npz", tmp_path / "installed.npz"
    assert features.shipped_digits_weights((tree, installed)) == tree
    installed.write_bytes(b"")
    assert features.shipped_digits_weights((tree, installed)) == installed
    tree.write_bytes(b"")
    assert features.shipped_digits_weights((tree, installed)) == tree
    assert features.shipped_digits_weights() == features.DIGITS_WEIGHTS  # this clone


def test_saved_weights_round_trip(tmp_path: Path) -> None:
    """save_digits_weights then digits_classifier reproduces the network's outputs."""
    keras.utils.set_random_seed(3)
    model = features.build_digits_classifier()
    path = tmp_path / "w.npz"
    features.save_digits_weights(model, path)
    loaded, _ = features.digits_classifier(path)
    x = np.random.default_rng(0).random((5, 8, 8, 1)).astype("float32")
    np.testing.assert_allclose(
        ops.convert_to_numpy(loaded(x)), ops.convert_to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )


# ------------------------------------------------------------------------- class confidence


def test_class_confidence_known_values(digits: tuple[np.ndarray, np.ndarray]) -> None:
    """Identical predictions: 1; confident and balanced one-hots: the class count; real digits
    (about balanced, 99 % accurate): close to 10; one repeated confident class: 1."""
    uniform = np.full((7, N_CLASSES), 1.0 / N_CLASSES)
    assert features.class_confidence_score(uniform) == pytest.approx(1.0)
    one_hot = np.eye(N_CLASSES)[np.arange(50) % N_CLASSES]
    assert features.class_confidence_score(one_hot) == pytest.approx(N_CLASSES)
    assert features.class_confidence_score(np.eye(N_CLASSES)[np.zeros(30, int)]) == 1.0
    real = features.class_confidence_score(features.digits_class_probabilities(digits[0]))
    assert 9.0 < real <= N_CLASSES


# ------------------------------------------------------------------------------ Inception


def test_inception_download_failure_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch, fresh_inception_cache: None
) -> None:
    """A failed download becomes ImageNetInceptionWeightsError naming the variable to set."""

    def offline(weights: str) -> keras.Model:
        """What keras.utils.get_file raises without a network."""
        raise Exception(
            "URL fetch failure on https://storage.googleapis.com/...: None -- [Errno -3] "
            "Temporary failure in name resolution"
        )

    monkeypatch.delenv(features.IMAGENET_INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(features, "_build_imagenet_inception", offline)
    with pytest.raises(features.ImageNetInceptionWeightsError) as caught:
        features.imagenet_inception_features(np.zeros((1, 8, 8, 1)))
    message = str(caught.value)
    assert "\n" not in message
    assert (
        features.IMAGENET_INCEPTION_WEIGHTS_ENV in message
        and features.IMAGENET_INCEPTION_WEIGHTS_FILE in message
    )
    assert isinstance(caught.value, features.FeatureError)


def test_inception_missing_local_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_inception_cache: None
) -> None:
    """A weights path (argument or environment) that does not exist is refused before building."""

    def never(weights: str) -> keras.Model:
        """Building must not be attempted."""
        raise AssertionError("InceptionV3 was built")

    monkeypatch.setattr(features, "_build_imagenet_inception", never)
    missing = tmp_path / "missing.h5"
    with pytest.raises(features.ImageNetInceptionWeightsError, match="does not exist"):
        features.imagenet_inception_model(missing)
    monkeypatch.setenv(features.IMAGENET_INCEPTION_WEIGHTS_ENV, str(missing))
    with pytest.raises(features.ImageNetInceptionWeightsError, match="does not exist"):
        features.imagenet_inception_model()


def test_inception_input_pipeline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fresh_inception_cache: None
) -> None:
    """A stand-in network sees (n, 299, 299, 3) in [-1, 1], grey repeated to three channels."""
    seen: dict[str, str] = {}

    def stand_in(x: object, training: bool = False) -> object:
        """Features: min, max, and the largest gap between the R and B channels."""
        assert not training
        return ops.stack(
            [
                ops.min(x, axis=(1, 2, 3)),
                ops.max(x, axis=(1, 2, 3)),
                ops.max(ops.abs(x[..., 0] - x[..., 2]), axis=(1, 2)),
                ops.full((x.shape[0],), float(x.shape[1] * 1000 + x.shape[3])),
            ],
            axis=1,
        )

    def build(weights: str) -> object:
        """Record the weights source and hand back the stand-in."""
        seen["weights"] = weights
        return stand_in

    local = tmp_path / features.IMAGENET_INCEPTION_WEIGHTS_FILE
    local.write_bytes(b"")
    monkeypatch.setattr(features, "_build_imagenet_inception", build)
    grey = np.stack([np.zeros((8, 8, 1)), np.full((8, 8, 1), 16.0)])
    out = features.imagenet_inception_features(grey, pixel_range=(0.0, 16.0), weights_path=local)
    assert seen["weights"] == str(local)
    np.testing.assert_allclose(out[:, :2], [[-1.0, -1.0], [1.0, 1.0]], atol=1e-5)
    np.testing.assert_allclose(out[:, 2], 0.0, atol=1e-6)
    np.testing.assert_allclose(out[:, 3], 299 * 1000 + 3)
