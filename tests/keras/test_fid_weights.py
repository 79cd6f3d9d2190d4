"""The FID Inception weights files: reading, checking, converting, finding and downloading.

Files are made from the fixture's random weights under the published keys, the .pth as the
fixture README says pytorch-fid loads it: torch.save({key: torch.from_numpy(array)}).
"""

from __future__ import annotations

import hashlib
import http.client
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from scoregen_keras import backend
from scoregen_keras.networks import fid_weights
from scoregen_keras.networks.fid_inception import FIDError
from scoregen_keras.networks.fid_weights import (
    check_fid_weights,
    convert_fid_weights,
    download_fid_weights,
    fid_cache_dir,
    find_fid_weights,
    read_fid_weights,
)
from tests.frameworks import require_torch


def assert_one_sentence(error: pytest.ExceptionInfo, *fragments: str) -> None:
    """The message is one line ending in a full stop and contains each fragment."""
    message = str(error.value)
    assert "\n" not in message and message.endswith("."), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def assert_same_arrays(actual: dict, expected: dict) -> None:
    """Same keys, and each array equal in value, shape and dtype."""
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key].dtype == value.dtype and actual[key].shape == value.shape, key
        np.testing.assert_array_equal(actual[key], value, err_msg=key)


@pytest.fixture(scope="module")
def weights_files(fid_fixture, tmp_path_factory) -> dict[str, Path]:
    """{"npz": the state_dict as a .npz, "pth": as a .pth where torch is installed}."""
    folder = tmp_path_factory.mktemp("fid_weights")
    files = {"npz": folder / "random.npz"}
    np.savez(files["npz"], **fid_fixture["state_dict"])
    try:
        import torch
    except ModuleNotFoundError:
        return files
    files["pth"] = folder / "random.pth"
    torch.save({k: torch.from_numpy(v) for k, v in fid_fixture["state_dict"].items()}, files["pth"])
    return files


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """An empty user cache folder (XDG_CACHE_HOME) and no $SCOREGEN_FID_WEIGHTS."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(fid_weights.FID_WEIGHTS_ENV, raising=False)
    return tmp_path / "xdg" / "scoregen"


# ------------------------------------------------------------------------------------ reading


def test_pth_from_the_fixture_gives_the_same_network(weights_files, fid_fixture, fid_network):
    """torch.load(weights_only=True) of the .pth: the same 566 arrays; the network built from it
    has exactly the weights of the network loaded from the fixture's arrays."""
    if "pth" not in weights_files:
        require_torch()
    assert_same_arrays(read_fid_weights(weights_files["pth"]), fid_fixture["state_dict"])
    network = fid_weights.load_fid_inception(weights_files["pth"], download=False)
    for loaded, expected in zip(network.weights, fid_network.weights, strict=True):
        assert loaded.path == expected.path
        np.testing.assert_array_equal(np.asarray(loaded), np.asarray(expected), err_msg=loaded.path)


def test_npz_holds_the_same_keys(weights_files, fid_fixture):
    """A .npz of the state_dict is read by NumPy alone, keys and dtypes kept."""
    assert_same_arrays(read_fid_weights(weights_files["npz"]), fid_fixture["state_dict"])


def test_convert_pth_to_npz(weights_files, fid_fixture, tmp_path):
    """convert_fid_weights writes the same arrays; it refuses to replace a file or to write
    weights that do not fit, and leaves nothing behind then."""
    source = weights_files.get("pth", weights_files["npz"])
    target = convert_fid_weights(source, tmp_path / "converted.npz")
    assert_same_arrays(read_fid_weights(target), fid_fixture["state_dict"])
    with pytest.raises(FIDError) as error:
        convert_fid_weights(source, target)
    assert_one_sentence(error, str(target), "not replaced")
    with pytest.raises(FIDError) as error:
        convert_fid_weights(source, tmp_path / "converted.safetensors")
    assert_one_sentence(error, "must end in .npz")
    partial = dict(fid_fixture["state_dict"])
    partial.pop("Mixed_7c.branch_pool.conv.weight")
    np.savez(tmp_path / "partial.npz", **partial)
    with pytest.raises(FIDError) as error:
        convert_fid_weights(tmp_path / "partial.npz", tmp_path / "out.npz")
    assert_one_sentence(error, "partial.npz", "'Mixed_7c.branch_pool.conv.weight' is missing")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted.npz", "partial.npz"]


def test_keys_and_shapes_that_do_not_fit_are_named(fid_fixture, fid_network):
    """Missing, unexpected, wrong shape (both shapes): one sentence naming the file and the key."""
    state_dict = fid_fixture["state_dict"]
    with pytest.raises(FIDError) as error:
        check_fid_weights(
            {**state_dict, "AuxLogits.conv0.conv.weight": np.zeros(1)}, "w.npz", fid_network
        )
    assert_one_sentence(error, "w.npz", "'AuxLogits.conv0.conv.weight' is not a parameter")
    wrong = {**state_dict, "fc.weight": state_dict["fc.weight"].T}
    with pytest.raises(FIDError) as error:
        check_fid_weights(wrong, "w.npz", fid_network)
    assert_one_sentence(error, "'fc.weight' has shape (2048, 1008), the network's is (1008, 2048)")
    # the fixture archive itself carries images and outputs beside the weights
    with pytest.raises(FIDError) as error:
        check_fid_weights(fid_fixture["arrays"], "fid_inception_random.npz", fid_network)
    assert_one_sentence(error, "is not a parameter of the network")


class RunsCode:
    """Unpickling this calls Path.touch(marker): a file that would run code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    """weights_only refuses it and nothing runs (the marker file is never created)."""
    torch = require_torch()
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    torch.save({"fc.bias": torch.zeros(1008), "payload": RunsCode(marker)}, evil)
    plain = [tmp_path / f"plain{protocol}.pth" for protocol in (2, pickle.DEFAULT_PROTOCOL)]
    for path, protocol in zip(plain, (2, pickle.DEFAULT_PROTOCOL), strict=True):
        path.write_bytes(pickle.dumps({"fc.bias": RunsCode(marker)}, protocol=protocol))
    for path in (evil, *plain):
        with pytest.raises(FIDError) as error:
            read_fid_weights(path)
        assert_one_sentence(error, str(path), "weights_only=True) refused it", "Unsupported")
    assert not marker.exists()


def test_corrupt_and_foreign_files_are_one_sentence(weights_files, tmp_path):
    """Truncated, empty, random bytes, object arrays, a lone array, another suffix, absent."""
    cases = {}
    npz_bytes = weights_files["npz"].read_bytes()
    (tmp_path / "truncated.npz").write_bytes(npz_bytes[: len(npz_bytes) // 2])
    cases["truncated.npz"] = "could not read"
    (tmp_path / "noise.npz").write_bytes(np.random.default_rng(0).bytes(4096))
    cases["noise.npz"] = "could not read"
    np.savez(tmp_path / "objects.npz", **{"fc.bias": np.array([{"a": 1}], dtype=object)})
    cases["objects.npz"] = "could not read"
    np.save(tmp_path / "lone.npy", np.zeros(3))
    (tmp_path / "lone.npy").rename(tmp_path / "lone.npz")
    cases["lone.npz"] = "one array"
    (tmp_path / "w.safetensors").write_bytes(b"{}")
    cases["w.safetensors"] = "neither a .pth"
    cases["absent.npz"] = "does not exist"
    if "pth" in weights_files:
        pth_bytes = weights_files["pth"].read_bytes()
        (tmp_path / "truncated.pth").write_bytes(pth_bytes[: len(pth_bytes) // 2])
        cases["truncated.pth"] = "torch.load could not read it"
        (tmp_path / "empty.pth").write_bytes(b"")
        cases["empty.pth"] = "torch.load could not read it"
        import torch

        torch.save([torch.zeros(2)], tmp_path / "list.pth")
        cases["list.pth"] = "holds a list, not a dict of tensors"
    for name, fragment in cases.items():
        with pytest.raises(FIDError) as error:
            read_fid_weights(tmp_path / name)
        assert_one_sentence(error, name, fragment)


def test_a_pth_without_torch_says_how_to_get_it(weights_files, monkeypatch, tmp_path):
    """Where PyTorch is missing: install it, or convert the file where it is."""

    def no_torch(path):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(backend, "read_torch_tensors", no_torch)
    (tmp_path / "w.pth").write_bytes(b"anything")
    with pytest.raises(FIDError) as error:
        read_fid_weights(tmp_path / "w.pth")
    assert_one_sentence(error, "needs PyTorch", "pip install torch", "convert_fid_weights")


# ------------------------------------------------------------------------ finding the file


def test_lookup_order_explicit_then_environment_then_cache(cache, tmp_path, monkeypatch):
    """An explicit path wins over $SCOREGEN_FID_WEIGHTS, which wins over the cache folder, where
    the converted .npz wins over the .pth; nothing is downloaded when a file is found."""

    def no_download(url):
        raise AssertionError("downloaded although a file was found")

    cache.mkdir(parents=True)
    for name in (fid_weights.FID_WEIGHTS_FILE, fid_weights.CONVERTED_FILE, "explicit.npz"):
        (cache / name).write_bytes(b"x")
    (tmp_path / "env.npz").write_bytes(b"x")
    assert find_fid_weights(opener=no_download) == cache / fid_weights.CONVERTED_FILE
    (cache / fid_weights.CONVERTED_FILE).unlink()
    assert find_fid_weights(opener=no_download) == cache / fid_weights.FID_WEIGHTS_FILE
    monkeypatch.setenv(fid_weights.FID_WEIGHTS_ENV, str(tmp_path / "env.npz"))
    assert find_fid_weights(opener=no_download) == tmp_path / "env.npz"
    assert find_fid_weights(cache / "explicit.npz", opener=no_download) == cache / "explicit.npz"


def test_absent_files_say_where_to_put_them(cache, tmp_path, monkeypatch):
    """A missing explicit or $SCOREGEN_FID_WEIGHTS file is named; none anywhere and no
    download: one sentence with the cache folder and the URL."""
    with pytest.raises(FIDError) as error:
        find_fid_weights(tmp_path / "nope.pth")
    assert_one_sentence(error, "nope.pth does not exist")
    monkeypatch.setenv(fid_weights.FID_WEIGHTS_ENV, str(tmp_path / "gone.npz"))
    with pytest.raises(FIDError) as error:
        find_fid_weights()
    assert_one_sentence(error, "gone.npz", "$SCOREGEN_FID_WEIGHTS", "does not exist")
    monkeypatch.delenv(fid_weights.FID_WEIGHTS_ENV)
    with pytest.raises(FIDError) as error:
        find_fid_weights(download=False)
    assert_one_sentence(error, str(cache), fid_weights.FID_WEIGHTS_URL, "$SCOREGEN_FID_WEIGHTS")


def test_cache_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
    """$XDG_CACHE_HOME/scoregen, else ~/.cache/scoregen (also when XDG_CACHE_HOME is empty)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert fid_cache_dir() == tmp_path / "xdg" / "scoregen"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for value in ("", None):
        if value is None:
            monkeypatch.delenv("XDG_CACHE_HOME")
        else:
            monkeypatch.setenv("XDG_CACHE_HOME", value)
        assert fid_cache_dir() == tmp_path / "home" / ".cache" / "scoregen"


# -------------------------------------------------------------------------------- download


def test_the_published_name_carries_a_sha256_prefix():
    """torch.hub's convention reads 6726825d from the published file's name, none from ours."""
    assert fid_weights.sha256_prefix_of_name(fid_weights.FID_WEIGHTS_URL) == "6726825d"
    assert fid_weights.sha256_prefix_of_name(fid_weights.CONVERTED_FILE) is None


@pytest.fixture
def served(weights_files, tmp_path) -> tuple[str, Path]:
    """(file:// URL, file) of the fixture's .npz under a name carrying its SHA-256 prefix."""
    data = weights_files["npz"].read_bytes()
    name = f"fid_random-{hashlib.sha256(data).hexdigest()[:8]}.npz"
    (tmp_path / "server").mkdir()
    source = tmp_path / "server" / name
    source.write_bytes(data)
    return source.as_uri(), source


def test_download_over_a_file_url_is_checked_and_cached(served, cache, fid_fixture):
    """Downloaded into the cache under the URL's name, the prefix in that name checked; the same
    arrays come out; a second lookup finds the file without downloading."""
    url, source = served
    progress = []
    path = find_fid_weights(url=url, progress=progress.append)
    assert path == cache / source.name
    assert path.read_bytes() == source.read_bytes()
    assert sum(progress) == source.stat().st_size
    assert sorted(p.name for p in cache.iterdir()) == [source.name]  # no partial file
    assert_same_arrays(read_fid_weights(path), fid_fixture["state_dict"])

    def no_download(url):
        raise AssertionError("downloaded again")

    assert find_fid_weights(url=url, opener=no_download) == path


def test_a_download_with_another_hash_is_not_kept(served, cache):
    """The bytes' SHA-256 does not start with the expected prefix: nothing is left in the cache."""
    url, _ = served
    with pytest.raises(FIDError) as error:
        find_fid_weights(url=url, sha256_prefix="6726825d")
    assert_one_sentence(error, "not the 6726825d", str(cache))
    assert list(cache.iterdir()) == []


class BrokenResponse:
    """A response that sends some bytes, then loses the connection."""

    def __init__(self) -> None:
        self.sent = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, n: int) -> bytes:
        if self.sent:
            raise http.client.IncompleteRead(b"", 100)
        self.sent = True
        return b"x" * 10


def test_offline_or_cut_downloads_say_where_to_put_the_file(cache, tmp_path):
    """No network (URLError) or a connection cut mid-file: one sentence, nothing kept."""

    def offline(url):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    with pytest.raises(FIDError) as error:
        find_fid_weights(opener=offline)
    assert_one_sentence(
        error, "could not download", fid_weights.FID_WEIGHTS_FILE, str(cache), "name resolution"
    )
    with pytest.raises(FIDError) as error:
        download_fid_weights(tmp_path / "w-00.pth", opener=lambda url: BrokenResponse())
    assert_one_sentence(error, "could not download")
    assert not (tmp_path / "w-00.pth").exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
