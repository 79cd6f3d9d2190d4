"""run_tasks.inpaint_image / colorize_image pick the sampler with replacement of the run's kind:
predictor-corrector for an SDE run, annealed Langevin (``steps`` per level) for a run of NCSN noise
levels. The runs here hold exact Gaussian scores, so no checkpoint is trained."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from keras import ops
from PIL import Image

from scoregen_keras import controllable
from scoregen_keras import runs as run_tasks
from scoregen_keras.sde import VESDE
from tests.keras.gaussian_model import gaussian_model, sigma_score

SHAPE = (2, 2, 3)  # a 2x2 RGB image
SIGMAS = np.array([1.0, 0.3, 0.1])
STEPS = 4
N_RESULTS = 3
SAME_CHAIN = {"rtol": 1e-6, "atol": 1e-6}
"""The task's chain against the sampler called directly: float32, the same draws (a compiled
step may fuse its operations differently)."""
CONFIG = {
    "data": {
        "kind": "images",
        "shape": list(SHAPE),
        "scaler": {"shift": 0.0, "scale": 1.0},
        "value_range": [0.0, 1.0],
    }
}


def _run(sde: VESDE | None, config: dict[str, Any] = CONFIG) -> SimpleNamespace:
    """What the tasks read of a loaded Run: an SDE run (score of t) or one of NCSN levels."""
    model = gaussian_model(sde, SIGMAS)
    return SimpleNamespace(config=config, model=model, scaler=run_tasks.config_scaler(config))


def _image_and_mask() -> tuple[np.ndarray, np.ndarray]:
    """An image in model space and a mask keeping its left column."""
    image = np.random.default_rng(0).uniform(size=SHAPE).astype(np.float32)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[:, 0] = True
    return image, mask


def _batch(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[None], N_RESULTS, axis=0)


def test_inpainting_a_run_of_ncsn_levels_is_annealed_langevin_with_replacement() -> None:
    """STEPS Langevin steps at each of the run's levels (+ the Tweedie step), known pixels kept."""
    run = _run(None)
    image, mask = _image_and_mask()
    result = run_tasks.inpaint_image(run, image, mask, n=N_RESULTS, seed=5, steps=STEPS)
    expected, nfe = controllable.annealed_langevin_with_replacement(
        sigma_score, run.model.sigmas, _batch(image), mask[None], 5, n_steps_each=STEPS
    )
    assert result.nfe == nfe == len(SIGMAS) * STEPS + 1
    np.testing.assert_allclose(result.x, ops.convert_to_numpy(expected), **SAME_CHAIN)
    np.testing.assert_array_equal(result.x[:, mask], _batch(image)[:, mask])
    assert np.abs(result.x[:, ~mask] - _batch(image)[:, ~mask]).max() > 0.1  # the rest sampled


def test_inpainting_takes_the_runs_annealed_langevin_settings() -> None:
    """Without steps or a step size, the run's ald_steps_each and ald_step_lr."""
    run = _run(None, {**CONFIG, "ald_steps_each": 2, "ald_step_lr": 1e-3})
    image, mask = _image_and_mask()
    result = run_tasks.inpaint_image(run, image, mask, n=N_RESULTS, seed=5)
    expected, nfe = controllable.annealed_langevin_with_replacement(
        sigma_score,
        run.model.sigmas,
        _batch(image),
        mask[None],
        5,
        n_steps_each=2,
        step_lr=1e-3,
    )
    assert result.nfe == nfe == len(SIGMAS) * 2 + 1
    np.testing.assert_allclose(result.x, ops.convert_to_numpy(expected), **SAME_CHAIN)


def test_colorizing_a_run_of_ncsn_levels_keeps_the_grey_level() -> None:
    """Annealed Langevin with replacement of the grey channel: the mean over RGB is kept."""
    run = _run(None)
    image, _ = _image_and_mask()
    result = run_tasks.colorize_image(run, image, n=N_RESULTS, seed=2, steps=STEPS)
    y_obs, observed = controllable.grey_observation(_batch(image))
    expected, nfe = controllable.annealed_langevin_with_replacement(
        sigma_score,
        run.model.sigmas,
        y_obs,
        observed,
        2,
        controllable.decouple_colors,
        controllable.couple_colors,
        n_steps_each=STEPS,
    )
    assert result.nfe == nfe == len(SIGMAS) * STEPS + 1
    np.testing.assert_allclose(result.x, ops.convert_to_numpy(expected), **SAME_CHAIN)
    grey = np.broadcast_to(image.mean(axis=-1), (N_RESULTS, *SHAPE[:-1]))
    np.testing.assert_allclose(result.x.mean(axis=-1), grey, atol=1e-5)
    assert np.abs(result.x - result.x.mean(axis=-1, keepdims=True)).max() > 0.1  # not grey


def test_inpainting_an_sde_run_is_predictor_corrector_with_replacement() -> None:
    """`steps` PC steps with the given snr, the Langevin corrector's norms per example (an
    image run), the results' seeds 1 .. N_RESULTS."""
    sde = VESDE(sigma_max=1.0)
    run = _run(sde)
    image, mask = _image_and_mask()
    result = run_tasks.inpaint_image(run, image, mask, n=N_RESULTS, seed=1, steps=STEPS, snr=0.2)
    expected, nfe = controllable.pc_sample_with_replacement(
        run.model.score_fn(),
        sde,
        _batch(image),
        mask[None],
        1,
        snr=0.2,
        n_steps=STEPS,
        norm_rule="per_example",
    )
    np.testing.assert_array_equal(result.seeds, np.arange(1, 1 + N_RESULTS))
    assert result.nfe == nfe == 2 * STEPS
    np.testing.assert_allclose(result.x, ops.convert_to_numpy(expected), **SAME_CHAIN)


@pytest.mark.parametrize("steps, snr, step_lr", [(0, 0.16, None), (4, -1.0, None), (4, 0.16, 0.0)])
def test_bad_settings_are_one_sentence(steps: int, snr: float, step_lr: float | None) -> None:
    image, mask = _image_and_mask()
    with pytest.raises(run_tasks.RunError, match="must be positive and the snr not negative"):
        run_tasks.inpaint_image(_run(None), image, mask, steps=steps, snr=snr, step_lr=step_lr)


@pytest.mark.parametrize("suffix", [".bmp", ".tif", ".webp"])
def test_an_input_image_in_any_format_reads_as_its_png(tmp_path: Path, suffix: str) -> None:
    """`--image` files: the same pixels from a BMP, TIFF or lossless WebP as from a PNG."""
    pixels = np.random.default_rng(4).integers(0, 256, SHAPE, dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "image.png")
    Image.fromarray(pixels).save(tmp_path / f"image{suffix}", lossless=True)
    png = run_tasks.read_image(tmp_path / "image.png", CONFIG)
    np.testing.assert_array_equal(run_tasks.read_image(tmp_path / f"image{suffix}", CONFIG), png)
    np.testing.assert_allclose(png, pixels / 255.0, atol=1e-6)


def test_a_floating_point_input_image_is_one_sentence(tmp_path: Path) -> None:
    Image.fromarray(np.zeros(SHAPE[:2], np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(run_tasks.RunError, match="floating-point image"):
        run_tasks.read_image(tmp_path / "float.tif", CONFIG)
