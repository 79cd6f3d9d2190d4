"""Issue 25 item 6: why default PC samples of 2-D mixtures come out wider than the data.

Every sampler here follows the exact score of a Gaussian mixture (``reference`` oracle), so what
is measured is the sampler's own error, not a network's. The predictor-corrector chain is the
reference's (``reference.samplers.reverse_diffusion`` after a corrector step, t = linspace(T, eps,
N), the noise-free mean returned): ``pc_run`` below reruns it with one factor changed at a time,
and checks first that with the defaults it gives ``reference.samplers.pc_sample``'s samples.

Factors, each against the default (reverse diffusion + Langevin corrector, snr 0.16, step from
the batch-averaged norm ratio, N = 1000, final denoising, VE sigma_max = 20 as the `toy` preset):
the corrector (none, ALD), its snr, the norm ratio's averaging (per example, groups of 20 and
250, the batch), the final denoising, N, the SDE (VE sigma_max 10 / 50, VP), two corrector steps;
and for scale, the probability-flow ODE (RK45) and independent true samples (the Monte-Carlo floor).

Figures per row (``reference.checks`` plus one): the mean exact log-density of the samples minus
that of 200 000 true points, with its standard error; for rows whose normals are drawn in the same
layout as the default (same seed, same N and draws a step), the paired difference to the default
and its standard error; the spread, mean squared Mahalanobis distance to the most probable
component divided by the same figure for true points (1 = as wide as the data); occupancy total
variation; sliced Wasserstein-1 over its noise floor. Prints the table and writes
benchmarks/results/pc_defaults.json (--quick: few samples and steps, to results/quick/).

With ``--run RUN_DIR`` (a run trained on one of these mixtures, e.g. the `toy` preset's), the same
figures for the library's own sampler on that model (``runs.draw_samples``): the default PC, snr
0.05, the ALD corrector, no corrector, and the ODE.

    python benchmarks/pc_defaults.py               # n = 20 000 a row, ~1 h on 2 shared cores
    python benchmarks/pc_defaults.py --factors snr denoise    # rerun some rows, keep the others
    python benchmarks/pc_defaults.py --factors --run runs/toy # only the trained-run table
    python benchmarks/pc_defaults.py --quick       # smoke run, a minute
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # threads only add overhead at these sizes

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.layout import default_output  # noqa: E402
from benchmarks.machine_info import machine  # noqa: E402
from reference import checks, samplers  # noqa: E402
from reference.datasets import mixture5, separated4  # noqa: E402
from reference.distributions import GaussianMixture  # noqa: E402
from reference.sde import VESDE, VPSDE  # noqa: E402

JSON_NAME = "pc_defaults.json"
N_SAMPLES, QUICK_SAMPLES = 20_000, 1_000  # multiples of the group sizes below (20, 250)
QUICK_STEP_FRACTION = 0.1  # --quick runs every chain with a tenth of its steps
SELF_CHECK_SAMPLES, SELF_CHECK_STEPS = 200, 50
TOY_SIGMA_MAX = 20.0  # the `toy` preset's VE sigma_max
RING_RADIUS, RING_STD, RING_COMPONENTS = 2.0, 0.1, 8
ANISO_STD_RANGE, ANISO_OFFSET = (0.1, 0.5), 1.5
DIMENSIONS = (2, 8, 32, 128)
MIN_SAMPLES = 250  # a row in d dimensions draws max(MIN_SAMPLES, n 2 / d) samples
MIN_TRUE_POINTS = 20_000  # and compares them with max(MIN_TRUE_POINTS, 200 000 x 2 / d) true ones


def ring8() -> GaussianMixture:
    """Eight equal isotropic Gaussians (std 0.1) on a circle of radius 2: narrow modes."""
    angles = 2.0 * np.pi * np.arange(RING_COMPONENTS) / RING_COMPONENTS
    means = RING_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    covs = np.stack([RING_STD**2 * np.eye(2)] * RING_COMPONENTS)
    return GaussianMixture(np.full(RING_COMPONENTS, 1.0 / RING_COMPONENTS), means, covs)


def anisotropic(dim: int) -> GaussianMixture:
    """Two equal Gaussians at -1.5 e_1 and +1.5 e_1 in ``dim`` dimensions, diagonal covariance
    with standard deviations geometric from 0.1 to 0.5 (mixture5's range) over the axes."""
    stds = np.geomspace(ANISO_STD_RANGE[0], ANISO_STD_RANGE[1], dim)
    means = np.zeros((2, dim))
    means[:, 0] = (-ANISO_OFFSET, ANISO_OFFSET)
    return GaussianMixture(np.full(2, 0.5), means, np.stack([np.diag(stds**2)] * 2))


MIXTURES: dict[str, Callable[[], GaussianMixture]] = {
    "mixture5": mixture5,
    "separated4": separated4,
    "ring8": ring8,
    **{f"aniso{dim}": functools.partial(anisotropic, dim) for dim in DIMENSIONS},
}

DEFAULT = {
    "mixture": "mixture5",
    "sampler": "pc",
    "sde": "ve",
    "sigma_max": TOY_SIGMA_MAX,
    "corrector": "langevin",
    "snr": 0.16,
    "group": None,  # samples per norm average of the Langevin step rule (None: the batch)
    "n_steps": 1000,
    "corrector_steps": 1,
    "denoise": True,
}
DEFAULT_SETTING = "PC default"
# (factor, setting, changes to DEFAULT): one factor changed at a time
ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("floor", "true samples", {"sampler": "true"}),
    ("floor", "ODE RK45 (exact score)", {"sampler": "ode"}),
    ("default", DEFAULT_SETTING, {}),
    ("corrector", "none (reverse diffusion only)", {"corrector": "none"}),
    ("corrector", "ALD, snr 0.16 (step from sigma_t)", {"corrector": "ald"}),
    ("snr", "0.02", {"snr": 0.02}),
    ("snr", "0.05", {"snr": 0.05}),
    ("snr", "0.08", {"snr": 0.08}),
    ("snr", "0.11", {"snr": 0.11}),
    ("snr", "0.24", {"snr": 0.24}),
    ("norm ratio", "per example", {"group": 1}),
    ("norm ratio", "per example, snr 0.05", {"group": 1, "snr": 0.05}),
    ("norm ratio", "groups of 20", {"group": 20}),
    ("norm ratio", "groups of 250", {"group": 250}),
    ("denoise", "off (last step's noise kept)", {"denoise": False}),
    ("steps", "N = 250", {"n_steps": 250}),
    ("steps", "N = 500", {"n_steps": 500}),
    ("steps", "N = 2000", {"n_steps": 2000}),
    ("steps", "N = 2000, no corrector", {"n_steps": 2000, "corrector": "none"}),
    ("sde", "VE sigma_max 10", {"sigma_max": 10.0}),
    ("sde", "VE sigma_max 50 (VESDE default)", {"sigma_max": 50.0}),
    ("sde", "VP, langevin snr 0.16", {"sde": "vp"}),
    ("sde", "VP, no corrector", {"sde": "vp", "corrector": "none"}),
    ("corrector steps", "2 steps", {"corrector_steps": 2}),
    *(
        (f"mixture {name}", setting, {"mixture": name, **changes})
        for name in ("separated4", "ring8")
        for setting, changes in (
            (DEFAULT_SETTING, {}),
            ("no corrector", {"corrector": "none"}),
            ("snr 0.05", {"snr": 0.05}),
            ("ALD, snr 0.16", {"corrector": "ald"}),
            ("ODE RK45", {"sampler": "ode"}),
        )
    ),
    *(
        (f"dimension {dim}", setting, {"mixture": f"aniso{dim}", **changes})
        for dim in DIMENSIONS
        for setting, changes in (
            (DEFAULT_SETTING, {}),
            ("snr 0.05", {"snr": 0.05}),
            ("no corrector", {"corrector": "none"}),
            ("per-example norms", {"group": 1}),
            ("ALD, snr 0.16", {"corrector": "ald"}),
            ("ODE RK45", {"sampler": "ode"}),
        )
    ),
)
FACTORS = tuple(dict.fromkeys(factor for factor, _, _ in ROWS))
# a trained run (--run): the library's own sampler, with its default before (score_sde's Langevin
# corrector at snr 0.16, norms averaged over the batch) and after issue 25 (ALD for point runs)
LIBRARY_DEFAULT = "library default (PC, ALD corrector)"
LIBRARY_BEFORE = "before: PC, langevin snr 0.16"
TRAINED_ROWS: tuple[tuple[str, dict[str, Any]], ...] = (
    (LIBRARY_DEFAULT, {"sampler": "pc"}),
    (LIBRARY_BEFORE, {"sampler": "pc", "corrector": "langevin"}),
    ("PC, langevin snr 0.05", {"sampler": "pc", "corrector": "langevin", "snr": 0.05}),
    ("PC, no corrector", {"sampler": "pc", "corrector": "none"}),
    ("ODE RK45", {"sampler": "ode"}),
)


# --------------------------------------------------------------------------- the chain


def langevin_corrector(snr: float, group: int | None) -> Callable[..., tuple[np.ndarray, ...]]:
    """The Langevin corrector of ``reference.samplers`` with the norms of its step rule
    eps = 2 alpha (snr ||z|| / ||s||)^2 averaged over groups of ``group`` consecutive samples
    (None: the whole batch, as the reference and score_sde)."""

    def averaged(norms: np.ndarray) -> np.ndarray:
        size = norms.shape[0] if group is None else group
        return np.repeat(norms.reshape(-1, size).mean(axis=1), size)

    def corrector(score_fn, sde, x, t, rng, n_steps):
        alpha = sde.langevin_alpha(t)
        x_mean = x
        for _ in range(n_steps):
            grad = score_fn(x, t)
            z = rng.standard_normal(x.shape)
            noise_norm, grad_norm = (averaged(np.linalg.norm(v, axis=1)) for v in (z, grad))
            step = (2.0 * alpha * (snr * noise_norm / grad_norm) ** 2)[:, None]
            x_mean = x + step * grad
            x = x_mean + np.sqrt(2.0 * step) * z
        return x, x_mean

    return corrector


def corrector_fn(settings: dict[str, Any]) -> Callable[..., tuple[np.ndarray, ...]]:
    """f(score_fn, sde, x, t, rng, n_steps) for the row's corrector."""
    if settings["corrector"] == "langevin":
        return langevin_corrector(settings["snr"], settings["group"])
    reference_corrector = samplers.CORRECTORS[settings["corrector"]]
    snr = settings["snr"]
    return lambda score_fn, sde, x, t, rng, n_steps: reference_corrector(
        score_fn, sde, x, t, rng, snr, n_steps
    )


def pc_run(
    score_fn: Callable[..., np.ndarray],
    sde: Any,
    shape: tuple[int, int],
    rng: np.random.Generator,
    corrector: Callable[..., tuple[np.ndarray, ...]],
    corrector_steps: int,
    denoise: bool,
) -> np.ndarray:
    """``reference.samplers.pc_sample`` with the reverse-diffusion predictor and any corrector:
    the prior draw, then per step the corrector's normals and the predictor's."""
    x = sde.prior_sampling(rng, shape)
    x_mean, dt = x, -sde.T / sde.N
    for t in np.linspace(sde.T, sde.eps, sde.N):
        t_vec = np.full(shape[0], t)
        x, x_mean = corrector(score_fn, sde, x, t_vec, rng, corrector_steps)
        x, x_mean = samplers.reverse_diffusion(score_fn, sde, x, t_vec, rng, dt)
    return x_mean if denoise else x


def make_sde(settings: dict[str, Any], n_steps: int) -> Any:
    """The row's SDE with N = n_steps levels."""
    if settings["sde"] == "vp":
        return VPSDE(N=n_steps)
    return VESDE(sigma_max=settings["sigma_max"], N=n_steps)


def self_check() -> float:
    """Largest |pc_run - reference pc_sample| with the default settings (a short chain)."""
    mixture = mixture5()
    sde = make_sde(DEFAULT, SELF_CHECK_STEPS)
    shape = (SELF_CHECK_SAMPLES, mixture.dim)
    ours = pc_run(
        mixture.score_fn(sde),
        sde,
        shape,
        np.random.default_rng(0),
        corrector_fn(DEFAULT),
        DEFAULT["corrector_steps"],
        True,
    )
    theirs, _ = samplers.pc_sample(mixture.score_fn(sde), sde, shape, np.random.default_rng(0))
    return float(np.max(np.abs(ours - theirs)))


# --------------------------------------------------------------------------- figures


def spread(x: np.ndarray, mixture: GaussianMixture) -> np.ndarray:
    """Per point: the squared Mahalanobis distance to its most probable component."""
    labels = np.argmax(mixture.posterior(x), axis=1)
    distances = np.empty(len(x))
    for k, precision in enumerate(np.linalg.inv(mixture.covs)):
        mine = labels == k
        diff = x[mine] - mixture.means[k]
        distances[mine] = np.einsum("bi,ij,bj->b", diff, precision, diff)
    return distances


def row_samples(n: int, dim: int, least: int = MIN_SAMPLES) -> int:
    """Points of a row in ``dim`` dimensions: n 2 / dim (as many coordinates as n 2-D points),
    at least ``least``."""
    return n if dim == 2 else max(least, n * 2 // dim)


def draw(settings: dict[str, Any], n: int, seed: int, step_fraction: float) -> tuple[Any, ...]:
    """The row's samples (n, d), their NFE, and the layout of their normals (None: no PC chain)."""
    mixture = MIXTURES[settings["mixture"]]()
    shape = (n, mixture.dim)
    rng = np.random.default_rng(seed)
    if settings["sampler"] == "true":
        return mixture.sample(rng, n), 0, None
    n_steps = max(2, round(settings["n_steps"] * step_fraction))
    sde = make_sde(settings, n_steps)
    score_fn = samplers.CountingScore(mixture.score_fn(sde))
    if settings["sampler"] == "ode":
        x, nfe = samplers.ode_sample(score_fn, sde, shape, rng)
        return x, nfe, None
    corrector = corrector_fn(settings)
    x = pc_run(
        score_fn, sde, shape, rng, corrector, settings["corrector_steps"], settings["denoise"]
    )
    draws_per_step = 1 + (0 if settings["corrector"] == "none" else settings["corrector_steps"])
    return x, score_fn.nfe, (settings["sde"], n_steps, draws_per_step)


def figures(x: np.ndarray, mixture: GaussianMixture, seed: int) -> tuple[dict[str, Any], Any]:
    """The checks of samples x against the mixture, and the exact log-density of each sample."""
    n = len(x)
    # the same true sets for every row of a mixture: the checks' rng is seeded alike
    n_true = row_samples(checks.N_TRUE_LOGP, mixture.dim, MIN_TRUE_POINTS)
    result = checks.sample_checks(x, mixture, np.random.default_rng(seed + 1), n_true)
    true_points = mixture.sample(np.random.default_rng(seed + 2), n_true)
    log_p, true_log_p = mixture.log_prob(x), mixture.log_prob(true_points)
    standard_error = np.hypot(
        np.std(log_p, ddof=1) / np.sqrt(n), np.std(true_log_p, ddof=1) / np.sqrt(len(true_log_p))
    )
    spreads, true_spread = spread(x, mixture), np.mean(spread(true_points, mixture))
    row = {
        "dim": mixture.dim,
        "n": n,
        "n_true": n_true,
        "seed": seed,
        "logp_gap": float(result["logp_gap"]),
        "logp_gap_se": float(standard_error),
        "spread_ratio": float(np.mean(spreads) / true_spread),
        "spread_ratio_se": float(np.std(spreads, ddof=1) / np.sqrt(n) / true_spread),
        "occupancy_tv": float(result["occupancy_tv"]),
        "sw1_ratio": float(result["sw1_ratio"]),
    }
    return row, log_p


def measure(
    factor: str, setting: str, changes: dict[str, Any], n: int, seed: int, step_fraction: float
) -> tuple[dict[str, Any], np.ndarray]:
    """One row's figures, and the exact log-density of each of its samples (for pairing)."""
    settings = {**DEFAULT, **changes}
    mixture = MIXTURES[settings["mixture"]]()
    n = row_samples(n, mixture.dim)
    start = time.perf_counter()
    x, nfe, layout = draw(settings, n, seed, step_fraction)
    seconds = time.perf_counter() - start
    found, log_p = figures(x, mixture, seed)
    row = {"factor": factor, "setting": setting, "settings": settings, "layout": layout}
    return {**row, "nfe": int(nfe), "seconds": seconds, **found}, log_p


def trained_rows(run_dir: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """The same figures for samples of a trained run on an exact mixture, drawn as `scoregen
    sample` draws them (``runs.draw_samples``, one batch): the default PC, lower snr, no
    corrector, and the ODE (RK45)."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    from scoregen_keras import runs

    run = runs.load_run(run_dir)
    name = str(run.config["dataset"])
    if name not in MIXTURES:
        raise SystemExit(f"the run's data set {name!r} is not one of {sorted(MIXTURES)}")
    mixture, rows = MIXTURES[name](), []
    for setting, options in TRAINED_ROWS:
        samples = runs.draw_samples(run.model, run.config, n, seed=seed, **options)
        x = np.asarray(samples.x_original, dtype=np.float64)
        found, _ = figures(x, mixture, seed)
        row = {"factor": "trained", "setting": setting, "settings": options, "run": str(run_dir)}
        rows.append({**row, "nfe": int(samples.nfe), "seconds": samples.seconds, **found})
        print_row(rows[-1])
    return rows


def pair_with_default(rows: list[dict[str, Any]], log_ps: list[np.ndarray]) -> None:
    """Add to each row drawn in its mixture's default layout the paired difference of mean
    log-density to that default row (same seed: the same normals) and its standard error."""
    defaults = {
        row["settings"]["mixture"]: i
        for i, row in enumerate(rows)
        if row["setting"] == DEFAULT_SETTING
    }
    for row, log_p in zip(rows, log_ps, strict=True):
        base = defaults.get(row["settings"]["mixture"])
        if base is None or row["layout"] is None or row["layout"] != rows[base]["layout"]:
            continue
        difference = log_p - log_ps[base]
        row["paired_diff"] = float(np.mean(difference))
        row["paired_diff_se"] = float(np.std(difference, ddof=1) / np.sqrt(len(difference)))


def print_row(row: dict[str, Any]) -> None:
    """One table line."""
    paired = ""
    if "paired_diff" in row:
        paired = f"{row['paired_diff']:+.4f} ± {row['paired_diff_se']:.4f}"
    print(
        f"{row['factor']:<18} {row['setting']:<34} {row['nfe']:>5} "
        f"{row['logp_gap']:>+8.4f} ± {row['logp_gap_se']:.4f} {paired:>17} "
        f"{row['dim']:>4} {row['n']:>6} "
        f"{row['spread_ratio']:>6.3f} ± {row['spread_ratio_se']:.3f} "
        f"{row['occupancy_tv']:>7.4f} {row['sw1_ratio']:>7.2f} "
        f"{row['seconds']:>7.1f}",
        flush=True,
    )


HEADER = (
    f"{'factor':<18} {'setting':<34} {'NFE':>5} {'logp gap ± se':>17} {'paired vs dflt':>17} "
    f"{'dim':>4} {'n':>6} {'spread ± se':>14} {'occ TV':>7} {'SW1/fl':>7} {'seconds':>7}"
)


def selected_rows(factors: list[str]) -> list[tuple[str, str, dict[str, Any]]]:
    """The rows of these factors, and the default row of every mixture they use (for pairing)."""
    chosen = [row for row in ROWS if row[0] in factors]
    mixtures = {({**DEFAULT, **changes})["mixture"] for _, _, changes in chosen}
    defaults = [
        row
        for row in ROWS
        if row[1] == DEFAULT_SETTING and ({**DEFAULT, **row[2]})["mixture"] in mixtures
    ]
    return [row for row in ROWS if row in chosen or row in defaults]


def main(argv: list[str] | None = None) -> None:
    """Run the chosen rows, print the table, write the JSON (keeping rows not rerun)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help=f"2-D samples a row ({N_SAMPLES})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="few samples, a tenth of the steps")
    parser.add_argument(
        "--factors", nargs="*", choices=FACTORS, default=list(FACTORS), help="rows to (re)run"
    )
    parser.add_argument(
        "--run", type=Path, default=None, help="also a trained run on an exact mixture (e.g. toy)"
    )
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    n = args.n or (QUICK_SAMPLES if args.quick else N_SAMPLES)
    step_fraction = QUICK_STEP_FRACTION if args.quick else 1.0
    output = args.output or default_output(JSON_NAME, args.quick)
    check = self_check()
    print(f"pc_run vs reference pc_sample ({SELF_CHECK_STEPS} steps): max |diff| {check:.1e}")
    if check > 0.0:
        raise SystemExit("pc_run does not reproduce reference pc_sample; the table would mislead")
    print(f"n = {n} 2-D samples a row (n 2 / d in d dimensions), seed {args.seed}; exact scores")
    print(HEADER)
    print("-" * len(HEADER))
    rows, log_ps = [], []
    for factor, setting, changes in selected_rows(args.factors):
        row, log_p = measure(factor, setting, changes, n, args.seed, step_fraction)
        rows.append(row)
        log_ps.append(log_p)
        print_row(row)
        write_report(output, merged_rows(output, rows), args, n, step_fraction, check)
    pair_with_default(rows, log_ps)
    if args.run is not None:
        print(f"\ntrained run {args.run}, {n} samples (runs.draw_samples, one batch):")
        rows += trained_rows(args.run, n, args.seed)
    merged = merged_rows(output, rows)
    print("\nall rows, with the paired differences to each mixture's default (same normals):")
    print(HEADER)
    for row in merged:
        print_row(row)
    print_before_after(before_after(merged))
    write_report(output, merged, args, n, step_fraction, check)
    print(f"wrote {output}")


def merged_rows(output: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """These rows and those of ``output`` not rerun, in the order of ROWS (a new trained table
    replaces the old one whole)."""
    previous = json.loads(output.read_text())["rows"] if output.exists() else []
    new = {(row["factor"], row["setting"]) for row in rows}
    trained_again = any(row["factor"] == "trained" for row in rows)
    kept = [
        row
        for row in previous
        if (row["factor"], row["setting"]) not in new
        and not (trained_again and row["factor"] == "trained")
    ]
    order = {(factor, setting): i for i, (factor, setting, _) in enumerate(ROWS)}
    order.update(
        {("trained", setting): len(ROWS) + i for i, (setting, _) in enumerate(TRAINED_ROWS)}
    )
    return sorted(kept + rows, key=lambda row: order.get((row["factor"], row["setting"]), 0))


def _pair_row(before: dict[str, Any], after: dict[str, Any], what: str) -> dict[str, Any]:
    """One line of the before / after table."""
    figures = ("logp_gap", "logp_gap_se", "spread_ratio", "spread_ratio_se")
    return {
        "what": what,
        "dim": before["dim"],
        **{f"{when}_{key}": row[key] for when, row in (("before", before), ("after", after))
           for key in figures},
        "after_paired_diff": after.get("paired_diff"),
        "after_paired_diff_se": after.get("paired_diff_se"),
    }  # fmt: skip


def before_after(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per mixture and for the trained run: the library's PC default for points before issue 25
    (score_sde's Langevin corrector, snr 0.16, batch norms) and after (ALD at snr 0.16)."""
    table = []
    for mixture in MIXTURES:
        before_settings = {**DEFAULT, "mixture": mixture}
        after_settings = {**before_settings, "corrector": "ald"}
        before = next((r for r in rows if r.get("settings") == before_settings), None)
        after = next((r for r in rows if r.get("settings") == after_settings), None)
        if before is not None and after is not None:
            table.append(_pair_row(before, after, f"{mixture}, exact score"))
    trained = {row["setting"]: row for row in rows if row["factor"] == "trained"}
    if LIBRARY_BEFORE in trained and LIBRARY_DEFAULT in trained:
        table.append(_pair_row(trained[LIBRARY_BEFORE], trained[LIBRARY_DEFAULT], "trained run"))
    return table


def print_before_after(table: list[dict[str, Any]]) -> None:
    """The before / after table."""
    print(
        f"\n{'library PC default':<24} {'dim':>4} {'before: logp gap':>18} {'spread':>14} "
        f"{'after (ALD): logp gap':>22} {'spread':>14} {'paired':>17}"
    )
    for row in table:
        paired = ""
        if row["after_paired_diff"] is not None:
            paired = f"{row['after_paired_diff']:+.4f} ± {row['after_paired_diff_se']:.4f}"
        print(
            f"{row['what']:<24.24} {row['dim']:>4} "
            f"{row['before_logp_gap']:>+9.4f} ± {row['before_logp_gap_se']:.4f} "
            f"{row['before_spread_ratio']:>6.3f} ± {row['before_spread_ratio_se']:.3f} "
            f"{row['after_logp_gap']:>+13.4f} ± {row['after_logp_gap_se']:.4f} "
            f"{row['after_spread_ratio']:>6.3f} ± {row['after_spread_ratio_se']:.3f} {paired:>17}"
        )


def write_report(
    output: Path,
    rows: list[dict[str, Any]],
    args: argparse.Namespace,
    n: int,
    step_fraction: float,
    check: float,
) -> None:
    """Write the JSON through a temporary file (after every row, so a long run keeps its rows)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "pc_defaults",
        "machine": machine(),
        "n": n,
        "seed": args.seed,
        "quick": args.quick,
        "step_fraction": step_fraction,
        "n_true_logp": checks.N_TRUE_LOGP,
        "self_check_max_abs_diff": check,
        "default": DEFAULT,
        "rows": rows,
        "before_after": before_after(rows),
    }
    temporary = output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(output)


if __name__ == "__main__":
    main()
