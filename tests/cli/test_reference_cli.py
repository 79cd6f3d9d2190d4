"""End-to-end tests of `scoregen reference sample|train` through Click's CliRunner."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from cli import reference_cmd
from cli.main import DEBUG_ENV, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REPO_ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    """Invoke `scoregen ARGS` in-process."""
    return CliRunner().invoke(main, list(args), env=env)


def _assert_one_line_error(result: Result) -> None:
    """Failure: non-zero exit, no traceback, exactly one 'Error: …' line on stderr."""
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")


def _assert_png(path: Path) -> None:
    """The file exists and starts with the PNG signature."""
    assert path.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC


# ------------------------------------------------------------------------------- help


def test_help_lists_groups_and_commands() -> None:
    """`scoregen --help` and `scoregen reference --help` list the reference commands."""
    top = _run("--help")
    assert top.exit_code == 0 and "reference" in top.output
    group = _run("reference", "--help")
    assert group.exit_code == 0
    assert "sample" in group.output and "train" in group.output


@pytest.mark.parametrize("command", ["sample", "train"])
def test_command_help_shows_defaults_and_example(command: str) -> None:
    """Every option shows its default and the docstring carries an example."""
    result = _run("reference", command, "--help")
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # Click wraps lines at the terminal width
    assert "[default: mixture5]" in text
    assert "--seed INTEGER Random seed. [default: 0]" in text
    assert f"Example: scoregen reference {command}" in text


def test_bare_group_shows_help() -> None:
    """`scoregen` with no command prints the usage rather than an error line."""
    result = _run()
    assert "Usage:" in result.output
    assert "Traceback" not in result.output


# ------------------------------------------------------------------------------- sample


@pytest.mark.parametrize(
    "extra",
    [
        ["--sampler", "pc", "--steps", "20"],
        ["--sampler", "pc", "--sde", "vp", "--steps", "25", "--predictor", "euler_maruyama"],
        ["--sampler", "heun", "--steps", "4"],
        ["--sampler", "dpm-solver", "--steps", "5", "--sde", "subvp"],
        ["--sampler", "ald", "--steps", "3", "--n-steps-each", "4"],
        ["--sampler", "ode", "--ode-method", "euler", "--steps", "8"],
    ],
)
def test_sample_writes_npz_and_png(tmp_path: Path, extra: list[str]) -> None:
    """Tiny runs write PREFIX.npz (key x, no pickle) and PREFIX.png and report NFE and paths."""
    prefix = tmp_path / "nested" / "run"
    result = _run("reference", "sample", "--n", "40", "--out", str(prefix), *extra)
    assert result.exit_code == 0, result.output
    with np.load(f"{prefix}.npz", allow_pickle=False) as data:
        x = data["x"]
    assert x.shape == (40, 2) and np.all(np.isfinite(x))
    _assert_png(Path(f"{prefix}.png"))
    assert "NFE" in result.output
    assert f"{prefix}.npz" in result.output and f"{prefix}.png" in result.output


def test_sample_json_is_one_object(tmp_path: Path) -> None:
    """--json prints exactly one JSON object with the NFE, the paths and the sample checks."""
    prefix = tmp_path / "s.npz"  # a known suffix is dropped from the prefix
    result = _run(
        "reference", "sample", "--sampler", "heun", "--steps", "3", "--n", "30",
        "--dist", "separated4", "--out", str(prefix), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["nfe"] == 2 * 3 - 1  # EDM Heun: last step is Euler
    assert record["dist"] == "separated4" and record["n"] == 30
    assert record["npz"] == str(tmp_path / "s.npz") and Path(record["png"]).exists()
    assert "checks" in record


def test_sample_same_seed_same_samples(tmp_path: Path) -> None:
    """The seed fixes the samples; another seed changes them."""
    args = ["reference", "sample", "--sampler", "dpm-solver", "--steps", "5", "--n", "20"]
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        assert _run(*args, "--seed", seed, "--out", str(tmp_path / name)).exit_code == 0
    a, b, c = (np.load(tmp_path / f"{name}.npz")["x"] for name in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize(
    "bad",
    [
        ["--dist", "nope"],
        ["--sampler", "langevin-magic"],
        ["--sde", "xx"],
        ["--n", "0"],
        ["--steps", "-3"],
        ["--snr", "0"],
        ["--n", "many"],
        ["--sampler", "ald", "--sde", "vp", "--steps", "2"],
        ["--predictor", "ancestral", "--sde", "subvp", "--corrector", "none"],
    ],
)
def test_sample_bad_input_is_one_sentence(tmp_path: Path, bad: list[str]) -> None:
    """Invalid options exit non-zero with one error line and no traceback."""
    result = _run("reference", "sample", "--n", "10", "--out", str(tmp_path / "x"), *bad)
    _assert_one_line_error(result)


def test_sample_unwritable_output(tmp_path: Path) -> None:
    """An output prefix below a regular file cannot be created: one clear error."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a directory")
    result = _run("reference", "sample", "--n", "10", "--out", str(blocker / "sub" / "run"))
    _assert_one_line_error(result)
    assert "--out" in result.stderr


def test_unexpected_error_is_one_line_unless_debugging(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure inside a library call is one line; with SCOREGEN_DEBUG it propagates."""

    def broken(*args: object, **kwargs: object) -> None:
        """Stand-in sampler that fails."""
        raise RuntimeError("solver diverged")

    monkeypatch.setattr(reference_cmd.samplers, "edm_heun_sample", broken)
    args = ["reference", "sample", "--sampler", "heun", "--out", str(tmp_path / "x")]
    result = _run(*args)
    _assert_one_line_error(result)
    assert "solver diverged" in result.stderr
    debug = _run(*args, env={DEBUG_ENV: "1"})
    assert isinstance(debug.exception, RuntimeError)


def test_real_process_bad_input_has_no_traceback(tmp_path: Path) -> None:
    """Run as a real process: exit code 2 for a usage error, one line on stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "reference", "sample", "--n", "-1"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("Error: ")


# ------------------------------------------------------------------------------- train


TINY_TRAIN = [
    "--steps", "3", "--batch-size", "16", "--time-budget", "10",
    "--sample-steps", "4", "--n-samples", "30",
]  # fmt: skip


def test_train_tiny_budget_writes_run(tmp_path: Path) -> None:
    """A tiny run on an exact mixture writes samples, plot, params, config and score errors."""
    out = tmp_path / "run"
    result = _run("reference", "train", "--dataset", "mixture5", "--out", str(out), *TINY_TRAIN)
    assert result.exit_code == 0, result.output
    with np.load(out / "samples.npz", allow_pickle=False) as data:
        assert data["x"].shape == (30, 2)
    with np.load(out / "params.npz", allow_pickle=False) as params:
        assert {"W0", "b0", "W_out", "b_out"} <= set(params.files)
    _assert_png(out / "samples.png")
    config = json.loads((out / "config.json").read_text())
    assert config["steps_done"] == 3 and config["dataset"] == "mixture5"
    assert len(config["relative_score_error"]) == len(reference_cmd.RELATIVE_ERROR_TIMES)
    assert "relative score error at t=" in result.output
    assert str(out / "params.npz") in result.output


def test_train_toy_set_without_density(tmp_path: Path) -> None:
    """A set without an exact density trains and samples, with no score-error lines."""
    out = tmp_path / "moons"
    result = _run("reference", "train", "--dataset", "moons", "--out", str(out), *TINY_TRAIN)
    assert result.exit_code == 0, result.output
    assert "relative score error" not in result.output
    assert (out / "samples.npz").exists() and (out / "samples.png").exists()


@pytest.mark.parametrize(
    "bad",
    [["--dataset", "imagenet"], ["--steps", "0"], ["--time-budget", "-1"], ["--lr", "0"]],
)
def test_train_bad_input_is_one_sentence(tmp_path: Path, bad: list[str]) -> None:
    """Invalid training options exit non-zero with one error line and no traceback."""
    result = _run("reference", "train", "--out", str(tmp_path / "r"), *bad)
    _assert_one_line_error(result)


def test_train_unwritable_output(tmp_path: Path) -> None:
    """An output directory below a regular file: one clear error mentioning --out."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    result = _run("reference", "train", "--out", str(blocker / "run"), *TINY_TRAIN)
    _assert_one_line_error(result)
    assert "--out" in result.stderr
