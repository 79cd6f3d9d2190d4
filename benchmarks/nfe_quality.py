"""Issue 4, item 6: sample quality versus NFE for each sampler on the trained toy preset.

Takes the VE ``toy`` preset run that ``benchmarks/quality_toy.py`` trains (reused from
benchmarks/results/runs/toy when complete, trained there otherwise; or ``--run DIR``), then draws
samples with PC, the probability-flow ODE (RK45, several tolerances), EDM's Heun sampler and
DPM-Solver++(2M) (several step counts) from ``scoregen_keras.samplers`` with the EMA weights, and
scores each set with ``reference.checks.sample_checks`` (sliced Wasserstein-1 ratio to its noise
floor, log-density gap, component occupancy). Prints a table and writes
benchmarks/results/nfe_quality.json and .png.

    KERAS_BACKEND=jax python benchmarks/nfe_quality.py
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threads only add overhead at these sizes
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import keras  # noqa: E402
import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.layout import RUNS_DIR, default_output  # noqa: E402
from benchmarks.machine_info import machine  # noqa: E402
from benchmarks.quality_toy import QUICK_STEPS, obtain_run  # noqa: E402
from reference import checks  # noqa: E402
from reference.datasets import mixture5  # noqa: E402
from scoregen_keras import samplers  # noqa: E402

JSON_NAME = "nfe_quality.json"  # the plot goes beside it, as nfe_quality.png
PRESET = "toy"  # the VE toy preset, as quality_toy.py trains it

N_SAMPLES = 5000
QUICK_SAMPLES = 1000
N_TRUE_LOGP = 100_000
# the sweeps: PC steps (2 NFE each: Langevin corrector + reverse diffusion), RK45 tolerances,
# Heun / DPM-Solver++ steps
PC_STEPS = (50, 100, 250, 500, 1000)
ODE_TOLERANCES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
HEUN_STEPS = (3, 5, 10, 20, 40)
DPM_STEPS = (5, 10, 20, 40, 80)


def sweeps(score_fn, sde, sigma_max: float | None) -> dict[str, list[tuple[str, object]]]:
    """sampler -> [(setting label, f(seed, n) -> (x, nfe))]."""
    shape = lambda n: (n, 2)  # noqa: E731
    return {
        "PC (RD + Langevin)": [
            (
                f"N={n}",
                lambda seed, k, n=n: samplers.pc_sample(score_fn, sde, shape(k), seed, n_steps=n),
            )
            for n in PC_STEPS
        ],
        "ODE RK45": [
            (
                f"rtol={tol:g}",
                lambda seed, k, tol=tol: samplers.ode_sample(
                    score_fn, sde, shape(k), seed, rtol=tol, atol=tol
                ),
            )
            for tol in ODE_TOLERANCES
        ],
        "EDM Heun": [
            (
                f"steps={n}",
                lambda seed, k, n=n: samplers.edm_heun_sample(
                    score_fn, sde, shape(k), seed, n, sigma_max=sigma_max
                ),
            )
            for n in HEUN_STEPS
        ],
        "DPM-Solver++(2M)": [
            (
                f"steps={n}",
                lambda seed, k, n=n: samplers.dpm_solver_pp_sample(
                    score_fn, sde, shape(k), seed, n, sigma_max=sigma_max
                ),
            )
            for n in DPM_STEPS
        ],
    }


def plot(rows: list[dict], path: Path, title: str) -> None:
    """SW1 ratio vs NFE, one line per sampler (log-log), with the pass bound."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for sampler in dict.fromkeys(row["sampler"] for row in rows):
        mine = [row for row in rows if row["sampler"] == sampler]
        ax.plot([r["nfe"] for r in mine], [r["sw1_ratio"] for r in mine], "o-", label=sampler)
    ax.axhline(checks.SW1_RATIO_BOUND, color="grey", ls="--", lw=1, label="check bound")
    ax.axhline(1.0, color="black", ls=":", lw=1, label="noise floor")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("NFE (score evaluations)")
    ax.set_ylabel("sliced W1 / noise floor")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    """Load or train the toy run, sweep the samplers, print the table, write JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="use this VE run folder")
    parser.add_argument("--retrain", action="store_true", help="ignore a run left by earlier calls")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--samples", type=int, default=N_SAMPLES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (PNG beside it)")
    args = parser.parse_args(argv)
    args.output = args.output or default_output(JSON_NAME, args.quick)
    steps = QUICK_STEPS if args.quick else None
    if args.quick:
        args.samples = min(args.samples, QUICK_SAMPLES)
    args.output.parent.mkdir(parents=True, exist_ok=True)

    run, training = obtain_run(PRESET, args.run, steps, args.retrain, args.runs_dir)
    print(f"{PRESET}: {training['run_dir']} (step {training['step']})")
    model, mixture = run.model, mixture5()
    score_fn, sigma_max = model.score_fn(use_ema=True), run.config.get("sampler_sigma_max")

    rows = []
    print(f"\n{'':<10}" + checks.TABLE_HEADER + f" {'time s':>7}")
    for sampler, settings in sweeps(score_fn, model.sde, sigma_max).items():
        for label, sample in settings:
            start = time.perf_counter()
            x, nfe = sample(args.seed + 1, args.samples)
            wall = time.perf_counter() - start
            result = checks.sample_checks(
                keras.ops.convert_to_numpy(x),
                mixture,
                np.random.default_rng(args.seed + 2),
                n_true_logp=N_TRUE_LOGP,
            )
            print(f"{label:<10}" + checks.format_row(sampler, int(nfe), result) + f" {wall:7.1f}")
            rows.append(
                {
                    "sampler": sampler,
                    "setting": label,
                    "nfe": int(nfe),
                    "seconds": wall,
                    **{
                        k: (bool(v) if isinstance(v, bool) else float(v)) for k, v in result.items()
                    },
                }
            )
    description = f"{training['model']}, {training['sde'].upper()} SDE, the '{PRESET}' preset"
    report = {
        "benchmark": "nfe_quality",
        "machine": machine(backend=keras.backend.backend(), keras=keras.__version__),
        "model": f"{description}, EMA weights",
        "training": training,
        "sampler_sigma_max": sigma_max,
        "n_samples": args.samples,
        "rows": rows,
    }
    png = args.output.with_suffix(".png")
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    plot(rows, png, f"{description}: {args.samples} samples, {keras.backend.backend()}")
    print(f"\nwrote {args.output} and {png}")


if __name__ == "__main__":
    main()
