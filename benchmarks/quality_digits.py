"""Issue 6, item 2: the `digits` preset after its fixed CPU budget, in digits-classifier features.

Trains the `digits` preset through `scoregen_keras.runs.train_run` (or reuses a finished run
folder: --run, or the folder a previous call left under benchmarks/results/runs/ when its
configuration is still the preset's), draws 1 000 samples with the preset's sampler (PC, 500
steps), and compares them with real digits in the feature space of the digits classifier shipped
in data/ (`scoregen_keras.networks.features.digits_features`).

The data split. The preset trains on `digits:train`, the 1 438 digits of the fixed split of
`scoregen_keras.data.digits_split` (the split the feature classifier was trained on too); the 359
digits of `digits:held-out` are never seen by the score model. The run's config.json records the
split (rule, seed, sizes and SHA-256 digests of both index sets: `data.split`).

The comparison, like for like:

* value: Fréchet distance (FD) between the features of the N samples and those of the 359
  held-out digits;
* floor: the same FD between a random N-subset of the TRAIN digits and the same held-out digits,
  mean ± std (and range) over FLOOR_SUBSETS random subsets;
* the ratio value / floor mean; target <= 3.

Why this floor: FD between finite sets is biased upwards, and the bias depends on the sizes of
both sets (here mostly on the 359 held-out digits). Both figures use N images against the same
held-out digits, so the bias is shared and the ratio measures the model, not the sample sizes.
The floor is what a model that reproduced its training digits exactly would score, so a model
that memorised its data does not beat it: the held-out digits are new to both. (Caveat: the
classifier was trained on the train digits too, so their features might sit apart from those of
images it never saw, which would raise the floor in the model's favour. Checked once, 179
against 180 images over 20 random splits: FD(train, held-out) 14.1 ± 3.3 beside FD(held-out,
held-out) 13.7 ± 3.8 -- no shift beyond the noise.)
KID is reported the same way, and the Inception-score-like class confidence of the samples
(10 = confident and balanced, 1 = no class information) beside that of the train subsets and of
the held-out digits.

Also kept, for continuity with `scoregen evaluate`: the two-halves figure of
`evaluate_samples` -- FD of the samples to one random half of all 1 797 digits, beside the FD
between the two halves, averaged over N_PAIRS splits (the halves include digits the model saw,
and hold 898 images rather than N, so it is not the target's figure).

The budget is the preset's fixed step count (reproducible); the JSON records the measured wall
time of `train_run` (compilation, previews and checkpoints included), the seconds per step from
the metrics log, and the machine's load averages before and after training (the cores may be
shared); they are kept in the run folder, so a reused run reports the call that trained it.
Writes benchmarks/results/quality_digits.json, digits_samples.png (samples beside held-out
digits) and digits_loss.png (training loss); exits with status 1 when the ratio misses the target.

    KERAS_BACKEND=jax python benchmarks/quality_digits.py            # train (or reuse), evaluate
    python benchmarks/quality_digits.py --run runs/digits               # evaluate a finished run
    python benchmarks/quality_digits.py --quick                         # smoke run
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import keras  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.layout import RUNS_DIR, default_output  # noqa: E402
from benchmarks.machine_info import load_average, machine  # noqa: E402
from scoregen_keras import metrics, runs  # noqa: E402
from scoregen_keras.data import DIGITS_HELD_OUT, DIGITS_TRAIN, load_dataset  # noqa: E402
from scoregen_keras.networks import features  # noqa: E402
from scoregen_keras.runs import plots  # noqa: E402
from scoregen_keras.runs.evaluate import evaluate_samples  # noqa: E402
from scoregen_keras.training.presets import resolve_config  # noqa: E402

JSON_NAME = "quality_digits.json"
GRID_NAME, LOSS_NAME = "digits_samples.png", "digits_loss.png"  # beside the JSON
TRAINING_RECORD = "quality_digits_training.json"  # in the run folder: wall time, load

PRESET = "digits"
TRAIN_SPEC, HELD_OUT_SPEC = f"digits:{DIGITS_TRAIN}", f"digits:{DIGITS_HELD_OUT}"
PREVIEW_IMAGES = 16
PREVIEW_STEPS = 100
LOG_EVERY = 25  # a finer loss curve than the preset's
N_SAMPLES = 1_000
FLOOR_SUBSETS = 10  # random N-subsets of the train digits for the floor
N_PAIRS = 5  # random two-halves splits of all digits (the secondary figure)
KID_SUBSETS = 50  # as scoregen_keras.evaluate
GRID_IMAGES = 100
GRID_COLUMNS = 10
QUICK_STEPS = 30
QUICK_SAMPLES = 64
QUICK_SAMPLER_STEPS = 20
FD_RATIO_TARGET = 3.0
SAMPLE_SEED_OFFSET = 1_000  # sampler seed apart from the training seed
# what must match for a run left by an earlier call to be reused
REUSE_KEYS = (
    "dataset",
    "model",
    "model_config",
    "sde",
    "sde_config",
    "loss",
    "weighting",
    "reduce",
    "steps",
    "batch_size",
    "lr",
    "warmup",
    "lr_decay",
    "grad_clip",
    "ema",
    "seed",
    "precision",
)


def training_config(steps: int | None, preview_steps: int) -> dict[str, Any]:
    """The digits preset (for `steps` steps when given), previews and checkpoints at the end."""
    config = resolve_config(PRESET, {"steps": steps})
    # bookkeeping, not the training: one small preview and one checkpoint, at the end
    config["sample_every"] = config["checkpoint_every"] = config["steps"]
    config["n_sample_preview"] = PREVIEW_IMAGES
    config["sampler_steps"] = preview_steps
    config["log_every"] = min(LOG_EVERY, config["steps"])
    return config


def reusable(run_dir: Path, config: dict[str, Any]) -> bool:
    """True when run_dir holds a complete run trained with config's values of REUSE_KEYS."""
    status, stored = run_dir / runs.STATUS_FILE, run_dir / runs.CONFIG_FILE
    if not (status.exists() and stored.exists()):
        return False
    if json.loads(status.read_text()).get("status") != "complete":
        return False
    old = json.loads(stored.read_text())
    wanted = json.loads(json.dumps({k: config.get(k) for k in REUSE_KEYS}))  # tuples -> lists
    return all(old.get(key) == value for key, value in wanted.items() if value is not None)


def seconds_per_step(run_dir: Path) -> float | None:
    """Training seconds per step between the first and last metrics line (compilation excluded)."""
    lines = (run_dir / runs.METRICS_FILE).read_text().splitlines()
    records = [json.loads(line) for line in lines if line.strip()]
    if len(records) < 2 or records[-1]["step"] <= records[0]["step"]:
        return None
    first, last = records[0], records[-1]
    return (last["wall_time"] - first["wall_time"]) / (last["step"] - first["step"])


def _training_record(run_dir: Path) -> dict[str, Any] | None:
    """What the call that trained run_dir measured (TRAINING_RECORD), None when absent."""
    path = run_dir / TRAINING_RECORD
    return json.loads(path.read_text()) if path.exists() else None


def obtain_run(
    run_dir: Path | None, steps: int | None, retrain: bool, out_root: Path, preview_steps: int
) -> tuple[runs.Run, dict[str, Any] | None, bool]:
    """Load run_dir, or train the digits preset into out_root (reused there when it matches).

    Returns the run, what the training measured (wall time, seconds a step, load; None when
    unknown) and whether this call trained it. The measurements are kept in the run folder, so
    a reused run reports those of the call that trained it.
    """
    if run_dir is not None:
        return runs.load_run(run_dir), _training_record(Path(run_dir)), False
    config = training_config(steps, preview_steps)
    run_dir = out_root / f"{PRESET}-{config['steps']}"
    if reusable(run_dir, config) and not retrain:
        print(f"reusing {run_dir} (same configuration; --retrain to train again)")
        return runs.load_run(run_dir), _training_record(run_dir), False
    if run_dir.exists():
        shutil.rmtree(run_dir)
    print(
        f"training {PRESET}: {config['model']} on {config['dataset']}, {config['steps']} steps x "
        f"batch {config['batch_size']}, lr {config['lr']:g}; load {load_average()}"
    )
    load_before = load_average()
    start = time.perf_counter()
    runs.train_run(config, run_dir, progress=False, log=print)
    done = {
        "wall_s": time.perf_counter() - start,
        "seconds_per_step": seconds_per_step(run_dir),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    (run_dir / TRAINING_RECORD).write_text(json.dumps(done, indent=2) + "\n")
    per_step = done["seconds_per_step"] or float("nan")
    print(
        f"  trained {config['steps']} steps in {done['wall_s']:.0f} s ({per_step:.3f} s a step); "
        f"load {done['load_average_after']}"
    )
    return runs.load_run(run_dir), done, True


def _summary(value: float, floors: list[float]) -> dict[str, Any]:
    """A value beside the mean, std (ddof=1), range and list of its floor values."""
    array = np.asarray(floors, dtype=np.float64)
    mean = float(array.mean())
    return {
        "value": float(value),
        "floor_mean": mean,
        "floor_std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
        "floor_min": float(array.min()),
        "floor_max": float(array.max()),
        "floors": [float(v) for v in array],
        "ratio": float(value) / mean if mean > 0 else float("nan"),
    }


def compare_with_held_out(
    samples: np.ndarray, train: np.ndarray, held_out: np.ndarray, n_subsets: int, seed: int
) -> dict[str, dict[str, Any]]:
    """FD and KID of samples to held_out beside those of random train subsets of the same size.

    All three arrays are digits in [0, 1], (n, 8, 8, 1). Subsets draw from
    numpy.random.default_rng(seed), without replacement, one after the other; KID's own subsets
    use `seed` for every comparison. Also the class confidence of samples, subsets and held_out.
    """
    n = len(samples)
    if n > len(train):
        raise ValueError(f"{n} samples but only {len(train)} train digits to match them with")
    if n_subsets < 1:
        raise ValueError(f"n_subsets must be positive, got {n_subsets}")
    rng = np.random.default_rng(seed)
    subsets = [rng.choice(len(train), n, replace=False) for _ in range(n_subsets)]
    f_samples, f_train = features.digits_features(samples), features.digits_features(train)
    f_held = features.digits_features(held_out)

    def kid(x: np.ndarray, y: np.ndarray) -> float:
        """KID with subsets drawn from `seed`."""
        return metrics.kernel_inception_distance(x, y, seed, KID_SUBSETS)

    fd = metrics.frechet_distance_from_samples
    report = {
        "fd_digits": _summary(fd(f_samples, f_held), [fd(f_train[s], f_held) for s in subsets]),
        "kid_digits": _summary(kid(f_samples, f_held), [kid(f_train[s], f_held) for s in subsets]),
    }
    probs_train = features.digits_class_probabilities(train)
    confidence = features.class_confidence_score
    report["class_confidence_digits"] = {
        **_summary(
            confidence(features.digits_class_probabilities(samples)),
            [confidence(probs_train[s]) for s in subsets],
        ),
        "held_out": confidence(features.digits_class_probabilities(held_out)),
    }
    return report


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
    """Sample grid beside a grid of held-out digits, both in [0, 1]."""
    panels = [
        (f"samples: {title}", plots.image_grid(samples[:GRID_IMAGES], (0.0, 1.0), GRID_COLUMNS)),
        ("held-out digits", plots.image_grid(real[:GRID_IMAGES], (0.0, 1.0), GRID_COLUMNS)),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 4.3))
    for ax, (name, grid) in zip(axes, panels, strict=True):
        ax.imshow(grid[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print_table(report: dict[str, Any]) -> None:
    """The figures as a plain-text table."""
    m = report["metrics"]
    fd, kid, conf = m["fd_digits"], m["kid_digits"], m["class_confidence_digits"]
    header = f"{'digits-classifier features':<28} {'samples':>9} {'floor (mean ± std)':>22}"
    print(f"\n{header} {'ratio':>7}")
    for name, entry, digits in (("Fréchet distance", fd, 4), ("KID", kid, 5)):
        floor = f"{entry['floor_mean']:.{digits}f} ± {entry['floor_std']:.{digits}f}"
        print(f"{name:<28} {entry['value']:>9.{digits}f} {floor:>22} {entry['ratio']:>7.2f}")
    floor = f"{conf['floor_mean']:.3f} ± {conf['floor_std']:.3f}"
    held = f"(held-out digits {conf['held_out']:.3f})"
    print(f"{'class confidence':<28} {conf['value']:>9.3f} {floor:>22}  {held}")
    halves = report["two_halves"]["fd_digits"]
    print(
        f"{'FD, two halves of all':<28} {halves['value']:>9.4f} "
        f"{halves['floor_mean']:>13.4f} ± {halves['floor_std']:.4f} "
        f"{halves['value'] / halves['floor_mean']:>7.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    """Train or load, sample, evaluate, print, write JSON and PNGs; 1 when the target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="reuse this digits run folder")
    parser.add_argument("--steps", type=int, default=None, help="train N steps (preset's)")
    parser.add_argument("--samples", type=int, default=N_SAMPLES)
    parser.add_argument("--sampler", default=None, help="runs.draw_samples sampler (preset's)")
    parser.add_argument("--sampler-steps", type=int, default=None, help="(preset's)")
    parser.add_argument("--subsets", type=int, default=FLOOR_SUBSETS, help="floor subsets")
    parser.add_argument("--pairs", type=int, default=N_PAIRS, help="two-halves splits")
    parser.add_argument("--seed", type=int, default=0, help="evaluation seed")
    parser.add_argument("--retrain", action="store_true", help="ignore runs left by earlier calls")
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (PNGs beside it)")
    args = parser.parse_args(argv)
    args.output = args.output or default_output(JSON_NAME, args.quick)
    if args.quick:
        args.steps = min(args.steps or QUICK_STEPS, QUICK_STEPS)
        args.samples = min(args.samples, QUICK_SAMPLES)
        args.sampler_steps = args.sampler_steps or QUICK_SAMPLER_STEPS
    args.output.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "benchmark": "quality_digits",
        "machine": machine(backend=keras.backend.backend(), keras=keras.__version__),
    }

    preview_steps = QUICK_SAMPLER_STEPS if args.quick else PREVIEW_STEPS
    run, done, trained_now = obtain_run(
        args.run, args.steps, args.retrain, args.runs_dir, preview_steps
    )
    config, preset = run.config, resolve_config(PRESET)
    status = json.loads(run.paths.status.read_text())
    sampler = args.sampler or preset["sampler"]
    sampler_steps = args.sampler_steps or preset["sampler_steps"]
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
    train, held_out = load_dataset(TRAIN_SPEC), load_dataset(HELD_OUT_SPEC)  # [0, 1]
    samples = np.clip(drawn.x, 0.0, 1.0)  # pixel values; the run's data lie in [0, 1]
    start = time.perf_counter()
    figures = compare_with_held_out(samples, train.x, held_out.x, args.subsets, args.seed)
    halves = evaluate_samples(
        samples,
        load_dataset("digits").x,
        "images",
        seed=args.seed,
        n_pairs=args.pairs,
        pixel_range=(0.0, 1.0),
    )
    eval_seconds = time.perf_counter() - start
    ratio = figures["fd_digits"]["ratio"]
    n_params = sum(int(np.prod(v.shape)) for v in run.model.network.trainable_variables)
    report.update(
        {
            "training": {
                "preset": PRESET,
                "run_dir": str(run.paths.root),
                "trained_now": trained_now,
                "wall_s": None if done is None else done["wall_s"],
                "seconds_per_step": None if done is None else done["seconds_per_step"],
                "load_average_before": None if done is None else done["load_average_before"],
                "load_average_after": None if done is None else done["load_average_after"],
                "train_seconds": status.get("seconds"),
                "steps": int(config["steps"]),
                "step": run.step,
                "preset_steps": int(preset["steps"]),
                "batch_size": int(config["batch_size"]),
                "lr": float(config["lr"]),
                "warmup": int(config["warmup"]),
                "ema": config["ema"],
                "model": config["model"],
                "model_config": config.get("model_config", {}),
                "parameters": n_params,
                "sde": config["sde"],
                "sde_config": config["sde_config"],
                "dataset": config["dataset"],
                "n_train": config["data"]["n"],
                "split": config["data"].get("split"),
            },
            "sampling": {
                "sampler": sampler,
                "sampler_steps": sampler_steps,
                "n_samples": args.samples,
                "nfe": drawn.nfe,
                "seconds": drawn.seconds,
            },
            "reference": {
                "held_out": HELD_OUT_SPEC,
                "n_held_out": len(held_out.x),
                "floor": f"random {args.samples}-subsets of {TRAIN_SPEC} against {HELD_OUT_SPEC}",
                "n_floor_subsets": args.subsets,
            },
            "metrics": figures,
            "two_halves": {**halves, "n_pairs": args.pairs},
            "evaluation_seconds": eval_seconds,
            "fd_ratio": ratio,
            "fd_ratio_target": FD_RATIO_TARGET,
            "passed": bool(ratio <= FD_RATIO_TARGET),
            "quick": args.quick,
        }
    )
    _print_table(report)
    seconds = done["wall_s"] if done else status.get("seconds")
    print(
        f"\ntraining: {run.step} steps x batch {config['batch_size']} "
        f"({'?' if seconds is None else f'{seconds:.0f}'} s); FD ratio {ratio:.2f} "
        f"({'pass' if report['passed'] else 'FAIL'}, target <= {FD_RATIO_TARGET:g})"
    )
    title = f"{run.step} steps, {sampler} NFE {drawn.nfe}"
    grid_path = args.output.with_name(GRID_NAME)
    loss_path = args.output.with_name(LOSS_NAME)
    plot_grid(samples, held_out.x, grid_path, title)
    plot_loss(loss_curve(run), loss_path, f"digits preset: training loss ({run.step} steps)")
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}, {grid_path}, {loss_path}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
