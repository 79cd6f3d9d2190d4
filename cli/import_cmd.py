"""`scoregen import score-sde|diffusers`: a published score model as a run folder (thin over
scoregen_keras.runs.importing)."""

from __future__ import annotations

from typing import Any

import click

from cli.environment import use_backend
from cli.options import choice_option, out_option, run_options
from cli.output import library_errors, report
from scoregen_keras import choices


@click.group("import")
def import_group() -> None:
    """Import a published score model (score_sde_pytorch or diffusers) as a run folder.

    \b
    Example:
      scoregen import score-sde checkpoint_26.pth --config ve/cifar10_ncsnpp_continuous \\
          --out runs/cifar10-ncsnpp
      scoregen import diffusers ncsnpp-celebahq-256 --out runs/celebahq
      scoregen sample runs/celebahq --n 4 --batch-size 1
    """


@import_group.command("score-sde")
@click.argument("checkpoint", type=click.Path(dir_okay=False), required=False)
@click.option(
    "--config",
    "config",
    default=None,
    help="A built-in configuration (--list-configs) or a JSON file of the original's "
    "config.to_dict() (data, model, training, sampling).",
)
@out_option("The run folder to write; it must not exist yet.", folder=True)
@choice_option(
    "--weights",
    names=choices.IMPORT_WEIGHTS,
    default=choices.DEFAULT_IMPORT_WEIGHTS,
    help="ema: the averaged weights the paper samples with; model: the raw training weights.",
)
@click.option(
    "--list-configs", is_flag=True, default=False, help="Print the built-in configurations."
)
@run_options(progress=False)
def score_sde(
    checkpoint: str | None,
    config: str | None,
    out: str | None,
    weights: str,
    list_configs: bool,
    backend: str,
    as_json: bool,
) -> None:
    """Import a score_sde_pytorch checkpoint_N.pth with its configuration.

    \b
    Example:
      scoregen import score-sde --list-configs
      scoregen import score-sde checkpoint_26.pth --config ve/cifar10_ncsnpp_continuous \\
          --out runs/cifar10-ncsnpp
    """
    if list_configs:
        use_backend(backend)
        from scoregen_keras.networks.score_sde_config import list_configs as builtin

        names = builtin()
        report({"configs": names}, as_json, names)
        return
    for value, what in ((checkpoint, "CHECKPOINT"), (config, "--config"), (out, "--out")):
        if value is None:
            raise click.UsageError(f"give {what} (or --list-configs).")
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        result = runs.import_score_sde(checkpoint, config, out, weights=weights)
    report(_summary(result, backend), as_json, _lines(result))


@import_group.command("diffusers")
@click.argument("model_dir")
@out_option("The run folder to write; it must not exist yet.", folder=True)
@run_options(progress=False)
def diffusers(model_dir: str, out: str | None, backend: str, as_json: bool) -> None:
    """Import a diffusers ScoreSdeVePipeline folder, its unet/ folder, or a hub id (needs
    huggingface_hub and a network).

    \b
    Example:
      scoregen import diffusers ncsnpp-celebahq-256 --out runs/celebahq
      scoregen import diffusers google/ncsnpp-celebahq-256 --out runs/celebahq
    """
    if out is None:
        raise click.UsageError("give --out, the run folder to write.")
    use_backend(backend)
    from scoregen_keras import runs

    with library_errors():
        result = runs.import_diffusers(model_dir, out)
    report(_summary(result, backend), as_json, _lines(result))


def _summary(result: Any, backend: str) -> dict[str, Any]:
    """What an import reports: the run folder, where its weights came from, its conventions."""
    source = {key: value for key, value in result.source.items() if key != "spec"}
    return {
        "run_dir": str(result.run_dir),
        **source,
        "parameters": result.parameters,
        "conventions": result.conventions,
        "notes": list(result.notes),
        "backend": backend,
    }


def _lines(result: Any) -> list[str]:
    """What an import prints."""
    source = result.source
    return [
        f"imported {source['file']} ({source['format']}, {source['weights']} weights, "
        f"{result.parameters:,} parameters) into {result.run_dir}",
        f"sha256:      {source['sha256']}",
        f"conventions: {result.conventions}",
        *(f"note:        {note}" for note in result.notes),
        f"sample it:   scoregen sample {result.run_dir} --n 4",
    ]
