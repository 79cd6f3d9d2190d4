"""`scoregen import score-sde|diffusers` and `scoregen info`: published models as run folders.

A ``checkpoint_N.pth`` in score_sde_pytorch's published layout is written from each fixture of the
original code (tests/keras/published_checkpoint.py): ``ema`` holds the fixture's (true) weights
and ``model`` the same plus noise, so ``--weights ema`` must give the fixture's output and
``--weights model`` another function. The diffusers fixture folder is imported and sampled on
every backend. Every bad input is one sentence, and nothing is left at --out or beside it.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoregen_keras import runs
from scoregen_keras.networks.score_sde_config import (
    BUILTIN_CONFIGS,
    load_score_sde_weights,
    score_sde_sigmas,
    score_sde_spec,
)
from scoregen_keras.networks.score_sde_weights import score_sde_targets
from scoregen_keras.training.score_model import ScoreModel
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import BACKENDS, invoke, scoregen_subprocess
from tests.frameworks import require_torch
from tests.keras import import_parity as parity
from tests.keras.import_parity import RTOL, SCORE_SDE_NAMES
from tests.keras.published_checkpoint import perturbed, write_published_checkpoint
from tests.keras.score_sde_shapes import original_state_dict_shapes
from tests.shared_fixtures import shared_fixture

PERTURBATION = 0.05  # the raw weights: the EMA's plus N(0, 0.05^2), as after a few more steps
MODEL_DEPARTURE = 1e-2  # ... which moves the output far beyond RTOL
STEP = 7
FAST_STEPS = "2"
VP_CHAIN_STEPS = 21  # the fewest levels whose discrete VP betas stay below 1 (beta_max 20)
SAMPLER_OF = {"vp": "vp/cifar10_ddpmpp_continuous"}  # a built-in file's sampling section
TINY_IMAGE_SIZE = 8  # digits' size: `evaluate` has a feature network for 8x8x1 images
FAST_BACKEND = "torch"  # the quickest to start and sample in a fresh process here
SUBPROCESS_BACKENDS = [
    pytest.param(
        backend,
        marks=[pytest.mark.backends(backend)]
        + ([] if backend == FAST_BACKEND else [pytest.mark.slow]),
    )
    for backend in BACKENDS
]


# ----------------------------------------------------------------------------- published files


class Fixture:
    """A score_sde fixture written as a published checkpoint, with its JSON configuration."""

    def __init__(self, folder: Path, name: str) -> None:
        """Write folder/NAME.pth (EMA = the fixture's weights, model = perturbed) and the config."""
        self.name = name
        self.info, self.state_dict, self.io = parity.score_sde_fixture(
            shared_fixture("score_sde_pytorch"), name
        )
        self.fixed = parity.fixed_parameters(self.info)
        self.raw = perturbed(self.state_dict, self.fixed, PERTURBATION, seed=1)
        self.checkpoint = write_published_checkpoint(
            folder / f"{name}.pth", self.raw, self.fixed, ema=self.state_dict, step=STEP
        )
        self.config = folder / f"{name}.config.json"
        self.config.write_text(json.dumps(self.info["config"]))
        self.spec = score_sde_spec(self.info["config"])

    def args(self, out: Path, *extra: str) -> list[str]:
        """`import score-sde` of this checkpoint and configuration into out."""
        return [
            "import",
            "score-sde",
            self.checkpoint,
            "--config",
            self.config,
            "--out",
            out,
            *extra,
        ]

    def score_of(self, state_dict: dict) -> np.ndarray:
        """The score (through preconditioning="score_sde") of a network holding state_dict."""
        net = self.spec.build_network()
        load_score_sde_weights(net, state_dict, self.info["config"])
        model = ScoreModel(net, sde=self.spec.sde, preconditioning="score_sde")
        return parity.to_numpy(model.score(self.io["x"], self.io["t"]))


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Fixture]:
    """Both fixtures in the published layout (written with torch)."""
    require_torch()
    folder = tmp_path_factory.mktemp("published")
    return {name: Fixture(folder, name) for name in SCORE_SDE_NAMES}


@pytest.fixture(scope="module")
def ve_run(published: dict[str, Fixture], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The VE fixture imported with its EMA weights (shared by the commands' tests)."""
    out = tmp_path_factory.mktemp("ve") / "run"
    result = invoke(*published["ncsnpp_ve_c3"].args(out))
    assert result.exit_code == 0, result.output
    return out


def assert_nothing_written(out: Path) -> None:
    """No --out, and no temporary folder of it left beside it."""
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.*"))


def imported_score(run_dir: Path, io: dict) -> np.ndarray:
    """The score of an imported run folder at the fixture's inputs, as the commands load it."""
    run = runs.load_run(run_dir)
    return parity.to_numpy(run.model.score(io["x"], io["t"]))


# ----------------------------------------------------------------------------- (b) weights


def test_imported_ema_weights_give_the_originals_function(published, ve_run) -> None:
    """--weights ema (the default): the fixture's score."""
    fixture = published["ncsnpp_ve_c3"]
    expected = parity.expected_score(fixture.spec, fixture.io)
    assert parity.relative_l2(imported_score(ve_run, fixture.io), expected) <= RTOL


@pytest.mark.slow
def test_imported_vp_ema_weights_give_the_originals_function(published, tmp_path) -> None:
    """The same for DDPM++ on the VP SDE (score = -output / std); its raw weights are another
    function."""
    fixture = published["ddpmpp_vp_c3"]
    out = tmp_path / "run"
    result = invoke(*fixture.args(out))
    assert result.exit_code == 0, result.output
    expected = parity.expected_score(fixture.spec, fixture.io)
    assert parity.relative_l2(imported_score(out, fixture.io), expected) <= RTOL
    assert parity.relative_l2(fixture.score_of(fixture.raw), expected) > MODEL_DEPARTURE


def test_imported_model_weights_give_the_perturbed_function(published, tmp_path) -> None:
    """--weights model: the network and its EMA copy hold the raw (perturbed) weights, and the
    score is another function than the fixture's."""
    fixture = published["ncsnpp_ve_c3"]
    out = tmp_path / "run"
    result = invoke(*fixture.args(out, "--weights", "model"))
    assert result.exit_code == 0, result.output
    model = runs.load_run(out).model
    for weights in (contextlib.nullcontext(), model.ema_weights()):
        with weights:
            for key, target in score_sde_targets(model.network).items():
                held = parity.to_numpy(target.variable.value)
                np.testing.assert_array_equal(held, target.layout.to_keras(fixture.raw[key]))
    expected = parity.expected_score(fixture.spec, fixture.io)
    assert parity.relative_l2(imported_score(out, fixture.io), expected) > MODEL_DEPARTURE


def test_info_says_where_an_import_came_from(published, ve_run) -> None:
    """info: the file, its sha256 and the weights chosen; the step is the checkpoint's."""
    checkpoint = published["ncsnpp_ve_c3"].checkpoint
    result = invoke("info", ve_run, "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    source = info["imported_from"]
    assert source["file"] == str(checkpoint.resolve())
    assert source["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert (source["weights"], source["format"], info["step"]) == ("ema", "score_sde_pytorch", STEP)
    assert info["preconditioning"] == "score_sde" and info["status"] == "complete"
    text = invoke("info", ve_run).stdout
    assert source["sha256"] in text and str(checkpoint.resolve()) in text


def test_a_checkpoint_in_torchs_legacy_format_reads_the_same(published, tmp_path) -> None:
    """torch.save's pre-1.6 format cannot be memory-mapped: it is read whole, to the same arrays
    (module. stripped, the EMA as the fixture's weights, the step)."""
    import torch

    fixture = published["ncsnpp_ve_c3"]
    legacy = tmp_path / "legacy.pth"
    loaded = torch.load(fixture.checkpoint, weights_only=True)
    torch.save(loaded, legacy, _use_new_zipfile_serialization=False)
    for path in (fixture.checkpoint, legacy):
        read = runs.read_score_sde_checkpoint(path)
        assert read.step == read.ema_updates == STEP
        assert list(read.model_state) == list(fixture.raw)
        for key, value in fixture.raw.items():
            np.testing.assert_array_equal(read.model_state[key], value)
        trainable = [k for k in fixture.raw if k not in fixture.fixed and k != "sigmas"]
        for shadow, key in zip(read.shadow_params, trainable, strict=True):
            np.testing.assert_array_equal(shadow, fixture.state_dict[key])


def test_the_run_states_the_originals_conventions(ve_run) -> None:
    """VE: data in [0, 1] (0..255 pixels), the network centres its input, score = output / sigma."""
    config = json.loads((ve_run / "config.json").read_text())
    assert config["data"]["scaler"] == {"shift": 0.0, "scale": 255.0}
    assert config["data"]["value_range"] == [0.0, 1.0]
    assert config["network"]["config"]["center_input"] is True
    assert (config["sde"], config["preconditioning"]) == ("ve", "score_sde")


# ----------------------------------------------------------------------------- every command


@pytest.mark.slow
def test_sample_an_imported_run(ve_run, tmp_path) -> None:
    out = tmp_path / "draws"
    result = invoke("sample", ve_run, "--n", "2", "--steps", FAST_STEPS, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    x = np.load(out.with_suffix(".npz"))["x"]
    assert x.shape == (2, 16, 16, 3) and np.isfinite(x).all()


@pytest.mark.slow
def test_the_originals_sampler_settings_are_the_defaults(published, tmp_path) -> None:
    """A VP configuration with the original's sampling section (Euler-Maruyama, no corrector):
    one score evaluation a step, where reverse diffusion + Langevin takes two."""
    fixture = published["ddpmpp_vp_c3"]
    config = {**fixture.info["config"], "sampling": BUILTIN_CONFIGS[SAMPLER_OF["vp"]]["sampling"]}
    config_file = tmp_path / "vp.json"
    config_file.write_text(json.dumps(config))
    out = tmp_path / "run"
    args = ("import", "score-sde", fixture.checkpoint, "--config", config_file, "--out", out)
    assert invoke(*args).exit_code == 0
    steps = VP_CHAIN_STEPS  # a VP chain of fewer levels has no discrete (Langevin) form
    draw = ("sample", out, "--n", "1", "--steps", steps, "--json", "--out", tmp_path / "x")
    assert json.loads(invoke(*draw).stdout)["nfe"] == steps
    chosen = json.loads(invoke(*draw, "--corrector", "langevin").stdout)
    assert chosen["nfe"] == 2 * steps


def _rgb_png(path: Path, size: int) -> Path:
    """A random RGB image of the model's size."""
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.slow
def test_inpaint_and_colorize_an_imported_run(ve_run, tmp_path) -> None:
    image = _rgb_png(tmp_path / "image.png", 16)
    mask = np.zeros((16, 16), np.uint8)
    mask[:, :8] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    common = ("--n", "1", "--steps", FAST_STEPS, "--json")
    result = invoke(
        "inpaint", ve_run, "--image", image, "--mask", tmp_path / "mask.png", *common,
        "--out", tmp_path / "inpainted",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    x = np.load(tmp_path / "inpainted.npz")["x"]
    known = np.asarray(Image.open(image), np.float64)[:, :8]
    np.testing.assert_allclose(x[0, :, :8], known, atol=1e-3)  # the known half is kept
    result = invoke("colorize", ve_run, "--image", image, *common, "--out", tmp_path / "col")
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_likelihood_of_an_imported_run_needs_data(ve_run, tmp_path) -> None:
    """The run names no data set of scoregen's (one sentence); given --data, bits/dim."""
    assert_one_line_error(invoke("likelihood", ve_run, "--n", "2"), "--data")
    pixels = np.random.default_rng(1).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    np.savez(tmp_path / "images.npz", x=pixels)
    result = invoke(
        "likelihood", ve_run, "--data", f"npz:{tmp_path / 'images.npz'}", "--n", "2",
        "--divergence", "hutchinson", "--tol", "1e-2", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert np.isfinite(json.loads(result.stdout)["bits_per_dim"])


def test_an_imported_run_is_not_resumed(ve_run) -> None:
    result = invoke("train", "--out", ve_run, "--resume")
    assert_one_line_error(result, "imported model")


@pytest.mark.slow
def test_evaluate_an_imported_run(published, tmp_path) -> None:
    """A configuration of digits' size (8x8x1, random weights of the original's shapes) imported
    and evaluated against digits, whose feature network needs no download."""
    config = json.loads(published["ncsnpp_ve_c3"].config.read_text())
    config["data"] = {**config["data"], "image_size": TINY_IMAGE_SIZE, "num_channels": 1}
    config["model"] = {**config["model"], "ch_mult": [1, 2], "attn_resolutions": [4]}
    rng = np.random.default_rng(2)
    shapes = {"sigmas": (config["model"]["num_scales"],), **original_state_dict_shapes(config)}
    state = {
        key: 0.05 * rng.standard_normal(shape).astype(np.float32) for key, shape in shapes.items()
    }
    state["sigmas"] = score_sde_sigmas(config).astype(np.float32)
    # the Fourier W comes first in both NCSN++ (the fixture's fixed parameter)
    write_published_checkpoint(tmp_path / "tiny.pth", state, published["ncsnpp_ve_c3"].fixed)
    (tmp_path / "tiny.json").write_text(json.dumps(config))
    out = tmp_path / "run"
    args = ("import", "score-sde", tmp_path / "tiny.pth", "--config", tmp_path / "tiny.json")
    result = invoke(*args, "--out", out)
    assert result.exit_code == 0, result.output
    result = invoke(
        "evaluate", out, "--data", "digits", "--n", "20", "--steps", FAST_STEPS, "--pairs", "1",
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "metrics.json").exists()


# ----------------------------------------------------------------------------- diffusers


@pytest.fixture(scope="module")
def diffusers_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The diffusers fixture folder imported through the CLI (this session's backend)."""
    out = tmp_path_factory.mktemp("diffusers") / "run"
    folder = shared_fixture("diffusers") / "ncsnpp_small"
    result = invoke("import", "diffusers", folder, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize("backend", SUBPROCESS_BACKENDS)
def test_an_imported_diffusers_folder_samples_on_every_backend(diffusers_run, backend, tmp_path):
    """`scoregen sample` in a fresh process of each backend; the scheduler's settings are the
    sampler's (reverse diffusion + Langevin: NFE 2 a step)."""
    config = json.loads((diffusers_run / "config.json").read_text())
    assert config["sampler_config"]["snr"] == 0.075  # the fixture's scheduler
    drawn = scoregen_subprocess(
        "sample", diffusers_run, "--n", "1", "--steps", FAST_STEPS, "--json",
        "--out", tmp_path / "x", backend=backend,
    )  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    assert json.loads(drawn.stdout)["nfe"] == 2 * int(FAST_STEPS)
    x = np.load(tmp_path / "x.npz")["x"]
    assert x.shape == (1, 32, 32, 3) and np.isfinite(x).all()


def test_an_imported_diffusers_folder_gives_the_unets_function(diffusers_run) -> None:
    """The run's score at the t of sigma is unet(x, sigma).sample."""
    model = runs.load_run(diffusers_run).model
    log_ratio = np.log(model.sde.sigma_max / model.sde.sigma_min)

    def score(x, sigma):
        return model.score(x, np.log(sigma / model.sde.sigma_min) / log_ratio)

    assert parity.diffusers_output_error(score, shared_fixture("diffusers")) <= RTOL


@pytest.mark.slow
def test_a_unet_folder_alone_takes_the_schedulers_defaults(tmp_path) -> None:
    unet = shared_fixture("diffusers") / "ncsnpp_small" / "unet"
    result = invoke("import", "diffusers", unet, "--out", tmp_path / "run", "--json")
    assert result.exit_code == 0, result.output
    assert "defaults" in json.loads(result.stdout)["notes"][0]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["sde_config"]["sigma_max"]


# ----------------------------------------------------------------------------- bad input


def _checkpoint(fixture: Fixture, path: Path, **changes) -> Path:
    """The fixture's published checkpoint with entries of its model state changed (None:
    removed)."""
    state = {k: v for k, v in {**fixture.raw, **changes}.items() if v is not None}
    ema = {k: v for k, v in {**fixture.state_dict, **changes}.items() if v is not None}
    return write_published_checkpoint(path, state, fixture.fixed, ema=ema)


def _conv_weight(fixture: Fixture) -> str:
    """A convolution weight of the fixture whose transpose has another shape."""
    return next(
        key for key, v in fixture.state_dict.items() if v.ndim == 4 and v.shape[0] != v.shape[1]
    )


def _import(fixture: Fixture, checkpoint: Path, out: Path, config: Path | str | None = None):
    """`import score-sde CHECKPOINT --config ... --out OUT`."""
    config = fixture.config if config is None else config
    return invoke("import", "score-sde", checkpoint, "--config", config, "--out", out)


class Payload:
    """Unpickled by plain pickle, it would create a file: weights_only must refuse it."""

    def __init__(self, marker: Path) -> None:
        """Where the file would appear."""
        self.marker = marker

    def __reduce__(self):
        """Pickle as a call of open(marker, "w")."""
        return (builtins.open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused(published, tmp_path) -> None:
    import torch

    marker = tmp_path / "ran"
    torch.save({"model": Payload(marker), "ema": {}, "step": 1}, tmp_path / "evil.pth")
    out = tmp_path / "run"
    result = _import(published["ncsnpp_ve_c3"], tmp_path / "evil.pth", out)
    assert_one_line_error(result, "weights_only=True")
    assert not marker.exists()
    assert_nothing_written(out)


def test_a_missing_key_is_named(published, tmp_path) -> None:
    fixture = published["ncsnpp_ve_c3"]
    key = _conv_weight(fixture)
    checkpoint = _checkpoint(fixture, tmp_path / "c.pth", **{key: None})
    out = tmp_path / "run"
    assert_one_line_error(_import(fixture, checkpoint, out), f"no weight '{key}'")
    assert_nothing_written(out)


@pytest.mark.slow
def test_an_unexpected_key_is_named(published, tmp_path) -> None:
    fixture = published["ncsnpp_ve_c3"]
    checkpoint = _checkpoint(fixture, tmp_path / "c.pth", **{"extra.weight": np.zeros(3, "f4")})
    out = tmp_path / "run"
    assert_one_line_error(_import(fixture, checkpoint, out), "'extra.weight'", "no place for")
    assert_nothing_written(out)


def test_a_shape_mismatch_names_the_key_and_both_shapes(published, tmp_path) -> None:
    fixture = published["ncsnpp_ve_c3"]
    key = _conv_weight(fixture)
    value = fixture.state_dict[key]
    swapped = np.swapaxes(value, 0, 1)
    checkpoint = _checkpoint(fixture, tmp_path / "c.pth", **{key: swapped})
    out = tmp_path / "run"
    result = _import(fixture, checkpoint, out)
    assert_one_line_error(result, f"'{key}' has shape {swapped.shape}", f"needs {value.shape}")
    assert_nothing_written(out)


@pytest.mark.slow
def test_non_finite_weights_are_refused(published, tmp_path) -> None:
    fixture = published["ncsnpp_ve_c3"]
    key = _conv_weight(fixture)
    nan = np.full_like(fixture.state_dict[key], np.nan)
    checkpoint = _checkpoint(fixture, tmp_path / "c.pth", **{key: nan})
    out = tmp_path / "run"
    assert_one_line_error(_import(fixture, checkpoint, out), key, "NaN")
    assert_nothing_written(out)


@pytest.mark.slow
def test_an_ema_of_other_parameters_is_refused(published, tmp_path) -> None:
    """shadow_params of another length: the EMA cannot be matched to the parameters."""
    import torch

    fixture = published["ncsnpp_ve_c3"]
    checkpoint = torch.load(fixture.checkpoint, weights_only=True)
    checkpoint["ema"]["shadow_params"] = checkpoint["ema"]["shadow_params"][:-1]
    torch.save(checkpoint, tmp_path / "c.pth")
    out = tmp_path / "run"
    result = _import(fixture, tmp_path / "c.pth", out)
    assert_one_line_error(result, "shadow_params holds", "trainable parameters")
    assert_nothing_written(out)


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ("ddpmpp_vp_c3", "no weight"),  # the other fixture's configuration: another network
        ("nf=32", "has shape"),  # the same network twice as wide
        ("ve/mnist", "no built-in configuration 've/mnist'"),
        ("missing.json", "does not exist"),
    ],
)
def test_a_configuration_that_does_not_fit_is_refused(published, tmp_path, config, fragment):
    fixture = published["ncsnpp_ve_c3"]
    if config in published:
        config = published[config].config
    elif config == "nf=32":
        wider = fixture.info["config"]
        wider = {**wider, "model": {**wider["model"], "nf": 32}}
        config = tmp_path / "wider.json"
        config.write_text(json.dumps(wider))
    out = tmp_path / "run"
    result = _import(fixture, fixture.checkpoint, out, config=config)
    assert_one_line_error(result, "configuration", fragment)
    assert_nothing_written(out)


def test_a_file_that_is_no_training_checkpoint_is_refused(published, tmp_path) -> None:
    """A bare state_dict (no model / ema entries)."""
    import torch

    torch.save({"w": torch.zeros(2)}, tmp_path / "bare.pth")
    out = tmp_path / "run"
    result = _import(published["ncsnpp_ve_c3"], tmp_path / "bare.pth", out)
    assert_one_line_error(result, "not a score_sde_pytorch checkpoint")
    assert_nothing_written(out)


def test_a_missing_or_truncated_checkpoint_is_refused(published, tmp_path) -> None:
    fixture = published["ncsnpp_ve_c3"]
    out = tmp_path / "run"
    result = _import(fixture, tmp_path / "nowhere.pth", out)
    assert_one_line_error(result, "nowhere.pth does not exist")
    data = fixture.checkpoint.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    assert_one_line_error(_import(fixture, tmp_path / "cut.pth", out), "not a readable checkpoint")
    assert_nothing_written(out)


def test_an_existing_out_is_refused(published, ve_run) -> None:
    before = sorted(p.name for p in ve_run.iterdir())
    result = invoke(*published["ncsnpp_ve_c3"].args(ve_run))
    assert_one_line_error(result, "already exists")
    assert sorted(p.name for p in ve_run.iterdir()) == before


def test_without_torch_one_sentence_says_how_to_install_it(published, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails
    out = tmp_path / "run"
    result = invoke(*published["ncsnpp_ve_c3"].args(out))
    assert_one_line_error(result, "needs PyTorch", "pip install torch")
    assert_nothing_written(out)


def _copy_pipeline(tmp_path: Path) -> Path:
    """A copy of the diffusers fixture folder that a test may damage."""
    import shutil

    return Path(shutil.copytree(shared_fixture("diffusers") / "ncsnpp_small", tmp_path / "pipe"))


def test_a_diffusers_folder_without_weights_is_refused(tmp_path) -> None:
    folder = _copy_pipeline(tmp_path)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    out = tmp_path / "run"
    result = invoke("import", "diffusers", folder, "--out", out)
    assert_one_line_error(result, "holds no diffusion_pytorch_model")
    assert_nothing_written(out)


def test_a_ddpm_pipeline_is_refused(tmp_path) -> None:
    folder = _copy_pipeline(tmp_path)
    index = json.loads((folder / "model_index.json").read_text())
    (folder / "model_index.json").write_text(json.dumps({**index, "_class_name": "DDPMPipeline"}))
    out = tmp_path / "run"
    result = invoke("import", "diffusers", folder, "--out", out)
    assert_one_line_error(result, "'DDPMPipeline'", "holds no score model")
    assert_nothing_written(out)


def test_a_hub_id_without_huggingface_hub_or_network(tmp_path, monkeypatch) -> None:
    out = tmp_path / "run"
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    result = invoke("import", "diffusers", "google/ncsnpp-celebahq-256", "--out", out)
    assert_one_line_error(result, "pip install huggingface_hub")

    def offline(repo_id: str, **_: object) -> str:
        raise OSError("we are offline")

    hub = types.SimpleNamespace(snapshot_download=offline)
    monkeypatch.setitem(sys.modules, "huggingface_hub", hub)
    result = invoke("import", "diffusers", "google/ncsnpp-celebahq-256", "--out", out)
    assert_one_line_error(result, "could not download", "we are offline")
    assert_nothing_written(out)


def test_list_configs_prints_the_builtin_configurations() -> None:
    result = invoke("import", "score-sde", "--list-configs")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == sorted(BUILTIN_CONFIGS)
