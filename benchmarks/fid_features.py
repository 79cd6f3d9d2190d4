"""FID features: Inception feature extraction images/s per backend, and the memory of a statistics
pass against the number of images.

Speed: each backend runs in its own subprocess (KERAS_BACKEND is set before Keras starts) and
pushes the same seeded uint8 images (--images of --size x --size) through the FID Inception
network as `fid_statistics.pool3_batches` does (x / 255, resize to 299, batches of --batch, the
last padded); one untimed batch first (compilation), then the best of --repeats timed passes.
The weights are random (a state_dict in the published layout): speed does not depend on them.
pytorch-fid itself is not measured: it needs torchvision, which this project does not install.

Memory: `FeatureMoments` (the streaming float64 mean and covariance of `feature_statistics`) fed
N synthetic 2048-d features in batches of --batch, for each N of --stats-n; the peak of NumPy's
allocations (tracemalloc) during the pass, beside the N x 2048 float64 array that pytorch-fid's
get_activations holds before np.cov (computed, not measured).

Prints a table and writes benchmarks/results/fid_features.json (--quick: results/quick/).

    python benchmarks/fid_features.py --quick                       # smoke test, seconds
    python benchmarks/fid_features.py                               # 200 images, N to 50 000
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import backend_worker, layout, machine_info  # noqa: E402

RESULTS_NAME = "fid_features.json"
BACKENDS = ("tensorflow", "jax", "torch")
POOL3 = 2048
FLOAT64_BYTES = 8
MIB = 2**20
IMAGE_SEED, WEIGHT_SEED, FEATURE_SEED = 0, 2015, 1
CONV_GAIN = 1.3  # conv weights N(0, gain² / fan_in), as the fixture's random weights
PYTORCH_FID = "not measured: pytorch-fid needs torchvision, which this project does not install"
THREADS_ENV = "OMP_NUM_THREADS"
QUICK = {"images": 8, "batch": 4, "repeats": 1, "stats_n": [1000, 5000, 50000]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--images", type=int, default=200, help="images per timed pass")
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--batch", type=int, default=50, help="images per forward pass")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; the best is kept")
    parser.add_argument(
        "--stats-n", type=int, nargs="+", default=[1000, 5000, 50000], help="memory pass sizes"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="OMP_NUM_THREADS of the workers (PyTorch's CPU ops slow down several-fold when "
        "its threads share busy cores)",
    )
    parser.add_argument("--quick", action="store_true", help=f"small run: {QUICK}")
    parser.add_argument("--output", type=Path, default=None)
    backend_worker.add_worker_flag(parser)
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    return args


# --------------------------------------------------------------------------- worker (one backend)


def random_state_dict(network: Any) -> dict[str, Any]:
    """Random weights under the published keys: conv N(0, 1.3²/fan_in), BN near identity."""
    import numpy as np

    from scoregen_keras.networks import fid_inception

    rng = np.random.default_rng(WEIGHT_SEED)
    state = {}
    for key, (variable, axes) in fid_inception.torch_parameters(network).items():
        shape = fid_inception.torch_shape(variable, axes)
        if key.endswith("running_var") or key.endswith("bn.weight"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) > 1:
            value = rng.standard_normal(shape) * CONV_GAIN / np.sqrt(np.prod(shape[1:]))
        else:
            value = rng.standard_normal(shape) * 0.1
        state[key] = value.astype(np.float32)
    return state


def time_extraction(args: argparse.Namespace) -> dict[str, Any]:
    """Images/s of pool3 extraction on this backend (best of the timed passes)."""
    import numpy as np

    from scoregen_keras.networks import fid_inception
    from scoregen_keras.runs import fid_statistics

    network = fid_inception.build_fid_inception()
    fid_inception.load_torch_state_dict(network, random_state_dict(network))
    shape = (args.images, args.size, args.size, 3)
    images = np.random.default_rng(IMAGE_SEED).integers(0, 256, shape, dtype=np.uint8)
    start = time.perf_counter()
    warm = fid_statistics.pool3_features(images[: args.batch], network, args.batch)
    compile_s = time.perf_counter() - start
    passes = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        features = fid_statistics.pool3_features(images, network, args.batch)
        passes.append(time.perf_counter() - start)
    assert features.shape == (args.images, POOL3) and np.all(np.isfinite(warm))
    return {
        "images": args.images,
        "size": args.size,
        "batch": args.batch,
        "first_batch_s": compile_s,
        "pass_s": passes,
        "images_per_s": args.images / min(passes),
        "pool3_checksum": float(np.sum(features)),
    }


def worker(args: argparse.Namespace) -> None:
    """Benchmark the backend selected by KERAS_BACKEND; print one RESULT line of JSON."""
    from scoregen_keras import backend

    backend_worker.emit_result({"backend": backend.name(), **time_extraction(args), "notes": []})


# --------------------------------------------------------------------------- memory (driver)


def statistics_memory(n: int, batch: int) -> dict[str, Any]:
    """Peak traced NumPy memory of FeatureMoments over n synthetic pool3 features."""
    import numpy as np

    from reference.metrics import FeatureMoments

    rng = np.random.default_rng(FEATURE_SEED)
    tracemalloc.start()
    start = time.perf_counter()
    moments = FeatureMoments(POOL3)
    for first in range(0, n, batch):
        moments.update(rng.random((min(batch, n - first), POOL3)))  # pool3 is non-negative
    moments.covariance()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "n": n,
        "peak_mib": peak / MIB,
        "seconds": time.perf_counter() - start,
        "all_features_mib": n * POOL3 * FLOAT64_BYTES / MIB,
    }


# --------------------------------------------------------------------------- driver


def print_tables(speed: list[dict], memory: list[dict]) -> None:
    """Speed per backend, then memory per N."""
    header = (
        f"{'backend':<11} {'images':>6} {'size':>5} {'batch':>5} {'1st batch s':>11} {'img/s':>8}"
    )
    print(header)
    print("-" * len(header))
    for row in speed:
        if "images_per_s" in row:
            print(
                f"{row['backend']:<11} {row['images']:>6} {row['size']:>5} {row['batch']:>5} "
                f"{row['first_batch_s']:>11.1f} {row['images_per_s']:>8.2f}"
            )
        backend_worker.print_notes(row)
    print(f"{'pytorch-fid':<11} {PYTORCH_FID}")
    print()
    header = f"{'N':>7} {'peak MiB (streaming)':>21} {'N x 2048 float64 MiB':>21} {'s':>6}"
    print(header)
    print("-" * len(header))
    for row in memory:
        print(
            f"{row['n']:>7} {row['peak_mib']:>21.1f} {row['all_features_mib']:>21.1f} "
            f"{row['seconds']:>6.1f}"
        )


def main(argv: list[str] | None = None) -> None:
    """Run every backend in its own process, then the memory passes; print, write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    env = {} if args.threads is None else {THREADS_ENV: str(args.threads)}
    speed = [
        backend_worker.run_worker(__file__, backend, argv, {}, env) for backend in args.backends
    ]
    memory = [statistics_memory(n, args.batch) for n in args.stats_n]
    print_tables(speed, memory)
    output = args.output or layout.default_output(RESULTS_NAME, args.quick)
    output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "definition": (
            f"pool3 images/s: best of {args.repeats} passes over {args.images} uint8 images of "
            f"{args.size}x{args.size} in batches of {args.batch} (resize to 299 included), after "
            "one untimed batch; memory: tracemalloc peak of FeatureMoments over N synthetic "
            "2048-d features"
        ),
        "machine": machine_info.machine(
            **{name: os.environ.get(name) for name in (THREADS_ENV, "OPENBLAS_NUM_THREADS")},
            worker_threads=args.threads,
        ),
        "argv": argv,
        "speed": speed,
        "pytorch_fid": PYTORCH_FID,
        "memory": memory,
    }
    output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
