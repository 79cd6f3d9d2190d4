"""The sample of a seed is the same at any batch size and on every backend (issue 25).

Checkpoints are built here, untrained (tests/keras/untrained_run.py): a 2-D point run (tiny MLP)
for the batch-size checks on this process's backend, and an 8x8 image run (small NCSN++) that
TensorFlow, JAX and PyTorch sample in their own processes for the cross-backend check.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from keras import ops

from scoregen_keras import runs
from scoregen_keras.sde import VESDE
from tests.keras import reproducible_worker
from tests.keras.gaussian_model import gaussian_model
from tests.keras.untrained_run import IMAGES, POINTS, untrained_run

REPO_ROOT = Path(__file__).resolve().parents[2]
BATCH_ATOL = 1e-5
"""One backend, float32: a batch size changes only how the arithmetic is vectorised."""
BACKEND_ATOL = {"ode_heun": 1e-4, "ode_rk45": 1e-4, "pc": 1e-3, "euler_maruyama": 1e-3}
"""Across backends on [0, 1]-scale data (issue 25): float32 rounding grows along the chain."""
SEEDS = np.arange(64)
FEW_STEPS = 20
BATCH_DRAWS: dict[str, dict[str, Any]] = {
    "pc (point default: ald)": {"sampler": "pc", "steps": FEW_STEPS},
    "pc euler_maruyama": {
        "sampler": "pc",
        "steps": FEW_STEPS,
        "predictor": "euler_maruyama",
        "corrector": "none",
    },
    "ode heun": {"sampler": "ode", "steps": FEW_STEPS},
    "edm heun": {"sampler": "heun", "steps": 8},
    "dpm-solver": {"sampler": "dpm-solver", "steps": 8},
}
WORKER_TIMEOUT_S = 900
BACKENDS = ("tensorflow", "jax", "torch")


@pytest.fixture(scope="module")
def point_run(tmp_path_factory: pytest.TempPathFactory) -> runs.Run:
    """The untrained point run, loaded."""
    return runs.load_run(untrained_run(tmp_path_factory.mktemp("points") / "run", POINTS))


def _draw(run: Any, seeds: np.ndarray, batch_size: int | None, **options: Any) -> np.ndarray:
    """draw_samples' model-space samples for these seeds."""
    samples = runs.draw_samples(
        run.model, run.config, seeds=seeds, batch_size=batch_size, **options
    )
    np.testing.assert_array_equal(samples.seeds, seeds)
    return samples.x


@pytest.mark.parametrize("name", sorted(BATCH_DRAWS))
def test_the_sample_of_a_seed_does_not_depend_on_the_batch_size(point_run, name):
    """64 seeds in one batch, 9 of them in batches of 3, 3 in batches of 1: the same samples."""
    options = BATCH_DRAWS[name]
    whole = _draw(point_run, SEEDS, 64, **options)
    in_threes = _draw(point_run, SEEDS[:9], 3, **options)
    alone = _draw(point_run, SEEDS[30:33], 1, **options)
    np.testing.assert_allclose(in_threes, whole[:9], rtol=0, atol=BATCH_ATOL)
    np.testing.assert_allclose(alone, whole[30:33], rtol=0, atol=BATCH_ATOL)
    assert len(np.unique(whole, axis=0)) == len(SEEDS)  # 64 seeds, 64 different samples


SOLVER_TOL = 1e-5  # rtol = atol of runs.draw_samples' adaptive ODE solvers (the samplers')
TOLERANCE_FACTOR = 10
"""Two RK45 solves with other step sequences differ by the sum of their errors, a small multiple
of tol (1 + |x|); 64 seeds against 6 measured 4e-5 at |x| <= 3.7 (1e-5 x (1 + |x|) = 4.7e-5)."""


@pytest.mark.parametrize("solver", ["RK45", "dopri5"])
def test_adaptive_ode_solvers_agree_across_batch_sizes_to_their_tolerance(point_run, solver):
    """RK45 / dopri5 choose one step size for a whole batch: a seed's sample moves with its
    batch, but only within the solver's tolerance."""
    options = {"sampler": "ode", "ode_solver": solver}
    whole = _draw(point_run, SEEDS, 64, **options)
    alone = _draw(point_run, SEEDS[:3], 1, **options)
    bound = TOLERANCE_FACTOR * SOLVER_TOL * (1.0 + np.abs(whole).max())
    assert np.abs(alone - whole[:3]).max() <= bound


IMAGE_CONFIG = {
    "data": {
        "kind": "images",
        "shape": [4, 4, 1],
        "scaler": {"shift": 0.0, "scale": 1.0},
        "value_range": [0.0, 1.0],
    }
}


def test_image_runs_correct_with_per_example_norms_at_any_batch_size():
    """An image run's default PC (Langevin corrector, norms per example): 6 seeds at once, in
    threes, one by one; with score_sde's batch norms the companions would change a sample."""
    model = gaussian_model(VESDE(sigma_max=5.0))
    seeds = np.arange(10, 16)
    whole = runs.draw_samples(model, IMAGE_CONFIG, seeds=seeds, steps=FEW_STEPS)
    threes = runs.draw_samples(model, IMAGE_CONFIG, seeds=seeds, steps=FEW_STEPS, batch_size=3)
    alone = runs.draw_samples(model, IMAGE_CONFIG, seeds=seeds[2:4], steps=FEW_STEPS, batch_size=1)
    np.testing.assert_allclose(threes.x, whole.x, rtol=0, atol=BATCH_ATOL)
    np.testing.assert_allclose(alone.x, whole.x[2:4], rtol=0, atol=BATCH_ATOL)


POINT_DATA = {"kind": "points", "scaler": {"shift": 0.0, "scale": 1.0}}


class _ShiftGuide:
    """A stand-in ClassGuide whose guided score adds 2 * label: a sample shows its label."""

    classes = (0, 1, 2)
    class_names = ("a", "b", "c")

    def labels(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes)[np.asarray(positions) % len(self.classes)]

    def score_fn(self, score_fn: Any, labels: np.ndarray) -> Any:
        shift = ops.convert_to_tensor(2.0 * labels.astype(np.float32)[:, None])
        return lambda x, t: score_fn(x, t) + shift


def test_class_labels_follow_the_seeds_position_through_batches_and_shards():
    """Position j of the seed list gets class j mod 3: in one batch, in batches of 6, and in a
    shard that starts at position 4 (first_position); the samples agree too."""
    guide, options = _ShiftGuide(), {"sampler": "ode", "steps": FEW_STEPS}
    model, config = gaussian_model(VESDE(sigma_max=5.0)), {"data": {"shape": [2], **POINT_DATA}}
    whole = runs.draw_samples(model, config, seeds=SEEDS[:12], guide=guide, **options)
    batched = runs.draw_samples(
        model, config, seeds=SEEDS[:12], guide=guide, batch_size=6, **options
    )
    shard = runs.draw_samples(
        model, config, seeds=SEEDS[4:9], guide=guide, first_position=4, **options
    )
    np.testing.assert_array_equal(whole.labels, np.arange(12) % 3)
    np.testing.assert_array_equal(batched.labels, whole.labels)
    np.testing.assert_array_equal(shard.labels, whole.labels[4:9])
    np.testing.assert_allclose(batched.x, whole.x, rtol=0, atol=BATCH_ATOL)
    np.testing.assert_allclose(shard.x, whole.x[4:9], rtol=0, atol=BATCH_ATOL)
    assert np.abs(whole.x[1] - whole.x[0]).max() > 0.1  # the label shows in the sample


def test_backend_noise_is_one_stream_through_the_batches(point_run):
    """noise='backend': keras.random seeded by the first seed; reproducible, but another draw
    than the per-sample seeds', and an unknown noise is refused in one sentence."""
    options = BATCH_DRAWS["pc euler_maruyama"]
    first = _draw(point_run, SEEDS[:8], 4, noise="backend", **options)
    again = _draw(point_run, SEEDS[:8], 4, noise="backend", **options)
    counter = _draw(point_run, SEEDS[:8], 4, **options)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - counter).max() > 0.1
    with pytest.raises(runs.RunError, match="unknown noise 'philox'"):
        _draw(point_run, SEEDS[:8], 4, noise="philox", **options)


@pytest.mark.slow
def test_the_samples_of_a_checkpoint_agree_across_backends(tmp_path: Path) -> None:
    """One checkpoint (an untrained 8x8 NCSN++ on [0, 1] pixels), four seeds, each backend in
    its own process: fixed-step Heun and RK45 ODE samples agree to 1e-4, PC (reverse diffusion
    + Langevin, per-example norms) and Euler-Maruyama after 100 steps to 1e-3 (max abs)."""
    run_dir = untrained_run(tmp_path / "run", IMAGES)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    drawn = {}
    for backend in BACKENDS:
        out = tmp_path / f"{backend}.npz"
        command = [sys.executable, "-m", "tests.keras.reproducible_worker", str(run_dir), str(out)]
        done = subprocess.run(
            command,
            env={**env, "KERAS_BACKEND": backend},
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=WORKER_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        with np.load(out) as data:
            drawn[backend] = {name: data[name] for name in data.files}
    assert sorted(drawn["jax"]) == sorted(reproducible_worker.DRAWS)
    for name, atol in BACKEND_ATOL.items():
        first = drawn[BACKENDS[0]][name]
        assert first.shape == (len(reproducible_worker.SEEDS), 8, 8, 1)
        assert np.isfinite(first).all() and np.abs(first).max() < 20.0
        for backend in BACKENDS[1:]:
            difference = np.abs(drawn[backend][name] - first).max()
            assert difference <= atol, (name, backend, difference)
