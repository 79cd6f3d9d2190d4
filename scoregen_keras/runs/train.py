"""Training a run: `train_run` writes a fresh run folder or resumes one, through Keras' `fit`."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from scoregen_keras.data import Dataset
from scoregen_keras.runs import plots
from scoregen_keras.runs.build import (
    apply_ncsnv2_rules,
    build_model,
    comparable_config,
    data_info,
    training_data,
)
from scoregen_keras.runs.config import MAX_REFERENCE_POINTS
from scoregen_keras.runs.folder import (
    CONFIG_FILE,
    STATUS_COMPLETE,
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_RUNNING,
    RunError,
    RunPaths,
    copy_atomic,
    make_readable,
    one_line,
    read_json,
    write_json_atomic,
)
from scoregen_keras.runs.load import checkpoint_step, load_latest
from scoregen_keras.runs.sample import draw_samples, plot_samples
from scoregen_keras.training import callbacks as run_callbacks
from scoregen_keras.training import distribution as distribute
from scoregen_keras.training.checkpoint import save_checkpoint
from scoregen_keras.training.presets import (
    ConfigError,
    validate_config,
)
from scoregen_keras.training.score_model import ScoreModel

if TYPE_CHECKING:  # run_classifier imports this module
    pass


# Keys a resumed run may change: the length of training and its bookkeeping, never the model.
RESUMABLE_KEYS = frozenset(
    {
        "steps",
        "log_every",
        "checkpoint_every",
        "sample_every",
        "n_sample_preview",
        "sampler",
        "sampler_sigma_max",
        "sampler_corrector",
        "ald_steps_each",
        "ald_step_lr",
        "distribute",  # where a run trains is not part of the model: resume on other devices
        "devices",
    }
)


class StepBatches(keras.utils.PyDataset):
    """Batches for global steps [start, stop): epoch e is the permutation default_rng([seed, e]).

    The batch of a step depends only on (seed, step), so a resumed run sees the same batches.
    shard=(i, k): this process feeds part i of k equal parts of every global batch (multi-host).
    """

    def __init__(
        self,
        x: np.ndarray,
        batch_size: int,
        start: int,
        stop: int,
        seed: int,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        """Examples x (n, *dims) in model space; batch_size is the global batch."""
        super().__init__()
        self.x, self.batch_size, self.seed = x, int(batch_size), int(seed)
        self.start, self.stop = int(start), int(stop)
        index, count = (int(v) for v in shard)
        if self.batch_size % count or not 0 <= index < count:
            raise RunError(f"cannot feed part {index} of {count} of a batch of {batch_size}.")
        self.local_size = self.batch_size // count
        self.local_offset = index * self.local_size
        self._permutations: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        """Number of steps left."""
        return self.stop - self.start

    def _permutation(self, epoch: int) -> np.ndarray:
        """The shuffled order of data epoch `epoch` (only the last two are kept)."""
        if epoch not in self._permutations:
            if len(self._permutations) > 1:
                self._permutations.pop(min(self._permutations))
            rng = np.random.default_rng([self.seed, epoch])
            self._permutations[epoch] = rng.permutation(len(self.x))
        return self._permutations[epoch]

    def __getitem__(self, index: int) -> np.ndarray:
        """The batch (this process's part of it) of global step start + index + 1."""
        n = len(self.x)
        first = (self.start + index) * self.batch_size + self.local_offset
        positions = np.arange(self.local_size) + first
        epochs, offsets = np.divmod(positions, n)
        order = np.empty_like(positions)
        for epoch in np.unique(epochs):
            chosen = epochs == epoch
            order[chosen] = self._permutation(int(epoch))[offsets[chosen]]
        return self.x[order]


@dataclasses.dataclass
class TrainResult:
    """What `train_run` did: where the run is and how it ended."""

    run_dir: Path
    status: str
    step: int
    steps: int
    checkpoint: Path | None
    sample_plot: Path | None
    metrics: Path
    config: Path
    seconds: float
    final_loss: float | None

    def to_json(self) -> dict[str, Any]:
        """Plain-JSON summary (paths as strings)."""
        payload = dataclasses.asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in payload.items()}


class _NaNGuard(run_callbacks.StepCallback):
    """Stop `fit` when the running loss is not finite (checked every `every` steps).

    `weights_finite` is the check before each checkpoint, so no checkpoint holds NaN weights.
    """

    def __init__(self, every: int, initial_step: int = 0) -> None:
        """Check every `every` steps (each check synchronises with the device)."""
        super().__init__(initial_step)
        self.every = int(every)
        self.diverged_at: int | None = None

    def stop(self, step: int) -> None:
        """Record the first step found diverged and stop `fit`."""
        if self.diverged_at is None:
            self.diverged_at = step
        self.model.stop_training = True

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Record the step and stop when the loss is NaN or infinite."""
        step = self.global_step(batch)
        if step % self.every == 0 and logs and not np.isfinite(float(logs["loss"])):
            self.stop(step)

    def weights_finite(self, model: ScoreModel, step: int) -> bool:
        """True when every weight and EMA weight is finite; else stop (a sync with the device)."""
        for variable in [*model.trainable_variables, *model.ema_variables]:
            if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable.value))):
                self.stop(step)
                return False
        return True


def _prepare_folder(paths: RunPaths) -> None:
    """Create a fresh run folder (and its subfolders), or raise RunError."""
    if paths.config.exists():
        raise RunError(
            f"{paths.root} already holds a run; pass --resume to continue it "
            "or choose another --out."
        )
    try:
        for folder in (paths.root, paths.checkpoints, paths.samples):
            folder.mkdir(parents=True, exist_ok=True)
        probe = paths.root / ".write-test"
        probe.write_text("", encoding="utf-8")
        probe.unlink()
    except OSError as error:
        raise RunError(
            f"cannot write to the output folder {paths.root} ({one_line(error)})."
        ) from error


def _truncate_metrics(path: Path, step: int) -> float:
    """Keep only metrics lines with step <= `step`; return the last kept wall time."""
    if not path.exists():
        return 0.0
    kept, elapsed = [], 0.0
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a kill
        if isinstance(record, dict) and int(record.get("step", step + 1)) <= step:
            kept.append(line)
            elapsed = float(record.get("wall_time", elapsed))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
    os.replace(tmp, path)
    return elapsed


def _resume_config(paths: RunPaths, overrides: dict[str, Any]) -> dict[str, Any]:
    """The stored config with the resumable overrides applied; others must agree with it."""
    config = read_json(paths.config, "run configuration")
    if "imported_from" in config:
        raise RunError(
            f"{paths.root} holds an imported model, not a scoregen training run, so it cannot be "
            "resumed; train a new run with another --out."
        )
    for key, value in overrides.items():
        if value is None or key in ("backend", "preset"):
            continue
        if key == "steps" and value != config["steps"] and config.get("lr_decay", "none") != "none":
            raise RunError(
                f"cannot change steps when resuming: the run's learning rate decays to zero at "
                f"step {config['steps']} (lr_decay {config['lr_decay']!r}); start a new run "
                "instead."
            )
        if key in RESUMABLE_KEYS:
            config[key] = value
        elif config.get(key) != value:
            raise RunError(
                f"cannot change {key} when resuming (the run has {config.get(key)!r}); "
                "start a new run with another --out instead."
            )
    try:
        validate_config(config)
    except ConfigError as error:
        raise RunError(str(error)) from error
    return config


def train_run(
    config: dict[str, Any],
    out_dir: str | os.PathLike[str],
    resume: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a ScoreModel from a resolved config into `out_dir`, or resume the run there.

    config["distribute"] / ["devices"] / ["precision"] say where and how (`distribute`); with
    several hosts, process 0 writes `out_dir` and process i > 0 writes `out_dir/worker-i`.
    On SIGINT the current step finishes, a checkpoint is saved and the result has status
    "interrupted". Raises RunError / DataError / ConfigError with one-sentence messages.
    """
    log = log or (lambda message: None)
    stored = RunPaths(Path(out_dir)).config
    placement_config = (
        _resume_config(RunPaths(Path(out_dir)), config) if resume and stored.exists() else config
    )
    try:
        with distribute.training_scope(placement_config) as placement:
            paths = RunPaths(Path(out_dir))
            if not placement.is_chief:
                paths = RunPaths(paths.root / f"worker-{placement.process_index}")
            if placement.mode != distribute.NONE:
                log(f"data-parallel over {placement.devices} devices: {placement.description}")
            return _train_in_scope(config, paths, resume, progress, log, placement)
    except distribute.DistributeError as error:
        raise RunError(str(error)) from error


def _train_in_scope(
    config: dict[str, Any],
    paths: RunPaths,
    resume: bool,
    progress: bool,
    log: Callable[[str], None],
    placement: distribute.Placement,
) -> TrainResult:
    """train_run inside the run's distribution scope (models are built / loaded here)."""
    placement_info = {
        "devices": placement.devices,
        "processes": placement.process_count,
        "description": placement.description,
    }
    if resume:
        if not paths.config.exists():
            raise RunError(f"{paths.root} holds no run to resume (no {CONFIG_FILE}).")
        config = _resume_config(paths, config)
        dataset = training_data(config, progress)
        if list(dataset.shape) != list(config["data"]["shape"]):
            raise RunError(
                f"the data now have examples of shape {dataset.shape}, but the run was trained "
                f"on {tuple(config['data']['shape'])}."
            )
        model = load_latest(paths, config)
        _check_preview_steps(model, config)
        initial_step = checkpoint_step(model)
        if initial_step >= int(config["steps"]):
            raise RunError(
                f"the run at {paths.root} has already trained {initial_step} of "
                f"{config['steps']} steps; pass --steps N with N > {initial_step} to continue."
            )
        elapsed_offset = _truncate_metrics(paths.metrics, initial_step)
        config["backend"] = keras.backend.backend()
        config["placement"] = placement_info
        write_json_atomic(paths.config, config)
        log(f"resuming {paths.root} from step {initial_step}")
    else:
        dataset = training_data(config, progress)
        config = dict(apply_ncsnv2_rules(config, dataset.x, log))
        model = build_model(config, dataset.shape)
        _check_preview_steps(model, config)
        _prepare_folder(paths)
        config["backend"] = keras.backend.backend()
        config["ema"] = model.ema_rate  # None meant "the SDE's default": store the rate used
        config["data"] = data_info(dataset)
        config["network"] = {
            "class": type(model.network).__name__,
            "config": comparable_config(model.network.get_config()),
        }
        config["placement"] = placement_info
        write_json_atomic(paths.config, config)
        initial_step, elapsed_offset = 0, 0.0
        paths.metrics.write_text("", encoding="utf-8")
    return _fit(
        model, config, dataset, paths, initial_step, elapsed_offset, progress, log, placement
    )


def _check_preview_steps(model: ScoreModel, config: dict[str, Any]) -> None:
    """Refuse before training a PC preview chain that the first preview would refuse."""
    steps = config.get("sampler_steps")
    if config["sampler"] == "pc" and model.sde is not None and steps is not None:
        try:
            model.sde.with_levels(int(steps)).check_discrete_chain()
        except ValueError as error:
            raise RunError(f"sampler_steps = {steps}: {error}") from error


def _status(paths: RunPaths, status: str, step: int, **extra: Any) -> None:
    """Write run.json atomically."""
    write_json_atomic(
        paths.status,
        {"status": status, "step": step, "updated": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra},
    )


def _fit(
    model: ScoreModel,
    config: dict[str, Any],
    dataset: Dataset,
    paths: RunPaths,
    initial_step: int,
    elapsed_offset: float,
    progress: bool,
    log: Callable[[str], None],
    placement: distribute.Placement = distribute.SINGLE_DEVICE,
) -> TrainResult:
    """Run `fit` over the remaining steps with the run's callbacks; finish or mark the run."""
    total = int(config["steps"])
    saved: dict[str, Any] = {"checkpoint": None, "plot": None}
    reference = dataset.x[:MAX_REFERENCE_POINTS] if dataset.kind == "points" else None
    log_every = int(config["log_every"])
    guard = _NaNGuard(log_every, initial_step)

    def save(model_now: keras.Model, step: int) -> None:
        """latest.keras, then a copy as step_N.keras (both atomic); never non-finite weights."""
        if not guard.weights_finite(model_now, step):
            return  # keep the last good checkpoint
        save_checkpoint(model_now, paths.latest)
        make_readable(paths.latest)
        copy_atomic(paths.latest, paths.step_checkpoint(step))
        saved["checkpoint"] = (step, paths.latest)

    def preview(model_now: keras.Model, step: int) -> None:
        """Sample with the configured sampler and write samples/step_N.png."""
        n = int(config["n_sample_preview"])
        if config["data"]["kind"] == "images":
            n = min(n, plots.MAX_GRID_IMAGES)  # the grid shows no more; sampling more costs minutes
        samples = draw_samples(
            model_now,
            config,
            n,
            sampler=config["sampler"],
            seed=int(config["seed"]),
            steps=config["sampler_steps"],
        )
        title = f"step {step}: {samples.sampler} (NFE {samples.nfe})"
        path = plot_samples(paths.sample_plot(step), samples.x, config, reference, title)
        saved["plot"] = (step, path)

    def interrupted(model_now: keras.Model, step: int) -> None:
        """Save the interrupted state."""
        save(model_now, step)

    metrics = run_callbacks.MetricsLogger(
        paths.metrics, log_every, int(config["batch_size"]), initial_step, elapsed_offset
    )
    stopper = run_callbacks.GracefulInterrupt(interrupted, initial_step)
    callbacks: list[keras.callbacks.Callback] = [
        metrics,
        guard,
        run_callbacks.PeriodicCheckpoint(save, int(config["checkpoint_every"]), initial_step),
        run_callbacks.SamplePreview(preview, int(config["sample_every"]), initial_step),
        stopper,
    ]
    if progress:
        callbacks.append(
            run_callbacks.ProgressBar(total, int(config["batch_size"]), initial_step, log_every)
        )
    board = run_callbacks.tensorboard_callback(paths.tensorboard, log_every)
    if board is not None:
        callbacks.append(board)
    batches = StepBatches(
        dataset.x,
        int(config["batch_size"]),
        initial_step,
        total,
        int(config["seed"]),
        shard=placement.feed_shard,
    )
    _status(paths, STATUS_RUNNING, initial_step, steps=total)
    try:
        # shuffle=False: fit would shuffle the order of the steps (the batch of a step is fixed)
        model.fit(batches, epochs=1, verbose=0, callbacks=callbacks, shuffle=False)
    except KeyboardInterrupt:
        _status(paths, STATUS_INTERRUPTED, _saved_step(saved, initial_step), steps=total)
        raise
    except Exception as error:
        _status(paths, STATUS_FAILED, _saved_step(saved, initial_step), error=one_line(error))
        raise
    final_loss = None if metrics.last is None else metrics.last["loss"]
    finished = guard.diverged_at is None and stopper.stopped_at is None
    if finished and (saved["checkpoint"] is None or saved["checkpoint"][0] != total):
        save(model, total)  # checks the weights first, like every checkpoint
    if guard.diverged_at is not None:
        good = _saved_step(saved, initial_step)
        _status(paths, STATUS_FAILED, good, error="loss is not finite")
        raise RunError(_diverged_message(config, paths, guard.diverged_at, good))
    if stopper.stopped_at is not None:
        step = stopper.stopped_at
        _status(paths, STATUS_INTERRUPTED, step, steps=total)
        status = STATUS_INTERRUPTED
    else:
        step = total
        if saved["plot"] is None or saved["plot"][0] != step:
            preview(model, step)
        status = STATUS_COMPLETE
        _status(paths, STATUS_COMPLETE, step, steps=total, seconds=round(metrics.elapsed(), 3))
    return TrainResult(
        run_dir=paths.root,
        status=status,
        step=step,
        steps=total,
        checkpoint=paths.latest,
        sample_plot=None if saved["plot"] is None else saved["plot"][1],
        metrics=paths.metrics,
        config=paths.config,
        seconds=metrics.elapsed(),
        final_loss=final_loss,
    )


def _diverged_message(config: dict[str, Any], paths: RunPaths, step: int, good: int) -> str:
    """One sentence: where the loss stopped being finite, what was kept, what to try."""
    kept = (
        f"the last good checkpoint (step {good}) is {paths.latest}"
        if paths.latest.exists()
        else "no checkpoint was saved before that"
    )
    hint = "try a smaller --lr"
    if config.get("precision") == distribute.MIXED_FLOAT16:
        hint += " or --precision mixed_bfloat16 (float16 overflows above 65504)"
    return f"training diverged: the loss is not finite at step {step}; {kept}; {hint}."


def _saved_step(saved: dict[str, Any], initial_step: int) -> int:
    """Step of the last checkpoint written (the initial step when none was)."""
    return initial_step if saved["checkpoint"] is None else saved["checkpoint"][0]
