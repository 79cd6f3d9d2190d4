"""Shared pytest configuration: keep numerical libraries to the cores the machine has."""

import os

# One BLAS thread: on 2 cores, threaded OpenBLAS made small matrix products ~50x slower.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
