"""Likelihood of data under a run's model: log p(x) in the data's own units, and bits/dim.

What `scoregen likelihood` calls: examples are mapped into model space with the run's scaler,
integer pixels are dequantised first, and the model-space density is brought back to original
units by the change of variables.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from pathlib import Path
from typing import Any, NamedTuple

import keras
import numpy as np

from scoregen_keras.choices import AUTO
from scoregen_keras.data import DataError, Scaler
from scoregen_keras.likelihood import DIVERGENCES, PROBES, bits_per_dim, dequantize, ode_likelihood
from scoregen_keras.likelihood import METHODS as LIKELIHOOD_METHODS
from scoregen_keras.runs.build import load_run_data
from scoregen_keras.runs.config import config_scaler, run_dataset
from scoregen_keras.runs.folder import RunError, one_line, output_stem, save_npz_atomic
from scoregen_keras.runs.load import Run, run_sde

EXACT_MAX_DIMS = 16
"""Largest data dimension D for the exact divergence (one forward-mode pass per dimension, so a
batch costs D times a Hutchinson solve); `auto` picks Hutchinson above it."""
INTEGER_ATOL = 1e-3
"""Image data whose original-scale values are this close to integers are integer pixels: they
are dequantised uniformly (u ~ U[0, 1) added in original units) before their likelihood."""
ORIGINAL_UNITS = 1
"""`dequantize(x, n_bins=1)` is x + u: dequantisation in the data's original (integer) units."""
DEFAULT_LIKELIHOOD_BATCH = 500
"""Examples per ODE solve (each solve integrates its whole batch with one adaptive step size)."""
DEFAULT_TOLERANCE = 1e-5
"""rtol = atol of the likelihood solve (score SDE paper)."""


@dataclasses.dataclass
class Likelihood:
    """Per-example log-densities of data under a run's model and what was done to get them."""

    log_p: np.ndarray
    """log p(x) in nats per example, in the data's original units (of the dequantised data)."""
    n_dims: int
    divergence: str
    probe: str | None
    dequantized: bool
    offset_bits: float
    """log2(scale) of the run's scaler: bits/dim here minus bits/dim of the model-space density."""
    nfe: int
    seconds: float

    @property
    def bits_per_dim(self) -> np.ndarray:
        """Per-example bits/dim, -log2 p(x) / D (for integer pixels: of the discrete data)."""
        return np.asarray(bits_per_dim(self.log_p, self.n_dims), dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """Means over the examples and their standard errors, as plain JSON."""
        n = len(self.log_p)
        bpd, nll = self.bits_per_dim, -self.log_p
        sem = (lambda v: float(np.std(v, ddof=1) / math.sqrt(n))) if n > 1 else (lambda v: None)
        return {
            "n": n,
            "dims": self.n_dims,
            "divergence": self.divergence,
            "probe": self.probe,
            "dequantized": self.dequantized,
            "offset_bits": self.offset_bits,
            "bits_per_dim": float(np.mean(bpd)),
            "bits_per_dim_sem": sem(bpd),
            "nll_nats": float(np.mean(nll)),
            "nll_nats_sem": sem(nll),
            "nfe": self.nfe,
            "seconds": round(self.seconds, 3),
        }


def choose_divergence(divergence: str, n_dims: int) -> str:
    """'exact' or 'hutchinson' for n_dims-dimensional data ('auto': exact up to EXACT_MAX_DIMS)."""
    if divergence == AUTO:
        return DIVERGENCES[0] if n_dims <= EXACT_MAX_DIMS else DIVERGENCES[1]
    if divergence not in DIVERGENCES:
        raise RunError(f"unknown divergence '{divergence}'; choose auto, {', '.join(DIVERGENCES)}.")
    if divergence == DIVERGENCES[0] and n_dims > EXACT_MAX_DIMS:
        raise RunError(
            f"the exact divergence costs one forward pass per dimension and is for data of at most "
            f"{EXACT_MAX_DIMS} dimensions; these have {n_dims}: use --divergence hutchinson."
        )
    return divergence


class EvaluationData(NamedTuple):
    """Examples to score in their own original units, and the map from there to model space."""

    x: np.ndarray
    kind: str  # "points" or "images"
    scaler: Scaler


def evaluation_data(config: dict[str, Any], spec: str | None, n: int, seed: int) -> EvaluationData:
    """Up to n examples of a data set in their original scale, their kind and their scaler.

    ``spec`` is as for training (default: the run's data set); toy sets are drawn with ``seed``,
    and larger sets are subsampled without replacement with ``seed``. Points are in the run's
    units, so the run's scaler maps them. Images keep their own pixel depth (0..255 PNGs for a
    run on digits' 0..16): their scaler maps white onto the white of the run's model space, as
    every image set shares one model pixel scale, so they are dequantised in their own levels.
    """
    spec = run_dataset(config, spec, "the likelihood")
    try:
        dataset = load_run_data(spec, config, n, seed)
    except DataError as error:
        raise RunError(str(error)) from error
    x = dataset.scaler.inverse(dataset.x)
    if len(x) > n:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), n, replace=False))]
    scaler = dataset.scaler if dataset.kind == "images" else config_scaler(config)
    return EvaluationData(x, dataset.kind, scaler)


def run_likelihood(
    run: Run,
    x_original: np.ndarray,
    kind: str,
    divergence: str = AUTO,
    probe: str = PROBES[0],
    seed: int = 0,
    tol: float = DEFAULT_TOLERANCE,
    batch_size: int = DEFAULT_LIKELIHOOD_BATCH,
    method: str = "RK45",
    scaler: Scaler | None = None,
) -> Likelihood:
    """log p(x) of original-scale examples through the probability-flow ODE (EMA weights).

    Integer-valued images are dequantised uniformly first (u ~ U[0, 1) in original units, so the
    figure bounds the discrete data's -log2 P from above). The model-space log-density becomes one
    in original units by the change of variables: log p(x) = log p_model(y) - D log(scale).
    ``scaler`` maps the examples' units to model space (default: the run's scaler). Example i
    (from 0) has the seed ``seed + i``: its dequantisation noise and Hutchinson probe are draws of
    that seed on their own streams, whatever the batch it is solved in.
    """
    sde = run_sde(run)
    n_dims = int(np.prod(x_original.shape[1:]))
    divergence = choose_divergence(divergence, n_dims)
    if probe not in PROBES:
        raise RunError(f"unknown probe '{probe}'; choose one of {', '.join(PROBES)}.")
    if method not in LIKELIHOOD_METHODS:
        raise RunError(f"unknown ODE solver '{method}'; choose {' or '.join(LIKELIHOOD_METHODS)}.")
    if batch_size <= 0 or tol <= 0:
        raise RunError("the batch size and the tolerance must be positive.")
    scaler = run.scaler if scaler is None else scaler
    rounded = np.round(x_original)
    dequantized = kind == "images" and bool(np.all(np.abs(x_original - rounded) <= INTEGER_ATOL))
    score_fn = run.model.score_fn(use_ema=True)
    log_p, nfe = [], 0
    start = time.perf_counter()
    for first in range(0, len(x_original), batch_size):
        chunk = x_original[first : first + batch_size]
        seeds = seed + np.arange(first, first + len(chunk))
        if dequantized:
            chunk = keras.ops.convert_to_numpy(
                dequantize(rounded[first : first + batch_size], seeds, n_bins=ORIGINAL_UNITS)
            )
        y = scaler.forward(chunk)
        try:
            log_p_model, _, chunk_nfe = ode_likelihood(
                score_fn,
                sde,
                y,
                seed=seeds,
                divergence=divergence,
                probe=probe,
                rtol=tol,
                atol=tol,
                method=method,
            )
        except RuntimeError as error:
            raise RunError(f"the likelihood solve failed ({one_line(error)}).") from error
        log_p.append(log_p_model - n_dims * math.log(abs(scaler.scale)))
        nfe += chunk_nfe
    return Likelihood(
        log_p=np.concatenate(log_p),
        n_dims=n_dims,
        divergence=divergence,
        probe=probe if divergence == DIVERGENCES[1] else None,
        dequantized=dequantized,
        offset_bits=math.log2(abs(scaler.scale)),
        nfe=nfe,
        seconds=time.perf_counter() - start,
    )


def save_log_likelihoods(path: str | os.PathLike[str], result: Likelihood) -> Path:
    """Write PATH.npz with per-example log_p (nats) and bits_per_dim."""
    stem = output_stem(path)
    try:
        return save_npz_atomic(
            stem.with_name(stem.name + ".npz"),
            log_p=result.log_p,
            bits_per_dim=result.bits_per_dim,
        )
    except OSError as error:
        raise RunError(f"cannot write to {stem.parent} ({one_line(error)}).") from error
