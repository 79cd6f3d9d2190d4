"""`scoregen_keras.training` re-exports every name of its modules, and reading its presets
imports no keras (the CLI lists presets and settles a configuration before choosing a backend)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from scoregen_keras import training
from scoregen_keras.training import distribution, presets

FRAMEWORKS = ("keras", "tensorflow", "jax", "torch")


def test_every_exported_name_resolves_to_its_modules_object() -> None:
    lazy = {name for names in training.KERAS_EXPORTS.values() for name in names}
    eager = set(training.__all__) - lazy  # imported at once from presets and distribution
    assert lazy <= set(training.__all__)
    for module, names in training.KERAS_EXPORTS.items():
        home = importlib.import_module(f"{training.__name__}.{module}")
        for name in names:
            assert getattr(training, name) is getattr(home, name), name
    for name in eager:
        owner = presets if hasattr(presets, name) else distribution
        assert hasattr(owner, name) and getattr(training, name) is getattr(owner, name), name


def test_presets_and_distribution_import_no_framework() -> None:
    code = (
        "import sys\n"
        "from scoregen_keras.training import PRESETS, ConfigError, check_support, resolve_config\n"
        f"print(sorted(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr
