"""`scoregen likelihood RUN_DIR`: exact vs Hutchinson, the data's scaler, --json, refusals."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_controllable_cli import DIGITS_CONFIG
from tests.cli.test_train_cli import invoke, train_tiny

N_EXAMPLES = 200
MC_SIGMAS = 4.0
"""Hutchinson vs exact: the mean difference must lie within this many standard errors."""
SOLVER_SLACK_BPD = 1e-3
"""Bits/dim two RK45 solves (rtol = atol = 1e-5) of different integrands may differ by."""
SOLVER_AGREEMENT = 1e-6  # bits/dim, same steps: float32 rounding of ~5 bits/dim (measured 7e-8)
SCALE = 2.0
NEW_COMMANDS = ("likelihood", "inpaint", "colorize", "interpolate")


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained VE run on the toy mixture (2-D points)."""
    return train_tiny(tmp_path_factory.mktemp("likelihood"))


def likelihood_json(*args: str | Path) -> dict:
    """Run `scoregen likelihood ARGS --json`; check it printed exactly one JSON object."""
    result = invoke("likelihood", *args, "--json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


@pytest.mark.parametrize("command", NEW_COMMANDS)
def test_help_shows_defaults_and_an_example(command: str) -> None:
    """--help of every new command shows defaults and an example."""
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert "[default:" in result.output and f"scoregen {command} " in result.output


def test_cli_threshold_matches_the_library() -> None:
    """The exact-divergence threshold in --help is the library's."""
    from cli.likelihood_cmd import EXACT_MAX_DIMS
    from scoregen_keras import runs as run_tasks

    assert EXACT_MAX_DIMS == run_tasks.EXACT_MAX_DIMS


def test_exact_and_hutchinson_agree(toy_run: Path, tmp_path: Path) -> None:
    """Per example, Hutchinson minus exact has mean zero within MC_SIGMAS standard errors.

    With one probe per example fixed for the solve the ODE path does not depend on the probe,
    so the Hutchinson log-density is unbiased for the exact one; the bound uses the observed
    spread of the N_EXAMPLES paired differences plus the solvers' tolerance.
    """
    common = ("--n", N_EXAMPLES, "--seed", "3")
    exact = likelihood_json(toy_run, *common, "--divergence", "exact", "--out", tmp_path / "e")
    hutch = likelihood_json(toy_run, *common, "--divergence", "hutchinson", "--out", tmp_path / "h")
    assert exact["divergence"] == "exact" and exact["probe"] is None
    assert hutch["divergence"] == "hutchinson" and hutch["probe"] == "rademacher"
    assert exact["n"] == hutch["n"] == N_EXAMPLES and exact["dims"] == 2
    assert not exact["dequantized"] and exact["offset_bits"] == 0.0
    assert np.isfinite(exact["bits_per_dim"]) and np.isfinite(hutch["bits_per_dim"])
    assert exact["bits_per_dim"] == pytest.approx(exact["nll_nats"] / (2 * math.log(2)))
    bpd_exact = np.load(tmp_path / "e.npz")["bits_per_dim"]
    bpd_hutch = np.load(tmp_path / "h.npz")["bits_per_dim"]
    assert bpd_exact.shape == bpd_hutch.shape == (N_EXAMPLES,)
    difference = bpd_hutch - bpd_exact
    spread = difference.std(ddof=1)
    assert spread > 0  # the probes do vary the estimate
    bound = MC_SIGMAS * spread / math.sqrt(N_EXAMPLES) + SOLVER_SLACK_BPD
    assert abs(difference.mean()) <= bound, (difference.mean(), bound)


def test_the_compiled_solver_gives_the_host_solvers_figures(toy_run: Path, tmp_path: Path) -> None:
    """--ode-solver dopri5 takes RK45's steps in float32: bits/dim equal to SOLVER_AGREEMENT."""
    common = ("--n", N_EXAMPLES, "--seed", "3", "--divergence", "exact")
    host = likelihood_json(toy_run, *common, "--out", tmp_path / "host")
    compiled = likelihood_json(toy_run, *common, "--ode-solver", "dopri5", "--out", tmp_path / "c")
    assert compiled["nfe"] == host["nfe"]
    assert compiled["bits_per_dim"] == pytest.approx(host["bits_per_dim"], abs=SOLVER_AGREEMENT)
    per_example = np.load(tmp_path / "c.npz")["bits_per_dim"]
    np.testing.assert_allclose(
        per_example, np.load(tmp_path / "host.npz")["bits_per_dim"], atol=SOLVER_AGREEMENT
    )


def test_data_are_scaled_with_the_runs_scaler(toy_run: Path, tmp_path: Path) -> None:
    """Scale 2 on data doubled: the same model-space solve, bits/dim up by log2(2) = 1 exactly."""
    points = np.random.default_rng(0).standard_normal((16, 2))
    np.save(tmp_path / "y.npy", points)
    np.save(tmp_path / "y2.npy", SCALE * points)
    scaled = Path(shutil.copytree(toy_run, tmp_path / "scaled"))
    config = json.loads((scaled / "config.json").read_text())
    config["data"]["scaler"] = {"shift": 0.0, "scale": SCALE}
    (scaled / "config.json").write_text(json.dumps(config))
    plain = likelihood_json(toy_run, "--data", f"npy:{tmp_path / 'y.npy'}", "--out", tmp_path / "a")
    doubled = likelihood_json(
        scaled, "--data", f"npy:{tmp_path / 'y2.npy'}", "--out", tmp_path / "b"
    )
    assert doubled["offset_bits"] == pytest.approx(math.log2(SCALE))
    np.testing.assert_allclose(
        np.load(tmp_path / "b.npz")["bits_per_dim"] - np.load(tmp_path / "a.npz")["bits_per_dim"],
        math.log2(SCALE),
        rtol=0,
        atol=1e-9,
    )
    assert plain["n"] == doubled["n"] == len(points)


def test_a_scaler_given_with_the_data_replaces_the_runs(toy_run: Path) -> None:
    """run_likelihood(scaler=): points doubled under scale 2 score log2(2) bits/dim more."""
    from scoregen_keras import runs
    from scoregen_keras import runs as run_tasks
    from scoregen_keras.data import Scaler

    run = runs.load_run(toy_run)
    points = np.random.default_rng(1).standard_normal((16, 2))
    plain = run_tasks.run_likelihood(run, points, "points")
    doubled = run_tasks.run_likelihood(run, SCALE * points, "points", scaler=Scaler(0.0, SCALE))
    assert doubled.offset_bits == pytest.approx(math.log2(SCALE))
    np.testing.assert_allclose(
        doubled.bits_per_dim - plain.bits_per_dim, math.log2(SCALE), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("centered", [False, True])
def test_images_keep_their_own_pixel_depth(tmp_path: Path, centered: bool) -> None:
    """8-bit images scored by a digits (0..16) run stay in 0..255, white onto the model's white;
    the run's own data get the run's scaler."""
    from scoregen_keras import runs as run_tasks
    from scoregen_keras.data import DIGITS_PIXEL_MAX, pixel_scaler

    config = {**DIGITS_CONFIG, "centered": centered}
    digits_scaler = pixel_scaler(DIGITS_PIXEL_MAX, centered)
    config["data"] = {**config["data"], "scaler": digits_scaler.to_config()}
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1)).astype(np.uint8)
    images[0, 0, 0, 0], images[0, 0, 1, 0] = 0, 255
    np.save(tmp_path / "bytes.npy", images)
    data = run_tasks.evaluation_data(config, f"npy:{tmp_path / 'bytes.npy'}", 10, seed=0)
    black, white = (-1.0 if centered else 0.0), 1.0
    np.testing.assert_allclose(data.x, images, rtol=1e-6)  # stored as float32 in model space
    np.testing.assert_allclose(data.scaler.forward(np.array([0.0, 255.0])), [black, white])
    own = run_tasks.evaluation_data(config, None, 10, seed=0)
    assert own.scaler == digits_scaler and own.x.max() == DIGITS_PIXEL_MAX


def test_points_are_scaled_with_the_runs_scaler(toy_run: Path) -> None:
    """Points of another toy set are in the run's units: the run's scaler (here scale 2, where
    the toy set's own is 1) maps them."""
    from scoregen_keras import runs as run_tasks
    from scoregen_keras.data import Scaler

    config = run_tasks.run_config(toy_run)
    config["data"]["scaler"] = Scaler(0.0, SCALE).to_config()
    data = run_tasks.evaluation_data(config, "moons", 10, seed=0)
    assert data.kind == "points" and data.scaler == Scaler(0.0, SCALE)


def test_refusals(toy_run: Path, tmp_path: Path) -> None:
    """NCSN runs, data of another shape and non-positive counts: one line each."""
    ncsn = Path(shutil.copytree(toy_run, tmp_path / "ncsn"))
    config = json.loads((ncsn / "config.json").read_text())
    config["sde"] = "ncsn"
    (ncsn / "config.json").write_text(json.dumps(config))
    assert_one_line_error(invoke("likelihood", ncsn), "SDE")
    np.save(tmp_path / "p3.npy", np.zeros((10, 3)))
    assert_one_line_error(
        invoke("likelihood", toy_run, "--data", f"npy:{tmp_path / 'p3.npy'}"), "shape (3,)"
    )
    assert_one_line_error(invoke("likelihood", toy_run, "--n", "0"), "positive")
    assert_one_line_error(invoke("likelihood", tmp_path / "nowhere"), "does not exist")
