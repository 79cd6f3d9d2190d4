"""Cost of per-sample counter-based noise against the backend's own normals (issue 25, item 1).

For each backend (one subprocess each) and each shape -- toy (10 000, 2), images (64, 32, 32, 3)
and (128, 32, 32, 3), and the two of the sampler-overhead benchmark -- the normals that a
predictor-corrector sampler asks for in one compiled chunk (2 draws a step, as many steps as
``samplers`` puts in a chunk at that shape) are drawn by each candidate, in rounds (every
candidate once per round, the median over rounds kept):

* ``keras.random``: ``keras.random.normal`` of the whole request from a seed generator, as
  ``sampling.NoiseSource`` draws it for ``--noise backend`` (the baseline; backend-specific,
  batch-dependent);
* ``host counter``: ``CounterNoise.draw`` -- vectorised NumPy Philox-4x32-10 + float64
  Box–Muller on the host, one transfer per request (its host part alone is reported too): the
  samplers' default source;
* ``device counter``: ``counter_normals_ops`` -- the same words in keras.ops int32 arithmetic,
  compiled with ``backend.jit`` as the samplers compile their chunks;
* ``per-sample numpy``: one ``np.random.Generator(np.random.Philox(seed_i))`` per sample, a
  ``standard_normal`` call per sample and request, then one transfer.

Reported per draw (one normal of the batch's shape) and per PC step (two draws), with each
candidate's ratio to ``keras.random`` timed in the same rounds. The machine is shared: the ratios,
measured side by side, are the figures to read. Prints a table and writes
benchmarks/results/noise_cost.json (--quick: fewer rounds, to results/quick/).

    python benchmarks/noise_cost.py                       # all backends
    python benchmarks/noise_cost.py --backends jax --rounds 5
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import backend_worker  # noqa: E402
from benchmarks.layout import default_output  # noqa: E402
from benchmarks.machine_info import machine  # noqa: E402

JSON_NAME = "noise_cost.json"
BACKENDS = ("tensorflow", "jax", "torch")
SHAPES = {"toy 10000x2": (10_000, 2), "image 64x32x32x3": (64, 32, 32, 3)}
SHAPES["image 128x32x32x3"] = (128, 32, 32, 3)
# the shapes of benchmarks/sampler_overhead.py (toy MLP batch 1024, ncsnpp/tiny batch 64)
SHAPES.update({"overhead 1024x2": (1024, 2), "overhead 64x8x8x1": (64, 8, 8, 1)})
PC_DRAWS_PER_STEP = 2  # reverse diffusion + one Langevin corrector step
ROUNDS, QUICK_ROUNDS = 9, 3
BASELINE = "keras.random"
CANDIDATES = ("keras.random", "host counter", "host counter (host part)", "device counter")
CANDIDATES += ("per-sample numpy",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--rounds", type=int, default=None, help=f"default {ROUNDS}")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_ROUNDS} rounds")
    parser.add_argument("--output", type=Path, default=None)
    backend_worker.add_worker_flag(parser)
    return parser.parse_args(argv)


def draws_per_chunk(shape: tuple[int, ...], draws_per_step: int = PC_DRAWS_PER_STEP) -> int:
    """Normals a sampler requests at once at this batch shape: a chunk's steps x draws a step."""
    from scoregen_keras.sampling.chunks import MAX_CHUNK_STEPS
    from scoregen_keras.sampling.noise import NOISE_BLOCK_ENTRIES

    entries = draws_per_step * math.prod(shape)
    steps = max(1, min(MAX_CHUNK_STEPS, NOISE_BLOCK_ENTRIES // entries))
    return steps * draws_per_step


def _sync(value: Any) -> None:
    """Wait for a (possibly asynchronous) result."""
    import keras

    keras.ops.convert_to_numpy(value)


def _seconds(fn: Any) -> float:
    """Wall seconds of one call of fn, waiting for its result."""
    start = time.perf_counter()
    _sync(fn())
    return time.perf_counter() - start


def counter_noise_step_seconds(
    shape: tuple[int, ...], draws_per_step: int, rounds: int = ROUNDS, seed: int = 0
) -> float:
    """Median seconds per sampler step of ``CounterNoise`` at batch shape ``shape``, drawn as a
    compiled chunk requests it (``draws_per_chunk``) and sent to the device (for
    benchmarks/sampler_overhead.py: the noise source's cost beside the model's)."""
    import numpy as np

    from scoregen_keras.sampling.counter_noise import CounterNoise

    k = draws_per_chunk(shape, draws_per_step)
    source = CounterNoise(np.arange(seed, seed + shape[0]), shape[1:])
    _sync(source.draw(k))  # first call: allocation, imports
    times = [_seconds(lambda: source.draw(k)) for _ in range(rounds)]
    return float(np.median(times)) * draws_per_step / k


def candidates(shape: tuple[int, ...], k: int) -> dict[str, Any]:
    """name -> f() drawing k normals of ``shape`` (a tensor or host array to wait for)."""
    import keras
    import numpy as np

    from scoregen_keras import backend
    from scoregen_keras.sampling import counter_noise

    seeds = np.arange(shape[0], dtype=np.uint64)
    generator = keras.random.SeedGenerator(0)
    source = counter_noise.CounterNoise(seeds, shape[1:])
    key_lo, key_hi = (backend.from_host(w.view(np.int32)) for w in counter_noise.seed_keys(seeds))
    n_elements = math.prod(shape[1:])
    device = backend.jit(
        lambda lo, hi, first: counter_noise.counter_normals_ops(lo, hi, first, k, n_elements)
    )
    first = backend.from_host(np.asarray(0, np.int32))
    per_sample = [np.random.Generator(np.random.Philox(key=int(s))) for s in seeds]
    floatx = keras.config.floatx()

    def per_sample_numpy() -> Any:
        z = np.stack([g.standard_normal((k, *shape[1:]), dtype=floatx) for g in per_sample], 1)
        return backend.from_host(z)

    return {
        "keras.random": lambda: keras.random.normal((k, *shape), seed=generator),
        "host counter": lambda: source.draw(k),
        "host counter (host part)": lambda: source.draw_host(k),
        "device counter": lambda: device(key_lo, key_hi, first),
        "per-sample numpy": per_sample_numpy,
    }


def bench_shape(name: str, shape: tuple[int, ...], rounds: int) -> dict[str, Any]:
    """Median seconds per draw of every candidate at one shape, and ratios to the baseline."""
    import numpy as np

    from scoregen_keras import backend

    k = draws_per_chunk(shape)
    runs = candidates(shape, k)
    seconds: dict[str, list[float]] = {candidate: [] for candidate in runs}
    with backend.no_grad():
        for run in runs.values():
            _seconds(run)  # compile, allocate
        for _ in range(rounds):
            for candidate, run in runs.items():
                seconds[candidate].append(_seconds(run) / k)
    base = np.array(seconds[BASELINE])
    rows = {}
    for candidate, values in seconds.items():
        ratios = np.array(values) / base
        rows[candidate] = {
            "seconds_per_draw": float(np.median(values)),
            "seconds_per_pc_step": float(np.median(values)) * PC_DRAWS_PER_STEP,
            "ratio_to_keras_random": float(np.median(ratios)),
            "ratio_range": [float(ratios.min()), float(ratios.max())],
            "rounds": values,
        }
    return {"shape": list(shape), "name": name, "draws_per_request": k, "candidates": rows}


def worker(args: argparse.Namespace) -> None:
    """Benchmark the backend selected by KERAS_BACKEND; print one RESULT line of JSON."""
    from scoregen_keras import backend

    rounds = args.rounds or (QUICK_ROUNDS if args.quick else ROUNDS)
    shapes = [bench_shape(name, shape, rounds) for name, shape in SHAPES.items()]
    backend_worker.emit_result({"backend": backend.name(), "shapes": shapes, "notes": []})


def print_table(results: list[dict[str, Any]]) -> None:
    """One row per (backend, shape, candidate)."""
    header = f"{'backend':<11} {'shape':<18} {'draws':>5} {'candidate':<25} {'ms / draw':>10} "
    header += f"{'ms / PC step':>12} {'x keras.random':>14} {'range':>13}"
    print(header)
    print("-" * len(header))
    for result in results:
        for shape in result["shapes"]:
            for candidate, row in shape["candidates"].items():
                low, high = row["ratio_range"]
                print(
                    f"{result['backend']:<11} {shape['name']:<18} {shape['draws_per_request']:>5} "
                    f"{candidate:<25} {1e3 * row['seconds_per_draw']:>10.3f} "
                    f"{1e3 * row['seconds_per_pc_step']:>12.3f} "
                    f"{row['ratio_to_keras_random']:>14.2f} {low:>6.2f}-{high:<6.2f}"
                )
        backend_worker.print_notes(result)


def main(argv: list[str] | None = None) -> None:
    """Run every backend in its own process, print the table, write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    info = machine()
    results = [
        backend_worker.run_worker(__file__, name, argv, {"shapes": []}) for name in args.backends
    ]
    print_table(results)
    output = args.output or default_output(JSON_NAME, args.quick)
    output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "definition": "median over rounds of wall seconds per draw (one normal of the batch's "
        "shape), drawn as a PC chunk requests them; ratios to keras.random from the same rounds",
        "machine": info,
        "argv": argv,
    }
    temporary = output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    temporary.replace(output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
