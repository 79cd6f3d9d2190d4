"""FID statistics: the streaming pass over images, pytorch-fid's .npz files, the distance.

Fast tests use a stand-in network (per-channel means of x and x², 6 features) so the pass itself
is checked to float64 round-off; the slow test runs the FID
Inception network on the fixture's images against np.cov of pytorch-fid's pool3.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

from scoregen_keras.networks.fid_inception import FIDError, fid_input
from scoregen_keras.runs import fid_statistics
from scoregen_keras.runs.fid_statistics import (
    FIDStatistics,
    feature_statistics,
    frechet_inception_distance,
    load_fid_statistics,
    save_fid_statistics,
)
from tests.keras.test_fid_weights import assert_one_sentence
from tests.shared_fixtures import shared_fixture

STAND_IN_DIM = 6
FLOAT32_RTOL = 1e-6
"""Float32 features of one image computed in batches of different shapes."""


class Recorder:
    """A network's predict_on_batch that remembers the shapes it was given."""

    def __init__(self, network: keras.Model) -> None:
        self.network, self.shapes = network, []

    def predict_on_batch(self, x: np.ndarray) -> dict[str, np.ndarray]:
        self.shapes.append(x.shape)
        return self.network.predict_on_batch(x)


@pytest.fixture(scope="module")
def stand_in() -> keras.Model:
    """images (n, H, W, 3) -> {"pool3": per-channel means of x and x² (n, 6)}."""
    images = keras.Input((None, None, 3))
    both = keras.layers.Concatenate()([images, keras.ops.square(images)])
    pool3 = keras.layers.GlobalAveragePooling2D()(both)
    return keras.Model(images, {"pool3": pool3})


def uint8_images(n: int, size: int, seed: int) -> np.ndarray:
    """n random RGB images of size x size."""
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_streaming_statistics_are_np_cov_of_the_features(stand_in):
    """23 images given as an array, single images and a batch, in batches of 4: the features of
    each batch (the last padded to 4) streamed into mu and sigma equal np.mean / np.cov."""
    images = uint8_images(23, 8, seed=0)
    items = [images[:10], *images[10:18], images[18:]]
    recorder = Recorder(stand_in)
    progress = []
    stats = feature_statistics(items, recorder, batch_size=4, progress=progress.append)
    assert progress == [4, 4, 4, 4, 4, 3] and stats.count == 23
    assert {shape[0] for shape in recorder.shapes} == {4}  # one traced shape
    features = fid_statistics.pool3_features(items, stand_in, batch_size=4)
    np.testing.assert_allclose(stats.mu, features.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(stats.sigma, np.cov(features, rowvar=False), rtol=1e-11)
    assert stats.mu.dtype == stats.sigma.dtype == np.float64
    # the padded last batch changes nothing beyond float32 round-off (XLA sums per batch shape)
    at_once = np.asarray(stand_in.predict_on_batch(fid_input(images))["pool3"], np.float64)
    np.testing.assert_allclose(features, at_once, rtol=FLOAT32_RTOL)


def test_a_set_smaller_than_a_batch_is_not_padded(stand_in):
    """3 images in batches of 50: one pass of 3 (pytorch-fid shrinks its batch the same way);
    later short batches are padded to the longest before them."""
    recorder = Recorder(stand_in)
    stats = feature_statistics(uint8_images(3, 8, seed=7), recorder, batch_size=50)
    assert stats.count == 3 and [shape[0] for shape in recorder.shapes] == [3]
    recorder.shapes.clear()
    images = [uint8_images(1, 8 if i < 5 else 5, seed=i)[0] for i in range(9)]
    fid_statistics.feature_statistics(images, recorder, batch_size=4)
    assert [shape[:2] for shape in recorder.shapes] == [(4, 8), (4, 8), (4, 5)]


def test_images_of_several_sizes_are_batched_by_size(stand_in):
    """8 x 8 and 5 x 5 images interleaved: a batch ends where the size changes; each image's
    features are those it has alone."""
    images = [uint8_images(1, 8 if i % 3 else 5, seed=i)[0] for i in range(9)]
    batches = list(fid_statistics.image_batches(images, batch_size=4))
    assert [b.shape[:2] for b in batches] == [(1, 5), (2, 8), (1, 5), (2, 8), (1, 5), (2, 8)]
    features = fid_statistics.pool3_features(images, stand_in, batch_size=4)
    alone = [stand_in.predict_on_batch(fid_input(image[None]))["pool3"][0] for image in images]
    np.testing.assert_allclose(features, np.asarray(alone, np.float64), rtol=FLOAT32_RTOL)


def test_float_images_in_unit_range_equal_their_uint8(stand_in):
    """Floats in [0, 1] are used as they are: x / 255 given as floats gives the same statistics."""
    images = uint8_images(5, 6, seed=1)
    from_uint8 = feature_statistics(images, stand_in, batch_size=2)
    from_float = feature_statistics(images / 255.0, stand_in, batch_size=2)
    np.testing.assert_allclose(from_float.sigma, from_uint8.sigma, rtol=1e-6)


def test_too_few_images_is_one_sentence(stand_in):
    """No images, or one: a covariance needs two."""
    for images in ([], uint8_images(1, 4, seed=2)):
        with pytest.raises(FIDError) as error:
            feature_statistics(images, stand_in)
        assert_one_sentence(error, "at least 2 images", f"got {len(images)}")


# ------------------------------------------------------------------------------------- files


def random_statistics(dim: int, seed: int) -> FIDStatistics:
    """mu and a covariance of dimension dim."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((dim, dim))
    return FIDStatistics(rng.standard_normal(dim), a @ a.T / dim)


def test_save_and_load_keep_pytorch_fids_layout(tmp_path):
    """mu and sigma only, float64, exact; pytorch-fid's own file (savez_compressed) reads back;
    other keys are ignored."""
    stats = random_statistics(STAND_IN_DIM, seed=3)
    path = save_fid_statistics(tmp_path / "s.npz", stats, dim=STAND_IN_DIM)
    with np.load(path) as archive:
        assert sorted(archive.files) == ["mu", "sigma"]
        assert archive["mu"].dtype == archive["sigma"].dtype == np.float64
    loaded = load_fid_statistics(path, dim=STAND_IN_DIM)
    np.testing.assert_array_equal(loaded.mu, stats.mu)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    np.savez_compressed(tmp_path / "theirs.npz", mu=stats.mu, sigma=stats.sigma, extra=1)
    np.testing.assert_array_equal(
        load_fid_statistics(tmp_path / "theirs.npz", 6).sigma, stats.sigma
    )


def test_saving_refuses_to_replace_or_guess(tmp_path):
    """An existing file, another suffix, a missing folder, NaN: one sentence, nothing written."""
    stats = random_statistics(STAND_IN_DIM, seed=4)
    (tmp_path / "old.npz").write_bytes(b"keep")
    cases = {
        "old.npz": "not replaced",
        "stats.txt": "must end in .npz",
        "missing/stats.npz": "does not exist",
    }
    for name, fragment in cases.items():
        with pytest.raises(FIDError) as error:
            save_fid_statistics(tmp_path / name, stats, dim=STAND_IN_DIM)
        assert_one_sentence(error, fragment)
    nan = FIDStatistics(np.full(STAND_IN_DIM, np.nan), stats.sigma)
    with pytest.raises(FIDError) as error:
        save_fid_statistics(tmp_path / "nan.npz", nan, dim=STAND_IN_DIM)
    assert_one_sentence(error, "non-finite")
    with pytest.raises(FIDError) as error:
        save_fid_statistics(tmp_path / "small.npz", stats)  # 6-d where pool3's 2048 is expected
    assert_one_sentence(error, "(6,)", "(2048,)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.npz"]
    assert (tmp_path / "old.npz").read_bytes() == b"keep"


def test_bad_statistics_files_are_one_sentence(tmp_path):
    """No sigma, another dimension, not an archive, NaN, absent: each names the file."""
    stats = random_statistics(4, seed=5)
    np.savez(tmp_path / "no_sigma.npz", mu=stats.mu)
    np.savez(tmp_path / "dim4.npz", mu=stats.mu, sigma=stats.sigma)
    (tmp_path / "noise.npz").write_bytes(b"not a zip file at all")
    np.savez(tmp_path / "nan.npz", mu=np.full(4, np.nan), sigma=stats.sigma)
    np.savez(tmp_path / "ragged.npz", mu=np.zeros(4), sigma=np.zeros((4, 3)))
    cases = {  # name: (what the sentence says, dimension asked for)
        "no_sigma.npz": ("has no sigma", 2048),
        "dim4.npz": ("mu (4,) and sigma (4, 4), not the (2048,) and (2048, 2048)", 2048),
        "noise.npz": ("could not read", 2048),
        "nan.npz": ("non-finite", 4),
        "ragged.npz": ("sigma (4, 3)", 4),
        "absent.npz": ("does not exist", 2048),
    }
    for name, (fragment, dim) in cases.items():
        with pytest.raises(FIDError) as error:
            load_fid_statistics(tmp_path / name, dim)
        assert_one_sentence(error, name, fragment)


def test_fid_of_statistics_is_pytorch_fids():
    """The fixture's worked example through FIDStatistics: calculate_frechet_distance's value."""
    with np.load(shared_fixture("fid_inception") / "fid_formula_example.npz") as data:
        first = FIDStatistics(data["mu1"], data["sigma1"])
        second = FIDStatistics(data["mu2"], data["sigma2"])
        expected = float(data["fid"])
    assert frechet_inception_distance(first, second) == pytest.approx(expected, rel=1e-10)
    with pytest.raises(FIDError) as error:
        frechet_inception_distance(first, random_statistics(4, seed=6))
    assert_one_sentence(error, "different dimensions (64 and 4)")


@pytest.mark.slow
def test_statistics_of_the_fixture_images(fid_network, fid_fixture):
    """The FID network over the fixture's 4 images in batches of 3: mu and sigma of
    pytorch-fid's pool3, within what the features' 1e-4 tolerance allows.

    With δ = 1e-4 · max |pool3| bounding each feature's error, the mean moves by ≤ δ, a centred
    feature by ≤ 2δ, and sigma by ≤ (2 · 2δ · max |c| + (2δ)²) · n / (n − 1).
    """
    arrays = fid_fixture["arrays"]
    stats = feature_statistics(arrays["images_uint8"], fid_network, batch_size=3)
    pool3 = arrays["pool3"].astype(np.float64)
    delta = 1e-4 * np.max(np.abs(pool3))
    centred = pool3 - pool3.mean(axis=0)
    n = len(pool3)
    sigma_bound = (4 * delta * np.max(np.abs(centred)) + (2 * delta) ** 2) * n / (n - 1)
    assert np.max(np.abs(stats.mu - pool3.mean(axis=0))) <= delta
    assert np.max(np.abs(stats.sigma - np.cov(pool3, rowvar=False))) <= sigma_bound
