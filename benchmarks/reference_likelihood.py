"""Benchmark: probability-flow likelihoods (item 6) against the exact log-density of mixture5.

For VE and VP: ``reference.likelihood.ode_likelihood`` with the exact divergence over
``--points`` points (max and mean |error| per point, at the default and a tight ODE tolerance),
and Hutchinson-Skilling with Rademacher and Gaussian probes (exact score JVP, and central finite
differences as used without ``jvp_fn``): every point is replicated over ``--probes`` independent
probes, and the table gives the mean bias over the points (each point's mean over its probes
minus the exact log p_eps), its standard error, the largest |z| of a point and the standard
deviation of a one-probe estimate. Writes benchmarks/results/reference_likelihood.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from reference import likelihood
from reference.datasets import mixture5
from reference.sde import VESDE, VPSDE

RESULTS = Path(__file__).parent / "results" / "reference_likelihood.json"
DEFAULT_TOL = 1e-5  # ode_likelihood's default rtol = atol
EXACT_TOL = 1e-7  # tests/reference/test_likelihood.py: keeps every point of 200 within 1e-3 nats
HUTCHINSON_TOL = 1e-6  # as in tests/reference/test_likelihood.py
N_POINTS = 200
N_HUTCHINSON_POINTS = 20
N_PROBES = 200
JVP_MODES = ("exact", "finite_difference")


def mixture_fns(mixture, sde) -> dict:
    """Exact score, score Jacobian, score JVP and terminal log-density of mixture5 under sde."""

    def jacobian(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        return mixture.score_jacobian(x, *sde.marginal_coefficients(t))

    def jvp(x: np.ndarray, t: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.einsum("bij,bj->bi", jacobian(x, t), v)

    return {
        "score": mixture.score_fn(sde),
        "jacobian": jacobian,
        "jvp": jvp,
        "prior_logp": mixture.at_time(sde, sde.T).log_prob,
    }


def exact_logp_at_eps(mixture, sde, x: np.ndarray) -> np.ndarray:
    """log p_eps(x): mixture5 perturbed to the ODE's end time eps."""
    alpha, std = sde.marginal_coefficients(np.array([sde.eps]))
    return mixture.log_prob(x, alpha[0], std[0])


def run_exact(sde, fns: dict, x: np.ndarray, exact: np.ndarray) -> list[dict]:
    """Exact-divergence likelihood of every point at the default and the tight tolerance."""
    rows = []
    for tol in (DEFAULT_TOL, EXACT_TOL):
        start = time.perf_counter()
        log_p, _, nfe = likelihood.ode_likelihood(
            fns["score"],
            sde,
            x,
            score_jacobian_fn=fns["jacobian"],
            rtol=tol,
            atol=tol,
            prior_logp_fn=fns["prior_logp"],
        )
        error = np.abs(log_p - exact)
        row = {
            "sde": type(sde).__name__,
            "divergence": "exact",
            "tol": tol,
            "n_points": len(x),
            "nfe": nfe,
            "max_abs_error_nats": float(error.max()),
            "mean_abs_error_nats": float(error.mean()),
            "seconds": time.perf_counter() - start,
        }
        rows.append(row)
        print(
            f"{row['sde']:<6} {'exact':<12} {'-':<17} {tol:>7.0e} {nfe:>5d} "
            f"{row['max_abs_error_nats']:>11.2e} {row['mean_abs_error_nats']:>11.2e} "
            f"{row['seconds']:>8.1f}",
            flush=True,
        )
    return rows


def run_hutchinson(sde, fns: dict, x: np.ndarray, exact: np.ndarray, seed: int) -> list[dict]:
    """Hutchinson likelihoods of every point over N_PROBES probes: bias, SE, |z|, spread."""
    rows = []
    n_points, n_probes = len(x), N_PROBES
    for probe in likelihood.PROBES:
        for jvp_mode in JVP_MODES:
            start = time.perf_counter()
            log_p, _, nfe = likelihood.ode_likelihood(
                fns["score"],
                sde,
                np.repeat(x, n_probes, axis=0),  # one independent probe per replicate
                np.random.default_rng(seed),
                divergence="hutchinson",
                probe=probe,
                jvp_fn=fns["jvp"] if jvp_mode == "exact" else None,
                rtol=HUTCHINSON_TOL,
                atol=HUTCHINSON_TOL,
                prior_logp_fn=fns["prior_logp"],
            )
            log_p = log_p.reshape(n_points, n_probes)
            bias = log_p.mean(axis=1) - exact
            spread = log_p.std(axis=1, ddof=1)  # SD of a one-probe estimate, per point
            se = spread / np.sqrt(n_probes)
            row = {
                "sde": type(sde).__name__,
                "divergence": f"hutchinson-{probe}",
                "jvp": jvp_mode,
                "tol": HUTCHINSON_TOL,
                "n_points": n_points,
                "n_probes": n_probes,
                "nfe": nfe,
                "mean_bias_nats": float(bias.mean()),
                "mean_bias_standard_error": float(np.sqrt(np.sum(se**2)) / n_points),
                "max_abs_z": float(np.abs(bias / se).max()),
                "mean_one_probe_sd_nats": float(spread.mean()),
                "seconds": time.perf_counter() - start,
            }
            rows.append(row)
            print(
                f"{row['sde']:<6} {probe:<12} {jvp_mode:<17} {HUTCHINSON_TOL:>7.0e} {nfe:>5d} "
                f"{row['mean_bias_nats']:>+11.4f} {row['mean_bias_standard_error']:>11.4f} "
                f"{row['seconds']:>8.1f} {row['max_abs_z']:>7.2f} "
                f"{row['mean_one_probe_sd_nats']:>9.3f}",
                flush=True,
            )
    return rows


def main() -> None:
    """Parse arguments, run the exact and Hutchinson likelihoods for VE and VP, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--points", type=int, default=N_POINTS, help="points, exact divergence")
    parser.add_argument("--hutchinson-points", type=int, default=N_HUTCHINSON_POINTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    mixture = mixture5()
    x = mixture.sample(np.random.default_rng(args.seed), args.points)
    print(
        f"{'sde':<6} {'divergence':<12} {'jvp':<17} {'tol':>7} {'NFE':>5} "
        f"{'max|err|':>11} {'mean|err|':>11} {'seconds':>8}   (exact divergence, nats)\n"
        f"{'':<6} {'':<12} {'':<17} {'':>7} {'':>5} "
        f"{'mean bias':>11} {'its SE':>11} {'seconds':>8} {'max|z|':>7} {'1-probe SD':>9}"
        f"   (Hutchinson, {N_PROBES} probes a point)"
    )
    rows = []
    for sde in (VESDE(), VPSDE()):
        fns = mixture_fns(mixture, sde)
        exact = exact_logp_at_eps(mixture, sde, x)
        rows += run_exact(sde, fns, x, exact)
        n_hutchinson = args.hutchinson_points
        rows += run_hutchinson(sde, fns, x[:n_hutchinson], exact[:n_hutchinson], args.seed + 1)
    results = {"seed": args.seed, "n_probes": N_PROBES, "likelihood": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=float))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
