"""`scoregen train`: run folder contents, config files, resume, SIGINT, backends, atomic saves."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from cli.main import main

REPO_ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXIT_INTERRUPTED = 130
SUBPROCESS_TIMEOUT_S = 600
TINY_STEPS = 20
# A tiny toy run: seconds on a CPU, yet every periodic action (log, checkpoint, preview) fires.
TINY_CONFIG: dict[str, Any] = {
    "model": "mlp/tiny",
    "steps": TINY_STEPS,
    "batch_size": 64,
    "n_train": 512,
    "warmup": 0,
    "lr_decay": "none",  # a constant rate, so --resume may extend the run
    "log_every": 5,
    "checkpoint_every": 10,
    "sample_every": 20,
    "n_sample_preview": 64,
    "sampler_steps": 10,
}
BACKENDS = ("tensorflow", "jax", "torch")


def invoke(*args: str) -> Result:
    """Run `scoregen ARGS` in-process on the test session's backend (tensorflow by default)."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    return CliRunner().invoke(main, [str(a) for a in args], env={"KERAS_BACKEND": backend})


def tiny_config_file(folder: Path, **changes: Any) -> Path:
    """Write the tiny config (with changes) as JSON and return its path."""
    path = folder / "tiny.json"
    path.write_text(json.dumps({**TINY_CONFIG, **changes}), encoding="utf-8")
    return path


def train_tiny(folder: Path, name: str = "run", *extra: str, **changes: Any) -> Path:
    """Train a tiny run in-process into folder/name and return the run folder."""
    out = folder / name
    result = invoke("train", "--config", tiny_config_file(folder, **changes), "--out", out, *extra)
    assert result.exit_code == 0, result.output
    return out


def metrics_steps(run: Path) -> list[int]:
    """The step of every metrics.jsonl line, in file order."""
    lines = (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["step"] for line in lines]


def run_status(run: Path) -> dict[str, Any]:
    """run.json as a dict."""
    return json.loads((run / "run.json").read_text(encoding="utf-8"))


def scoregen_subprocess(
    *args: str,
    backend: str | None = None,
    timeout: int = SUBPROCESS_TIMEOUT_S,
    cache_home: Path | None = None,
):
    """Run `python -m cli.main ARGS` in a fresh process (so any backend can be chosen).

    cache_home: $XDG_CACHE_HOME of the process, with no JAX cache folder set by the caller.
    """
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    env.pop("KERAS_BACKEND", None)
    if cache_home is not None:
        env["XDG_CACHE_HOME"] = str(cache_home)
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
    if backend is not None:
        env["KERAS_BACKEND"] = backend
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *map(str, args)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_png(path: Path) -> None:
    """The file exists and starts with the PNG signature."""
    assert path.read_bytes()[: len(PNG_MAGIC)] == PNG_MAGIC, path


# --------------------------------------------------------------------------------- help


@pytest.mark.parametrize("command", ["train", "sample", "classifier", "datasets", "presets"])
def test_help_lists_defaults_and_an_example(command: str) -> None:
    """Every command's --help shows an example, and options that have defaults show them."""
    result = invoke(command, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output
    assert f"scoregen {command}" in result.output
    if command in ("train", "sample"):
        assert result.output.count("[default:") >= 5


def test_datasets_and_presets_list_one_line_each() -> None:
    """`scoregen datasets` / `presets` print one line per entry, the default preset marked."""
    datasets = invoke("datasets")
    presets = invoke("presets")
    assert datasets.exit_code == presets.exit_code == 0
    assert any(line.startswith("mixture5 ") for line in datasets.output.splitlines())
    assert any(line.startswith("digits ") for line in datasets.output.splitlines())
    lines = presets.output.splitlines()
    assert any(line.startswith("toy ") and "(default)" in line for line in lines)
    assert {"toy", "toy-vp", "digits", "cifar10-ddpmpp-cont"} <= {ln.split()[0] for ln in lines}
    assert isinstance(json.loads(invoke("presets", "--json").output), dict)


# ------------------------------------------------------------------------------ train


def test_train_writes_a_complete_run_folder(tmp_path: Path) -> None:
    """config.json (resolved, backend, scaler), checkpoints, metrics, sample plot, run.json."""
    out = tmp_path / "run"
    result = invoke("train", "--config", tiny_config_file(tmp_path), "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "toy" and config["steps"] == TINY_STEPS
    assert config["backend"] == os.environ.get("KERAS_BACKEND", "tensorflow")
    assert config["data"]["scaler"] == {"shift": 0.0, "scale": 1.0}
    assert config["data"]["shape"] == [2]
    for name in ("latest.keras", "step_10.keras", "step_20.keras"):
        assert (out / "checkpoints" / name).stat().st_size > 0
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert metrics_steps(out) == [5, 10, 15, 20]
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert set(record) >= {"step", "loss", "lr", "examples_per_s", "wall_time"}
    assert_png(out / "samples" / "step_20.png")
    assert run_status(out)["status"] == "complete"
    for line in ("run folder:", "checkpoint:", "sample plot:", "scoregen sample"):
        assert line in result.output


@pytest.mark.slow  # 20 s: an image network trained and sampled; the preview's count is all it adds
def test_an_image_preview_draws_only_what_its_grid_shows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Digits on the toy base config (2 000 preview points): the preview grid draws 100 images."""
    from scoregen_keras import runs
    from scoregen_keras.runs import plots

    drawn = []
    draw_samples = runs.draw_samples

    def counting(model: Any, config: dict[str, Any], n: int, **options: Any) -> Any:
        drawn.append(n)
        return draw_samples(model, config, n, **options)

    monkeypatch.setattr(runs.train, "draw_samples", counting)  # the previews' draws
    changes = {"n_sample_preview": 2_000, "sampler_steps": 2, "batch_size": 8, "steps": 2}
    tiny_image_net = {"nf": 8, "num_res_blocks": 1, "attn_resolutions": [], "fir": False}
    image_run = {"dataset": "digits", "model": "ncsnpp/tiny", "model_config": tiny_image_net}
    run = train_tiny(tmp_path, **image_run, **changes, sample_every=2)
    assert drawn == [plots.MAX_GRID_IMAGES]
    assert_png(run / "samples" / "step_2.png")


def test_config_file_toml_then_options_override(tmp_path: Path) -> None:
    """Settings from a TOML file apply over the preset; command-line options win over both."""
    toml = tmp_path / "settings.toml"
    settings = {**TINY_CONFIG, "sampler_steps": 25}  # PC on VP needs > beta_max = 20 levels
    lines = [f"{key} = {json.dumps(value)}" for key, value in settings.items()]
    toml.write_text("\n".join([*lines, "lr = 0.01", 'sde = "vp"']), encoding="utf-8")
    out = tmp_path / "run"
    result = invoke("train", "--config", toml, "--lr", "0.005", "--seed", "3", "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["lr"], config["sde"], config["seed"]) == (0.005, "vp", 3)
    assert config["model"] == "mlp/tiny"


def test_json_output_is_one_object(tmp_path: Path) -> None:
    """--json prints exactly one JSON object on stdout."""
    out = tmp_path / "run"
    result = invoke("train", "--config", tiny_config_file(tmp_path), "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["status"] == "complete" and summary["step"] == TINY_STEPS
    assert Path(summary["checkpoint"]).exists()


def test_existing_run_needs_resume(tmp_path: Path) -> None:
    """Training into a folder that holds a run is refused (no overwrite)."""
    out = train_tiny(tmp_path)
    result = invoke("train", "--config", tiny_config_file(tmp_path), "--out", out)
    assert result.exit_code != 0
    assert "--resume" in result.stderr
    assert run_status(out)["status"] == "complete"


# ----------------------------------------------------------------------------- resume


def test_resume_extends_the_run_without_duplicate_metrics(tmp_path: Path) -> None:
    """--resume --steps 40 continues at step 20 and logs 25..40 once each."""
    out = train_tiny(tmp_path)
    result = invoke("train", "--resume", "--out", out, "--steps", "40")
    assert result.exit_code == 0, result.output
    assert metrics_steps(out) == list(range(5, 41, 5))
    status = run_status(out)
    assert (status["status"], status["step"]) == ("complete", 40)
    assert json.loads((out / "config.json").read_text())["steps"] == 40
    assert (out / "checkpoints" / "step_40.keras").exists()


def test_resume_cannot_extend_a_run_whose_rate_decays_to_its_last_step(tmp_path: Path) -> None:
    """With lr_decay cosine the length is part of the schedule: a new --steps is refused."""
    out = train_tiny(tmp_path, lr_decay="cosine")
    result = invoke("train", "--resume", "--out", out, "--steps", "40")
    assert result.exit_code != 0
    assert "cannot change steps" in result.stderr and "Traceback" not in result.output
    assert json.loads((out / "config.json").read_text())["steps"] == TINY_STEPS
    assert run_status(out)["status"] == "complete"


def test_resume_truncates_metrics_logged_after_the_checkpoint(tmp_path: Path) -> None:
    """A run killed after logging step 15 but saving only step 10 resumes from 10, no repeats."""
    out = train_tiny(tmp_path)
    checkpoints = out / "checkpoints"
    os.replace(checkpoints / "step_10.keras", checkpoints / "latest.keras")
    (out / "run.json").write_text(json.dumps({"status": "running", "step": 10}))
    result = invoke("train", "--resume", "--out", out)
    assert result.exit_code == 0, result.output
    assert metrics_steps(out) == [5, 10, 15, 20]
    assert run_status(out)["status"] == "complete"


def test_resume_rejects_a_different_model(tmp_path: Path) -> None:
    """Changing the model of a run while resuming is refused with one line."""
    out = train_tiny(tmp_path)
    result = invoke("train", "--resume", "--out", out, "--model", "mlp/toy", "--steps", "40")
    assert result.exit_code != 0
    assert "cannot change model" in result.stderr
    assert "Traceback" not in result.output


def test_sigint_saves_a_checkpoint_then_resume_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT mid-training: exit 130, one line, checkpoint at the stop; --resume finishes."""
    from scoregen_keras import runs

    original = runs.StepBatches.__getitem__

    def interrupting(self: runs.StepBatches, index: int) -> Any:
        if self.start + index == 7:
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, index)

    monkeypatch.setattr(runs.StepBatches, "__getitem__", interrupting)
    out = tmp_path / "run"
    config = tiny_config_file(tmp_path, log_every=1, checkpoint_every=100, sample_every=100)
    result = invoke("train", "--config", config, "--out", out)
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert [ln for ln in result.stderr.splitlines() if ln.strip()][-1].startswith("Interrupted")
    status = run_status(out)
    stopped = status["step"]
    assert status["status"] == "interrupted" and 0 < stopped < TINY_STEPS
    assert metrics_steps(out)[-1] <= stopped
    monkeypatch.setattr(runs.StepBatches, "__getitem__", original)
    result = invoke("train", "--resume", "--out", out)
    assert result.exit_code == 0, result.output
    assert metrics_steps(out) == list(range(1, TINY_STEPS + 1))
    assert run_status(out)["status"] == "complete"


@pytest.mark.slow
def test_sigint_to_a_training_process(tmp_path: Path) -> None:
    """A real SIGINT to `scoregen train` stops it with code 130 and a resumable checkpoint."""
    out = tmp_path / "run"
    config = tiny_config_file(tmp_path, steps=100_000, checkpoint_every=100_000)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "KERAS_BACKEND": "tensorflow"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "train", "--config", str(config), "--out", str(out)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        metrics = out / "metrics.jsonl"
        deadline = SUBPROCESS_TIMEOUT_S
        while deadline > 0 and not (metrics.exists() and metrics.read_text().count("\n") >= 2):
            try:
                process.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                deadline -= 1
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "Traceback" not in stderr
    status = run_status(out)
    assert status["status"] == "interrupted"
    steps = metrics_steps(out)
    assert steps == sorted(set(steps)) and steps[-1] <= status["step"]


# --------------------------------------------------------------------- atomic checkpoints

KILL_DURING_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import keras
    from scoregen_keras import runs
    from scoregen_keras.training import save_checkpoint

    run = runs.load_run(sys.argv[1])

    def dying_save(self, filepath, *args, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"PK\\x03\\x04 half an archive")
            handle.flush()
            os.fsync(handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    keras.Model.save = dying_save
    save_checkpoint(run.model, run.paths.latest)
    """
)


def test_kill_during_checkpoint_save_keeps_the_previous_latest(tmp_path: Path) -> None:
    """SIGKILL in the middle of writing latest.keras leaves the previous one loadable."""
    out = train_tiny(tmp_path)
    before = (out / "checkpoints" / "latest.keras").read_bytes()
    script = tmp_path / "kill_during_save.py"
    script.write_text(KILL_DURING_SAVE, encoding="utf-8")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(REPO_ROOT)}
    killed = subprocess.run(
        [sys.executable, str(script), str(out)],
        env=env,
        capture_output=True,
        timeout=SUBPROCESS_TIMEOUT_S,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (out / "checkpoints" / "latest.keras").read_bytes() == before
    result = invoke("sample", out, "--n", "16", "--sampler", "dpm-solver", "--steps", "5")
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------------------ backends


@pytest.mark.parametrize("has_filelock", [True, False])
def test_the_jax_cache_is_on_by_default_and_bounded_where_jax_can_bound_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, has_filelock: bool
) -> None:
    """Under $XDG_CACHE_HOME/scoregen/jax; a size limit only with filelock (else JAX refuses it)."""
    from cli import environment

    real_find_spec = importlib.util.find_spec

    def find_spec(name: str) -> Any:
        """The real lookup, except that filelock is installed or not as the case needs."""
        if name == "filelock":
            return real_find_spec("json") if has_filelock else None
        return real_find_spec(name)

    home = tmp_path / "cache"
    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.setattr(os, "environ", {"XDG_CACHE_HOME": str(home)})
    environment.default_jax_compilation_cache()
    assert os.environ[environment.JAX_CACHE_DIR_ENV] == str(home / "scoregen" / "jax")
    assert (home / "scoregen" / "jax").is_dir()
    assert os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    assert ("JAX_COMPILATION_CACHE_MAX_SIZE" in os.environ) == has_filelock


def test_the_jax_cache_default_yields_to_the_user_and_to_unusable_homes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user's JAX_COMPILATION_CACHE_DIR ("" = off) is kept; a cache home that cannot hold a
    folder leaves the cache off."""
    from cli import environment

    cache_off = {"XDG_CACHE_HOME": str(tmp_path / "cache"), environment.JAX_CACHE_DIR_ENV: ""}
    monkeypatch.setattr(os, "environ", dict(cache_off))
    environment.default_jax_compilation_cache()
    assert os.environ == cache_off

    (tmp_path / "a-file").write_text("not a folder")
    monkeypatch.setattr(os, "environ", {"XDG_CACHE_HOME": str(tmp_path / "a-file")})
    environment.default_jax_compilation_cache()
    assert os.environ == {"XDG_CACHE_HOME": str(tmp_path / "a-file")}


def _next_backend(backend: str) -> str:
    """The backend after `backend` in BACKENDS, cyclically: where its run is sampled."""
    return BACKENDS[(BACKENDS.index(backend) + 1) % len(BACKENDS)]


@pytest.mark.parametrize(
    "backend",
    [
        pytest.param(
            backend,
            # one pair in the fast suite; the other two (20 s each) in CI's slow run
            marks=[pytest.mark.backends(backend, _next_backend(backend))]
            + ([] if backend == BACKENDS[0] else [pytest.mark.slow]),
        )
        for backend in BACKENDS
    ],
)
def test_train_on_each_backend_then_sample_on_another(tmp_path: Path, backend: str) -> None:
    """`train --backend X --steps 20` in a fresh process; the run samples on the next backend.

    A JAX process leaves its compiled code in $XDG_CACHE_HOME/scoregen/jax; the others write none.
    """
    out = tmp_path / f"run-{backend}"
    config = tiny_config_file(tmp_path)
    cache_home = tmp_path / "cache"
    trained = scoregen_subprocess(
        "train", "--backend", backend, "--steps", TINY_STEPS, "--config", config, "--out", out,
        cache_home=cache_home,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["backend"] == backend
    assert run_status(out)["status"] == "complete"
    other = _next_backend(backend)
    target = tmp_path / "samples"
    sampled = scoregen_subprocess(
        "sample", out, "--backend", other, "--n", 32, "--sampler", "dpm-solver", "--steps", 5,
        "--out", target, "--json", cache_home=cache_home,
    )  # fmt: skip
    assert sampled.returncode == 0, sampled.stderr[-3000:]
    summary = json.loads(sampled.stdout)
    assert summary["backend"] == other and summary["n"] == 32
    assert Path(summary["npz"]).exists() and Path(summary["png"]).exists()
    jax_cache = cache_home / "scoregen" / "jax"
    if "jax" in (backend, other):
        assert len(list(jax_cache.iterdir())) > 0
    else:
        assert not jax_cache.exists()
