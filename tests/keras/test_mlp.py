"""The Keras MLP score network is the reference MLPScore: same weights, same outputs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from reference import models as ref_models
from scoregen_keras.networks import CONFIGS, MLPScoreNet, get_network
from scoregen_keras.networks.mlp import load_reference_params
from tests.keras.conftest import to_numpy

DIM, HIDDEN, BATCH = 3, (24, 16), 10
OUTPUT_RTOL = 1e-5
# reference cond name for each Keras conditioning
REF_COND = {"t": "t", "sigma": "log_sigma"}


def make_pair(rng, activation="silu", conditioning="t", n_freq=8):
    """A reference MLPScore (weights perturbed off their init) and a Keras copy of it."""
    ref = ref_models.MLPScore(
        DIM, HIDDEN, activation=activation, cond=REF_COND[conditioning], n_freq=n_freq, rng=rng
    )
    for name, value in ref.params.items():  # non-trivial biases and output layer
        ref.params[name] = value + 0.3 * rng.standard_normal(value.shape)
    net = MLPScoreNet(DIM, HIDDEN, activation=activation, conditioning=conditioning, n_freq=n_freq)
    load_reference_params(net, ref.params)
    return ref, net


def draw_inputs(rng, conditioning):
    """x (batch, dim) and a conditioning value in the network's natural range (float32)."""
    x = rng.standard_normal((BATCH, DIM)).astype(np.float32)
    if conditioning == "t":
        cond = rng.uniform(1e-3, 1.0, BATCH)
    else:
        cond = np.exp(rng.uniform(np.log(0.01), np.log(50.0), BATCH))
    return x, cond.astype(np.float32)


@pytest.mark.parametrize("activation", ["silu", "softplus"])
@pytest.mark.parametrize("conditioning", ["t", "sigma"])
def test_outputs_match_reference(rng, activation, conditioning, assert_close):
    ref, net = make_pair(rng, activation, conditioning)
    x, cond = draw_inputs(rng, conditioning)
    want, _ = ref.forward(x.astype(np.float64), cond.astype(np.float64))
    assert_close(net(x, cond), want, rtol=OUTPUT_RTOL)


def test_embedding_matches_reference(rng, assert_close):
    ref, net = make_pair(rng, conditioning="sigma", n_freq=5)
    _, cond = draw_inputs(rng, "sigma")
    assert_close(net.embed(cond), ref.embed(cond.astype(np.float64), BATCH))


def test_conditioning_attribute():
    assert MLPScoreNet.conditioning == "t"
    assert MLPScoreNet(2, (8,), conditioning="sigma").conditioning == "sigma"


def test_weights_layout_and_init_scale():
    net = MLPScoreNet(DIM, HIDDEN, n_freq=4)
    emb_dim = 1 + 2 * 4
    shapes = [tuple(v.shape) for v in net.trainable_variables]
    assert shapes == [(DIM + emb_dim, 24), (24,), (24, 16), (16,), (16, DIM), (DIM,)]
    w_out = to_numpy(net.out_layer.kernel)
    assert np.abs(w_out).max() < 0.1  # small output layer, as the reference


def test_load_rejects_wrong_params(rng):
    ref, net = make_pair(rng)
    bad = dict(ref.params)
    bad["W0"] = bad["W0"][:, :-1]
    with pytest.raises(ValueError, match="W0"):
        load_reference_params(net, bad)
    with pytest.raises(ValueError, match="expected parameters"):
        load_reference_params(net, {"W0": ref.params["W0"]})


def test_invalid_arguments():
    with pytest.raises(ValueError, match="activation"):
        MLPScoreNet(2, activation="relu6")
    with pytest.raises(ValueError, match="conditioning"):
        MLPScoreNet(2, conditioning="log_sigma")


def test_config_and_keras_file_round_trip(rng, tmp_path, assert_close):
    _, net = make_pair(rng, activation="softplus", conditioning="sigma", n_freq=3)
    x, cond = draw_inputs(rng, "sigma")
    want = to_numpy(net(x, cond))

    clone = MLPScoreNet.from_config(net.get_config())
    assert (clone.dim, clone.hidden, clone.activation, clone.conditioning, clone.n_freq) == (
        DIM,
        HIDDEN,
        "softplus",
        "sigma",
        3,
    )

    path = tmp_path / "mlp.keras"
    net.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, MLPScoreNet)
    assert loaded.conditioning == "sigma"
    assert_close(loaded(x, cond), want)


def test_registry(rng):
    net = get_network("mlp", dim=4, hidden=(8, 8), conditioning="sigma")
    assert isinstance(net, MLPScoreNet)
    assert (net.dim, net.hidden, net.conditioning) == (4, (8, 8), "sigma")
    assert all(isinstance(entry, tuple) and len(entry) == 2 for entry in CONFIGS.values())
    x, cond = draw_inputs(rng, "t")
    assert tuple(get_network("mlp/tiny", dim=DIM)(x, cond).shape) == (BATCH, DIM)
    with pytest.raises(ValueError, match="unknown network"):
        get_network("no-such-net")
