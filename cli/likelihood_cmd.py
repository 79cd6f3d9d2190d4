"""`scoregen likelihood RUN_DIR`: bits/dim of data under a trained run (thin over run_tasks)."""

from __future__ import annotations

import importlib
import json

import click

from cli.options import (
    backend_option,
    json_option,
    ode_solver_option,
    require_positive,
    run_summary,
)
from cli.train_cmd import use_backend

DIVERGENCES = ("auto", "exact", "hutchinson")
PROBES = ("rademacher", "gaussian")
EXACT_MAX_DIMS = 16  # scoregen_keras.run_tasks.EXACT_MAX_DIMS (not imported: keras comes later)
DEFAULT_N = 1_000
DEFAULT_TOL = 1e-5
DEFAULT_BATCH = 500


@click.command("likelihood")
@click.argument("run_dir", type=click.Path())
@click.option(
    "--data",
    "data_spec",
    type=str,
    default=None,
    show_default="the run's data set",
    help="A built-in data set, npz:PATH, npy:PATH or a folder of images (as for train).",
)
@click.option("--n", type=int, default=DEFAULT_N, show_default=True, help="Examples to score.")
@click.option(
    "--divergence",
    type=click.Choice(DIVERGENCES),
    default="auto",
    show_default=True,
    help=f"exact (one pass per dimension, data of at most {EXACT_MAX_DIMS} dimensions), "
    f"hutchinson (one probe per example), or auto (exact up to {EXACT_MAX_DIMS} dimensions).",
)
@click.option(
    "--probe",
    type=click.Choice(PROBES),
    default="rademacher",
    show_default=True,
    help="Hutchinson probe distribution.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the subsample, the dequantisation noise and the probes.",
)
@click.option(
    "--tol", type=float, default=DEFAULT_TOL, show_default=True, help="rtol = atol of RK45."
)
@ode_solver_option
@click.option(
    "--batch-size",
    type=int,
    default=DEFAULT_BATCH,
    show_default=True,
    help="Examples per ODE solve.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write PATH.npz with per-example log_p (nats) and bits_per_dim.",
)
@backend_option
@json_option
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
    runs = importlib.import_module("scoregen_keras.runs")
    tasks = importlib.import_module("scoregen_keras.runs")
    try:
        config = tasks.run_config(run_dir)
        tasks.require_sde(config, "the likelihood")
        data = tasks.evaluation_data(config, data_spec, n, seed)
        tasks.choose_divergence(divergence, int(data.x[0].size))
        run = runs.load_run(run_dir)
        result = tasks.run_likelihood(
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
        npz = None if out is None else tasks.save_log_likelihoods(out, result)
    except runs.RunError as error:
        raise click.ClickException(str(error)) from error
    summary = {
        **run_summary(run, backend),
        "data": data_spec or config["dataset"],
        **result.summary(),
        "npz": None if npz is None else str(npz),
    }
    if as_json:
        click.echo(json.dumps(summary))
        return
    method = summary["divergence"] + (f"/{summary['probe']}" if summary["probe"] else "")
    spread = "" if summary["bits_per_dim_sem"] is None else f" ± {summary['bits_per_dim_sem']:.4f}"
    click.echo(
        f"bits/dim: {summary['bits_per_dim']:.4f}{spread} (standard error; n {summary['n']}, "
        f"D {summary['dims']}, {method}, NFE {summary['nfe']})"
    )
    click.echo(f"nats:     {summary['nll_nats']:.4f} per example (-log p)")
    if summary["dequantized"]:
        click.echo(
            f"dequantised integer pixels; offset log2(scale) = {summary['offset_bits']:.4f} "
            "bits/dim included"
        )
    if npz is not None:
        click.echo(f"per example: {npz}  (keys 'log_p', 'bits_per_dim')")
