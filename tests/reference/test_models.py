"""Reference score models: hand-derived derivatives against central finite differences."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from reference import models
from reference.models import (
    ACTIVATIONS,
    Adam,
    LinearScore,
    MLPScore,
    flatten_grads,
    get_flat_params,
    noise_conditional_score,
    set_flat_params,
    sigma_conditional_score,
    sinusoidal_embedding,
)
from reference.sde import VESDE, VPSDE

FD_STEP = 1e-6  # central differences: truncation O(h²) and rounding O(eps/h) both ≈ 1e-10
FD_TOL = 1e-6  # relative norm error allowed between a hand gradient and finite differences
DIM, BATCH, N_TANGENTS = 3, 5, 2
SMALL_HIDDEN = (6, 5)  # small widths keep finite differences over every parameter fast
SMALL_N_FREQ = 2


def fd_gradient(f: Callable[[np.ndarray], float], theta: np.ndarray) -> np.ndarray:
    """Central finite-difference gradient of a scalar function of a vector."""
    grad = np.empty_like(theta)
    for i in range(len(theta)):
        step = np.zeros_like(theta)
        step[i] = FD_STEP
        grad[i] = (f(theta + step) - f(theta - step)) / (2 * FD_STEP)
    return grad


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    """Relative norm error ‖a − b‖ / ‖b‖."""
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def random_params(model: models.ScoreModel, rng: np.random.Generator) -> None:
    """Give every parameter (biases and output layer too) order-one random values."""
    set_flat_params(model, rng.standard_normal(len(get_flat_params(model))) * 0.5)


def make_model(kind: str, rng: np.random.Generator) -> models.ScoreModel:
    """A small model: "linear", or "mlp-<activation>-<cond>"."""
    if kind == "linear":
        model: models.ScoreModel = LinearScore(DIM)
    else:
        _, activation, cond = kind.split("-")
        model = MLPScore(
            DIM, SMALL_HIDDEN, activation=activation, cond=cond, n_freq=SMALL_N_FREQ, rng=rng
        )
    random_params(model, rng)
    return model


MODEL_KINDS = [
    "linear",
    "mlp-silu-t",
    "mlp-softplus-t",
    "mlp-silu-log_sigma",
    "mlp-softplus-log_sigma",
]


def param_fd(model: models.ScoreModel, loss: Callable[[], float]) -> np.ndarray:
    """Finite-difference gradient of loss() with respect to the model's flat parameters."""
    theta0 = get_flat_params(model)

    def f(theta: np.ndarray) -> float:
        set_flat_params(model, theta)
        return loss()

    grad = fd_gradient(f, theta0)
    set_flat_params(model, theta0)
    return grad


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_derivatives(name: str) -> None:
    """act' and act'' agree with finite differences of act and act'."""
    act, act1, act2 = ACTIVATIONS[name]
    a = np.linspace(-6.0, 6.0, 41)
    fd1 = (act(a + FD_STEP) - act(a - FD_STEP)) / (2 * FD_STEP)
    fd2 = (act1(a + FD_STEP) - act1(a - FD_STEP)) / (2 * FD_STEP)
    assert rel_err(act1(a), fd1) < FD_TOL
    assert rel_err(act2(a), fd2) < FD_TOL


def test_sinusoidal_embedding_layout() -> None:
    """emb = concat(u, sin(freqs u), cos(freqs u)), freqs = 2**k pi / 2."""
    u = np.array([0.3, -1.2])
    emb = sinusoidal_embedding(u, 3)
    freqs = np.array([1.0, 2.0, 4.0]) * np.pi / 2
    expected = np.concatenate(
        [u[:, None], np.sin(u[:, None] * freqs), np.cos(u[:, None] * freqs)], 1
    )
    np.testing.assert_allclose(emb, expected, rtol=0, atol=1e-15)


def test_mlp_param_names_shapes_and_log_sigma_embedding() -> None:
    """Params W0, b0, ..., W_out, b_out; cond="log_sigma" embeds log(sigma)."""
    rng = np.random.default_rng(0)
    model = MLPScore(2, (7, 4), cond="log_sigma", n_freq=3, rng=rng)
    assert list(model.params) == ["W0", "b0", "W1", "b1", "W_out", "b_out"]
    assert model.params["W0"].shape == (2 + 1 + 2 * 3, 7)
    assert model.params["W_out"].shape == (4, 2)
    sigma = np.array([0.5, 2.0])
    np.testing.assert_allclose(model.embed(sigma, 2), sinusoidal_embedding(np.log(sigma), 3))


def test_mlp_init_is_seeded() -> None:
    """Same rng seed, same parameters."""
    a = MLPScore(2, (8,), rng=np.random.default_rng(3))
    b = MLPScore(2, (8,), rng=np.random.default_rng(3))
    np.testing.assert_array_equal(get_flat_params(a), get_flat_params(b))


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_backward_matches_finite_differences(kind: str) -> None:
    """backward(cache, R) is the gradient of sum(out * R), for the parameters and for x."""
    rng = np.random.default_rng(1)
    model = make_model(kind, rng)
    x = rng.standard_normal((BATCH, DIM))
    c = rng.uniform(0.2, 1.0, BATCH)
    R = rng.standard_normal((BATCH, DIM))

    _, cache = model.forward(x, c)
    grads, dx = model.backward(cache, R)
    fd = param_fd(model, lambda: float(np.sum(model.forward(x, c)[0] * R)))
    assert rel_err(flatten_grads(model, grads), fd) < FD_TOL

    fd_x = fd_gradient(
        lambda xf: float(np.sum(model.forward(xf.reshape(x.shape), c)[0] * R)), x.ravel()
    )
    assert rel_err(dx.ravel(), fd_x) < FD_TOL


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_jvp_forward_is_directional_derivative(kind: str) -> None:
    """out_dot[b, k] = (d out / d x)(x_b) V[b, k], checked by central differences along V."""
    rng = np.random.default_rng(2)
    model = make_model(kind, rng)
    x = rng.standard_normal((BATCH, DIM))
    c = rng.uniform(0.2, 1.0, BATCH)
    V = rng.standard_normal((BATCH, N_TANGENTS, DIM))
    out, out_dot, _ = model.jvp_forward(x, c, V)
    np.testing.assert_array_equal(out, model.forward(x, c)[0])
    for k in range(N_TANGENTS):
        plus = model.forward(x + FD_STEP * V[:, k], c)[0]
        minus = model.forward(x - FD_STEP * V[:, k], c)[0]
        assert rel_err(out_dot[:, k], (plus - minus) / (2 * FD_STEP)) < FD_TOL


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_jvp_backward_matches_finite_differences(kind: str) -> None:
    """jvp_backward(cache, R, Q) is the parameter gradient of sum(out R) + sum(out_dot Q)."""
    rng = np.random.default_rng(3)
    model = make_model(kind, rng)
    x = rng.standard_normal((BATCH, DIM))
    c = rng.uniform(0.2, 1.0, BATCH)
    V = rng.standard_normal((BATCH, N_TANGENTS, DIM))
    R = rng.standard_normal((BATCH, DIM))
    Q = rng.standard_normal((BATCH, N_TANGENTS, DIM))

    def functional() -> float:
        out, out_dot, _ = model.jvp_forward(x, c, V)
        return float(np.sum(out * R) + np.sum(out_dot * Q))

    _, _, cache = model.jvp_forward(x, c, V)
    grads = model.jvp_backward(cache, R, Q)
    assert rel_err(flatten_grads(model, grads), param_fd(model, functional)) < FD_TOL


@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_score_backward_matches_finite_differences(kind: str) -> None:
    """score_backward(cache, R) is the gradient of sum(score * R), parameters and x."""
    rng = np.random.default_rng(4)
    model = make_model(kind, rng)
    x = rng.standard_normal((BATCH, DIM))
    t = rng.uniform(0.1, 1.0, BATCH)
    alpha, std = rng.uniform(0.3, 1.0, BATCH), rng.uniform(0.1, 2.0, BATCH)
    R = rng.standard_normal((BATCH, DIM))

    def functional(xx: np.ndarray = x) -> float:
        return float(np.sum(model.score_forward(xx, t, alpha, std)[0] * R))

    _, cache = model.score_forward(x, t, alpha, std)
    grads, dx = model.score_backward(cache, R)
    assert rel_err(flatten_grads(model, grads), param_fd(model, functional)) < FD_TOL
    fd_x = fd_gradient(lambda xf: functional(xf.reshape(x.shape)), x.ravel())
    assert rel_err(dx.ravel(), fd_x) < FD_TOL


def test_mlp_preconditioning_formula() -> None:
    """score(x, t) = out(c_in x, cond) / std with c_in = 1/sqrt(alpha² + std²), cond = t or std."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((BATCH, 2))
    t = rng.uniform(0.1, 1.0, BATCH)
    for cond in ("t", "log_sigma"):
        model = MLPScore(2, (8,), cond=cond, n_freq=3, rng=rng)
        random_params(model, rng)
        sde = VPSDE()
        alpha, std = sde.marginal_coefficients(t)
        c_in = 1.0 / np.sqrt(alpha**2 + std**2)
        expected = model.forward(c_in[:, None] * x, t if cond == "t" else std)[0] / std[:, None]
        np.testing.assert_allclose(noise_conditional_score(model, sde)(x, t), expected, rtol=1e-14)


def test_sigma_conditional_score_is_ve_preconditioning() -> None:
    """sigma_conditional_score uses alpha = 1, std = sigma, cond = sigma."""
    rng = np.random.default_rng(6)
    model = MLPScore(2, (8,), cond="log_sigma", n_freq=3, rng=rng)
    random_params(model, rng)
    x = rng.standard_normal((BATCH, 2))
    sigma = rng.uniform(0.05, 3.0, BATCH)
    expected = model.forward(x / np.sqrt(1 + sigma[:, None] ** 2), sigma)[0] / sigma[:, None]
    np.testing.assert_allclose(sigma_conditional_score(model)(x, sigma), expected, rtol=1e-14)
    # for VE, alpha = 1 and std = sigma(t): the two wrappers agree
    sde = VESDE()
    t = rng.uniform(0.1, 1.0, BATCH)
    _, std = sde.marginal_coefficients(t)
    np.testing.assert_allclose(
        noise_conditional_score(model, sde)(x, t),
        sigma_conditional_score(model)(x, std),
        rtol=1e-12,
    )


def test_flat_params_round_trip() -> None:
    """get/set of the flat vector round-trips and copies (no aliasing of the caller's vector)."""
    rng = np.random.default_rng(7)
    model = MLPScore(2, (4, 3), n_freq=1, rng=rng)
    theta = rng.standard_normal(len(get_flat_params(model)))
    set_flat_params(model, theta)
    np.testing.assert_array_equal(get_flat_params(model), theta)
    model.params["b0"] += 1.0
    assert not np.array_equal(get_flat_params(model), theta)
    with pytest.raises(ValueError):
        set_flat_params(model, theta[:-1])


def test_adam_first_step_and_clipping() -> None:
    """First Adam step moves each coordinate by ≈ lr·sign(g); clipping rescales the global norm."""
    lr = 0.1
    params = {"a": np.array([1.0, -2.0]), "b": np.array([0.5])}
    grads = {"a": np.array([3.0, -4.0]), "b": np.array([0.0])}
    Adam(lr=lr).step(params, grads)
    # bias-corrected m/sqrt(v) = g/|g| on step 1
    np.testing.assert_allclose(params["a"], [1.0 - lr, -2.0 + lr], rtol=1e-7)
    np.testing.assert_array_equal(params["b"], [0.5])

    # with clipping, m_hat/sqrt(v_hat) is invariant to scale on step 1: check the moment instead
    opt = Adam(lr=lr, grad_clip=1.0)
    opt.step({"a": np.zeros(2), "b": np.zeros(1)}, grads)
    np.testing.assert_allclose(opt.m["a"] / (1 - opt.beta1), np.array([3.0, -4.0]) / 5.0)


def test_adam_minimises_a_quadratic() -> None:
    """Adam drives a separable quadratic to its minimum; state is kept per parameter name."""
    target = {"u": np.array([1.0, -3.0]), "w": np.array([[2.0]])}
    params = {"u": np.zeros(2), "w": np.zeros((1, 1))}
    opt = Adam(lr=0.05)
    for _ in range(2000):
        opt.step(params, {k: params[k] - target[k] for k in params})
    assert set(opt.m) == {"u", "w"}
    for k in target:
        np.testing.assert_allclose(params[k], target[k], atol=1e-3)


def test_unknown_options_raise() -> None:
    """Bad activation / cond names are rejected."""
    with pytest.raises(ValueError):
        MLPScore(2, activation="relu")
    with pytest.raises(ValueError):
        MLPScore(2, cond="sigma_index")
