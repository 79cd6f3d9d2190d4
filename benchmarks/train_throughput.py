"""Training throughput: optimizer steps per second of `ScoreModel.fit` for a model, batch,
precision, backend and device placement.

Each backend runs in its own subprocess (KERAS_BACKEND and the virtual CPU devices must be set
before the backend starts). The worker builds the model exactly as `scoregen train` does
(`runs.build_model` inside `distribute.training_scope`), feeds random data of the model's input
shape through `runs.StepBatches`, runs `--warmup` steps (compilation), then times `--steps`
steps; the best of `--repeats` timed blocks is kept. Prints a table and writes
benchmarks/results/train_throughput.json.

    python benchmarks/train_throughput.py                                  # CPU smoke test
    python benchmarks/train_throughput.py --backends jax --model ncsnpp/cifar10 --batch 128 \\
        --precisions float32 mixed_bfloat16 --steps 50                     # one GPU
    python benchmarks/train_throughput.py --backends jax tensorflow --model ncsnpp/cifar10 \\
        --batch 512 --distribute data-parallel --devices 4                 # four GPUs
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import backend_worker  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "train_throughput.json"
BACKENDS = ("tensorflow", "jax", "torch")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DEFAULT_MODEL, DEFAULT_BATCH = "mlp/toy", 512
N_EXAMPLES = 4096  # random training examples the batches are cut from
DATA_SEED = 0
CPU_DEVICES_ENV = "SCOREGEN_CPU_DEVICES"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="a named network config")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="global batch size")
    parser.add_argument("--precisions", nargs="+", default=["float32"], choices=PRECISIONS)
    parser.add_argument("--distribute", default="none", choices=("none", "data-parallel"))
    parser.add_argument("--devices", type=int, default=None, help="data-parallel devices")
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help=f"split the CPU into this many devices ({CPU_DEVICES_ENV}; testing only)",
    )
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (compilation)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per block")
    parser.add_argument("--repeats", type=int, default=2, help="timed blocks; the best is kept")
    parser.add_argument("--output", type=Path, default=RESULTS)
    backend_worker.add_worker_flag(parser)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- worker (one backend)


def _noise_process(model: str) -> dict[str, str]:
    """The SDE / loss a model family trains with (as the presets pair them)."""
    family = model.split("/", 1)[0]
    if family in ("ncsn", "ncsnv2"):
        return {"sde": "ncsn", "loss": "ncsn"}
    if family == "ddpmpp":
        return {"sde": "vp", "loss": "dsm"}
    return {"sde": "ve", "loss": "dsm"}


def _step_clock(marks: set[int], times: dict[int, float]) -> Any:
    """A fit callback writing times[step] at the end of the marked steps (after a device sync)."""
    import keras

    class StepClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
            if batch + 1 in marks:
                float((logs or {}).get("loss", 0.0))  # waits for the step's result
                times[batch + 1] = time.perf_counter()

    return StepClock()


def bench_precision(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    """Steps/s of one precision on this backend (best timed block)."""
    import numpy as np

    from scoregen_keras import runs
    from scoregen_keras.training import distribution as distribute
    from scoregen_keras.training import presets

    overrides = {
        "model": args.model,
        **_noise_process(args.model),
        "batch_size": args.batch,
        "precision": precision,
        "distribute": args.distribute,
        "devices": args.devices,
        "warmup": 0,
    }
    config = presets.resolve_config(presets.DEFAULT_PRESET, overrides)
    shape = runs.expected_shape(runs.network_arguments(config)) or (2,)
    x = np.random.default_rng(DATA_SEED).standard_normal((N_EXAMPLES, *shape)).astype("float32")
    marks = {args.warmup + k * args.steps for k in range(args.repeats + 1)}
    total = max(marks)
    with distribute.training_scope(config) as placement:
        model = runs.build_model(config, shape)
        times: dict[int, float] = {}
        batches = runs.StepBatches(x, args.batch, 0, total, DATA_SEED, shard=placement.feed_shard)
        model.fit(
            batches, epochs=1, verbose=0, shuffle=False, callbacks=[_step_clock(marks, times)]
        )
    ends = sorted(times)
    block_s = min(times[b] - times[a] for a, b in itertools.pairwise(ends))
    params = int(sum(np.prod(v.shape) for v in model.network.trainable_variables))
    return {
        "model": args.model,
        "parameters": params,
        "batch": args.batch,
        "precision": precision,
        "distribute": args.distribute,
        "devices": placement.devices,
        "placement": placement.description,
        "steps_per_s": args.steps / block_s,
        "examples_per_s": args.steps * args.batch / block_s,
    }


def worker(args: argparse.Namespace) -> None:
    """Benchmark the backend selected by KERAS_BACKEND; print one RESULT line of JSON."""
    import keras

    from scoregen_keras import backend

    rows, notes = [], []
    for precision in args.precisions:
        try:
            rows.append(bench_precision(args, precision))
        except ValueError as error:  # RunError, DistributeError, ConfigError: say why, go on
            notes.append(f"{precision}: {error}")
    devices = keras.distribution.list_devices() if backend.name() == "jax" else []
    payload = {"backend": backend.name(), "rows": rows, "notes": notes, "jax_devices": devices}
    backend_worker.emit_result(payload)


# --------------------------------------------------------------------------- driver


def run_backend(backend: str, argv: list[str], cpu_devices: int | None) -> dict:
    """Run the worker for one backend in a subprocess (optionally on split CPUs); its result."""
    env = {} if cpu_devices is None else {CPU_DEVICES_ENV: str(cpu_devices)}
    return backend_worker.run_worker(__file__, backend, argv, {"rows": []}, env=env)


def print_table(results: list[dict]) -> None:
    """One row per (backend, precision)."""
    header = (
        f"{'backend':<11} {'model':<16} {'params':>10} {'batch':>6} {'precision':<15} "
        f"{'devices':>7} {'steps/s':>9} {'examples/s':>11}"
    )
    print(header)
    print("-" * len(header))
    for result in results:
        for row in result["rows"]:
            print(
                f"{result['backend']:<11} {row['model']:<16} {row['parameters']:>10} "
                f"{row['batch']:>6} {row['precision']:<15} {row['devices']:>7} "
                f"{row['steps_per_s']:>9.2f} {row['examples_per_s']:>11.0f}"
            )
        backend_worker.print_notes(result)


def main(argv: list[str] | None = None) -> None:
    """Run every backend in its own process, print the table, write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    results = [run_backend(backend, argv, args.cpu_devices) for backend in args.backends]
    print_table(results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "definition": f"optimizer steps per second of fit, best of {args.repeats} blocks of "
        f"{args.steps} steps after {args.warmup} warm-up steps",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "argv": argv,
    }
    args.output.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
