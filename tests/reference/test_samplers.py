"""Tests of reference.samplers: formulas, NFE counts, analytic Gaussians, exact-score mixtures."""

from __future__ import annotations

import numpy as np
import pytest

from reference import checks, samplers
from reference.datasets import mixture5
from reference.distributions import Gaussian
from reference.sde import VESDE, VPSDE, SubVPSDE

SDES = {"ve": VESDE, "vp": VPSDE, "subvp": SubVPSDE}
N_MIXTURE_SAMPLES = 10_000


class RecordingRng:
    """Duck-typed rng: returns preset normals in order and records the requested shapes."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = np.random.default_rng(seed)
        self.shapes: list[tuple[int, ...]] = []
        self.draws: list[np.ndarray] = []

    def standard_normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Draw, remember the shape and the values."""
        z = self._rng.standard_normal(shape)
        self.shapes.append(tuple(np.atleast_1d(shape)))
        self.draws.append(z)
        return z


def gaussian_1d() -> Gaussian:
    """A 1-D Gaussian target N(0.5, 0.3)."""
    return Gaussian(np.array([0.5]), np.array([[0.3]]))


def exact_pf_map(target: Gaussian, sde, x_from: np.ndarray, t_from: float, t_to: float):
    """The probability-flow map of a Gaussian: standardise at t_from, unstandardise at t_to."""
    a_from, s_from = sde.marginal_coefficients(np.array([t_from]))
    a_to, s_to = sde.marginal_coefficients(np.array([t_to]))
    sd_from = np.sqrt(a_from**2 * target.cov[0, 0] + s_from**2)
    sd_to = np.sqrt(a_to**2 * target.cov[0, 0] + s_to**2)
    return a_to * target.mean + (x_from - a_from * target.mean) * sd_to / sd_from


# --------------------------------------------------------------------------- analytic Gaussian


@pytest.mark.parametrize("name", list(SDES))
def test_ode_sample_maps_prior_to_exact_transform(name):
    sde, target = SDES[name](), gaussian_1d()
    z = np.linspace(-3.0, 3.0, 7)[:, None] * sde.prior_sampling(np.random.default_rng(0), (1, 1))
    x, nfe = samplers.ode_sample(
        target.score_fn(sde), sde, z.shape, None, z=z, rtol=1e-8, atol=1e-8
    )
    expected = exact_pf_map(target, sde, z, sde.T, sde.eps)
    np.testing.assert_allclose(x, expected, atol=1e-5)
    assert nfe > 0


@pytest.mark.parametrize("method,n_steps,tol", [("euler", 2000, 5e-2), ("heun", 500, 2e-3)])
def test_fixed_step_ode_converges(method, n_steps, tol):
    sde, target = VPSDE(), gaussian_1d()
    z = np.linspace(-2.0, 2.0, 5)[:, None]
    x, nfe = samplers.ode_sample(
        target.score_fn(sde), sde, z.shape, None, method=method, n_steps=n_steps, z=z
    )
    np.testing.assert_allclose(x, exact_pf_map(target, sde, z, sde.T, sde.eps), atol=tol)
    assert nfe == n_steps * (2 if method == "heun" else 1)


@pytest.mark.parametrize("name", ["ve", "vp"])
def test_ode_encode_inverts_ode_sample(name):
    sde, target = SDES[name](), gaussian_1d()
    x0 = np.array([[-0.5], [0.2], [1.4]])
    z, _ = samplers.ode_encode(target.score_fn(sde), sde, x0, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(z, exact_pf_map(target, sde, x0, sde.eps, sde.T), rtol=1e-5)
    x_back, _ = samplers.ode_sample(
        target.score_fn(sde), sde, x0.shape, None, z=z, rtol=1e-8, atol=1e-8
    )
    np.testing.assert_allclose(x_back, x0, atol=1e-5)


def test_a_nan_score_stops_the_adaptive_ode_with_one_error():
    sde, target = VESDE(), gaussian_1d()

    def nan_score(x, t):
        return target.score_fn(sde)(x, t) * np.nan

    # without the check, SciPy's RK45 retries its first step forever
    with pytest.raises(ValueError, match="not finite at t = 1"):
        samplers.ode_sample(nan_score, sde, (3, 1), np.random.default_rng(0))


@pytest.mark.parametrize("name", ["ve", "vp", "subvp"])
def test_edm_and_dpm_solver_converge_to_pf_map(name):
    sde, target = SDES[name](), gaussian_1d()
    sigma_max = float(sde.sigma_tilde(np.array([sde.T]))[0])
    sigma_min = float(sde.sigma_tilde(np.array([sde.eps]))[0])
    rng = RecordingRng(3)
    x_edm, nfe_edm = samplers.edm_heun_sample(target.score_fn(sde), sde, (4, 1), rng, n_steps=200)
    # exact: x~ = sigma_max z flows to mean + (x~ - mean) sd(sigma_min)/sd(sigma_max), then D
    var = target.cov[0, 0]
    x_min = target.mean + (rng.draws[0] * sigma_max - target.mean) * np.sqrt(
        (var + sigma_min**2) / (var + sigma_max**2)
    )
    denoised = target.mean + (x_min - target.mean) * var / (var + sigma_min**2)
    np.testing.assert_allclose(x_edm, denoised, atol=1e-3)
    assert nfe_edm == 2 * 200 - 1
    rng = RecordingRng(3)
    x_dpm, nfe_dpm = samplers.dpm_solver_pp_sample(
        target.score_fn(sde), sde, (4, 1), rng, n_steps=200
    )
    np.testing.assert_allclose(x_dpm, denoised, atol=1e-3)
    assert nfe_dpm == 200


def test_dpm_solver_schedules():
    sde = VPSDE()
    for schedule in samplers.DPM_SCHEDULES:
        sigmas = samplers.dpm_solver_sigmas(sde, 10, schedule, 0.01, 150.0, sde.eps, 7.0)
        assert sigmas.shape == (11,) and sigmas[-1] == 0.0 and np.all(np.diff(sigmas) < 0)
    logsnr = samplers.dpm_solver_sigmas(sde, 10, "logsnr", 0.01, 150.0, sde.eps, 7.0)
    np.testing.assert_allclose(np.diff(np.log(logsnr[:-1])), np.log(0.01 / 150.0) / 9)
    with pytest.raises(ValueError):
        samplers.dpm_solver_sigmas(sde, 10, "bogus", 0.01, 150.0, sde.eps, 7.0)


def test_karras_sigmas_formula():
    sigmas = samplers.karras_sigmas(0.002, 80.0, 18, 7.0)
    i = np.arange(18)
    expected = (80.0 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    np.testing.assert_allclose(sigmas[:-1], expected)
    assert sigmas[-1] == 0.0


def test_edm_churn_draws_noise_only_when_gamma_positive():
    sde, target = VESDE(), gaussian_1d()
    rng = RecordingRng()
    samplers.edm_heun_sample(target.score_fn(sde), sde, (3, 1), rng, n_steps=5)
    assert rng.shapes == [(3, 1)]
    rng = RecordingRng()
    _, nfe = samplers.edm_heun_sample(target.score_fn(sde), sde, (3, 1), rng, 5, s_churn=2.0)
    assert rng.shapes == [(3, 1)] * 6 and nfe == 9


def test_langevin_targets_gaussian():
    target = gaussian_1d()
    x0 = np.zeros((20_000, 1))
    x, nfe = samplers.langevin(target.score, x0, np.random.default_rng(0), 1e-2, 1500)
    assert nfe == 1500
    assert abs(x.mean() - 0.5) < 0.02
    assert abs(x.var() - 0.3) < 0.02


def test_annealed_langevin_nfe_order_and_denoise():
    target = gaussian_1d()
    sigmas = np.array([1.0, 0.1])
    rng = RecordingRng()
    x, nfe = samplers.annealed_langevin(
        target.sigma_score_fn(), sigmas, (4, 1), rng, n_steps_each=3, step_lr=1e-3
    )
    assert nfe == 2 * 3 + 1 and rng.shapes == [(4, 1)] * (1 + 6)
    # undo the final Tweedie step by hand: x = y + sigma_L^2 s(y, sigma_L)
    rng2 = RecordingRng()
    y, _ = samplers.annealed_langevin(
        target.sigma_score_fn(), sigmas, (4, 1), rng2, 3, 1e-3, denoise=False
    )
    expected = y + 0.1**2 * target.score(y, 1.0, 0.1)
    np.testing.assert_allclose(x, expected)


# --------------------------------------------------------------------------- step formulas


def test_predictor_formulas():
    target = gaussian_1d()
    x = np.array([[0.3], [-1.2]])
    t = np.array([0.5, 0.7])
    ve = VESDE(N=100)
    score = target.score_fn(ve)
    rng = RecordingRng()
    new, mean = samplers.reverse_diffusion(score, ve, x, t, rng, -0.01)
    i = ve.discrete_index(t)
    var_step = ve.discrete_sigmas[i] ** 2 - ve.discrete_sigmas[i - 1] ** 2
    np.testing.assert_allclose(mean, x + var_step[:, None] * score(x, t))
    np.testing.assert_allclose(new, mean + np.sqrt(var_step)[:, None] * rng.draws[0])
    rng = RecordingRng()
    dt = -0.01
    new, mean = samplers.euler_maruyama(score, ve, x, t, rng, dt)
    _, g = ve.sde(x, t)
    np.testing.assert_allclose(mean, x - g[:, None] ** 2 * score(x, t) * dt)
    np.testing.assert_allclose(new, mean + g[:, None] * np.sqrt(-dt) * rng.draws[0])
    vp = VPSDE(N=100)
    score = target.score_fn(vp)
    rng = RecordingRng()
    new, mean = samplers.ancestral(score, vp, x, t, rng, dt)
    beta = vp.discrete_betas[vp.discrete_index(t)][:, None]
    np.testing.assert_allclose(mean, (x + beta * score(x, t)) / np.sqrt(1 - beta))
    np.testing.assert_allclose(new, mean + np.sqrt(beta) * rng.draws[0])


def test_corrector_formulas():
    target = gaussian_1d()
    x = np.array([[0.3, 0.1], [-1.2, 2.0], [0.0, 0.5]])
    t = np.full(3, 0.4)
    vp = VPSDE(N=100)
    score = Gaussian(np.zeros(2), np.eye(2)).score_fn(vp)
    snr = 0.16
    rng = RecordingRng()
    new, mean = samplers.langevin_corrector(score, vp, x, t, rng, snr, 1)
    z, s = rng.draws[0], score(x, t)
    alpha = vp.alphas[vp.discrete_index(t)]
    ratio = np.linalg.norm(z, axis=1).mean() / np.linalg.norm(s, axis=1).mean()
    eps = 2 * alpha * (snr * ratio) ** 2
    np.testing.assert_allclose(mean, x + eps[:, None] * s)
    np.testing.assert_allclose(new, mean + np.sqrt(2 * eps)[:, None] * z)
    rng = RecordingRng()
    new, mean = samplers.ald(score, vp, x, t, rng, snr, 1)
    _, std = vp.marginal_coefficients(t)
    eps = 2 * alpha * (snr * std) ** 2
    np.testing.assert_allclose(new, x + eps[:, None] * s + np.sqrt(2 * eps)[:, None] * rng.draws[0])
    assert samplers.none(score, vp, x, t, rng, snr, 1)[0] is x
    assert target.dim == 1


def test_registries():
    assert set(samplers.PREDICTORS) >= {"euler_maruyama", "reverse_diffusion", "ancestral"}
    assert set(samplers.CORRECTORS) == {"langevin", "ald", "none"}


@pytest.mark.parametrize(
    "corrector,n_corrector,expected_per_step", [("langevin", 2, 3), ("ald", 1, 2), ("none", 1, 1)]
)
def test_pc_sample_nfe_and_draw_order(corrector, n_corrector, expected_per_step):
    sde, target = VESDE(N=10), gaussian_1d()
    rng = RecordingRng()
    _, nfe = samplers.pc_sample(
        target.score_fn(sde), sde, (5, 1), rng, corrector=corrector, n_corrector_steps=n_corrector
    )
    assert nfe == 10 * expected_per_step
    assert len(rng.shapes) == 1 + 10 * expected_per_step  # prior, then corrector + predictor


def test_pc_sample_gaussian_moments():
    sde, target = VPSDE(N=500), gaussian_1d()
    x, _ = samplers.pc_sample(target.score_fn(sde), sde, (20_000, 1), np.random.default_rng(0))
    assert abs(x.mean() - 0.5) < 0.02
    assert abs(x.var() - 0.3) < 0.02


@pytest.mark.parametrize(
    ("name", "predictor"),
    [
        (name, predictor)
        for name in SDES
        for predictor in ("reverse_diffusion", "ancestral", "euler_maruyama")
        if (name, predictor) != ("subvp", "ancestral")  # sub-VP has no ancestral rule
    ],
)
def test_pc_sample_with_fewer_steps_than_levels_reaches_the_target(name, predictor):
    """100 steps on an SDE of N = 1000: the chain runs on sde.with_levels(100).

    Measured errors with 20 000 draws: mean <= 0.004, variance <= 0.008 off (discretisation of
    100 steps included). Stepping the N = 1000 tables instead gave variance 322 (VE) and 0.43 (VP).
    """
    sde, target = SDES[name](), gaussian_1d()
    x, nfe = samplers.pc_sample(
        target.score_fn(sde), sde, (20_000, 1), np.random.default_rng(0), predictor, n_steps=100
    )
    assert nfe == 200
    assert abs(x.mean() - 0.5) < 0.02
    assert abs(x.var() - 0.3) < 0.02


@pytest.mark.parametrize("name", ["vp", "subvp"])
def test_pc_sample_refuses_a_vp_chain_with_betas_of_one_or_more(name):
    """N = 10 <= beta_max = 20: beta_i up to 2, so sqrt(1 - beta_i) would be NaN; a clear error."""
    sde, target = SDES[name](), gaussian_1d()
    with pytest.raises(ValueError, match="N = 10 levels has discrete betas up to 2 >= 1"):
        samplers.pc_sample(target.score_fn(sde), sde, (2, 1), np.random.default_rng(0), n_steps=10)
    x, _ = samplers.pc_sample(
        target.score_fn(sde), sde, (2, 1), np.random.default_rng(0), n_steps=21
    )
    assert np.isfinite(x).all()


def test_subvp_ancestral_raises():
    sde, target = SubVPSDE(N=100), gaussian_1d()
    with pytest.raises(NotImplementedError):
        samplers.pc_sample(
            target.score_fn(sde), sde, (2, 1), np.random.default_rng(0), predictor="ancestral"
        )


def test_any_data_shape():
    sde = VESDE(N=5)
    score = Gaussian(np.zeros(12), np.eye(12)).score_fn(sde)

    def image_score(x, t):
        return score(x.reshape(x.shape[0], -1), t).reshape(x.shape)

    shape = (3, 2, 2, 3)
    for x, _ in [
        samplers.pc_sample(image_score, sde, shape, np.random.default_rng(0)),
        samplers.ode_sample(image_score, sde, shape, np.random.default_rng(0), "heun", n_steps=4),
        samplers.edm_heun_sample(image_score, sde, shape, np.random.default_rng(0), 4),
        samplers.dpm_solver_pp_sample(image_score, sde, shape, np.random.default_rng(0), 4),
    ]:
        assert x.shape == shape and np.all(np.isfinite(x))


# --------------------------------------------------------------------------- mixture5, exact scores

SUITE = checks.exact_score_samplers(mixture5())


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SUITE))
def test_exact_score_sampler_matches_mixture5(name):
    mixture = mixture5()
    x, nfe = SUITE[name](np.random.default_rng(0), N_MIXTURE_SAMPLES)
    result = checks.sample_checks(x, mixture, np.random.default_rng(1))
    print("\n" + checks.TABLE_HEADER + "\n" + checks.format_row(name, nfe, result))
    if name.startswith("edm"):
        assert nfe <= 40
    if name.startswith("dpm"):
        assert nfe <= 20
    assert abs(result["logp_gap"]) <= checks.LOGP_GAP_BOUND
    assert result["occupancy_tv"] <= checks.OCCUPANCY_TV_BOUND
    assert result["sw1_ratio"] <= checks.SW1_RATIO_BOUND


def test_sample_checks_accept_true_and_reject_wide_samples():
    mixture = mixture5()
    rng = np.random.default_rng(0)
    good = checks.sample_checks(mixture.sample(rng, 5000), mixture, rng, n_true_logp=50_000)
    assert good["passed"]
    wide = mixture.sample(rng, 5000, 1.0, 0.2)  # every component widened by 0.2^2 I
    bad = checks.sample_checks(wide, mixture, rng, n_true_logp=50_000)
    assert not bad["logp_ok"] and not bad["passed"]
    tilted = mixture.sample(rng, 5000)
    tilted[mixture.posterior(tilted).argmax(1) == 0] = mixture.means[1]
    assert not checks.sample_checks(tilted, mixture, rng, n_true_logp=50_000)["occupancy_ok"]
