"""Class-guided sampling of the digits preset: how often a guided sample is the digit asked for.

Loads a digits run (--run, or the run `quality_digits.py` trains or reuses under
benchmarks/results/runs/), trains its noise-conditional classifier as `scoregen classifier` does
(`run_classifier.train_run_classifier`: an MLP on the run's training digits noised by its SDE,
a tenth held out), and draws --per-class samples of every digit at each guidance scale with the
preset's sampler, the classes in turn (`scoregen sample --class all --guidance SCALE`).

The judge is the digits feature classifier shipped in data/ (`features.digits_class_probabilities`,
trained on clean train digits, never on noised ones, and independent of the guidance
classifier): a sample counts as its class when the judge's most probable digit is the one asked
for. Scale 0 draws unguided samples with the same labels, so about a tenth match by chance: the
floor. Also reported per scale: the worst digit's fraction and the class-confidence score of the
samples (10 = confident and balanced), and the seconds it took.

Writes benchmarks/results/class_guidance.json and class_guidance.png (one row per digit, the
first GRID_COLUMNS samples of each, for every scale side by side).

    KERAS_BACKEND=jax python benchmarks/class_guidance.py             # train (or reuse), measure
    python benchmarks/class_guidance.py --run runs/digits                # a finished digits run
    python benchmarks/class_guidance.py --quick                          # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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

from benchmarks import quality_digits  # noqa: E402
from benchmarks.layout import RUNS_DIR, default_output  # noqa: E402
from benchmarks.machine_info import machine  # noqa: E402
from scoregen_keras import runs  # noqa: E402
from scoregen_keras.networks import features  # noqa: E402
from scoregen_keras.runs import classifier as run_classifier  # noqa: E402
from scoregen_keras.runs import plots  # noqa: E402
from scoregen_keras.training.classifier import DEFAULT_BATCH_SIZE, DEFAULT_STEPS  # noqa: E402
from scoregen_keras.training.presets import resolve_config  # noqa: E402

JSON_NAME, GRID_NAME = "class_guidance.json", "class_guidance.png"
SCALES = (0.0, 1.0, 4.0)
PER_CLASS = 50
GRID_COLUMNS = 10
QUICK_PER_CLASS = 2
QUICK_CLASSIFIER_STEPS = 20
SAMPLE_SEED_OFFSET = 2_000  # apart from the training seed and quality_digits' sampler seed


def judge(samples: runs.Samples) -> dict[str, Any]:
    """The judge's verdict on labelled digit samples: fraction matching, per digit and overall."""
    probs = features.digits_class_probabilities(np.clip(samples.x, 0.0, 1.0))
    matched = np.argmax(probs, axis=1) == samples.labels
    per_class = [float(np.mean(matched[samples.labels == k])) for k in np.unique(samples.labels)]
    return {
        "fraction": float(np.mean(matched)),
        "worst_class_fraction": min(per_class),
        "per_class": per_class,
        "class_confidence": features.class_confidence_score(probs),
    }


def plot_rows(drawn: dict[float, runs.Samples], path: Path) -> None:
    """One row per digit (its first GRID_COLUMNS samples) for each scale, side by side."""
    fig, axes = plt.subplots(1, len(drawn), figsize=(4.0 * len(drawn), 4.3))
    for ax, (scale, samples) in zip(np.atleast_1d(axes), drawn.items(), strict=True):
        grid, columns = plots.class_rows(samples.x, samples.labels, GRID_COLUMNS)
        pixels = plots.image_grid(grid, (0.0, 1.0), columns)
        ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title("unguided" if scale == 0 else f"guidance scale {scale:g}", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _print_table(rows: list[dict[str, Any]]) -> None:
    """The scale table."""
    print(
        f"\n{'scale':>6}  {'matched':>8}  {'worst digit':>11}  {'confidence':>10}  {'seconds':>8}"
    )
    for row in rows:
        print(
            f"{row['scale']:6g}  {row['fraction']:8.3f}  {row['worst_class_fraction']:11.3f}  "
            f"{row['class_confidence']:10.3f}  {row['seconds']:8.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    """Obtain the run, train its classifier, sample at each scale, judge, print, write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished digits run folder")
    parser.add_argument("--per-class", type=int, default=PER_CLASS, help="samples of each digit")
    parser.add_argument("--scales", type=float, nargs="+", default=list(SCALES))
    parser.add_argument("--classifier-steps", type=int, default=DEFAULT_STEPS)
    parser.add_argument("--sampler-steps", type=int, default=None, help="(preset's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--runs-dir", type=Path, default=RUNS_DIR)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budgets")
    parser.add_argument("--output", type=Path, default=None, help="JSON path (PNG beside it)")
    args = parser.parse_args(argv)
    args.output = args.output or default_output(JSON_NAME, args.quick)
    preview_steps = quality_digits.PREVIEW_STEPS
    steps = None
    if args.quick:
        args.per_class = min(args.per_class, QUICK_PER_CLASS)
        args.classifier_steps = min(args.classifier_steps, QUICK_CLASSIFIER_STEPS)
        args.sampler_steps = args.sampler_steps or quality_digits.QUICK_SAMPLER_STEPS
        steps, preview_steps = quality_digits.QUICK_STEPS, quality_digits.QUICK_SAMPLER_STEPS
    args.output.parent.mkdir(parents=True, exist_ok=True)

    run, _, _ = quality_digits.obtain_run(args.run, steps, False, args.runs_dir, preview_steps)
    preset = resolve_config(quality_digits.PRESET)
    sampler, sampler_steps = preset["sampler"], args.sampler_steps or preset["sampler_steps"]
    print(f"run {run.paths.root} (step {run.step}); training its classifier")
    trained = run_classifier.train_run_classifier(
        run, args.classifier_steps, DEFAULT_BATCH_SIZE, seed=args.seed
    )
    classifier = run_classifier.load_run_classifier(run)
    n = args.per_class * len(classifier.class_names)
    rows, drawn = [], {}
    for scale in args.scales:
        guide = run_classifier.class_guide(classifier, run_classifier.ALL_CLASSES, scale)
        samples = runs.draw_samples(
            run.model,
            run.config,
            n,
            sampler=sampler,
            seed=args.seed + SAMPLE_SEED_OFFSET,
            steps=sampler_steps,
            guide=guide,
        )
        rows.append({"scale": scale, **judge(samples), "seconds": samples.seconds})
        print(f"  scale {scale:g}: {rows[-1]['fraction']:.3f} matched ({samples.seconds:.0f} s)")
        drawn[scale] = samples
    _print_table(rows)
    report = {
        "benchmark": "class_guidance",
        "machine": machine(backend=keras.backend.backend(), keras=keras.__version__),
        "run_dir": str(run.paths.root),
        "run_step": run.step,
        "classifier": trained.report,
        "sampling": {
            "sampler": sampler,
            "sampler_steps": sampler_steps,
            "per_class": args.per_class,
            "n_samples": n,
            "nfe": samples.nfe,
        },
        "judge": "features.digits_class_probabilities (the shipped digits feature classifier)",
        "rows": rows,
        "quick": args.quick,
    }
    grid_path = args.output.with_name(GRID_NAME)
    if drawn:
        plot_rows(drawn, grid_path)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}" + (f", {grid_path}" if drawn else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
