"""Sampler overhead over the model: wall time / (NFE x time of one compiled score evaluation).

For each backend (one subprocess each, KERAS_BACKEND set before Keras is imported) and each
model -- the toy MLP ("mlp/toy", batch 1024) and a small NCSN++ ("ncsnpp/tiny" or
"ncsnpp/digits", batch 64, when registered) -- every sampler of ``scoregen_keras.samplers`` is
run once to compile, then timed; the ratio to NFE x (compiled score time at the same batch) is
the sampler's overhead (1.0 = none; target <= 1.2). Prints a table and writes
benchmarks/results/sampler_overhead.json.

    python benchmarks/sampler_overhead.py                  # all backends, modest step counts
    python benchmarks/sampler_overhead.py --backends jax --pc-steps 1000
"""

from __future__ import annotations

import argparse
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

RESULTS = ROOT / "benchmarks" / "results" / "sampler_overhead.json"
BACKENDS = ("tensorflow", "jax", "torch")
MLP_MODEL, MLP_BATCH = "mlp/toy", 1024
NCSNPP_MODELS = ("ncsnpp/tiny", "ncsnpp/digits")  # the first one registered is used
NCSNPP_BATCH = 64
TARGET = 1.2
SCORE_TIME_T = 0.5  # the time at which the single score evaluation is timed
MIN_STEPS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--mlp-batch", type=int, default=MLP_BATCH)
    parser.add_argument("--ncsnpp-batch", type=int, default=NCSNPP_BATCH)
    parser.add_argument("--pc-steps", type=int, default=100, help="PC steps (N)")
    parser.add_argument("--langevin-levels", type=int, default=10)
    parser.add_argument("--langevin-steps-each", type=int, default=10)
    parser.add_argument("--ode-steps", type=int, default=50, help="fixed-step Heun ODE steps")
    parser.add_argument("--rk45-tol", type=float, default=1e-5, help="RK45 rtol = atol")
    parser.add_argument("--edm-steps", type=int, default=18)
    parser.add_argument("--dpm-steps", type=int, default=20)
    parser.add_argument(
        "--ncsnpp-step-fraction",
        type=float,
        default=0.2,
        help="PC, Langevin and fixed-step ODE steps for NCSN++ are this fraction of the above (it "
        "is ~100x the MLP's cost); EDM and DPM-Solver++ keep their counts, their usual NFE",
    )
    parser.add_argument("--score-repeats", type=int, default=50, help="score calls per block")
    parser.add_argument(
        "--timing-repeats", type=int, default=3, help="timed blocks / runs; the best is kept"
    )
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (torch)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    backend_worker.add_worker_flag(parser)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- worker (one backend)


def _sync(value: Any) -> None:
    """Wait for a (possibly asynchronous) result."""
    import keras

    keras.ops.convert_to_numpy(value)


def time_score(score: Any, x: Any, t: Any, repeats: int, blocks: int) -> float:
    """Seconds per call of a compiled score after a warm-up call: the best of several blocks."""
    _sync(score(x, t))
    best = float("inf")
    for _ in range(blocks):
        start = time.perf_counter()
        for _ in range(repeats):
            out = score(x, t)
        _sync(out)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def time_sampler(run: Any, repeats: int) -> tuple[float, int]:
    """(best wall seconds of several runs, NFE) of a sampler run, after a compiling run."""
    run()
    best, nfe = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        out, nfe = run()
        _sync(out)
        best = min(best, time.perf_counter() - start)
    return best, nfe


def sampler_runs(args: argparse.Namespace, fraction: float) -> dict[str, Any]:
    """name -> f(score_fn, sigma_score_fn, sde, shape, variables) running one sampler."""
    import numpy as np

    from scoregen_keras import samplers
    from scoregen_keras.sde import geometric_sigmas

    def steps(n: int) -> int:
        return max(MIN_STEPS, round(n * fraction))

    sigmas = geometric_sigmas(1.0, 0.01, steps(args.langevin_levels))
    tol = {"rtol": args.rk45_tol, "atol": args.rk45_tol}
    seed = 0
    return {
        "annealed_langevin": lambda s, ss, sde, shape, v: samplers.annealed_langevin(
            ss, sigmas, shape, seed, steps(args.langevin_steps_each), variables=v
        ),
        "pc (rev. diffusion + langevin)": lambda s, ss, sde, shape, v: samplers.pc_sample(
            s, sde, shape, seed, n_steps=steps(args.pc_steps), variables=v
        ),
        "pc (euler_maruyama, no corr.)": lambda s, ss, sde, shape, v: samplers.pc_sample(
            s, sde, shape, seed, "euler_maruyama", "none", n_steps=steps(args.pc_steps), variables=v
        ),
        "ode RK45 (host solve_ivp)": lambda s, ss, sde, shape, v: samplers.ode_sample(
            s, sde, shape, seed, variables=v, **tol
        ),
        "ode heun (fixed step)": lambda s, ss, sde, shape, v: samplers.ode_sample(
            s, sde, shape, seed, "heun", n_steps=steps(args.ode_steps), variables=v
        ),
        "edm_heun (churn)": lambda s, ss, sde, shape, v: samplers.edm_heun_sample(
            s, sde, shape, seed, args.edm_steps, s_churn=float(np.sqrt(2.0)), variables=v
        ),
        "dpm_solver_pp": lambda s, ss, sde, shape, v: samplers.dpm_solver_pp_sample(
            s, sde, shape, seed, args.dpm_steps, variables=v
        ),
    }


def input_shape(net: Any, batch: int) -> tuple[int, ...]:
    """(batch, dim) for the MLP, (batch, H, W, C) for an image network, from its config."""
    config = net.get_config()
    if "dim" in config:
        return (batch, config["dim"])
    channels = config.get("num_channels", config.get("channels"))
    return (batch, config["image_size"], config["image_size"], channels)


def bench_model(args: argparse.Namespace, name: str, batch: int, fraction: float) -> dict:
    """Overheads of every sampler for one registered network at one batch size."""
    import keras
    import numpy as np

    from scoregen_keras import backend, losses
    from scoregen_keras.networks import get_network
    from scoregen_keras.sde import VESDE

    net = get_network(name)
    sde = VESDE()
    shape = input_shape(net, batch)
    x = keras.random.normal(shape, seed=0)
    _sync(net(x, keras.ops.ones((batch,))))  # build
    variables = net.variables
    score_fn = losses.precondition(net, sde)
    sigma_score_fn = losses.sigma_conditional_score(net)
    compiled = backend.jit(score_fn, variables=variables)
    t = keras.ops.convert_to_tensor(np.full(batch, SCORE_TIME_T, np.float32))
    with backend.no_grad():
        t_score = time_score(compiled, x, t, args.score_repeats, args.timing_repeats)
    rows = {}
    for sampler, run in sampler_runs(args, fraction).items():
        wall, nfe = time_sampler(
            lambda run=run: run(score_fn, sigma_score_fn, sde, shape, variables),
            args.timing_repeats,
        )
        rows[sampler] = {"nfe": nfe, "wall_s": wall, "overhead": wall / (nfe * t_score)}
    return {"model": name, "batch": batch, "score_s": t_score, "samplers": rows}


def worker(args: argparse.Namespace) -> None:
    """Benchmark the backend selected by KERAS_BACKEND; print one RESULT line of JSON."""
    if args.threads is not None and os.environ.get("KERAS_BACKEND") == "torch":
        import torch

        torch.set_num_threads(args.threads)
    from scoregen_keras import backend
    from scoregen_keras.networks import CONFIGS

    models = [bench_model(args, MLP_MODEL, args.mlp_batch, 1.0)]
    registered = [name for name in NCSNPP_MODELS if name in CONFIGS]
    notes = []
    if registered:
        models.append(
            bench_model(args, registered[0], args.ncsnpp_batch, args.ncsnpp_step_fraction)
        )
    else:
        notes.append(f"none of {NCSNPP_MODELS} is registered in scoregen_keras.networks: skipped")
    backend_worker.emit_result({"backend": backend.name(), "models": models, "notes": notes})


# --------------------------------------------------------------------------- driver


def run_backend(backend: str, argv: list[str]) -> dict:
    """Run the worker for one backend in a subprocess; its result."""
    return backend_worker.run_worker(__file__, backend, argv, {"models": []})


def print_table(results: list[dict]) -> None:
    """One row per (backend, model, sampler)."""
    header = f"{'backend':<11} {'model':<14} {'batch':>5} {'sampler':<31} {'NFE':>5} "
    header += f"{'wall s':>8} {'score ms':>9} {'overhead':>8}"
    print(header)
    print("-" * len(header))
    for result in results:
        for model in result["models"]:
            for sampler, row in model["samplers"].items():
                flag = "" if row["overhead"] <= TARGET else "  > target"
                print(
                    f"{result['backend']:<11} {model['model']:<14} {model['batch']:>5} "
                    f"{sampler:<31} {row['nfe']:>5} {row['wall_s']:>8.3f} "
                    f"{1e3 * model['score_s']:>9.3f} {row['overhead']:>8.2f}{flag}"
                )
        backend_worker.print_notes(result)


def main(argv: list[str] | None = None) -> None:
    """Run every backend in its own process, print the table, write the JSON."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        worker(args)
        return
    load_before = os.getloadavg()
    results = [run_backend(backend, argv) for backend in args.backends]
    print_table(results)
    load_after = os.getloadavg()
    print(f"1-min load average: {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "target": TARGET,
        "definition": "wall time / (NFE x compiled score time at the same batch)",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "argv": argv,
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "note": args.note,
    }
    args.output.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
