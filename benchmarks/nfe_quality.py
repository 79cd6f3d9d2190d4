"""Issue 4, item 6: sample quality versus NFE for each sampler on a trained toy model.

Trains (or reuses) the ``mlp/toy`` ScoreModel on mixture5 with the continuous VE loss, then draws
samples with PC, the probability-flow ODE (RK45, several tolerances), EDM's Heun sampler and
DPM-Solver++(2M) (several step counts) from ``scoregen_keras.samplers``, and scores each set with
``reference.checks.sample_checks`` (sliced Wasserstein-1 ratio to its noise floor, log-density gap,
component occupancy). Prints a table and writes benchmarks/results/nfe_quality.json and .png.

Training budget (defaults): 16000 Adam steps of batch 512 (lr 2e-3, 200 warm-up steps), fresh
mixture5 draws; the model is saved to benchmarks/results/nfe_quality_model.keras and reused on
later runs unless --retrain. Run: KERAS_BACKEND=jax python benchmarks/nfe_quality.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threads only add overhead at these sizes
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from reference import checks
from reference.datasets import mixture5
from scoregen_keras import samplers
from scoregen_keras.checkpoint import load_checkpoint, save_checkpoint
from scoregen_keras.networks import get_network
from scoregen_keras.score_model import ScoreModel

RESULTS = Path(__file__).parent / "results"
MODEL_PATH = RESULTS / "nfe_quality_model.keras"
JSON_PATH = RESULTS / "nfe_quality.json"
PNG_PATH = RESULTS / "nfe_quality.png"

TRAIN_STEPS = 16000
TRAIN_BATCH = 512
TRAIN_LR = 2e-3
TRAIN_WARMUP = 200
N_SAMPLES = 5000
N_TRUE_LOGP = 100_000
# the sweeps: PC steps (2 NFE each: Langevin corrector + reverse diffusion), RK45 tolerances,
# Heun / DPM-Solver++ steps
PC_STEPS = (50, 100, 250, 500, 1000)
ODE_TOLERANCES = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
HEUN_STEPS = (3, 5, 10, 20, 40)
DPM_STEPS = (5, 10, 20, 40, 80)
FAST_SAMPLER_SIGMA_MAX = checks.FAST_SAMPLER_SIGMA_MAX  # sigma~_max as the exact-score suite


def train_model(steps: int, batch_size: int, seed: int) -> tuple[ScoreModel, float]:
    """The mlp/toy ScoreModel fitted on fresh mixture5 draws; returns (model, seconds)."""
    keras.utils.set_random_seed(seed)
    model = ScoreModel(get_network("mlp/toy"), sde="ve", seed=seed)
    model.compile(learning_rate=TRAIN_LR, warmup_steps=TRAIN_WARMUP)
    data = mixture5().sample(np.random.default_rng(seed), steps * batch_size).astype("float32")
    start = time.perf_counter()
    model.fit(data, batch_size=batch_size, epochs=1, shuffle=False, verbose=0)
    return model, time.perf_counter() - start


def sweeps(score_fn, sde) -> dict[str, list[tuple[str, object]]]:
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
                    score_fn, sde, shape(k), seed, n, sigma_max=FAST_SAMPLER_SIGMA_MAX
                ),
            )
            for n in HEUN_STEPS
        ],
        "DPM-Solver++(2M)": [
            (
                f"steps={n}",
                lambda seed, k, n=n: samplers.dpm_solver_pp_sample(
                    score_fn, sde, shape(k), seed, n, sigma_max=FAST_SAMPLER_SIGMA_MAX
                ),
            )
            for n in DPM_STEPS
        ],
    }


def previous_training() -> dict:
    """The training record of the saved model (from the last JSON), marked as reused."""
    record = json.loads(JSON_PATH.read_text()).get("training", {}) if JSON_PATH.exists() else {}
    return {**record, "reused_saved_model": True}


def plot(rows: list[dict], path: Path) -> None:
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
    ax.set_title(f"mlp/toy on mixture5 (VE), {N_SAMPLES} samples, {keras.backend.backend()}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    """Train or load, sweep the samplers, print the table, write JSON and PNG."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--retrain", action="store_true", help="ignore a saved model")
    parser.add_argument("--steps", type=int, default=TRAIN_STEPS)
    parser.add_argument("--batch-size", type=int, default=TRAIN_BATCH)
    parser.add_argument("--samples", type=int, default=N_SAMPLES)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)

    if MODEL_PATH.exists() and not args.retrain:
        model = load_checkpoint(MODEL_PATH, compile=False)
        training = previous_training()
        print(f"loaded {MODEL_PATH}")
    else:
        model, train_seconds = train_model(args.steps, args.batch_size, args.seed)
        save_checkpoint(model, MODEL_PATH)
        training = {
            "steps": args.steps,
            "batch_size": args.batch_size,
            "learning_rate": TRAIN_LR,
            "warmup_steps": TRAIN_WARMUP,
            "seconds": train_seconds,
            "reused_saved_model": False,
        }
        print(f"trained {args.steps} steps x batch {args.batch_size} in {train_seconds:.1f} s")
    score_fn, sde, mixture = model.score_fn(use_ema=True), model.sde, mixture5()

    rows = []
    print(f"\n{'':<10}" + checks.TABLE_HEADER + f" {'time s':>7}")
    for sampler, settings in sweeps(score_fn, sde).items():
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
    report = {
        "backend": keras.backend.backend(),
        "machine": platform.platform(),
        "model": "mlp/toy (3 x 128 SiLU), VE SDE, continuous DSM loss (std^2 weighting), EMA",
        "training": training,
        "n_samples": args.samples,
        "rows": rows,
    }
    JSON_PATH.write_text(json.dumps(report, indent=2))
    plot(rows, PNG_PATH)
    print(f"\nwrote {JSON_PATH} and {PNG_PATH}")


if __name__ == "__main__":
    main()
