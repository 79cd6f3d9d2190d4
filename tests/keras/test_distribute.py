"""Scaling out (issue 7): data-parallel training, mixed precision, a diverging run's checkpoints.

The data-parallel runs need several devices before the backend starts, so they run
`scoregen train` in subprocesses: JAX with XLA_FLAGS=--xla_force_host_platform_device_count=2,
TensorFlow with two logical CPU devices ($SCOREGEN_CPU_DEVICES=2). Their metrics.jsonl losses
are compared with a single-device run of the same config; both draw the same noise (each
tf.distribute replica keeps its rows of the global batch's draw; JAX runs one program over the
global batch), so the trajectories agree to float32 rounding, not just in distribution.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from reference.datasets import mixture5
from reference.train import relative_score_error
from scoregen_keras import runs
from scoregen_keras.runs.evaluate import reference_sde
from scoregen_keras.training import distribution as distribute
from scoregen_keras.training import presets

BACKEND = keras.backend.backend()
REPO_ROOT = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT_S = 900
N_DEVICES = 2
DP_STEPS = 50
# Clipping far below the gradient norm: every step clips, so a data-parallel step that clipped
# each replica's half gradient (Keras' own behaviour under tf.distribute) would drift at once.
DP_CONFIG: dict[str, Any] = {
    "model": "mlp/tiny",
    "steps": DP_STEPS,
    "batch_size": 64,
    "n_train": 512,
    "warmup": 0,
    "lr_decay": "none",  # a constant rate: the resume test extends these runs
    "grad_clip": 0.01,
    "log_every": 1,
    "checkpoint_every": 25,
    "sample_every": DP_STEPS,
    "n_sample_preview": 16,
    "sampler_steps": 5,
}
# metrics.jsonl keeps 6 significant digits (5e-7 relative); summation order across devices adds
# float32 rounding that Adam carries along. Measured after 50 steps: 1.3e-6 (JAX), 9.8e-6 (TF);
# per-replica clipping gave 1.6e-3 after 20 steps, per-replica (shared) noise ~5e-4 at step 1.
LOSS_RTOL = 1e-4
WEIGHT_RTOL = 1e-4
RESUME_STEPS = 60
SAMPLES = 64

needs_data_parallel = pytest.mark.skipif(
    BACKEND not in distribute.DATA_PARALLEL_BACKENDS,
    reason=f"Keras has no data-parallel training on the {BACKEND} backend",
)


def _losses(run_dir: Path) -> np.ndarray:
    """The per-step losses of a run's metrics.jsonl."""
    lines = (run_dir / runs.METRICS_FILE).read_text(encoding="utf-8").splitlines()
    return np.array([json.loads(line)["loss"] for line in lines])


def _train_subprocess(folder: Path, name: str, *extra: str, devices: int = 1) -> Path:
    """`scoregen train` in a fresh process on this backend with `devices` CPU devices."""
    config = folder / "config.json"
    config.write_text(json.dumps(DP_CONFIG), encoding="utf-8")
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop(distribute.CPU_DEVICES_ENV, None)
    if devices > 1 and BACKEND == "jax":
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    elif devices > 1:
        env[distribute.CPU_DEVICES_ENV] = str(devices)
    out = folder / name
    command = [sys.executable, "-m", "cli.main", "train", "--backend", BACKEND]
    command += ["--config", str(config), "--out", str(out), "--no-progress", *extra]
    proc = subprocess.run(
        command,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def paired_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A single-device run and a 2-device data-parallel run of the same config and seed."""
    folder = tmp_path_factory.mktemp("dp")
    single = _train_subprocess(folder, "single")
    parallel = _train_subprocess(
        folder,
        "parallel",
        "--distribute",
        "data-parallel",
        "--devices",
        str(N_DEVICES),
        devices=N_DEVICES,
    )
    return {"single": single, "parallel": parallel}


# ------------------------------------------------------------------------------ data parallel


@pytest.mark.slow
@needs_data_parallel
def test_data_parallel_loss_trajectory_matches_single_device(paired_runs: dict[str, Path]) -> None:
    """50 steps on 2 devices: the same losses as on one device (same global batch and seed)."""
    config = json.loads((paired_runs["parallel"] / runs.CONFIG_FILE).read_text())
    assert config["distribute"] == "data-parallel"
    assert config["placement"]["devices"] == N_DEVICES, config["placement"]
    single, parallel = _losses(paired_runs["single"]), _losses(paired_runs["parallel"])
    assert len(single) == len(parallel) == DP_STEPS
    worst = float(np.max(np.abs(parallel - single) / np.abs(single)))
    print(f"{BACKEND}: max relative loss difference over {DP_STEPS} steps = {worst:.2e}")
    np.testing.assert_allclose(parallel, single, rtol=LOSS_RTOL)
    # the losses move (a test of equal constants would prove nothing)
    assert np.std(single) > LOSS_RTOL * 100 * np.mean(single)


@pytest.mark.slow
@needs_data_parallel
def test_distributed_checkpoint_loads_on_one_device_and_samples(
    paired_runs: dict[str, Path],
) -> None:
    """The data-parallel checkpoint is an ordinary one: same weights and EMA; it samples."""
    _assert_single_device_checkpoint(paired_runs["parallel"], paired_runs["single"])


def _assert_single_device_checkpoint(run_dir: Path, single_dir: Path) -> None:
    """run_dir's checkpoint holds the single-device run's weights and EMA and samples here."""
    parallel, single = runs.load_run(run_dir), runs.load_run(single_dir)
    assert parallel.step == single.step == DP_STEPS
    for ours, theirs in zip(
        [*parallel.model.network.trainable_variables, *parallel.model.ema_variables],
        [*single.model.network.trainable_variables, *single.model.ema_variables],
        strict=True,
    ):
        a, b = keras.ops.convert_to_numpy(ours.value), keras.ops.convert_to_numpy(theirs.value)
        scale = float(np.max(np.abs(b))) or 1.0
        np.testing.assert_allclose(a, b, rtol=WEIGHT_RTOL, atol=WEIGHT_RTOL * scale)
    samples = runs.draw_samples(parallel.model, parallel.config, SAMPLES, sampler="pc", steps=20)
    assert samples.x.shape == (SAMPLES, 2)
    assert np.all(np.isfinite(samples.x))


@pytest.mark.slow
@needs_data_parallel
def test_data_parallel_run_resumes_on_one_device(
    paired_runs: dict[str, Path], tmp_path: Path
) -> None:
    """Resuming the 2-device run on one device continues as resuming the 1-device run does."""
    resumed = {}
    for name, source in paired_runs.items():
        copy = tmp_path / name
        shutil.copytree(source, copy)
        overrides = {"steps": RESUME_STEPS, "distribute": "none", "sample_every": RESUME_STEPS}
        runs.train_run(overrides, copy, resume=True, progress=False)
        resumed[name] = _losses(copy)[DP_STEPS:]
    assert len(resumed["single"]) == RESUME_STEPS - DP_STEPS
    np.testing.assert_allclose(resumed["parallel"], resumed["single"], rtol=LOSS_RTOL)


def _free_port() -> int:
    """A TCP port on localhost that was free a moment ago (for the JAX coordinator)."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def _host_env(index: int, ports: list[int]) -> dict[str, str]:
    """Environment of process `index` of a multi-host run on this machine (one CPU device each)."""
    env = {**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "3"}
    for key in ("XLA_FLAGS", distribute.CPU_DEVICES_ENV, "TF_CONFIG"):
        env.pop(key, None)
    if BACKEND == "jax":
        env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
        env["KERAS_DISTRIBUTION_JOB_ADDRESSES"] = f"localhost:{ports[0]}"
        env["KERAS_DISTRIBUTION_NUM_PROCESSES"] = str(len(ports))
        env["KERAS_DISTRIBUTION_PROCESS_ID"] = str(index)
    else:
        cluster = {"worker": [f"localhost:{port}" for port in ports]}
        task = {"type": "worker", "index": index}
        env["TF_CONFIG"] = json.dumps({"cluster": cluster, "task": task})
    return env


@pytest.mark.slow
@needs_data_parallel
def test_two_processes_match_single_device(paired_runs: dict[str, Path], tmp_path: Path) -> None:
    """Two processes (stand-ins for two hosts, one CPU device each): process 0's run folder has
    the single-device losses. JAX (gloo collectives): each process feeds half of every global
    batch. TensorFlow (MultiWorkerMirroredStrategy from $TF_CONFIG): each feeds the whole global
    batch and tf.distribute hands every replica its part.
    """
    config = tmp_path / "config.json"
    config.write_text(json.dumps(DP_CONFIG), encoding="utf-8")
    out = tmp_path / "run"
    ports = [_free_port() for _ in range(N_DEVICES)]
    command = [sys.executable, "-m", "cli.main", "train", "--config", str(config)]
    command += ["--distribute", "data-parallel", "--out", str(out), "--no-progress"]
    procs = [
        subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=_host_env(index, ports),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for index in range(N_DEVICES)
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        assert proc.returncode == 0, stderr.decode()[-3000:]
    placement = json.loads((out / runs.CONFIG_FILE).read_text())["placement"]
    assert placement["processes"] == N_DEVICES and placement["devices"] == N_DEVICES
    assert (out / f"worker-{N_DEVICES - 1}" / runs.METRICS_FILE).exists()
    np.testing.assert_allclose(_losses(out), _losses(paired_runs["single"]), rtol=LOSS_RTOL)
    _assert_single_device_checkpoint(out, paired_runs["single"])


# ------------------------------------------------------------------------------ policy


def test_torch_data_parallel_is_refused_with_the_reason() -> None:
    """The message names the backend, the Keras release and what to use instead."""
    with pytest.raises(distribute.DistributeError) as info:
        distribute.check_support("data-parallel", "torch")
    message = str(info.value)
    assert "torch" in message and distribute.keras_version() in message
    assert "--backend jax" in message
    distribute.check_support("none", "torch")  # one device is fine
    for name in distribute.DATA_PARALLEL_BACKENDS:
        distribute.check_support("data-parallel", name)


def test_device_choice_is_checked() -> None:
    """Too many devices, an uneven batch split and partial multi-host meshes are refused."""
    assert distribute.choose_devices(None, 4, 1, 64) == 4
    assert distribute.choose_devices(2, 4, 1, 64) == 2
    with pytest.raises(distribute.DistributeError, match=distribute.CPU_DEVICES_ENV):
        distribute.choose_devices(8, 4, 1, 64)
    with pytest.raises(distribute.DistributeError, match="does not split evenly"):
        distribute.choose_devices(3, 4, 1, 64)
    with pytest.raises(distribute.DistributeError, match="hosts"):
        distribute.choose_devices(2, 8, 2, 64)


def test_config_validates_scaling_keys() -> None:
    """Unknown precision / distribute, bad device counts and uneven splits are ConfigErrors."""
    config = presets.resolve_config("toy")
    assert (config["distribute"], config["devices"], config["precision"]) == (
        "none",
        None,
        "float32",
    )
    bad = [
        {"precision": "float8"},
        {"distribute": "model-parallel"},
        {"distribute": "data-parallel", "devices": 0},
        {"distribute": "data-parallel", "devices": 3, "batch_size": 64},
    ]
    for overrides in bad:
        with pytest.raises(presets.ConfigError):
            presets.resolve_config("toy", overrides)


def test_step_batches_shards_partition_the_global_batch() -> None:
    """Per-process parts of a step's batch, stacked in process order, are the global batch."""
    x = np.arange(200, dtype=np.float32).reshape(100, 2)
    whole = runs.StepBatches(x, 32, 3, 10, seed=5)
    parts = [runs.StepBatches(x, 32, 3, 10, seed=5, shard=(i, 4)) for i in range(4)]
    for index in range(len(whole)):
        np.testing.assert_array_equal(np.concatenate([p[index] for p in parts]), whole[index])


def test_fit_keeps_the_step_order(tmp_path: Path) -> None:
    """The batch of step k is StepBatches' batch k (Keras' fit would shuffle a PyDataset)."""
    config = presets.resolve_config("toy", {**DP_CONFIG, "steps": 20, "log_every": 1})
    runs.train_run(config, tmp_path / "a", progress=False)
    dataset = runs.training_data(config)
    model = runs.build_model(config, dataset.shape)  # the same initial weights and seed state
    batches = runs.StepBatches(dataset.x, config["batch_size"], 0, 1, config["seed"])
    first = float(keras.ops.convert_to_numpy(model.compute_loss(batches[0])))
    assert _losses(tmp_path / "a")[0] == pytest.approx(first, rel=1e-5)


# ------------------------------------------------------------------------------ mixed precision


def test_precision_scope_sets_and_restores_the_policy() -> None:
    """Layers built inside take the policy; the global policy is restored afterwards."""
    before = keras.config.dtype_policy().name
    with distribute.precision_scope("mixed_bfloat16"):
        layer = keras.layers.Dense(3)
    assert layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(distribute.DistributeError):
        with distribute.precision_scope("float8"):
            pass


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_mixed_precision_keeps_the_float32_parts(precision: str) -> None:
    """Layers compute in half precision; embedding, score, loss stay float32; fp16 scales loss."""
    half = precision.removeprefix("mixed_")
    config = presets.resolve_config("toy", {"model": "mlp/toy", "precision": precision})
    model = runs.build_model(config, (2,))
    reference = runs.build_model({**config, "precision": "float32"}, (2,))  # same seed: weights
    network = model.network
    assert network.compute_dtype == "float32"
    assert all(layer.compute_dtype == half for layer in network.hidden_layers)
    assert (type(model.optimizer).__name__ == "LossScaleOptimizer") == (half == "float16")
    # t where a half-precision t would move sin(2^7 pi/2 t) by far more than 1e-3
    t = np.array([0.3001, 0.7013, 0.9999, 1e-5], dtype=np.float32)
    embedding = keras.ops.convert_to_numpy(network.embed(t))
    assert embedding.dtype == np.float32
    np.testing.assert_allclose(
        embedding, keras.ops.convert_to_numpy(reference.network.embed(t)), rtol=0, atol=1e-6
    )
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    score = keras.ops.convert_to_numpy(model.score(x, t, use_ema=False))
    exact = keras.ops.convert_to_numpy(reference.score(x, t, use_ema=False))
    assert score.dtype == np.float32
    # half-precision layers: close to the float32 network, yet not equal to it
    scale = float(np.max(np.abs(exact)))
    assert 0 < float(np.max(np.abs(score - exact))) < 0.05 * scale
    loss = model.compute_loss(x)
    assert keras.backend.standardize_dtype(loss.dtype) == "float32"


def test_mixed_precision_checkpoint_reloads_in_its_precision(tmp_path: Path) -> None:
    """A mixed_bfloat16 run's checkpoint loads with bfloat16 layers and a float32 network call."""
    config = presets.resolve_config(
        "toy", {**DP_CONFIG, "steps": 4, "log_every": 2, "precision": "mixed_bfloat16"}
    )
    runs.train_run(config, tmp_path / "run", progress=False)
    run = runs.load_run(tmp_path / "run")
    assert run.model.network.compute_dtype == "float32"
    assert run.model.network.hidden_layers[0].compute_dtype == "bfloat16"


BF16_STEPS, BF16_BATCH = 1500, 256
BF16_T = (0.1, 0.5)
BF16_EVAL_N = 20_000
BF16_RATIO = 1.5


@pytest.mark.slow
def test_bfloat16_training_reaches_float32_score_error(tmp_path: Path) -> None:
    """Toy preset (shortened) in mixed_bfloat16: relative score error within 1.5x of float32.

    Same seed, data and steps; the EMA score is evaluated against the exact mixture5 score
    under the run's own SDE at t = 0.1 and 0.5 (n = 20 000 noisy points each; the ratio is taken
    on their mean). benchmarks/mixed_precision.py gives the figure for the full preset.
    """
    mixture = mixture5()
    errors = {}
    for precision in ("float32", "mixed_bfloat16"):
        overrides = {
            "precision": precision,
            "steps": BF16_STEPS,
            "batch_size": BF16_BATCH,
            "log_every": 100,
            "checkpoint_every": BF16_STEPS,
            "sample_every": BF16_STEPS,
            "n_sample_preview": 16,
            "sampler_steps": 5,
        }
        runs.train_run(
            presets.resolve_config("toy", overrides), tmp_path / precision, progress=False
        )
        model = runs.load_run(tmp_path / precision).model
        sde = reference_sde(model.sde)  # the preset's SDE, whatever its parameters

        def score(x: np.ndarray, t: np.ndarray, model: Any = model) -> np.ndarray:
            return keras.ops.convert_to_numpy(model.score(x.astype(np.float32), t))

        per_t = [
            relative_score_error(score, mixture, sde, t, np.random.default_rng(7), BF16_EVAL_N)
            for t in BF16_T
        ]
        errors[precision] = float(np.mean(per_t))
    print(f"{BACKEND}: relative score error {errors}")
    assert errors["mixed_bfloat16"] <= BF16_RATIO * errors["float32"], errors


# ------------------------------------------------------------------------------ divergence


def test_diverging_run_stops_and_keeps_its_last_good_checkpoint(tmp_path: Path) -> None:
    """A huge data point makes the loss infinite at step 13: the run fails with a clear message,
    the checkpoint due at step 15 (weights NaN) is not written, latest.keras stays step 10.
    """
    n, batch, bad_step = 1024, 64, 13  # 16 steps per epoch: step 13 is in epoch 0
    x = np.random.default_rng(0).standard_normal((n, 2)).astype(np.float32)
    order = np.random.default_rng([0, 0]).permutation(n)  # StepBatches' epoch 0, seed 0
    x[order[(bad_step - 1) * batch]] = 1e30  # finite, but its squared residual overflows
    np.save(tmp_path / "data.npy", x)
    overrides = {
        **DP_CONFIG,
        "dataset": f"npy:{tmp_path / 'data.npy'}",
        "steps": 20,
        "log_every": 4,  # the loss check lags: the checkpoint at 15 must check the weights
        "checkpoint_every": 5,
        "sample_every": 1000,
    }
    config = presets.resolve_config("toy", overrides)
    with pytest.raises(runs.RunError) as info:
        runs.train_run(config, tmp_path / "run", progress=False)
    message = str(info.value)
    assert "not finite at step 15" in message and "(step 10)" in message, message
    status = json.loads((tmp_path / "run" / runs.STATUS_FILE).read_text())
    assert status["status"] == runs.STATUS_FAILED and status["step"] == 10
    assert not (tmp_path / "run" / "checkpoints" / "step_15.keras").exists()
    run = runs.load_run(tmp_path / "run")
    assert run.step == 10
    for variable in [*run.model.trainable_variables, *run.model.ema_variables]:
        assert np.all(np.isfinite(keras.ops.convert_to_numpy(variable.value)))


# ------------------------------------------------------------------ sampling on several devices


@pytest.mark.slow
def test_two_devices_share_a_batch_with_the_same_per_seed_noise(tmp_path: Path) -> None:
    """`scoregen sample --devices 2` (JAX, the CPU split in two by $SCOREGEN_CPU_DEVICES): each
    batch split over both devices (a per-sample normal lands half on each), and the samples of
    five seeds (padded to six) are those of one device."""
    from tests.keras.untrained_run import POINTS, untrained_run

    run_dir = untrained_run(tmp_path / "run", POINTS)
    single = runs.load_run(run_dir)
    options = {"sampler": "pc", "steps": 20, "predictor": "euler_maruyama", "corrector": "ald"}
    expected = runs.draw_samples(single.model, single.config, seeds=np.arange(5), **options).x
    env = {**os.environ, "KERAS_BACKEND": "jax", distribute.CPU_DEVICES_ENV: str(N_DEVICES)}
    env.pop("XLA_FLAGS", None)
    out = tmp_path / "two"
    command = [sys.executable, "-m", "cli.main", "sample", str(run_dir), "--devices", "2"]
    command += ["--seeds", "0-4", "--steps", "20", "--predictor", "euler_maruyama"]
    command += ["--corrector", "ald", "--out", str(out), "--json", "--no-progress"]
    probe = "from scoregen_keras.sampling.counter_noise import CounterNoise; "
    probe += "from scoregen_keras.training import distribution as d\n"
    probe += "with d.sampling_scope(2):\n    z = CounterNoise(range(4), (2,)).draw(3)\n"
    probe += "print(len(z.sharding.device_set), z.sharding.spec)"
    done = [
        subprocess.run(
            args, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
            timeout=SUBPROCESS_TIMEOUT_S, check=False,
        )
        for args in (command, [sys.executable, "-c", probe])
    ]  # fmt: skip
    for proc in done:
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(done[0].stdout)["devices"] == N_DEVICES
    assert done[1].stdout.split()[0] == str(N_DEVICES) and "'batch'" in done[1].stdout
    with np.load(out.with_suffix(".npz")) as data:
        np.testing.assert_allclose(data["x"], expected, rtol=0, atol=1e-5)


@pytest.mark.skipif(BACKEND == "jax", reason="jax samples on several devices")
def test_sampling_on_several_devices_elsewhere_is_refused_with_the_reason() -> None:
    """TensorFlow and PyTorch: one sentence saying what is missing and what to do instead."""
    with pytest.raises(distribute.DistributeError, match=r"jax backend only.*--shard"):
        with distribute.sampling_scope(2):
            pass
