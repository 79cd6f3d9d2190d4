"""`scoregen train` with sde_config rules = "ncsnv2": the noise levels and the annealed Langevin
step size come from the training data by NCSNv2's techniques 1, 2 and 4 (the reference's)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from reference import sde as ref_sde
from scoregen_keras.training import presets
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import invoke, tiny_config_file, train_tiny

DIM = 8  # technique 2 needs D >= 5
N_POINTS = 200
NCSN = {
    "sde": "ncsn",
    "loss": "ncsn",
    "sampler": "ald",
    "model_config": {"dim": DIM},
    "steps": 2,
    "sample_every": 2,
}


def _points(folder: Path, dim: int = DIM) -> Path:
    """N_POINTS points in `dim` dimensions as an .npy file (points are used as given)."""
    path = folder / "points.npy"
    np.save(path, np.random.default_rng(0).standard_normal((N_POINTS, dim)).astype(np.float32))
    return path


def test_the_rules_set_the_levels_and_step_size_from_the_data(tmp_path: Path) -> None:
    """config.json holds the reference's schedule for these points; sampling follows it."""
    points = _points(tmp_path)
    rules = {"rules": presets.NCSNV2_RULES, "sigma_min": 0.05}
    run = train_tiny(tmp_path, "run", dataset=f"npy:{points}", sde_config=rules, **NCSN)
    config = json.loads((run / "config.json").read_text())
    sigmas, eps = ref_sde.ncsnv2_schedule(np.load(points), 0.05, presets.NCSNV2_STEPS_EACH)
    assert config["sde_config"]["num_scales"] == len(sigmas) > 2
    assert config["sde_config"]["sigma_max"] == pytest.approx(sigmas[0], rel=1e-6)
    assert config["sde_config"]["sigma_min"] == 0.05
    assert config["ald_steps_each"] == presets.NCSNV2_STEPS_EACH
    # NCSNv2's eps is half the samplers' alpha-scale step size
    assert config["ald_step_lr"] == pytest.approx(2 * eps, rel=1e-6)
    assert config["ncsnv2_rules"]["gamma"] == pytest.approx(sigmas[0] / sigmas[1], rel=1e-6)
    sampled = invoke("sample", run, "--n", "16", "--json")
    assert sampled.exit_code == 0, sampled.output
    assert json.loads(sampled.stdout)["nfe"] == len(sigmas) * presets.NCSNV2_STEPS_EACH + 1


def test_a_step_size_of_the_users_own_is_kept(tmp_path: Path) -> None:
    """ald_step_lr given beside the rules stays; the levels still come from the data."""
    points = _points(tmp_path)
    rules = {"rules": presets.NCSNV2_RULES}
    run = train_tiny(
        tmp_path, "run", dataset=f"npy:{points}", sde_config=rules, ald_step_lr=1e-4, **NCSN
    )
    config = json.loads((run / "config.json").read_text())
    assert config["ald_step_lr"] == 1e-4 and config["ncsnv2_rules"]["ald_step_lr"] != 1e-4
    assert config["sde_config"]["sigma_min"] == presets.NCSNV2_SIGMA_MIN


def test_two_dimensional_data_are_refused_before_a_run_folder_exists(tmp_path: Path) -> None:
    """Technique 2 has no ratio for D < 5: one sentence, no run folder."""
    points = _points(tmp_path, dim=2)
    config = tiny_config_file(
        tmp_path, dataset=f"npy:{points}", sde_config={"rules": "ncsnv2"}, **NCSN
    )
    result = invoke("train", "--config", config, "--out", tmp_path / "run")
    assert_one_line_error(result, "NCSNv2's rules cannot set noise levels", "D >= 5")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"sde": "ve", "loss": "dsm", "sde_config": {"rules": "ncsnv2"}}, "rules = 'ncsnv2'"),
        ({**NCSN, "sde_config": {"rules": "ncsnv3"}}, "unknown"),
        ({**NCSN, "sde_config": {"rules": "ncsnv2", "sigma_max": 5.0}}, "leave them out"),
        ({**NCSN, "sde_config": {"rules": "ncsnv2", "sigma_min": 0}}, "sigma_min must be"),
    ],
)
def test_rules_that_cannot_apply_are_refused(tmp_path: Path, changes: dict, words: str) -> None:
    result = invoke("train", "--config", tiny_config_file(tmp_path, **changes), "--out", tmp_path)
    assert_one_line_error(result, words)
