"""The wheel carries what a non-editable install needs: the digits classifier's weights."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_ships_the_digits_weights_where_features_looks(tmp_path: Path) -> None:
    """pyproject's data-files put data/ under share/scoregen, features.INSTALLED_DATA."""
    from scoregen_keras.networks import features

    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation"]
    build = REPO_ROOT / "build"  # setuptools builds in the source tree: leave it as it was
    had_build = build.exists()
    try:
        subprocess.run([*command, "-w", str(tmp_path), str(REPO_ROOT)], check=True, cwd=tmp_path)
    finally:
        if not had_build:
            shutil.rmtree(build, ignore_errors=True)
    (wheel,) = tmp_path.glob("scoregen-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.split("/data/", 1)[1]: archive.read(name)
            for name in archive.namelist()
            if ".data/data/" in name
        }
    relative = features.INSTALLED_DATA.relative_to(Path(features.sysconfig.get_path("data")))
    weights = (relative / features.DIGITS_WEIGHTS_NAME).as_posix()
    assert shipped[weights] == features.DIGITS_WEIGHTS.read_bytes()
    assert (relative / "README.md").as_posix() in shipped  # the weights' licence and recipe
