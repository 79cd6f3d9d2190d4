"""Loading a run folder back: its config, its checkpoint (safe mode) and what it holds."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras

from scoregen_keras.data import Scaler
from scoregen_keras.runs.build import comparable_config
from scoregen_keras.runs.config import config_scaler, require_sde
from scoregen_keras.runs.folder import RunError, RunPaths, one_line, read_json, run_folder
from scoregen_keras.sde import SDE
from scoregen_keras.training import distribution as distribute
from scoregen_keras.training.checkpoint import CheckpointError, load_checkpoint
from scoregen_keras.training.score_model import ScoreModel

if TYPE_CHECKING:  # run_classifier imports this module
    pass


def checkpoint_step(model: ScoreModel) -> int:
    """Training steps a (loaded) model has taken: its EMA counter, which every step advances.

    Not optimizer.iterations: that skips the steps dynamic loss scaling drops (mixed_float16), so
    a run would report, and on resume redo, fewer steps than it took.
    """
    return int(keras.ops.convert_to_numpy(model.ema_updates))


def load_latest(paths: RunPaths, config: dict[str, Any]) -> ScoreModel:
    """Load checkpoints/latest.keras (safe mode) and check it matches the run's config."""
    return _load_model(paths.latest, config)


def load_saved_model(path: Path, what: str, kind: type[Any], compile: bool) -> Any:
    """A `.keras` file of a `kind` model, loaded in safe mode; every failure is one RunError
    sentence naming `what` the file is."""
    try:
        model = load_checkpoint(path, compile=compile, safe_mode=True)
    except CheckpointError as error:
        raise RunError(f"{what} {path} is corrupt or truncated.") from error
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise RunError(f"could not load {what} {path} ({one_line(error)}).") from error
    if not isinstance(model, kind):
        raise RunError(f"{what} {path} holds a {type(model).__name__}, not a {kind.__name__}.")
    return model


def _load_model(path: Path, config: dict[str, Any]) -> ScoreModel:
    """Load a checkpoint in safe mode; raise RunError unless it is this run's kind of model."""
    if not path.exists():
        raise RunError(f"no checkpoint at {path}; the run saved none yet.")
    # the network's layers take the run's precision again (its own call is float32)
    with distribute.precision_scope(config.get("precision", distribute.FLOAT32)):
        model = load_saved_model(path, "checkpoint", ScoreModel, compile=True)
    stored = config.get("network")
    if stored is not None and (
        type(model.network).__name__ != stored["class"]
        or comparable_config(model.network.get_config()) != comparable_config(stored["config"])
    ):
        raise RunError(
            f"checkpoint {path} holds a {type(model.network).__name__} network that does not "
            f"match the run's model '{config['model']}'; the run folder mixes different models."
        )
    return model


@dataclasses.dataclass
class Run:
    """A loaded run: its folder, resolved config, model (EMA inside) and the checkpoint's step."""

    paths: RunPaths
    config: dict[str, Any]
    model: ScoreModel
    step: int
    status: str
    checkpoint: Path

    @property
    def scaler(self) -> Scaler:
        """Map from model space back to the data's original scale."""
        return config_scaler(self.config)


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Load a run folder (its latest checkpoint) or a checkpoint file inside one."""
    target = run_folder(run_dir)
    checkpoint = Path(run_dir) if Path(run_dir).suffix == ".keras" else None
    paths = RunPaths(target)
    config = read_json(paths.config, "run configuration")
    for key in ("data", "model", "sde"):
        if key not in config:
            raise RunError(f"{paths.config} is not a scoregen run configuration (no '{key}').")
    checkpoint = checkpoint or paths.latest
    model = _load_model(checkpoint, config)
    shape = tuple(config["data"]["shape"])
    built = model.get_build_config().get("input_shape")
    if built is not None and tuple(built[1:]) != shape:
        raise RunError(
            f"checkpoint {checkpoint} was built for examples of shape {tuple(built[1:])}, but "
            f"the run's data have shape {shape}."
        )
    status = "unknown"
    if paths.status.exists():
        status = str(read_json(paths.status, "run status").get("status", status))
    return Run(paths, config, model, checkpoint_step(model), status, checkpoint)


def run_sde(run: Run, task: str = "this task") -> SDE:
    """The run's SDE (RunError for a run of discrete NCSN noise levels)."""
    require_sde(run.config, task)
    return run.model.sde
