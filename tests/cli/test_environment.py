"""cli/environment.py and the commands that start no backend: `scoregen --help`, the listings
and `scoregen reference` import neither keras nor a framework."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cli import environment, reference_cmd
from scoregen_keras import choices
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import REPO_ROOT, SUBPROCESS_TIMEOUT_S, invoke

FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")
# runs each command in one fresh process and prints, after each, the frameworks it imported
PROBE = """
import json, sys
from cli.main import main
loaded = []
for args in json.loads(sys.argv[1]):
    try:
        main(args, standalone_mode=False)
    except SystemExit:
        pass
    loaded.append(sorted(name for name in {frameworks!r} if name in sys.modules))
print(json.dumps(loaded))
"""


def test_help_listings_and_reference_import_no_framework(tmp_path: Path) -> None:
    commands = [
        ["--help"],
        ["presets"],
        ["datasets"],
        ["train", "--help"],
        ["sample", "--help"],
        ["reference", "sample", "--n", "20", "--sampler", "heun", "--steps", "3",
         "--out", str(tmp_path / "heun")],
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(frameworks=FRAMEWORKS), json.dumps(commands)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [[]] * len(commands)
    assert (tmp_path / "heun.npz").exists()  # the reference command did run


def test_the_probe_sees_a_framework_that_is_imported() -> None:
    """The same probe, after a command that starts a backend, reports keras."""
    code = PROBE.format(frameworks=FRAMEWORKS).replace(
        "print(json.dumps(loaded))", "import keras\nprint(json.dumps(loaded + [['keras']]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, json.dumps([["presets"]])],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded[0] == [] and "keras" in loaded[-1]


def test_the_reference_runs_every_sampler_of_the_choices() -> None:
    assert set(reference_cmd.SAMPLERS) == set(choices.SAMPLERS)


def test_a_second_backend_in_one_process_is_refused() -> None:
    """keras runs on the session's backend: another one is one sentence, exit 1."""
    import keras

    other = next(name for name in choices.BACKENDS if name != keras.backend.backend())
    result = invoke("sample", "nowhere", "--backend", other)
    assert_one_line_error(result, "already running", f"--backend {other}")
    assert result.exit_code == 1


def test_default_backend_reads_keras_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(environment.BACKEND_ENV, "jax")
    assert environment.default_backend() == "jax"
    monkeypatch.delenv(environment.BACKEND_ENV)
    assert environment.default_backend() == choices.DEFAULT_BACKEND
