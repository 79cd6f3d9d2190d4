"""Bad input: one sentence on stderr, a non-zero exit, no traceback, no run that looks complete."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result

from tests.cli.test_train_cli import invoke, tiny_config_file, train_tiny


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Non-zero exit, no traceback, one 'Error: ...' line on stderr containing the fragments."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_not_complete(run: Path) -> None:
    """The folder does not exist, or its run.json does not say complete."""
    status = run / "run.json"
    if status.exists():
        assert json.loads(status.read_text())["status"] != "complete"


def train_args(tmp_path: Path) -> list[str]:
    """`train` with the tiny config into tmp_path/run, plus extra options."""
    return ["train", "--config", str(tiny_config_file(tmp_path)), "--out", str(tmp_path / "run")]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny complete run; tests copy it before damaging anything."""
    return train_tiny(tmp_path_factory.mktemp("good"))


def copy_run(run: Path, target: Path) -> Path:
    """A copy of a run folder that a test may damage."""
    return Path(shutil.copytree(run, target))


# ------------------------------------------------------------------------------------ data


def test_missing_data_path(tmp_path: Path) -> None:
    """A data file that does not exist."""
    missing = tmp_path / "nowhere.npz"
    result = invoke(*train_args(tmp_path), "--dataset", f"npz:{missing}")
    assert_one_line_error(result, "does not exist")
    assert_not_complete(tmp_path / "run")


def test_data_of_the_wrong_shape_for_the_model(tmp_path: Path) -> None:
    """3-D points for a 2-D MLP."""
    path = tmp_path / "points3.npy"
    np.save(path, np.random.default_rng(0).standard_normal((100, 3)))
    result = invoke(*train_args(tmp_path), "--dataset", f"npy:{path}")
    assert_one_line_error(result, "shape (3,)", "(2,)")
    assert_not_complete(tmp_path / "run")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_the_data(tmp_path: Path, bad: float) -> None:
    """Non-finite values in a data file."""
    x = np.random.default_rng(0).standard_normal((100, 2))
    x[5, 1] = bad
    path = tmp_path / "bad.npz"
    np.savez(path, x=x)
    result = invoke(*train_args(tmp_path), "--dataset", f"npz:{path}")
    assert_one_line_error(result, "NaN or infinite")
    assert_not_complete(tmp_path / "run")


def test_float_images_outside_the_unit_range(tmp_path: Path) -> None:
    """Float images in 0..255: black and white unknown, refused before a run folder is made."""
    path = tmp_path / "images.npy"
    np.save(path, np.random.default_rng(0).uniform(0.0, 255.0, (10, 8, 8)))
    result = invoke(*train_args(tmp_path), "--dataset", f"npy:{path}")
    assert_one_line_error(result, "float images", "float pixels in [0, 1]")
    assert_not_complete(tmp_path / "run")


def test_pickled_data_is_refused(tmp_path: Path) -> None:
    """An object array (needs pickle to load) is not executed, just refused."""
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}, {"b": 2}], dtype=object), allow_pickle=True)
    result = invoke(*train_args(tmp_path), "--dataset", f"npy:{path}")
    assert_one_line_error(result)
    assert_not_complete(tmp_path / "run")


# -------------------------------------------------------------------------- unknown names


@pytest.mark.parametrize(
    ("option", "value", "fragment"),
    [
        ("--backend", "numpy", "backend"),
        ("--preset", "cifar100", "Invalid value for '--preset'"),
        ("--dataset", "imagenet", "unknown data set"),
        ("--model", "resnet/huge", "Invalid value for '--model'"),
        ("--sde", "cld", "--sde"),
    ],
)
def test_unknown_names_for_train(tmp_path: Path, option: str, value: str, fragment: str) -> None:
    """Unknown backend, preset, data set, model or SDE."""
    result = invoke(*train_args(tmp_path), option, value)
    assert_one_line_error(result, fragment)
    assert_not_complete(tmp_path / "run")


def test_unknown_sampler(good_run: Path) -> None:
    """--sampler must be one of the listed names."""
    result = invoke("sample", good_run, "--sampler", "ddim")
    assert_one_line_error(result, "--sampler")


def test_unknown_backend_for_sample(good_run: Path) -> None:
    """--backend must be tensorflow, jax or torch."""
    assert_one_line_error(invoke("sample", good_run, "--backend", "mxnet"), "backend")


# ----------------------------------------------------------------------- numbers and files


@pytest.mark.parametrize(
    ("option", "value"), [("--steps", "0"), ("--steps", "-5"), ("--batch-size", "0")]
)
def test_non_positive_steps_or_batch_size(tmp_path: Path, option: str, value: str) -> None:
    """Steps and batch size must be positive integers."""
    result = invoke(*train_args(tmp_path), option, value)
    assert_one_line_error(result, "positive")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "value"), [("--n", "0"), ("--steps", "-1"), ("--batch-size", "0")]
)
def test_non_positive_sample_counts(good_run: Path, option: str, value: str) -> None:
    """--n, --steps and --batch-size of `sample` must be positive."""
    assert_one_line_error(invoke("sample", good_run, option, value), "positive")


def test_output_folder_that_cannot_be_written(tmp_path: Path) -> None:
    """--out below a regular file (a folder nobody can create, even as root)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke(*train_args(tmp_path)[:-1], str(blocker / "run"))
    assert_one_line_error(result, "cannot write to the output folder")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_read_only_output_folder(tmp_path: Path) -> None:
    """--out inside a folder without write permission."""
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    result = invoke(*train_args(tmp_path)[:-1], str(locked / "run"))
    assert_one_line_error(result, "cannot write")


def test_sample_output_that_cannot_be_written(good_run: Path, tmp_path: Path) -> None:
    """`sample --out` below a regular file."""
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = invoke("sample", good_run, "--n", "8", "--out", str(blocker / "x"))
    assert_one_line_error(result, "cannot write samples")


def test_invalid_config_file(tmp_path: Path) -> None:
    """A --config file that is not valid JSON / TOML."""
    broken = tmp_path / "broken.toml"
    broken.write_text("steps = = 3")
    result = invoke("train", "--config", str(broken), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "not valid TOML")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("setting", "value", "fragment"),
    [("preset", "cifar100", "unknown preset"), ("model", "resnet/huge", "unknown model")],
)
def test_unknown_names_in_a_config_file(
    tmp_path: Path, setting: str, value: str, fragment: str
) -> None:
    """Names the options' choices refuse are refused by the library when a file gives them."""
    config = tiny_config_file(tmp_path, **{setting: value})
    result = invoke("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, fragment, value)
    assert_not_complete(tmp_path / "run")


def test_unknown_config_key(tmp_path: Path) -> None:
    """A --config key that no run has."""
    config = tmp_path / "typo.json"
    config.write_text(json.dumps({"stepz": 10}))
    result = invoke("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "stepz")


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"lr_decay": "linear"}, "unknown lr_decay"),
        ({"sampler_sigma_max": 0}, "sampler_sigma_max must be a positive number"),
        ({"sampler_sigma_max": "big"}, "sampler_sigma_max must be a positive number"),
        ({"ald_step_lr": -1e-5}, "ald_step_lr must be a positive number"),
        ({"ald_steps_each": 2.5}, "ald_steps_each must be a positive integer"),
        ({"ald_steps_each": True}, "ald_steps_each must be a positive integer"),
    ],
)
def test_invalid_schedule_values_in_a_config_file(
    tmp_path: Path, changes: dict, words: str
) -> None:
    """lr_decay and the sampler settings are checked before a run folder is made."""
    config = tmp_path / "bad.json"
    config.write_text(json.dumps(changes))
    result = invoke("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, words)
    assert not (tmp_path / "run").exists()


# -------------------------------------------------------------------------- run folders


def test_not_a_run_folder(tmp_path: Path) -> None:
    """`sample` on a folder without config.json, and on a path that does not exist."""
    assert_one_line_error(invoke("sample", tmp_path), "not a run folder")
    assert_one_line_error(invoke("sample", tmp_path / "missing"), "does not exist")


def test_resume_without_a_run(tmp_path: Path) -> None:
    """--resume on an empty folder."""
    result = invoke("train", "--resume", "--out", str(tmp_path))
    assert_one_line_error(result, "no run to resume")


def test_corrupt_checkpoint(good_run: Path, tmp_path: Path) -> None:
    """latest.keras overwritten with garbage: sampling and resuming both refuse it."""
    run = copy_run(good_run, tmp_path / "run")
    (run / "checkpoints" / "latest.keras").write_bytes(b"this is not a keras archive")
    assert_one_line_error(invoke("sample", run), "corrupt or truncated")
    result = invoke("train", "--resume", "--out", str(run), "--steps", "40")
    assert_one_line_error(result, "corrupt or truncated")
    assert json.loads((run / "run.json").read_text())["step"] == 20  # untouched


def test_truncated_checkpoint(good_run: Path, tmp_path: Path) -> None:
    """latest.keras cut to half its size."""
    run = copy_run(good_run, tmp_path / "run")
    latest = run / "checkpoints" / "latest.keras"
    data = latest.read_bytes()
    latest.write_bytes(data[: len(data) // 2])
    assert_one_line_error(invoke("sample", run), "corrupt or truncated")


def test_run_folder_with_a_checkpoint_of_another_model(good_run: Path, tmp_path: Path) -> None:
    """A checkpoint of a differently shaped model copied into the run: refused, not misused."""
    other = train_tiny(tmp_path, "other", model="mlp/toy")
    run = copy_run(good_run, tmp_path / "run")
    shutil.copyfile(other / "checkpoints" / "latest.keras", run / "checkpoints" / "latest.keras")
    assert_one_line_error(invoke("sample", run), "does not match")


def test_checkpoint_that_is_not_a_score_model(good_run: Path, tmp_path: Path) -> None:
    """A valid .keras archive of some other Keras model."""
    import keras

    run = copy_run(good_run, tmp_path / "run")
    plain = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    plain.save(run / "checkpoints" / "latest.keras")
    assert_one_line_error(invoke("sample", run), "not a ScoreModel")


def test_too_few_pc_steps_for_a_vp_run(tmp_path: Path) -> None:
    """A VP run whose PC previews would have betas >= 1 is refused before its folder is made."""
    config = tiny_config_file(tmp_path, sde="vp", sampler_steps=10)
    result = invoke("train", "--config", str(config), "--out", str(tmp_path / "run"))
    assert_one_line_error(result, "sampler_steps = 10", "use more than 20 steps")
    assert not (tmp_path / "run").exists()


def test_ald_on_an_sde_run(good_run: Path) -> None:
    """Annealed Langevin is for discrete NCSN runs."""
    assert_one_line_error(invoke("sample", good_run, "--sampler", "ald"), "--sde ncsn")
