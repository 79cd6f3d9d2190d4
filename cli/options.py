"""Options shared by the commands, each defined once, and the checks Click does not make.

Every `click.Choice` offers a tuple of `scoregen_keras.choices` (keras-free), so an option lists
exactly the names the library accepts (tests/test_choices.py checks every option). Defaults that
the library sets and --help must show before keras is imported are restated here;
tests/cli/test_sample_cli.py checks them against the library.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

import click
import numpy as np

from cli import environment
from scoregen_keras import choices

F = TypeVar("F", bound=Callable[..., Any])
Decorator = Callable[[F], F]

DEFAULT_SNR = 0.16  # score SDE paper, VE on CIFAR-10 (scoregen_keras.runs.SNR_DEFAULT)
NCSN_STEPS_EACH = 100  # annealed Langevin's default steps per noise level (NCSN paper)
NCSN_STEP_LR = 2e-5  # annealed Langevin's default step size (NCSN paper)
DEFAULT_SAMPLE_BATCH = 1_000
"""As many as the default --n: a default run draws in one batch, as draw_samples does."""


def run_setting(default: object) -> str:
    """--help's default of a sampler setting a run may fix (an imported model: the original's)."""
    return f"the run's, else {default}"


def compose(*decorators: Decorator) -> Decorator:
    """One decorator applying `decorators` in the order written above a function."""

    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def choice_option(
    *flags: str, names: tuple[str, ...], default: str | None, help: str, **settings: Any
) -> Decorator:
    """An option whose values are `names`: a tuple of scoregen_keras.choices or, under `scoregen
    reference`, the names of a registry of `reference`; its default shows in --help."""
    settings.setdefault("show_default", default is not None)
    return click.option(*flags, type=click.Choice(names), default=default, help=help, **settings)


def count_option(flag: str, default: int | None, help: str, **settings: Any) -> Decorator:
    """An integer option such as --n or --steps (checked by `require_positive`)."""
    settings.setdefault("show_default", default is not None)
    return click.option(flag, type=int, default=default, help=help, **settings)


def seed_option(help: str, default: int | None = 0, **settings: Any) -> Decorator:
    """--seed, a non-negative integer (0 by default)."""
    settings.setdefault("show_default", True if default is not None else "0")
    return click.option("--seed", type=SEED_INTEGER, default=default, help=help, **settings)


def out_option(
    help: str, show_default: str | None = None, folder: bool = False, **path: Any
) -> Decorator:
    """--out: where the command writes (a file stem, or a folder); `path`: click.Path's settings."""
    kind = (
        click.Path(file_okay=False, **path) if folder else click.Path(**{"dir_okay": False, **path})
    )
    return click.option("--out", type=kind, default=None, show_default=show_default, help=help)


def input_file_option(flag: str, help: str, **settings: Any) -> Decorator:
    """An input file, passed to the command as `<name>_path` (--image -> image_path)."""
    name = flag.removeprefix("--").replace("-", "_") + "_path"
    path = click.Path(dir_okay=False)
    return click.option(flag, name, type=path, default=None, help=help, **settings)


run_dir_argument = click.argument("run_dir", type=click.Path())
DEFAULT_FID_BATCH = 50  # pytorch-fid's --batch-size (scoregen_keras.runs.DEFAULT_BATCH_SIZE)
fid_weights_option = input_file_option(
    "--inception-weights",
    "The FID Inception weights: pytorch-fid's pt_inception-2015-12-05-6726825d.pth, or the .npz "
    "`scoregen fid convert-weights` writes from it (no PyTorch needed).",
    show_default="$SCOREGEN_FID_WEIGHTS, else the cache folder, else downloaded there",
)
backend_option = choice_option(
    "--backend",
    names=choices.BACKENDS,
    default=environment.default_backend,
    show_default="$KERAS_BACKEND, else tensorflow",
    help="Keras backend.",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, default=False, help="Print one JSON object."
)
progress_option = click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Show a progress bar."
)


def run_options(progress: bool = True) -> Decorator:
    """The options that close every run command: --backend, --progress, --json."""
    return compose(backend_option, *([progress_option] if progress else []), json_option)


ode_solver_option = choice_option(
    "--ode-solver",
    names=choices.ODE_SOLVERS,
    default=choices.ODE_SOLVERS[0],
    help="Adaptive ODE solver: RK45 by SciPy on the host, one round trip per evaluation, or "
    "dopri5, the same RK45 compiled on the backend (same steps).",
)
sampler_option = choice_option(
    "--sampler",
    names=choices.SAMPLERS,
    default=None,
    show_default="pc; ald for a run of NCSN noise levels",
    help="pc (predictor-corrector), ald (annealed Langevin, NCSN runs), ode, heun, dpm-solver.",
)


def sampler_steps_option(adaptive_ode: str) -> Decorator:
    """--steps of `--sampler`; `adaptive_ode` names what ode runs without it."""
    return count_option(
        "--steps",
        None,
        "Sampler steps (ald: steps per noise level, else the run's ald_steps_each; ode: fixed "
        f"Heun steps, else {adaptive_ode}).",
        show_default="sampler default",
    )


sample_batch_option = count_option(
    "--batch-size",
    DEFAULT_SAMPLE_BATCH,
    "Samples drawn at once; lower it when memory runs out (it changes the speed only, except "
    "for --noise backend, the adaptive ODE solvers to their tolerance, and point runs' Langevin "
    "corrector).",
)
step_lr_option = click.option(
    "--step-lr",
    type=float,
    default=None,
    show_default=f"the run's ald_step_lr, else {NCSN_STEP_LR:g}",
    help="Annealed Langevin step size eps, alpha_i = eps sigma_i^2 / sigma_L^2 (runs of NCSN "
    "noise levels only).",
)
# inpaint / colorize: predictor-corrector with replacement, annealed Langevin for NCSN levels
replacement_options = compose(
    count_option(
        "--steps",
        None,
        "Predictor-corrector steps (a run of NCSN noise levels: Langevin steps per level).",
        show_default=f"the SDE's N; NCSN levels: the run's ald_steps_each, else {NCSN_STEPS_EACH}",
    ),
    click.option(
        "--snr",
        type=float,
        default=None,
        show_default=run_setting(DEFAULT_SNR),
        help="PC corrector (not used by a run of NCSN noise levels).",
    ),
    step_lr_option,
)


# --------------------------------------------------------------------------- seed lists
SEED_LIMIT = 2**64
"""Seeds are integers in [0, 2^64): the counter generator's key (`sampling.counter_noise`)."""


class SeedInteger(click.ParamType):
    """One seed: an integer in [0, 2^64) (shown as INTEGER in --help, without the long range)."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """The seed as an int; a usage error for anything else."""
        try:
            seed = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not an integer.", param, ctx)
        if not 0 <= seed < SEED_LIMIT:
            self.fail(f"{seed} is not a seed: seeds are integers from 0 to 2^64 - 1.", param, ctx)
        return seed


SEED_INTEGER = SeedInteger()
SEED_LIST_EXAMPLE = "0-49999 or 0,5,7-9"
MAX_SEEDS = 100_000_000
"""The most seeds one list may name (800 MB of uint64): a typing slip would exhaust memory."""
_SEED_ITEM = re.compile(r"^(-?\d+)(?:-(-?\d+))?$")


class SeedList(click.ParamType):
    """A list of seeds: comma-separated integers and inclusive ranges A-B, in order, each seed
    once (``0-49999``, ``0,5,7-9``); as a uint64 NumPy array.

    Pure parsing, here rather than in the library: Click converts options before the command
    chooses the Keras backend, and the library's packages import Keras; the library takes the
    resulting array (any Python caller builds its own, e.g. ``np.arange``)."""

    name = "seeds"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The seeds of ``value``; one sentence and a usage error for anything else."""
        if isinstance(value, np.ndarray):
            return value
        text = str(value).replace(" ", "")
        if not text:
            self.fail(f"is empty; give seeds such as {SEED_LIST_EXAMPLE}.", param, ctx)
        parts = [self._range(item, text, param, ctx) for item in text.split(",")]
        if sum(len(part) for part in parts) > MAX_SEEDS:
            self.fail(f"names more than {MAX_SEEDS:,} seeds; split it over processes.", param, ctx)
        seeds = np.concatenate(parts)
        unique, counts = np.unique(seeds, return_counts=True)
        if len(unique) < len(seeds):
            self.fail(
                f"names seed {unique[counts > 1][0]} more than once ({text!r}); each seed gives "
                "one sample.",
                param,
                ctx,
            )
        return seeds

    def _range(
        self, item: str, text: str, param: click.Parameter | None, ctx: click.Context | None
    ) -> np.ndarray:
        """The seeds of one item, A or A-B."""
        match = _SEED_ITEM.match(item)
        if match is None:
            self.fail(f"{text!r} is not a list of seeds such as {SEED_LIST_EXAMPLE}.", param, ctx)
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if min(first, last) < 0:
            self.fail(f"seeds must not be negative, got {min(first, last)}.", param, ctx)
        if max(first, last) >= SEED_LIMIT:
            self.fail(f"seeds must be below 2**64, got {max(first, last)}.", param, ctx)
        if last < first:
            self.fail(f"the range {item} runs backwards; write {last}-{first}.", param, ctx)
        if last - first >= MAX_SEEDS:
            self.fail(f"names more than {MAX_SEEDS:,} seeds; split it over processes.", param, ctx)
        return np.arange(first, last + 1, dtype=np.uint64)


class Shard(click.ParamType):
    """I/K: the I-th (from 0) of K contiguous parts of a seed list, as (I, K)."""

    name = "I/K"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """(I, K) with 0 <= I < K; one sentence and a usage error for anything else."""
        if isinstance(value, tuple):
            return value
        match = re.fullmatch(r"(\d+)/(\d+)", str(value).strip())
        if match is None:
            self.fail(f"must be I/K with 0 <= I < K, such as 0/4; got {value!r}.", param, ctx)
        index, count = int(match[1]), int(match[2])
        if count == 0 or index >= count:
            self.fail(f"{value}: the part I must lie in 0..K-1, and K be at least 1.", param, ctx)
        return index, count


def shard_part(seeds: np.ndarray, index: int, count: int) -> tuple[np.ndarray, int]:
    """(the seeds of part ``index`` of ``count``, the position of its first seed in the list).

    Contiguous parts whose sizes differ by at most one, the larger first (``numpy.array_split``),
    so the K parts of one list are disjoint and together the list, whoever computes them.
    """
    base, larger = divmod(len(seeds), count)
    first = index * base + min(index, larger)
    return seeds[first : first + base + (index < larger)], first


seeds_option = click.option(
    "--seeds",
    type=SeedList(),
    default=None,
    help=f"The samples' seeds, one sample each ({SEED_LIST_EXAMPLE}); a sample depends on its "
    "seed alone, not on the backend, --batch-size or the seeds beside it. Instead of --seed/--n.",
)
shard_option = click.option(
    "--shard",
    type=Shard(),
    default=None,
    help="Draw only part I (from 0) of K contiguous parts of the seed list: K processes or hosts "
    "with --shard 0/K .. K-1/K write the files one process writes, with no coordination.",
)
noise_option = choice_option(
    "--noise",
    names=choices.NOISE_SOURCES,
    default=choices.COUNTER_NOISE,
    help="counter: per-seed counter-based normals, the same sample on every backend and batch "
    "size; backend: keras.random from the first seed, one stream through the batches (the "
    "samples then change with the backend and --batch-size).",
)


def resolve_seeds(
    seed: int | None,
    n: int | None,
    seeds: np.ndarray | None,
    shard: tuple[int, int] | None,
    default_n: int,
) -> tuple[np.ndarray, int]:
    """(this process's seeds, the position of the first in the whole list): --seeds, or the
    shorthand --seed S --n N for S..S+N-1, cut to --shard's part; usage errors for a conflict,
    an --n below 1 or an empty part."""
    if seeds is not None and (seed is not None or n is not None):
        raise click.UsageError("give the seeds by --seeds or by --seed and --n, not both.")
    if seeds is None:
        n = default_n if n is None else n
        require_positive(n=n)
        first_seed = 0 if seed is None else seed
        if first_seed + n > SEED_LIMIT:
            raise click.BadParameter("the seeds must stay below 2**64.", param_hint="'--seed'")
        seeds = np.arange(first_seed, first_seed + n, dtype=np.uint64)
    if shard is None:
        return seeds, 0
    index, count = shard
    if count > len(seeds):
        raise click.BadParameter(
            f"{index}/{count} cuts {len(seeds)} seeds into {count} parts, some of them empty; "
            f"use at most {len(seeds)} parts.",
            param_hint="'--shard'",
        )
    return shard_part(seeds, index, count)


def describe_seeds(seeds: np.ndarray) -> str:
    """'S' for one seed, 'A-B' for a run of consecutive seeds, else 'A..B (N seeds)'."""
    first, last = int(seeds[0]), int(seeds[-1])
    if len(seeds) == 1:
        return str(first)
    if bool(np.all(np.diff(seeds) == 1)):
        return f"{first}-{last}"
    return f"{first}..{last} ({len(seeds)} seeds)"


def require_positive(**options: float | None) -> None:
    """Reject any given option value that is not positive (None means "not given")."""
    for name, value in options.items():
        if value is not None and value <= 0:
            flag = "--" + name.replace("_", "-")
            raise click.BadParameter(f"must be positive, got {value}.", param_hint=f"'{flag}'")


def require_at_least(flag: str, value: int, low: int) -> None:
    """Reject an option value below `low`."""
    if value < low:
        raise click.BadParameter(f"must be at least {low}, got {value}.", param_hint=f"'{flag}'")
