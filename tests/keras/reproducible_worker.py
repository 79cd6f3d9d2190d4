"""Draw a run's samples for fixed seeds with each sampler and save them: one backend a process.

    KERAS_BACKEND=jax python -m tests.keras.reproducible_worker RUN_DIR OUT.npz [SEEDS]

The cross-backend test runs this under TensorFlow, JAX and PyTorch on one checkpoint and
compares the files (tests/keras/test_reproducible_sampling.py).
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

SEEDS = (0, 1, 2, 3)
ODE_STEPS = 50  # fixed-step Heun: 100 NFE
PC_STEPS = 100
DRAWS: dict[str, dict[str, Any]] = {
    "ode_heun": {"sampler": "ode", "steps": ODE_STEPS},
    "ode_rk45": {"sampler": "ode", "ode_solver": "RK45"},
    "pc": {"sampler": "pc", "steps": PC_STEPS},  # the run's default corrector
    "euler_maruyama": {
        "sampler": "pc",
        "steps": PC_STEPS,
        "predictor": "euler_maruyama",
        "corrector": "none",
    },
}
"""name -> runs.draw_samples options."""


def draw_all(run_dir: str, seeds: tuple[int, ...] = SEEDS) -> dict[str, np.ndarray]:
    """name -> the samples (model space, float64) of each entry of DRAWS for these seeds."""
    from scoregen_keras import runs

    run = runs.load_run(run_dir)
    drawn = {}
    for name, options in DRAWS.items():
        samples = runs.draw_samples(run.model, run.config, seeds=np.asarray(seeds), **options)
        drawn[name] = np.asarray(samples.x, dtype=np.float64)
    return drawn


def main(argv: list[str]) -> None:
    """RUN_DIR OUT.npz [comma-separated seeds]."""
    seeds = SEEDS if len(argv) < 3 else tuple(int(s) for s in argv[2].split(","))
    np.savez(argv[1], **draw_all(argv[0], seeds))


if __name__ == "__main__":
    main(sys.argv[1:])
