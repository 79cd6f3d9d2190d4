"""`scoregen sample RUN_DIR`: files written, original data scale, samplers, --json."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoregen_keras import runs
from scoregen_keras.runs import plots
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import assert_png, invoke, train_tiny

N_SAMPLES = 32
FAST_STEPS = {"pc": "10", "ode": "10", "heun": "5", "dpm-solver": "5"}
SOLVER_RTOL = 1e-4  # float32 on the backend against SciPy's float64 state, same steps


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained VE run on the toy mixture (shared by the tests of this module)."""
    return train_tiny(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def ncsn_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run with discrete NCSN noise levels (for annealed Langevin dynamics)."""
    folder = tmp_path_factory.mktemp("ncsn")
    sde_config = {"sigma_max": 5.0, "sigma_min": 0.05, "num_scales": 4}
    return train_tiny(
        folder, "run", sde="ncsn", loss="ncsn", sde_config=sde_config, sampler="ald",
        sampler_steps=3,
    )  # fmt: skip


def test_sample_writes_npz_and_png_it_names(toy_run: Path, tmp_path: Path) -> None:
    """`sample` writes PATH.npz (keys x and seeds, n examples of the seeds 0 .. n-1) and PATH.png
    and prints both paths."""
    out = tmp_path / "draws"
    result = invoke("sample", toy_run, "--n", N_SAMPLES, "--steps", "10", "--out", out)
    assert result.exit_code == 0, result.output
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as data:
        assert list(data.keys()) == ["x", "seeds"]
        assert data["x"].shape == (N_SAMPLES, 2) and np.isfinite(data["x"]).all()
        np.testing.assert_array_equal(data["seeds"], np.arange(N_SAMPLES))
    assert_png(out.with_suffix(".png"))
    assert str(out.with_suffix(".npz")) in result.output
    assert str(out.with_suffix(".png")) in result.output


def test_sample_in_batches(toy_run: Path, tmp_path: Path) -> None:
    """--batch-size 12 draws 32 samples in three batches of 11 and keeps the first 32."""
    out = tmp_path / "batched"
    args = ("--n", N_SAMPLES, "--batch-size", "12", "--steps", "10", "--json", "--out", out)
    result = invoke("sample", toy_run, *args)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["nfe"] == 20  # a batch's: 10 PC steps of 2 NFE
    with np.load(out.with_suffix(".npz"), allow_pickle=False) as data:
        x = data["x"]
    assert x.shape == (N_SAMPLES, 2) and len(np.unique(x, axis=0)) == N_SAMPLES


def test_ode_solvers_agree_and_report_the_same_nfe(toy_run: Path, tmp_path: Path) -> None:
    """--ode-solver dopri5 (compiled) takes SciPy RK45's steps: same NFE, same samples."""
    drawn = {}
    for solver in ("RK45", "dopri5"):
        out = tmp_path / solver
        result = invoke(
            "sample", toy_run, "--sampler", "ode", "--ode-solver", solver, "--n", N_SAMPLES,
            "--out", out, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        with np.load(out.with_suffix(".npz"), allow_pickle=False) as data:
            drawn[solver] = (json.loads(result.output)["nfe"], data["x"])
    assert drawn["dopri5"][0] == drawn["RK45"][0]
    scale = np.abs(drawn["RK45"][1]).max()
    np.testing.assert_allclose(drawn["dopri5"][1], drawn["RK45"][1], atol=SOLVER_RTOL * scale)


def test_info_summarises_a_trained_run(toy_run: Path) -> None:
    """`scoregen info`: status, step, model and noise process from the run's JSON files; a
    trained run has no imported_from."""
    result = invoke("info", toy_run, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    config = json.loads((toy_run / "config.json").read_text())
    assert (info["status"], info["step"]) == ("complete", config["steps"])
    assert (info["model"], info["sde"]) == (config["model"], config["sde"])
    assert "imported_from" not in info
    assert_one_line_error(invoke("info", toy_run / "nowhere"), "does not exist")


def test_default_output_goes_into_the_run_folder(toy_run: Path) -> None:
    """Without --out the files land in RUN_DIR/samples/SAMPLER-seedSEED.*."""
    result = invoke("sample", toy_run, "--n", N_SAMPLES, "--sampler", "heun", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert (toy_run / "samples" / "heun-seed7.npz").exists()
    assert_png(toy_run / "samples" / "heun-seed7.png")


@pytest.mark.parametrize("sampler", sorted(FAST_STEPS))
def test_every_sde_sampler_with_json(toy_run: Path, tmp_path: Path, sampler: str) -> None:
    """pc, ode, heun and dpm-solver run; --json prints one object with the files and the NFE."""
    out = tmp_path / sampler
    result = invoke(
        "sample", toy_run, "--sampler", sampler, "--steps", FAST_STEPS[sampler],
        "--n", N_SAMPLES, "--out", out, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["sampler"] == sampler and summary["n"] == N_SAMPLES and summary["nfe"] > 0
    assert Path(summary["npz"]).exists() and Path(summary["png"]).exists()


def test_pc_options_and_temperature(toy_run: Path, tmp_path: Path) -> None:
    """Predictor, corrector, snr and temperature are accepted; temperature changes the draws."""
    spreads = []
    for name, temperature in (("warm", "1.0"), ("cold", "0.3")):
        out = tmp_path / name
        result = invoke(
            "sample", toy_run, "--predictor", "euler_maruyama", "--corrector", "none",
            "--snr", "0.1", "--steps", "10", "--n", "256", "--temperature", temperature,
            "--out", out,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        spreads.append(np.load(out.with_suffix(".npz"))["x"].std())
    assert np.all(np.isfinite(spreads)) and spreads[0] != spreads[1]


def test_samples_are_in_the_original_data_scale(toy_run: Path, tmp_path: Path) -> None:
    """The stored scaler's inverse is applied: shifting it moves the saved samples."""
    config_path = toy_run / "config.json"
    original = config_path.read_text()
    config = json.loads(original)
    draws = {}
    try:
        for shift in (0.0, 100.0):
            config["data"]["scaler"] = {"shift": shift, "scale": 2.0}
            config_path.write_text(json.dumps(config))
            out = tmp_path / f"shift{int(shift)}"
            args = ("sample", toy_run, "--sampler", "dpm-solver", "--n", N_SAMPLES, "--out", out)
            assert invoke(*args).exit_code == 0
            draws[shift] = np.load(out.with_suffix(".npz"))["x"]
    finally:
        config_path.write_text(original)
    np.testing.assert_allclose(draws[100.0] - draws[0.0], 100.0, rtol=1e-5)


def test_ald_on_an_ncsn_run(ncsn_run: Path, tmp_path: Path) -> None:
    """Annealed Langevin dynamics samples a discrete-NCSN run, also when no sampler is named
    (the same draws; `evaluate` too); SDE samplers are refused there."""
    out = tmp_path / "ald"
    result = invoke(
        "sample", ncsn_run, "--sampler", "ald", "--steps", "3", "--n", "16", "--out", out
    )
    assert result.exit_code == 0, result.output
    assert np.load(out.with_suffix(".npz"))["x"].shape == (16, 2)
    unnamed = invoke("sample", ncsn_run, "--steps", "3", "--n", "16", "--json")
    assert unnamed.exit_code == 0, unnamed.output
    summary = json.loads(unnamed.stdout)
    assert summary["sampler"] == "ald" and summary["npz"].endswith("ald-seed0.npz")
    np.testing.assert_array_equal(
        np.load(summary["npz"])["x"], np.load(out.with_suffix(".npz"))["x"]
    )
    evaluated = invoke("evaluate", ncsn_run, "--n", "32", "--steps", "3", "--pairs", "1", "--json")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["sampler"] == "ald"
    refused = invoke("sample", ncsn_run, "--sampler", "ode", "--n", "16", "--out", out)
    assert refused.exit_code != 0
    assert "--sampler ald" in refused.stderr


def test_the_step_size_of_annealed_langevin(ncsn_run: Path, tmp_path: Path) -> None:
    """--step-lr reaches the sampler (other draws than the default 2e-5); 0 is refused."""
    default, larger = tmp_path / "default", tmp_path / "larger"
    for out, extra in ((default, []), (larger, ["--step-lr", "1e-3"])):
        result = invoke("sample", ncsn_run, "--steps", "3", "--n", "16", "--out", out, *extra)
        assert result.exit_code == 0, result.output
    x_default = np.load(default.with_suffix(".npz"))["x"]
    x_larger = np.load(larger.with_suffix(".npz"))["x"]
    assert np.isfinite(x_larger).all() and not np.allclose(x_larger, x_default)
    refused = invoke("sample", ncsn_run, "--step-lr", "0", "--n", "16", "--out", larger)
    assert_one_line_error(refused, "--step-lr", "must be positive")


def test_sample_from_a_checkpoint_file(toy_run: Path, tmp_path: Path) -> None:
    """A checkpoint path inside a run folder works like the run folder."""
    checkpoint = toy_run / "checkpoints" / "step_10.keras"
    out = tmp_path / "from-step-10"
    result = invoke(
        "sample", checkpoint, "--n", "8", "--sampler", "dpm-solver", "--out", out, "--json"
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["step"] == 10


def test_the_defaults_written_out_in_cli_are_the_librarys() -> None:
    """--help shows defaults before keras is imported, so cli/ restates them: they must be the
    library's (the names of every Choice are checked by tests/test_choices.py)."""
    from cli import classifier_cmd, evaluate_cmd, likelihood_cmd, options
    from scoregen_keras import controllable, samplers, training

    assert options.DEFAULT_SNR == runs.SNR_DEFAULT
    for langevin in (samplers.annealed_langevin, controllable.annealed_langevin_with_replacement):
        defaults = inspect.signature(langevin).parameters
        assert options.NCSN_STEPS_EACH == defaults["n_steps_each"].default
        assert options.NCSN_STEP_LR == defaults["step_lr"].default
    assert likelihood_cmd.DEFAULT_TOL == runs.DEFAULT_TOLERANCE
    assert likelihood_cmd.DEFAULT_BATCH == runs.DEFAULT_LIKELIHOOD_BATCH
    assert evaluate_cmd.DEFAULT_PAIRS == runs.DEFAULT_PAIRS
    assert evaluate_cmd.DEFAULT_NLL_POINTS == runs.DEFAULT_NLL_POINTS
    assert classifier_cmd.DEFAULT_STEPS == training.DEFAULT_STEPS
    assert classifier_cmd.DEFAULT_BATCH_SIZE == training.DEFAULT_BATCH_SIZE


# ------------------------------------------------------------------ one PNG file per image sample

IMAGE_CONFIG = {
    "data": {
        "kind": "images",
        "shape": [4, 4, 1],
        "scaler": {"shift": 0.0, "scale": 16.0},  # digits: 0..16
        "value_range": [0.0, 1.0],  # black and white in model space
    }
}


def _image_samples(seeds: np.ndarray) -> runs.Samples:
    """4x4 grey samples in model space for these seeds, past black and white at both ends."""
    n = len(seeds)
    x = np.linspace(-0.2, 1.2, n * 16, dtype=np.float32).reshape(n, 4, 4, 1)
    return runs.Samples(x, x * 16.0, nfe=1, seconds=0.0, sampler="pc", seeds=seeds)


def test_image_files_hold_every_sample_as_8_bit_pixels(tmp_path: Path) -> None:
    """PATH/SEED.png (six digits): each sample's pixels, black to white mapped onto 0..255 and
    clipped; no hidden part is left, and a second draw of the same seeds refuses the folder."""
    stem, seeds = tmp_path / "draws", np.array([3, 7, 1_234_567, 8, 9, 10])
    samples = _image_samples(seeds)
    folder = runs.image_files_folder(stem, IMAGE_CONFIG, seeds)
    runs.save_samples(stem, samples, IMAGE_CONFIG, folder)
    names = [f"{seed:06d}.png" for seed in seeds]
    assert sorted(path.name for path in folder.iterdir()) == sorted(names)
    for k, name in enumerate(names):
        with Image.open(folder / name) as picture:
            assert picture.mode == "L"
            pixels = np.asarray(picture)
        expected = np.round(np.clip(samples.x[k, ..., 0], 0.0, 1.0) * 255)
        np.testing.assert_array_equal(pixels, expected)
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []
    with pytest.raises(runs.RunError, match=r"000008\.png exists"):
        runs.image_files_folder(stem, IMAGE_CONFIG, [8, 11])


def test_image_files_of_other_seeds_join_the_folder(tmp_path: Path) -> None:
    """Another process's seeds (a shard) add their files to the same folder, leaving the first
    ones as they were; a repeated seed is refused."""
    stem = tmp_path / "draws"
    first, second = np.arange(0, 3), np.arange(3, 5)
    runs.save_samples(
        stem,
        _image_samples(first),
        IMAGE_CONFIG,
        runs.image_files_folder(stem, IMAGE_CONFIG, first),
    )
    before = {path.name: path.read_bytes() for path in stem.iterdir()}
    other = tmp_path / "other"
    runs.save_samples(
        other,
        _image_samples(second),
        IMAGE_CONFIG,
        runs.image_files_folder(stem, IMAGE_CONFIG, second),
    )
    after = {path.name: path.read_bytes() for path in stem.iterdir()}
    assert sorted(after) == [f"{seed:06d}.png" for seed in range(5)]
    assert {name: after[name] for name in before} == before
    with pytest.raises(runs.RunError, match="seeds repeat"):
        runs.image_files_folder(tmp_path / "fresh", IMAGE_CONFIG, [1, 2, 1])


def test_image_files_written_halfway_leave_no_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A disk that fills after one file: one error, and neither PATH/ nor a hidden part of it."""

    def one_then_full(folder: Path, images: np.ndarray, *args: object) -> None:
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(Path(folder) / "000000.png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plots, "save_image_files", one_then_full)
    stem, seeds = tmp_path / "draws", np.arange(3)
    folder = runs.image_files_folder(stem, IMAGE_CONFIG, seeds)
    with pytest.raises(runs.RunError, match="No space left"):
        runs.save_samples(stem, _image_samples(seeds), IMAGE_CONFIG, folder)
    assert not folder.exists()
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".")] == []


def test_image_files_of_a_point_run_are_refused(toy_run: Path, tmp_path: Path) -> None:
    """--image-files on a 2-D point run: one sentence, before any sampling or file."""
    out = tmp_path / "points"
    result = invoke("sample", toy_run, "--n", "8", "--image-files", "--out", out)
    assert_one_line_error(result, "image runs only")
    assert list(tmp_path.iterdir()) == []
