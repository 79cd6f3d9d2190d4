"""Published score-SDE models as run folders: score_sde_pytorch checkpoints and diffusers folders.

`import_score_sde` reads a ``checkpoint_N.pth`` of yang-song/score_sde_pytorch (a dict with
``model``: the state_dict of a ``DataParallel`` model, its keys prefixed ``module.``; ``ema``:
``decay``, ``num_updates`` and ``shadow_params``, the average of every trainable parameter as a
list in ``named_parameters()`` order; ``optimizer``; ``step``) through
``torch.load(weights_only=True)``, memory-mapped, so a pickle that would run code is refused and
only the weights chosen are read. `import_diffusers` reads a ``ScoreSdeVePipeline`` folder (or
its ``unet/`` folder alone), or a hub id through huggingface_hub.

Either writes an ordinary run folder that every command reads (`load_run`): config.json,
run.json and checkpoints/latest.keras, whose live and EMA weights are both the chosen weights
(``--weights ema``, the default, as the paper samples; or ``model``, the raw training weights).
config.json states the original's conventions exactly (``preconditioning = "score_sde"``: data
in [0, 1] for VE, the network mapping x -> 2x - 1 itself, score = output / sigma; VP and sub-VP
centred in [-1, 1], score = -output / std(t)), its pixel scaler (0..255 onto those ranges), the
original's PC sampler settings and ``imported_from``: format, file, sha256, weights, step and the
translated configuration. The folder is written under a temporary name beside ``out`` and
renamed at the end, so a refusal or a crash leaves nothing at ``out``. Every refusal is one
RunError sentence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from scoregen_keras import backend
from scoregen_keras.choices import DEFAULT_IMPORT_WEIGHTS, IMPORT_WEIGHTS, PC_SAMPLER
from scoregen_keras.data import PIXEL_MAX_8BIT, model_pixel_range, pixel_scaler
from scoregen_keras.networks.diffusers_ncsnpp import (
    SCHEDULER_CLASS,
    load_diffusers_weights,
    read_diffusers_folder,
    translate_scheduler_config,
)
from scoregen_keras.networks.ncsnpp import NCSNpp
from scoregen_keras.networks.score_sde_config import (
    BUILTIN_CONFIGS,
    SIGMAS_BUFFER,
    ImportSpec,
    load_score_sde_weights,
    score_sde_spec,
)
from scoregen_keras.networks.score_sde_weights import (
    ImportRefusedError,
    Target,
    check_shapes,
    score_sde_targets,
)
from scoregen_keras.runs.build import comparable_config
from scoregen_keras.runs.folder import (
    DEFAULT_FOLDER_MODE,
    STATUS_COMPLETE,
    RunError,
    RunPaths,
    make_readable,
    one_line,
    read_json,
    write_json_atomic,
)
from scoregen_keras.training.checkpoint import save_checkpoint
from scoregen_keras.training.score_model import SDE_NAMES, ScoreModel

SCORE_SDE_FORMAT = "score_sde_pytorch"
DIFFUSERS_FORMAT = "diffusers"
DATA_PARALLEL_PREFIX = "module."  # score_sde_pytorch saves the state_dict of a DataParallel model
CHECKPOINT_ENTRIES = ("model", "ema")  # also "optimizer" and "step"; the optimizer is not read
HASH_CHUNK_BYTES = 1 << 20
IMPORT_SEED = 0  # the run's seed: what `evaluate` draws its data with; no training happens
SHORT_SDE_NAMES = {name: short for short, name in SDE_NAMES.items()}  # "VESDE" -> "ve"
SCORE_SDE_DATASETS = {"CIFAR10": "cifar10"}  # the original's data.dataset -> a scoregen data set
HUB_MODEL_FILES = (
    "*.json",
    "*.safetensors",
    "*.bin",
)  # configs and weights, at the top or in unet/
DIFFUSERS_WEIGHTS = "unet"  # a diffusers folder publishes one set of weights


@dataclasses.dataclass(frozen=True)
class ScoreSdeCheckpoint:
    """What score_sde_pytorch's ``checkpoint_N.pth`` holds that an import reads."""

    model_state: dict[str, np.ndarray]  # keys without the DataParallel ``module.`` prefix
    shadow_params: list[np.ndarray]  # the EMA of the trainable parameters, named_parameters order
    step: int
    ema_updates: int  # ema.num_updates: the count score_sde's EMA decay min(rate, ...) reads


@dataclasses.dataclass(frozen=True)
class ImportResult:
    """Where an import wrote its run and what it holds."""

    run_dir: Path
    source: dict[str, Any]  # config.json's imported_from
    parameters: int
    conventions: str
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- score_sde_pytorch


def _named_arrays(value: Any, where: str) -> dict[str, np.ndarray]:
    """A checkpoint entry that must be a dict of named tensors (RunError otherwise)."""
    if not isinstance(value, dict) or not all(
        isinstance(key, str) and isinstance(array, np.ndarray) for key, array in value.items()
    ):
        raise RunError(f"{where} is not a state_dict (a dict of named tensors).")
    return value


def read_score_sde_checkpoint(path: str | os.PathLike[str]) -> ScoreSdeCheckpoint:
    """The model state (``module.`` stripped), EMA shadow parameters and step of a
    score_sde_pytorch ``checkpoint_N.pth``, its tensors memory-mapped (RunError otherwise)."""
    if not Path(path).is_file():
        raise RunError(f"checkpoint {path} does not exist.")
    try:
        loaded = backend.read_torch_file(path, mmap=True)
    except ModuleNotFoundError:
        raise RunError(
            f"reading the PyTorch checkpoint {path} needs PyTorch: {backend.TORCH_INSTALL_HINT}."
        ) from None
    except ValueError as error:
        raise RunError(f"{path} is not a readable checkpoint: {error}.") from None
    if not isinstance(loaded, dict) or any(entry not in loaded for entry in CHECKPOINT_ENTRIES):
        held = sorted(loaded) if isinstance(loaded, dict) else type(loaded).__name__
        raise RunError(
            f"{path} is not a score_sde_pytorch checkpoint (a dict with model, ema, optimizer and "
            f"step); it holds {held}."
        )
    model_state = _named_arrays(loaded["model"], f"the 'model' entry of {path}")
    if model_state and all(key.startswith(DATA_PARALLEL_PREFIX) for key in model_state):
        model_state = {key[len(DATA_PARALLEL_PREFIX) :]: v for key, v in model_state.items()}
    ema = loaded["ema"]
    shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
    if not isinstance(shadow, list) or not all(isinstance(v, np.ndarray) for v in shadow):
        raise RunError(f"the 'ema' entry of {path} holds no list of shadow_params tensors.")
    try:
        step = int(loaded.get("step", 0))
        ema_updates = int(ema.get("num_updates", step))
    except (TypeError, ValueError):
        raise RunError(f"the step or ema.num_updates of {path} is not a number.") from None
    return ScoreSdeCheckpoint(model_state, shadow, step, ema_updates)


def trainable_keys(model_state: Mapping[str, Any], targets: Mapping[str, Target]) -> list[str]:
    """The keys score_sde's EMA averages, in the checkpoint's (``named_parameters``) order: those
    whose Keras variable is trainable, so neither the ``sigmas`` buffer nor the Fourier ``W``."""
    return [key for key in model_state if key in targets and targets[key].variable.trainable]


def ema_state_dict(
    model_state: Mapping[str, np.ndarray],
    shadow_params: Sequence[np.ndarray],
    keys: Sequence[str],
) -> dict[str, np.ndarray]:
    """The model state with its trainable entries ``keys`` replaced, in order, by the EMA's
    shadow parameters; RunError for a count or a shape that differs."""
    if len(shadow_params) != len(keys):
        raise RunError(
            f"the checkpoint's ema.shadow_params holds {len(shadow_params)} tensors, but its "
            f"model has {len(keys)} trainable parameters."
        )
    for index, (key, shadow) in enumerate(zip(keys, shadow_params, strict=True)):
        if shadow.shape != model_state[key].shape:
            raise RunError(
                f"ema.shadow_params[{index}] has shape {shadow.shape}, but {key!r}, trainable "
                f"parameter {index} of the model, has {model_state[key].shape}."
            )
    return {**model_state, **dict(zip(keys, shadow_params, strict=True))}


def _score_sde_loader(
    checkpoint: ScoreSdeCheckpoint, config: Mapping[str, Any], weights: str, what: str
) -> Callable[[NCSNpp], None]:
    """assign(net): check the checkpoint against the network, then give it the chosen weights."""

    def assign(net: NCSNpp) -> None:
        targets = score_sde_targets(net)
        state = {k: v for k, v in checkpoint.model_state.items() if k != SIGMAS_BUFFER}
        check_shapes(targets, state, what)  # the model state as the configuration needs it
        keys = trainable_keys(checkpoint.model_state, targets)
        averaged = ema_state_dict(checkpoint.model_state, checkpoint.shadow_params, keys)
        chosen = averaged if weights == "ema" else checkpoint.model_state
        load_score_sde_weights(net, chosen, config, what=what)

    return assign


def _score_sde_config(config: str | os.PathLike[str] | Mapping[str, Any]) -> tuple[Any, str]:
    """(a built-in name or a config.to_dict() mapping, how to name it) of --config."""
    if isinstance(config, Mapping):
        return config, "the given configuration"
    text = os.fspath(config)
    if os.path.isfile(text):
        return read_json(Path(text), "score_sde configuration"), text
    if text.endswith(".json"):
        raise RunError(f"configuration file {text} does not exist.")
    return text, text


def import_score_sde(
    checkpoint: str | os.PathLike[str],
    config: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    weights: str = DEFAULT_IMPORT_WEIGHTS,
) -> ImportResult:
    """Import a score_sde_pytorch checkpoint with its configuration (a built-in name, a JSON
    file of ``config.to_dict()`` or that mapping) as the run folder ``out``."""
    if weights not in IMPORT_WEIGHTS:
        raise RunError(f"unknown weights {weights!r}; choose {' or '.join(IMPORT_WEIGHTS)}.")
    out = _fresh_target(out)
    original, config_name = _score_sde_config(config)
    try:
        spec = score_sde_spec(original)
    except ImportRefusedError as error:
        raise RunError(f"configuration {config_name}: {error}") from None
    mapping = original if isinstance(original, Mapping) else BUILTIN_CONFIGS[original]
    read = read_score_sde_checkpoint(checkpoint)
    what = f"checkpoint of configuration {config_name}"
    net = _imported_network(spec, _score_sde_loader(read, mapping, weights, what))
    ema_updates = read.ema_updates
    del read  # its memory-mapped tensors leave memory before the EMA copy is made
    model = _score_model(spec, net, ema_updates)
    source = {
        "format": SCORE_SDE_FORMAT,
        "file": str(Path(checkpoint).resolve()),
        "sha256": file_sha256(checkpoint),
        "weights": weights,
        "config": config_name,
        "spec": spec.to_dict(),
    }
    dataset = SCORE_SDE_DATASETS.get(str(mapping.get("data", {}).get("dataset")))
    return _write_run(out, model, spec, source, dataset)


# ----------------------------------------------------------------------------- diffusers


def _is_hub_id(text: str) -> bool:
    """'owner/name', as the hub names a model (and no folder here is named so)."""
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def diffusers_folder(source: str | os.PathLike[str]) -> Path:
    """A diffusers folder: the given one, or a hub id's download through huggingface_hub."""
    path = Path(source)
    if path.is_dir():
        return path
    text = os.fspath(source)
    if not _is_hub_id(text):
        raise RunError(f"model folder {text} does not exist.")
    try:
        import huggingface_hub
    except ImportError:
        raise RunError(
            f"{text} is not a folder here; to download the hub model {text}, pip install "
            "huggingface_hub."
        ) from None
    try:
        folder = huggingface_hub.snapshot_download(text, allow_patterns=list(HUB_MODEL_FILES))
    except Exception as error:  # offline, unknown repository, gated model: hub errors vary
        raise RunError(
            f"could not download the hub model {text} ({one_line(error)}); without a network, "
            "pass the folder of a downloaded copy."
        ) from None
    return Path(folder)


def _diffusers_loader(state_dict: Mapping[str, np.ndarray], what: str) -> Callable[[NCSNpp], None]:
    """assign(net): the UNet's weights onto the network (keys and shapes checked)."""

    def assign(net: NCSNpp) -> None:
        load_diffusers_weights(net, state_dict, what=what)

    return assign


def import_diffusers(source: str | os.PathLike[str], out: str | os.PathLike[str]) -> ImportResult:
    """Import a diffusers ScoreSdeVePipeline folder, its unet/ folder or a hub id as the run
    folder ``out`` (a unet/ folder alone takes ScoreSdeVeScheduler's default SDE)."""
    out = _fresh_target(out)
    folder = diffusers_folder(source)
    try:
        spec, state_dict = read_diffusers_folder(folder)
    except ImportRefusedError as error:
        raise RunError(str(error)) from None
    notes: tuple[str, ...] = ()
    if not spec.sde:  # a unet/ folder alone
        sde, sampler = translate_scheduler_config({"_class_name": SCHEDULER_CLASS})
        spec = dataclasses.replace(spec, sde=sde, sampler=sampler)
        notes = (f"no scheduler: the SDE and sampler are {SCHEDULER_CLASS}'s defaults",)
    net = _imported_network(spec, _diffusers_loader(state_dict, f"UNet of {folder}"))
    del state_dict  # leaves memory before the EMA copy is made
    model = _score_model(spec, net, ema_updates=0)
    weights_file = Path(spec.source)
    source_info = {
        "format": DIFFUSERS_FORMAT,
        "file": str(weights_file.resolve()),
        "sha256": file_sha256(weights_file),
        "weights": DIFFUSERS_WEIGHTS,
        "config": os.fspath(source),
        "spec": spec.to_dict(),
    }
    if notes:
        source_info["notes"] = list(notes)
    return _write_run(out, model, spec, source_info, None, notes)


# ----------------------------------------------------------------------------- the run folder


def _imported_network(spec: ImportSpec, assign: Callable[[NCSNpp], None]) -> NCSNpp:
    """The spec's network, given its weights by ``assign`` (refusals as RunError)."""
    net = spec.build_network()
    try:
        assign(net)
    except ImportRefusedError as error:
        raise RunError(str(error)) from None
    return net


def _score_model(spec: ImportSpec, net: NCSNpp, ema_updates: int) -> ScoreModel:
    """The spec's ScoreModel of an imported network: its EMA, made from the network's weights as
    the model is built, holds the same ones; ``ema_updates`` the original's EMA count."""
    model = ScoreModel(
        net,
        sde=spec.sde,
        preconditioning=spec.preconditioning,
        ema_rate=spec.ema_rate,
        weighting=spec.loss.get("weighting", "std2"),
        reduce=spec.loss.get("reduce"),
        seed=IMPORT_SEED,
        input_shape=(None, *spec.image_shape),
    )
    model.ema_updates.assign(ema_updates)
    return model


def _fresh_target(out: str | os.PathLike[str]) -> Path:
    """--out as a Path that does not exist yet (RunError: an import never writes into a folder)."""
    target = Path(out)
    if target.exists():
        raise RunError(f"{target} already exists; choose another --out for the imported run.")
    return target


def imported_config(
    spec: ImportSpec, model: ScoreModel, source: dict[str, Any], dataset: str | None
) -> dict[str, Any]:
    """config.json of an imported run: the original's conventions, data scale and sampler."""
    scaler = pixel_scaler(PIXEL_MAX_8BIT, centered=spec.data_centered)
    sde_config = {key: value for key, value in spec.sde.items() if key != "type"}
    sde_config["num_scales"] = sde_config.pop("N")
    sampler = dict(spec.sampler)
    return {
        "imported_from": source,
        "backend": keras.backend.backend(),
        "model": spec.network,
        "network": {
            "class": type(model.network).__name__,
            "config": comparable_config(model.network.get_config()),
        },
        "sde": SHORT_SDE_NAMES[spec.sde["type"]],
        "sde_config": sde_config,
        "preconditioning": spec.preconditioning,
        "conventions": spec.conventions,
        "ema": model.ema_rate,
        "loss": model.loss_name,
        "weighting": model.weighting,
        "reduce": model.reduce,
        "seed": IMPORT_SEED,
        "precision": "float32",
        "centered": spec.data_centered,
        "dataset": dataset,
        "data": {
            "name": dataset,
            "kind": "images",
            "shape": list(spec.image_shape),
            "scaler": scaler.to_config(),
            "value_range": list(model_pixel_range(scaler)),
        },
        "sampler": sampler.pop("method", PC_SAMPLER),
        "sampler_config": sampler,
    }


def _write_run(
    out: Path,
    model: ScoreModel,
    spec: ImportSpec,
    source: dict[str, Any],
    dataset: str | None,
    notes: tuple[str, ...] = (),
) -> ImportResult:
    """Write the run folder under a temporary name beside ``out``, then rename it to ``out``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as error:
        raise RunError(f"cannot write to {out.parent} ({one_line(error)}).") from error
    try:
        paths = RunPaths(tmp)
        paths.checkpoints.mkdir()
        paths.samples.mkdir()
        save_checkpoint(model, paths.latest)
        make_readable(paths.latest)
        write_json_atomic(paths.config, imported_config(spec, model, source, dataset))
        step = int(keras.ops.convert_to_numpy(model.ema_updates))
        status = {"status": STATUS_COMPLETE, "step": step, "imported": True}
        write_json_atomic(paths.status, {**status, "updated": time.strftime("%Y-%m-%dT%H:%M:%S")})
        make_readable(tmp, DEFAULT_FOLDER_MODE)
        if out.exists():  # appeared while the import ran
            raise RunError(f"{out} already exists; choose another --out for the imported run.")
        os.rename(tmp, out)
    except OSError as error:
        raise RunError(f"cannot write the run folder {out} ({one_line(error)}).") from error
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return ImportResult(out, source, int(model.network.count_params()), spec.conventions, notes)


# ----------------------------------------------------------------------------- provenance


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
