"""NCSN / NCSNv2 RefineNets: normalisation formulas, shapes, a training step, .keras round trip."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from scoregen_keras import backend
from scoregen_keras.networks import CONFIGS, NCSN, NCSNv2, get_network
from scoregen_keras.networks.refinenet_layers import (
    INSTANCE_NORM_EPS,
    CondInstanceNormPlusPlus,
    CRPBlock,
    InstanceNormPlusPlus,
    bilinear_matrix,
    resize_bilinear_align_corners,
)
from tests.keras.conftest import to_numpy

BATCH = 2
TINY = ("ncsn/tiny", "ncsnv2/tiny")
SMALL = ("ncsn/tiny", "ncsnv2/tiny", "ncsn/digits", "ncsnv2/digits")
LEARNING_RATE = 1e-3
ROUND_TRIP_RTOL = 1e-6
NORM_SHAPE = (3, 5, 4, 6)  # (batch, H, W, C) for the normalisation checks
NUM_LEVELS = 4
# parameter counts of the paper configurations; equal to those of the reference PyTorch models
PARAMETER_COUNTS = {"ncsn/cifar10": 30_117_635, "ncsnv2/cifar10": 29_694_083}
ODD_IMAGE_SIZE = 7  # exercises adjust_padding (7 -> 4) and the bilinear upsampling back to 7


def images(rng: np.random.Generator, net: keras.Model, batch: int = BATCH) -> np.ndarray:
    """Standard normal images of the network's size, float32, channels-last."""
    return rng.standard_normal((batch, net.image_size, net.image_size, net.channels)).astype(
        np.float32
    )


def sigma_indices(net: keras.Model, batch: int = BATCH) -> np.ndarray:
    """Distinct σ indices (float32, as the ScoreModel passes them); zeros for NCSNv2."""
    levels = net.num_classes or 1
    return (np.arange(batch) % levels).astype(np.float32)


def perturb_weights(net: keras.Layer, rng: np.random.Generator, scale: float = 0.1) -> None:
    """Move every weight off its initial value (β = 0, γ ≈ α ≈ 1 would hide mistakes)."""
    for w in net.weights:
        w.assign(to_numpy(w) + scale * rng.standard_normal(tuple(w.shape)))


def instance_norm_pp_numpy(
    x: np.ndarray, gamma: np.ndarray, alpha: np.ndarray, beta: np.ndarray
) -> np.ndarray:
    """InstanceNorm++ (Song & Ermon 2019, App. A) in NumPy; γ, α, β (batch or 1, C)."""
    mu = x.mean(axis=(1, 2))  # (batch, C)
    s = x.std(axis=(1, 2))
    m = mu.mean(axis=1, keepdims=True)
    v = mu.var(axis=1, ddof=1, keepdims=True)  # unbiased, as torch.var in the reference code
    mu_hat = (mu - m) / np.sqrt(v + INSTANCE_NORM_EPS)
    h = (x - mu[:, None, None, :]) / np.sqrt(s[:, None, None, :] ** 2 + INSTANCE_NORM_EPS)
    h = h + (mu_hat * alpha)[:, None, None, :]
    return gamma[:, None, None, :] * h + beta[:, None, None, :]


@pytest.fixture(scope="module")
def tiny_networks() -> dict[str, keras.Model]:
    """The tiny configurations, built once, weights perturbed off their init."""
    rng = np.random.default_rng(7)
    nets = {}
    for name in TINY:
        net = get_network(name)
        net(images(rng, net), sigma_indices(net))
        perturb_weights(net, rng)
        nets[name] = net
    return nets


def test_conditioning_attributes():
    assert NCSN.conditioning == "sigma_index"
    assert NCSNv2.conditioning == "none"
    assert get_network("ncsn/tiny").conditioning == "sigma_index"


def test_cond_instance_norm_pp_matches_formula(rng, assert_close):
    x = (rng.standard_normal(NORM_SHAPE) * 2.0 + rng.standard_normal(NORM_SHAPE[-1])).astype(
        np.float32
    )
    index = np.array([0, 3, 1])
    norm = CondInstanceNormPlusPlus(NUM_LEVELS)
    norm(x, index.astype(np.float32))
    embedding = rng.standard_normal((NUM_LEVELS, 3 * NORM_SHAPE[-1]))
    norm.embedding.assign(embedding)
    gamma, alpha, beta = np.split(embedding[index], 3, axis=1)
    want = instance_norm_pp_numpy(x.astype(np.float64), gamma, alpha, beta)
    assert_close(norm(x, index.astype(np.float32)), want, rtol=1e-4)
    assert_close(norm(x, index.astype(np.int32)), want, rtol=1e-4)
    # another σ index, other embeddings, another output
    other = to_numpy(norm(x, ((index + 1) % NUM_LEVELS).astype(np.float32)))
    assert np.abs(other - want).max() > 1e-2


def test_cond_instance_norm_pp_init():
    norm = CondInstanceNormPlusPlus(NUM_LEVELS)
    norm(np.ones((1, 2, 2, 64), np.float32), np.zeros(1, np.float32))
    gamma, alpha, beta = np.split(to_numpy(norm.embedding), 3, axis=1)
    assert np.all(beta == 0.0)
    for scale in (gamma, alpha):
        assert abs(scale.mean() - 1.0) < 0.01 and 0.01 < scale.std() < 0.03


def test_instance_norm_pp_matches_formula(rng, assert_close):
    x = (rng.standard_normal(NORM_SHAPE) + rng.standard_normal(NORM_SHAPE[-1])).astype(np.float32)
    norm = InstanceNormPlusPlus()
    norm(x)
    gamma, alpha, beta = (rng.standard_normal((1, NORM_SHAPE[-1])) for _ in range(3))
    for weight, value in ((norm.gamma, gamma), (norm.alpha, alpha), (norm.beta, beta)):
        weight.assign(value[0])
    assert_close(norm(x), instance_norm_pp_numpy(x.astype(np.float64), gamma, alpha, beta), 1e-4)


def test_bilinear_align_corners_keeps_corners_and_linear_ramps(assert_close):
    A = bilinear_matrix(4, 7)
    np.testing.assert_allclose(A.sum(axis=1), 1.0, rtol=1e-6)
    ramp = 3.0 * np.arange(4) - 1.0  # linear in the pixel index: reproduced exactly
    np.testing.assert_allclose(A @ ramp, np.linspace(ramp[0], ramp[-1], 7), rtol=1e-6, atol=1e-6)
    x = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 2, 3, 4)
    y = to_numpy(resize_bilinear_align_corners(keras.ops.convert_to_tensor(x), 5, 7))
    assert y.shape == (1, 5, 7, 4)
    assert_close(y[:, [0, -1]][:, :, [0, -1]], x[:, [0, -1]][:, :, [0, -1]])


def test_average_pool_crp_counts_zero_padding(assert_close):
    crp = CRPBlock(1, n_stages=1, pool="avg")
    x = np.ones((1, 6, 6, 1), np.float32)
    pooled = to_numpy(crp._pool(keras.ops.convert_to_tensor(x)))
    # corner window sees 3x3 ones of 5x5, like torch AvgPool2d(count_include_pad=True)
    assert_close(pooled[0, 0, 0, 0], 9.0 / 25.0)
    assert_close(pooled[0, 2, 2, 0], 1.0)


@pytest.mark.parametrize("name", SMALL)
def test_small_configs_forward_shape(name, rng):
    net = get_network(name)
    x = images(rng, net)
    out = net(x, sigma_indices(net), training=False)
    assert tuple(out.shape) == x.shape
    assert np.all(np.isfinite(to_numpy(out)))


def test_odd_resolution_forward_shape(rng):
    net = get_network("ncsnv2/tiny", image_size=ODD_IMAGE_SIZE)
    x = images(rng, net)
    assert tuple(net(x, None).shape) == x.shape


@pytest.mark.parametrize("name", TINY)
def test_training_step_reduces_nothing_to_nan(name, rng):
    """One Adam step on a denoising-style MSE: finite loss, finite gradients, weights move."""
    net = get_network(name)
    x, cond = images(rng, net), sigma_indices(net)
    target = keras.ops.convert_to_tensor(rng.standard_normal(x.shape).astype(np.float32))
    net(x, cond)
    variables = net.trainable_variables
    before = [to_numpy(v) for v in variables]

    def loss_fn():
        return keras.ops.mean(keras.ops.square(net(x, cond, training=True) - target))

    loss, grads = backend.value_and_param_grad(loss_fn, variables)
    optimizer = keras.optimizers.Adam(LEARNING_RATE)
    optimizer.apply(grads, variables)
    assert np.isfinite(float(to_numpy(loss)))
    grads = [to_numpy(g) for g in grads]
    assert all(np.all(np.isfinite(g)) for g in grads)
    assert sum(np.any(g != 0.0) for g in grads) == len(grads)  # every weight is used
    moved = [np.any(to_numpy(v) != b) for v, b in zip(variables, before, strict=True)]
    assert all(moved)


def test_ncsn_output_depends_on_sigma_index(tiny_networks, rng):
    net = tiny_networks["ncsn/tiny"]
    x = images(rng, net)
    outputs = [to_numpy(net(x, np.full(BATCH, i, np.float32))) for i in range(net.num_classes)]
    for i in range(1, net.num_classes):
        assert np.abs(outputs[i] - outputs[0]).max() > 1e-3
    np.testing.assert_array_equal(to_numpy(net(x, np.full(BATCH, 2, np.int32))), outputs[2])


def test_ncsnv2_ignores_cond(tiny_networks, rng):
    net = tiny_networks["ncsnv2/tiny"]
    x = images(rng, net)
    want = to_numpy(net(x, np.zeros(BATCH, np.float32)))
    np.testing.assert_array_equal(to_numpy(net(x, np.full(BATCH, 0.5, np.float32))), want)
    np.testing.assert_array_equal(to_numpy(net(x, None)), want)


def test_ncsn_requires_cond(tiny_networks, rng):
    net = tiny_networks["ncsn/tiny"]
    with pytest.raises(ValueError, match="sigma index"):
        net(images(rng, net), None)


@pytest.mark.parametrize("name", TINY)
def test_keras_file_round_trip(name, tiny_networks, rng, tmp_path):
    net = tiny_networks[name]
    x, cond = images(rng, net), sigma_indices(net)
    want = to_numpy(net(x, cond))

    clone = type(net).from_config(net.get_config())
    assert clone.get_config() == net.get_config()

    path = tmp_path / "net.keras"
    net.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(net)
    assert loaded.conditioning == net.conditioning
    np.testing.assert_allclose(to_numpy(loaded(x, cond)), want, rtol=ROUND_TRIP_RTOL, atol=0.0)


def test_registry():
    for name in ("ncsn/cifar10", "ncsn/mnist", "ncsnv2/cifar10", "ncsnv2/mnist", *SMALL):
        cls, config = CONFIGS[name]
        assert cls is (NCSN if name.startswith("ncsn/") else NCSNv2)
        assert config["image_size"] in (8, 28, 32)
    assert CONFIGS["ncsn/cifar10"][1]["ngf"] == CONFIGS["ncsnv2/cifar10"][1]["ngf"] == 128
    assert CONFIGS["ncsn/cifar10"][1]["num_classes"] == 10
    net = get_network("ncsn/tiny", num_classes=7, ngf=4)
    assert (net.num_classes, net.ngf) == (7, 4)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PARAMETER_COUNTS))
def test_paper_config_parameter_counts(name):
    net = get_network(name)
    net.build((None, net.image_size, net.image_size, net.channels))
    assert net.count_params() == PARAMETER_COUNTS[name]


def test_invalid_arguments():
    with pytest.raises(ValueError, match="same length"):
        NCSNv2(8, 1, ngf=4, channel_multipliers=(1, 2), dilations=(1,))
