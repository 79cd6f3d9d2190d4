"""`scoregen inpaint | colorize | likelihood | interpolate` on image runs.

Input checks come before the checkpoint is loaded, so they are tested on a folder holding only
a config.json. The `slow` tests use real runs trained for 2 steps on sixteen random 8x8 RGB
images: NCSN++ in its smallest configuration on the VE SDE, and, for inpainting and
colorization, the smallest NCSN on three noise levels; their results are not pictures of
anything, but their files, shapes, NFE, kept pixels and kept grey levels are what these tests
check. Building each run (tracing the network) takes minutes on a CPU.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoregen_keras import runs as run_tasks
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import assert_png, invoke, train_tiny

SIZE, CHANNELS, N_IMAGES = 8, 3, 16
PIXEL_MAX = 255
FAST_STEPS = "5"
TINY_IMAGE_RUN = {
    "model": "ncsnpp/tiny",
    "model_config": {
        "channels": CHANNELS,
        "nf": 8,
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "fir": False,
        "progressive_input": "none",
    },
    "sde_config": {"sigma_max": 10.0},
    "steps": 2,
    "batch_size": 8,
    "log_every": 1,
    "checkpoint_every": 2,
    "sample_every": 2,
    "n_sample_preview": 4,
    "sampler_steps": 2,
}
NCSN_LEVELS = 3
TINY_NCSN_RUN = {
    **TINY_IMAGE_RUN,
    "model": "ncsn/tiny",
    "model_config": {"channels": CHANNELS},
    "sde": "ncsn",
    "loss": "ncsn",
    "sde_config": {"sigma_max": 1.0, "sigma_min": 0.01, "num_scales": NCSN_LEVELS},
    "sampler": "ald",
}
DIGITS_CONFIG = {
    "dataset": "digits",
    "model": "ncsnpp/tiny",
    "sde": "ve",
    "data": {
        "name": "digits",
        "kind": "images",
        "shape": [SIZE, SIZE, 1],
        "n": 1797,
        "scaler": {"shift": 0.0, "scale": 16.0},
        "value_range": [0.0, 1.0],
    },
}
"""What the input checks read of a digits run's config.json."""
PIXEL_ATOL = 1e-2
"""Kept pixels / grey levels in 0..255 units: float32 scaling and the colour rotation round."""


def one_json_object(stdout: str) -> dict:
    """The single JSON line a --json command printed."""
    lines = stdout.strip().splitlines()
    assert len(lines) == 1, stdout
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Random 8-bit RGB images spanning the full range 0..255."""
    x = np.random.default_rng(0).integers(0, PIXEL_MAX + 1, (N_IMAGES, SIZE, SIZE, CHANNELS))
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0, PIXEL_MAX
    return x.astype(np.uint8)


@pytest.fixture(scope="module")
def image_run(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray) -> Path:
    """A tiny VE run on the random images (8-bit, so scaled by 1/255 into [0, 1])."""
    folder = tmp_path_factory.mktemp("images")
    np.savez(folder / "images.npz", x=images)
    return train_tiny(folder, "run", dataset=f"npz:{folder / 'images.npz'}", **TINY_IMAGE_RUN)


@pytest.fixture(scope="module")
def ncsn_image_run(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray) -> Path:
    """A tiny run of NCSN noise levels (ncsn/tiny, NCSN_LEVELS levels) on the random images."""
    folder = tmp_path_factory.mktemp("ncsn-images")
    np.savez(folder / "images.npz", x=images)
    return train_tiny(folder, "run", dataset=f"npz:{folder / 'images.npz'}", **TINY_NCSN_RUN)


@pytest.fixture(params=["ve", "ncsn"])
def controllable_run(request: pytest.FixtureRequest) -> tuple[Path, int]:
    """An image run of each kind, with the NFE its sampler with replacement takes in FAST_STEPS
    steps: PC (predictor + corrector a step) or annealed Langevin (a level, + Tweedie)."""
    if request.param == "ve":
        return request.getfixturevalue("image_run"), 2 * int(FAST_STEPS)
    return request.getfixturevalue("ncsn_image_run"), NCSN_LEVELS * int(FAST_STEPS) + 1


@pytest.fixture
def config_only_run(tmp_path: Path) -> Path:
    """A run folder with only config.json: 8x8 grey digits, VE SDE (no checkpoint)."""
    folder = tmp_path / "config-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(DIGITS_CONFIG))
    return folder


def half_mask_png(path: Path, size: int = SIZE) -> np.ndarray:
    """A PNG mask whose left half is white (known); returns the boolean mask (H, W)."""
    known = np.zeros((size, size), dtype=bool)
    known[:, : size // 2] = True
    Image.fromarray((known * PIXEL_MAX).astype(np.uint8)).save(path)
    return known


@pytest.mark.slow
def test_inpaint_keeps_the_known_pixels(
    controllable_run: tuple[Path, int], images: np.ndarray, tmp_path: Path
) -> None:
    """.npy image + PNG mask: n results of the image's shape, equal to it where known."""
    image_run, nfe = controllable_run
    image = images[3].astype(np.float64)
    np.save(tmp_path / "image.npy", image)
    known = half_mask_png(tmp_path / "mask.png")
    out = tmp_path / "inpainted"
    result = invoke(
        "inpaint", image_run, "--image", tmp_path / "image.npy", "--mask", tmp_path / "mask.png",
        "--n", "3", "--steps", FAST_STEPS, "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = one_json_object(result.stdout)
    assert summary["n"] == 3 and summary["known_fraction"] == 0.5 and summary["nfe"] == nfe
    with np.load(out.with_suffix(".npz")) as data:
        x, mask = data["x"], data["mask"]
        np.testing.assert_allclose(data["image"], image, atol=PIXEL_ATOL)
    assert x.shape == (3, SIZE, SIZE, CHANNELS) and np.isfinite(x).all()
    assert mask.shape == (SIZE, SIZE, CHANNELS) and (mask == known[..., None]).all()
    np.testing.assert_allclose(
        x[:, known], np.broadcast_to(image, x.shape)[:, known], atol=PIXEL_ATOL
    )
    assert np.abs(x[:, ~known] - image[~known]).max() > 1.0  # the rest was sampled
    assert_png(out.with_suffix(".png"))


@pytest.mark.slow
def test_colorize_keeps_the_grey_level(controllable_run: tuple[Path, int], tmp_path: Path) -> None:
    """A grey PNG: colour results whose mean over RGB is the grey input."""
    image_run, nfe = controllable_run
    grey = np.random.default_rng(1).integers(0, PIXEL_MAX + 1, (SIZE, SIZE)).astype(np.uint8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    out = tmp_path / "coloured"
    result = invoke(
        "colorize", image_run, "--image", tmp_path / "grey.png", "--n", "2",
        "--steps", FAST_STEPS, "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert one_json_object(result.stdout)["nfe"] == nfe
    with np.load(out.with_suffix(".npz")) as data:
        x = data["x"]
    assert x.shape == (2, SIZE, SIZE, CHANNELS) and np.isfinite(x).all()
    np.testing.assert_allclose(
        x.mean(axis=-1), np.broadcast_to(grey, (2, SIZE, SIZE)), atol=PIXEL_ATOL
    )
    assert np.abs(x - x.mean(axis=-1, keepdims=True)).max() > 1.0  # not grey itself
    assert_png(out.with_suffix(".png"))


@pytest.mark.slow
def test_likelihood_of_8_bit_images(image_run: Path, images: np.ndarray) -> None:
    """Integer pixels are dequantised and reported in pixel units: offset log2(255) bits/dim;
    D = 192 > 16 picks Hutchinson."""
    summary = one_json_object(invoke("likelihood", image_run, "--n", "4", "--json").stdout)
    assert summary["dequantized"] and summary["divergence"] == "hutchinson"
    assert summary["dims"] == SIZE * SIZE * CHANNELS and summary["n"] == 4
    assert summary["offset_bits"] == pytest.approx(math.log2(PIXEL_MAX))
    assert np.isfinite(summary["bits_per_dim"]) and np.isfinite(summary["nll_nats"])


@pytest.mark.slow
def test_sample_image_files(image_run: Path, tmp_path: Path) -> None:
    """`sample --image-files`: one RGB PNG per sample, matching the .npz in 8-bit units."""
    out = tmp_path / "draws"
    args = ("--n", "5", "--batch-size", "3", "--steps", FAST_STEPS, "--out", out)
    result = invoke("sample", image_run, *args, "--image-files", "--json")
    assert result.exit_code == 0, result.output
    assert one_json_object(result.stdout)["image_files"] == str(out)
    x = np.load(out.with_suffix(".npz"))["x"]  # original scale: 0..255
    for k in range(5):
        with Image.open(out / f"{k:06d}.png") as picture:
            assert picture.mode == "RGB"
            pixels = np.asarray(picture).astype(float)
        np.testing.assert_allclose(pixels, np.clip(x[k], 0, PIXEL_MAX), atol=0.5 + PIXEL_ATOL)
    assert sorted(path.name for path in out.iterdir())[-1] == "000004.png"


@pytest.mark.slow
def test_interpolate_images(image_run: Path, tmp_path: Path) -> None:
    """An image strip and the frames (n_frames, H, W, C) in the data's scale."""
    out = tmp_path / "strip"
    result = invoke(
        "interpolate", image_run, "--a", "0", "--b", "1", "--n-frames", "3", "--steps", "2",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with np.load(out.with_suffix(".npz")) as data:
        assert data["x"].shape == (3, SIZE, SIZE, CHANNELS) and np.isfinite(data["x"]).all()
        assert data["ends"].shape == (2, SIZE, SIZE, CHANNELS)
    assert_png(out.with_suffix(".png"))


# --------------------------------------------------------- input checks (no checkpoint needed)


def test_inputs_of_the_wrong_size(config_only_run: Path, tmp_path: Path) -> None:
    """A mask or an image of another size: one sentence naming both sizes, no traceback."""
    np.save(tmp_path / "image.npy", np.zeros((SIZE, SIZE)))
    half_mask_png(tmp_path / "small.png", size=4)
    result = invoke(
        "inpaint", config_only_run, "--image", tmp_path / "image.npy",
        "--mask", tmp_path / "small.png",
    )  # fmt: skip
    assert_one_line_error(result, "mask", "4x4", f"{SIZE}x{SIZE}")
    np.save(tmp_path / "small.npy", np.ones((4, 4), dtype=bool))
    result = invoke(
        "inpaint", config_only_run, "--image", tmp_path / "image.npy",
        "--mask", tmp_path / "small.npy",
    )  # fmt: skip
    assert_one_line_error(result, "mask", "4x4")
    np.save(tmp_path / "big.npy", np.zeros((SIZE + 1, SIZE + 1)))
    half_mask_png(tmp_path / "mask.png")
    result = invoke(
        "inpaint", config_only_run, "--image", tmp_path / "big.npy", "--mask", tmp_path / "mask.png"
    )
    assert_one_line_error(result, "image", f"{SIZE + 1}x{SIZE + 1}")


def test_inputs_that_are_not_images(config_only_run: Path, tmp_path: Path) -> None:
    """A text file, a missing file, colour for a grey model: one sentence each."""
    half_mask_png(tmp_path / "mask.png")
    (tmp_path / "notes.txt").write_text("not an image")
    args = ("--mask", tmp_path / "mask.png")
    result = invoke("inpaint", config_only_run, "--image", tmp_path / "notes.txt", *args)
    assert_one_line_error(result, "not an image file (PNG, JPEG, BMP, TIFF or WebP) or a .npy")
    result = invoke("inpaint", config_only_run, "--image", tmp_path / "none.png", *args)
    assert_one_line_error(result, "does not exist")
    np.save(tmp_path / "rgb.npy", np.zeros((SIZE, SIZE, CHANNELS)))
    result = invoke("inpaint", config_only_run, "--image", tmp_path / "rgb.npy", *args)
    assert_one_line_error(result, "3 channels")


def test_a_16_bit_grey_png_input_is_read_as_its_8_bit_levels(
    config_only_run: Path, tmp_path: Path
) -> None:
    """16-bit PNG level 257 k is 8-bit level k (Pillow's conversion alone clips it at 255)."""
    levels = np.arange(SIZE * SIZE, dtype=np.uint16).reshape(SIZE, SIZE) * 4
    Image.fromarray(levels * 257).save(tmp_path / "deep.png")
    config = json.loads((config_only_run / "config.json").read_text())
    image = run_tasks.read_image(tmp_path / "deep.png", config)  # value_range (0, 1): white 1
    np.testing.assert_allclose(image[..., 0], levels / PIXEL_MAX, atol=1e-6)


def test_colorize_refuses_one_channel_models(config_only_run: Path, tmp_path: Path) -> None:
    """Colorization needs a 3-channel model."""
    np.save(tmp_path / "grey.npy", np.zeros((SIZE, SIZE)))
    result = invoke("colorize", config_only_run, "--image", tmp_path / "grey.npy")
    assert_one_line_error(result, "3-channel", "1 channel")


def test_exact_divergence_refused_for_images(config_only_run: Path) -> None:
    """D = 64 > 16: the exact divergence is refused with the way out."""
    result = invoke("likelihood", config_only_run, "--divergence", "exact", "--n", "8")
    assert_one_line_error(result, "--divergence hutchinson", "16")


@pytest.mark.parametrize("command", ["inpaint", "colorize"])
def test_point_runs_are_refused(command: str, tmp_path: Path) -> None:
    """Inpainting and colorization need an image run."""
    np.save(tmp_path / "image.npy", np.zeros((SIZE, SIZE)))
    half_mask_png(tmp_path / "mask.png")
    args = ["--image", tmp_path / "image.npy"] + (
        ["--mask", tmp_path / "mask.png"] if command == "inpaint" else []
    )
    points = tmp_path / "points"
    points.mkdir()
    config = {**DIGITS_CONFIG, "data": {**DIGITS_CONFIG["data"], "kind": "points", "shape": [2]}}
    (points / "config.json").write_text(json.dumps(config))
    assert_one_line_error(invoke(command, points, *args), "needs a run trained on images")
