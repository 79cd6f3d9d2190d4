"""Issue 2, item 8: the NumPy MLP trained on mixture5 with the continuous VE loss (<= 60 s).

Prints the relative score error E||s_theta - s||^2 / E||s||^2 under p_t at several t and writes
benchmarks/results/reference_training.json. Run: python benchmarks/reference_training.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threads only add overhead at these sizes

import numpy as np

from reference.datasets import mixture5
from reference.models import Adam, MLPScore, noise_conditional_score
from reference.sde import VESDE
from reference.train import relative_score_error, train

RESULTS = Path(__file__).parent / "results" / "reference_training.json"
TIMES = (0.1, 0.25, 0.5, 0.75, 1.0)
EVAL_N = 20_000


def main() -> None:
    """Train, evaluate, print the table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, nargs=2, default=(40.0, 15.0), help="seconds/phase")
    parser.add_argument("--steps", type=int, nargs=2, default=(8000, 3000), help="steps per phase")
    parser.add_argument("--lr", type=float, default=3e-3, help="phase-1 lr; phase 2 uses lr/10")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()

    mixture, sde = mixture5(), VESDE()
    rng = np.random.default_rng(args.seed)
    model = MLPScore(2, (64, 64), cond="log_sigma", n_freq=4, rng=rng)
    optimizer = Adam(lr=args.lr)
    start = time.perf_counter()
    steps_done = []
    for steps, budget in zip(args.steps, args.budget, strict=True):
        history = train(
            model, "continuous", mixture.sample, steps, args.batch_size, rng,
            time_budget_s=budget, sde=sde, optimizer=optimizer,
        )  # fmt: skip
        steps_done.append(history.steps)
        optimizer.lr /= 10.0
    wall = time.perf_counter() - start
    score_fn = noise_conditional_score(model, sde)
    rows = []
    print(f"MLPScore (64, 64) on mixture5, continuous VE loss: steps {steps_done}, {wall:.1f} s")
    print(f"{'t':>5} {'sigma(t)':>9} {'rel. score error':>17}")
    for t in TIMES:
        error = relative_score_error(score_fn, mixture, sde, t, np.random.default_rng(1), EVAL_N)
        sigma = float(sde.marginal_coefficients(np.array([t]))[1][0])
        rows.append({"t": t, "sigma": sigma, "relative_score_error": error})
        print(f"{t:5.2f} {sigma:9.3f} {error:17.4f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "machine": platform.processor() or platform.machine(),
                "cpu_count": os.cpu_count(),
                "steps": steps_done,
                "wall_time_s": wall,
                "eval_samples": EVAL_N,
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
