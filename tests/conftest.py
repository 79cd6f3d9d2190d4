"""Shared pytest configuration: keep numerical libraries to the cores the machine has, and skip
(or, under CI, fail) the tests of a backend that is not installed."""

import os

import pytest

from tests.frameworks import require_frameworks

# One BLAS thread: on 2 cores, threaded OpenBLAS made small matrix products ~50x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """`@pytest.mark.backends(...)`: skip when one is not installed, with the reason; under CI
    (CI=true) fail instead, so that CI cannot silently lose the coverage of a backend."""
    for marker in item.iter_markers("backends"):
        require_frameworks(*marker.args)
