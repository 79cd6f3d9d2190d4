"""Issue 25: how far the sample of a seed moves with the backend, the batch size and the step rule.

Three measurements, the figures of the README's "Reproducible sampling" table:

* backends: for each ``--run`` (run folders; a trained one and an untrained image checkpoint, say),
  one process per backend draws the same seeds with each sampler of DRAWS through
  ``runs.draw_samples``; the table gives the largest |difference| to the first backend, in model
  space (data of unit scale), beside the samples' largest |value|;
* batch sizes: in the first backend's process, the same seeds drawn at batch sizes 1, 3 and all
  of them; the table gives the largest |difference| to the one-batch draw (exactly 0 expected
  but for vectorisation; the adaptive ODE solvers move by their tolerance); ``--noise backend``
  and the Langevin corrector with score_sde's batch norms are measured too, for contrast;
* the Langevin step rule at image dimension: PC (reverse diffusion + Langevin, snr 0.16, N =
  1000, VE sigma_max 50) on the exact score of a Gaussian in 32 x 32 x 3 dimensions (standard
  deviations geometric from 0.1 to 0.5), once with the norms averaged over the batch (score_sde)
  and once per example, from the same per-sample seeds: the spread (mean squared standardised
  value, 1 = as wide as the data) of each, and their paired difference with its standard error.

Prints the tables and writes benchmarks/results/reproducible_sampling.json (--quick: few seeds
and steps, to results/quick/). The machine is shared: these are differences, not timings.

    python benchmarks/reproducible_sampling.py --run /path/to/trained_run /path/to/image_run
    python benchmarks/reproducible_sampling.py --quick --run RUN
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import backend_worker  # noqa: E402
from benchmarks.layout import default_output  # noqa: E402
from benchmarks.machine_info import machine  # noqa: E402

JSON_NAME = "reproducible_sampling.json"
BACKENDS = ("tensorflow", "jax", "torch")
N_SEEDS, QUICK_SEEDS = 16, 8
STEPS = 100  # fixed-step samplers (PC, Euler-Maruyama, Heun ODE)
QUICK_STEPS = 10
DRAWS: dict[str, dict[str, Any]] = {
    "pc (the run's default corrector)": {"sampler": "pc"},
    "pc euler_maruyama": {"sampler": "pc", "predictor": "euler_maruyama", "corrector": "none"},
    "ode heun": {"sampler": "ode"},
    "ode RK45": {"sampler": "ode", "ode_solver": "RK45", "steps": None},
    "ode dopri5": {"sampler": "ode", "ode_solver": "dopri5", "steps": None},
    "edm heun": {"sampler": "heun", "steps": 18},
    "dpm-solver": {"sampler": "dpm-solver", "steps": 20},
}
"""name -> runs.draw_samples options (``steps`` defaults to --steps)."""
CONTRASTS: dict[str, dict[str, Any]] = {
    "pc langevin, batch norms (score_sde)": {"sampler": "pc", "corrector": "langevin"},
    "pc euler_maruyama, --noise backend": {
        "sampler": "pc",
        "predictor": "euler_maruyama",
        "corrector": "none",
        "noise": "backend",
    },
}
"""Batch-dependent on purpose (measured at batch sizes only)."""
BATCH_SIZES = (1, 3)
FEW_SEEDS = 6  # the seeds drawn at the small batch sizes
IMAGE_SHAPE, QUICK_IMAGE_SHAPE = (32, 32, 3), (8, 8, 3)
IMAGE_STD_RANGE = (0.1, 0.5)
IMAGE_SEEDS, QUICK_IMAGE_SEEDS = 512, 32
IMAGE_SIGMA_MAX, IMAGE_SNR, IMAGE_N = 50.0, 0.16, 1000
QUICK_IMAGE_N = 100


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", nargs="*", type=Path, default=[], help="run folders to draw")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--quick", action="store_true", help="few seeds and steps")
    parser.add_argument("--no-image-rule", action="store_true", help="skip the step-rule rows")
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--samples", type=Path, default=None, help=argparse.SUPPRESS)
    backend_worker.add_worker_flag(parser)
    return parser.parse_args(argv)


def _options(options: dict[str, Any], steps: int) -> dict[str, Any]:
    """draw_samples options with the default step count filled in (None: the sampler's own)."""
    chosen = {"steps": steps, **options}
    return {key: value for key, value in chosen.items() if value is not None}


def _max_abs(a: Any, b: Any) -> float:
    """Largest |a - b|."""
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def batch_rows(run: Any, seeds: Any, steps: int) -> dict[str, dict[str, float]]:
    """name -> the largest |difference| of FEW_SEEDS seeds drawn at each of BATCH_SIZES to
    the same seeds in the one-batch draw of all ``seeds``."""
    from scoregen_keras import runs

    rows = {}
    for name, options in {**DRAWS, **CONTRASTS}.items():
        chosen = _options(options, steps)
        whole = runs.draw_samples(run.model, run.config, seeds=seeds, **chosen).x
        rows[name] = {
            f"batch {size}": _max_abs(
                runs.draw_samples(
                    run.model, run.config, seeds=seeds[:FEW_SEEDS], batch_size=size, **chosen
                ).x,
                whole[:FEW_SEEDS],
            )
            for size in BATCH_SIZES
        }
    return rows


def worker(args: argparse.Namespace) -> None:
    """Draw DRAWS on each run; save the samples to --samples/BACKEND-I.npz; batch rows on the
    first backend only (the driver passes --backends with it first)."""
    import keras
    import numpy as np

    from scoregen_keras import runs

    seeds = np.arange(QUICK_SEEDS if args.quick else N_SEEDS)
    steps = QUICK_STEPS if args.quick else STEPS
    backend = keras.backend.backend()
    results = []
    for index, run_dir in enumerate(args.run):
        run = runs.load_run(run_dir)
        drawn = {
            name: runs.draw_samples(run.model, run.config, seeds=seeds, **_options(o, steps)).x
            for name, o in DRAWS.items()
        }
        np.savez(args.samples / f"{backend}-{index}.npz", **drawn)
        entry = {"run": str(run_dir), "dataset": run.config["dataset"], "step": run.step}
        if backend == args.backends[0]:
            entry["batch"] = batch_rows(run, seeds, steps)
        results.append(entry)
    rule = None
    if backend == args.backends[0] and not args.no_image_rule:
        rule = image_rule(args.quick)
    backend_worker.emit_result({"backend": backend, "runs": results, "rule": rule, "notes": []})


def image_rule(quick: bool) -> dict[str, Any]:
    """The Langevin corrector's two norm rules at image dimension on one exact Gaussian, from the
    same per-sample seeds: each rule's spread and their paired difference."""
    import numpy as np
    from keras import ops

    from scoregen_keras import samplers
    from scoregen_keras.sde import VESDE

    shape = QUICK_IMAGE_SHAPE if quick else IMAGE_SHAPE
    n = QUICK_IMAGE_SEEDS if quick else IMAGE_SEEDS
    sde = VESDE(sigma_max=IMAGE_SIGMA_MAX, N=QUICK_IMAGE_N if quick else IMAGE_N)
    variances = np.geomspace(*IMAGE_STD_RANGE, int(np.prod(shape))).reshape(shape) ** 2

    def score_fn(x: Any, t: Any) -> Any:
        """The score of N(0, diag(variances)) under the VE SDE: -x / (s^2 + sigma_t^2)."""
        _, std = sde.marginal_coefficients(t)
        return -x / (
            ops.convert_to_tensor(variances, x.dtype) + ops.reshape(std, (-1, 1, 1, 1)) ** 2
        )

    spreads = {}
    for rule in ("batch", "per_example"):
        x, _ = samplers.pc_sample(
            score_fn, sde, (n, *shape), np.arange(n), snr=IMAGE_SNR, norm_rule=rule
        )
        x = np.asarray(ops.convert_to_numpy(x), np.float64)
        spreads[rule] = np.mean(x**2 / variances, axis=(1, 2, 3))  # per sample, 1 = the data's
    difference = spreads["per_example"] - spreads["batch"]
    return {
        "shape": list(shape),
        "n": n,
        "N": sde.N,
        "snr": IMAGE_SNR,
        "sigma_max": IMAGE_SIGMA_MAX,
        **{
            f"spread_{rule}": float(np.mean(values))
            for rule, values in spreads.items()
        },
        **{
            f"spread_{rule}_se": float(np.std(values, ddof=1) / np.sqrt(n))
            for rule, values in spreads.items()
        },
        "paired_difference": float(np.mean(difference)),
        "paired_difference_se": float(np.std(difference, ddof=1) / np.sqrt(n)),
    }  # fmt: skip


def compare(args: argparse.Namespace, folder: Path) -> list[dict[str, Any]]:
    """Per run and sampler: the largest |difference| of each backend to the first, and the
    samples' largest |value|."""
    import numpy as np

    rows = []
    first = args.backends[0]
    for index, run_dir in enumerate(args.run):
        files = {b: folder / f"{b}-{index}.npz" for b in args.backends}
        if not all(path.exists() for path in files.values()):
            continue
        loaded = {b: dict(np.load(path)) for b, path in files.items()}
        for name in DRAWS:
            base = loaded[first][name]
            row = {"run": str(run_dir), "sampler": name, "max_abs_value": float(np.abs(base).max())}
            for backend in args.backends[1:]:
                row[f"{backend} - {first}"] = _max_abs(loaded[backend][name], base)
            rows.append(row)
    return rows


def print_tables(report: dict[str, Any]) -> None:
    """The three tables."""
    print("backends (max |difference| to the first, model space):")
    for row in report["backends"]:
        others = "  ".join(f"{k}: {v:.1e}" for k, v in row.items() if " - " in k)
        print(
            f"  {Path(row['run']).name:<12} {row['sampler']:<38} {others}  "
            f"|x|max {row['max_abs_value']:.2f}"
        )
    print("batch sizes (max |difference| to the one-batch draw):")
    for entry in report["batch"]:
        for name, row in entry["batch"].items():
            sizes = "  ".join(f"{k}: {v:.1e}" for k, v in row.items())
            print(f"  {Path(entry['run']).name:<12} {name:<38} {sizes}")
    rule = report.get("rule")
    if rule:
        print(
            f"Langevin norms at {'x'.join(map(str, rule['shape']))} "
            f"(n {rule['n']}, N {rule['N']}): "
            f"batch {rule['spread_batch']:.4f} ± {rule['spread_batch_se']:.4f}, per example "
            f"{rule['spread_per_example']:.4f} ± {rule['spread_per_example_se']:.4f}, paired "
            f"difference {rule['paired_difference']:+.5f} ± {rule['paired_difference_se']:.5f}"
        )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Run every backend in its own process, compare, print, write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    info = machine()
    with tempfile.TemporaryDirectory() as folder:
        results = [
            backend_worker.run_worker(
                __file__, name, [*argv, "--samples", folder], {"runs": [], "rule": None}
            )
            for name in args.backends
        ]
        backends = compare(args, Path(folder))
    first = results[0]
    report = {
        "benchmark": "reproducible_sampling",
        "machine": info,
        "argv": argv,
        "seeds": QUICK_SEEDS if args.quick else N_SEEDS,
        "steps": QUICK_STEPS if args.quick else STEPS,
        "backends": backends,
        "batch": [entry for entry in first["runs"] if "batch" in entry],
        "rule": first["rule"],
        "notes": [note for result in results for note in result["notes"]],
    }
    print_tables(report)
    for result in results:
        backend_worker.print_notes(result)
    output = args.output or default_output(JSON_NAME, args.quick)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
