"""Tests of reference.sde: VE, VP and sub-VP SDEs, their discretisations, the NCSNv2 rules."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import integrate, spatial, stats

from reference.sde import (
    SDE,
    VESDE,
    VPSDE,
    SubVPSDE,
    geometric_sigmas,
    ncsnv2_gamma,
    ncsnv2_num_levels,
    ncsnv2_schedule,
    ncsnv2_sigma_max,
    ncsnv2_step_size,
    ncsnv2_variance_ratio,
)

N_CHAINS = 20_000
N_STANDARD_ERRORS = 4.0
FLOAT_RTOL = 1e-12
FD_STEP = 1e-6
FD_RTOL = 1e-6
SDES = [VESDE(), VPSDE(), SubVPSDE()]
SDE_IDS = ["ve", "vp", "subvp"]


def _times(n: int = 7) -> np.ndarray:
    """Per-example times spread over (0, 1]."""
    return np.linspace(0.05, 1.0, n)


def _run_chain(sde: SDE, x0: np.ndarray, last_index: int, rng: np.random.Generator) -> np.ndarray:
    """Apply x_{i+1} = x_i + f + G z for the steps with indices 0, ..., last_index."""
    x = np.repeat(x0[None], N_CHAINS, axis=0)
    for i in range(last_index + 1):
        # the midpoint of [t_i, t_{i+1}) maps to index i under floor(t (N - 1) / T)
        t = np.full(N_CHAINS, (i + 0.5) * sde.T / (sde.N - 1))
        f, G = sde.discretize(x, t)
        x = x + f + G[:, None] * rng.standard_normal(x.shape)
    return x


def _assert_moments(x: np.ndarray, mean: np.ndarray, std: float) -> None:
    """Per-coordinate sample mean and std agree with (mean, std) within N_STANDARD_ERRORS."""
    n = x.shape[0]
    np.testing.assert_array_less(
        np.abs(x.mean(axis=0) - mean), N_STANDARD_ERRORS * std / np.sqrt(n)
    )
    # the standard error of a sample std of Gaussian data is std / sqrt(2 n)
    np.testing.assert_array_less(
        np.abs(x.std(axis=0) - std), N_STANDARD_ERRORS * std / np.sqrt(2 * n)
    )


# --- Monte-Carlo runs of the discrete chains against the continuous marginals -------------------


@pytest.mark.parametrize("last_index", [0, 30, 99])
def test_ve_chain_matches_marginal_at_t_i(last_index: int) -> None:
    """SMLD chain: after steps 0..i the state is exactly x0 + sigma_i z with t_i = i T / (N - 1)."""
    sde = VESDE(N=100)  # few levels, so an off-by-one level changes std by ~9%
    x0 = np.array([0.7, -1.3])
    x = _run_chain(sde, x0, last_index, np.random.default_rng(0))
    t_i = np.array([last_index * sde.T / (sde.N - 1)])
    mean, std = sde.marginal_prob(x0[None], t_i)
    _assert_moments(x, mean[0], std[0])


@pytest.mark.parametrize("last_index", [249, 499, 999])
def test_vp_chain_matches_marginal_after_i_plus_1_steps(last_index: int) -> None:
    """DDPM chain: after steps 0..i (each of length T/N) the state follows p_t at t = (i+1) T/N."""
    sde = VPSDE()
    x0 = np.array([1.5, -2.0])
    x = _run_chain(sde, x0, last_index, np.random.default_rng(1))
    t = np.array([(last_index + 1) * sde.T / sde.N])
    mean, std = sde.marginal_prob(x0[None], t)
    _assert_moments(x, mean[0], std[0])


# --- consistency between sde() and marginal_coefficients() -----------------------------------


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_marginals_solve_the_moment_odes(sde: SDE) -> None:
    """d alpha/dt = a alpha and d std^2/dt = 2 a std^2 + g^2 for the linear drift f = a(t) x."""
    t = _times()
    drift, g = sde.sde(np.ones((len(t), 1)), t)
    a = drift[:, 0]
    alpha_p, std_p = sde.marginal_coefficients(t + FD_STEP)
    alpha_m, std_m = sde.marginal_coefficients(t - FD_STEP)
    alpha, std = sde.marginal_coefficients(t)
    dalpha = (alpha_p - alpha_m) / (2 * FD_STEP)
    dvar = (std_p**2 - std_m**2) / (2 * FD_STEP)
    np.testing.assert_allclose(dalpha, a * alpha, rtol=FD_RTOL, atol=FD_RTOL)
    np.testing.assert_allclose(dvar, 2 * a * std**2 + g**2, rtol=FD_RTOL)


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_marginal_prob_at_zero_is_the_data(sde: SDE) -> None:
    """p_0(x | x0) is (nearly) a point mass at x0: alpha(0) = 1, std(0) = sigma_min or 0."""
    alpha, std = sde.marginal_coefficients(np.zeros(1))
    expected_std = getattr(sde, "sigma_min", 0.0)
    np.testing.assert_allclose(alpha, 1.0)
    np.testing.assert_allclose(std, expected_std, atol=FLOAT_RTOL)


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_prior_logp_integrates_to_one(sde: SDE) -> None:
    """The 1-D prior density integrates to 1."""
    total, _ = integrate.quad(lambda z: np.exp(sde.prior_logp(np.array([[z]]))[0]), -np.inf, np.inf)
    np.testing.assert_allclose(total, 1.0, rtol=1e-8)


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_prior_sampling_matches_prior_logp(sde: SDE) -> None:
    """prior_sampling's scale is the one of prior_logp, and it takes one standard_normal draw."""
    z = sde.prior_sampling(np.random.default_rng(2), (N_CHAINS, 1))
    _, std_T = sde.marginal_coefficients(np.array([sde.T]))
    prior_std = np.sqrt(np.exp(-2 * sde.prior_logp(np.zeros((1, 1)))[0]) / (2 * np.pi))
    assert abs(z.std() - prior_std) < N_STANDARD_ERRORS * prior_std / np.sqrt(2 * N_CHAINS)
    np.testing.assert_allclose(prior_std, std_T, rtol=0.02)  # p_T is close to the prior


# --- constants of the design ---------------------------------------------------------------


def test_ve_constants() -> None:
    """sigma(t), g(t), marginal, prior, SMLD discretisation and eps of the VE SDE."""
    sde = VESDE()
    assert (sde.sigma_min, sde.sigma_max, sde.N, sde.T, sde.eps) == (0.01, 50.0, 1000, 1.0, 1e-5)
    t = _times()
    sigma = 0.01 * (50.0 / 0.01) ** t
    x = np.arange(2 * len(t), dtype=float).reshape(len(t), 2)
    drift, g = sde.sde(x, t)
    np.testing.assert_array_equal(drift, 0.0)
    np.testing.assert_allclose(g, sigma * np.sqrt(2 * np.log(50.0 / 0.01)), rtol=FLOAT_RTOL)
    mean, std = sde.marginal_prob(x, t)
    np.testing.assert_array_equal(mean, x)
    np.testing.assert_allclose(std, sigma, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(sde.discrete_sigmas, np.geomspace(0.01, 50.0, 1000), rtol=1e-12)
    f, G = sde.discretize(x, t)
    i = np.floor(t * (sde.N - 1)).astype(int)
    levels = np.geomspace(0.01, 50.0, 1000)
    np.testing.assert_array_equal(f, 0.0)
    np.testing.assert_allclose(G, np.sqrt(levels[i] ** 2 - levels[i - 1] ** 2), rtol=1e-10)
    _, G0 = sde.discretize(x[:1], np.zeros(1))
    np.testing.assert_allclose(G0, 0.01)  # sigma_{-1} = 0


def test_vp_constants() -> None:
    """beta(t), lmc, f, g, marginal, DDPM discretisation and eps of the VP SDE."""
    sde = VPSDE()
    assert (sde.beta_0, sde.beta_1, sde.N, sde.T, sde.eps) == (0.1, 20.0, 1000, 1.0, 1e-3)
    t = _times()
    beta = 0.1 + t * (20.0 - 0.1)
    lmc = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
    x = np.arange(2 * len(t), dtype=float).reshape(len(t), 2) - 3.0
    drift, g = sde.sde(x, t)
    np.testing.assert_allclose(drift, -0.5 * beta[:, None] * x, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(g, np.sqrt(beta), rtol=FLOAT_RTOL)
    mean, std = sde.marginal_prob(x, t)
    np.testing.assert_allclose(mean, np.exp(lmc)[:, None] * x, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(std, np.sqrt(1 - np.exp(2 * lmc)), rtol=FLOAT_RTOL)
    betas = np.linspace(0.1 / 1000, 20.0 / 1000, 1000)
    np.testing.assert_allclose(sde.discrete_betas, betas, rtol=FLOAT_RTOL)
    i = np.floor(t * (sde.N - 1)).astype(int)
    f, G = sde.discretize(x, t)
    np.testing.assert_allclose(f, (np.sqrt(1 - betas[i]) - 1)[:, None] * x, rtol=1e-10)
    np.testing.assert_allclose(G, np.sqrt(betas[i]), rtol=FLOAT_RTOL)


def test_subvp_constants() -> None:
    """g, marginal (std without square root) and Euler–Maruyama discretisation of sub-VP."""
    sde = SubVPSDE()
    assert (sde.N, sde.T, sde.eps) == (1000, 1.0, 1e-3)
    t = _times()
    beta = 0.1 + t * (20.0 - 0.1)
    lmc = -0.25 * t**2 * (20.0 - 0.1) - 0.5 * t * 0.1
    x = np.arange(2 * len(t), dtype=float).reshape(len(t), 2) - 3.0
    drift, g = sde.sde(x, t)
    np.testing.assert_allclose(drift, -0.5 * beta[:, None] * x, rtol=FLOAT_RTOL)
    discount = 1 - np.exp(-2 * 0.1 * t - (20.0 - 0.1) * t**2)
    np.testing.assert_allclose(g, np.sqrt(beta * discount), rtol=1e-10)
    mean, std = sde.marginal_prob(x, t)
    np.testing.assert_allclose(mean, np.exp(lmc)[:, None] * x, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(std, 1 - np.exp(2 * lmc), rtol=1e-10)
    f, G = sde.discretize(x, t)
    dt = 1.0 / 1000
    np.testing.assert_allclose(f, drift * dt, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(G, g * np.sqrt(dt), rtol=FLOAT_RTOL)


@pytest.mark.parametrize(
    "sde", [VESDE(0.02, 30.0), VPSDE(0.2, 15.0), SubVPSDE(0.2, 15.0)], ids=SDE_IDS
)
def test_with_levels_keeps_the_sde_and_changes_only_n(sde: SDE) -> None:
    """with_levels(N) is the SDE itself; with_levels(n) has the same parameters and N = n."""
    assert sde.with_levels(sde.N) is sde
    coarse = sde.with_levels(50)
    assert type(coarse) is type(sde)
    assert coarse.get_config() == {**sde.get_config(), "N": 50}
    assert coarse.discrete_index(sde.T) == 49
    t = np.array([0.1, 0.5, 1.0])
    for got, want in zip(
        coarse.marginal_coefficients(t), sde.marginal_coefficients(t), strict=True
    ):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_discrete_index_rounds_down(sde: SDE) -> None:
    """i = floor(t (N - 1) / T): the index changes exactly on the grid t_i = i T / (N - 1)."""
    i = np.array([0, 1, 17, 500, sde.N - 2])
    grid_step = sde.T / (sde.N - 1)
    just_after = (i + 1e-6) * grid_step
    just_before = (i + 1 - 1e-6) * grid_step
    np.testing.assert_array_equal(sde.discrete_index(just_after), i)
    np.testing.assert_array_equal(sde.discrete_index(just_before), i)
    np.testing.assert_array_equal(sde.discrete_index(np.array([sde.T])), [sde.N - 1])


# --- reverse SDE ----------------------------------------------------------------------------


def _toy_score(x: np.ndarray, t: np.ndarray) -> np.ndarray:
    """A score-like function that depends on both x and t."""
    return -x * (1.0 + t[:, None]) + np.sin(t)[:, None]


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
@pytest.mark.parametrize("probability_flow", [False, True])
def test_reverse_sde_formulas(sde: SDE, probability_flow: bool) -> None:
    """Reverse drift f - g^2 s (1/2 for the ODE), diffusion g (0 for the ODE), same for discrete."""
    t = _times()
    x = np.random.default_rng(3).standard_normal((len(t), 3))
    reverse = sde.reverse(_toy_score, probability_flow=probability_flow)
    assert (reverse.T, reverse.N) == (sde.T, sde.N)
    weight = 0.5 if probability_flow else 1.0
    s = _toy_score(x, t)
    drift, g = sde.sde(x, t)
    rev_drift, rev_g = reverse.sde(x, t)
    np.testing.assert_allclose(rev_drift, drift - weight * g[:, None] ** 2 * s, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(rev_g, 0.0 if probability_flow else g)
    assert rev_g.shape == (len(t),)
    f, G = sde.discretize(x, t)
    rev_f, rev_G = reverse.discretize(x, t)
    np.testing.assert_allclose(rev_f, f - weight * G[:, None] ** 2 * s, rtol=FLOAT_RTOL)
    np.testing.assert_allclose(rev_G, 0.0 if probability_flow else G)
    assert rev_G.shape == (len(t),)


# --- sigma tilde ----------------------------------------------------------------------------


@pytest.mark.parametrize("sde", SDES, ids=SDE_IDS)
def test_sigma_tilde_is_std_over_alpha_and_inverts(sde: SDE) -> None:
    """sigma~ = std / alpha, and t_from_sigma_tilde inverts it over [eps, T]."""
    t = np.linspace(sde.eps, sde.T, 101)
    alpha, std = sde.marginal_coefficients(t)
    sigma = sde.sigma_tilde(t)
    np.testing.assert_allclose(sigma, std / alpha, rtol=1e-10)
    np.testing.assert_allclose(sde.t_from_sigma_tilde(sigma), t, rtol=1e-10)
    assert np.all(np.diff(sigma) > 0)


def test_t_from_sigma_tilde_handles_constant_beta() -> None:
    """The quadratic's stable root still works when beta_max = beta_min (linear in t)."""
    sde = VPSDE(beta_min=2.0, beta_max=2.0)
    t = np.linspace(0.01, 1.0, 11)
    np.testing.assert_allclose(sde.t_from_sigma_tilde(sde.sigma_tilde(t)), t, rtol=1e-12)


# --- ancestral steps and corrector alphas ---------------------------------------------------


def test_ve_ancestral_step_is_the_exact_gaussian_posterior() -> None:
    """For a point mass at 0, SMLD ancestral = exact law of x_{i-1} given x_i (both Gaussian).

    With x_i ~ N(0, sigma_i^2) and score -x / sigma_i^2: E[x_{i-1} | x_i] = x_i sigma_{i-1}^2 /
    sigma_i^2 and Var = sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2.
    """
    sde = VESDE(N=50)
    i = np.array([0, 1, 10, 49])
    t = (i + 0.5) / (sde.N - 1)
    t[-1] = 1.0
    sigma = sde.discrete_sigmas[i]
    prev = np.where(i > 0, sde.discrete_sigmas[np.maximum(i - 1, 0)], 0.0)
    x = np.random.default_rng(4).standard_normal((len(i), 2)) * sigma[:, None]
    mean, std = sde.ancestral_step(x, t, -x / sigma[:, None] ** 2)
    np.testing.assert_allclose(mean, x * (prev**2 / sigma**2)[:, None], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(std**2, prev**2 * (sigma**2 - prev**2) / sigma**2, rtol=1e-12)
    assert std[0] == 0.0


def test_vp_ancestral_step_is_ddpm() -> None:
    """DDPM ancestral: mean = (x + beta_i s) / sqrt(1 - beta_i), std = sqrt(beta_i)."""
    sde = VPSDE()
    t = _times()
    x = np.random.default_rng(5).standard_normal((len(t), 3))
    score = -0.3 * x
    beta = sde.discrete_betas[np.floor(t * (sde.N - 1)).astype(int)]
    mean, std = sde.ancestral_step(x, t, score)
    np.testing.assert_allclose(mean, (x + beta[:, None] * score) / np.sqrt(1 - beta)[:, None])
    np.testing.assert_allclose(std, np.sqrt(beta))


def test_subvp_has_no_ancestral_step() -> None:
    """Sub-VP raises NotImplementedError with a message pointing to other predictors."""
    x = np.zeros((2, 2))
    with pytest.raises(NotImplementedError, match="SubVPSDE"):
        SubVPSDE().ancestral_step(x, np.full(2, 0.5), x)


def test_langevin_alpha() -> None:
    """1 for VE; 1 - beta_i at the discrete index for VP and sub-VP."""
    t = _times()
    np.testing.assert_array_equal(VESDE().langevin_alpha(t), 1.0)
    for sde in (VPSDE(), SubVPSDE()):
        i = np.floor(t * (sde.N - 1)).astype(int)
        np.testing.assert_allclose(sde.langevin_alpha(t), 1 - sde.discrete_betas[i])


# --- NCSN noise levels and NCSNv2 rules ------------------------------------------------------


def test_geometric_sigmas() -> None:
    """Decreasing, with the given endpoints and a constant ratio."""
    sigmas = geometric_sigmas(1.0, 0.01, 10)
    assert sigmas.shape == (10,)
    np.testing.assert_allclose(sigmas[[0, -1]], [1.0, 0.01])
    ratios = sigmas[:-1] / sigmas[1:]
    np.testing.assert_allclose(ratios, ratios[0])
    assert ratios[0] > 1


def test_ncsnv2_sigma_max_known_diameter() -> None:
    """A cloud inside a ball of radius 1 with two antipodal points on its surface has diameter 2."""
    rng = np.random.default_rng(6)
    cloud = rng.standard_normal((2500, 3))
    cloud *= 0.99 / np.linalg.norm(cloud, axis=1, keepdims=True).max()
    pole = np.array([0.6, 0.0, 0.8])
    data = np.concatenate([cloud[:1200], pole[None], cloud[1200:], -pole[None]])
    np.testing.assert_allclose(ncsnv2_sigma_max(data, chunk_size=256), 2.0, rtol=1e-14)


def test_ncsnv2_sigma_max_matches_pdist_on_images() -> None:
    """Agrees with scipy's pairwise distances on image-shaped data, whatever the chunk size."""
    data = np.random.default_rng(7).random((300, 4, 4, 3))
    expected = spatial.distance.pdist(data.reshape(300, -1)).max()
    for chunk_size in (7, 1024):
        np.testing.assert_allclose(ncsnv2_sigma_max(data, chunk_size), expected, rtol=1e-14)


@pytest.mark.parametrize("dim", [5, 2, 3072])
def test_ncsnv2_gamma_solves_technique_2(dim: int) -> None:
    """Phi(sqrt(2D)(g-1) + 3g) - Phi(sqrt(2D)(g-1) - 3g) = 0.5 at the returned g > 1."""
    if dim < 5:
        with pytest.raises(ValueError, match="technique 2"):
            ncsnv2_gamma(dim)
        return
    gamma = ncsnv2_gamma(dim)
    shift = np.sqrt(2 * dim) * (gamma - 1)
    overlap = stats.norm.cdf(shift + 3 * gamma) - stats.norm.cdf(shift - 3 * gamma)
    assert gamma > 1
    np.testing.assert_allclose(overlap, 0.5, atol=1e-10)


def test_ncsnv2_num_levels_keeps_ratio_below_gamma() -> None:
    """L levels give a ratio <= gamma; L - 1 levels would exceed it."""
    gamma = ncsnv2_gamma(3072)
    L = ncsnv2_num_levels(50.0, 0.01, gamma)
    ratio = lambda levels: (50.0 / 0.01) ** (1 / (levels - 1))  # noqa: E731
    assert ratio(L) <= gamma < ratio(L - 1)


def _simulated_variance_ratio(eps: float, sigma_L: float, gamma: float, T: int) -> float:
    """Variance ratio after T steps x += a s + sqrt(2a) z on N(0, sigma^2), from gamma sigma."""
    sigma = 3.7 * sigma_L  # any level: the ratio does not depend on it
    a = eps * sigma**2 / sigma_L**2
    variance = (gamma * sigma) ** 2
    for _ in range(T):
        variance = (1 - a / sigma**2) ** 2 * variance + 2 * a
    return variance / sigma**2


def test_ncsnv2_variance_ratio_matches_the_langevin_recursion() -> None:
    """Proposition 3's closed form equals T steps of the variance recursion."""
    for eps in (1e-7, 6.2e-6, 3e-5):
        closed = ncsnv2_variance_ratio(eps, 0.01, 1.04, 5)
        np.testing.assert_allclose(closed, _simulated_variance_ratio(eps, 0.01, 1.04, 5))


@pytest.mark.parametrize(("gamma", "T"), [(1.0376, 5), (1.1, 3), (1.02, 100)])
def test_ncsnv2_step_size_minimises_technique_4(gamma: float, T: int) -> None:
    """The returned eps minimises the ratio (always > 1) and brings it near 1."""
    sigma_L = 0.01
    eps = ncsnv2_step_size(sigma_L, gamma, T)
    best = ncsnv2_variance_ratio(eps, sigma_L, gamma, T)
    for factor in (0.99, 1.01, 0.5, 2.0):
        assert ncsnv2_variance_ratio(eps * factor, sigma_L, gamma, T) > best
    assert 1.0 < best < gamma**2
    # ratio - 1 falls well below its starting value gamma^2 - 1
    assert best - 1 < 0.8 * (gamma**2 - 1)


def test_ncsnv2_step_size_near_paper_cifar10() -> None:
    """CIFAR-10 (sigma_1 = 50, L = 232, sigma_L = 0.01, T = 5): the paper reports eps = 6.2e-6."""
    gamma = (50.0 / 0.01) ** (1 / 231)
    paper_eps = 6.2e-6
    np.testing.assert_allclose(ncsnv2_step_size(0.01, gamma, 5), paper_eps, rtol=0.15)


def test_ncsnv2_schedule() -> None:
    """Techniques 1, 2, 4 end to end: sigma_1 = diameter, ratio <= gamma(D), sigma_L = sigma_min."""
    data = np.random.default_rng(8).random((200, 16))
    sigmas, eps = ncsnv2_schedule(data, sigma_min=0.01, T=5)
    np.testing.assert_allclose(sigmas[0], spatial.distance.pdist(data).max(), rtol=1e-14)
    np.testing.assert_allclose(sigmas[-1], 0.01)
    assert sigmas[0] / sigmas[1] <= ncsnv2_gamma(16)
    assert eps > 0
