"""Sample-quality checks against a Gaussian mixture with an exact density.

Three checks, each against the same target:
  (a) the mean exact log-density of the samples vs its expectation under the target
      (catches samples too wide or too narrow);
  (b) the total variation between the component occupancies of the samples and of true samples,
      each point assigned to the component of largest exact posterior (catches mode imbalance);
  (c) the sliced Wasserstein-1 distance to an independent true sample set of the same size,
      divided by its noise floor (the mean over several pairs of independent true sets).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

LOGP_GAP_BOUND = 0.1  # nats
OCCUPANCY_TV_BOUND = 0.02
SW1_RATIO_BOUND = 2.0
N_PROJECTIONS = 200
N_TRUE_LOGP = 200_000
N_FLOOR_PAIRS = 5

SampleFn = Callable[[np.random.Generator, int], np.ndarray]


def _flat(x: np.ndarray) -> np.ndarray:
    """View a batch (n, *dims) as (n, D)."""
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def random_directions(rng: np.random.Generator, n_projections: int, dim: int) -> np.ndarray:
    """Unit directions (n_projections, dim), uniform on the sphere; one standard_normal draw."""
    v = rng.standard_normal((n_projections, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sliced_wasserstein1(x: np.ndarray, y: np.ndarray, directions: np.ndarray) -> float:
    """SW1 = mean over directions of the 1-D W1 of the projections (equal sizes, by sorting)."""
    x, y = _flat(x), _flat(y)
    if x.shape != y.shape:
        raise ValueError(f"sample sets must have the same shape, got {x.shape} and {y.shape}")
    px = np.sort(x @ directions.T, axis=0)
    py = np.sort(y @ directions.T, axis=0)
    return float(np.mean(np.abs(px - py)))  # W1 in 1-D: mean |F^-1_x(u) - F^-1_y(u)|


def occupancy(posterior: np.ndarray) -> np.ndarray:
    """Fraction of points assigned to each component by the posterior argmax, shape (K,)."""
    labels = np.argmax(posterior, axis=1)
    return np.bincount(labels, minlength=posterior.shape[1]) / posterior.shape[0]


def sample_checks(
    samples: np.ndarray,
    mixture,
    rng: np.random.Generator,
    n_true_logp: int = N_TRUE_LOGP,
    n_floor_pairs: int = N_FLOOR_PAIRS,
    sample_true: SampleFn | None = None,
    n_projections: int = N_PROJECTIONS,
) -> dict[str, float | bool]:
    """Run the three checks of ``samples`` (n, d) against ``mixture``; return figures and verdicts.

    ``mixture`` provides ``log_prob(x)`` and ``posterior(x)``; true draws come from
    ``sample_true(rng, n)`` (default ``mixture.sample``), so a conditional target can be checked
    with the joint mixture's density (a constant offset cancels in the gap). Draws, in order:
    ``n_true_logp`` true points, one true set of size n, ``n_floor_pairs`` pairs of true sets of
    size n, then the projection directions.
    """
    sample_true = mixture.sample if sample_true is None else sample_true
    samples = _flat(samples)
    n = samples.shape[0]
    true_big = sample_true(rng, n_true_logp)
    logp_gap = float(np.mean(mixture.log_prob(samples)) - np.mean(mixture.log_prob(true_big)))
    occupancy_tv = 0.5 * float(
        np.sum(
            np.abs(occupancy(mixture.posterior(samples)) - occupancy(mixture.posterior(true_big)))
        )
    )
    true_ref = sample_true(rng, n)
    floor_pairs = [(sample_true(rng, n), sample_true(rng, n)) for _ in range(n_floor_pairs)]
    directions = random_directions(rng, n_projections, samples.shape[1])
    sw1 = sliced_wasserstein1(samples, true_ref, directions)
    sw1_floor = float(np.mean([sliced_wasserstein1(a, b, directions) for a, b in floor_pairs]))
    result: dict[str, float | bool] = {
        "logp_gap": logp_gap,
        "occupancy_tv": occupancy_tv,
        "sw1": sw1,
        "sw1_floor": sw1_floor,
        "sw1_ratio": sw1 / sw1_floor,
    }
    result["logp_ok"] = abs(logp_gap) <= LOGP_GAP_BOUND
    result["occupancy_ok"] = occupancy_tv <= OCCUPANCY_TV_BOUND
    result["sw1_ok"] = result["sw1_ratio"] <= SW1_RATIO_BOUND
    result["passed"] = bool(result["logp_ok"] and result["occupancy_ok"] and result["sw1_ok"])
    return result


def format_row(name: str, nfe: int, result: dict[str, float | bool]) -> str:
    """One table row: sampler, NFE, log-density gap, occupancy TV, SW1 ratio, verdict."""
    verdict = "pass" if result["passed"] else "FAIL"
    return (
        f"{name:<28} {nfe:>7d} {result['logp_gap']:>+10.4f} {result['occupancy_tv']:>10.4f} "
        f"{result['sw1_ratio']:>9.3f}  {verdict}"
    )


TABLE_HEADER = f"{'sampler':<28} {'NFE':>7} {'logp gap':>10} {'occ. TV':>10} {'SW1/floor':>9}"


# --------------------------------------------------------------------------- the standard suite
# Settings of the exact-score sampler checks on a 2-D mixture (issue item 5), shared by the tests
# and benchmarks/reference_samplers.py.
NCSN_SIGMA_1 = 10.0  # NCSNv2 technique 1: >= the largest pairwise distance of mixture5 (~8.3)
NCSN_SIGMA_L = 0.01  # NCSN paper
NCSN_LEVELS = 20  # NCSN uses 10; 20 geometric levels (ratio ~1.39) halve the unmixed excess
NCSN_STEPS_EACH = 200  # NCSN uses 100; long anisotropic directions need more steps to relax
NCSN_STEP_LR = 2e-5  # NCSN paper: eps = 2e-5 with sigma_L = 0.01 (alpha_i / sigma_i^2 = 0.2)
FAST_SAMPLER_SIGMA_MAX = 20.0  # sigma~_max of EDM / DPM-Solver++, ~2.4x mixture5's diameter
EDM_STEPS = 20  # 2 * 20 - 1 = 39 NFE
DPM_STEPS = 20  # 20 NFE

SamplerFn = Callable[[np.random.Generator, int], tuple[np.ndarray, int]]


def exact_score_samplers(mixture) -> dict[str, SamplerFn]:
    """The item-5 samplers on the exact scores of ``mixture``: name -> f(rng, n) = (x, nfe)."""
    from reference import samplers
    from reference.sde import VESDE, VPSDE, geometric_sigmas

    ve, vp = VESDE(), VPSDE()
    dim = mixture.dim
    sigmas = geometric_sigmas(NCSN_SIGMA_1, NCSN_SIGMA_L, NCSN_LEVELS)
    return {
        "annealed_langevin": lambda rng, n: samplers.annealed_langevin(
            mixture.sigma_score_fn(), sigmas, (n, dim), rng, NCSN_STEPS_EACH, NCSN_STEP_LR
        ),
        "pc_ve": lambda rng, n: samplers.pc_sample(mixture.score_fn(ve), ve, (n, dim), rng),
        "pc_vp": lambda rng, n: samplers.pc_sample(mixture.score_fn(vp), vp, (n, dim), rng),
        "ode_rk45_ve": lambda rng, n: samplers.ode_sample(mixture.score_fn(ve), ve, (n, dim), rng),
        "ode_rk45_vp": lambda rng, n: samplers.ode_sample(mixture.score_fn(vp), vp, (n, dim), rng),
        "edm_heun_ve": lambda rng, n: samplers.edm_heun_sample(
            mixture.score_fn(ve), ve, (n, dim), rng, EDM_STEPS, sigma_max=FAST_SAMPLER_SIGMA_MAX
        ),
        "dpm_solver_pp_ve": lambda rng, n: samplers.dpm_solver_pp_sample(
            mixture.score_fn(ve), ve, (n, dim), rng, DPM_STEPS, sigma_max=FAST_SAMPLER_SIGMA_MAX
        ),
    }
