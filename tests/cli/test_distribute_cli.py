"""`scoregen train --distribute / --devices / --precision`: clear one-line refusals (issue 7).

The data-parallel and mixed-precision runs themselves are tested in tests/keras/test_distribute.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.cli.test_bad_input import assert_not_complete, assert_one_line_error
from tests.cli.test_train_cli import invoke, scoregen_subprocess, tiny_config_file

BACKEND = os.environ.get("KERAS_BACKEND", "tensorflow")
EXIT_USAGE = 2


@pytest.mark.backends("torch")
def test_torch_data_parallel_is_refused_before_training(tmp_path: Path) -> None:
    """PyTorch + data-parallel: says what Keras supports, exits 1, creates no run folder."""
    out = tmp_path / "run"
    result = scoregen_subprocess(
        "train", "--distribute", "data-parallel", "--out", out, backend="torch"
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    for part in ("not available on the torch backend", "Keras 3", "--backend jax"):
        assert part in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value"), [("--precision", "float8"), ("--distribute", "model-parallel")]
)
def test_unknown_scaling_choice_is_a_usage_error(tmp_path: Path, option: str, value: str) -> None:
    """Click lists the choices; nothing is trained."""
    out = tmp_path / "run"
    result = invoke("train", option, value, "--out", out)
    assert_one_line_error(result, f"Invalid value for '{option}'", value)
    assert result.exit_code == EXIT_USAGE
    assert not out.exists()


def test_invalid_precision_in_a_config_file(tmp_path: Path) -> None:
    """A config file's precision is checked like the option's."""
    config = tiny_config_file(tmp_path, precision="half")
    result = invoke("train", "--config", config, "--out", tmp_path / "run")
    assert_one_line_error(result, "unknown precision 'half'", "mixed_bfloat16")


def test_devices_without_data_parallel(tmp_path: Path) -> None:
    """--devices alone would silently train on one device: refused."""
    result = invoke("train", "--devices", "2", "--out", tmp_path / "run")
    assert_one_line_error(result, "--devices needs --distribute data-parallel")
    assert result.exit_code == EXIT_USAGE


@pytest.mark.skipif(BACKEND == "torch", reason="data-parallel is refused earlier on torch")
def test_more_devices_than_available(tmp_path: Path) -> None:
    """Asking for more devices than the process has: the count, and how to get CPU devices."""
    out = tmp_path / "run"
    result = invoke(
        "train",
        "--config",
        tiny_config_file(tmp_path),
        "--distribute",
        "data-parallel",
        "--devices",
        "64",
        "--out",
        out,
    )
    assert_one_line_error(result, "--devices 64", "SCOREGEN_CPU_DEVICES")
    assert_not_complete(out)


def test_precision_is_recorded_in_the_run_config(tmp_path: Path) -> None:
    """A mixed_bfloat16 run completes and config.json records the precision and placement."""
    out = tmp_path / "run"
    result = invoke(
        "train", "--config", tiny_config_file(tmp_path), "--precision", "mixed_bfloat16",
        "--out", out,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["precision"] == "mixed_bfloat16"
    assert config["distribute"] == "none" and config["placement"]["devices"] == 1
