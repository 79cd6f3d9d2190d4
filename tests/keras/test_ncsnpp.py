"""NCSN++ / DDPM++ and their layers: FIR resampling, embeddings, forward/backward, save/load.

upfirdn2d itself (each backend's form) is checked in test_backend_ops.py."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from scoregen_keras.networks import layerspp
from scoregen_keras.networks.ncsnpp import CONFIGS, DDPM_TIME_SCALE, DDPMpp, NCSNpp, get_ncsnpp

FAST_CONFIGS = ("ncsnpp/tiny", "ddpmpp/tiny", "ncsnpp/digits-small")
SLOW_CONFIGS = ("ncsnpp/digits", "ddpmpp/digits", "ncsnpp/mnist")  # seconds each; minutes on JAX
BATCH = 2
# op-by-op JAX compiles every primitive (and its transpose) separately: one jitted step is faster
JIT_IS_FASTER = keras.backend.backend() == "jax"
RTOL = 1e-5
ATOL = 1e-5


def _np(x) -> np.ndarray:
    """Backend tensor -> NumPy."""
    return np.asarray(keras.ops.convert_to_numpy(x))


def _inputs(name: str, seed: int = 0, **overrides) -> tuple[np.ndarray, np.ndarray]:
    """A batch of images and per-example conditioning (sigma or t) for config `name`."""
    config = {**CONFIGS[name][1], **overrides}
    rng = np.random.default_rng(seed)
    size, channels = config["image_size"], config["channels"]
    x = rng.standard_normal((BATCH, size, size, channels)).astype("float32")
    cond = rng.uniform(0.05, 1.0, size=(BATCH,)).astype("float32")
    return x, cond


# ----------------------------------------------------------------------------- FIR resampling


def test_fir_downsample_of_constant_is_constant() -> None:
    value = 0.7
    x = np.full((1, 8, 8, 2), value, dtype="float32")
    y = _np(layerspp.downsample_2d(keras.ops.convert_to_tensor(x)))
    assert y.shape == (1, 4, 4, 2)
    # pixels outside the image count as zero (upfirdn2d), so only the interior is exact
    np.testing.assert_allclose(y[:, 1:-1, 1:-1], value, rtol=RTOL)


def test_fir_upsample_of_constant_is_constant() -> None:
    value = -1.3
    x = np.full((1, 4, 4, 2), value, dtype="float32")
    y = _np(layerspp.upsample_2d(keras.ops.convert_to_tensor(x)))
    assert y.shape == (1, 8, 8, 2)
    np.testing.assert_allclose(y[:, 1:-1, 1:-1], value, rtol=RTOL)


def test_fir_downsample_after_upsample_keeps_linear_images() -> None:
    """[1,3,3,1] up- then down-sampling is exact on affine images away from the border."""
    rows, cols = np.meshgrid(np.arange(8.0), np.arange(8.0), indexing="ij")
    x = (0.5 + 0.3 * rows - 0.2 * cols)[None, :, :, None].astype("float32")
    y = _np(layerspp.downsample_2d(layerspp.upsample_2d(keras.ops.convert_to_tensor(x))))
    assert y.shape == x.shape
    np.testing.assert_allclose(y[:, 1:-1, 1:-1], x[:, 1:-1, 1:-1], atol=ATOL)


@pytest.mark.parametrize(("up", "down", "size"), [(True, False, 8), (False, True, 2)])
def test_fused_fir_conv_shapes(up: bool, down: bool, size: int) -> None:
    layer = layerspp.FIRConv2D(5, 3, up=up, down=down)
    y = layer(np.zeros((2, 4, 4, 3), dtype="float32"))
    assert tuple(y.shape) == (2, size, size, 5)


def test_naive_resampling_round_trip() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 4, 3)).astype("float32")
    y = layerspp.naive_downsample_2d(layerspp.naive_upsample_2d(keras.ops.convert_to_tensor(x)))
    np.testing.assert_allclose(_np(y), x, rtol=RTOL)


# ----------------------------------------------------------------------------- embeddings


def test_gaussian_fourier_projection_formula() -> None:
    layer = layerspp.GaussianFourierProjection(embedding_size=8, scale=16.0)
    x = np.array([0.01, 1.0, 50.0], dtype="float32")
    out = _np(layer(np.log(x)))
    w = _np(layer.W)
    proj = np.log(x)[:, None] * w[None, :] * 2 * np.pi
    np.testing.assert_allclose(out, np.concatenate([np.sin(proj), np.cos(proj)], -1), atol=1e-4)
    assert not layer.trainable_weights  # W is fixed


@pytest.mark.parametrize("dim", [16, 7])
def test_timestep_embedding_formula(dim: int) -> None:
    t = np.array([0.0, 1.0, 499.5, 999.0], dtype="float32")
    out = _np(layerspp.get_timestep_embedding(keras.ops.convert_to_tensor(t), dim))
    half = dim // 2
    freqs = np.exp(-math.log(layerspp.MAX_POSITIONS) * np.arange(half) / (half - 1))
    args = t[:, None] * freqs[None, :]
    expected = np.concatenate([np.sin(args), np.cos(args)], -1)
    if dim % 2:
        expected = np.pad(expected, [(0, 0), (0, 1)])
    assert out.shape == (len(t), dim)
    np.testing.assert_allclose(out, expected, atol=1e-3)  # float32 sin of args up to 999


# ----------------------------------------------------------------------------- networks


def test_conditioning_attributes() -> None:
    assert NCSNpp.conditioning == "sigma"
    assert DDPMpp.conditioning == "t"
    assert get_ncsnpp("ddpmpp/tiny").time_scale == DDPM_TIME_SCALE


class TrainingWrapper(keras.Model):
    """Feeds ((x, cond), target) batches from `fit` into a network's net(x, cond) convention."""

    def __init__(self, net: keras.Model) -> None:
        super().__init__()
        self.net = net

    def call(self, inputs, training: bool = False):
        x, cond = inputs
        return self.net(x, cond, training=training)


def _forward_and_training_step(name: str, jit: bool) -> None:
    """Forward pass keeps x's shape; one optimizer step (MSE to zero) changes the weights."""
    net = get_ncsnpp(name)
    x, cond = _inputs(name)
    out = net(x, cond)
    assert tuple(out.shape) == x.shape
    assert np.all(np.isfinite(_np(out)))

    model = TrainingWrapper(net)
    model.compile(optimizer="adam", loss="mse", run_eagerly=not jit)
    before = [_np(v).copy() for v in net.trainable_weights]
    history = model.fit((x, cond), np.zeros_like(x), batch_size=BATCH, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    after = [_np(v) for v in net.trainable_weights]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after, strict=True))


@pytest.mark.parametrize("name", FAST_CONFIGS)
def test_small_config_forward_and_training_step(name: str) -> None:
    _forward_and_training_step(name, jit=JIT_IS_FASTER)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_CONFIGS)
def test_larger_small_config_forward_and_training_step(name: str) -> None:
    _forward_and_training_step(name, jit=JIT_IS_FASTER)


@pytest.mark.slow
def test_compiled_training_step() -> None:
    """The network also trains inside the backend's compiled train step (tf.function / jax.jit)."""
    _forward_and_training_step("ddpmpp/tiny", jit=True)


@pytest.mark.parametrize(
    "overrides",
    [
        {"progressive": "output_skip", "progressive_input": "input_skip"},
        {
            "progressive": "residual",
            "progressive_input": "input_skip",
            "progressive_combine": "cat",
        },
        {"resblock_type": "ddpm", "fir": True},
        {"resblock_type": "ddpm", "fir": False, "resamp_with_conv": False},
    ],
)
def test_architecture_options_keep_shape(overrides: dict) -> None:
    net = get_ncsnpp("ncsnpp/tiny", **overrides)
    x, cond = _inputs("ncsnpp/tiny")
    assert tuple(net(x, cond).shape) == x.shape


def test_odd_image_size_is_padded_and_cropped() -> None:
    net = get_ncsnpp("ncsnpp/tiny", image_size=7, ch_mult=(1, 2, 2), attn_resolutions=())
    assert net.padded_size == 8
    x, cond = _inputs("ncsnpp/tiny", image_size=7)
    assert tuple(net(x, cond).shape) == x.shape


@pytest.mark.parametrize("name", ["ncsnpp/tiny", "ddpmpp/tiny"])
def test_save_load_gives_identical_outputs(name: str, tmp_path) -> None:
    net = get_ncsnpp(name, init_scale=1.0)  # non-zero output layer: outputs of order one
    x, cond = _inputs(name)
    expected = _np(net(x, cond))
    path = tmp_path / "net.keras"
    net.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert type(loaded) is type(net)
    assert loaded.get_config() == net.get_config()
    np.testing.assert_array_equal(_np(loaded(x, cond)), expected)
