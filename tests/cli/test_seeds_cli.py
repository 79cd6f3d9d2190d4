"""`--seeds`, `--shard` and `--noise`: one sample per seed, whatever the batch or the process.

The runs here are built untrained (tests/keras/untrained_run.py) or stood in for by the exact
Gaussian score (tests/keras/gaussian_model.py); nothing is trained.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scoregen_keras import runs
from scoregen_keras.sde import VESDE
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import REPO_ROOT, SUBPROCESS_TIMEOUT_S, invoke
from tests.keras.gaussian_model import gaussian_model
from tests.keras.untrained_run import IMAGES, POINTS, untrained_run

STEPS = "10"
SAME = {"rtol": 0, "atol": 1e-5}  # one backend, other batch sizes (float32)
IMAGE_CONFIG = {
    "dataset": "stand-in",
    "seed": 0,
    "data": {
        "kind": "images",
        "shape": [4, 4, 1],
        "scaler": {"shift": 0.0, "scale": 1.0},
        "value_range": [-1.0, 1.0],
    },
}


@pytest.fixture(scope="module")
def point_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained 2-D point run (tiny MLP)."""
    return untrained_run(tmp_path_factory.mktemp("seeds") / "points", POINTS)


def _samples(out: Path) -> dict[str, np.ndarray]:
    """The arrays of OUT.npz."""
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def test_a_seed_list_gives_the_samples_of_those_seeds(point_run: Path, tmp_path: Path) -> None:
    """--seeds 3,7-9 draws the rows 3, 7, 8, 9 of --seeds 0-9 (in batches of 4), and seed 7's
    sample is --seed 7 --n 1's; the .npz carries the seeds."""
    drawn = {}
    for name, args in {
        "list": ("--seeds", "3,7-9"),
        "range": ("--seeds", "0-9", "--batch-size", "4"),
        "one": ("--seed", "7", "--n", "1"),
    }.items():
        out = tmp_path / name
        result = invoke("sample", point_run, "--steps", STEPS, *args, "--out", out, "--json")
        assert result.exit_code == 0, result.output
        drawn[name] = _samples(out)
    np.testing.assert_array_equal(drawn["list"]["seeds"], [3, 7, 8, 9])
    np.testing.assert_array_equal(drawn["range"]["seeds"], np.arange(10))
    np.testing.assert_allclose(drawn["list"]["x"], drawn["range"]["x"][[3, 7, 8, 9]], **SAME)
    np.testing.assert_allclose(drawn["one"]["x"], drawn["range"]["x"][[7]], **SAME)
    summary = json.loads(result.stdout)
    assert summary["seeds"] == "7" and summary["noise"] == "counter"


def test_the_default_name_says_the_seeds(point_run: Path) -> None:
    """Without --out: RUN_DIR/samples/SAMPLER-seedsA-B.npz for --seeds."""
    result = invoke("sample", point_run, "--sampler", "dpm-solver", "--seeds", "5-8")
    assert result.exit_code == 0, result.output
    assert (point_run / "samples" / "dpm-solver-seeds5-8.npz").exists()


def _stand_in_image_run(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make runs.load_run return an image run whose score is the exact Gaussian one."""
    folder.mkdir(exist_ok=True)
    paths = runs.RunPaths(folder)
    run = runs.Run(
        paths, IMAGE_CONFIG, gaussian_model(VESDE(sigma_max=5.0)), 1, "complete", paths.latest
    )
    monkeypatch.setattr(runs, "load_run", lambda run_dir: run)


def _files(folder: Path) -> dict[str, bytes]:
    """name -> bytes of every file in a folder."""
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_shards_write_exactly_the_files_of_one_process(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--shard 0/2 and 1/2 of --seeds 0-6 into one folder (other batch sizes, each its own
    .npz) write byte for byte the PNG files that one draw of all seven writes."""
    _stand_in_image_run(monkeypatch, tmp_path / "run")
    common = ("sample", tmp_path / "run", "--steps", STEPS, "--seeds", "0-6", "--image-files")
    whole = invoke(*common, "--out", tmp_path / "one")
    assert whole.exit_code == 0, whole.output
    for shard, batch in (("0/2", "2"), ("1/2", "3")):
        result = invoke(*common, "--shard", shard, "--batch-size", batch, "--out", tmp_path / "two")
        assert result.exit_code == 0, result.output
    assert list(_files(tmp_path / "one")) == [f"{seed:06d}.png" for seed in range(7)]
    assert _files(tmp_path / "two") == _files(tmp_path / "one")
    first, second = _samples(tmp_path / "two-shard0of2"), _samples(tmp_path / "two-shard1of2")
    np.testing.assert_array_equal(first["seeds"], np.arange(4))  # the larger part first
    np.testing.assert_array_equal(second["seeds"], np.arange(4, 7))
    np.testing.assert_allclose(
        np.concatenate([first["x"], second["x"]]), _samples(tmp_path / "one")["x"], **SAME
    )
    again = invoke(*common, "--shard", "1/2", "--out", tmp_path / "two")
    assert_one_line_error(again, "000004.png exists")


def _start(*args: str | Path) -> subprocess.Popen:
    """`python -m cli.main ARGS` in a fresh process on the test session's backend."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    env = {**os.environ, "KERAS_BACKEND": backend, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "cli.main", *map(str, args)]
    return subprocess.Popen(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
def test_two_processes_write_exactly_the_files_of_one(tmp_path: Path) -> None:
    """Real processes on an untrained image run (small NCSN++), all at once: two with disjoint
    --seeds (other batch sizes, other folders) and one with all of them write the same PNG
    files byte for byte."""
    run_dir = untrained_run(tmp_path / "run", IMAGES)
    common = ("sample", run_dir, "--steps", STEPS, "--image-files", "--no-progress")
    processes = [
        _start(*common, "--seeds", seeds, "--batch-size", batch, "--out", tmp_path / out)
        for seeds, batch, out in (("0-4", "5", "one"), ("0-2", "3", "two-a"), ("3-4", "1", "two-b"))
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        assert process.returncode == 0, stderr[-2000:]
    one = _files(tmp_path / "one")
    assert list(one) == [f"{seed:06d}.png" for seed in range(5)]
    assert {**_files(tmp_path / "two-a"), **_files(tmp_path / "two-b")} == one


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--seeds", "0-"), ("--seeds", "is not a list of seeds such as 0-49999")),
        (("--seeds", "a,b"), ("--seeds", "is not a list of seeds")),
        (("--seeds", ""), ("--seeds", "is empty")),
        (("--seeds", "1,,2"), ("--seeds", "is not a list of seeds")),
        (("--seeds", "-3"), ("--seeds", "must not be negative, got -3")),
        (("--seeds", "5--3"), ("--seeds", "must not be negative")),
        (("--seeds", "9-4"), ("--seeds", "runs backwards; write 4-9")),
        (("--seeds", "0-5,3-7"), ("--seeds", "names seed 3 more than once")),
        (("--seeds", "0-99999999999"), ("--seeds", "more than 100,000,000 seeds")),
        (("--seeds", str(2**64)), ("--seeds", "below 2**64")),
        (("--seed", "-1"), ("--seed", "-1")),
        (("--seeds", "0-9", "--n", "5"), ("--seeds", "not both")),
        (("--seeds", "0-9", "--seed", "2"), ("--seeds", "not both")),
        (("--n", "0"), ("--n", "must be positive")),
        (("--shard", "1"), ("--shard", "must be I/K")),
        (("--shard", "a/b"), ("--shard", "must be I/K")),
        (("--shard", "-1/4"), ("--shard", "must be I/K")),
        (("--shard", "4/4"), ("--shard", "must lie in 0..K-1")),
        (("--shard", "0/0"), ("--shard", "must lie in 0..K-1")),
        (("--seeds", "0-2", "--shard", "0/4"), ("--shard", "3 seeds into 4 parts")),
        (("--noise", "philox"), ("--noise", "philox")),
    ],
)
def test_bad_seed_options_are_one_sentence(
    tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    """Each bad --seeds / --seed / --shard / --noise: one line, before any run is read."""
    result = invoke("sample", tmp_path / "no-run", *args)
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("command", ["evaluate", "inpaint", "colorize"])
def test_the_other_sampling_commands_take_the_seed_list(tmp_path: Path, command: str) -> None:
    """evaluate, inpaint and colorize parse --seeds alike (refusals before any file is read)."""
    assert_one_line_error(invoke(command, tmp_path, "--seeds", "4-2"), "runs backwards")
    assert_one_line_error(invoke(command, tmp_path, "--seeds", "1,1"), "more than once")
