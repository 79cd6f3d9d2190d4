"""`scoregen classifier RUN_DIR` and class-guided `scoregen sample --class`.

The fast tests use a tiny toy run on mixture5 (5 classes, one per component) and a classifier
trained for a few steps: they check files, labels, layout and errors, not guidance quality. The
`slow` test trains a real score model and classifier on separated4 and checks where guided
samples land, by the mixture's exact class posterior.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from reference.datasets import separated4
from scoregen_keras.training.checkpoint import save_checkpoint
from scoregen_keras.training.classifier import NoiseConditionalClassifier
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import assert_png, invoke, train_tiny

N_CLASSES = 5  # mixture5's components
FAST_CLASSIFIER_STEPS = "30"
N_SAMPLES = 20
PC_STEPS = "10"
GUIDANCE_OFF_RTOL = 1e-5  # score + 0 x gradient against the score alone, both compiled float32


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A tiny VE run on mixture5 with a classifier of a few steps, and what --json printed."""
    run = train_tiny(tmp_path_factory.mktemp("guided"))
    result = invoke(
        "classifier", run, "--steps", FAST_CLASSIFIER_STEPS, "--batch-size", "64", "--json"
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return run, json.loads(result.stdout)


@pytest.fixture
def toy_run(trained: tuple[Path, dict]) -> Path:
    """The run folder of `trained`."""
    return trained[0]


def sample_file(run: Path, out: Path, *options: str) -> np.lib.npyio.NpzFile:
    """`scoregen sample RUN --out OUT` (PC, few steps) with options; its .npz."""
    result = invoke(
        "sample", run, "--steps", PC_STEPS, "--n", N_SAMPLES, "--out", out, *options
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return np.load(f"{out}.npz")


def test_classifier_files_and_report(trained: tuple[Path, dict]) -> None:
    """classifier.keras and classifier.json are written; the report holds the held-out tenth's
    accuracy at five times from eps to T; --json prints it as one object."""
    toy_run, summary = trained
    report = json.loads((toy_run / "classifier.json").read_text(encoding="utf-8"))
    assert summary["classifier"] == str(toy_run / "classifier.keras")
    assert {key: summary[key] for key in report} == report
    assert report["classes"] == [str(k) for k in range(N_CLASSES)]
    assert report["n_train"] + report["n_held_out"] == 512 and report["n_held_out"] == 51
    times = [row["t"] for row in report["accuracy"]]
    assert len(times) == 5 and times == sorted(times) and times[-1] == 1.0
    assert all(0.0 <= row["accuracy"] <= 1.0 for row in report["accuracy"])
    config = json.loads((toy_run / "config.json").read_text(encoding="utf-8"))
    assert config["data"]["classes"] == report["classes"]


def test_one_class_samples_carry_their_label(toy_run: Path) -> None:
    """--class 2: every label is 2, written under the default name pc-class2-seed0."""
    result = invoke("sample", toy_run, "--class", "2", "--steps", PC_STEPS, "--n", N_SAMPLES)
    assert result.exit_code == 0, result.output
    assert "guided to class 2" in result.output
    samples = np.load(toy_run / "samples" / "pc-class2-seed0.npz")
    assert samples["x"].shape == (N_SAMPLES, 2)
    np.testing.assert_array_equal(samples["y"], np.full(N_SAMPLES, 2))
    assert_png(toy_run / "samples" / "pc-class2-seed0.png")


def test_all_classes_in_turn_by_seed_position(toy_run: Path, tmp_path: Path) -> None:
    """--class all in batches: the seed at position j gets class j mod K, its batch's length a
    multiple of K (20 at most 9 at once: 4 batches of 5), so each class gets 20 / 5 samples; the
    file keeps the seeds' order. A batch size below the number of classes is refused."""
    samples = sample_file(toy_run, tmp_path / "all", "--class", "all", "--batch-size", "9")
    np.testing.assert_array_equal(samples["y"], np.tile(np.arange(N_CLASSES), 4))
    np.testing.assert_array_equal(samples["seeds"], np.arange(N_SAMPLES))
    assert len(np.unique(samples["x"], axis=0)) == N_SAMPLES
    assert_one_line_error(
        invoke("sample", toy_run, "--class", "all", "--n", "8", "--batch-size", "4"),
        "batch size of at least 5",
    )


def test_zero_guidance_is_the_unguided_sampler(toy_run: Path, tmp_path: Path) -> None:
    """--guidance 0 adds nothing to the score: the unguided samples, whatever the class."""
    guided = sample_file(toy_run, tmp_path / "zero", "--class", "4", "--guidance", "0")
    plain = sample_file(toy_run, tmp_path / "plain")
    assert "y" not in plain
    np.testing.assert_allclose(guided["x"], plain["x"], rtol=GUIDANCE_OFF_RTOL, atol=1e-6)


def test_guidance_moves_the_samples(toy_run: Path, tmp_path: Path) -> None:
    """A large scale changes the draw (the gradient reaches the sampler)."""
    guided = sample_file(toy_run, tmp_path / "strong", "--class", "0", "--guidance", "20")
    plain = sample_file(toy_run, tmp_path / "plain")
    assert np.max(np.abs(guided["x"] - plain["x"])) > 0.1


def test_class_names_and_indices(toy_run: Path, tmp_path: Path) -> None:
    """An unknown class lists the known ones; a negative scale is refused."""
    assert_one_line_error(
        invoke("sample", toy_run, "--class", "seven", "--n", "4"),
        "unknown class 'seven'",
        "0, 1, 2, 3, 4",
    )
    assert_one_line_error(invoke("sample", toy_run, "--class", "5", "--n", "4"), "unknown class")
    result = invoke("sample", toy_run, "--class", "1", "--guidance", "-1", "--n", "4")
    assert result.exit_code == 2 and "--guidance" in result.output
    result = invoke("sample", toy_run, "--guidance", "2", "--n", "4")
    assert result.exit_code == 2 and "give a class too" in result.output


def test_guidance_needs_a_classifier_and_classes(tmp_path: Path) -> None:
    """No classifier yet; data without classes; a corrupt classifier: one sentence each."""
    run = train_tiny(tmp_path, "moons", dataset="moons")
    assert_one_line_error(
        invoke("sample", run, "--class", "0", "--n", "4"),
        "has no classifier",
        "scoregen classifier",
    )
    assert_one_line_error(invoke("classifier", run, "--steps", "2"), "have no classes")
    assert not (run / "classifier.keras").exists()
    (run / "classifier.keras").write_bytes(b"PK\x03\x04 not a zip archive")
    assert_one_line_error(invoke("sample", run, "--class", "0", "--n", "4"), "corrupt or truncated")
    shutil.copyfile(run / "checkpoints" / "latest.keras", run / "classifier.keras")
    assert_one_line_error(
        invoke("sample", run, "--class", "0", "--n", "4"),
        "holds a ScoreModel, not a NoiseConditionalClassifier",
    )
    for sde, dims in (("vp", 2), ("ve", 3)):  # the run is VE on 2-D points
        other = NoiseConditionalClassifier(2, sde, hidden=(4,))
        other(np.zeros((1, dims), np.float32), np.ones(1, np.float32))
        save_checkpoint(other, run / "classifier.keras")
        assert_one_line_error(
            invoke("sample", run, "--class", "0", "--n", "4"), "another SDE or data shape"
        )


def test_ncsn_runs_are_guided_through_the_ve_sde_of_their_levels(tmp_path: Path) -> None:
    """An NCSN run's classifier learns on the VE SDE from its lowest level to its highest;
    `--sampler ald --class all` gives each class its share, and the gradient reaches the
    sampler (a large scale moves the draw, scale 0 leaves it as the unguided one)."""
    levels = {"sigma_max": 5.0, "sigma_min": 0.05, "num_scales": 4}
    run = train_tiny(
        tmp_path, "ncsn", sde="ncsn", loss="ncsn", sde_config=levels, sampler="ald",
        sampler_steps=3,
    )  # fmt: skip
    result = invoke("classifier", run, "--steps", "2", "--json")
    assert result.exit_code == 0, result.output
    sde = json.loads(result.stdout)["sde"]
    assert sde.pop("type") == "VESDE"
    assert sde == pytest.approx({"sigma_min": 0.05, "sigma_max": 5.0, "N": 4, "eps": 1e-5})
    ald = ("--sampler", "ald")
    samples = sample_file(run, tmp_path / "all", *ald, "--class", "all")
    np.testing.assert_array_equal(samples["y"], np.tile(np.arange(N_CLASSES), 4))
    plain = sample_file(run, tmp_path / "plain", *ald)
    off = sample_file(run, tmp_path / "off", *ald, "--class", "0", "--guidance", "0")
    np.testing.assert_allclose(off["x"], plain["x"], rtol=GUIDANCE_OFF_RTOL, atol=1e-6)
    strong = sample_file(run, tmp_path / "strong", *ald, "--class", "0", "--guidance", "20")
    assert np.max(np.abs(strong["x"] - plain["x"])) > 0.1


# NCSN levels for separated4, whose standardised components lie ~2 apart: the top level spans
# them, the bottom one is well below the components' own spread (~0.1)
SEPARATED4_LEVELS = {"sigma_max": 3.0, "sigma_min": 0.01, "num_scales": 10}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ve", "ncsn"])
def test_guided_samples_land_in_their_class(kind: str, tmp_path: Path) -> None:
    """separated4: a trained score model (VE SDE sampled by PC, or NCSN levels by annealed
    Langevin) and classifier put >= 90 % of `--class k` samples in component k (by the exact
    posterior); its four components weigh a quarter each."""
    ncsn = {"sde": "ncsn", "loss": "ncsn", "sde_config": SEPARATED4_LEVELS, "sampler": "ald"}
    run = train_tiny(
        tmp_path, "sep", dataset="separated4", model="mlp/toy", steps=3000, batch_size=256,
        n_train=20_000, log_every=500, checkpoint_every=3000, sample_every=3000,
        **(ncsn if kind == "ncsn" else {}),
    )  # fmt: skip
    result = invoke("classifier", run, "--steps", "1500")
    assert result.exit_code == 0, result.output
    mixture = separated4()
    sampler = "ald" if kind == "ncsn" else "pc"
    for k in range(mixture.n_components):
        out = tmp_path / f"class{k}"
        options = ("--class", str(k), "--sampler", sampler, "--n", "400", "--out", out)
        result = invoke("sample", run, *options)
        assert result.exit_code == 0, result.output
        x = np.load(f"{out}.npz")["x"]
        fraction = float(np.mean(mixture.posterior(x).argmax(axis=1) == k))
        print(f"{kind}, class {k}: {fraction:.3f} of 400 guided samples in it")
        assert fraction >= 0.9
