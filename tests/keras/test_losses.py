"""Keras losses against reference.losses: same values for the same randomness, and autodiff
parameter gradients (through scoregen_keras.backend) equal to the reference's hand-derived ones."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from keras import ops

from reference import losses as ref_losses
from reference import models as ref_models
from reference import sde as ref_sde
from scoregen_keras import backend, losses
from scoregen_keras import sde as k_sde
from scoregen_keras.networks.mlp import MLPScoreNet, load_reference_params
from tests.keras.conftest import to_numpy

DIM, HIDDEN, N_FREQ, BATCH = 3, (16, 16), 4, 8
GRAD_RTOL = 1e-4  # relative error of each parameter's gradient, in norm
REF_COND = {"t": "t", "sigma": "log_sigma"}
SDES = {
    "VESDE": (ref_sde.VESDE, k_sde.VESDE),
    "VPSDE": (ref_sde.VPSDE, k_sde.VPSDE),
    "SubVPSDE": (ref_sde.SubVPSDE, k_sde.SubVPSDE),
}


def make_pair(rng, conditioning="t", activation="silu"):
    """A reference MLPScore (weights moved off their init) and its Keras copy."""
    ref = ref_models.MLPScore(
        DIM, HIDDEN, activation=activation, cond=REF_COND[conditioning], n_freq=N_FREQ, rng=rng
    )
    for name, value in ref.params.items():
        ref.params[name] = value + 0.3 * rng.standard_normal(value.shape)
    net = MLPScoreNet(DIM, HIDDEN, activation=activation, conditioning=conditioning, n_freq=N_FREQ)
    load_reference_params(net, ref.params)
    return ref, net


def named_variables(net: MLPScoreNet) -> dict[str, keras.Variable]:
    """The network's variables under the reference's parameter names."""
    names = [(f"W{l}", f"b{l}") for l in range(len(net.hidden_layers))] + [("W_out", "b_out")]
    layers = [*net.hidden_layers, net.out_layer]
    out = {}
    for layer, (w_name, b_name) in zip(layers, names, strict=True):
        out[w_name], out[b_name] = layer.kernel, layer.bias
    return out


def assert_loss_and_grads(loss_fn, net, want_loss, want_grads, assert_close):
    """Value of loss_fn() and its parameter gradients against the reference's."""
    variables = named_variables(net)
    loss, grads = backend.value_and_param_grad(loss_fn, list(variables.values()))
    assert_close(loss, want_loss)
    for name, grad in zip(variables, grads, strict=True):
        got, want = to_numpy(grad), want_grads[name]
        err = np.linalg.norm(got - want) / np.linalg.norm(want)
        assert err < GRAD_RTOL, f"{name}: relative gradient error {err:.2e}"


def f32(a):
    """Round a test input to float32 (both implementations then see the same numbers)."""
    return np.asarray(a, dtype=np.float32)


@pytest.fixture
def data(rng):
    """x, z of shape (batch, dim), float32 values."""
    return f32(rng.standard_normal((BATCH, DIM))), f32(rng.standard_normal((BATCH, DIM)))


# --- preconditioning ---------------------------------------------------------------------------


@pytest.mark.parametrize("sde_name", sorted(SDES))
@pytest.mark.parametrize("conditioning", ["t", "sigma"])
def test_precondition_matches_reference(rng, data, sde_name, conditioning, assert_close):
    ref_cls, k_cls = SDES[sde_name]
    ref, net = make_pair(rng, conditioning)
    ref_s, k_s = ref_cls(), k_cls()
    x, _ = data
    t = f32(rng.uniform(ref_s.eps, 1.0, BATCH))
    want = ref_models.noise_conditional_score(ref, ref_s)(x.astype(float), t.astype(float))
    assert_close(losses.precondition(net, k_s)(x, t), want)
    assert losses.noise_conditional_score is losses.precondition


@pytest.mark.parametrize("conditioning", ["t", "sigma"])
def test_sigma_conditional_score_matches_reference(rng, data, conditioning, assert_close):
    ref, net = make_pair(rng, conditioning)
    x, _ = data
    sigma = f32(np.exp(rng.uniform(np.log(0.01), np.log(10.0), BATCH)))
    want = ref_models.sigma_conditional_score(ref)(x.astype(float), sigma.astype(float))
    assert_close(losses.sigma_conditional_score(net)(x, sigma), want)


class _IndexNet:
    """Stand-in for a sigma-index network: returns its conditioning index as the output."""

    conditioning = "sigma_index"

    def __call__(self, x, cond):
        return ops.zeros_like(x) + ops.cast(cond, x.dtype)[:, None]


def test_sigma_index_conditioning_picks_nearest_level():
    sigmas = np.array([1.0, 0.3, 0.1, 0.03, 0.01])
    sigma = np.array([1.0, 0.1, 0.011, 0.29], dtype=np.float32)
    x = np.zeros((4, 2), dtype=np.float32)
    score = to_numpy(losses.sigma_conditional_score(_IndexNet(), sigmas)(x, sigma))
    np.testing.assert_allclose(score[:, 0] * sigma, [0, 2, 4, 1], atol=1e-5)
    with pytest.raises(ValueError, match="sigmas"):
        losses.sigma_conditional_score(_IndexNet())
    with pytest.raises(ValueError, match="conditioning"):
        losses.precondition(_IndexNet(), k_sde.VESDE())


# --- denoising losses -------------------------------------------------------------------------


@pytest.mark.parametrize("reduce", sorted(ref_losses.REDUCTIONS))
@pytest.mark.parametrize("conditioning", ["t", "sigma"])
def test_denoising_score_matching(rng, data, reduce, conditioning, assert_close):
    ref, net = make_pair(rng, conditioning)
    x, z = data
    sigma = f32(np.exp(rng.uniform(np.log(0.01), np.log(5.0), BATCH)))
    want_loss, want_grads = ref_losses.denoising_score_matching(
        ref, x.astype(float), z.astype(float), sigma.astype(float), reduce
    )
    score_fn = losses.sigma_conditional_score(net)
    assert_loss_and_grads(
        lambda: losses.denoising_score_matching(score_fn, x, z, sigma, reduce),
        net,
        want_loss,
        want_grads,
        assert_close,
    )


def test_denoising_score_matching_scalar_sigma(rng, data, assert_close):
    ref, net = make_pair(rng, "sigma")
    x, z = data
    want, _ = ref_losses.denoising_score_matching(ref, x.astype(float), z.astype(float), 0.5)
    score_fn = losses.sigma_conditional_score(net)
    assert_close(losses.denoising_score_matching(score_fn, x, z, 0.5), want)


def test_ncsn_loss(rng, data, assert_close):
    ref, net = make_pair(rng, "sigma")
    x, z = data
    sigmas = ref_sde.geometric_sigmas(1.0, 0.01, 10)
    idx = rng.integers(0, len(sigmas), BATCH)
    want_loss, want_grads = ref_losses.ncsn_loss(ref, x.astype(float), z.astype(float), idx, sigmas)
    score_fn = losses.sigma_conditional_score(net)
    assert_loss_and_grads(
        lambda: losses.ncsn_loss(score_fn, x, z, idx, f32(sigmas)),
        net,
        want_loss,
        want_grads,
        assert_close,
    )


@pytest.mark.parametrize("reduce", sorted(ref_losses.REDUCTIONS))
@pytest.mark.parametrize("weighting", ref_losses.WEIGHTINGS)
@pytest.mark.parametrize("sde_name", sorted(SDES))
def test_continuous_loss(rng, data, sde_name, weighting, reduce, assert_close):
    ref_cls, k_cls = SDES[sde_name]
    ref_s, k_s = ref_cls(), k_cls()
    ref, net = make_pair(rng, "t")
    x, z = data
    t = f32(rng.uniform(ref_s.eps, 1.0, BATCH))
    want_loss, want_grads = ref_losses.continuous_loss(
        ref, ref_s, x.astype(float), t.astype(float), z.astype(float), weighting, reduce
    )
    score_fn = losses.precondition(net, k_s)
    assert_loss_and_grads(
        lambda: losses.continuous_loss(score_fn, k_s, x, t, z, weighting, reduce),
        net,
        want_loss,
        want_grads,
        assert_close,
    )


def test_invalid_options_raise(rng, data):
    _, net = make_pair(rng)
    x, z = data
    sde = k_sde.VPSDE()
    score_fn = losses.precondition(net, sde)
    with pytest.raises(ValueError, match="weighting"):
        losses.continuous_loss(score_fn, sde, x, np.full(BATCH, 0.5), z, weighting="unit")
    with pytest.raises(ValueError, match="reduce"):
        losses.continuous_loss(score_fn, sde, x, np.full(BATCH, 0.5), z, reduce="max")
    with pytest.raises(ValueError, match="mode"):
        losses.sliced_score_matching(lambda y: y, x, z, mode="fd")
    with pytest.raises(ValueError, match="kind"):
        losses.projections(0, (2, 2), kind="sphere")


# --- score matching without noise ------------------------------------------------------------


@pytest.mark.parametrize("activation", ["silu", "softplus"])
def test_exact_score_matching(rng, data, activation, assert_close):
    ref, net = make_pair(rng, "t", activation)
    x, _ = data
    cond = 0.3
    want_loss, want_grads = ref_losses.exact_score_matching(ref, x.astype(float), cond)
    cond_tensor = ops.full((BATCH,), cond)
    assert_loss_and_grads(
        lambda: losses.exact_score_matching(lambda y: net(y, cond_tensor), x),
        net,
        want_loss,
        want_grads,
        assert_close,
    )


def test_exact_score_matching_linear_score(rng, data, assert_close):
    x, _ = data
    ref = ref_models.LinearScore(DIM)
    ref.params["A"] = rng.standard_normal((DIM, DIM))
    ref.params["b"] = rng.standard_normal(DIM)
    want, _ = ref_losses.exact_score_matching(ref, x.astype(float))
    A, b = ops.convert_to_tensor(f32(ref.params["A"])), ops.convert_to_tensor(f32(ref.params["b"]))
    got = losses.exact_score_matching(lambda y: ops.matmul(y, ops.transpose(A)) + b, x)
    assert_close(got, want)


@pytest.mark.parametrize("mode", sorted(losses.SSM_MODES))
@pytest.mark.parametrize("variance_reduced", [False, True])
@pytest.mark.parametrize("kind", ref_losses.PROJECTIONS)
def test_sliced_score_matching(rng, data, mode, variance_reduced, kind, assert_close):
    ref, net = make_pair(rng, "sigma")
    x, _ = data
    v = f32(ref_losses.projections(rng, (BATCH, DIM), kind))
    cond = f32(np.exp(rng.uniform(-2.0, 1.0, BATCH)))
    want_loss, want_grads = ref_losses.sliced_score_matching(
        ref, x.astype(float), v.astype(float), variance_reduced, cond=cond.astype(float)
    )
    cond_tensor = ops.convert_to_tensor(cond)
    assert_loss_and_grads(
        lambda: losses.sliced_score_matching(
            lambda y: net(y, cond_tensor), x, v, variance_reduced, mode=mode
        ),
        net,
        want_loss,
        want_grads,
        assert_close,
    )


@pytest.mark.parametrize("kind", ref_losses.PROJECTIONS)
def test_projections(kind):
    v = to_numpy(losses.projections(keras.random.SeedGenerator(3), (2000, 4), kind))
    assert v.shape == (2000, 4)
    np.testing.assert_allclose(v.T @ v / len(v), np.eye(4), atol=0.1)
    if kind == "rademacher":
        assert set(np.unique(v)) == {-1.0, 1.0}


# --- backend helpers the losses rely on ------------------------------------------------------


def test_jvp_vjp_and_input_gradient_agree(rng, assert_close):
    A = f32(rng.standard_normal((DIM, DIM)))
    x, v = f32(rng.standard_normal((BATCH, DIM))), f32(rng.standard_normal((BATCH, DIM)))
    A_t = ops.convert_to_tensor(A)

    def fn(y):
        return ops.tanh(ops.matmul(y, A_t))

    jac = (1.0 - np.tanh(x.astype(float) @ A) ** 2)[:, None, :] * A[None]  # d fn_j / d x_k
    y, jv = backend.jvp(fn, x, v)
    assert_close(y, np.tanh(x.astype(float) @ A))
    assert_close(jv, np.einsum("bkj,bk->bj", jac, v))
    y2, vjp_fn = backend.vjp(fn, x)
    assert_close(vjp_fn(v), np.einsum("bkj,bj->bk", jac, v))
    assert_close(vjp_fn(2.0 * v), 2.0 * np.einsum("bkj,bj->bk", jac, v))  # reusable
    assert_close(backend.input_gradient(fn, x), jac.sum(axis=2))
    value, grad = backend.value_and_input_grad(fn, x, create_graph=False)
    assert_close(value, to_numpy(y2))
    assert_close(grad, jac.sum(axis=2))
    with backend.no_grad():
        assert_close(backend.input_gradient(fn, x, create_graph=False), jac.sum(axis=2))


@pytest.mark.parametrize("fixed_shapes", [False, True])
def test_jit_matches_eager_and_sees_weight_updates(rng, data, assert_close, fixed_shapes):
    """Also when specialised to the arguments' shapes (TensorFlow: a concrete function)."""
    _, net = make_pair(rng, "t")
    x, _ = data
    t = ops.convert_to_tensor(f32(rng.uniform(0.1, 1.0, BATCH)))
    score_fn = losses.precondition(net, k_sde.VPSDE())
    x_t = ops.convert_to_tensor(x)
    example_args = [x_t, t] if fixed_shapes else None
    compiled = backend.jit(score_fn, net.trainable_variables, example_args=example_args)
    assert_close(compiled(x_t, t), to_numpy(score_fn(x_t, t)))
    assert_close(compiled(2.0 * x_t, 0.5 * t), to_numpy(score_fn(2.0 * x_t, 0.5 * t)))
    net.out_layer.bias.assign(net.out_layer.bias + 1.0)
    assert_close(compiled(x_t, t), to_numpy(score_fn(x_t, t)))
    assert backend.name() == keras.backend.backend()


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_from_host_keeps_values_and_dtype_and_copies(rng, dtype):
    host = rng.normal(size=(3, 4)).astype(dtype)
    expected = host.copy()
    tensor = backend.from_host(host)
    host[...] = 0  # a later change to the host buffer must not reach the tensor
    assert keras.backend.standardize_dtype(tensor.dtype) == dtype
    np.testing.assert_array_equal(to_numpy(tensor), expected)
    np.testing.assert_array_equal(to_numpy(backend.jit(lambda a: a * 2)(tensor)), 2 * expected)


def test_jit_argument_feeds_a_compiled_function(rng):
    host = rng.normal(size=(3, 4)).astype("float32")
    compiled = backend.jit(lambda a: ops.sum(a, axis=1))
    np.testing.assert_allclose(
        to_numpy(compiled(backend.jit_argument(host))), host.sum(axis=1), rtol=1e-6
    )
