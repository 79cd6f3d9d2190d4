"""Data loading: built-in sets, array files, image folders, and the errors for bad input."""

import os
import sys
import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from scoregen_keras import data

EXIF_ORIENTATION = 0x0112  # the EXIF tag
EXIF_TURN_90_CLOCKWISE = 6  # its value for an image to be turned 90 degrees clockwise to view


def test_toy_set_is_seeded_and_two_dimensional():
    a = data.load_dataset("mixture5", n=500, seed=3)
    b = data.load_dataset("mixture5", n=500, seed=3)
    assert a.x.shape == (500, 2) and a.kind == "points" and a.x.dtype == np.float32
    np.testing.assert_array_equal(a.x, b.x)


def test_a_scaler_maps_a_large_image_set_without_a_float64_copy(monkeypatch):
    """Slice by slice: the same float32 values as the float64 formula, at a fraction of its
    memory (the whole-array formula peaks at 3x its output, with a float64 temporary)."""
    monkeypatch.setattr(data.scalers, "SCALER_SLICE_ENTRIES", 2**16)
    pixels = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    scaler = data.pixel_scaler(data.PIXEL_MAX_8BIT, centered=True)
    tracemalloc.start()
    try:
        x = scaler.forward(pixels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = ((pixels.astype(np.float64) - scaler.shift) / scaler.scale).astype(np.float32)
    np.testing.assert_array_equal(x, expected)
    assert peak < 1.5 * x.nbytes
    assert scaler.forward(np.uint8(255)) == 1.0  # a scalar, and no examples at all
    assert scaler.forward(pixels[:0]).shape == (0, 32, 32, 3)


def test_digits_scaled_to_unit_interval_and_back():
    digits = data.load_dataset("digits")
    assert digits.x.shape == (1797, 8, 8, 1) and digits.kind == "images"
    assert digits.x.min() == 0.0 and digits.x.max() == 1.0
    centred = data.load_dataset("digits", centered=True)
    assert centred.x.min() == -1.0 and centred.x.max() == 1.0
    np.testing.assert_allclose(centred.scaler.inverse(centred.x), digits.scaler.inverse(digits.x))
    assert digits.scaler.inverse(digits.x).max() == data.DIGITS_PIXEL_MAX


def test_npz_and_npy_files(tmp_path):
    points = np.random.default_rng(0).standard_normal((20, 3))
    np.savez(tmp_path / "p.npz", x=points)
    np.save(tmp_path / "p.npy", points)
    for spec in (f"npz:{tmp_path / 'p.npz'}", f"npy:{tmp_path / 'p.npy'}", str(tmp_path / "p.npy")):
        loaded = data.load_dataset(spec)
        np.testing.assert_allclose(loaded.x, points.astype(np.float32))
        assert loaded.kind == "points"
    pixels = np.random.default_rng(0).integers(0, 256, (4, 6, 6), dtype=np.uint8)
    np.save(tmp_path / "img.npy", pixels)
    images = data.load_dataset(f"npy:{tmp_path / 'img.npy'}")
    assert images.x.shape == (4, 6, 6, 1) and images.kind == "images"
    np.testing.assert_allclose(images.scaler.inverse(images.x)[..., 0], pixels, atol=1e-4)


@pytest.mark.parametrize("centered", [False, True])
def test_float_images_are_pixels_in_the_unit_range(tmp_path, centered):
    """Float images in [0, 1]: black 0 and white 1 map to the model's black and white."""
    pixels = np.random.default_rng(0).random((4, 6, 6, 3))
    pixels[0, 0, 0] = [0.0, 1.0, 0.5]
    np.save(tmp_path / "img.npy", pixels)
    images = data.load_dataset(f"npy:{tmp_path / 'img.npy'}", centered=centered)
    black, white = (-1.0, 1.0) if centered else (0.0, 1.0)
    assert images.kind == "images" and images.x.dtype == np.float32
    assert images.x.min() == black and images.x.max() == white
    np.testing.assert_allclose(images.scaler.inverse(images.x), pixels, atol=1e-7)


@pytest.mark.parametrize(
    ("low", "high", "dtype", "message"),
    [
        (-1.0, 1.0, np.float64, r"float images with values in \[-1, 1\]"),
        (0, 4095, np.uint16, r"integer images with values in \[0, 4\.1e\+03\]"),
    ],
)
def test_images_without_a_known_black_and_white_are_refused(tmp_path, low, high, dtype, message):
    """Pre-centred floats and 12-bit integers: the pixel scale is not guessed."""
    np.save(tmp_path / "img.npy", np.linspace(low, high, 2 * 6 * 6).reshape(2, 6, 6).astype(dtype))
    with pytest.raises(data.DataError, match=message):
        data.load_dataset(f"npy:{tmp_path / 'img.npy'}")


@pytest.mark.parametrize(("centered", "black_white"), [(False, [0.0, 1.0]), (True, [-1.0, 1.0])])
def test_a_runs_image_range_is_black_to_white_even_when_the_data_lack_them(
    tmp_path, centered, black_white
):
    """PNGs with pixels 10..200 only: config.json's value_range is still the pixel scale's."""
    from scoregen_keras.runs import data_info

    for i in range(2):
        pixels = np.random.default_rng(i).integers(10, 201, (6, 6), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    images = data.load_dataset(str(tmp_path), centered=centered)
    assert data_info(images)["value_range"] == black_white
    points = data.load_dataset("mixture5", n=100)
    assert data_info(points)["value_range"] == [points.x.min(), points.x.max()]


def test_image_folder_resized(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(3):
        pixels = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    images = data.load_dataset(str(tmp_path), image_size=8)
    assert images.x.shape == (3, 8, 8, 3)
    assert 0.0 <= images.x.min() and images.x.max() <= 1.0


def test_wide_and_tall_images_keep_their_centre_square(tmp_path):
    """A 10x20 image whose middle 10 columns are 200 (edges 0) becomes a flat 200 square."""
    wide = np.zeros((10, 20), np.uint8)
    wide[:, 5:15] = 200
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(wide.T.copy()).save(tmp_path / "tall.png")
    images = data.load_dataset(str(tmp_path))  # side: the first image's shorter side
    assert images.x.shape == (2, 10, 10, 1)
    np.testing.assert_allclose(images.scaler.inverse(images.x), 200.0, atol=1e-4)


def test_images_are_turned_upright_by_their_exif_orientation(tmp_path):
    """A photo stored on its side with EXIF orientation 6 (turn 90° clockwise to view) loads
    upright: its bright top row, stored as the left column, is the top row again."""
    upright = np.zeros((6, 6), np.uint8)
    upright[0] = 255
    stored = np.rot90(upright).copy()  # the bright row is now the left column
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = EXIF_TURN_90_CLOCKWISE
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif)
    images = data.load_dataset(str(tmp_path))
    np.testing.assert_allclose(images.scaler.inverse(images.x)[0, ..., 0], upright, atol=1e-3)


def test_image_folder_reads_subfolders_and_skips_hidden_files(tmp_path):
    """Class subfolders are read (sorted paths); .ipynb_checkpoints and ._name.png are not."""
    for part, level in (("b_dogs", 20), ("a_cats", 10), (".ipynb_checkpoints", 99)):
        (tmp_path / part).mkdir()
        Image.fromarray(np.full((4, 4), level, np.uint8)).save(tmp_path / part / "x.png")
    (tmp_path / "a_cats" / "._x.png").write_bytes(b"macOS resource fork, not a PNG")
    images = data.load_dataset(str(tmp_path))
    np.testing.assert_allclose(images.scaler.inverse(images.x)[:, 0, 0, 0], [10, 20], atol=1e-4)


def test_sixteen_bit_grey_images_are_scaled_to_8_bits_not_clipped(tmp_path):
    """16-bit PNG levels 257 k are 8-bit level k (Pillow's own conversion clips them at 255)."""
    levels = np.arange(256, dtype=np.uint16).reshape(16, 16)
    Image.fromarray(levels * 257).save(tmp_path / "deep.png")
    images = data.load_dataset(str(tmp_path))
    np.testing.assert_allclose(images.scaler.inverse(images.x)[0, ..., 0], levels, atol=1e-4)


# Pillow's lossless writers of every IMAGE_EXTENSIONS format: (suffix, save options)
LOSSLESS_FORMATS = [
    (".png", {}),
    (".bmp", {}),
    (".tif", {}),
    (".tiff", {"compression": "tiff_lzw"}),
    (".webp", {"lossless": True}),
]


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize(("suffix", "options"), LOSSLESS_FORMATS)
def test_every_image_format_gives_the_pixels_it_holds(tmp_path, suffix, options, channels):
    """A folder of one lossless image: the pixels come back exactly, grey or colour."""
    levels = np.random.default_rng(3).integers(0, 256, (6, 6, channels), dtype=np.uint8)
    Image.fromarray(levels[..., 0] if channels == 1 else levels).save(
        tmp_path / f"one{suffix}", **options
    )
    if suffix == ".webp" and channels == 1:  # WebP has no grey mode: Pillow stores grey as RGB
        levels = np.repeat(levels, 3, axis=-1)
    images = data.load_dataset(str(tmp_path))
    assert images.x.shape == (1, 6, 6, levels.shape[-1])
    np.testing.assert_allclose(images.scaler.inverse(images.x)[0], levels, atol=1e-4)


def test_a_sixteen_bit_grey_tiff_is_scaled_to_8_bits(tmp_path):
    levels = np.arange(36, dtype=np.uint16).reshape(6, 6) * 7
    Image.fromarray(levels * 257).save(tmp_path / "deep.tif")
    images = data.load_dataset(str(tmp_path))
    np.testing.assert_allclose(images.scaler.inverse(images.x)[0, ..., 0], levels, atol=1e-4)


def test_a_floating_point_tiff_is_refused_by_name(tmp_path):
    """Mode "F" images have no known black and white."""
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tmp_path / "sub" / "float.tif")
    with pytest.raises(data.DataError, match=r"sub/float\.tif .*floating-point image"):
        data.load_dataset(str(tmp_path))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
def test_an_image_folder_larger_than_the_open_file_limit(tmp_path):
    """More images than the process may hold open: each file is closed before the next."""
    resource = pytest.importorskip("resource")
    n_images = 64
    for i in range(n_images):
        Image.fromarray(np.full((4, 4), i, np.uint8)).save(tmp_path / f"{i:03d}.png")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # room for what is open now plus a few, but not for every image at once
    limit = len(os.listdir("/proc/self/fd")) + n_images // 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        images = data.load_dataset(str(tmp_path))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert images.x.shape == (n_images, 4, 4, 1)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: f"npz:{p / 'missing.npz'}", "does not exist"),
        (lambda p: "no-such-set", "unknown data set"),
        (lambda p: _save(p / "nan.npy", np.array([[0.0, np.nan]])), "NaN or infinite"),
        (lambda p: _save(p / "inf.npy", np.array([[0.0, np.inf]])), "NaN or infinite"),
        (lambda p: _save(p / "flat.npy", np.zeros(5)), "expected (n, *dims)"),
        (lambda p: _write(p / "junk.npy", b"not numpy"), "could not read"),
        (lambda p: str(p), "no PNG, JPEG, BMP, TIFF or WebP images"),
        (lambda p: _truncated_png(p), "could not read image sub/cut.png"),
    ],
)
def test_bad_input_is_one_clear_error(tmp_path, make, message):
    with pytest.raises(data.DataError) as info:
        data.load_dataset(make(tmp_path))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"y": np.arange(10) % 3}, "only the array 'y'"),
        ({"y": (np.arange(10) % 3)[:, None]}, "only the array 'y'"),  # (n, 1): would be points
        ({"labels": np.eye(3)[np.arange(10) % 3]}, "only the array 'labels'"),  # one-hot
        ({"Targets": np.zeros((10, 2))}, "only the array 'Targets'"),
        ({"classes": np.arange(10.0)[:, None]}, "only the array 'classes'"),
        ({"digit": np.arange(10)}, "only the array 'digit'"),  # integer 1-d, any name
    ],
)
def test_a_file_of_labels_only_is_refused(tmp_path, arrays, message):
    """A .npz whose only array is labels (named so, or integer 1-d) is not data: one sentence
    saying so, rather than a training run on the labels."""
    path = tmp_path / "labels.npz"
    np.savez(path, **arrays)
    with pytest.raises(data.DataError, match="looks like class labels, not data") as info:
        data.load_dataset(str(path))
    assert message in str(info.value)


def test_an_npy_of_integers_in_one_axis_is_refused_as_labels(tmp_path):
    """A .npy of integers in one axis is labels too (a .npy has no name to go by)."""
    with pytest.raises(data.DataError, match="a 1-d integer array, which looks like class"):
        data.load_dataset(_save(tmp_path / "y.npy", np.arange(10)))


def test_data_with_labels_and_points_named_x_still_load(tmp_path):
    """x beside y (labels) is data with classes; an array named x is data whatever it holds."""
    path = tmp_path / "points.npz"
    np.savez(path, x=np.arange(20.0).reshape(10, 2), y=np.arange(10) % 2)
    loaded = data.load_dataset(str(path))
    assert loaded.x.shape == (10, 2) and loaded.labels is not None


def _save(path, array):
    np.save(path, array)
    return str(path)


def _truncated_png(folder):
    """A folder with a good PNG and, in a subfolder, a PNG cut short after its header."""
    noise = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)  # ~1 kB of PNG
    Image.fromarray(noise).save(folder / "good.png")
    (folder / "sub").mkdir()
    png = (folder / "good.png").read_bytes()
    (folder / "sub" / "cut.png").write_bytes(png[: len(png) // 2])
    return str(folder)


def _write(path, payload):
    path.write_bytes(payload)
    return str(path)


def test_digits_train_and_held_out_split_the_digits_disjointly():
    """digits:train / digits:held-out: the classifier's fixed 1 438 / 359 split, every call."""
    whole = data.load_dataset("digits")
    train, held_out = data.load_dataset("digits:train"), data.load_dataset("digits:held-out")
    train_idx, held_idx = data.digits_split(len(whole.x))
    assert len(train.x) == 1438 and len(held_out.x) == 359
    assert not set(train_idx) & set(held_idx)
    assert sorted({*train_idx, *held_idx}) == list(range(len(whole.x)))
    np.testing.assert_array_equal(train.x, whole.x[train_idx])
    np.testing.assert_array_equal(held_out.x, whole.x[held_idx])
    np.testing.assert_array_equal(data.load_dataset("digits:held-out").x, held_out.x)
    assert train.name == "digits:train" and train.kind == "images" and whole.split is None
    assert train.scaler == whole.scaler


def test_digits_split_record_names_both_index_sets():
    """The record a run keeps: sizes, seed, and digests that change when the split does."""
    record = data.load_dataset("digits:held-out").split
    train_idx, held_idx = data.digits_split(1797)
    assert record["part"] == "held-out" and record["seed"] == data.DIGITS_SPLIT_SEED
    assert (record["n_total"], record["n_train"], record["n_held_out"]) == (1797, 1438, 359)
    assert record["train_sha256"] == data.index_digest(train_idx)
    assert record["held_out_sha256"] == data.index_digest(held_idx)
    assert record["held_out_sha256"] != data.index_digest(held_idx[1:])
    assert data.load_dataset("digits:train").split == {**record, "part": "train"}


def test_unknown_digits_part_is_one_clear_error():
    with pytest.raises(data.DataError, match="choose digits:train or digits:held-out"):
        data.load_dataset("digits:test")


def test_digits_preset_trains_on_the_train_split_and_records_it():
    """`scoregen train --preset digits` loads digits:train; config.json's data names the split."""
    from scoregen_keras.runs import data_info
    from scoregen_keras.training.presets import resolve_config

    config = resolve_config("digits")
    assert config["dataset"] == "digits:train"
    info = data_info(data.load_dataset(config["dataset"]))
    assert info["n"] == 1438 and info["split"]["part"] == "train"
    assert info["split"]["held_out_sha256"] == data.index_digest(data.digits_split(1797)[1])
    assert "split" not in data_info(data.load_dataset("digits"))


def _stand_in_load_data(shape: tuple[int, ...]) -> Callable[[], tuple]:
    """keras.datasets' load_data on local arrays: train pixels 0..99, test pixels 200..255."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 100, size=(6, *shape), dtype=np.uint8)
    test = rng.integers(200, 256, size=(4, *shape), dtype=np.uint8)
    return lambda: ((train, np.zeros(6)), (test, np.zeros(4)))


def test_keras_image_sets_give_the_train_split_and_name_test_the_test_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """cifar10 is the train split, cifar10:test the test split, both as (n, H, W, C) in [0, 1];
    grey sets gain a channel axis."""
    import keras

    monkeypatch.setattr(keras.datasets.cifar10, "load_data", _stand_in_load_data((5, 5, 3)))
    monkeypatch.setattr(keras.datasets.mnist, "load_data", _stand_in_load_data((7, 7)))
    train, test = data.load_dataset("cifar10"), data.load_dataset("cifar10:test")
    assert train.x.shape == (6, 5, 5, 3) and test.x.shape == (4, 5, 5, 3)
    assert train.x.max() < 100 / 255 + 1e-6 and test.x.min() > 199 / 255 - 1e-6
    assert (train.name, test.name, test.kind) == ("cifar10", "cifar10:test", "images")
    np.testing.assert_array_equal(data.load_dataset("cifar10:train").x, train.x)
    assert data.load_dataset("mnist:test", centered=True).x.shape == (4, 7, 7, 1)
    assert data.load_dataset("mnist:test", centered=True).x.min() > 0.5  # (200 - 127.5) / 127.5
    with pytest.raises(data.DataError, match="choose cifar10 or cifar10:test"):
        data.load_dataset("cifar10:valid")


def test_a_failed_download_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """No network: DataError naming the data set, whichever exception keras.datasets raised."""
    import keras

    def offline() -> tuple:
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")

    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(data.DataError, match="could not download or read the fashion_mnist"):
        data.load_dataset("fashion_mnist:test")


# ------------------------------------------------------------------------------------ classes


def test_digits_and_toy_mixtures_carry_their_classes():
    """digits: scikit-learn's targets (also through the split); a mixture: its components, drawn
    with the very points it had before labels; other toy sets have none."""
    from sklearn.datasets import load_digits

    from reference import datasets as reference_datasets

    target = load_digits().target
    digits = data.load_dataset("digits")
    np.testing.assert_array_equal(digits.labels, target)
    assert digits.labels.dtype == np.int32 and digits.class_names == data.DIGIT_NAMES
    train, held_out = data.digits_split(len(target))
    np.testing.assert_array_equal(data.load_dataset("digits:train").labels, target[train])
    np.testing.assert_array_equal(data.load_dataset("digits:held-out").labels, target[held_out])
    mixture = data.load_dataset("separated4", n=300, seed=5)
    points, labels = reference_datasets.separated4().sample_with_labels(
        np.random.default_rng(5), 300
    )
    np.testing.assert_array_equal(mixture.x, points.astype(np.float32))
    np.testing.assert_array_equal(mixture.labels, labels)
    assert mixture.labels.dtype == np.int32
    before = reference_datasets.TOY_SETS["separated4"](np.random.default_rng(5), 300)
    np.testing.assert_array_equal(mixture.x, before.astype(np.float32))
    assert mixture.class_names == ("0", "1", "2", "3")
    moons = data.load_dataset("moons", n=10)
    assert moons.labels is None and moons.class_names == ()


def test_keras_image_sets_carry_their_named_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    """cifar10's (n, 1) labels become (n,); the classes are named as keras.datasets documents."""
    import keras

    images = np.zeros((3, 4, 4, 3), np.uint8)
    labels = np.array([[3], [9], [0]], np.uint8)
    loaded = ((images, labels), (images[:1], labels[:1]))
    monkeypatch.setattr(keras.datasets.cifar10, "load_data", lambda: loaded)
    cifar = data.load_dataset("cifar10")
    np.testing.assert_array_equal(cifar.labels, [3, 9, 0])
    assert cifar.class_names[3] == "cat" and len(cifar.class_names) == 10
    np.testing.assert_array_equal(data.load_dataset("cifar10:test").labels, [3])


def test_npz_labels_y(tmp_path):
    """An .npz file's integer array 'y' gives the classes 0..max; a bad 'y' is one sentence."""
    x = np.arange(12, dtype=np.float64).reshape(6, 2)
    np.savez(tmp_path / "points.npz", x=x, y=np.array([0, 2, 2, 1, 0, 2]))
    points = data.load_dataset(f"npz:{tmp_path / 'points.npz'}")
    np.testing.assert_array_equal(points.labels, [0, 2, 2, 1, 0, 2])
    assert points.class_names == ("0", "1", "2")
    np.savez(tmp_path / "unlabelled.npz", x=x)
    assert data.load_dataset(str(tmp_path / "unlabelled.npz")).labels is None
    for bad in (
        np.zeros(5, int),
        np.zeros(6),
        np.array([0, 1, -1, 0, 0, 0]),
        np.zeros((6, 1), int),
    ):
        np.savez(tmp_path / "bad.npz", x=x, y=bad)
        with pytest.raises(data.DataError, match="expected 6 integer classes"):
            data.load_dataset(str(tmp_path / "bad.npz"))


def test_image_folder_classes_are_its_subfolders(tmp_path):
    """Images in two or more subfolders (none at the top) are classes named after them."""
    for name, level in (("dog", 20), ("cat", 10), ("cat", 11)):
        (tmp_path / name).mkdir(exist_ok=True)
        Image.fromarray(np.full((4, 4), level, np.uint8)).save(tmp_path / name / f"{level}.png")
    images = data.load_dataset(str(tmp_path))
    assert images.class_names == ("cat", "dog")
    np.testing.assert_array_equal(images.labels, [0, 0, 1])
    np.testing.assert_allclose(images.scaler.inverse(images.x)[:, 0, 0, 0], [10, 11, 20], atol=1e-4)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "loose.png")
    assert data.load_dataset(str(tmp_path)).labels is None  # an image outside the classes
    single = tmp_path / "only"
    (single / "one").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(single / "one" / "a.png")
    assert data.load_dataset(str(single)).labels is None  # one subfolder is no choice of class
