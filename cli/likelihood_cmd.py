"""`scoregen likelihood RUN_DIR`: bits/dim of data under a trained run (thin over runs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from cli.environment import use_backend
from cli.options import (
    choice_option,
    count_option,
    ode_solver_option,
    out_option,
    require_positive,
    run_dir_argument,
    run_options,
    seed_option,
)
from cli.output import library_errors, report, run_summary
from scoregen_keras import choices

EXACT_MAX_DIMS = 16  # scoregen_keras.runs.EXACT_MAX_DIMS (not imported: keras comes later)
DEFAULT_N = 1_000
DEFAULT_TOL = 1e-5  # scoregen_keras.runs.DEFAULT_TOLERANCE
DEFAULT_BATCH = 500  # scoregen_keras.runs.DEFAULT_LIKELIHOOD_BATCH


@click.command("likelihood")
@run_dir_argument
@click.option(
    "--data",
    "data_spec",
    type=str,
    default=None,
    show_default="the run's data set",
    help="A built-in data set, npz:PATH, npy:PATH or a folder of images (as for train).",
)
@count_option("--n", DEFAULT_N, "Examples to score.")
@choice_option(
    "--divergence",
    names=choices.RUN_DIVERGENCES,
    default=choices.AUTO,
    help=f"exact (one pass per dimension, data of at most {EXACT_MAX_DIMS} dimensions), "
    f"hutchinson (one probe per example), or auto (exact up to {EXACT_MAX_DIMS} dimensions).",
)
@choice_option(
    "--probe",
    names=choices.PROBES,
    default=choices.PROBES[0],
    help="Hutchinson probe distribution.",
)
@seed_option("Seed of the subsample, the dequantisation noise and the probes.")
@click.option(
    "--tol", type=float, default=DEFAULT_TOL, show_default=True, help="rtol = atol of RK45."
)
@ode_solver_option
@count_option("--batch-size", DEFAULT_BATCH, "Examples per ODE solve.")
@out_option("Also write PATH.npz with per-example log_p (nats) and bits_per_dim.")
@run_options(progress=False)
def likelihood(
    run_dir: str,
    data_spec: str | None,
    n: int,
    divergence: str,
    probe: str,
    seed: int,
    tol: float,
    ode_solver: str,
    batch_size: int,
    out: str | None,
    backend: str,
    as_json: bool,
) -> None:
    """Bits/dim (and nats) of data under a run's model, by the probability-flow ODE (EMA weights).

    Points are mapped into model space with the run's stored scaler, images by their own pixel
    depth (their white onto the model's white); log p is reported in the data's original units.
    Integer-valued images (8-bit, or digits' 0..16) are first dequantised uniformly (x + u,
    u ~ U[0, 1) in their own levels), which bounds the discrete data's bits/dim from above.
    Bits/dim = those of the model-space density plus offset_bits = log2(scale): 7.99 for 8-bit
    data scaled to [0, 1] (log2 255), 6.99 centred (log2 127.5), 4 for digits (log2 16).

    \b
    Example:
      scoregen likelihood runs/digits --data digits --n 500 --divergence hutchinson
    """
    require_positive(n=n, batch_size=batch_size, tol=tol)
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        config = runs.run_config(run_dir)
        runs.require_sde(config, "the likelihood")
        data = runs.evaluation_data(config, data_spec, n, seed)
        runs.choose_divergence(divergence, int(data.x[0].size))
        run = runs.load_run(run_dir)
        result = runs.run_likelihood(
            run,
            data.x,
            data.kind,
            divergence=divergence,
            probe=probe,
            seed=seed,
            tol=tol,
            batch_size=batch_size,
            method=ode_solver,
            scaler=data.scaler,
        )
        npz = None if out is None else runs.save_log_likelihoods(out, result)
    summary = {
        **run_summary(run, backend),
        "data": data_spec or config["dataset"],
        **result.summary(),
        "npz": None if npz is None else str(npz),
    }
    report(summary, as_json, _lines(summary))


def _lines(summary: dict[str, Any]) -> Iterator[str]:
    """What `scoregen likelihood` prints: bits/dim with its standard error, nats, the files."""
    method = summary["divergence"] + (f"/{summary['probe']}" if summary["probe"] else "")
    spread = "" if summary["bits_per_dim_sem"] is None else f" ± {summary['bits_per_dim_sem']:.4f}"
    yield (
        f"bits/dim: {summary['bits_per_dim']:.4f}{spread} (standard error; n {summary['n']}, "
        f"D {summary['dims']}, {method}, NFE {summary['nfe']})"
    )
    yield f"nats:     {summary['nll_nats']:.4f} per example (-log p)"
    if summary["dequantized"]:
        yield (
            f"dequantised integer pixels; offset log2(scale) = {summary['offset_bits']:.4f} "
            "bits/dim included"
        )
    if summary["npz"] is not None:
        yield f"per example: {summary['npz']}  (keys 'log_p', 'bits_per_dim')"
