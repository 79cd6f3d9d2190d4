"""`scoregen fid`: the standard FID in pytorch-fid's shape (thin over scoregen_keras.runs.fid).

    scoregen fid PATH1 PATH2                 the FID between two image sets or statistics files
    scoregen fid --save-stats PATH OUT.npz   the statistics of an image set (pytorch-fid's file)
    scoregen fid convert-weights IN.pth OUT.npz

The first two forms are `scoregen fid compute ...`: a first argument that names no subcommand
goes to `compute`, as pytorch-fid's command line has no subcommand.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click

from cli.environment import use_backend
from cli.options import (
    DEFAULT_FID_BATCH,
    backend_option,
    count_option,
    fid_weights_option,
    json_option,
    require_positive,
    run_options,
)
from cli.output import library_errors, report

DEFAULT_COMMAND = "compute"


class DefaultCommandGroup(click.Group):
    """A group whose arguments go to DEFAULT_COMMAND unless the first one names a subcommand
    (or asks for help)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Put DEFAULT_COMMAND in front of arguments that name no subcommand."""
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


@click.group("fid", cls=DefaultCommandGroup)
def fid() -> None:
    """The standard FID: pytorch-fid's Inception network, statistics and formula.

    \b
    scoregen fid PATH1 PATH2                  (short for scoregen fid compute PATH1 PATH2)
    scoregen fid --save-stats PATH OUT.npz
    scoregen fid convert-weights IN.pth OUT.npz

    Each PATH is a folder of images (bmp, jpg, jpeg, pgm, png, ppm, tif, tiff, webp; lower case,
    not in subfolders), an .npz of uint8 images (n, H, W, 3), or a statistics .npz (mu, sigma).
    `scoregen fid compute --help` lists the options.
    """


@fid.command(DEFAULT_COMMAND)
@click.argument("paths", nargs=2, type=click.Path(), metavar="PATH1 PATH2")
@click.option(
    "--save-stats",
    is_flag=True,
    default=False,
    help="Write the statistics of the images at the first path to the second (a new .npz), "
    "as pytorch-fid's --save-stats.",
)
@fid_weights_option
@count_option("--batch-size", DEFAULT_FID_BATCH, "Images per pass through the network.")
@run_options()
def compute(
    paths: tuple[str, str],
    save_stats: bool,
    inception_weights_path: str | None,
    batch_size: int,
    backend: str,
    progress: bool,
    as_json: bool,
) -> None:
    """The FID between PATH1 and PATH2, or with --save-stats the statistics of PATH1 in PATH2.

    \b
    Example:
      scoregen fid samples/ fid_stats_cifar10_train.npz
      scoregen fid --save-stats cifar10_train/ cifar10_train_stats.npz
    """
    require_positive(batch_size=batch_size)
    use_backend(backend)
    from scoregen_keras import runs

    settings: dict[str, Any] = {
        "weights": inception_weights_path,
        "batch_size": batch_size,
        "progress": progress and not as_json,
    }
    with library_errors():
        if save_stats:
            statistics = runs.save_statistics_of_path(*paths, **settings)
            summary = {"statistics": paths[1], "count": statistics.count}
            report(summary, as_json, [f"statistics of {statistics.count} images: {paths[1]}"])
            return
        result = runs.fid_of_paths(*paths, **settings)
    report(result.summary(), as_json, _lines(result, paths))


def _lines(result: Any, paths: tuple[str, str]) -> Iterator[str]:
    """What `scoregen fid PATH1 PATH2` prints: the FID, then what each path held."""
    yield f"FID: {result.fid}"
    for path, statistics in zip(paths, (result.first, result.second), strict=True):
        held = "statistics file" if statistics.count is None else f"{statistics.count} images"
        yield f"  {path}: {held}"


@fid.command("convert-weights")
@click.argument("source", type=click.Path(dir_okay=False))
@click.argument("target", type=click.Path(dir_okay=False))
@backend_option
@json_option
def convert_weights(source: str, target: str, backend: str, as_json: bool) -> None:
    """Write the FID Inception weights SOURCE (.pth) as TARGET (.npz), for machines without torch.

    The keys and shapes are checked against the network first; TARGET must not exist.

    \b
    Example:
      scoregen fid convert-weights pt_inception-2015-12-05-6726825d.pth fid_inception_weights.npz
    """
    use_backend(backend)
    from scoregen_keras.networks import convert_fid_weights

    with library_errors():
        written = convert_fid_weights(source, target)
    report({"weights": str(written)}, as_json, [f"FID Inception weights: {written}"])
