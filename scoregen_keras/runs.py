"""Run folders: train a ScoreModel from a resolved config into a folder, load it back, sample.

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
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
from tqdm.auto import tqdm

from reference import sde as reference_sde
from scoregen_keras import callbacks as run_callbacks
from scoregen_keras import distribute, dopri, plots
from scoregen_keras.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from scoregen_keras.data import DataError, Dataset, Scaler, load_dataset, model_pixel_range
from scoregen_keras.networks import CONFIGS, get_network
from scoregen_keras.presets import (
    NCSNV2_RULES,
    NCSNV2_SIGMA_MIN,
    NCSNV2_STEPS_EACH,
    ConfigError,
    validate_config,
)
from scoregen_keras.score_model import NCSN, SDE_NAMES, ScoreModel

if TYPE_CHECKING:  # run_classifier imports this module
    from scoregen_keras.run_classifier import ClassGuide

BACKENDS = ("tensorflow", "jax", "torch")
SAMPLERS = ("pc", "ald", "ode", "heun", "dpm-solver")
ODE_SOLVERS = ("RK45", dopri.METHOD)  # SciPy's solve_ivp on the host; the same RK45 compiled
PREDICTORS = ("reverse_diffusion", "euler_maruyama", "ancestral")
CORRECTORS = ("langevin", "ald", "none")

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

STATUS_RUNNING, STATUS_INTERRUPTED = "running", "interrupted"
STATUS_FAILED, STATUS_COMPLETE = "failed", "complete"

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
        "ald_steps_each",
        "ald_step_lr",
        "distribute",  # where a run trains is not part of the model: resume on other devices
        "devices",
    }
)
MAX_REFERENCE_POINTS = 2_000
"""Training points drawn beside 2-D samples in scatter plots."""
DEFAULT_FILE_MODE = 0o666
DEFAULT_FOLDER_MODE = 0o777
ERROR_MESSAGE_CHARS = 300
"""Library error messages are cut to their first line and at most this many characters."""


class RunError(ValueError):
    """A run folder cannot be created, resumed, loaded or sampled; the message is one sentence."""


def load_run_data(spec: str, config: dict[str, Any], n: int, seed: int) -> Dataset:
    """A data set in the run's model space (its image size and centring), of the run's shape.

    DataError when it cannot be loaded; RunError when its examples have another shape.
    """
    shape = tuple(int(d) for d in config["data"]["shape"])
    dataset = load_dataset(
        spec,
        n=n,
        seed=seed,
        image_size=shape[0] if config["data"]["kind"] == "images" else None,
        centered=bool(config.get("centered", False)),
    )
    if tuple(dataset.shape) != shape:
        raise RunError(
            f"the data {spec} have examples of shape {tuple(dataset.shape)}, but the run's model "
            f"takes {shape}."
        )
    return dataset


def one_line(error: BaseException) -> str:
    """The first line of an exception's message, shortened: for one-sentence error reports."""
    text = str(error).strip().splitlines()
    first = text[0] if text else type(error).__name__
    if len(first) > ERROR_MESSAGE_CHARS:
        first = first[:ERROR_MESSAGE_CHARS] + "..."
    return first


# ------------------------------------------------------------------------------------ paths


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


# ------------------------------------------------------------------------------------ model


def _network_family(model_name: str) -> str:
    """'mlp' for 'mlp/toy', 'ncsnpp' for 'ncsnpp/digits', ..."""
    return model_name.split("/", 1)[0]


def network_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """Constructor arguments of the run's network: its named config plus model_config."""
    name = config["model"]
    if name not in CONFIGS:
        raise RunError(f"unknown model '{name}'; choose one of {', '.join(sorted(CONFIGS))}.")
    arguments = {**CONFIGS[name][1], **config.get("model_config", {})}
    family = _network_family(name)
    if family == "mlp":
        arguments.setdefault("conditioning", "sigma" if config["sde"] == NCSN else "t")
    if family == "ncsn" and config["sde"] == NCSN and "num_scales" in config["sde_config"]:
        arguments.setdefault("num_classes", int(config["sde_config"]["num_scales"]))
    return arguments


def expected_shape(arguments: dict[str, Any]) -> tuple[int, ...] | None:
    """Shape of one example the network takes, from its arguments (None when not stated)."""
    if "dim" in arguments:
        return (int(arguments["dim"]),)
    channels = arguments.get("num_channels", arguments.get("channels"))
    if "image_size" in arguments and channels is not None:
        size = int(arguments["image_size"])
        return (size, size, int(channels))
    return None


def _sde_arguments(config: dict[str, Any]) -> dict[str, Any]:
    """ScoreModel's sde / sigmas arguments from the run config."""
    sde_config = dict(config.get("sde_config", {}))
    if config["sde"] == NCSN:
        if not sde_config:
            return {"sde": NCSN}
        sigma_max = float(sde_config["sigma_max"])
        sigma_min = float(sde_config["sigma_min"])
        levels = int(sde_config["num_scales"])
        sigmas = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), levels))
        return {"sde": NCSN, "sigmas": [float(s) for s in sigmas]}
    if "num_scales" in sde_config:
        sde_config["N"] = sde_config.pop("num_scales")
    return {"sde": {"type": SDE_NAMES[config["sde"]], **sde_config}}


def apply_ncsnv2_rules(
    config: dict[str, Any], x: np.ndarray, log: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """The config with NCSNv2's rules applied when its sde_config says rules = "ncsnv2".

    Song & Ermon (2020): sigma_1 is the largest distance between two training examples ``x``
    (model space; technique 1), the levels fall geometrically to sigma_min by the ratio that the
    data's dimension calls for (technique 2), and annealed Langevin takes ald_steps_each (else
    NCSNV2_STEPS_EACH) steps a level at technique 4's step size unless ald_step_lr is set. What
    the rules picked is recorded under "ncsnv2_rules" and told to ``log``. Other configs come
    back unchanged.
    """
    log = log or (lambda message: None)
    sde_config = dict(config["sde_config"])
    if sde_config.pop("rules", None) != NCSNV2_RULES:
        return config
    sigma_min = float(sde_config.get("sigma_min", NCSNV2_SIGMA_MIN))
    steps_each = int(config.get("ald_steps_each") or NCSNV2_STEPS_EACH)
    try:
        reference_sde.ncsnv2_gamma(int(np.prod(x.shape[1:])))  # data of too few dimensions fail now
        # technique 1 compares every pair of examples: minutes for tens of thousands of images
        log(f"NCSNv2's rules: the largest distance between {len(x)} training examples ...")
        sigmas, eps = reference_sde.ncsnv2_schedule(x, sigma_min, steps_each)
    except ValueError as error:
        message = f"NCSNv2's rules cannot set noise levels for these data: {error}."
        raise RunError(message) from error
    # NCSNv2's step x + eps s + sqrt(2 eps) z is the samplers' x + alpha/2 s + sqrt(alpha) z
    step_lr = 2.0 * eps
    picked = {
        "sigma_max": float(sigmas[0]),
        "sigma_min": sigma_min,
        "num_scales": len(sigmas),
        "gamma": float(sigmas[0] / sigmas[1]),
        "ald_steps_each": steps_each,
        "ald_step_lr": step_lr,
    }
    log(
        f"NCSNv2's rules: sigma {picked['sigma_max']:.4g} -> {sigma_min:g} in {len(sigmas)} "
        f"levels (ratio {picked['gamma']:.4f}), annealed Langevin {steps_each} steps a level at "
        f"{step_lr:.3g}"
    )
    return {
        **config,
        "sde_config": {key: picked[key] for key in ("sigma_max", "sigma_min", "num_scales")},
        "ald_steps_each": steps_each,
        "ald_step_lr": config.get("ald_step_lr") or step_lr,
        "ncsnv2_rules": picked,
    }


def build_model(config: dict[str, Any], data_shape: tuple[int, ...]) -> ScoreModel:
    """A compiled ScoreModel for the config, built for examples of `data_shape`."""
    arguments = network_arguments(config)
    if _network_family(config["model"]) == "mlp" and "dim" not in arguments:
        arguments["dim"] = int(np.prod(data_shape))
    wanted = expected_shape(arguments)
    if wanted is not None and tuple(wanted) != tuple(data_shape):
        raise RunError(
            f"the data have examples of shape {tuple(data_shape)} but model '{config['model']}' "
            f"takes {tuple(wanted)}; choose a matching --model or set model_config."
        )
    keras.utils.set_random_seed(int(config["seed"]))
    precision = config.get("precision", distribute.FLOAT32)
    try:
        with distribute.precision_scope(precision):  # the network's layers; the rest is float32
            network = get_network(config["model"], **arguments)
    except (TypeError, ValueError) as error:
        raise RunError(f"cannot build model '{config['model']}' ({one_line(error)}).") from error
    try:
        model = ScoreModel(
            network,
            **_sde_arguments(config),
            loss=config["loss"],
            weighting=config["weighting"],
            reduce=config["reduce"],
            ema_rate=config["ema"],
            seed=int(config["seed"]),
            input_shape=(None, *data_shape),
        )
    except (TypeError, ValueError) as error:
        raise RunError(f"invalid model configuration ({one_line(error)}).") from error
    model.compile(
        learning_rate=float(config["lr"]),
        warmup_steps=int(config["warmup"]),
        decay_steps=int(config["steps"]) if config.get("lr_decay", "none") != "none" else None,
        global_clipnorm=config["grad_clip"],
        loss_scale=distribute.needs_loss_scaling(precision),
    )
    return model


def _comparable(network_config: dict[str, Any]) -> dict[str, Any]:
    """A network's config without its (auto-generated) name, JSON-normalised."""
    return json.loads(json.dumps({k: v for k, v in network_config.items() if k != "name"}))


# ------------------------------------------------------------------------------------- data


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


def data_info(dataset: Dataset) -> dict[str, Any]:
    """What config.json records about the training data (and the split it came from, if any)."""
    info = {
        "name": dataset.name,
        "kind": dataset.kind,
        "shape": list(dataset.shape),
        "n": len(dataset.x),
        "scaler": dataset.scaler.to_config(),
        # images: the pixel scale's black and white, which need not occur in the data
        "value_range": list(model_pixel_range(dataset.scaler))
        if dataset.kind == "images"
        else [float(np.min(dataset.x)), float(np.max(dataset.x))],
    }
    if dataset.split is not None:
        info["split"] = dataset.split
    if dataset.labels is not None:
        info["classes"] = list(dataset.class_names)
    return info


def _load_training_data(config: dict[str, Any], progress: bool = False) -> Dataset:
    """The config's data set, in model space (``progress``: a bar while image files are read)."""
    wanted = expected_shape(network_arguments(config))
    image_size = config.get("image_size") or (wanted[0] if wanted and len(wanted) == 3 else None)
    dataset = load_dataset(
        config["dataset"],
        n=int(config["n_train"]),
        seed=int(config["seed"]),
        image_size=image_size,
        centered=bool(config["centered"]),
        progress=progress,
    )
    if len(dataset.x) == 0:
        raise DataError(f"data set {config['dataset']} is empty.")
    return dataset


# --------------------------------------------------------------------------------- sampling


@dataclasses.dataclass
class Samples:
    """Samples in model space and in the data's original scale, with the cost of drawing them."""

    x: np.ndarray  # model space
    x_original: np.ndarray  # original scale (scaler inverse)
    nfe: int
    seconds: float
    sampler: str
    labels: np.ndarray | None = None  # class-guided samples: the class of each, in order
    class_names: tuple[str, ...] = ()


def _sampler_kwargs(**options: Any) -> dict[str, Any]:
    """The given sampler options, leaving out those not set (None) so defaults apply."""
    return {key: value for key, value in options.items() if value is not None}


def batch_layout(n: int, batch_size: int | None, multiple: int = 1) -> tuple[int, int]:
    """(batches, length): n samples in equal batches of at most batch_size (None: one batch).

    With several batches the length is a multiple of ``multiple``, so that labels cycled through
    every batch (a guide's classes) continue from one batch to the next, as equal in number as n
    allows; RunError when batch_size is below ``multiple``.
    """
    if batch_size is None or n <= batch_size:
        return 1, n
    cap = batch_size - batch_size % multiple
    if cap == 0:
        raise RunError(
            f"drawing {multiple} classes in turn in several batches needs a batch size of at "
            f"least {multiple}."
        )
    batches = math.ceil(n / cap)
    length = math.ceil(n / batches)
    return batches, length + (-length % multiple)


def ald_options(
    config: dict[str, Any], steps: int | None = None, step_lr: float | None = None
) -> dict[str, Any]:
    """Keywords of annealed Langevin on a run of NCSN noise levels: the given steps per level and
    step size, else the run's ``ald_steps_each`` / ``ald_step_lr``, else the sampler's defaults."""
    return _sampler_kwargs(
        n_steps_each=steps if steps is not None else config.get("ald_steps_each"),
        step_lr=step_lr if step_lr is not None else config.get("ald_step_lr"),
    )


def default_sampler(config: dict[str, Any]) -> str:
    """The sampler a command uses unless told: annealed Langevin for a run of NCSN noise levels
    (the only one it has), predictor-corrector otherwise."""
    return "ald" if config.get("sde") == "ncsn" else "pc"


def draw_samples(
    model: ScoreModel,
    config: dict[str, Any],
    n: int,
    sampler: str = "pc",
    seed: int = 0,
    steps: int | None = None,
    snr: float | None = None,
    predictor: str | None = None,
    corrector: str | None = None,
    temperature: float | None = None,
    progress: bool = False,
    ode_solver: str = ODE_SOLVERS[0],
    batch_size: int | None = None,
    guide: ClassGuide | None = None,
    step_lr: float | None = None,
) -> Samples:
    """Draw n samples with the EMA weights; `steps` is per noise level for 'ald'.

    'ald' takes `steps` and its step size `step_lr` from the run's config unless given
    (`ald_options`); the other samplers ignore `step_lr`.

    'ode' runs fixed-step Heun with `steps`, else the adaptive `ode_solver` (RK45 or dopri5).
    ``batch_size`` caps the samples drawn at once (None: all n). The batches are equal (the last
    one padded, so that one compiled shape serves them all) and draw from one seed generator, so
    the samples depend on the batch size as well as on the seed. ``nfe`` is a batch's (for the
    adaptive ODE solver, the mean over batches). With a ``guide`` every sampler follows its
    class-guided score, its classes in turn through the samples (`batch_layout`), and the
    samples come sorted by class (stable), with their labels.
    """
    if sampler not in SAMPLERS:
        raise RunError(f"unknown sampler '{sampler}'; choose one of {', '.join(SAMPLERS)}.")
    sizes = (steps, batch_size, step_lr)
    if n <= 0 or any(size is not None and size <= 0 for size in sizes):
        raise RunError(
            "the number of samples, the batch size, the sampler steps and the step size must be "
            "positive."
        )
    n_batches, length = batch_layout(n, batch_size, 1 if guide is None else len(guide.classes))
    shape = (length, *config["data"]["shape"])
    score_fn = model.score_fn(use_ema=True)
    if guide is not None:  # an NCSN score takes noise levels sigma where an SDE's takes t
        guided = guide.score_fn if model.sde is not None else guide.sigma_score_fn
        score_fn = guided(score_fn, shape[0])
    draw = _batch_sampler(
        model,
        config,
        score_fn,
        sampler,
        steps,
        snr,
        predictor,
        corrector,
        temperature,
        progress,
        ode_solver,
        step_lr,
    )
    # one batch: the int seed, as the samplers take it; several: one stream through all of them
    seed_source = seed if n_batches == 1 else keras.random.SeedGenerator(seed)
    start = time.perf_counter()
    batches, nfes = [], []
    show_bar = progress and n_batches > 1  # None below: a bar on a terminal only
    for _ in tqdm(range(n_batches), desc="sample batches", disable=None if show_bar else True):
        x, nfe = draw(shape, seed_source)
        batches.append(np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float32))
        nfes.append(nfe)
    seconds = time.perf_counter() - start
    x = np.concatenate(batches)[:n]
    labels, class_names = None, ()
    if guide is not None:
        labels = np.tile(guide.batch_labels(shape[0]), n_batches)[:n]
        order = np.argsort(labels, kind="stable")
        x, labels, class_names = x[order], labels[order], guide.class_names
    scaler = Scaler.from_config(config["data"]["scaler"])
    nfe = round(float(np.mean(nfes)))
    return Samples(x, scaler.inverse(x), nfe, seconds, sampler, labels, class_names)


def _batch_sampler(
    model: ScoreModel,
    config: dict[str, Any],
    score_fn: Callable[[Any, Any], Any],
    sampler: str,
    steps: int | None,
    snr: float | None,
    predictor: str | None,
    corrector: str | None,
    temperature: float | None,
    progress: bool,
    ode_solver: str,
    step_lr: float | None,
) -> Callable[[tuple[int, ...], Any], tuple[Any, int]]:
    """draw(shape, seed) -> (x, nfe): one batch of `draw_samples`'s sampler with its options,
    following ``score_fn`` (the model's EMA score, or a guided one)."""
    from scoregen_keras import samplers

    common = _sampler_kwargs(temperature=temperature, progress=progress or None)
    # the weights the EMA score reads: passed so a compiled step sees later weight updates (JAX)
    common["variables"] = [*model.ema_variables, *model.network.non_trainable_variables]

    def draw(shape: tuple[int, ...], seed: Any) -> tuple[Any, int]:
        """One batch of samples of this shape, and its NFE."""
        if model.sde is None:
            if sampler != "ald":
                raise RunError(
                    f"sampler '{sampler}' needs an SDE; this run uses discrete NCSN noise levels, "
                    "so use --sampler ald."
                )
            return samplers.annealed_langevin(
                score_fn, model.sigmas, shape, seed, **common, **ald_options(config, steps, step_lr)
            )
        if sampler == "pc":
            options = _sampler_kwargs(
                predictor=predictor, corrector=corrector, snr=snr, n_steps=steps
            )
            try:
                return samplers.pc_sample(score_fn, model.sde, shape, seed, **common, **options)
            except ValueError as error:  # e.g. too few steps for a VP chain: one sentence
                raise RunError(str(error)) from error
        if sampler == "ode":
            if ode_solver not in ODE_SOLVERS:
                raise RunError(
                    f"unknown ODE solver '{ode_solver}'; choose {' or '.join(ODE_SOLVERS)}."
                )
            method = (
                {"method": ode_solver} if steps is None else {"method": "heun", "n_steps": steps}
            )
            return samplers.ode_sample(score_fn, model.sde, shape, seed, **common, **method)
        if sampler == "heun":
            options = _sampler_kwargs(n_steps=steps, sigma_max=config.get("sampler_sigma_max"))
            return samplers.edm_heun_sample(score_fn, model.sde, shape, seed, **common, **options)
        if sampler == "dpm-solver":
            options = _sampler_kwargs(n_steps=steps, sigma_max=config.get("sampler_sigma_max"))
            return samplers.dpm_solver_pp_sample(
                score_fn, model.sde, shape, seed, **common, **options
            )
        raise RunError(
            "sampler 'ald' is for runs with discrete NCSN noise levels (--sde ncsn); "
            "use pc, ode, heun or dpm-solver for this SDE run."
        )

    return draw


def value_range(config: dict[str, Any]) -> tuple[float, float]:
    """What PNG black and white stand for in model space: an image run's pixel black and white
    (runs before 2026-12-01: its training data's min and max), a point run's data range."""
    low, high = config["data"]["value_range"]
    return float(low), float(high)


def plot_samples(
    path: Path,
    x_model: np.ndarray,
    config: dict[str, Any],
    reference: np.ndarray | None = None,
    title: str = "samples",
    labels: np.ndarray | None = None,
    class_names: tuple[str, ...] = (),
) -> Path:
    """PNG of model-space samples: image grid, or 2-D scatter beside reference points.

    With ``labels``: one row of images per class, or one colour of points per class.
    """
    if config["data"]["kind"] == "images":
        columns = None
        if labels is not None:
            x_model, columns = plots.class_rows(x_model, labels)
        return plots.save_image_grid(path, x_model, value_range(config), columns)
    return plots.save_scatter(path, x_model, title, reference, labels, class_names)


def _reference_points(config: dict[str, Any]) -> np.ndarray | None:
    """Training points for the left panel of a 2-D scatter (None for images or missing data)."""
    if config["data"]["kind"] != "points":
        return None
    try:
        dataset = load_dataset(
            config["dataset"], n=MAX_REFERENCE_POINTS, seed=int(config["seed"]), centered=False
        )
    except DataError:
        return None
    return dataset.x[:MAX_REFERENCE_POINTS]


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


def image_files_folder(stem: Path, config: dict[str, Any]) -> Path:
    """The folder STEM/ for one PNG per sample, checked before sampling (RunError).

    Only image runs have one, and it must not exist yet: it is written whole or not at all.
    """
    if config["data"]["kind"] != "images":
        raise RunError("image files are written for image runs only; this run's data are points.")
    if stem.exists():
        raise RunError(f"{stem} exists; choose another --out or remove it.")
    return stem


def save_samples(
    path: str | os.PathLike[str],
    samples: Samples,
    config: dict[str, Any],
    image_files: Path | None = None,
    progress: bool = False,
) -> tuple[Path, Path]:
    """Write PATH.npz (key 'x', original scale; class-guided samples: their labels 'y' too) and
    PATH.png; return both paths.

    With ``image_files`` (from `image_files_folder`), also every sample as an 8-bit PNG in that
    folder, for tools that read a folder of images (a Fréchet distance with other weights, say).
    The folder is filled under a hidden name and renamed when complete.
    """
    stem = output_stem(path)
    try:
        npz = stem.with_name(stem.name + ".npz")
        fd, tmp = tempfile.mkstemp(prefix=f".{stem.name}.", suffix=".npz", dir=stem.parent)
        labels = {} if samples.labels is None else {"y": samples.labels}
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, x=samples.x_original.astype(np.float32), **labels)
        make_readable(Path(tmp))
        os.replace(tmp, npz)
        png = plot_samples(
            stem.with_name(stem.name + ".png"),
            samples.x,
            config,
            reference=_reference_points(config),
            title=f"{samples.sampler} samples (NFE {samples.nfe})",
            labels=samples.labels,
            class_names=samples.class_names,
        )
        if image_files is not None:
            _save_image_files(image_files, samples.x, config, progress)
    except OSError as error:
        raise RunError(f"cannot write samples to {stem.parent} ({one_line(error)}).") from error
    return npz, png


def _save_image_files(
    folder: Path, x_model: np.ndarray, config: dict[str, Any], progress: bool
) -> None:
    """plots.save_image_files into a hidden sibling folder, renamed to `folder` when complete."""
    partial = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        plots.save_image_files(partial, x_model, value_range(config), progress)
        make_readable(partial, DEFAULT_FOLDER_MODE)
        os.rename(partial, folder)  # a non-empty folder made meanwhile makes this fail
    finally:
        if partial.exists():
            shutil.rmtree(partial)


# ------------------------------------------------------------------------------- training


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


def checkpoint_step(model: ScoreModel) -> int:
    """Training steps a (loaded) model has taken: its EMA counter, which every step advances.

    Not optimizer.iterations: that skips the steps dynamic loss scaling drops (mixed_float16), so
    a run would report, and on resume redo, fewer steps than it took.
    """
    return int(keras.ops.convert_to_numpy(model.ema_updates))


def _resume_config(paths: RunPaths, overrides: dict[str, Any]) -> dict[str, Any]:
    """The stored config with the resumable overrides applied; others must agree with it."""
    config = read_json(paths.config, "run configuration")
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
        or _comparable(model.network.get_config()) != _comparable(stored["config"])
    ):
        raise RunError(
            f"checkpoint {path} holds a {type(model.network).__name__} network that does not "
            f"match the run's model '{config['model']}'; the run folder mixes different models."
        )
    return model


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
        dataset = _load_training_data(config, progress)
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
        dataset = _load_training_data(config, progress)
        config = dict(apply_ncsnv2_rules(config, dataset.x, log))
        model = build_model(config, dataset.shape)
        _check_preview_steps(model, config)
        _prepare_folder(paths)
        config["backend"] = keras.backend.backend()
        config["ema"] = model.ema_rate  # None meant "the SDE's default": store the rate used
        config["data"] = data_info(dataset)
        config["network"] = {
            "class": type(model.network).__name__,
            "config": _comparable(model.network.get_config()),
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


# -------------------------------------------------------------------------------- loading


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
        return Scaler.from_config(self.config["data"]["scaler"])


def load_run(run_dir: str | os.PathLike[str]) -> Run:
    """Load a run folder (its latest checkpoint) or a checkpoint file inside one."""
    target = Path(run_dir)
    checkpoint = None
    if target.suffix == ".keras":
        checkpoint = target
        target = target.parent.parent if target.parent.name == CHECKPOINT_DIR else target.parent
    if not target.is_dir():
        raise RunError(f"run folder {target} does not exist.")
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
