"""The FID Inception network against pytorch-fid's, on the fixture's random weights.

shared/fixtures/fid_inception (pytorch-fid 0.3.0): its README bounds float32 noise at 3.6e-7
(pool3), 4.4e-7 (logits) and 2.2e-6 (per block) of the output's maximum, and the smallest port
bug it lists moves pool3 by 1.4e-2 (BN eps 1e-5); the tolerance 1e-4 of the maximum sits between.
Fast tests run one image through each input path (32 x 32 resized, and 299 x 299); the other
images are slow tests.
"""

from __future__ import annotations

import numpy as np
import pytest

from scoregen_keras.networks import fid_inception
from scoregen_keras.networks.fid_inception import FIDError
from tests.frameworks import require_torch

FIXTURE_RTOL = 1e-4
"""max |Δ| / max |expected|: the fixture README's tolerance (≥ 45x float32 noise, ≥ 100x below
the smallest port bug)."""


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |actual − expected| / max |expected|, the fixture README's measure."""
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


# ------------------------------------------------------------------------------- structure


def test_state_dict_keys_are_the_published_ones(fid_network, fid_fixture):
    """Every key of the published layout is a parameter or a BN step counter, and the reverse."""
    parameters = fid_inception.torch_parameters(fid_network)
    published = {key for key, _, _ in fid_fixture["json"]["keys"]}
    counters = {key for key in published if fid_inception.is_unused_buffer(key)}
    assert len(published) == fid_fixture["json"]["n_keys"] == 566
    assert set(parameters) == published - counters
    assert len(counters) == 94  # one per BasicConv2d
    for key, shape, _ in fid_fixture["json"]["keys"]:
        if key in parameters:
            variable, axes = parameters[key]
            assert fid_inception.torch_shape(variable, axes) == tuple(shape), key
    assert fid_network.count_params() == fid_fixture["json"]["n_float_values"]


def basic_convs(network) -> dict:
    """{state_dict prefix: BasicConv2d} of the stem and of every block."""
    convs = {}
    for name, _ in fid_inception.ARCHITECTURE:
        layer = network.get_layer(name)
        if isinstance(layer, fid_inception.BasicConv2d):
            convs[name] = layer
        elif isinstance(layer, fid_inception.InceptionBlock):
            convs.update({f"{name}.{conv}": value for conv, value in layer.convs.items()})
    return convs


def test_convs_have_pytorch_fids_kernels_strides_and_paddings(fid_network, fid_fixture):
    """Each conv's (in, out, kernel, stride, padding) as the fixture's JSON lists them.

    Keras "same" at stride 1 pads (k − 1) / 2 on each side (odd kernels), "valid" pads nothing.
    """
    layers = {f"{prefix}.conv.weight": c.conv for prefix, c in basic_convs(fid_network).items()}
    listed = fid_fixture["json"]["network"]["convs"]
    assert len(listed) == len(layers) == 94
    for conv in listed:
        layer = layers[conv["key"]]
        kernel = tuple(layer.kernel_size)
        padding = [0, 0] if layer.padding == "valid" else [(k - 1) // 2 for k in kernel]
        assert layer.padding == "valid" or tuple(layer.strides) == (1, 1), conv["key"]
        assert not layer.use_bias and not conv["bias"]
        found = [int(layer.kernel.shape[2]), layer.filters, list(kernel), list(layer.strides)]
        assert [*found, padding] == [
            conv["in"],
            conv["out"],
            conv["kernel"],
            conv["stride"],
            conv["padding"],
        ], conv["key"]


def test_network_stays_float32_under_a_mixed_policy():
    """Built under mixed_bfloat16 (training's precision scope), the network computes in float32."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        network = fid_inception.build_fid_inception()
    finally:
        keras.config.set_dtype_policy(previous)
    convs = basic_convs(network).values()
    layers = [*network.layers[1:], *(c.conv for c in convs), *(c.bn for c in convs)]  # [0]: Input
    assert {layer.compute_dtype for layer in layers} == {"float32"}
    assert {tensor.dtype for tensor in network.outputs} == {"float32"}
    assert {v.dtype for v in network.weights} == {"float32"}


# --------------------------------------------------------------------------------- input path


def torch_interpolate_reference(images: np.ndarray, size: int) -> np.ndarray:
    """F.interpolate(bilinear, align_corners=False) in float64 NumPy, from its definition.

    Source coordinate (dst + 0.5) * in / out − 0.5 clamped at 0; taps floor and floor + 1 (the
    last row repeated); weights 1 − λ and λ.
    """

    def along(x: np.ndarray, axis: int) -> np.ndarray:
        in_size = x.shape[axis]
        source = np.maximum((np.arange(size) + 0.5) * in_size / size - 0.5, 0.0)
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        lam = source - low
        shape = [1] * x.ndim
        shape[axis] = size
        lam = lam.reshape(shape)
        return np.take(x, low, axis=axis) * (1 - lam) + np.take(x, high, axis=axis) * lam

    return along(along(np.asarray(images, np.float64), 1), 2)


FLOAT32_ULP = 2.0**-23
LERP_ATOL = 2 * FLOAT32_ULP
"""Two float32 roundings of a lerp of values in [0, 1] (torch's may fuse its multiply-add)."""


def coordinate_atol(in_size: int) -> float:
    """Bound on |output − exact| from float32 source coordinates: λ is off by ≤ 1 ulp of a
    coordinate < in_size (times a neighbour difference ≤ 1), plus the lerp's rounding."""
    return in_size * FLOAT32_ULP + LERP_ATOL


@pytest.mark.parametrize("shape", [(32, 32), (8, 5), (299, 299), (512, 384), (301, 300)])
def test_bilinear_resize_is_the_interpolation_defined(shape):
    """Up- and down-sampling, square or not, against the float64 definition."""
    from keras import ops

    x = np.random.default_rng(sum(shape)).random((2, *shape, 3), dtype=np.float32)
    got = ops.convert_to_numpy(fid_inception.bilinear_resize(x, 299))
    atol = coordinate_atol(max(shape))
    np.testing.assert_allclose(got, torch_interpolate_reference(x, 299), rtol=0, atol=atol)
    if shape == (299, 299):
        np.testing.assert_array_equal(got, x)  # an exact identity, as torch's


@pytest.mark.parametrize("shape", [(45, 70), (512, 384), (1024, 1024)])
def test_bilinear_resize_matches_torch_itself(shape):
    """Against torch.nn.functional.interpolate where torch is installed (no torchvision needed):
    the same float32 source coordinates (torch_bilinear_taps), so only the lerp's rounding."""
    torch = require_torch()
    from keras import ops

    x = np.random.default_rng(7).random((1, *shape, 3), dtype=np.float32)
    for size in (299, 17):
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), size=(size, size), mode="bilinear"
        )
        expected = expected.permute(0, 2, 3, 1).numpy()
        got = ops.convert_to_numpy(fid_inception.bilinear_resize(x, size))
        np.testing.assert_allclose(got, expected, rtol=0, atol=LERP_ATOL)


def test_resize_in_a_function_retraced_for_other_sizes():
    """Compiled predict over images of three sizes: TF's function relaxes the height and width
    to unknown on a retrace, where the taps are computed in the graph (within one ulp of a
    coordinate); JAX and PyTorch see every size."""
    import keras

    images = keras.Input((None, None, 3))
    model = keras.Model(images, fid_inception.FIDInputTransform()(images))
    rng = np.random.default_rng(3)
    for shape in [(40, 40), (64, 48), (512, 384)]:
        x = rng.random((2, *shape, 3), dtype=np.float32)
        expected = 2.0 * torch_interpolate_reference(x, 299) - 1.0
        got = model.predict_on_batch(x)
        np.testing.assert_allclose(got, expected, rtol=0, atol=2 * coordinate_atol(max(shape)))


def test_fid_input_is_totensor_and_refuses_other_images():
    """uint8 -> x / 255 in float32; floats in [0, 1] pass; anything else is one sentence."""
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    got = fid_inception.fid_input(images)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, images.astype(np.float32) / np.float32(255.0))
    for bad, message in [
        (images[..., :1], r"shape \(n, H, W, 3\)"),
        (images.astype(np.int32), "uint8 or floating point"),
        (images / 10.0, r"lie in \[0, 1\]"),
        (np.full((1, 2, 2, 3), np.nan), r"lie in \[0, 1\]"),
    ]:
        with pytest.raises(FIDError, match=message):
            fid_inception.fid_input(bad)


# ---------------------------------------------------------------------- against pytorch-fid


@pytest.fixture(scope="module")
def image0_blocks(fid_network, fid_fixture):
    """Every block's output (and the logits) for the fixture's image 0, 32 x 32, resized."""
    x = fid_inception.fid_input(fid_fixture["arrays"]["images_uint8"][:1])
    outputs = fid_inception.block_outputs_model(fid_network).predict_on_batch(x)
    return {name: np.asarray(value)[0] for name, value in outputs.items()}


def test_block_activations_of_image0(image0_blocks, fid_fixture):
    """Each block, channels-last: the first one failing is where a port departs from pytorch-fid."""
    errors = {}
    for name in fid_inception.BLOCKS:
        key = "input" if name == fid_inception.INPUT_TRANSFORM else name
        expected = fid_fixture["blocks"][key]
        errors[key] = relative_error(image0_blocks[name].reshape(expected.shape), expected)
    failing = [key for key, error in errors.items() if not error <= FIXTURE_RTOL]
    assert not failing, f"first departing block {failing[0]}: {errors}"


def test_pool3_and_logits_of_image0(image0_blocks, fid_fixture):
    """pool3 and the 1008 logits of image 0 (resized from 32 x 32)."""
    arrays = fid_fixture["arrays"]
    assert relative_error(image0_blocks["avgpool"].reshape(-1), arrays["pool3"][0]) <= FIXTURE_RTOL
    assert relative_error(image0_blocks["fc"], arrays["logits"][0]) <= FIXTURE_RTOL


def test_pool3_of_a_299_image(fid_network, fid_fixture):
    """An image given at 299 x 299 (the resize is an identity) gives pytorch-fid's pool3."""
    arrays = fid_fixture["arrays"]
    x = fid_inception.fid_input(arrays["images299_uint8"][:1])
    pool3 = fid_network.predict_on_batch(x)["pool3"]
    assert relative_error(pool3, arrays["pool3_299"][:1]) <= FIXTURE_RTOL


@pytest.mark.slow
def test_pool3_and_logits_of_all_fixture_images(fid_network, fid_fixture, image0_blocks):
    """All four 32 x 32 images in one batch and both 299 x 299 images: pool3 and logits.

    Batch 4 against batch 1 (image 0 above): pytorch-fid's are identical; here float32 noise.
    """
    arrays = fid_fixture["arrays"]
    outputs = fid_network.predict_on_batch(fid_inception.fid_input(arrays["images_uint8"]))
    assert relative_error(outputs["pool3"], arrays["pool3"]) <= FIXTURE_RTOL
    assert relative_error(outputs["logits"], arrays["logits"]) <= FIXTURE_RTOL
    assert relative_error(outputs["pool3"][0], image0_blocks["avgpool"].reshape(-1)) <= 1e-5
    at_299 = fid_network.predict_on_batch(fid_inception.fid_input(arrays["images299_uint8"]))
    assert relative_error(at_299["pool3"], arrays["pool3_299"]) <= FIXTURE_RTOL
    # against the float64 run, the bound of float32 noise holds as well
    assert relative_error(outputs["pool3"], arrays["pool3_float64"]) <= FIXTURE_RTOL


def test_state_dict_mismatches_are_named(fid_network, fid_fixture):
    """Missing, unexpected or misshapen entries: one sentence naming the key (and both shapes)."""
    state_dict = dict(fid_fixture["state_dict"])
    missing = {k: v for k, v in state_dict.items() if k != "Mixed_6c.branch7x7_2.bn.running_var"}
    with pytest.raises(FIDError, match=r"key 'Mixed_6c\.branch7x7_2\.bn\.running_var' is missing"):
        fid_inception.load_torch_state_dict(fid_network, missing)
    with pytest.raises(FIDError, match=r"key 'AuxLogits\.fc\.weight' is not a parameter"):
        fid_inception.load_torch_state_dict(
            fid_network, {**state_dict, "AuxLogits.fc.weight": np.zeros((1000, 768))}
        )
    transposed = {**state_dict}
    key = "Mixed_6b.branch7x7_2.conv.weight"
    transposed[key] = np.swapaxes(state_dict[key], 2, 3)
    with pytest.raises(FIDError) as info:
        fid_inception.load_torch_state_dict(fid_network, transposed)
    assert str(info.value) == (
        "the weights do not fit the FID Inception network: key "
        "'Mixed_6b.branch7x7_2.conv.weight' has shape (128, 128, 7, 1), the network's is "
        "(128, 128, 1, 7)."
    )
    # the step counters are optional (an older torch wrote none)
    without_counters = {k: v for k, v in state_dict.items() if not k.endswith("batches_tracked")}
    assert fid_inception.state_dict_mismatch(fid_network, without_counters) is None
