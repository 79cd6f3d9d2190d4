"""Keras samplers against the NumPy reference: same score, same injected noise, same output.

The reference runs with ``np.random.default_rng(seed)``; the Keras sampler gets the draws of an
identical generator through ``noise=``, so both see the same normals in the same order. With
per-sample seeds the reference is fed the same counter normals (``CounterRng``).
"""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from reference import checks
from reference import models as ref_models
from reference import samplers as ref_samplers
from reference import sde as ref_sde
from reference.datasets import mixture5
from scoregen_keras import losses, samplers
from scoregen_keras import sde as keras_sde
from scoregen_keras.networks.mlp import MLPScoreNet, load_reference_params
from scoregen_keras.sampling.counter_noise import CounterNoise
from tests.keras.conftest import assert_scaled_close, to_numpy
from tests.keras.counter_rng import CounterRng
from tests.keras.gaussian_model import DATA_STD, sigma_score
from tests.keras.mixture_ops import keras_mixture

SAMPLER_RTOL = 1e-4  # float32 sampler against the float64 reference, relative to the output scale
DIM, HIDDEN, BATCH = 2, (16, 16), 6
WEIGHT_JITTER = 0.3  # moves the MLP off its near-zero initial output: a non-trivial score
NOISE_SEED = 7
FEW_STEPS = 5
PC_STEPS = 25  # PC runs on the SDE with N = n_steps levels; the VP chain needs N > beta_max = 20
IMAGE_SHAPE = (3, 4, 4, 2)  # (batch, H, W, C): samplers are shape-agnostic
N_CHECK = 10_000  # samples for the statistical checks, as the reference tests
CHECK_SEED = 2024

SDES = {
    "ve": (ref_sde.VESDE, keras_sde.VESDE),
    "vp": (ref_sde.VPSDE, keras_sde.VPSDE),
    "subvp": (ref_sde.SubVPSDE, keras_sde.SubVPSDE),
}


def injected(seed: int = NOISE_SEED):
    """(reference rng, Keras noise callable) giving identical normals."""
    return np.random.default_rng(seed), np.random.default_rng(seed).standard_normal


def mlp_pair(cond: str, seed: int = 0):
    """A reference MLPScore with jittered weights and a Keras MLPScoreNet holding the same ones."""
    rng = np.random.default_rng(seed)
    ref = ref_models.MLPScore(DIM, HIDDEN, cond=cond, n_freq=4, rng=rng)
    for name, value in ref.params.items():
        ref.params[name] = value + WEIGHT_JITTER * rng.standard_normal(value.shape)
    conditioning = "t" if cond == "t" else "sigma"
    net = MLPScoreNet(DIM, HIDDEN, conditioning=conditioning, n_freq=4)
    load_reference_params(net, ref.params)
    return ref, net


@pytest.fixture(scope="module")
def t_mlp():
    """t-conditioned (reference, Keras) MLP pair."""
    return mlp_pair("t")


def score_pair(t_mlp, sde_name: str):
    """(ref score_fn, ref sde, keras score_fn, keras sde) for the t-conditioned MLP."""
    ref_cls, keras_cls = SDES[sde_name]
    ref, net = t_mlp
    r_sde, k_sde = ref_cls(), keras_cls()
    return (
        ref_models.noise_conditional_score(ref, r_sde),
        r_sde,
        losses.precondition(net, k_sde),
        k_sde,
    )


def gaussian_scores(sde_name: str):
    """Exact scores of N(0, I) data in any shape: s = -x / (alpha^2 + std^2), both sides."""
    ref_cls, keras_cls = SDES[sde_name]
    r_sde, k_sde = ref_cls(), keras_cls()

    def ref_score(x, t):
        alpha, std = r_sde.marginal_coefficients(t)
        return -x / (alpha**2 + std**2).reshape((-1,) + (1,) * (x.ndim - 1))

    def keras_score(x, t):
        alpha, std = k_sde.marginal_coefficients(t)
        return -x / keras_sde.batch_scalar(ops.square(alpha) + ops.square(std), x)

    return ref_score, r_sde, keras_score, k_sde


# --------------------------------------------------------------------------- Langevin / NCSN


@pytest.mark.parametrize("with_t", [True, False])
def test_langevin_matches_reference(t_mlp, with_t):
    ref_score, _, keras_score, _ = score_pair(t_mlp, "vp")
    x0 = np.random.default_rng(1).standard_normal((BATCH, DIM))
    t = np.full(BATCH, 0.5)
    rng, noise = injected()
    if with_t:
        want, nfe_ref = ref_samplers.langevin(ref_score, x0, rng, 1e-2, FEW_STEPS, t=t)
        got, nfe = samplers.langevin(keras_score, x0, None, 1e-2, FEW_STEPS, t=t, noise=noise)
    else:
        want, nfe_ref = ref_samplers.langevin(lambda x: ref_score(x, t), x0, rng, 1e-2, FEW_STEPS)
        keras_t = keras_sde.to_float(t)
        got, nfe = samplers.langevin(
            lambda x: keras_score(x, keras_t), x0, None, 1e-2, FEW_STEPS, noise=noise
        )
    assert nfe == nfe_ref
    assert_scaled_close(got, want, SAMPLER_RTOL)


@pytest.mark.parametrize("denoise", [True, False])
def test_annealed_langevin_matches_reference(denoise):
    ref, net = mlp_pair("log_sigma", seed=3)
    sigmas = ref_sde.geometric_sigmas(1.0, 0.05, 3)
    rng, noise = injected()
    want, nfe_ref = ref_samplers.annealed_langevin(
        ref_models.sigma_conditional_score(ref), sigmas, (BATCH, DIM), rng, 2, 1e-3, denoise
    )
    got, nfe = samplers.annealed_langevin(
        losses.sigma_conditional_score(net),
        sigmas,
        (BATCH, DIM),
        None,
        2,
        1e-3,
        denoise,
        noise=noise,
    )
    assert nfe == nfe_ref
    assert_scaled_close(got, want, SAMPLER_RTOL)


# --------------------------------------------------------------------------- predictor-corrector

PC_CASES = [
    ("ve", "reverse_diffusion", "langevin", {}),
    ("ve", "euler_maruyama", "ald", {"n_corrector_steps": 2}),
    ("ve", "ancestral", "none", {"denoise": False}),
    ("vp", "reverse_diffusion", "langevin", {"n_corrector_steps": 2}),
    ("vp", "ancestral", "ald", {}),
    ("vp", "euler_maruyama", "none", {}),
    ("subvp", "euler_maruyama", "langevin", {"snr": 0.3}),
    ("subvp", "none", "langevin", {"denoise": False}),
]


@pytest.mark.parametrize(("sde_name", "predictor", "corrector", "kwargs"), PC_CASES)
def test_pc_sample_matches_reference(t_mlp, sde_name, predictor, corrector, kwargs):
    ref_score, r_sde, keras_score, k_sde = score_pair(t_mlp, sde_name)
    settings = {"predictor": predictor, "corrector": corrector, "n_steps": PC_STEPS, **kwargs}
    rng, noise = injected()
    want, nfe_ref = ref_samplers.pc_sample(ref_score, r_sde, (BATCH, DIM), rng, **settings)
    got, nfe = samplers.pc_sample(keras_score, k_sde, (BATCH, DIM), None, noise=noise, **settings)
    assert nfe == nfe_ref
    assert_scaled_close(got, want, SAMPLER_RTOL)


N_SPREAD = 4000
SPREAD_RTOL = 0.1  # 4 000 draws of N(0, I): the sample std is within ~2 % (plus 100-step bias)


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
@pytest.mark.parametrize("predictor", ["reverse_diffusion", "ancestral"])
def test_pc_sample_with_fewer_steps_than_levels_reaches_the_data(sde_name, predictor):
    """100 steps on an SDE of N = 1000: the chain runs on sde.with_levels(100).

    Stepping through the N = 1000 tables instead left the VE samples with std ~18.
    """
    _, _, keras_score, k_sde = gaussian_scores(sde_name)
    x, nfe = samplers.pc_sample(
        keras_score, k_sde, (N_SPREAD, 2), CHECK_SEED, predictor, n_steps=100
    )
    assert nfe == 200
    np.testing.assert_allclose(np.std(to_numpy(x), axis=0), 1.0, rtol=SPREAD_RTOL)


def test_pc_sample_x_init_and_subvp_ancestral(t_mlp):
    ref_score, r_sde, keras_score, k_sde = score_pair(t_mlp, "ve")
    x_init = np.random.default_rng(5).standard_normal((BATCH, DIM))
    rng, noise = injected()
    want, _ = ref_samplers.pc_sample(ref_score, r_sde, (BATCH, DIM), rng, n_steps=3, x_init=x_init)
    got, _ = samplers.pc_sample(
        keras_score, k_sde, (BATCH, DIM), None, n_steps=3, x_init=x_init, noise=noise
    )
    assert_scaled_close(got, want, SAMPLER_RTOL)
    _, _, keras_score, k_sde = score_pair(t_mlp, "subvp")
    with pytest.raises(NotImplementedError):
        samplers.pc_sample(keras_score, k_sde, (BATCH, DIM), 0, "ancestral", n_steps=PC_STEPS)
    with pytest.raises(ValueError, match="discrete betas up to 2 >= 1"):  # 20 / 10 levels
        samplers.pc_sample(keras_score, k_sde, (BATCH, DIM), 0, n_steps=10)
    with pytest.raises(ValueError, match="predictor"):
        samplers.pc_sample(keras_score, k_sde, (BATCH, DIM), 0, "leapfrog", n_steps=2)


# --------------------------------------------------------------------------- ODE


ADAPTIVE = {"RK45": "RK45", "dopri5": "RK45"}  # Keras method -> the reference's


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
@pytest.mark.parametrize("method", ["RK45", "dopri5", "euler", "heun"])
def test_ode_sample_and_encode_match_reference(t_mlp, sde_name, method):
    ref_score, r_sde, keras_score, k_sde = score_pair(t_mlp, sde_name)
    ref_settings = {"method": ADAPTIVE.get(method, method), "n_steps": FEW_STEPS}
    settings = {"method": method, "n_steps": FEW_STEPS}
    rng, noise = injected()
    want, nfe_ref = ref_samplers.ode_sample(ref_score, r_sde, (BATCH, DIM), rng, **ref_settings)
    got, nfe = samplers.ode_sample(keras_score, k_sde, (BATCH, DIM), None, noise=noise, **settings)
    assert_scaled_close(got, want, SAMPLER_RTOL)
    if method not in ADAPTIVE:  # adaptive steps may differ by a few evaluations in float32
        assert nfe == nfe_ref
    want_z, _ = ref_samplers.ode_encode(ref_score, r_sde, want, **ref_settings)
    got_z, _ = samplers.ode_encode(keras_score, k_sde, want, **settings)
    assert_scaled_close(got_z, want_z, SAMPLER_RTOL)


FLOAT64_RTOL = 1e-10  # the same arithmetic in float64, up to the order of the additions


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
def test_dopri5_takes_the_steps_of_solve_ivp_rk45_in_float64(float64_floatx, sde_name):
    k_sde = SDES[sde_name][1]()
    score = keras_mixture(mixture5()).score_fn(k_sde)
    z = np.random.default_rng(NOISE_SEED).standard_normal((BATCH, DIM)) * (
        k_sde.sigma_max if sde_name == "ve" else 1.0
    )
    want, nfe_host = samplers.ode_sample(score, k_sde, (BATCH, DIM), None, z=z)
    got, nfe = samplers.ode_sample(score, k_sde, (BATCH, DIM), None, z=z, method="dopri5")
    assert nfe == nfe_host
    assert_scaled_close(got, to_numpy(want), FLOAT64_RTOL)
    want_z, nfe_host = samplers.ode_encode(score, k_sde, want)
    got_z, nfe = samplers.ode_encode(score, k_sde, want, method="dopri5")
    assert nfe == nfe_host
    assert_scaled_close(got_z, to_numpy(want_z), FLOAT64_RTOL)


def test_a_nan_drift_fails_the_ode_solvers_instead_of_looping(t_mlp):
    _, _, keras_score, k_sde = score_pair(t_mlp, "ve")

    def nan_score(x, t):
        return keras_score(x, t) * np.nan

    with pytest.raises(ValueError, match="not finite"):  # SciPy's RK45 alone would loop forever
        samplers.ode_sample(nan_score, k_sde, (BATCH, DIM), 0)
    with pytest.raises(RuntimeError, match="step size"):
        samplers.ode_sample(nan_score, k_sde, (BATCH, DIM), 0, method="dopri5")


def test_dopri5_shows_progress(t_mlp, capsys):
    _, _, keras_score, k_sde = score_pair(t_mlp, "ve")
    samplers.ode_sample(keras_score, k_sde, (BATCH, DIM), 0, method="dopri5", progress=True)
    assert "ode dopri5" in capsys.readouterr().err


# --------------------------------------------------------------------------- EDM and DPM-Solver++

EDM_CASES = [
    ("ve", {}),
    ("vp", {}),
    ("ve", {"s_churn": 2.0, "s_tmin": 0.05, "s_tmax": 10.0, "s_noise": 1.007}),
    ("subvp", {"s_churn": 1.0, "sigma_max": 20.0}),
]


@pytest.mark.parametrize(("sde_name", "kwargs"), EDM_CASES)
def test_edm_heun_matches_reference(t_mlp, sde_name, kwargs):
    ref_score, r_sde, keras_score, k_sde = score_pair(t_mlp, sde_name)
    rng, noise = injected()
    want, nfe_ref = ref_samplers.edm_heun_sample(
        ref_score, r_sde, (BATCH, DIM), rng, FEW_STEPS, **kwargs
    )
    got, nfe = samplers.edm_heun_sample(
        keras_score, k_sde, (BATCH, DIM), None, FEW_STEPS, noise=noise, **kwargs
    )
    assert nfe == nfe_ref == 2 * FEW_STEPS - 1
    assert_scaled_close(got, want, SAMPLER_RTOL)


@pytest.mark.parametrize("sde_name", ["ve", "vp"])
@pytest.mark.parametrize("schedule", samplers.DPM_SCHEDULES)
def test_dpm_solver_pp_matches_reference(t_mlp, sde_name, schedule):
    ref_score, r_sde, keras_score, k_sde = score_pair(t_mlp, sde_name)
    rng, noise = injected()
    want, nfe_ref = ref_samplers.dpm_solver_pp_sample(
        ref_score, r_sde, (BATCH, DIM), rng, FEW_STEPS, schedule
    )
    got, nfe = samplers.dpm_solver_pp_sample(
        keras_score, k_sde, (BATCH, DIM), None, FEW_STEPS, schedule, noise=noise
    )
    assert nfe == nfe_ref == FEW_STEPS
    assert_scaled_close(got, want, SAMPLER_RTOL)


# --------------------------------------------------------------------------- any data shape

SHAPE_CASES = {
    "pc": lambda m, score, sde, rng: m.pc_sample(score, sde, IMAGE_SHAPE, rng, n_steps=PC_STEPS),
    "ode_heun": lambda m, score, sde, rng: m.ode_sample(
        score, sde, IMAGE_SHAPE, rng, method="heun", n_steps=FEW_STEPS
    ),
    "edm": lambda m, score, sde, rng: m.edm_heun_sample(
        score, sde, IMAGE_SHAPE, rng, FEW_STEPS, s_churn=1.0
    ),
    "dpm": lambda m, score, sde, rng: m.dpm_solver_pp_sample(score, sde, IMAGE_SHAPE, rng, 4),
}


@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_image_shaped_samples_match_reference(case):
    ref_score, r_sde, keras_score, k_sde = gaussian_scores("vp")
    rng, noise = injected()
    run = SHAPE_CASES[case]
    want, nfe_ref = run(ref_samplers, ref_score, r_sde, rng)
    got, nfe = run(_WithNoise(noise), keras_score, k_sde, None)
    assert nfe == nfe_ref
    assert_scaled_close(got, want, SAMPLER_RTOL)


class _WithNoise:
    """The Keras samplers module with ``noise=`` bound, so a case can run on either side."""

    def __init__(self, noise) -> None:
        self.noise = noise

    def __getattr__(self, name: str):
        fn = getattr(samplers, name)
        return lambda *args, **kwargs: fn(*args, noise=self.noise, **kwargs)


# --------------------------------------------------------------------------- seeds, temperature


def test_seeded_sampling_is_reproducible_and_temperature_scales_the_prior():
    _, _, keras_score, k_sde = gaussian_scores("ve")
    first, _ = samplers.dpm_solver_pp_sample(keras_score, k_sde, (BATCH, DIM), 11, FEW_STEPS)
    again, _ = samplers.dpm_solver_pp_sample(keras_score, k_sde, (BATCH, DIM), 11, FEW_STEPS)
    other, _ = samplers.dpm_solver_pp_sample(keras_score, k_sde, (BATCH, DIM), 12, FEW_STEPS)
    np.testing.assert_array_equal(to_numpy(first), to_numpy(again))
    assert not np.allclose(to_numpy(first), to_numpy(other))
    temperature = 0.5
    z = np.random.default_rng(3).standard_normal((BATCH, DIM))
    cold, _ = samplers.ode_sample(
        keras_score,
        k_sde,
        (BATCH, DIM),
        None,
        "euler",
        n_steps=FEW_STEPS,
        noise=iter([z]),
        temperature=temperature,
    )
    explicit, _ = samplers.ode_sample(
        keras_score,
        k_sde,
        (BATCH, DIM),
        None,
        "euler",
        n_steps=FEW_STEPS,
        z=temperature * k_sde.sigma_max * z,
    )
    assert_scaled_close(cold, to_numpy(explicit))


def test_injected_noise_is_checked():
    _, _, keras_score, k_sde = gaussian_scores("vp")
    with pytest.raises(ValueError, match="ran out"):
        samplers.pc_sample(keras_score, k_sde, (BATCH, DIM), None, n_steps=PC_STEPS, noise=[])
    with pytest.raises(ValueError, match="shape"):
        samplers.ode_sample(keras_score, k_sde, (BATCH, DIM), None, noise=lambda s: np.zeros(3))


# --------------------------------------------------------------------------- exact-score checks


@pytest.fixture(scope="module")
def mixture():
    """mixture5 and its keras.ops exact scores."""
    mix = mixture5()
    return mix, keras_mixture(mix)


FS = checks.FAST_SAMPLER_SIGMA_MAX
CHECK_CASES = {
    "pc_ve": ("ve", lambda score, sde, n: samplers.pc_sample(score, sde, (n, DIM), CHECK_SEED)),
    "pc_vp": ("vp", lambda score, sde, n: samplers.pc_sample(score, sde, (n, DIM), CHECK_SEED)),
    "ode_rk45_ve": ("ve", lambda s, sde, n: samplers.ode_sample(s, sde, (n, DIM), CHECK_SEED)),
    "ode_rk45_vp": ("vp", lambda s, sde, n: samplers.ode_sample(s, sde, (n, DIM), CHECK_SEED)),
    "ode_dopri5_vp": (
        "vp",
        lambda s, sde, n: samplers.ode_sample(s, sde, (n, DIM), CHECK_SEED, method="dopri5"),
    ),
    "edm_heun_ve": (
        "ve",
        lambda s, sde, n: samplers.edm_heun_sample(
            s, sde, (n, DIM), CHECK_SEED, checks.EDM_STEPS, sigma_max=FS
        ),
    ),
    "dpm_solver_pp_ve": (
        "ve",
        lambda s, sde, n: samplers.dpm_solver_pp_sample(
            s, sde, (n, DIM), CHECK_SEED, checks.DPM_STEPS, sigma_max=FS
        ),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CHECK_CASES))
def test_exact_score_samplers_pass_sample_checks(mixture, name):
    mix, keras_mix = mixture
    sde_name, run = CHECK_CASES[name]
    k_sde = SDES[sde_name][1]()
    x, nfe = run(keras_mix.score_fn(k_sde), k_sde, N_CHECK)
    result = checks.sample_checks(to_numpy(x), mix, np.random.default_rng(CHECK_SEED))
    assert result["passed"], (name, nfe, result)


def test_one_score_function_serves_data_of_any_rank():
    """Compiled steps are cached by score function: the same one on points, images, points again
    (TensorFlow relaxed the second trace to an unknown rank, which keras.ops.shape refuses)."""
    for shape in [(4, 2), (3, 2, 2, 1), (4, 2)]:
        x = np.random.default_rng(len(shape)).standard_normal(shape).astype(np.float32)
        denoised = samplers.tweedie_denoise(sigma_score, ops.convert_to_tensor(x), DATA_STD)
        # x + σ² (-x / (DATA_STD² + σ²)) with σ = DATA_STD is x / 2
        np.testing.assert_allclose(to_numpy(denoised), x / 2, rtol=1e-6)


# --------------------------------------------------------------------------- per-sample seeds
# The Keras samplers given per-sample seeds against the reference fed the same counter normals
# (CounterRng): the draw layout of each sampler is the reference's order of draws.

COUNTER_SEEDS = (11, 0, 2**40 + 3, 7, 123_456, 5)  # one per example of the batch (BATCH = 6)
COUNTER_CASES = {
    "pc_langevin": lambda m, score, sde, seed: m.pc_sample(
        score, sde, (BATCH, DIM), seed, n_steps=PC_STEPS, n_corrector_steps=2
    ),
    "pc_ald_euler_maruyama": lambda m, score, sde, seed: m.pc_sample(
        score, sde, (BATCH, DIM), seed, "euler_maruyama", "ald", n_steps=PC_STEPS
    ),
    "ode_heun": lambda m, score, sde, seed: m.ode_sample(
        score, sde, (BATCH, DIM), seed, "heun", n_steps=FEW_STEPS
    ),
    "edm_churn": lambda m, score, sde, seed: m.edm_heun_sample(
        score, sde, (BATCH, DIM), seed, FEW_STEPS, s_churn=2.0, s_tmin=0.5
    ),
    "dpm": lambda m, score, sde, seed: m.dpm_solver_pp_sample(score, sde, (BATCH, DIM), seed, 4),
}


@pytest.mark.parametrize("case", sorted(COUNTER_CASES))
def test_per_sample_seeds_draw_in_the_references_order(t_mlp, case):
    """seed = one integer per example: the reference with CounterRng(seeds) gives the same
    samples (churn steps included, EDM drawing only where gamma_i > 0)."""
    ref_score, r_sde, keras_score, k_sde = score_pair(t_mlp, "vp")
    run = COUNTER_CASES[case]
    want, nfe_ref = run(ref_samplers, ref_score, r_sde, CounterRng(COUNTER_SEEDS))
    got, nfe = run(samplers, keras_score, k_sde, np.array(COUNTER_SEEDS))
    assert nfe == nfe_ref
    assert_scaled_close(got, want, SAMPLER_RTOL)


def test_an_int_seed_stands_for_consecutive_per_sample_seeds(t_mlp):
    """seed S is the seeds S .. S+batch-1; a CounterNoise is taken as it is; a wrong count of
    seeds or a negative one is refused."""
    _, _, keras_score, k_sde = score_pair(t_mlp, "ve")
    run = COUNTER_CASES["pc_ald_euler_maruyama"]
    by_int, _ = run(samplers, keras_score, k_sde, 40)
    by_list, _ = run(samplers, keras_score, k_sde, list(range(40, 40 + BATCH)))
    by_source, _ = run(samplers, keras_score, k_sde, CounterNoise(range(40, 46), (DIM,)))
    np.testing.assert_array_equal(to_numpy(by_int), to_numpy(by_list))
    np.testing.assert_array_equal(to_numpy(by_int), to_numpy(by_source))
    with pytest.raises(ValueError, match="5 seeds given for a batch of 6"):
        run(samplers, keras_score, k_sde, list(range(5)))
    with pytest.raises(ValueError, match=r"\[0, 2\*\*64\)"):
        run(samplers, keras_score, k_sde, -1)


@pytest.mark.parametrize("norm_rule", ["batch", "per_example"])
def test_the_langevin_norm_rules_match_reference(t_mlp, norm_rule):
    """Both rules, on the same injected noise (Langevin-only chain, where the rule matters)."""
    ref_score, r_sde, keras_score, k_sde = score_pair(t_mlp, "ve")
    settings = {"predictor": "none", "n_steps": PC_STEPS, "norm_rule": norm_rule, "snr": 0.1}
    rng, noise = injected()
    want, _ = ref_samplers.pc_sample(ref_score, r_sde, (BATCH, DIM), rng, **settings)
    got, _ = samplers.pc_sample(keras_score, k_sde, (BATCH, DIM), None, noise=noise, **settings)
    assert_scaled_close(got, want, SAMPLER_RTOL)


def test_only_the_batch_norm_rule_couples_a_batch(t_mlp):
    """A sample's companions change its PC sample under score_sde's batch-averaged norms, not
    under per-example norms (nor under ALD): seeds 0..5 against 0..2 alone."""
    _, _, keras_score, k_sde = score_pair(t_mlp, "ve")

    def first_three(batch: int, **settings) -> np.ndarray:
        x, _ = samplers.pc_sample(keras_score, k_sde, (batch, DIM), 0, n_steps=PC_STEPS, **settings)
        return to_numpy(x)[:3]

    for settings in ({"norm_rule": "per_example"}, {"corrector": "ald"}):
        np.testing.assert_allclose(
            first_three(6, **settings), first_three(3, **settings), atol=1e-5
        )
    coupled = np.abs(first_three(6) - first_three(3)).max()
    assert coupled > 1e-3, coupled
    with pytest.raises(ValueError, match="norm_rule must be one of"):
        first_three(3, norm_rule="mean")
