"""Issue 6, item 1: toy quality of the default `toy` (VE) and `toy-vp` (VP) presets.

Trains each preset with its default budget through `scoregen_keras.runs.train_run` (or reuses a
finished run folder: --run-ve / --run-vp, or the folder a previous call of this script left under
benchmarks/results/runs/), then, against the exact density of mixture5:

* NLL: the model's log-likelihood by the probability-flow ODE (`ode_likelihood`, exact
  divergence, RK45 at rtol = atol = 1e-5) on held-out true points, against their exact NLL;
* for each sampler -- PC-1000 (reverse diffusion + Langevin, N = 1000 steps), ODE RK45, EDM
  Heun at <= 35 NFE (18 steps), DPM-Solver++(2M) at <= 20 NFE (20 steps) -- the samples' mean
  exact log-density against its expectation, the component-occupancy total variation against true
  samples, and the sliced Wasserstein-1 distance divided by its noise floor
  (`reference.checks.sample_checks`).

Samplers run as `scoregen sample` runs them (`runs.draw_samples`, library defaults apart from
the step counts). Targets are issue 6's: |NLL gap| <= 0.05 nats, |log-density gap| <= 0.15 nats,
occupancy TV <= 0.03, SW1 ratio <= 2.5. Prints the table with pass/fail and writes
benchmarks/results/quality_toy.json and quality_toy.png (sample scatters).

    KERAS_BACKEND=jax python benchmarks/quality_toy.py                 # train (or reuse) both
    python benchmarks/quality_toy.py --run-ve runs/toy --run-vp runs/toy-vp
    python benchmarks/quality_toy.py --quick                           # smoke run, tiny budget
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

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
from reference import checks  # noqa: E402
from reference.datasets import mixture5  # noqa: E402
from scoregen_keras import runs  # noqa: E402
from scoregen_keras.runs.evaluate import model_log_prob_fn  # noqa: E402
from scoregen_keras.training.presets import resolve_config  # noqa: E402

JSON_NAME = "quality_toy.json"  # the plot goes beside it, as quality_toy.png

PRESETS = {"ve": "toy", "vp": "toy-vp"}
N_SAMPLES = 10_000
N_NLL = 10_000
N_TRUE_LOGP = 200_000  # true points for the expected log-density and occupancy
QUICK_STEPS = 300
QUICK_SAMPLES = 1_000
QUICK_NLL = 200
SCATTER_POINTS = 3_000
EVAL_SEED_OFFSET = 1_000  # evaluation data and sampler seeds are apart from training's seed

# issue 6, item 1
NLL_GAP_TARGET = 0.05
LOGP_GAP_TARGET = 0.15
OCCUPANCY_TV_TARGET = 0.03
SW1_RATIO_TARGET = 2.5
TARGETS = {
    "nll_gap_abs": NLL_GAP_TARGET,
    "logp_gap_abs": LOGP_GAP_TARGET,
    "occupancy_tv": OCCUPANCY_TV_TARGET,
    "sw1_ratio": SW1_RATIO_TARGET,
}

# (label, runs.draw_samples sampler, steps): PC-1000 is N = 1000 (2 NFE a step); RK45 is
# adaptive; Heun takes 2n - 1 NFE (18 steps -> 35); DPM-Solver++(2M) takes n (20 -> 20).
PC_STEPS = 1000
HEUN_STEPS = 18
DPM_STEPS = 20
SAMPLERS = (
    ("PC-1000", "pc", PC_STEPS),
    ("ODE RK45", "ode", None),
    (f"Heun {HEUN_STEPS} steps", "heun", HEUN_STEPS),
    (f"DPM-Solver++ {DPM_STEPS} steps", "dpm-solver", DPM_STEPS),
)
NFE_LIMITS = {"heun": 35, "dpm-solver": 20}


def _complete(run_dir: Path) -> bool:
    """True when run_dir holds a run whose run.json says complete."""
    status = run_dir / runs.STATUS_FILE
    return status.exists() and json.loads(status.read_text()).get("status") == "complete"


def obtain_run(
    preset: str, run_dir: Path | None, steps: int | None, retrain: bool, out_root: Path
) -> tuple[runs.Run, dict[str, Any]]:
    """Load run_dir, or train the preset into out_root/<preset> (reused there when complete)."""
    if run_dir is None:
        suffix = "" if steps is None else f"-{steps}"
        run_dir = out_root / f"{preset}{suffix}"
        if retrain and run_dir.exists():
            shutil.rmtree(run_dir)
        if not _complete(run_dir):
            if run_dir.exists():
                shutil.rmtree(run_dir)  # an unfinished run of this script: start again
            config = resolve_config(preset, {"steps": steps})
            # one preview at the end instead of every 2 000 steps: bookkeeping, not the budget
            config["sample_every"] = config["steps"]
            print(f"training {preset}: {config['steps']} steps x batch {config['batch_size']}")
            result = runs.train_run(config, run_dir, progress=False, log=print)
            print(f"  {result.status} in {result.seconds:.1f} s, final loss {result.final_loss}")
            trained = True
        else:
            trained = False
    else:
        trained = False
    run = runs.load_run(run_dir)
    status = json.loads((run.paths.status).read_text())
    info = {
        "preset": run.config.get("preset", preset),
        "run_dir": str(run_dir),
        "trained_now": trained,
        "status": run.status,
        "steps": int(run.config["steps"]),
        "step": run.step,
        "batch_size": int(run.config["batch_size"]),
        "lr": float(run.config["lr"]),
        "warmup": int(run.config["warmup"]),
        "ema": run.config["ema"],
        "sde": run.config["sde"],
        "model": run.config["model"],
        "n_train": int(run.config["n_train"]),
        "train_seconds": status.get("seconds"),
        "backend": run.config.get("backend"),
    }
    return run, info


def nll_figures(run: runs.Run, n: int, seed: int) -> dict[str, Any]:
    """Model NLL (probability-flow ODE, exact divergence) vs exact NLL on n held-out points."""
    mixture = mixture5()
    points = mixture.sample(np.random.default_rng(seed), n)
    start = time.perf_counter()
    model_logp = np.asarray(model_log_prob_fn(run)(points), dtype=np.float64)
    seconds = time.perf_counter() - start
    exact_logp = mixture.log_prob(points)
    gap = exact_logp - model_logp  # = model NLL - exact NLL, per point
    gap_mean = float(np.mean(gap))
    return {
        "n": n,
        "model_nll": float(-np.mean(model_logp)),
        "exact_nll": float(-np.mean(exact_logp)),
        "nll_gap": gap_mean,
        "nll_gap_std_error": float(np.std(gap, ddof=1) / np.sqrt(n)),
        "seconds": seconds,
        "passed": bool(abs(gap_mean) <= NLL_GAP_TARGET),
    }


def sampler_rows(run: runs.Run, n: int, seed: int) -> tuple[list[dict[str, Any]], dict]:
    """Draw n samples with each sampler and check them; returns rows and the samples."""
    mixture, rows, drawn = mixture5(), [], {}
    for label, sampler, steps in SAMPLERS:
        samples = runs.draw_samples(
            run.model, run.config, n, sampler=sampler, seed=seed, steps=steps
        )
        x = np.asarray(samples.x_original, dtype=np.float64)
        result = checks.sample_checks(x, mixture, np.random.default_rng(seed), N_TRUE_LOGP)
        row = {
            "sampler": label,
            "name": sampler,
            "steps": steps,
            "nfe": samples.nfe,
            "seconds": samples.seconds,
            "logp_gap": float(result["logp_gap"]),
            "occupancy_tv": float(result["occupancy_tv"]),
            "sw1": float(result["sw1"]),
            "sw1_floor": float(result["sw1_floor"]),
            "sw1_ratio": float(result["sw1_ratio"]),
        }
        row["logp_ok"] = abs(row["logp_gap"]) <= LOGP_GAP_TARGET
        row["occupancy_ok"] = row["occupancy_tv"] <= OCCUPANCY_TV_TARGET
        row["sw1_ok"] = row["sw1_ratio"] <= SW1_RATIO_TARGET
        row["nfe_ok"] = samples.nfe <= NFE_LIMITS.get(sampler, samples.nfe)
        row["passed"] = bool(row["logp_ok"] and row["occupancy_ok"] and row["sw1_ok"])
        row["passed"] = bool(row["passed"] and row["nfe_ok"])
        rows.append(row)
        drawn[label] = x
        print(
            f"  {label:<22} NFE {samples.nfe:>5d}  logp gap {row['logp_gap']:+.4f}  "
            f"occ. TV {row['occupancy_tv']:.4f}  SW1/floor {row['sw1_ratio']:.3f}  "
            f"{'pass' if row['passed'] else 'FAIL'}  ({samples.seconds:.1f} s)"
        )
    return rows, drawn


def plot(drawn: dict[str, dict[str, np.ndarray]], true: np.ndarray, path: Path) -> None:
    """Scatter of true points and of each sampler's samples, one row per SDE."""
    labels = [label for label, _, _ in SAMPLERS]
    fig, axes = plt.subplots(
        len(drawn), len(labels) + 1, figsize=(2.6 * (len(labels) + 1), 2.7 * len(drawn))
    )
    axes = np.atleast_2d(axes)
    lim = np.quantile(np.abs(true), 0.999) * 1.15
    for r, (sde, by_sampler) in enumerate(drawn.items()):
        panels = [("true samples", true), *[(label, by_sampler[label]) for label in labels]]
        for c, (title, x) in enumerate(panels):
            ax = axes[r, c]
            ax.scatter(x[:SCATTER_POINTS, 0], x[:SCATTER_POINTS, 1], s=1, alpha=0.4)
            ax.set_xlim(-lim, lim)
            ax.set_ylim(-lim, lim)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(title if c == 0 else f"{sde.upper()}: {title}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(report: dict[str, Any]) -> None:
    """The summary table: one row per SDE and sampler, NLL per SDE."""
    print(
        f"\n{'SDE':<4} {'sampler':<24} {'NFE':>6} {'logp gap':>9} {'occ. TV':>8} "
        f"{'SW1/floor':>9}  verdict"
    )
    for sde, entry in report["runs"].items():
        for row in entry["rows"]:
            print(
                f"{sde:<4} {row['sampler']:<24} {row['nfe']:>6d} {row['logp_gap']:>+9.4f} "
                f"{row['occupancy_tv']:>8.4f} {row['sw1_ratio']:>9.3f}  "
                f"{'pass' if row['passed'] else 'FAIL'}"
            )
    print(f"\n{'SDE':<4} {'model NLL':>10} {'exact NLL':>10} {'gap':>9} {'± s.e.':>8}  verdict")
    for sde, entry in report["runs"].items():
        nll = entry["nll"]
        print(
            f"{sde:<4} {nll['model_nll']:>10.4f} {nll['exact_nll']:>10.4f} {nll['nll_gap']:>+9.4f} "
            f"{nll['nll_gap_std_error']:>8.4f}  {'pass' if nll['passed'] else 'FAIL'}"
        )
    for sde, entry in report["runs"].items():
        t = entry["training"]
        seconds = "?" if t["train_seconds"] is None else f"{t['train_seconds']:.0f} s"
        print(
            f"{sde}: {t['preset']} {t['step']} steps x batch {t['batch_size']}, "
            f"trained in {seconds}"
        )


def main(argv: list[str] | None = None) -> int:
    """Train or load both runs, evaluate them, print, write JSON and PNG; 1 when a target fails."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-ve", type=Path, default=None, help="reuse this VE run folder")
    parser.add_argument("--run-vp", type=Path, default=None, help="reuse this VP run folder")
    parser.add_argument("--steps", type=int, default=None, help="training steps (preset default)")
    parser.add_argument("--samples", type=int, default=N_SAMPLES)
    parser.add_argument("--nll-points", type=int, default=N_NLL)
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--retrain", action="store_true", help="ignore runs left by earlier calls")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (PNGs beside it)")
    args = parser.parse_args(argv)
    args.output = args.output or default_output(JSON_NAME, args.quick)
    if args.quick:
        args.steps = args.steps or QUICK_STEPS
        args.samples = min(args.samples, QUICK_SAMPLES)
        args.nll_points = min(args.nll_points, QUICK_NLL)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "quality_toy",
        "machine": machine(backend=keras.backend.backend(), keras=keras.__version__),
        "targets": TARGETS,
        "n_samples": args.samples,
        "n_nll_points": args.nll_points,
        "n_true_logp": N_TRUE_LOGP,
        "quick": args.quick,
        "runs": {},
    }
    eval_seed = args.seed + EVAL_SEED_OFFSET
    drawn: dict[str, dict[str, np.ndarray]] = {}
    given = {"ve": args.run_ve, "vp": args.run_vp}
    for sde, preset in PRESETS.items():
        run, info = obtain_run(preset, given[sde], args.steps, args.retrain, args.runs_dir)
        print(f"{sde.upper()}: {info['run_dir']} (step {info['step']})")
        rows, drawn[sde] = sampler_rows(run, args.samples, eval_seed)
        nll = nll_figures(run, args.nll_points, eval_seed + 1)
        print(
            f"  NLL: model {nll['model_nll']:.4f}, exact {nll['exact_nll']:.4f}, "
            f"gap {nll['nll_gap']:+.4f} ± {nll['nll_gap_std_error']:.4f} ({nll['seconds']:.1f} s)"
        )
        report["runs"][sde] = {"training": info, "rows": rows, "nll": nll}
    report["passed"] = all(
        entry["nll"]["passed"] and all(row["passed"] for row in entry["rows"])
        for entry in report["runs"].values()
    )
    print_table(report)
    true = mixture5().sample(np.random.default_rng(eval_seed + 2), SCATTER_POINTS)
    png = args.output.with_suffix(".png")
    plot(drawn, true, png)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nall targets {'met' if report['passed'] else 'NOT met'}; wrote {args.output}, {png}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
