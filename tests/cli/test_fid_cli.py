"""`scoregen fid` and `scoregen evaluate --fid-stats` against pytorch-fid's numbers.

The fixture shared/fixtures/fid_inception holds pytorch-fid's network with random weights under
the published keys, 4 images and their pool3 features computed by pytorch-fid. The weights are
written as a .pth the way its README says pytorch-fid loads them, the images as PNG files (lossless:
the same pixels). Expected values come from the fixture's pool3 alone: np.mean, np.cov and
`reference.metrics.frechet_distance(method=method="sqrtm")` (pytorch-fid's formula).

Tolerances: the fixture README bounds pool3 at 1e-4 of its maximum (>= 250x its float32 noise,
>= 100x below the smallest port bug). With δ = 1e-4 · max |pool3| the mean moves by <= δ and
sigma by <= (4δ · max |centred pool3| + 4δ²) · n / (n − 1). The FID of the fixture's pool3 in
float32 and in float64 (pytorch-fid's network in each) differ by 6.3e-7 relative, so FID_RTOL =
1e-4 sits 150x above float32 noise. Each FID costs a 2048 x 2048 scipy.linalg.sqrtm (tens of
seconds here): the fast tests compute two, the per-backend runs are slow tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from reference.metrics import frechet_distance
from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import invoke
from tests.frameworks import require_torch
from tests.shared_fixtures import REPOSITORY, shared_fixture

POOL3_RTOL = 1e-4
"""The fixture README's tolerance on pool3, relative to its maximum."""
FID_RTOL = 1e-4
SUBSET = slice(1, None)
"""The fixture images of the second set (3 of the 4)."""
BATCH = "3"
"""Images per network pass: the 4 images make a full batch and a padded one."""


class RunsCode:
    """Unpickling this calls Path.touch(marker): a file that would run code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def fixture_arrays() -> dict[str, Any]:
    """The fixture archive's arrays and the published keys of its state_dict."""
    folder = shared_fixture("fid_inception")
    keys = [
        key for key, _, _ in json.loads((folder / "fid_inception_random.json").read_text())["keys"]
    ]
    with np.load(folder / "fid_inception_random.npz") as data:
        arrays = {key: data[key] for key in data.files}
    return {"arrays": arrays, "state_dict": {key: arrays[key] for key in keys}}


@pytest.fixture(scope="module")
def files(fixture_arrays: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """weights.pth (torch.save of the state_dict), images/ (4 PNGs), subset.npz (3 of them)."""
    torch = require_torch()
    folder = tmp_path_factory.mktemp("fid_cli")
    state_dict = fixture_arrays["state_dict"]
    torch.save({k: torch.from_numpy(v) for k, v in state_dict.items()}, folder / "weights.pth")
    np.savez(folder / "weights.npz", **state_dict)
    images = fixture_arrays["arrays"]["images_uint8"]
    (folder / "images").mkdir()
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / "images" / f"{i}.png")
    np.savez(folder / "subset.npz", x=images[SUBSET])
    return {
        "root": folder,
        "weights": folder / "weights.pth",
        "weights_npz": folder / "weights.npz",
        "images": folder / "images",
        "subset": folder / "subset.npz",
    }


@pytest.fixture(scope="module")
def expected(fixture_arrays: dict[str, Any]) -> dict[str, Any]:
    """pytorch-fid's mu and sigma of the 4 images, their bounds, and the FID of the subset."""
    pool3 = fixture_arrays["arrays"]["pool3"].astype(np.float64)
    mu, sigma = pool3.mean(axis=0), np.cov(pool3, rowvar=False)
    part = pool3[SUBSET]
    fid = frechet_distance(part.mean(axis=0), np.cov(part, rowvar=False), mu, sigma, method="sqrtm")
    delta = POOL3_RTOL * np.max(np.abs(pool3))
    n = len(pool3)
    sigma_bound = (4 * delta * np.max(np.abs(pool3 - mu)) + 4 * delta**2) * n / (n - 1)
    return {"mu": mu, "sigma": sigma, "fid": fid, "mu_bound": delta, "sigma_bound": sigma_bound}


@pytest.fixture(scope="module")
def statistics(files: dict) -> Path:
    """`scoregen fid --save-stats images/ stats.npz` (this session's backend)."""
    target = files["root"] / "stats.npz"
    result = invoke(
        "fid", "--save-stats", files["images"], target, "--inception-weights", files["weights"],
        "--batch-size", BATCH, "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"statistics": str(target), "count": 4}
    return target


@pytest.fixture(scope="module")
def fixture_statistics(files: dict, expected: dict[str, Any]) -> Path:
    """pytorch-fid's statistics of the 4 images, written as it writes them (no network run)."""
    target = files["root"] / "fixture_stats.npz"
    np.savez(target, mu=expected["mu"], sigma=expected["sigma"])
    return target


def assert_pytorch_fid_statistics(path: Path, expected: dict[str, Any]) -> None:
    """mu and sigma (float64, nothing else in the file) within the bounds of the fixture's."""
    with np.load(path) as archive:
        assert sorted(archive.files) == ["mu", "sigma"]
        mu, sigma = archive["mu"], archive["sigma"]
    assert mu.dtype == sigma.dtype == np.float64
    assert np.max(np.abs(mu - expected["mu"])) <= expected["mu_bound"]
    assert np.max(np.abs(sigma - expected["sigma"])) <= expected["sigma_bound"]


@pytest.mark.slow  # 40 s of the 299 x 299 network on a CPU; the pool3 parity is fast elsewhere
def test_save_stats_and_fid_give_pytorch_fids_numbers(statistics, files, expected) -> None:
    """--save-stats of the PNG folder: pytorch-fid's mu and sigma; the FID of an .npz of 3 of
    the images against that file: pytorch-fid's FID, with the counts (None: a statistics file)."""
    assert_pytorch_fid_statistics(statistics, expected)
    result = invoke(
        "fid", files["subset"], statistics, "--inception-weights", files["weights"], "--json"
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["count1"] == 3 and printed["count2"] is None
    assert printed["fid"] == pytest.approx(expected["fid"], rel=FID_RTOL)


def test_cli_defaults_are_the_librarys() -> None:
    """--batch-size's default, restated in cli/ for --help, is the library's."""
    from cli.options import DEFAULT_FID_BATCH
    from scoregen_keras import runs

    assert DEFAULT_FID_BATCH == runs.DEFAULT_BATCH_SIZE


def bad_weights(files: dict, fixture_arrays: dict[str, Any], folder: Path) -> dict[str, tuple]:
    """{name: (weights file, fragments of the sentence)} for weights that do not fit."""
    torch = require_torch()
    state_dict = fixture_arrays["state_dict"]
    missing = {k: v for k, v in state_dict.items() if k != "Mixed_6b.branch7x7_2.conv.weight"}
    extra = {**state_dict, "AuxLogits.fc.weight": np.zeros((1000, 768), np.float32)}
    wrong = {**state_dict, "fc.weight": state_dict["fc.weight"].T}
    np.savez(folder / "missing.npz", **missing)
    np.savez(folder / "extra.npz", **extra)
    torch.save({k: torch.from_numpy(v) for k, v in wrong.items()}, folder / "wrong.pth")
    torch.save({"fc.bias": torch.zeros(1008), "x": RunsCode(folder / "ran")}, folder / "evil.pth")
    return {
        "missing.npz": ("'Mixed_6b.branch7x7_2.conv.weight' is missing",),
        "extra.npz": ("'AuxLogits.fc.weight'", "is not a parameter"),
        "wrong.pth": ("'fc.weight' has shape (2048, 1008)", "(1008, 2048)"),
        "evil.pth": ("weights_only=True) refused it",),
    }


def test_bad_weights_are_one_sentence_naming_file_and_key(files, fixture_arrays, tmp_path):
    """A missing or extra key, a wrong shape, a pickle that would run code: one line naming the
    file (and the key), through `fid` (and `convert-weights` once); nothing runs or is written."""
    for name, fragments in bad_weights(files, fixture_arrays, tmp_path).items():
        weights = tmp_path / name
        result = invoke("fid", files["subset"], files["images"], "--inception-weights", weights)
        assert_one_line_error(result, str(weights), *fragments)
    target = tmp_path / "converted.npz"
    converted = invoke("fid", "convert-weights", tmp_path / "missing.npz", target)
    assert_one_line_error(converted, "missing.npz", "'Mixed_6b.branch7x7_2.conv.weight' is missing")
    assert not target.exists() and not (tmp_path / "ran").exists()


def test_convert_weights_writes_the_same_keys(files, fixture_arrays, tmp_path) -> None:
    """convert-weights of the .pth: an .npz of the same arrays; a second time, refused."""
    target = tmp_path / "converted.npz"
    result = invoke("fid", "convert-weights", files["weights"], target, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"weights": str(target)}
    with np.load(target) as archive:
        assert sorted(archive.files) == sorted(fixture_arrays["state_dict"])
        for key, value in fixture_arrays["state_dict"].items():
            np.testing.assert_array_equal(archive[key], value)
    again = invoke("fid", "convert-weights", files["weights"], target)
    assert_one_line_error(again, str(target), "not replaced")


def test_bad_images_and_statistics_are_one_sentence(files, fixture_statistics, tmp_path) -> None:
    """An empty folder, an unreadable image (named), one image, a statistics file without sigma
    or of another dimension, an existing --save-stats output (refused before any image is read),
    a missing path: one line each, nothing written."""
    statistics = fixture_statistics
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    Image.open(files["images"] / "0.png").save(tmp_path / "broken" / "a.png")
    (tmp_path / "broken" / "b.png").write_bytes(b"\x89PNG but cut short")
    (tmp_path / "one").mkdir()
    Image.open(files["images"] / "0.png").save(tmp_path / "one" / "a.png")
    np.savez(tmp_path / "no_sigma.npz", mu=np.zeros(2048))
    np.savez(tmp_path / "small.npz", mu=np.zeros(64), sigma=np.eye(64))
    weights = ("--inception-weights", files["weights"])
    cases = {
        "empty": (("fid", tmp_path / "empty", statistics, *weights), ("holds no image files",)),
        "unreadable": (("fid", tmp_path / "broken", statistics, *weights), ("image b.png",)),
        "one image": (("fid", tmp_path / "one", statistics, *weights), ("at least 2", "got 1")),
        "no sigma": (("fid", files["subset"], tmp_path / "no_sigma.npz"), ("has no sigma",)),
        "second path": (("fid", files["images"], tmp_path / "empty"), ("holds no image",)),
        "other dimension": (("fid", statistics, tmp_path / "small.npz"), ("(64,)", "(2048,)")),
        "existing output": (
            ("fid", "--save-stats", tmp_path / "empty", statistics),
            (str(statistics), "not replaced"),
        ),
        "missing path": (("fid", tmp_path / "absent", statistics), ("absent does not exist",)),
    }
    for case, (args, fragments) in cases.items():
        result = invoke(*args, "--no-progress")
        assert_one_line_error(result, *fragments)
        assert "Error" in result.stderr, case
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "broken", "empty", "no_sigma.npz", "one", "small.npz",
    ]  # fmt: skip


# ------------------------------------------------------------------------- evaluate --fid-stats


def fake_image_run(
    monkeypatch: pytest.MonkeyPatch, folder: Path, x_model: np.ndarray, kind="images"
):
    """load_run gives a run of images in [0, 1] whose sample batches are x_model, 3 at a time."""
    from scoregen_keras import runs
    from scoregen_keras.runs import fid

    folder.mkdir(exist_ok=True)
    config: dict[str, Any] = {
        "dataset": "npz:fake.npz",
        "seed": 0,
        "data": {
            "kind": kind,
            "shape": list(x_model.shape[1:]),
            "scaler": {"shift": 0.0, "scale": 1.0},
            "value_range": [0.0, 1.0],
        },
    }
    paths = runs.RunPaths(folder)
    run = runs.Run(paths, config, model=None, step=7, status="complete", checkpoint=paths.latest)
    drawn: list[dict[str, Any]] = []

    def batches(model: Any, config: dict[str, Any], n: int, **options: Any):
        """n of the stand-in samples in batches of options['batch_size'], NFE 5."""
        drawn.append({"n": n, **options})
        size = options["batch_size"] or n
        return iter([(x_model[i : min(i + size, n)], 5) for i in range(0, n, size)])

    monkeypatch.setattr(runs, "load_run", lambda run_dir: run)
    monkeypatch.setattr(fid, "sample_batches", batches)
    return drawn


def test_evaluate_fid_stats_feeds_the_samples_as_their_pngs(
    monkeypatch: pytest.MonkeyPatch, files: dict, statistics: Path, tmp_path: Path
) -> None:
    """The images reaching the statistics are the pixels of the PNGs `scoregen sample
    --image-files` writes (rounded, clipped, grey made RGB), every sample once, in order; the
    report holds the FID with its count and the sampler's NFE."""
    from scoregen_keras import runs
    from scoregen_keras.runs import fid

    rng = np.random.default_rng(0)
    x_model = rng.uniform(-0.1, 1.1, (7, 6, 6, 1)).astype(np.float32)  # outside [0, 1]: clipped
    drawn = fake_image_run(monkeypatch, tmp_path / "run", x_model)
    seen: list[np.ndarray] = []

    def recording(images: Any, network: Any, batch_size: int, progress: Any) -> Any:
        """Keep the images (they come in batches); statistics of random features."""
        for batch in images:
            seen.extend(batch)
        features = np.random.default_rng(1).random((len(seen), 2048))
        return runs.FIDStatistics(features.mean(0), np.cov(features, rowvar=False), len(seen))

    monkeypatch.setattr(fid, "feature_statistics", recording)
    monkeypatch.setattr(fid, "load_fid_inception", lambda weights, download: None)
    monkeypatch.setattr(fid, "frechet_inception_distance", lambda first, second: 12.5)
    result = invoke(
        "evaluate", tmp_path / "run", "--n", "7", "--batch-size", "3", "--fid-stats", statistics,
        "--json", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["metrics"] == {"fid": {"value": 12.5, "n": 7}}
    assert payload["against"] == str(statistics) and payload["nfe"] == 5
    assert drawn[0]["n"] == 7 and drawn[0]["batch_size"] == 3
    png_folder = tmp_path / "pngs"
    png_folder.mkdir()
    runs.save_image_files(png_folder, x_model, (0.0, 1.0))
    from scoregen_keras.data import open_image_set

    np.testing.assert_array_equal(np.stack(seen), np.stack(list(open_image_set(png_folder))))


def test_evaluate_fid_stats_refuses_what_it_cannot_use(monkeypatch, files, tmp_path) -> None:
    """A point run, a statistics file of another dimension (before sampling), --data beside
    --fid-stats, the FID weights without --fid-stats: one line each."""
    np.savez(tmp_path / "small.npz", mu=np.zeros(64), sigma=np.eye(64))
    stats = ("--fid-stats", tmp_path / "small.npz", "--no-progress")
    drawn = fake_image_run(monkeypatch, tmp_path / "run", np.zeros((4, 2), np.float32), "points")
    assert_one_line_error(invoke("evaluate", tmp_path / "run", *stats), "for image runs")
    drawn = fake_image_run(monkeypatch, tmp_path / "run", np.zeros((4, 5, 5, 3), np.float32))
    assert_one_line_error(invoke("evaluate", tmp_path / "run", *stats), "small.npz", "(64,)")
    assert not drawn
    with_data = invoke("evaluate", tmp_path / "run", *stats, "--data", "digits")
    assert_one_line_error(with_data, "--fid-stats", "--data")
    weights_alone = invoke("evaluate", tmp_path / "run", "--inception-weights", files["weights"])
    assert_one_line_error(weights_alone, "--fid-stats", "--imagenet-weights")


@pytest.mark.slow
def test_evaluate_fid_stats_is_pytorch_fids(monkeypatch, files, statistics, expected, tmp_path):
    """evaluate --fid-stats of a run whose samples are 3 of the fixture images (in model space,
    [0, 1]): the FID of those images against the 4, pytorch-fid's."""
    images = np.load(files["subset"])["x"]
    fake_image_run(monkeypatch, tmp_path / "run", images.astype(np.float32) / 255.0)
    result = invoke(
        "evaluate", tmp_path / "run", "--n", "3", "--batch-size", "2", "--fid-stats", statistics,
        "--inception-weights", files["weights"], "--json", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    entry = json.loads(result.stdout)["metrics"]["fid"]
    assert entry["n"] == 3 and entry["value"] == pytest.approx(expected["fid"], rel=FID_RTOL)


# ------------------------------------------------------------------------------ other backends


def scoregen(backend: str, *args: Any) -> subprocess.CompletedProcess:
    """`scoregen ARGS --backend BACKEND` in a fresh process (KERAS_BACKEND is read at start)."""
    env = {**os.environ, "PYTHONPATH": str(REPOSITORY), "KERAS_BACKEND": backend}
    command = [sys.executable, "-m", "cli.main", *map(str, args), "--backend", backend]
    return subprocess.run(command, capture_output=True, text=True, env=env, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tensorflow", "jax", "torch"])
def test_every_backend_gives_pytorch_fids_numbers(backend, files, expected, tmp_path) -> None:
    """--save-stats and the FID in a fresh process on each backend: pytorch-fid's numbers."""
    target = tmp_path / "stats.npz"
    weights = ("--inception-weights", files["weights"], "--batch-size", BATCH, "--no-progress")
    saved = scoregen(backend, "fid", "--save-stats", files["images"], target, *weights)
    assert saved.returncode == 0, saved.stderr
    assert_pytorch_fid_statistics(target, expected)
    compared = scoregen(backend, "fid", files["subset"], target, *weights, "--json")
    assert compared.returncode == 0, compared.stderr
    assert json.loads(compared.stdout)["fid"] == pytest.approx(expected["fid"], rel=FID_RTOL)


@pytest.mark.slow
def test_two_statistics_files_need_no_weights(statistics, expected, tmp_path, monkeypatch):
    """With no weights anywhere (empty cache, no variable), two statistics files still give the
    FID: the network is loaded only for images."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SCOREGEN_FID_WEIGHTS", raising=False)
    np.savez(tmp_path / "other.npz", mu=expected["mu"][::-1].copy(), sigma=expected["sigma"])
    result = invoke("fid", statistics, tmp_path / "other.npz", "--json")
    assert result.exit_code == 0, result.output
    with np.load(statistics) as saved:
        mu, sigma = saved["mu"], saved["sigma"]
    value = frechet_distance(mu, sigma, expected["mu"][::-1], expected["sigma"], method="sqrtm")
    printed = json.loads(result.stdout)
    assert printed["count1"] is None and printed["count2"] is None
    assert printed["fid"] == pytest.approx(value, rel=1e-12)  # the same function on the same input
