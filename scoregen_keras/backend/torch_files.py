"""Published PyTorch files (`.pth`, `.bin`): read without running code, on any Keras backend.

``torch.load(weights_only=True)`` refuses a pickle that would import or run code; tensors come
back as NumPy arrays, so the weights of an original implementation load onto a JAX or TensorFlow
model too. Both readers raise ModuleNotFoundError without torch (the caller says how to install it
for what it reads) and ValueError with one clause for a file torch refuses or cannot read.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
import zipfile
from typing import Any

import numpy as np

TORCH_INSTALL_HINT = (
    "pip install torch (a CPU build: --index-url https://download.pytorch.org/whl/cpu)"
)
TORCH_LOAD_ERRORS = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError)
"""What torch.load raises for a refused pickle, a corrupt archive, an empty or unreadable file."""
TORCH_CAUSE_MARK = "WeightsUnpickler error:"
"""What precedes the cause (the offending global or opcode) in torch's refusal."""
TORCH_PROTOCOL_WARNING = "Detected pickle protocol"


def _first_sentence(text: str) -> str:
    """Text up to its first full stop or line break."""
    return re.split(r"\.\s|\n", text.strip() + "\n", maxsplit=1)[0].rstrip(".")


def _load_failure(error: BaseException) -> str:
    """What torch.load's (long, multi-line) message says, as one clause."""
    text = str(error)
    if isinstance(error, pickle.UnpicklingError):  # the weights_only unpickler said no
        cause = _first_sentence(text.split(TORCH_CAUSE_MARK, 1)[-1])
        return f"torch.load(weights_only=True) refused it, as no plain pickle of tensors ({cause})"
    return f"torch.load could not read it ({_first_sentence(text) or type(error).__name__})"


def _to_numpy(value: Any, torch: Any, where: str) -> Any:
    """Tensors as NumPy arrays, through dicts, lists and tuples; other values unchanged."""
    if isinstance(value, torch.Tensor):
        try:
            return value.detach().cpu().numpy()
        except TypeError as error:  # dtypes NumPy lacks (bfloat16)
            raise ValueError(f"{where} has dtype {value.dtype}, which NumPy cannot hold") from error
    if isinstance(value, dict):
        return {key: _to_numpy(item, torch, f"entry {key!r}") for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_numpy(item, torch, f"{where}[{i}]") for i, item in enumerate(value))
    return value


def read_torch_file(path: str | os.PathLike[str], mmap: bool = False) -> Any:
    """What a torch-saved file holds (a checkpoint's nested dicts and lists), its tensors as NumPy
    arrays; read with ``torch.load(weights_only=True, map_location="cpu")``.

    ``mmap``: map the file's tensors rather than read them (torch.save's zip format; a legacy file
    is read whole), so that only the tensors a caller touches take memory: a training checkpoint
    holds the weights, their EMA and the optimizer's moments, four times the weights in all.
    """
    import torch

    mapped = mmap and zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():  # a pickle protocol other than torch.save's is refused
            warnings.filterwarnings("ignore", TORCH_PROTOCOL_WARNING, UserWarning)
            loaded = torch.load(os.fspath(path), weights_only=True, map_location="cpu", mmap=mapped)
    except TORCH_LOAD_ERRORS as error:
        raise ValueError(_load_failure(error)) from error
    return _to_numpy(loaded, torch, "the file")


def read_torch_tensors(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The {name: array} of a file torch.save wrote from a dict of tensors (a state_dict)."""
    loaded = read_torch_file(path)
    if not isinstance(loaded, dict):
        raise ValueError(f"it holds a {type(loaded).__name__}, not a dict of tensors")
    for key, value in loaded.items():
        if not (isinstance(key, str) and isinstance(value, np.ndarray)):
            raise ValueError(f"entry {key!r} is a {type(value).__name__}, not a named tensor")
    return loaded
