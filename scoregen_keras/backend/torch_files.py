"""Published PyTorch files (`.pth`, `.bin`): read without running code, on any Keras backend.

``torch.load(weights_only=True)`` refuses a pickle that would run code; tensors come back as NumPy
arrays, so the weights of an original implementation load onto a JAX or TensorFlow model too.
"""

from __future__ import annotations

import os
from typing import Any

TORCH_INSTALL_HINT = (
    "pip install torch (a CPU build: --index-url https://download.pytorch.org/whl/cpu)"
)


def _to_numpy(value: Any, torch: Any) -> Any:
    """Tensors as NumPy arrays, through dicts, lists and tuples; other values unchanged."""
    if torch.is_tensor(value):
        return value.detach().cpu().numpy()
    if isinstance(value, dict):
        return {key: _to_numpy(item, torch) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_numpy(item, torch) for item in value)
    return value


def read_torch_file(path: str | os.PathLike[str]) -> Any:
    """What a torch-saved file holds, its tensors as NumPy arrays, read with weights_only=True.

    ValueError with one sentence without torch installed, or for a file torch cannot read that
    way (a pickle that would run code, a corrupt or foreign file).
    """
    try:
        import torch
    except ImportError:
        raise ValueError(f"reading {path} needs PyTorch: {TORCH_INSTALL_HINT}.") from None
    try:
        loaded = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, OSError, ...
        lines = str(error).strip().splitlines()
        cause = lines[0] if lines else type(error).__name__
        raise ValueError(f"{path} is not a weights-only PyTorch file ({cause}).") from None
    return _to_numpy(loaded, torch)


def read_torch_weights(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A torch-saved dict of tensors (a state_dict) as {key: NumPy array} (ValueError otherwise)."""
    loaded = read_torch_file(path)
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a dict of tensors.")
    return loaded
