"""`scoregen interpolate RUN_DIR` on 2-D points: files, shapes, ends, choices of ends, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli.test_bad_input import assert_one_line_error
from tests.cli.test_train_cli import assert_png, invoke, train_tiny

N_FRAMES = 6
ROUND_TRIP_ATOL = 1e-2
"""Encode then decode with RK45 (rtol = atol = 1e-5, latents of scale sigma_max = 50) returns
the ends to about 1e-4 on this run; the bound leaves room for other backends."""


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny trained VE run on the toy mixture (2-D points)."""
    return train_tiny(tmp_path_factory.mktemp("interpolate"))


def test_path_between_two_indices(toy_run: Path, tmp_path: Path) -> None:
    """--a/--b: PATH.npz holds the frames, the ends and the fractions; the path starts and ends
    at (the reconstructions of) the two examples; --json prints one object."""
    out = tmp_path / "path"
    result = invoke(
        "interpolate", toy_run, "--a", "0", "--b", "1", "--n-frames", N_FRAMES, "--out", out,
        "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["a"] == 0 and summary["b"] == 1 and summary["n_frames"] == N_FRAMES
    assert summary["nfe"] > 0
    with np.load(out.with_suffix(".npz")) as data:
        x, ends, fractions = data["x"], data["ends"], data["fractions"]
    assert x.shape == (N_FRAMES, 2) and ends.shape == (2, 2) and np.isfinite(x).all()
    np.testing.assert_allclose(fractions, np.linspace(0, 1, N_FRAMES))
    np.testing.assert_allclose(x[[0, -1]], ends, atol=ROUND_TRIP_ATOL)
    assert not np.allclose(ends[0], ends[1])
    assert_png(out.with_suffix(".png"))


def test_ends_from_a_file_and_from_the_seed(toy_run: Path, tmp_path: Path) -> None:
    """--a-file (original scale .npy) with a seeded --b; default output in RUN_DIR/samples."""
    end = np.array([1.5, -0.5])
    np.save(tmp_path / "a.npy", end)
    result = invoke(
        "interpolate", toy_run, "--a-file", tmp_path / "a.npy", "--n-frames", "3", "--steps", "5",
        "--seed", "4",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted((toy_run / "samples").glob("interpolate-file-*.npz"))
    assert len(files) == 1
    with np.load(files[0]) as data:
        np.testing.assert_allclose(data["ends"][0], end, rtol=1e-6)
        assert data["x"].shape == (3, 2)


def test_bad_ends(toy_run: Path, tmp_path: Path) -> None:
    """Index out of range, both --a and --a-file, too few frames, a file of the wrong size."""
    assert_one_line_error(invoke("interpolate", toy_run, "--a", "100000"), "out of range")
    np.save(tmp_path / "a.npy", np.zeros(3))
    both = invoke("interpolate", toy_run, "--a", "0", "--a-file", tmp_path / "a.npy")
    assert_one_line_error(both, "not both")
    assert_one_line_error(invoke("interpolate", toy_run, "--n-frames", "1"), "at least 2")
    wrong = invoke("interpolate", toy_run, "--a-file", tmp_path / "a.npy", "--b", "0")
    assert_one_line_error(wrong, "shape (3,)")
