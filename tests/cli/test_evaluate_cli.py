"""`scoregen evaluate RUN_DIR`: metrics.json, the table, --json, images, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scoregen_keras import runs
from scoregen_keras.data import load_dataset
from scoregen_keras.networks import features
from scoregen_keras.runs import evaluate as evaluation
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import invoke, train_tiny

FAST = ("--n", "64", "--steps", "10", "--pairs", "2", "--n-nll", "8", "--no-progress")
POINT_METRICS = {"sliced_wasserstein", "mmd_rbf", "energy", "logp_gap", "occupancy_tv", "nll_gap"}


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained VE run on the toy mixture (mixture5: exact density known)."""
    return train_tiny(tmp_path_factory.mktemp("evaluate"))


def test_evaluate_writes_metrics_json_and_prints_a_table(toy_run: Path) -> None:
    """metrics.json holds every point metric with its floor; the table names each of them."""
    result = invoke("evaluate", toy_run, *FAST)
    assert result.exit_code == 0, result.output
    payload = json.loads((toy_run / "metrics.json").read_text())
    assert payload["n"] == 64 and payload["dataset"] == "mixture5" and payload["nfe"] > 0
    assert set(payload["metrics"]) == POINT_METRICS
    for name, entry in payload["metrics"].items():
        assert np.isfinite(entry["value"]), name
        if name != "nll_gap":
            assert entry["floor_std"] >= 0 and np.isfinite(entry["floor_mean"]), name
    assert payload["metrics"]["nll_gap"]["n"] == 8
    lines = result.output.splitlines()
    for name in POINT_METRICS:
        assert any(line.startswith(name) for line in lines), name
    assert str(toy_run / "metrics.json") in result.output


def test_json_output_matches_the_file(toy_run: Path) -> None:
    """--json prints one object: the file's content plus its path; the seed changes the draws."""
    result = invoke("evaluate", toy_run, *FAST, "--n-nll", "0", "--seed", "3", "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    stored = json.loads((toy_run / "metrics.json").read_text())
    assert printed.pop("metrics_file") == str(toy_run / "metrics.json")
    assert printed == stored
    assert printed["seed"] == 3 and "nll_gap" not in printed["metrics"]
    other = json.loads(invoke("evaluate", toy_run, *FAST, "--n-nll", "0", "--json").stdout)
    assert other["metrics"]["energy"]["value"] != printed["metrics"]["energy"]["value"]


def test_missing_run_and_bad_options_fail_in_one_line(tmp_path: Path) -> None:
    """A folder that is not a run, or --n below 2, exits non-zero with one 'Error:' line."""
    missing = invoke("evaluate", tmp_path / "nothing", "--no-progress")
    assert missing.exit_code != 0
    assert missing.stderr.startswith("Error:") and len(missing.stderr.strip().splitlines()) == 1
    bad_n = invoke("evaluate", tmp_path, "--n", "1")
    assert bad_n.exit_code != 0 and "--n" in bad_n.stderr


def test_data_of_another_shape_fails_in_one_line(toy_run: Path) -> None:
    """--data digits for a 2-D point run: one 'Error:' line naming both shapes."""
    result = invoke("evaluate", toy_run, *FAST, "--data", "digits")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert "(8, 8, 1)" in lines[0] and "(2,)" in lines[0]


# ---------------------------------------------------------------- image runs (stand-in model)


def _fake_image_run(
    monkeypatch: pytest.MonkeyPatch, folder: Path, dataset: str, shape: tuple[int, ...], samples
) -> None:
    """Make load_run return a run on `dataset` whose sampler hands back `samples` (model space)."""
    folder.mkdir(exist_ok=True)
    scaler = load_dataset(dataset).scaler
    config: dict[str, Any] = {
        "dataset": dataset,
        "seed": 0,
        "centered": False,
        "data": {"kind": "images", "shape": list(shape), "scaler": scaler.to_config()},
    }
    paths = runs.RunPaths(folder)
    run = runs.Run(paths, config, model=None, step=7, status="complete", checkpoint=paths.latest)

    def draw(model: Any, config: dict[str, Any], n: int, **options: Any) -> runs.Samples:
        """The first n stand-in samples."""
        x = np.asarray(samples[:n], dtype=np.float32)
        return runs.Samples(x, scaler.inverse(x), nfe=1, seconds=0.0, sampler="pc")

    monkeypatch.setattr(runs, "load_run", lambda run_dir: run)
    monkeypatch.setattr(evaluation, "draw_samples", draw)


def test_digits_images_use_the_digits_classifier(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """8×8×1 images: Fréchet distance, KID and class confidence in digits-classifier features;
    real digits as 'samples' sit near the floor, where noise does not."""
    digits = load_dataset("digits").x
    _fake_image_run(monkeypatch, tmp_path / "run", "digits", digits.shape[1:], digits[::-1])
    result = invoke("evaluate", tmp_path / "run", "--n", "200", "--pairs", "2", "--json")
    assert result.exit_code == 0, result.output
    good = json.loads(result.stdout)["metrics"]
    assert set(good) == {"fd_digits", "kid_digits", "class_confidence_digits"}
    noise = np.random.default_rng(0).random(digits.shape)
    _fake_image_run(monkeypatch, tmp_path / "run", "digits", digits.shape[1:], noise)
    bad = json.loads(invoke("evaluate", tmp_path / "run", "--n", "200", "--json").stdout)
    for name in ("fd_digits", "kid_digits"):
        entry = good[name]
        limit = entry["floor_mean"] + 5 * (entry["floor_std"] + entry["value_std"])
        assert entry["value"] < limit < bad["metrics"][name]["value"], (name, entry)


def test_evaluate_samples_in_the_batches_it_is_given(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--batch-size reaches draw_samples (by default 1 000 at once); 0 is one clear error."""
    digits = load_dataset("digits").x
    _fake_image_run(monkeypatch, tmp_path / "run", "digits", digits.shape[1:], digits[::-1])
    fake_draw, batch_sizes = evaluation.draw_samples, []

    def recording(model: Any, config: dict[str, Any], n: int, **options: Any) -> runs.Samples:
        batch_sizes.append(options["batch_size"])
        return fake_draw(model, config, n, **options)

    monkeypatch.setattr(evaluation, "draw_samples", recording)
    for extra in (("--batch-size", "16"), ()):
        result = invoke("evaluate", tmp_path / "run", "--n", "50", "--pairs", "1", *extra)
        assert result.exit_code == 0, result.output
    assert batch_sizes == [16, 1000]
    assert_one_line_error(invoke("evaluate", tmp_path / "run", "--batch-size", "0"), "positive")


def test_evaluate_on_the_held_out_digits(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A digits:train run evaluated on --data digits:held-out: the floor is that of the held-out
    digits, and training digits as 'samples' sit near it (same distribution, unseen images)."""
    train, held_out = load_dataset("digits:train"), load_dataset("digits:held-out")
    _fake_image_run(monkeypatch, tmp_path / "run", "digits:train", train.shape, train.x[::-1])
    options = ("--n", "150", "--pairs", "3", "--json")
    result = invoke("evaluate", tmp_path / "run", *options, "--data", "digits:held-out")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["dataset"] == "digits:train" and payload["against"] == "digits:held-out"
    pixels = held_out.scaler.inverse(held_out.x)
    direct = evaluation.evaluate_samples(
        train.scaler.inverse(train.x[::-1][:150]), pixels, "images", n_pairs=3, pixel_range=(0, 16)
    )
    fd = payload["metrics"]["fd_digits"]
    assert fd["floor_mean"] == pytest.approx(direct["fd_digits"]["floor_mean"], rel=1e-6)
    assert fd["value"] < fd["floor_mean"] + 5 * (fd["floor_std"] + fd["value_std"])
    own = json.loads(invoke("evaluate", tmp_path / "run", *options).stdout)
    assert own["against"] == "digits:train"
    assert own["metrics"]["fd_digits"]["floor_mean"] != fd["floor_mean"]


def test_other_images_without_inception_weights_fail_in_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """16×16 images need InceptionV3; offline, the error names the file and the variable."""
    images = np.random.default_rng(1).random((20, 16, 16, 1)).astype(np.float32)
    data_file = tmp_path / "images.npz"
    np.savez(data_file, x=images)

    def offline(weights: str) -> Any:
        """What keras.utils.get_file raises without a network."""
        raise Exception("URL fetch failure on https://storage.googleapis.com/...")

    features._cached_imagenet_inception.cache_clear()
    monkeypatch.delenv(features.IMAGENET_INCEPTION_WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(features, "_build_imagenet_inception", offline)
    _fake_image_run(monkeypatch, tmp_path / "run", f"npz:{data_file}", (16, 16, 1), images)
    result = invoke("evaluate", tmp_path / "run", "--n", "8", "--no-progress")
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:")
    assert (
        features.IMAGENET_INCEPTION_WEIGHTS_ENV in lines[0]
        and features.IMAGENET_INCEPTION_WEIGHTS_FILE in lines[0]
    )
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.slow
def test_tiny_digits_run_end_to_end(tmp_path: Path) -> None:
    """A 2-step NCSNv2 run on the digits: evaluate writes the digits-feature metrics."""
    run = train_tiny(
        tmp_path, "digits", dataset="digits", model="ncsnv2/tiny", sde="ve",
        sde_config={"sigma_max": 10.0}, steps=2, batch_size=16, log_every=1,
        checkpoint_every=2, sample_every=2, n_sample_preview=4, sampler_steps=2,
    )  # fmt: skip
    result = invoke("evaluate", run, "--n", "32", "--steps", "2", "--pairs", "2", "--json")
    assert result.exit_code == 0, result.output
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"fd_digits", "kid_digits", "class_confidence_digits"}
    assert all(np.isfinite(entry["value"]) for entry in metrics.values())
