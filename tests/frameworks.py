"""Tests that need a framework (a Keras backend, or torch to write .pth files) skip where it is
missing, with the reason, and fail under CI (CI=true), so that CI cannot silently lose them."""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

import pytest

INSTALL_HINT = {"torch": 'pip install "torch==2.13.0"', "jax": "pip install jax"}
"""How to install a framework a test needs (2.13.0: the CPU build of torch on this disk)."""


def framework_missing(name: str) -> str | None:
    """Why tests that need framework `name` cannot run here, or None when it is installed."""
    if importlib.util.find_spec(name) is not None:
        return None
    return f"the {name} backend is not installed ({INSTALL_HINT.get(name, f'pip install {name}')})"


def require_frameworks(*names: str) -> None:
    """Skip the calling test (fail it under CI) unless every named framework is installed."""
    reasons = [reason for name in names if (reason := framework_missing(name))]
    if reasons and os.environ.get("CI") == "true":
        pytest.fail(f"CI must run every test, but {'; '.join(reasons)}")
    if reasons:
        pytest.skip("; ".join(reasons))


def require_torch() -> ModuleType:
    """torch, for a test or fixture that writes or reads .pth files (`require_frameworks`)."""
    require_frameworks("torch")
    return importlib.import_module("torch")
