"""Issue 6, item 2: the `digits` preset after a stated CPU budget, in digits-classifier features.

Trains the `digits` preset (small NCSN++, VE SDE, scikit-learn's 8x8 digits) within a stated
wall-clock budget through `scoregen_keras.runs.train_run` (or reuses a finished run folder:
--run, or the folder a previous call left under benchmarks/results/runs/), draws 1 000 samples
with the preset's sampler (PC, 500 steps), and compares them with real digits in the feature
space of the digits classifier shipped in data/ (`scoregen_keras.evaluate.evaluate_samples`):

* Fréchet distance of the samples to one random half of the digits, beside the floor -- the same
  figure between the two halves of the real data -- averaged over several random splits; the
  ratio to the floor (target <= 3);
* KID in the same features, and the Inception-score-like class confidence of the classifier
  (10 = confident and balanced, 1 = no class information), beside the real digits' figure.

The preset trains on all 1 797 digits (there is no held-out split for the generative model), so
the real halves are digits the model has seen; a model that memorised them would score below the
floor. Writes benchmarks/results/quality_digits.json, digits_samples.png (sample grid beside real
digits) and digits_loss.png (training loss).

Budget: --budget-minutes (default 15) of wall-clock training time on this machine. The script
trains CALIBRATION_STEPS steps, times a step, and resumes the run to as many steps as the rest of
the budget allows (at most the preset's 4 000); --steps N trains exactly N steps instead. The
JSON records the steps, the wall time and the machine.

    KERAS_BACKEND=jax python benchmarks/quality_digits.py            # train (or reuse), evaluate
    python benchmarks/quality_digits.py --run runs/digits               # evaluate a finished run
    python benchmarks/quality_digits.py --quick                         # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from scoregen_keras import plots, runs  # noqa: E402
from scoregen_keras.data import load_dataset  # noqa: E402
from scoregen_keras.evaluate import evaluate_samples  # noqa: E402
from scoregen_keras.presets import resolve_config  # noqa: E402

RESULTS = Path(__file__).parent / "results"
JSON_PATH = RESULTS / "quality_digits.json"
GRID_PATH = RESULTS / "digits_samples.png"
LOSS_PATH = RESULTS / "digits_loss.png"
RUNS_DIR = RESULTS / "runs"  # ignored by git (`runs/`)

PRESET = "digits"
BUDGET_MINUTES = 15.0
CALIBRATION_STEPS = 30  # timed between the metrics lines at steps 10 and 30
CALIBRATION_LOG_EVERY = 10
BUDGET_SAFETY = 0.9  # resume to 90 % of the steps the remaining budget allows
PREVIEW_IMAGES = 16
PREVIEW_STEPS = 100
N_SAMPLES = 1_000
N_PAIRS = 5  # random splits of the real digits into two halves
GRID_IMAGES = 100
GRID_COLUMNS = 10
QUICK_STEPS = 30
QUICK_SAMPLES = 64
QUICK_SAMPLER_STEPS = 20
FD_RATIO_TARGET = 3.0
SAMPLE_SEED_OFFSET = 1_000  # sampler seed apart from the training seed


def machine() -> dict[str, Any]:
    """The machine the figures come from: platform, CPU count, load, backend."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": None if load is None else round(load[0], 2),
        "python": platform.python_version(),
        "backend": keras.backend.backend(),
        "keras": keras.__version__,
    }


def _fresh_config(steps: int, preview_steps: int) -> dict[str, Any]:
    """The digits preset for `steps` steps, with previews and checkpoints only at the end."""
    config = resolve_config(PRESET, {"steps": steps})
    # bookkeeping, not the training budget: one small preview and one checkpoint at the end
    config["sample_every"] = config["checkpoint_every"] = steps
    config["n_sample_preview"] = PREVIEW_IMAGES
    config["sampler_steps"] = preview_steps
    config["log_every"] = CALIBRATION_LOG_EVERY  # a finer loss curve; enough lines to time a step
    return config


def _seconds_per_step(run_dir: Path) -> float:
    """Training seconds per step between the first and the last metrics line (compile excluded)."""
    records = [json.loads(line) for line in (run_dir / runs.METRICS_FILE).read_text().splitlines()]
    first, last = records[0], records[-1]
    if last["step"] <= first["step"]:
        raise RuntimeError(f"too few metrics lines in {run_dir} to time a training step")
    return (last["wall_time"] - first["wall_time"]) / (last["step"] - first["step"])


def train_within_budget(
    run_dir: Path, budget_s: float, preview_steps: int, max_steps: int
) -> dict[str, Any]:
    """Train CALIBRATION_STEPS steps, time a step, then resume to the steps the budget allows.

    The budget is wall-clock seconds of `train_run` (compilation and checkpoints included);
    the total is capped at max_steps (the preset's schedule).
    """
    start = time.perf_counter()
    config = _fresh_config(CALIBRATION_STEPS, preview_steps)
    print(
        f"training {PRESET}: {CALIBRATION_STEPS} calibration steps x batch {config['batch_size']}"
    )
    runs.train_run(config, run_dir, progress=False, log=print)
    used = time.perf_counter() - start
    per_step = _seconds_per_step(run_dir)
    extra = max(0, int((budget_s - used) / per_step * BUDGET_SAFETY))
    total = min(max_steps, CALIBRATION_STEPS + extra)
    print(f"  {used:.0f} s used, {per_step:.3f} s a step: resuming to {total} steps")
    if total > CALIBRATION_STEPS:
        runs.train_run(_fresh_config(total, preview_steps), run_dir, resume=True, progress=False)
    seconds = time.perf_counter() - start
    print(f"  trained {total} steps in {seconds:.0f} s (budget {budget_s:.0f} s)")
    return {"budget_s": budget_s, "wall_s": seconds, "seconds_per_step": per_step, "steps": total}


def obtain_run(
    run_dir: Path | None,
    steps: int | None,
    budget_s: float,
    retrain: bool,
    out_root: Path,
    preview_steps: int,
) -> tuple[runs.Run, dict[str, Any] | None]:
    """Load run_dir, or train the digits preset into out_root (reused there when complete).

    Trains `steps` steps when given, else as many as `budget_s` seconds allow. Returns the run and
    what the training did (None when a run was reused).
    """
    if run_dir is not None:
        return runs.load_run(run_dir), None
    name = f"{PRESET}-{steps}" if steps else f"{PRESET}-{budget_s:.0f}s"
    run_dir = out_root / name
    status = run_dir / runs.STATUS_FILE
    complete = status.exists() and json.loads(status.read_text()).get("status") == "complete"
    if complete and not retrain:
        return runs.load_run(run_dir), None
    if run_dir.exists():
        shutil.rmtree(run_dir)
    if steps:
        start = time.perf_counter()
        config = _fresh_config(steps, preview_steps)
        print(f"training {PRESET}: {steps} steps x batch {config['batch_size']}")
        runs.train_run(config, run_dir, progress=False, log=print)
        done = {"budget_s": None, "wall_s": time.perf_counter() - start, "steps": steps}
    else:
        done = train_within_budget(
            run_dir, budget_s, preview_steps, int(resolve_config(PRESET)["steps"])
        )
    return runs.load_run(run_dir), done


def loss_curve(run: runs.Run) -> list[tuple[int, float]]:
    """(step, loss) pairs from the run's metrics log."""
    points = []
    for line in run.paths.metrics.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "loss" in record and "step" in record:
            points.append((int(record["step"]), float(record["loss"])))
    return points


def plot_loss(curve: list[tuple[int, float]], path: Path, title: str) -> None:
    """Training loss against step (log scale)."""
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    if curve:
        steps, losses = zip(*curve, strict=True)
        ax.plot(steps, losses, lw=1)
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_grid(samples: np.ndarray, real: np.ndarray, path: Path, title: str) -> None:
    """Sample grid beside a grid of real digits, both in [0, 1]."""
    panels = [
        (f"samples: {title}", plots.image_grid(samples[:GRID_IMAGES], (0.0, 1.0), GRID_COLUMNS)),
        ("real digits", plots.image_grid(real[:GRID_IMAGES], (0.0, 1.0), GRID_COLUMNS)),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 4.3))
    for ax, (name, grid) in zip(axes, panels, strict=True):
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Train or load, sample, evaluate, print, write JSON and PNGs; 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="reuse this digits run folder")
    parser.add_argument(
        "--budget-minutes",
        type=float,
        default=BUDGET_MINUTES,
        help="training wall-clock budget (steps: as many as fit, at most the preset's)",
    )
    parser.add_argument("--steps", type=int, default=None, help="fixed steps instead of a budget")
    parser.add_argument("--samples", type=int, default=N_SAMPLES)
    parser.add_argument("--sampler", default=None, help="runs.draw_samples sampler (preset's)")
    parser.add_argument("--sampler-steps", type=int, default=None, help="(preset's)")
    parser.add_argument("--pairs", type=int, default=N_PAIRS, help="random splits for the floor")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--retrain", action="store_true", help="ignore runs left by earlier calls")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    parser.add_argument("--output", type=Path, default=JSON_PATH)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = min(args.steps or QUICK_STEPS, QUICK_STEPS)
        args.samples = min(args.samples, QUICK_SAMPLES)
        args.sampler_steps = args.sampler_steps or QUICK_SAMPLER_STEPS
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"benchmark": "quality_digits", "machine": machine()}

    preview_steps = QUICK_SAMPLER_STEPS if args.quick else PREVIEW_STEPS
    run, done = obtain_run(
        args.run, args.steps, 60.0 * args.budget_minutes, args.retrain, args.runs_dir, preview_steps
    )
    config = run.config
    status = json.loads(run.paths.status.read_text())
    sampler = args.sampler or config["sampler"]
    sampler_steps = args.sampler_steps or resolve_config(PRESET)["sampler_steps"]
    print(f"run {run.paths.root} (step {run.step}); sampling {args.samples} with {sampler}")
    drawn = runs.draw_samples(
        run.model,
        config,
        args.samples,
        sampler=sampler,
        seed=args.seed + SAMPLE_SEED_OFFSET,
        steps=sampler_steps,
    )
    print(f"  NFE {drawn.nfe}, {drawn.seconds:.1f} s")
    dataset = load_dataset(PRESET)  # model space [0, 1], as the run was trained
    samples = np.clip(drawn.x, 0.0, 1.0)  # pixel values; the run's data lie in [0, 1]
    start = time.perf_counter()
    figures = evaluate_samples(
        samples, dataset.x, "images", seed=args.seed, n_pairs=args.pairs, pixel_range=(0.0, 1.0)
    )
    eval_seconds = time.perf_counter() - start
    fd, kid, conf = figures["fd_digits"], figures["kid_digits"], figures["class_confidence_digits"]
    ratio = fd["value"] / fd["floor_mean"]
    report.update(
        {
            "training": {
                "preset": PRESET,
                "run_dir": str(run.paths.root),
                "trained_now": done is not None,
                "budget_s": None if done is None else done["budget_s"],
                "wall_s": None if done is None else done["wall_s"],
                "seconds_per_step": None if done is None else done.get("seconds_per_step"),
                "steps": int(config["steps"]),
                "step": run.step,
                "preset_steps": int(resolve_config(PRESET)["steps"]),
                "batch_size": int(config["batch_size"]),
                "lr": float(config["lr"]),
                "model": config["model"],
                "sde": config["sde"],
                "train_seconds": status.get("seconds"),
                "n_train": len(dataset.x),
            },
            "sampling": {
                "sampler": sampler,
                "sampler_steps": sampler_steps,
                "n_samples": args.samples,
                "nfe": drawn.nfe,
                "seconds": drawn.seconds,
            },
            "n_pairs": args.pairs,
            "evaluation_seconds": eval_seconds,
            "metrics": figures,
            "fd_ratio": ratio,
            "fd_ratio_target": FD_RATIO_TARGET,
            "passed": bool(ratio <= FD_RATIO_TARGET),
            "quick": args.quick,
        }
    )
    print(f"\n{'metric':<26} {'samples':>10} {'real floor':>11} {'ratio':>7}")
    print(
        f"{'Fréchet (digits feat.)':<26} {fd['value']:>10.4f} {fd['floor_mean']:>11.4f} "
        f"{ratio:>7.2f}"
    )
    print(
        f"{'KID (digits feat.)':<26} {kid['value']:>10.5f} {kid['floor_mean']:>11.5f} "
        f"{kid['value'] / kid['floor_mean'] if kid['floor_mean'] > 0 else float('nan'):>7.2f}"
    )
    print(f"{'class confidence':<26} {conf['value']:>10.3f} {conf['floor_mean']:>11.3f}")
    seconds = status.get("seconds")
    print(
        f"\ntraining: {run.step} steps x batch {config['batch_size']} "
        f"({'?' if seconds is None else f'{seconds:.0f}'} s); FD ratio {ratio:.2f} "
        f"({'pass' if report['passed'] else 'FAIL'}, target <= {FD_RATIO_TARGET:g})"
    )
    title = f"{run.step} steps, {sampler} NFE {drawn.nfe}"
    grid_path = args.output.with_name(GRID_PATH.name)
    loss_path = args.output.with_name(LOSS_PATH.name)
    plot_grid(samples, dataset.x, grid_path, title)
    plot_loss(loss_curve(run), loss_path, f"digits preset: training loss ({run.step} steps)")
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}, {grid_path}, {loss_path}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
