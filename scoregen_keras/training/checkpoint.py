"""Checkpoint helpers: atomic `.keras` saves and loads with a clear error for damaged files."""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import keras

KERAS_SUFFIX = ".keras"
# Members every `.keras` archive written by `model.save` holds.
REQUIRED_MEMBERS = ("metadata.json", "config.json", "model.weights.h5")
UNZIPPED = "unzipped"  # save_checkpoint's folder of the archive's files


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read: missing members, corrupt or truncated archive."""


def save_checkpoint(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """Save `model` (weights, EMA, optimizer and seed state) to `path` atomically; return the path.

    Keras writes the model unzipped into a temporary folder beside `path`, its weights straight
    to disk, and the folder's files become the `.keras` archive (the layout Keras' own zipped save
    writes, uncompressed as it does); that archive is moved over `path` with `os.replace`, so a
    crash mid-save never leaves a half-written checkpoint under `path`. Keras' zipped save would
    hold the weights file in memory twice over whenever it fits in half the free memory.
    """
    path = Path(path)
    if path.suffix != KERAS_SUFFIX:
        raise ValueError(f"checkpoint path must end in {KERAS_SUFFIX!r}, got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{path.stem}.", dir=path.parent) as folder:
        unzipped = Path(folder) / UNZIPPED
        model.save(unzipped, zipped=False)
        archive = Path(folder) / path.name
        with zipfile.ZipFile(archive, "w") as zipped:
            for member in sorted(unzipped.rglob("*")):
                if member.is_file():
                    zipped.write(member, member.relative_to(unzipped).as_posix())
        os.replace(archive, path)
    return path


def check_checkpoint(path: str | os.PathLike[str]) -> None:
    """Raise CheckpointError unless `path` is a complete, uncorrupted `.keras` archive."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {str(path)!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            missing = [m for m in REQUIRED_MEMBERS if m not in archive.namelist()]
            bad_member = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise CheckpointError(
            f"{str(path)!r} is not a readable checkpoint (corrupt or truncated archive: {err})."
        ) from err
    if missing or bad_member is not None:
        reason = f"missing {missing}" if missing else f"bad CRC in {bad_member!r}"
        raise CheckpointError(f"{str(path)!r} is not a readable checkpoint ({reason}).")


def load_checkpoint(
    path: str | os.PathLike[str],
    compile: bool = True,
    safe_mode: bool = True,
    custom_objects: dict[str, Any] | None = None,
) -> keras.Model:
    """Load a checkpoint from `save_checkpoint` (or `model.save`), ready to resume training."""
    # registers ScoreModel, the networks and the schedules before deserialisation
    from scoregen_keras.training import score_model  # noqa: F401

    check_checkpoint(path)
    return keras.saving.load_model(
        path, custom_objects=custom_objects, compile=compile, safe_mode=safe_mode
    )
