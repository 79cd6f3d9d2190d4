"""Benchmark: exact-score samplers (item 5), likelihoods (item 6) and imputation (item 7), mixture5.

Prints a table (sampler, NFE, log-density gap, occupancy TV, SW1 / floor, seconds), the
likelihood errors, and a table of imputation of x2 given x1 in {-2, 0, 2} against the exact
conditional: replacement (``controllable.impute``) and SMCDiff (``controllable.smc_impute``, n
samples as IMPUTE_FILTERS independent filters), with the same three checks plus the largest error
of the mean component responsibility E p(k | x) against the exact conditional weight w_k. Writes
benchmarks/results/reference_samplers.json; ``--parts`` reruns some tables and keeps the others.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from reference import checks, controllable, likelihood
from reference.datasets import mixture5
from reference.sde import VESDE, VPSDE

RESULTS = Path(__file__).parent / "results" / "reference_samplers.json"
N_LIKELIHOOD_POINTS = 200
LIKELIHOOD_TOL = 1e-7
N_PROBES = 200
N_HUTCHINSON_POINTS = 10
PARTS = ("samplers", "likelihood", "imputation")
IMPUTE_MASK = np.array([True, False])  # observe x1, impute x2
IMPUTE_VALUES = (-2.0, 0.0, 2.0)
IMPUTE_FILTERS = 100  # as tests/reference/test_controllable.py: n / 100 particles per filter


def run_samplers(n: int, seed: int) -> list[dict]:
    """Run every exact-score sampler on mixture5 and the three sample checks."""
    mixture = mixture5()
    rows = []
    print(checks.TABLE_HEADER + f" {'seconds':>8}")
    for name, sample in checks.exact_score_samplers(mixture).items():
        start = time.perf_counter()
        x, nfe = sample(np.random.default_rng(seed), n)
        seconds = time.perf_counter() - start
        result = checks.sample_checks(x, mixture, np.random.default_rng(seed + 1))
        print(checks.format_row(name, nfe, result) + f" {seconds:>8.1f}", flush=True)
        rows.append({"sampler": name, "nfe": nfe, "seconds": seconds, **result})
    return rows


def run_likelihood(seed: int) -> list[dict]:
    """Exact and Hutchinson ODE likelihoods vs the exact log p_eps of mixture5, VE and VP."""
    mixture = mixture5()
    rows = []
    for sde in (VESDE(), VPSDE()):

        def jacobian(x, t, sde=sde):
            return mixture.score_jacobian(x, *sde.marginal_coefficients(t))

        alpha, std = sde.marginal_coefficients(np.array([sde.eps]))
        prior_logp = mixture.at_time(sde, sde.T).log_prob
        x = mixture.sample(np.random.default_rng(seed), N_LIKELIHOOD_POINTS)
        exact = mixture.log_prob(x, alpha[0], std[0])
        start = time.perf_counter()
        log_p, _, nfe = likelihood.ode_likelihood(
            mixture.score_fn(sde),
            sde,
            x,
            score_jacobian_fn=jacobian,
            rtol=LIKELIHOOD_TOL,
            atol=LIKELIHOOD_TOL,
            prior_logp_fn=prior_logp,
        )
        row = {
            "sde": type(sde).__name__,
            "divergence": "exact",
            "nfe": nfe,
            "max_abs_error_nats": float(np.abs(log_p - exact).max()),
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        error = row["max_abs_error_nats"]
        print(f"{row['sde']:<6} exact       NFE {nfe:>4}  max |error| {error:.2e}")
        points = x[:N_HUTCHINSON_POINTS]
        for probe in likelihood.PROBES:
            start = time.perf_counter()
            log_p, _, nfe = likelihood.ode_likelihood(
                mixture.score_fn(sde),
                sde,
                np.repeat(points, N_PROBES, axis=0),
                np.random.default_rng(seed + 1),
                divergence="hutchinson",
                probe=probe,
                prior_logp_fn=prior_logp,
            )
            log_p = log_p.reshape(N_HUTCHINSON_POINTS, N_PROBES)
            se = log_p.std(axis=1, ddof=1) / np.sqrt(N_PROBES)
            z = (log_p.mean(axis=1) - exact[:N_HUTCHINSON_POINTS]) / se
            row = {
                "sde": type(sde).__name__,
                "divergence": f"hutchinson-{probe}",
                "nfe": nfe,
                "max_abs_z": float(np.abs(z).max()),
                "mean_standard_error": float(se.mean()),
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            print(
                f"{row['sde']:<6} {probe:<11} NFE {nfe:>4}  max |z| over {N_HUTCHINSON_POINTS} "
                f"points ({N_PROBES} probes) {row['max_abs_z']:.2f}"
            )
    return rows


def imputers(mixture, n: int) -> dict:
    """name -> f(x_obs_row, rng) = (samples (n, d), nfe): replacement and SMCDiff, VE and VP."""
    ve, vp = VESDE(), VPSDE()

    def replacement(sde):
        def impute(row: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
            x_obs = np.tile(row, (n, 1))
            return controllable.impute(mixture.score_fn(sde), sde, x_obs, IMPUTE_MASK, rng)

        return impute

    def smc(sde):
        def impute(row: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
            x_obs = np.tile(row, (IMPUTE_FILTERS, 1))
            x, nfe = controllable.smc_impute(
                mixture.score_fn(sde),
                sde,
                x_obs,
                IMPUTE_MASK,
                rng,
                n_particles=n // IMPUTE_FILTERS,
            )
            return x.reshape(-1, mixture.dim), nfe

        return impute

    return {
        "impute_ve": replacement(ve),
        "impute_vp": replacement(vp),
        "smc_impute_ve": smc(ve),
        "smc_impute_vp": smc(vp),
    }


def run_imputation(n: int, seed: int) -> list[dict]:
    """Replacement and SMCDiff imputation of x2 given x1 on mixture5 vs the exact conditional."""
    mixture = mixture5()
    rows = []
    print(checks.TABLE_HEADER + f" {'seconds':>8} {'max|Ep-w|':>10}")
    for value in IMPUTE_VALUES:
        row_obs = np.array([value, 0.0])
        conditional = mixture.conditional(IMPUTE_MASK, row_obs[None])
        weights = conditional.weights[0]

        def sample_conditional(rng: np.random.Generator, size: int, row_obs=row_obs):
            return mixture.conditional(IMPUTE_MASK, np.tile(row_obs, (size, 1))).sample(rng)

        for name, impute in imputers(mixture, n).items():
            start = time.perf_counter()
            x, nfe = impute(row_obs, np.random.default_rng(seed))
            seconds = time.perf_counter() - start
            result = checks.sample_checks(
                x, mixture, np.random.default_rng(seed + 1), sample_true=sample_conditional
            )
            # E p(k | x) over the exact conditional is exactly w_k
            weight_error = float(np.abs(mixture.posterior(x).mean(axis=0) - weights).max())
            label = f"{name} x1={value:+.0f}"
            print(
                checks.format_row(label, nfe, result) + f" {seconds:>8.1f} {weight_error:>10.4f}",
                flush=True,
            )
            rows.append(
                {
                    "sampler": name,
                    "x1": value,
                    "nfe": nfe,
                    "seconds": seconds,
                    "max_weight_error": weight_error,
                    "exact_weights": weights.tolist(),
                    **result,
                }
            )
    return rows


def main() -> None:
    """Parse arguments, run the chosen benchmarks, write the JSON (keeping parts not rerun)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="samples per sampler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument(
        "--parts", nargs="+", choices=PARTS, default=list(PARTS), help="tables to (re)run"
    )
    args = parser.parse_args()
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    results["bounds"] = {
        "logp_gap_nats": checks.LOGP_GAP_BOUND,
        "occupancy_tv": checks.OCCUPANCY_TV_BOUND,
        "sw1_ratio": checks.SW1_RATIO_BOUND,
    }
    if "samplers" in args.parts:  # the top-level n and seed are those of the sampler table
        results.update({"n": args.n, "seed": args.seed})
        results["samplers"] = run_samplers(args.n, args.seed)
    if "likelihood" in args.parts:
        results["likelihood"] = run_likelihood(args.seed)
    if "imputation" in args.parts:
        results["imputation"] = {
            "n": args.n,
            "seed": args.seed,
            "smc_filters": IMPUTE_FILTERS,
            "rows": run_imputation(args.n, args.seed),
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
