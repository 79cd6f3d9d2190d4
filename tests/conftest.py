"""Shared pytest configuration: keep numerical libraries to the cores the machine has, and skip
(or, under CI, fail) the tests of a backend that is not installed."""

import importlib.util
import os

import pytest

# One BLAS thread: on 2 cores, threaded OpenBLAS made small matrix products ~50x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

INSTALL_HINT = {"torch": 'pip install "torch==2.13.0"', "jax": "pip install jax"}
"""How to install a backend a test needs (2.13.0: the CPU build of torch that lies on this disk)."""


def backend_missing(name: str) -> str | None:
    """Why tests on backend `name` cannot run here, or None when its framework is installed."""
    if importlib.util.find_spec(name) is not None:
        return None
    return f"the {name} backend is not installed ({INSTALL_HINT.get(name, f'pip install {name}')})"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.backends(...)`: skip when one is not installed, with the reason; under CI
    (CI=true) fail instead, so that CI cannot silently lose the coverage of a backend."""
    for marker in item.iter_markers("backends"):
        reasons = [reason for name in marker.args if (reason := backend_missing(name))]
        if reasons and os.environ.get("CI") == "true":
            pytest.fail(f"CI must test every backend, but {'; '.join(reasons)}")
        if reasons:
            pytest.skip("; ".join(reasons))
