"""benchmarks/quality_digits.py: the held-out comparison, run reuse, and (slow) a --quick run."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from scoregen_keras.data import digits_split, index_digest, load_dataset

N = 200  # "samples" per comparison: small, so the test is fast


@pytest.fixture(scope="module")
def quality_digits() -> ModuleType:
    """benchmarks/quality_digits.py as a module (benchmarks/ is a namespace package)."""
    return importlib.import_module("benchmarks.quality_digits")


@pytest.fixture(scope="module")
def split() -> tuple[np.ndarray, np.ndarray]:
    """The train and held-out digits in [0, 1]."""
    return load_dataset("digits:train").x, load_dataset("digits:held-out").x


def test_real_digits_score_at_the_floor_and_noise_far_above(
    quality_digits: ModuleType, split: tuple[np.ndarray, np.ndarray]
) -> None:
    """Train digits as 'samples' score like the train-subset floor; uniform noise does not."""
    train, held_out = split
    real = train[np.random.default_rng(7).choice(len(train), N, replace=False)]
    good = quality_digits.compare_with_held_out(real, train, held_out, n_subsets=5, seed=0)
    fd = good["fd_digits"]
    assert len(fd["floors"]) == 5 and fd["floor_min"] <= fd["floor_mean"] <= fd["floor_max"]
    assert fd["ratio"] == pytest.approx(fd["value"] / fd["floor_mean"])
    assert fd["value"] < fd["floor_mean"] + 5 * fd["floor_std"]
    noise = np.random.default_rng(0).random(real.shape)
    bad = quality_digits.compare_with_held_out(noise, train, held_out, n_subsets=5, seed=0)
    assert bad["fd_digits"]["ratio"] > 5 * max(fd["ratio"], 1.0)
    kid = good["kid_digits"]  # real vs real KID is ~0 (unbiased): compare with its spread
    assert abs(kid["value"] - kid["floor_mean"]) < 5 * kid["floor_std"]
    assert bad["kid_digits"]["value"] > kid["floor_mean"] + 10 * kid["floor_std"]
    conf = good["class_confidence_digits"]
    assert 1.0 <= bad["class_confidence_digits"]["value"] < conf["value"] <= 10.0
    assert 1.0 < conf["held_out"] <= 10.0
    # the floor does not depend on the samples, and the same seed draws the same subsets
    assert bad["fd_digits"]["floors"] == fd["floors"]


def test_more_samples_than_train_digits_is_refused(
    quality_digits: ModuleType, split: tuple[np.ndarray, np.ndarray]
) -> None:
    """The floor needs train subsets as large as the sample set."""
    train, held_out = split
    with pytest.raises(ValueError, match="train digits"):
        quality_digits.compare_with_held_out(
            np.zeros((len(train) + 1, 8, 8, 1)), train, held_out, n_subsets=2, seed=0
        )


def test_a_run_is_reused_only_when_complete_and_configured_as_the_preset(
    quality_digits: ModuleType, tmp_path: Path
) -> None:
    """reusable(): run.json complete and the training values of config.json unchanged."""
    config = quality_digits.training_config(None, 10)
    assert config["dataset"] == "digits:train"
    run = tmp_path / "run"
    run.mkdir()
    assert not quality_digits.reusable(run, config)
    (run / "config.json").write_text(json.dumps(config))
    (run / "run.json").write_text(json.dumps({"status": "running"}))
    assert not quality_digits.reusable(run, config)
    (run / "run.json").write_text(json.dumps({"status": "complete"}))
    assert quality_digits.reusable(run, config)
    (run / "config.json").write_text(json.dumps({**config, "dataset": "digits"}))
    assert not quality_digits.reusable(run, config)
    (run / "config.json").write_text(json.dumps({**config, "lr": config["lr"] / 2}))
    assert not quality_digits.reusable(run, config)


@pytest.mark.slow
def test_quick_run_trains_on_the_train_split_and_writes_its_results(
    quality_digits: ModuleType, tmp_path: Path
) -> None:
    """--quick end to end: the JSON names the split it trained on and the held-out reference."""
    output = tmp_path / "quality_digits.json"
    argv = ["--quick", "--steps", "4", "--samples", "32", "--sampler-steps", "4"]
    argv += ["--subsets", "2", "--pairs", "2", "--runs-dir", str(tmp_path / "runs")]
    quality_digits.main([*argv, "--output", str(output)])  # exit status: the (missed) target
    report = json.loads(output.read_text())
    training = report["training"]
    assert training["dataset"] == "digits:train" and training["n_train"] == 1438
    assert training["split"]["held_out_sha256"] == index_digest(digits_split(1797)[1])
    assert training["step"] == 4 and training["trained_now"]
    assert report["reference"]["n_held_out"] == 359
    assert np.isfinite(report["metrics"]["fd_digits"]["value"])
    for name in ("digits_samples.png", "digits_loss.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
