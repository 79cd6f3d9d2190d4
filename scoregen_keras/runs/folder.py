"""A run folder: where each file lives, atomic writes, and one-sentence errors.

A run folder holds::

    config.json           the fully resolved configuration (backend, data shape and scaler too)
    run.json              status: "running" | "interrupted" | "failed" | "complete", step, times
    checkpoints/          latest.keras and step_N.keras (model, EMA, optimizer and seed state)
    metrics.jsonl         one JSON object a line: step, loss, lr, examples_per_s, wall_time
    samples/step_N.png    sample previews written during training

Every file that another process may read is written atomically (temporary name, then
`os.replace`), and run.json says "complete" only after the final checkpoint is on disk, so an
interrupted or failed run never looks complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # run_classifier imports this module
    pass


STATUS_RUNNING, STATUS_INTERRUPTED = "running", "interrupted"
STATUS_FAILED, STATUS_COMPLETE = "failed", "complete"
CONFIG_FILE = "config.json"
STATUS_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"
SAMPLES_DIR = "samples"
TENSORBOARD_DIR = "tensorboard"
LATEST = "latest.keras"
CLASSIFIER_FILE = "classifier.keras"
CLASSIFIER_REPORT = "classifier.json"
SAMPLE_SUFFIXES = (".npz", ".png")
DEFAULT_FILE_MODE = 0o666
DEFAULT_FOLDER_MODE = 0o777
ERROR_MESSAGE_CHARS = 300
"""Library error messages are cut to their first line and at most this many characters."""


class RunError(ValueError):
    """A run folder cannot be created, resumed, loaded or sampled; the message is one sentence."""


def one_line(error: BaseException) -> str:
    """The first line of an exception's message, shortened: for one-sentence error reports."""
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    if len(first) > ERROR_MESSAGE_CHARS:
        first = first[:ERROR_MESSAGE_CHARS] + "..."
    return first


@dataclasses.dataclass(frozen=True)
class RunPaths:
    """Where each file of a run folder lives."""

    root: Path

    @property
    def config(self) -> Path:
        """The resolved configuration."""
        return self.root / CONFIG_FILE

    @property
    def status(self) -> Path:
        """run.json: status and summary."""
        return self.root / STATUS_FILE

    @property
    def metrics(self) -> Path:
        """metrics.jsonl."""
        return self.root / METRICS_FILE

    @property
    def checkpoints(self) -> Path:
        """Folder of checkpoints."""
        return self.root / CHECKPOINT_DIR

    @property
    def latest(self) -> Path:
        """checkpoints/latest.keras."""
        return self.checkpoints / LATEST

    @property
    def samples(self) -> Path:
        """Folder of sample previews."""
        return self.root / SAMPLES_DIR

    @property
    def classifier(self) -> Path:
        """classifier.keras: the noise-conditional classifier for class guidance."""
        return self.root / CLASSIFIER_FILE

    @property
    def classifier_report(self) -> Path:
        """classifier.json: what the classifier learnt from and its held-out accuracy."""
        return self.root / CLASSIFIER_REPORT

    @property
    def tensorboard(self) -> Path:
        """TensorBoard logs (only when tensorboard is installed)."""
        return self.root / TENSORBOARD_DIR

    def step_checkpoint(self, step: int) -> Path:
        """checkpoints/step_N.keras."""
        return self.checkpoints / f"step_{step}.keras"

    def sample_plot(self, step: int) -> Path:
        """samples/step_N.png."""
        return self.samples / f"step_{step}.png"


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write a JSON file through a temporary name in the same folder and `os.replace`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        make_readable(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def make_readable(path: Path, mode: int = DEFAULT_FILE_MODE) -> None:
    """Give a file written through mkstemp (mode 0600; a folder through mkdtemp, 0700, with
    ``mode=DEFAULT_FOLDER_MODE``) the permissions the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


def copy_atomic(source: Path, target: Path) -> None:
    """Copy a file through a temporary name in the target's folder and `os.replace`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        make_readable(Path(tmp))
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """Read a JSON object, or raise RunError naming `what` it should have been."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise RunError(f"{path.parent} is not a run folder (no {path.name}).") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunError(f"could not read the {what} {path} ({one_line(error)}).") from error
    if not isinstance(payload, dict):
        raise RunError(f"the {what} {path} does not hold a JSON object.")
    return payload


def output_stem(path: str | os.PathLike[str]) -> Path:
    """PATH without a .npz / .png suffix, its folder created and checked writable (RunError)."""
    stem = Path(path)
    if stem.suffix in SAMPLE_SUFFIXES:
        stem = stem.with_suffix("")
    try:
        stem.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{stem.name}.", dir=stem.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise RunError(f"cannot write samples to {stem.parent} ({one_line(error)}).") from error
    return stem


def run_folder(path: str | os.PathLike[str]) -> Path:
    """The run folder of a path that is one, or of a checkpoint file inside one (RunError when
    there is no such folder)."""
    target = Path(path)
    if target.suffix == ".keras":
        target = target.parent.parent if target.parent.name == CHECKPOINT_DIR else target.parent
    if not target.is_dir():
        raise RunError(f"run folder {target} does not exist.")
    return target


def run_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The configuration of a run folder (or of a checkpoint inside one) without loading it."""
    target = run_folder(run_dir)
    config = read_json(RunPaths(target).config, "run configuration")
    if not isinstance(config.get("data"), dict) or "shape" not in config["data"]:
        raise RunError(f"{target} is not a scoregen run folder (its config has no data shape).")
    return config


def save_npz_atomic(path: Path, *, compressed: bool = False, **arrays: np.ndarray) -> Path:
    """Write arrays to path (.npz; np.savez_compressed if `compressed`) through a temporary name
    and os.replace."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    save = np.savez_compressed if compressed else np.savez
    try:
        with os.fdopen(fd, "wb") as handle:
            save(handle, **arrays)
        make_readable(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
