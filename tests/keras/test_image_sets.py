"""data.image_sets: FID image sets read by pytorch-fid's rules (folder) or from an .npz of uint8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoregen_keras.data import (
    PYTORCH_FID_EXTENSIONS,
    DataError,
    open_image_set,
    pytorch_fid_files,
    rgb_uint8,
)

SIZE = 5


def pixels(seed: int, channels: int = 3) -> np.ndarray:
    """A random SIZE x SIZE uint8 image."""
    shape = (SIZE, SIZE, channels) if channels > 1 else (SIZE, SIZE)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_the_files_pytorch_fid_reads(tmp_path: Path) -> None:
    """Every extension in lower case, hidden files too, sorted by name; upper-case extensions,
    other files, subfolders (even one named like an image) and their files are left out."""
    kept = [f"{i}_{ext}.{ext}" for i, ext in enumerate(PYTORCH_FID_EXTENSIONS)] + [".hidden.png"]
    for name in [*kept, "UPPER.PNG", "notes.txt", "image.gif"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "inner.png").write_bytes(b"")
    assert [path.name for path in pytorch_fid_files(tmp_path)] == sorted(kept)


def test_folder_images_are_pillows_rgb(tmp_path: Path) -> None:
    """Grey replicated, alpha dropped (not blended), a palette expanded; sizes kept as they are;
    the files are read in sorted order."""
    grey, rgba = pixels(0, 1), pixels(1, 4)
    palette = Image.fromarray(pixels(2)).quantize(colors=8)
    Image.fromarray(grey, "L").save(tmp_path / "a.png")
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    palette.save(tmp_path / "c.png")
    Image.fromarray(pixels(3)[:4]).save(tmp_path / "d.bmp")
    images = open_image_set(tmp_path)
    assert len(images) == 4
    read = list(images)
    assert all(image.dtype == np.uint8 and image.shape[-1] == 3 for image in read)
    np.testing.assert_array_equal(read[0], np.repeat(grey[..., None], 3, axis=-1))
    np.testing.assert_array_equal(read[1], rgba[..., :3])
    colours = np.asarray(palette.getpalette(), np.uint8).reshape(-1, 3)
    np.testing.assert_array_equal(read[2], colours[np.asarray(palette)])
    np.testing.assert_array_equal(read[3], pixels(3)[:4])


def test_an_npz_of_uint8_images(tmp_path: Path) -> None:
    """The array x (or the only array); grey (n, H, W) and (n, H, W, 1) made RGB."""
    rgb = np.stack([pixels(4), pixels(5)])
    np.savez(tmp_path / "only.npz", images=rgb)
    np.savez(tmp_path / "keyed.npz", x=rgb[..., 0], y=np.arange(2))
    np.testing.assert_array_equal(np.stack(list(open_image_set(tmp_path / "only.npz"))), rgb)
    grey = np.stack(list(open_image_set(tmp_path / "keyed.npz")))
    np.testing.assert_array_equal(grey, np.repeat(rgb[..., :1], 3, axis=-1))
    np.testing.assert_array_equal(rgb_uint8(rgb[..., :1]), grey)


def test_bad_image_sets_are_one_sentence(tmp_path: Path) -> None:
    """An empty folder, floats, another channel count, several arrays without x, a pickle, a
    foreign file, a missing path: a DataError naming the path."""
    (tmp_path / "empty").mkdir()
    np.savez(tmp_path / "floats.npz", x=np.zeros((2, 4, 4, 3)))
    np.savez(tmp_path / "rgba.npz", x=np.zeros((2, 4, 4, 4), np.uint8))
    np.savez(tmp_path / "two.npz", a=np.zeros(2), b=np.zeros(2))
    np.savez(tmp_path / "pickle.npz", x=np.array([{"a": 1}], dtype=object))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 not a zip")
    (tmp_path / "notes.txt").write_text("hello")
    cases = {
        "empty": "holds no image files",
        "floats.npz": "float64, not uint8",
        "rgba.npz": "(2, 4, 4, 4)",
        "two.npz": "name the data array 'x'",
        "pickle.npz": "could not read",
        "corrupt.npz": "could not read",
        "notes.txt": "neither a folder of images nor an .npz",
        "missing": "does not exist",
    }
    for name, fragment in cases.items():
        with pytest.raises(DataError) as error:
            open_image_set(tmp_path / name)
        message = str(error.value)
        assert "\n" not in message and message.endswith("."), message
        assert name in message and fragment in message, message


def test_an_unreadable_image_is_named_when_it_is_read(tmp_path: Path) -> None:
    """A file that is no image: the DataError names it (the set opens; reading it fails)."""
    Image.fromarray(pixels(6)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"not a png")
    images = open_image_set(tmp_path)
    with pytest.raises(DataError, match=r"could not read image b\.png in "):
        list(images)
