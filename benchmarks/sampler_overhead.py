"""Sampler overhead over the model: wall time / (NFE x time of one compiled score evaluation).

For each backend (one subprocess each, KERAS_BACKEND set before Keras is imported) and each
model -- the toy MLP ("mlp/toy", batch 1024) and a small NCSN++ ("ncsnpp/tiny" or
"ncsnpp/digits", batch 64, when registered) -- every sampler of ``scoregen_keras.samplers`` is
run once to compile, then timed in rounds: in each round every sampler runs once, right after
a block of as many back-to-back compiled score calls as the run makes (its NFE), and the ratio
of the two times is the round's overhead. A sampler's overhead is the median over rounds (1.0 =
none; target <= 1.2): on a shared 2-core virtual machine the speed drifts by tens of per cent
within seconds, so each sampler is compared with score calls timed next to it, and the median
drops the rounds a slow spell hit; the table gives a distribution-free 95 % interval for each
median (`median_interval`), so a verdict near the target shows whether more rounds could change
it. Each round also times the same score calls made as a
host-driven solver makes them (input sent from the host, result read back before the next call):
their ratio to the back-to-back calls is the floor of any sampler that steps on the host, such as
SciPy's ``solve_ivp`` (reported beside the samplers, not a sampler itself). Beside each sampler
the cost of its per-sample counter noise (``benchmarks.noise_cost.counter_noise_step_seconds``:
one normal of the batch's shape, drawn as a compiled chunk requests it, times the normals the
sampler draws): per step beside the score's per step, and as a share of the wall time (the
noise is part of that wall time). Prints a table and writes
benchmarks/results/sampler_overhead.json (every round's ratio included).

    python benchmarks/sampler_overhead.py                  # all backends, modest step counts
    python benchmarks/sampler_overhead.py --backends jax --pc-steps 1000
    python benchmarks/sampler_overhead.py --rounds 3       # a quick look
"""

from __future__ import annotations

import argparse
import functools
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
from benchmarks.noise_cost import counter_noise_step_seconds  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "sampler_overhead.json"
BACKENDS = ("tensorflow", "jax", "torch")
MLP_MODEL, MLP_BATCH = "mlp/toy", 1024
NCSNPP_MODELS = ("ncsnpp/tiny", "ncsnpp/digits")  # the first one registered is used
NCSNPP_BATCH = 64
TARGET = 1.2
SCORE_TIME_T = 0.5  # the time at which the single score evaluation is timed
MIN_STEPS = 2
ROUND_TRIP_CALLS = 100  # score calls per round for the host round-trip floor
ROUND_TRIP_ROW = "(floor) score call + host round trip"
MEDIAN_LEVEL = 0.95  # coverage of the interval given for each median
MLP_ROUNDS, NCSNPP_ROUNDS = 21, 7  # default timing rounds: a toy round takes seconds, NCSN++ ~1 min


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
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help=f"timing rounds for both models (each: score block + run per sampler; default "
        f"{MLP_ROUNDS} for the toy MLP, {NCSNPP_ROUNDS} for NCSN++)",
    )
    parser.add_argument(
        "--mlp-rounds",
        type=int,
        default=None,
        help="timing rounds for the toy MLP (over --rounds); its rounds are cheap and its ratios "
        "the noisiest, since its score call lasts milliseconds",
    )
    parser.add_argument(
        "--ncsnpp-rounds", type=int, default=None, help="timing rounds for NCSN++ (over --rounds)"
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


def time_score(score: Any, x: Any, t: Any, repeats: int) -> float:
    """Seconds per call of a compiled score over one block of back-to-back calls."""
    start = time.perf_counter()
    for _ in range(repeats):
        out = score(x, t)
    _sync(out)
    return (time.perf_counter() - start) / repeats


def time_round_trip(score: Any, x_host: Any, t: Any, repeats: int) -> float:
    """Seconds per compiled score call whose input comes from, and result returns to, the host."""
    import keras

    from scoregen_keras import backend

    start = time.perf_counter()
    for _ in range(repeats):
        keras.ops.convert_to_numpy(score(backend.jit_argument(x_host), t))
    return (time.perf_counter() - start) / repeats


def median_interval(values: list[float], level: float = MEDIAN_LEVEL) -> list[float]:
    """A distribution-free interval for the median of the rounds' ratios: the order statistics
    x_(j) and x_(n+1-j), j the largest with P(Binomial(n, 1/2) < j) <= (1 - level) / 2, so
    it covers the median with probability >= level (7 rounds: min and max, 98 %; 21 rounds:
    the 6th and 16th, 97 %). Below 6 rounds no interval reaches 95 %: min and max are given."""
    from scipy.stats import binom

    ordered, n = sorted(values), len(values)
    j = 1
    while j < n // 2 and binom.cdf(j, n, 0.5) <= (1.0 - level) / 2:
        j += 1
    return [ordered[j - 1], ordered[n - j]]


def _row(nfe: int, walls: list[float], score_s: list[float]) -> dict[str, Any]:
    """One table row: the median over rounds of wall / (nfe x score time), an interval for it,
    and every round."""
    import numpy as np

    ratios = [w / (nfe * s) for w, s in zip(walls, score_s, strict=True)]
    return {
        "nfe": nfe,
        "wall_s": float(np.median(walls)),
        "score_s": float(np.median(score_s)),
        "overhead": float(np.median(ratios)),
        "overhead_median_interval": median_interval(ratios),
        "overhead_range": [min(ratios), max(ratios)],
        "overhead_rounds": ratios,
    }


def _noise_cost(
    row: dict[str, Any], n_steps: int, n_draws: int, noise_s_per_draw: float
) -> dict[str, Any]:
    """The per-sample counter noise's share of a run: its draws' seconds, per step beside the
    score's per step (fixed-step samplers), and as a fraction of the run's wall time."""
    noise_s = n_draws * noise_s_per_draw
    per_step = {}
    if n_steps:
        per_step = {
            "noise_s_per_step": noise_s / n_steps,
            "score_s_per_step": row["nfe"] * row["score_s"] / n_steps,
        }
    fraction = noise_s / row["wall_s"]
    return {"noise_draws": n_draws, "noise_s": noise_s, "noise_fraction": fraction, **per_step}


def time_sampler(run: Any) -> tuple[float, int]:
    """(wall seconds, NFE) of one sampler run, waiting for its result."""
    start = time.perf_counter()
    out, nfe = run()
    _sync(out)
    return time.perf_counter() - start, nfe


def sampler_runs(args: argparse.Namespace, fraction: float) -> dict[str, tuple[Any, int, int]]:
    """name -> (f(score_fn, sigma_score_fn, sde, shape, variables) running one sampler, its
    steps, its normals drawn (`samplers`' draw layouts))."""
    import numpy as np

    from scoregen_keras import samplers
    from scoregen_keras.sde import geometric_sigmas

    def steps(n: int) -> int:
        return max(MIN_STEPS, round(n * fraction))

    sigmas = geometric_sigmas(1.0, 0.01, steps(args.langevin_levels))
    tol = {"rtol": args.rk45_tol, "atol": args.rk45_tol}
    seed = 0
    ald_steps = steps(args.langevin_levels) * steps(args.langevin_steps_each)
    pc_steps, ode_steps = steps(args.pc_steps), steps(args.ode_steps)
    return {
        "annealed_langevin": (
            lambda s, ss, sde, shape, v: samplers.annealed_langevin(
                ss, sigmas, shape, seed, steps(args.langevin_steps_each), variables=v
            ),
            ald_steps,
            1 + ald_steps,
        ),
        "pc (rev. diffusion + langevin)": (
            lambda s, ss, sde, shape, v: samplers.pc_sample(
                s, sde, shape, seed, n_steps=pc_steps, variables=v
            ),
            pc_steps,
            1 + 2 * pc_steps,
        ),
        "pc (euler_maruyama, no corr.)": (
            lambda s, ss, sde, shape, v: samplers.pc_sample(
                s, sde, shape, seed, "euler_maruyama", "none", n_steps=pc_steps, variables=v
            ),
            pc_steps,
            1 + pc_steps,
        ),
        "ode RK45 (host solve_ivp)": (
            lambda s, ss, sde, shape, v: samplers.ode_sample(
                s, sde, shape, seed, variables=v, **tol
            ),
            0,  # adaptive: the steps are not known before
            1,
        ),
        "ode dopri5 (compiled RK45)": (
            lambda s, ss, sde, shape, v: samplers.ode_sample(
                s, sde, shape, seed, "dopri5", variables=v, **tol
            ),
            0,
            1,
        ),
        "ode heun (fixed step)": (
            lambda s, ss, sde, shape, v: samplers.ode_sample(
                s, sde, shape, seed, "heun", n_steps=ode_steps, variables=v
            ),
            ode_steps,
            1,
        ),
        "edm_heun (churn)": (
            lambda s, ss, sde, shape, v: samplers.edm_heun_sample(
                s, sde, shape, seed, args.edm_steps, s_churn=float(np.sqrt(2.0)), variables=v
            ),
            args.edm_steps,
            1 + args.edm_steps,  # churn at every step: gamma = min(sqrt 2 / N, sqrt 2 - 1) > 0
        ),
        "dpm_solver_pp": (
            lambda s, ss, sde, shape, v: samplers.dpm_solver_pp_sample(
                s, sde, shape, seed, args.dpm_steps, variables=v
            ),
            args.dpm_steps,
            1,
        ),
    }


def input_shape(net: Any, batch: int) -> tuple[int, ...]:
    """(batch, dim) for the MLP, (batch, H, W, C) for an image network, from its config."""
    config = net.get_config()
    if "dim" in config:
        return (batch, config["dim"])
    channels = config.get("num_channels", config.get("channels"))
    return (batch, config["image_size"], config["image_size"], channels)


def bench_model(
    args: argparse.Namespace, name: str, batch: int, fraction: float, rounds: int
) -> dict:
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
    plan = sampler_runs(args, fraction)
    runs = {
        sampler: functools.partial(run, score_fn, sigma_score_fn, sde, shape, variables)
        for sampler, (run, _, _) in plan.items()
    }
    # the noise source's cost: one normal of the batch's shape, drawn as a chunk requests them
    noise_s_per_draw = counter_noise_step_seconds(shape, 1)
    nfes, walls, score_s = {}, {sampler: [] for sampler in runs}, {sampler: [] for sampler in runs}
    x_host = keras.ops.convert_to_numpy(x)
    round_trip_walls, round_trip_score_s = [], []
    with backend.no_grad():
        _sync(compiled(x, t))  # compile
        for sampler, run in runs.items():
            _, nfes[sampler] = time_sampler(run)  # compile
        for _ in range(rounds):
            for sampler, run in runs.items():
                # as many score calls as the run makes, timed just before it
                score_s[sampler].append(time_score(compiled, x, t, nfes[sampler]))
                walls[sampler].append(time_sampler(run)[0])
            round_trip_score_s.append(time_score(compiled, x, t, ROUND_TRIP_CALLS))
            calls_s = time_round_trip(compiled, x_host, t, ROUND_TRIP_CALLS)
            round_trip_walls.append(ROUND_TRIP_CALLS * calls_s)
    rows = {sampler: _row(nfes[sampler], wall, score_s[sampler]) for sampler, wall in walls.items()}
    for sampler, (_, n_steps, n_draws) in plan.items():
        rows[sampler].update(_noise_cost(rows[sampler], n_steps, n_draws, noise_s_per_draw))
    floor = _row(ROUND_TRIP_CALLS, round_trip_walls, round_trip_score_s)
    return {
        "model": name,
        "batch": batch,
        "rounds": rounds,
        "noise_s_per_draw": noise_s_per_draw,
        "samplers": rows,
        "host_round_trip": floor,
    }


def worker(args: argparse.Namespace) -> None:
    """Benchmark the backend selected by KERAS_BACKEND; print one RESULT line of JSON."""
    if args.threads is not None and os.environ.get("KERAS_BACKEND") == "torch":
        import torch

        torch.set_num_threads(args.threads)
    from scoregen_keras import backend
    from scoregen_keras.networks import CONFIGS

    mlp_rounds = args.mlp_rounds or args.rounds or MLP_ROUNDS
    ncsnpp_rounds = args.ncsnpp_rounds or args.rounds or NCSNPP_ROUNDS
    models = [bench_model(args, MLP_MODEL, args.mlp_batch, 1.0, mlp_rounds)]
    registered = [name for name in NCSNPP_MODELS if name in CONFIGS]
    notes = []
    if registered:
        models.append(
            bench_model(
                args, registered[0], args.ncsnpp_batch, args.ncsnpp_step_fraction, ncsnpp_rounds
            )
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
    header += f"{'wall s':>8} {'score ms':>9} {'overhead':>8} {'95% interval':>13} "
    header += f"{'rounds range':>13} {'noise/step ms':>13} {'score/step ms':>13} {'noise %':>7}"
    print(header)
    print("-" * len(header))
    for result in results:
        for model in result["models"]:
            rows = dict(model["samplers"])
            if "host_round_trip" in model:
                rows[ROUND_TRIP_ROW] = model["host_round_trip"]
            for sampler, row in rows.items():
                flag = ""
                if sampler != ROUND_TRIP_ROW and row["overhead"] > TARGET:
                    flag = "  > target"
                low, high = row["overhead_range"]
                below, above = row["overhead_median_interval"]
                noise = ""
                if "noise_s_per_step" in row:
                    noise += f" {1e3 * row['noise_s_per_step']:>13.3f}"
                    noise += f" {1e3 * row['score_s_per_step']:>13.3f}"
                elif "noise_fraction" in row:
                    noise += f" {'-':>13} {'-':>13}"
                if "noise_fraction" in row:
                    noise += f" {100 * row['noise_fraction']:>7.1f}"
                print(
                    f"{result['backend']:<11} {model['model']:<14} {model['batch']:>5} "
                    f"{sampler:<31} {row['nfe']:>5} {row['wall_s']:>8.3f} "
                    f"{1e3 * row['score_s']:>9.3f} {row['overhead']:>8.2f} "
                    f"{below:>6.2f}-{above:<6.2f} {low:>6.2f}-{high:<6.2f}{noise}{flag}"
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
        "definition": "median over rounds of wall time / (NFE x compiled score time at the "
        "same batch, from NFE score calls timed just before the run)",
        "median_interval": f"order statistics covering the median with probability >= "
        f"{MEDIAN_LEVEL} (distribution-free)",
        "host_round_trip": {
            "row": ROUND_TRIP_ROW,
            "definition": f"per model, {ROUND_TRIP_CALLS} score calls each sent from and read "
            "back to the host over as many back-to-back calls: the floor of a host-stepped solver",
        },
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "argv": argv,
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "note": args.note,
    }
    args.output.write_text(json.dumps({**meta, "results": results}, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
