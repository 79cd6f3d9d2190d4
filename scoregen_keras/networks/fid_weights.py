"""The FID Inception weights: pytorch-fid's published state_dict, found, read, checked, converted.

The file is ``pt_inception-2015-12-05-6726825d.pth`` (pytorch-fid's port of the TF 2015-12-05
graph, a plain ``torch.save`` of the state_dict), or a ``.npz`` with the same keys and arrays
(`convert_fid_weights` writes one, so a machine without PyTorch can use the weights).

- Read: a .pth with ``torch.load(weights_only=True)`` where PyTorch is installed (under any Keras
  backend; nothing in the file runs), a .npz with NumPy (``allow_pickle=False``).
- Found (`find_fid_weights`): an explicit path, else $SCOREGEN_FID_WEIGHTS, else the user cache
  folder ($XDG_CACHE_HOME/scoregen, default ~/.cache/scoregen: the converted .npz, then the .pth),
  else downloaded there from pytorch-fid's release URL. The download is checked against the
  SHA-256 prefix in the file's name (torch.hub's convention, which pytorch-fid itself does not
  check) and written through a temporary name, so a broken download never passes for the file.

Every failure is a `FIDError` with one sentence that names the file or the key.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from scoregen_keras import backend
from scoregen_keras.networks.fid_inception import (
    FIDError,
    build_fid_inception,
    error_cause,
    load_torch_state_dict,
    state_dict_mismatch,
)

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
)
CONVERTED_FILE = "fid_inception_weights.npz"
"""The name `find_fid_weights` looks for first in the cache folder: the .npz convert_fid_weights
writes from the .pth (no "-hex." in it: it is not the published file, whose name carries a hash)."""
FID_WEIGHTS_ENV = "SCOREGEN_FID_WEIGHTS"
CACHE_ENV = "XDG_CACHE_HOME"
CACHE_SUBDIR = "scoregen"
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")
"""torch.hub's HASH_REGEX: the hex digits before the first dot are the SHA-256's first digits."""
TORCH_SUFFIXES = (".pth", ".pt")
NPZ_SUFFIX = ".npz"
DOWNLOAD_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 60
DOWNLOADED_FILE_MODE = 0o644
"""Mode of a downloaded file (mkstemp creates 0600)."""
NPZ_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)
DOWNLOAD_ERRORS = (OSError, ValueError, http.client.HTTPException)
"""urllib's failures: URLError and HTTPError are OSErrors, an unknown scheme a ValueError, a
connection cut mid-body an HTTPException."""
INSTALL_TORCH = "pip install torch (the CPU build will do)"

Opener = Callable[[str], Any]
"""url -> a response with .read(n), usable as a context manager (urllib.request.urlopen's)."""
Progress = Callable[[int], None]
"""Called with the number of bytes (or images) just done, as tqdm's update."""


def fid_cache_dir() -> Path:
    """$XDG_CACHE_HOME/scoregen, or ~/.cache/scoregen when XDG_CACHE_HOME is unset or empty."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / CACHE_SUBDIR


def sha256_prefix_of_name(url_or_name: str) -> str | None:
    """The SHA-256 prefix a file name carries as torch.hub reads it ("6726825d"), or None."""
    match = HASH_IN_NAME.search(_file_name(url_or_name))
    return match.group(1) if match and match.group(1) else None


def _file_name(url_or_name: str) -> str:
    """The last path component of a URL or path."""
    return Path(urllib.parse.urlparse(url_or_name).path).name or url_or_name


def _where_to_put(cache: Path) -> str:
    """The clause telling the user where the weights go."""
    return (
        f"put {FID_WEIGHTS_FILE} (from {FID_WEIGHTS_URL}) or the .npz convert_fid_weights writes "
        f"from it in {cache}, or name the file with ${FID_WEIGHTS_ENV}"
    )


# ------------------------------------------------------------------------------------- reading


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    """A .pth state_dict through torch.load(weights_only=True)."""
    try:
        return backend.read_torch_tensors(path)
    except ModuleNotFoundError as error:
        if error.name != "torch":
            raise
        raise FIDError(
            f"reading {path} needs PyTorch, which is not installed: {INSTALL_TORCH}, or convert "
            f"the file to {NPZ_SUFFIX} on a machine that has it (convert_fid_weights) and use that."
        ) from error
    except ValueError as error:
        raise FIDError(f"{path} is not a plain state_dict: {error}.") from error


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """A .npz of named arrays, with NumPy's pickle support off."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("it holds one array, not named arrays")
        with archive:
            return {key: archive[key] for key in archive.files}
    except NPZ_READ_ERRORS as error:
        raise FIDError(
            f"could not read {path} as a .npz of arrays ({error_cause(error)})."
        ) from error


def read_fid_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """{state_dict key: array} of a .pth (PyTorch) or .npz weights file, keys unchecked."""
    path = Path(path)
    if not path.is_file():
        raise FIDError(f"the FID Inception weights file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return _read_torch(path)
    if suffix == NPZ_SUFFIX:
        return _read_npz(path)
    raise FIDError(
        f"{path} is neither a .pth (torch.save of the state_dict) nor a .npz of the same keys."
    )


def check_fid_weights(
    state_dict: Mapping[str, np.ndarray],
    source: str | os.PathLike[str],
    network: keras.Model | None = None,
) -> None:
    """Raise FIDError naming `source` and the key unless state_dict fits the FID network."""
    network = build_fid_inception() if network is None else network
    problem = state_dict_mismatch(network, state_dict)
    if problem is not None:
        raise FIDError(f"{source} does not hold the FID Inception weights: {problem}.")


def _write_npz(target: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """np.savez through a temporary name in the target's folder, then an atomic rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.chmod(tmp, DOWNLOADED_FILE_MODE)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def convert_fid_weights(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> Path:
    """Write the weights of `source` (.pth or .npz) as a .npz of the same keys, for NumPy alone.

    The keys and shapes are checked against the network first; an existing target is refused.
    """
    target = Path(target)
    if target.suffix.lower() != NPZ_SUFFIX:
        raise FIDError(f"the converted weights file must end in {NPZ_SUFFIX}, got {target.name}.")
    if target.exists():
        raise FIDError(f"{target} exists; remove it or choose another name (it is not replaced).")
    if not target.parent.is_dir():
        raise FIDError(f"the folder {target.parent} of {target.name} does not exist.")
    arrays = read_fid_weights(source)
    check_fid_weights(arrays, source)
    _write_npz(target, arrays)
    return target


# ----------------------------------------------------------------------- finding, downloading


def _urlopen(url: str) -> Any:
    """urllib's opener with a timeout."""
    return urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)


def download_fid_weights(
    target: str | os.PathLike[str],
    url: str = FID_WEIGHTS_URL,
    sha256_prefix: str | None = None,
    opener: Opener | None = None,
    progress: Progress | None = None,
) -> Path:
    """Download `url` to `target` if its SHA-256 starts with `sha256_prefix` (default: the hex
    digits in the URL's file name, as torch.hub's check_hash reads them).

    Written to a temporary name in the target's folder and renamed only once complete and
    checked; on any failure nothing is left behind and FIDError says where to put the file.
    """
    target = Path(target)
    expected = sha256_prefix if sha256_prefix is not None else sha256_prefix_of_name(url)
    if not expected:
        raise FIDError(f"{url} names no SHA-256 prefix to check the download against.")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as handle, (opener or _urlopen)(url) as response:
            while chunk := response.read(DOWNLOAD_CHUNK):
                handle.write(chunk)
                digest.update(chunk)
                if progress is not None:
                    progress(len(chunk))
        if not digest.hexdigest().startswith(expected):
            raise FIDError(
                f"the file downloaded from {url} has SHA-256 {digest.hexdigest()[:16]}…, not the "
                f"{expected}… its name promises; nothing was kept: {_where_to_put(target.parent)}."
            )
        os.chmod(tmp, DOWNLOADED_FILE_MODE)
        os.replace(tmp, target)
    except DOWNLOAD_ERRORS as error:
        raise FIDError(
            f"could not download {url} ({error_cause(error)}): {_where_to_put(target.parent)}."
        ) from error
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return target


def find_fid_weights(
    path: str | os.PathLike[str] | None = None,
    *,
    download: bool = True,
    url: str = FID_WEIGHTS_URL,
    sha256_prefix: str | None = None,
    opener: Opener | None = None,
    progress: Progress | None = None,
) -> Path:
    """The FID Inception weights file: `path`, else $SCOREGEN_FID_WEIGHTS, else the cache folder
    (CONVERTED_FILE, then the URL's file name), else downloaded there (unless download=False).
    """
    explicit, origin = path, ""
    if explicit is None and os.environ.get(FID_WEIGHTS_ENV):
        explicit, origin = os.environ[FID_WEIGHTS_ENV], f" (named by ${FID_WEIGHTS_ENV})"
    if explicit is not None:
        explicit = Path(explicit).expanduser()
        if not explicit.is_file():
            raise FIDError(f"the FID Inception weights file {explicit}{origin} does not exist.")
        return explicit
    cache = fid_cache_dir()
    for name in (CONVERTED_FILE, _file_name(url)):
        if (cache / name).is_file():
            return cache / name
    if not download:
        raise FIDError(f"the FID Inception weights were not found: {_where_to_put(cache)}.")
    return download_fid_weights(cache / _file_name(url), url, sha256_prefix, opener, progress)


def load_fid_inception(
    weights: str | os.PathLike[str] | None = None, *, download: bool = True
) -> keras.Model:
    """The FID Inception network with the weights `find_fid_weights(weights)` finds."""
    path = find_fid_weights(weights, download=download)
    arrays = read_fid_weights(path)
    network = build_fid_inception()
    check_fid_weights(arrays, path, network)
    load_torch_state_dict(network, arrays)
    return network


__all__ = [
    "CONVERTED_FILE",
    "FID_WEIGHTS_ENV",
    "FID_WEIGHTS_FILE",
    "FID_WEIGHTS_URL",
    "check_fid_weights",
    "convert_fid_weights",
    "download_fid_weights",
    "fid_cache_dir",
    "find_fid_weights",
    "load_fid_inception",
    "read_fid_weights",
    "sha256_prefix_of_name",
]
