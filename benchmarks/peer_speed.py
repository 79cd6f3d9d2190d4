"""Issue 27: NCSN++ / DDPM++ train and sample steps of scoregen beside the original score_sde.

The original is yang-song/score_sde_pytorch (commit cb1f359) patched to run on a CPU with
shared/peer/score_sde_pytorch_cpu.patch; its tree is given with --original. For each model the
benchmark starts one process per system -- the original (PyTorch, eager) and scoregen on the
TensorFlow, JAX and PyTorch backends -- builds the same network in each (the issue's size:
32x32x3, nf 32, ch_mult (1, 2, 2), 2 residual blocks, attention at 16; the parameter counts are
compared) and times, in interleaved rounds (every system once per round, the order rotated):

- train step: forward + denoising score matching + backward + gradient clipping + Adam + EMA.
  The original: its own ``losses.get_step_fn`` with its optimizer and ``ExponentialMovingAverage``,
  as its ``run_lib.train`` builds them. scoregen: ``ScoreModel.fit`` of the model that
  ``runs.build_model`` makes from the paper's preset (cifar10-ncsnpp-cont / cifar10-ddpmpp-cont
  with the network size overridden), timed from the end of the first step of each fit call to
  the end of its last, by a callback that waits for the step's loss.
- sample step: one score evaluation + one Euler-Maruyama update. The original: its
  ``sampling.get_pc_sampler`` with ``EulerMaruyamaPredictor`` and ``NoneCorrector`` on an SDE of
  --sample-steps levels; scoregen: ``samplers.pc_sample(..., "euler_maruyama", "none")`` with
  the model's EMA score, as ``scoregen sample`` runs it. Both: wall time of the run / its steps.

Each round's ratio to the original is taken within the round (side by side); the table gives
their medians and ranges over rounds, the first train step and first sampler call apart (they
hold compilation: XLA on JAX and TensorFlow, tracing for TensorFlow's sampler), and the peak
resident memory of training steps (the kernel's high-water mark, reset before each round) beside
the resident memory before the first step. One thread per framework (torch.set_num_threads,
TensorFlow's intra/inter-op pools, XLA's CPU flags, OMP); cpu/wall near 1 confirms it, and
on a shared machine the CPU-time ratios ("cpu x") are the steadier figure (JAX's dispatch thread
adds CPU time beside the wall). On a CPU, Keras compiles fit's step with XLA on JAX only:
TensorFlow's (jit_compile "auto" is False without an accelerator) is a tf.function graph, so its
first step is tracing and graph optimisation; the JSON records jit_compile per system.
Prints a table per model and writes benchmarks/results/peer_speed.json.

    python benchmarks/peer_speed.py --original /work/peer/score_sde_pytorch
    python benchmarks/peer_speed.py --original PATH --models ncsnpp --backends torch --rounds 3
    python benchmarks/peer_speed.py --original PATH --quick      # smoke test: a tiny network
    python benchmarks/peer_speed.py --original PATH --size cifar10 --backends jax torch  # on a GPU
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import backend_worker  # noqa: E402
from benchmarks.layout import default_output  # noqa: E402
from benchmarks.machine_info import load_average, machine  # noqa: E402

JSON_NAME = "peer_speed.json"
BACKENDS = ("tensorflow", "jax", "torch")
ORIGINAL = "original"
# a file only the CPU patch's tree has: what tells a patched tree from a plain checkout
PATCH_MARK = ("op/upfirdn2d.py", "CPU parity patch")
DATA_SEED = 0
N_EXAMPLES = 64  # random training examples the scoregen batches are cut from
KIB = 1024


@dataclass(frozen=True)
class ModelSpec:
    """One model on both sides: the original's config module, scoregen's preset, its SDE."""

    title: str
    original_config: str  # module of the original's configs/ tree
    preset: str  # scoregen preset of the same paper configuration (its reduce included)
    sde: str  # "ve" | "vp"


MODELS: dict[str, ModelSpec] = {
    "ncsnpp": ModelSpec(
        "NCSN++ (VE, continuous)", "configs.ve.cifar10_ncsnpp_continuous", "cifar10-ncsnpp-cont",
        "ve",
    ),
    "ddpmpp": ModelSpec(
        "DDPM++ (VP, continuous)", "configs.vp.cifar10_ddpmpp_continuous", "cifar10-ddpmpp-cont",
        "vp",
    ),
}  # fmt: skip
# the score SDE paper's eps at the end of sampling (run_lib.py), by SDE
SAMPLING_EPS = {"ve": 1e-5, "vp": 1e-3}


@dataclass(frozen=True)
class Size:
    """Network size and batch of one benchmark setting (the rest is the paper's config)."""

    image_size: int
    nf: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    batch: int

    def network(self) -> dict[str, Any]:
        """The network settings, by the names both sides use."""
        return {
            "image_size": self.image_size,
            "nf": self.nf,
            "ch_mult": list(self.ch_mult),
            "num_res_blocks": self.num_res_blocks,
            "attn_resolutions": list(self.attn_resolutions),
        }


SIZES: dict[str, Size] = {
    "issue": Size(32, 32, (1, 2, 2), 2, (16,), 8),  # issue 27's table (1 777 667 parameters)
    "cifar10": Size(32, 128, (1, 2, 2, 2), 4, (16,), 128),  # the paper's CIFAR-10 run (a GPU)
    "quick": Size(16, 16, (1, 2), 1, (8,), 2),  # smoke test
}
ROUNDS, TRAIN_STEPS, SAMPLE_STEPS = 5, 3, 5
QUICK = {"rounds": 2, "train_steps": 1, "sample_steps": 2}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=None, help="patched score_sde_pytorch")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--size", default="issue", choices=SIZES)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--train-steps", type=int, default=TRAIN_STEPS, help="timed, per round")
    parser.add_argument("--sample-steps", type=int, default=SAMPLE_STEPS, help="per round")
    parser.add_argument("--threads", type=int, default=1, help="threads per framework")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny network, 2 rounds")
    parser.add_argument("--output", type=Path, default=None, help="JSON path")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--echo", action="store_true", help="show the workers' output")
    # worker only
    parser.add_argument("--system", default=ORIGINAL, help=argparse.SUPPRESS)
    parser.add_argument("--model", default="ncsnpp", help=argparse.SUPPRESS)
    backend_worker.add_worker_flag(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.size = "quick"
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.output = args.output or default_output(JSON_NAME, args.quick)
    return args


def tree_problem(tree: Path | None) -> str | None:
    """One sentence when `tree` is not a patched score_sde_pytorch checkout, else None."""
    how = (
        "clone yang-song/score_sde_pytorch at commit cb1f359, apply "
        "shared/peer/score_sde_pytorch_cpu.patch and pass its folder as --original PATH"
    )
    if tree is None:
        return f"no original to compare with: {how}."
    marked, text = tree / PATCH_MARK[0], PATCH_MARK[1]
    if not (tree / "models" / "ncsnpp.py").is_file():
        return f"{tree} is not a score_sde_pytorch tree: {how}."
    if text not in marked.read_text(errors="replace"):
        return f"{tree} lacks the CPU patch: {how}."
    return None


# --------------------------------------------------------------------------- worker: shared


def _status_kib(field: str) -> int:
    """A VmRSS / VmHWM field of /proc/self/status, in KiB."""
    status = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", status).group(1))


class Memory:
    """Resident memory of this process: now, and the peak since the last reset (Linux)."""

    available = Path("/proc/self/clear_refs").exists()

    def reset_peak(self) -> None:
        """Restart the high-water mark at the current resident size."""
        if self.available:
            Path("/proc/self/clear_refs").write_text("5")

    def resident_mb(self) -> float | None:
        """Resident memory now, MiB."""
        return _status_kib("VmRSS") / KIB if self.available else None

    def peak_mb(self) -> float | None:
        """Peak resident memory since the last reset, MiB."""
        return _status_kib("VmHWM") / KIB if self.available else None


class Timed:
    """Wall and CPU seconds of a block (cpu / wall near 1: one thread busy)."""

    def __enter__(self) -> Timed:
        """Start both clocks."""
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: Any) -> None:
        """Stop both clocks."""
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


class System:
    """A system under test: a built network with a train step and a sampler (worker side)."""

    parameters: int
    memory = Memory()

    def train(self, steps: int) -> Timed:
        """Run `steps` timed training steps (after any untimed lead-in); their clocks."""
        raise NotImplementedError

    def sample(self, steps: int) -> Timed:
        """Run the sampler for `steps` steps; its clocks."""
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """Versions and settings worth recording."""
        return {}

    def handlers(self) -> dict[str, Any]:
        """The commands the driver sends: setup, train, sample."""
        peaks: list[float] = []

        def setup(command: dict[str, Any]) -> dict[str, Any]:
            return {"parameters": self.parameters, "info": self.info()}

        def train(command: dict[str, Any]) -> dict[str, Any]:
            before = self.memory.resident_mb()
            self.memory.reset_peak()
            clocks = self.train(command["steps"])
            peak = self.memory.peak_mb()
            if not command.get("first") and peak is not None:
                peaks.append(peak)
            return {
                **_clock_fields(clocks, command["steps"]),
                "rss_before_mb": before,
                "peak_rss_mb": peak,
                "peak_rss_all_rounds_mb": max(peaks, default=None),
            }

        def sample(command: dict[str, Any]) -> dict[str, Any]:
            return _clock_fields(self.sample(command["steps"]), command["steps"])

        return {"setup": setup, "train": train, "sample": sample}


def _clock_fields(clocks: Timed, steps: int) -> dict[str, float]:
    """Wall and CPU seconds per step and in all, as a worker reports them."""
    return {
        "s_per_step": clocks.wall / steps,
        "cpu_s_per_step": clocks.cpu / steps,
        "cpu_per_wall": clocks.cpu / clocks.wall,
        "wall_s": clocks.wall,
        "cpu_s": clocks.cpu,
    }


def _random_images(size: Size, n: int) -> Any:
    """n standard-normal images (n, H, W, C) in float32, the same on every side."""
    import numpy as np

    rng = np.random.default_rng(DATA_SEED)
    return rng.standard_normal((n, size.image_size, size.image_size, 3)).astype(np.float32)


# --------------------------------------------------------------------------- worker: original


class Original(System):
    """score_sde_pytorch's own train step and PC sampler (PyTorch, eager)."""

    def __init__(self, tree: Path, spec: ModelSpec, size: Size, threads: int) -> None:
        """Build the model, optimizer, EMA and step function as its run_lib.train does."""
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
        sys.path.insert(0, str(tree))
        self.torch = torch
        self.losses = importlib.import_module("losses")
        self.sampling = importlib.import_module("sampling")
        self.sde_lib = importlib.import_module("sde_lib")
        mutils = importlib.import_module("models.utils")
        importlib.import_module("models.ncsnpp")  # registers the model
        ema_lib = importlib.import_module("models.ema")
        self.config = config = importlib.import_module(spec.original_config).get_config()
        for key, value in size.network().items():
            setattr(config.data if key == "image_size" else config.model, key, value)
        config.training.batch_size = size.batch
        torch.manual_seed(config.seed)
        self.spec, self.size = spec, size
        self.model = mutils.create_model(config)
        self.parameters = sum(p.numel() for p in self.model.parameters())
        optimizer = self.losses.get_optimizer(config, self.model.parameters())
        ema = ema_lib.ExponentialMovingAverage(self.model.parameters(), decay=config.model.ema_rate)
        self.state = {"optimizer": optimizer, "model": self.model, "ema": ema, "step": 0}
        self.step_fn = self.losses.get_step_fn(
            self.make_sde(config.model.num_scales),
            train=True,
            optimize_fn=self.losses.optimization_manager(config),
            reduce_mean=config.training.reduce_mean,
            continuous=config.training.continuous,
            likelihood_weighting=config.training.likelihood_weighting,
        )
        images = _random_images(size, size.batch).transpose(0, 3, 1, 2)  # NCHW
        self.batch = torch.from_numpy(images.copy()).to(config.device)

    def make_sde(self, levels: int) -> Any:
        """The config's SDE with `levels` discretisation levels (its run_lib's construction)."""
        model = self.config.model
        if self.spec.sde == "ve":
            return self.sde_lib.VESDE(model.sigma_min, model.sigma_max, N=levels)
        return self.sde_lib.VPSDE(model.beta_min, model.beta_max, N=levels)

    def _sync(self) -> None:
        """Wait for queued GPU work (nothing to wait for on a CPU)."""
        if self.config.device.type == "cuda":
            self.torch.cuda.synchronize()

    def train(self, steps: int) -> Timed:
        """`steps` calls of its step_fn (loss.item() waits for each)."""
        with Timed() as clocks:
            for _ in range(steps):
                self.step_fn(self.state, self.batch).item()
        return clocks

    def sample(self, steps: int) -> Timed:
        """Its PC sampler (Euler-Maruyama, no corrector) over an SDE of `steps` levels."""
        size, sampling = self.size, self.sampling
        sampler = sampling.get_pc_sampler(
            self.make_sde(steps),
            (size.batch, 3, size.image_size, size.image_size),
            sampling.get_predictor("euler_maruyama"),
            sampling.get_corrector("none"),
            inverse_scaler=lambda x: x,
            snr=self.config.sampling.snr,
            n_steps=1,
            probability_flow=False,
            continuous=True,
            denoise=True,
            eps=SAMPLING_EPS[self.spec.sde],
            device=self.config.device,
        )
        with Timed() as clocks:
            sampler(self.model)
            self._sync()
        return clocks

    def info(self) -> dict[str, Any]:
        """torch version, device and threads."""
        torch = self.torch
        return {
            "torch": torch.__version__,
            "device": str(self.config.device),
            "threads": torch.get_num_threads(),
        }


# --------------------------------------------------------------------------- worker: scoregen


def _set_threads(backend: str, threads: int) -> None:
    """One (or `threads`) compute thread(s) for the backend (before it starts computing)."""
    if backend == "torch":
        import torch

        torch.set_num_threads(threads)
        torch.set_num_interop_threads(threads)
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    # JAX: XLA_FLAGS set by the driver before the process starts


def _step_clock(marks: set[int], times: dict[int, tuple[float, float]]) -> Any:
    """A fit callback writing times[step] = (wall, cpu) clocks at the end of the marked steps,
    after waiting for the step's result."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch + 1 in marks:
                float((logs or {}).get("loss", 0.0))  # waits for the step's result
                times[batch + 1] = (time.perf_counter(), time.process_time())

    return StepClock()


class Scoregen(System):
    """scoregen's ScoreModel.fit and pc_sample on the backend of KERAS_BACKEND."""

    def __init__(self, spec: ModelSpec, size: Size, threads: int) -> None:
        """Build the model as `scoregen train` does from the paper's preset, size overridden."""
        import keras
        import numpy as np

        from scoregen_keras import runs
        from scoregen_keras.training import presets

        _set_threads(keras.backend.backend(), threads)
        overrides = {"model_config": size.network(), "batch_size": size.batch}
        config = presets.resolve_config(spec.preset, overrides)
        self.shape = runs.expected_shape(runs.network_arguments(config))
        self.model = runs.build_model(config, self.shape)
        self.x = _random_images(size, N_EXAMPLES)
        self.size, self.seed = size, int(config["seed"])
        self.parameters = int(sum(np.prod(v.shape) for v in self.model.network.weights))
        self.score_fn = self.model.score_fn()  # EMA weights, as `scoregen sample`
        self.variables = [*self.model.ema_variables, *self.model.network.non_trainable_variables]
        self.first_fit = True

    def _fit(self, steps: int, times: dict[int, tuple[float, float]], marks: set[int]) -> None:
        """One fit call of `steps` steps, the marked step ends written to times."""
        from scoregen_keras import runs

        batches = runs.StepBatches(self.x, self.size.batch, 0, steps, self.seed)
        self.model.fit(
            batches, epochs=1, verbose=0, shuffle=False, callbacks=[_step_clock(marks, times)]
        )

    def train(self, steps: int) -> Timed:
        """The first call: one fit step, whole (compilation included). Later: one fit call of
        1 + steps steps, timed from the end of its first step to the end of its last."""
        times: dict[int, tuple[float, float]] = {}
        if self.first_fit:
            self.first_fit = False
            with Timed() as clocks:
                self._fit(steps, times, {steps})
            return clocks
        clocks = Timed()
        self._fit(1 + steps, times, {1, 1 + steps})
        (wall_0, cpu_0), (wall_1, cpu_1) = times[1], times[1 + steps]
        clocks.wall, clocks.cpu = wall_1 - wall_0, cpu_1 - cpu_0
        return clocks

    def sample(self, steps: int) -> Timed:
        """pc_sample with Euler-Maruyama and no corrector for `steps` steps, EMA score."""
        import keras

        from scoregen_keras import samplers

        shape = (self.size.batch, *self.shape)
        with Timed() as clocks:
            x, _ = samplers.pc_sample(
                self.score_fn,
                self.model.sde,
                shape,
                self.seed,
                "euler_maruyama",
                "none",
                n_steps=steps,
                variables=self.variables,
            )
            keras.ops.convert_to_numpy(x)
        return clocks

    def info(self) -> dict[str, Any]:
        """Backend and Keras versions, and whether fit's step is XLA-compiled."""
        import keras

        backend = keras.backend.backend()
        framework = importlib.import_module(backend)
        return {
            "keras": keras.__version__,
            backend: framework.__version__,
            "jit_compile": bool(self.model.jit_compile),
        }


def worker(args: argparse.Namespace) -> None:
    """Build one system, then answer the driver's commands."""
    spec, size = MODELS[args.model], SIZES[args.size]
    if args.system == ORIGINAL:
        system: System = Original(args.original, spec, size, args.threads)
    else:
        system = Scoregen(spec, size, args.threads)
    backend_worker.serve(system.handlers())


# --------------------------------------------------------------------------- driver


def thread_env(threads: int) -> dict[str, str]:
    """Environment limiting every framework's compute pools to `threads` threads."""
    n = str(threads)
    xla = f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
    xla += f"intra_op_parallelism_threads={n}"
    return {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} {xla}".strip(),
    }


def system_names(args: argparse.Namespace) -> list[str]:
    """The original first, then scoregen on each backend."""
    return [ORIGINAL, *(f"scoregen {backend}" for backend in args.backends)]


def start_worker(args: argparse.Namespace, model: str, name: str) -> backend_worker.Worker:
    """The worker process of one system for one model."""
    backend = "torch" if name == ORIGINAL else name.split()[-1]
    argv = ["--system", ORIGINAL if name == ORIGINAL else "scoregen", "--model", model]
    argv += ["--size", args.size, "--threads", str(args.threads)]
    if name == ORIGINAL:
        argv += ["--original", str(args.original)]
    return backend_worker.Worker(
        __file__, backend, argv, env=thread_env(args.threads), label=name, echo=args.echo
    )


def _median(values: list[float]) -> float:
    """The median of a non-empty list."""
    import numpy as np

    return float(np.median(values))


def _summary(
    rounds: list[dict[str, Any]], ratios: list[float], cpu_ratios: list[float]
) -> dict[str, Any]:
    """Median and range of a system's per-step seconds and of its ratios to the original."""
    seconds = [r["s_per_step"] for r in rounds]
    return {
        "s_per_step": _median(seconds),
        "s_per_step_range": [min(seconds), max(seconds)],
        "cpu_s_per_step": _median([r["cpu_s_per_step"] for r in rounds]),
        "ratio": _median(ratios) if ratios else None,
        "ratio_range": [min(ratios), max(ratios)] if ratios else None,
        "ratio_rounds": ratios,
        "cpu_ratio": _median(cpu_ratios) if cpu_ratios else None,
        "cpu_ratio_rounds": cpu_ratios,
        "cpu_per_wall": _median([r["cpu_per_wall"] for r in rounds]),
        "rounds": rounds,
    }


def _first_call(first: dict[str, Any], steps: int, steady: float) -> dict[str, float]:
    """The first call's wall and CPU time, and its wall time beyond `steps` steady steps."""
    return {
        "wall_s": first["wall_s"],
        "cpu_s": first["cpu_s"],
        "beyond_steady_s": first["wall_s"] - steps * steady,
    }


def _warm_up(args: argparse.Namespace, workers: dict, record: dict) -> None:
    """Setup, first train step and first sampler call of each system, one system at a time."""
    for name, work in list(workers.items()):
        try:
            record[name] = work.request({"do": "setup"})
            record[name]["first_train"] = work.request({"do": "train", "steps": 1, "first": True})
            steps = args.sample_steps
            record[name]["first_sample"] = work.request({"do": "sample", "steps": steps})
        except backend_worker.WorkerError as error:
            record[name] = {"failed": str(error)}
            del workers[name]


def _rounds(args: argparse.Namespace, workers: dict) -> dict[str, dict[str, list]]:
    """Interleaved rounds: in each, every system trains then samples, in a rotated order."""
    names = list(workers)
    results = {name: {"train": [], "sample": []} for name in names}
    for index in range(args.rounds):
        order = names[index % len(names) :] + names[: index % len(names)]
        for name in order:
            if name not in workers:
                continue
            try:
                for kind, steps in (("train", args.train_steps), ("sample", args.sample_steps)):
                    reply = workers[name].request({"do": kind, "steps": steps})
                    results[name][kind].append({"round": index, **reply})
            except backend_worker.WorkerError as error:
                results[name]["failed"] = str(error)
                del workers[name]
    return results


def _ratios(results: dict, name: str, kind: str, clock: str = "s_per_step") -> list[float]:
    """Per-round ratio of a system's seconds per step (wall, or CPU with clock="cpu_s_per_step")
    to the original's in the same round."""
    if ORIGINAL not in results or name == ORIGINAL:
        return [1.0] * len(results[name][kind]) if name == ORIGINAL else []
    base = {r["round"]: r[clock] for r in results[ORIGINAL][kind]}
    return [r[clock] / base[r["round"]] for r in results[name][kind] if r["round"] in base]


def bench_model(args: argparse.Namespace, model: str) -> dict[str, Any]:
    """Every system on one model: warm-up one at a time, then interleaved rounds."""
    names = system_names(args)
    workers = {name: start_worker(args, model, name) for name in names}
    record: dict[str, Any] = {}
    try:
        _warm_up(args, workers, record)
        results = _rounds(args, workers)
    finally:
        for work in workers.values():
            work.close()
    systems = {}
    for name in names:
        if "failed" in record[name] or not results.get(name, {}).get("train"):
            systems[name] = {"failed": record[name].get("failed") or results[name].get("failed")}
            continue
        train, sample = (
            _summary(
                results[name][kind],
                _ratios(results, name, kind),
                _ratios(results, name, kind, "cpu_s_per_step"),
            )
            for kind in ("train", "sample")
        )
        first_sample = _first_call(
            record[name]["first_sample"], args.sample_steps, sample["s_per_step"]
        )
        systems[name] = {
            "parameters": record[name]["parameters"],
            "info": record[name]["info"],
            "train": train,
            "sample": sample,
            "first_train": _first_call(record[name]["first_train"], 1, train["s_per_step"]),
            "first_sample": first_sample,
            "memory": {
                "rss_before_training_mb": record[name]["first_train"]["rss_before_mb"],
                "peak_rss_first_step_mb": record[name]["first_train"]["peak_rss_mb"],
                "peak_rss_training_mb": results[name]["train"][-1]["peak_rss_all_rounds_mb"],
            },
            **({"failed": results[name]["failed"]} if "failed" in results[name] else {}),
        }
    counts = {s["parameters"] for s in systems.values() if "parameters" in s}
    return {
        "title": MODELS[model].title,
        "size": SIZES[args.size].network(),
        "batch": SIZES[args.size].batch,
        "parameters_agree": len(counts) == 1,
        "systems": systems,
    }


def _cell(value: float | None, fmt: str) -> str:
    """A formatted number, or '-'."""
    return "-" if value is None else format(value, fmt)


def _rise(memory: dict[str, float | None]) -> float | None:
    """Peak resident memory of the training rounds over the resident memory before training."""
    before, peak = memory["rss_before_training_mb"], memory["peak_rss_training_mb"]
    return None if before is None or peak is None else peak - before


def _span(bounds: list[float] | None) -> str:
    """'low-high', or '-'."""
    return "-" if bounds is None else f"{bounds[0]:.2f}-{bounds[1]:.2f}"


def print_model(result: dict[str, Any], args: argparse.Namespace) -> None:
    """The issue's table for one model."""
    counts = sorted({s["parameters"] for s in result["systems"].values() if "parameters" in s})
    agree = "same on every side" if result["parameters_agree"] else "DIFFER"
    print(
        f"\n{result['title']}: {' / '.join(f'{c:,}' for c in counts)} parameters ({agree}), "
        f"batch {result['batch']}, {args.threads} thread(s), {args.rounds} rounds of "
        f"{args.train_steps} train + {args.sample_steps} sample steps"
    )
    header = (
        f"{'system':<20} {'train s':>8} {'x orig':>6} {'range':>11} {'cpu x':>5} "
        f"{'sample s':>9} {'x orig':>6} {'range':>11} {'cpu x':>5} {'1st train s':>11} "
        f"{'(cpu)':>6} {'1st sample s':>12} {'(cpu)':>6} "
        f"{'RSS MB':>7} {'peak MB':>8} {'rise':>7} {'cpu/wall':>8}"
    )
    print(header)
    print("-" * len(header))
    for name, row in result["systems"].items():
        if "train" not in row:
            print(f"{name:<20} failed: {row['failed']}")
            continue
        train, sample, memory = row["train"], row["sample"], row["memory"]
        ranges = [_span(s["ratio_range"]) for s in (train, sample)]
        first_train, first_sample = row["first_train"], row["first_sample"]
        print(
            f"{name:<20} {train['s_per_step']:>8.3f} {_cell(train['ratio'], '.2f'):>6} "
            f"{ranges[0]:>11} {_cell(train['cpu_ratio'], '.2f'):>5} "
            f"{sample['s_per_step']:>9.3f} {_cell(sample['ratio'], '.2f'):>6} "
            f"{ranges[1]:>11} {_cell(sample['cpu_ratio'], '.2f'):>5} "
            f"{first_train['wall_s']:>11.1f} {first_train['cpu_s']:>6.1f} "
            f"{first_sample['wall_s']:>12.1f} {first_sample['cpu_s']:>6.1f} "
            f"{_cell(memory['rss_before_training_mb'], '.0f'):>7} "
            f"{_cell(memory['peak_rss_training_mb'], '.0f'):>8} "
            f"{_cell(_rise(memory), '+.0f'):>7} "
            f"{train['cpu_per_wall']:>8.2f}"
        )
        if "failed" in row:
            print(f"{'':<20} then failed: {row['failed']}")


def main(argv: list[str] | None = None) -> int:
    """Run every model's systems, print the tables, write the JSON; 2 without the original."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    problem = tree_problem(args.original)
    if problem is not None:
        print(problem)
        return 2
    meta = machine(load_average_at_end=None, shared="yes: other developers' work runs beside it")
    started = time.perf_counter()
    results = {model: bench_model(args, model) for model in args.models}
    for result in results.values():
        print_model(result, args)
    load = load_average()
    meta["load_average_at_end"] = None if load is None else load[0]
    print(
        "\ntrain s / sample s: median seconds per step; x orig: median over rounds of the ratio "
        "to the original in the same round (range over rounds); cpu x: the same for CPU seconds "
        "(steadier on a shared machine; JAX's dispatch thread adds CPU beside the wall); 1st: the "
        f"first call (one train step; a {args.sample_steps}-step sampler run), compilation "
        "included, wall and (cpu) seconds; RSS: resident "
        "memory before the first train step; peak: peak resident memory of the training rounds, "
        "rise: peak - RSS; "
        f"cpu/wall of the training rounds. {time.perf_counter() - started:.0f} s in all; "
        f"1-min load {meta['load_average_1min_at_start']} at start, {meta['load_average_at_end']} "
        "at end (a shared machine: rely on the ratios)."
    )
    payload = {
        "issue": 27,
        "definition": {
            "train": "seconds per optimizer step (forward + DSM + backward + clip + Adam + EMA)",
            "sample": "seconds per Euler-Maruyama step of the PC sampler (one score + update)",
            "ratio": "per round, the system's seconds over the original's in the same round; "
            "median and range over rounds",
            "first_train": "the first one-step train call (compilation included); beyond_steady_s "
            "subtracts one steady step",
            "first_sample": "the first sampler call of sample_steps steps; beyond_steady_s "
            "subtracts sample_steps steady steps",
            "memory": "VmRSS before the first step; VmHWM (reset before each call) of the first "
            "step and the largest over the training rounds, MiB",
        },
        "settings": {
            "size": args.size,
            "rounds": args.rounds,
            "train_steps": args.train_steps,
            "sample_steps": args.sample_steps,
            "threads": args.threads,
            "original": str(args.original),
        },
        "machine": meta,
        "argv": argv,
        "note": args.note,
        "models": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_suffix(".json.partial")
    partial.write_text(json.dumps(payload, indent=2) + "\n")
    partial.replace(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
