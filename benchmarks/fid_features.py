"""FID features: Inception feature extraction images/s per backend, and the memory of a statistics
pass against the number of images.

Speed: each backend runs in its own subprocess (KERAS_BACKEND is set before Keras starts) and
pushes the same seeded uint8 images (--images of --size x --size) through the FID Inception
network as `fid_statistics.pool3_batches` does (x / 255, resize to 299, batches of --batch, the
last padded); one untimed batch first (compilation), then the best of --repeats timed passes, and
the worker's peak resident memory. The weights are random (a state_dict in the published layout):
speed does not depend on them. pytorch-fid itself is not measured: it needs torchvision, which
this project does not install.

Memory: for each N of --stats-n, a fresh process (backend --memory-backend) writes N seeded PNG
images of --size x --size into a temporary folder and runs `scoregen fid --save-stats`'s pass over
it (`runs.statistics_of_path`: the folder listed by pytorch-fid's rules, each file decoded, batches
of --batch through the network, pool3 into the float64 `FeatureMoments`). The network is a
stand-in with the FID network's output, 2048 ReLU features of the image's mean colour: the FID
network at 299 x 299 runs at a few images/s on these CPUs (the speed rows), so 50 000 images
would take hours, and its memory per batch does not depend on N. Reported: the
process's peak resident memory (ru_maxrss) before the pass (imports, network, one warm batch) and
after it, beside the N x 2048 float64 array that pytorch-fid's get_activations holds before np.cov
(computed, not measured).

Prints a table and writes benchmarks/results/fid_features.json (--quick: results/quick/).

    python benchmarks/fid_features.py --quick                       # smoke test, a minute
    python benchmarks/fid_features.py --threads 1                   # 200 images, N to 50 000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
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
KIB = 2**10  # ru_maxrss counts KiB on Linux
IMAGE_SEED, WEIGHT_SEED = 0, 2015
CONV_GAIN = 1.3  # conv weights N(0, gain² / fan_in), as the fixture's random weights
PYTORCH_FID = "not measured: pytorch-fid needs torchvision, which this project does not install"
THREADS_ENV = "OMP_NUM_THREADS"
QUICK = {"images": 8, "batch": 4, "repeats": 1, "stats_n": [100, 1000]}
PNG_CHUNK = 1000
"""Images generated and written at a time (the folder is written without holding all of it)."""


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
        "--memory-backend", default=BACKENDS[0], choices=BACKENDS, help="backend of the memory runs"
    )
    parser.add_argument("--memory-n", type=int, default=None, help=argparse.SUPPRESS)
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
        "peak_rss_mib": peak_rss_mib(),
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory so far, MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KIB / MIB


# --------------------------------------------------------------------------- memory (worker)


def stand_in_network() -> Any:
    """images (n, H, W, 3) -> {"pool3": (n, 2048)}: ReLU of a dense layer on the mean colour.

    Its activations are (n, 2048), so the memory measured is that of the pass itself (files,
    batches, FeatureMoments), not of a network's feature maps (a 1 x 1 convolution to 2048
    channels would hold 400 MB per batch of 50 at 32 x 32 and blur the figure with its allocator).
    """
    import keras

    images = keras.Input((None, None, 3))
    colour = keras.layers.GlobalAveragePooling2D()(images)
    pool3 = keras.layers.Dense(POOL3, activation="relu")(colour)
    return keras.Model(images, {"pool3": pool3})


def write_pngs(folder: Path, n: int, size: int) -> None:
    """n seeded uint8 RGB PNG images in folder, PNG_CHUNK generated at a time."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(IMAGE_SEED)
    for first in range(0, n, PNG_CHUNK):
        chunk = rng.integers(0, 256, (min(PNG_CHUNK, n - first), size, size, 3), dtype=np.uint8)
        for k, image in enumerate(chunk):
            Image.fromarray(image).save(folder / f"{first + k:06d}.png")


def statistics_memory(args: argparse.Namespace) -> dict[str, Any]:
    """Peak resident memory before and after the statistics pass over a folder of N images."""
    import numpy as np

    from scoregen_keras.runs import fid

    n = args.memory_n
    folder = Path(tempfile.mkdtemp(prefix="fid_memory_"))
    try:
        start = time.perf_counter()
        write_pngs(folder, n, args.size)
        write_s = time.perf_counter() - start
        network = stand_in_network()
        network.predict_on_batch(np.zeros((args.batch, args.size, args.size, 3), np.float32))
        before = peak_rss_mib()
        start = time.perf_counter()
        stats = fid.statistics_of_path(folder, lambda: network, args.batch)
        seconds = time.perf_counter() - start
        after = peak_rss_mib()
    finally:
        shutil.rmtree(folder)
    assert stats.count == n and np.all(np.isfinite(stats.sigma))
    return {
        "n": n,
        "size": args.size,
        "batch": args.batch,
        "peak_rss_before_mib": before,
        "peak_rss_after_mib": after,
        "growth_mib": after - before,
        "pass_s": seconds,
        "write_pngs_s": write_s,
        "all_features_mib": n * POOL3 * FLOAT64_BYTES / MIB,
    }


def worker(args: argparse.Namespace) -> None:
    """Benchmark the backend selected by KERAS_BACKEND; print one RESULT line of JSON."""
    from scoregen_keras import backend

    measure = time_extraction if args.memory_n is None else statistics_memory
    backend_worker.emit_result({"backend": backend.name(), **measure(args), "notes": []})


# --------------------------------------------------------------------------- driver


def print_tables(speed: list[dict], memory: list[dict]) -> None:
    """Speed per backend, then memory per N."""
    header = (
        f"{'backend':<11} {'images':>6} {'size':>5} {'batch':>5} {'1st batch s':>11} {'img/s':>8}"
        f" {'peak MiB':>9}"
    )
    print(header)
    print("-" * len(header))
    for row in speed:
        if "images_per_s" in row:
            print(
                f"{row['backend']:<11} {row['images']:>6} {row['size']:>5} {row['batch']:>5} "
                f"{row['first_batch_s']:>11.1f} {row['images_per_s']:>8.2f} "
                f"{row['peak_rss_mib']:>9.0f}"
            )
        backend_worker.print_notes(row)
    print(f"{'pytorch-fid':<11} {PYTORCH_FID}")
    print()
    header = (
        f"{'N':>7} {'peak MiB before':>16} {'after':>8} {'growth':>7} "
        f"{'N x 2048 float64 MiB':>21} {'pass s':>7}"
    )
    print(header)
    print("-" * len(header))
    for row in memory:
        if "n" in row:
            print(
                f"{row['n']:>7} {row['peak_rss_before_mib']:>16.0f} "
                f"{row['peak_rss_after_mib']:>8.0f} {row['growth_mib']:>7.1f} "
                f"{row['all_features_mib']:>21.1f} {row['pass_s']:>7.1f}"
            )
        backend_worker.print_notes(row)


def main(argv: list[str] | None = None) -> None:
    """Run every backend in its own process, then each memory pass in its own; print, write."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    env = {} if args.threads is None else {THREADS_ENV: str(args.threads)}
    speed = [
        backend_worker.run_worker(__file__, backend, argv, {}, env) for backend in args.backends
    ]
    memory = [
        backend_worker.run_worker(
            __file__, args.memory_backend, [*argv, "--memory-n", str(n)], {"n_asked": n}, env
        )
        for n in args.stats_n
    ]
    print_tables(speed, memory)
    output = args.output or layout.default_output(RESULTS_NAME, args.quick)
    output.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "definition": (
            f"pool3 images/s: best of {args.repeats} passes over {args.images} uint8 images of "
            f"{args.size}x{args.size} in batches of {args.batch} (resize to 299 included), after "
            "one untimed batch, random weights; memory: peak resident memory (ru_maxrss) of a "
            f"fresh {args.memory_backend} process before and after runs.statistics_of_path over "
            f"a folder of N PNG images of {args.size}x{args.size} in batches of {args.batch}, "
            "through a stand-in network with 2048 features (ReLU of a dense layer on the mean "
            "colour)"
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
