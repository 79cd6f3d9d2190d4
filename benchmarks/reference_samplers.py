"""Benchmark: exact-score samplers (item 5) and probability-flow likelihoods (item 6) on mixture5.

Prints a table (sampler, NFE, log-density gap, occupancy TV, SW1 / floor, seconds) and the
likelihood errors, and writes benchmarks/results/reference_samplers.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from reference import checks, likelihood
from reference.datasets import mixture5
from reference.sde import VESDE, VPSDE

RESULTS = Path(__file__).parent / "results" / "reference_samplers.json"
N_LIKELIHOOD_POINTS = 200
LIKELIHOOD_TOL = 1e-7
N_PROBES = 200
N_HUTCHINSON_POINTS = 10


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


def main() -> None:
    """Parse arguments, run both benchmarks, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=10_000, help="samples per sampler")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    results = {
        "n": args.n,
        "seed": args.seed,
        "bounds": {
            "logp_gap_nats": checks.LOGP_GAP_BOUND,
            "occupancy_tv": checks.OCCUPANCY_TV_BOUND,
            "sw1_ratio": checks.SW1_RATIO_BOUND,
        },
        "samplers": run_samplers(args.n, args.seed),
        "likelihood": run_likelihood(args.seed),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
