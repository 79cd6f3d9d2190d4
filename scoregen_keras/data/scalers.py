"""The affine map between a data set's original scale and model space, and pixel scales."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

PIXEL_MAX_8BIT = 255.0
SCALER_SLICE_ENTRIES = 2**22  # values a Scaler maps at a time (32 MiB of float64)


@dataclasses.dataclass(frozen=True)
class Scaler:
    """Affine map between the data's original scale and model space: model = (x - shift) / scale."""

    shift: float = 0.0
    scale: float = 1.0

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Map data from its original scale to model space (float32, computed in float64)."""
        x = np.asarray(x)
        if x.ndim == 0:
            return self.forward(x[None])[0]
        out = np.empty(x.shape, dtype=np.float32)
        # a slice of examples at a time: a large image set needs no float64 copy of itself
        step = max(1, SCALER_SLICE_ENTRIES // max(1, math.prod(x.shape[1:])))
        for start in range(0, len(x), step):
            part = x[start : start + step].astype(np.float64)
            out[start : start + step] = (part - self.shift) / self.scale
        return out

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Map model-space arrays back to the data's original scale."""
        return np.asarray(x, dtype=np.float64) * self.scale + self.shift

    def to_config(self) -> dict:
        """Plain-JSON description of the scaler, stored with a run."""
        return {"shift": self.shift, "scale": self.scale}

    @classmethod
    def from_config(cls, config: dict) -> Scaler:
        """Rebuild a scaler from `to_config()` output."""
        return cls(shift=float(config["shift"]), scale=float(config["scale"]))


def pixel_scaler(pixel_max: float, centered: bool) -> Scaler:
    """Scaler from integer pixels in [0, pixel_max] to [0, 1], or to [-1, 1] when centred."""
    if centered:
        return Scaler(shift=pixel_max / 2.0, scale=pixel_max / 2.0)
    return Scaler(shift=0.0, scale=pixel_max)


def original_pixel_range(scaler: Scaler) -> tuple[float, float]:
    """Black and white of a pixel scaler (`pixel_scaler`) in original units: (0, pixel_max)."""
    return 0.0, float(scaler.shift + scaler.scale)


def model_pixel_range(scaler: Scaler) -> tuple[float, float]:
    """Black and white of a pixel scaler in model space: (0, 1), or (-1, 1) when centred."""
    black, white = scaler.forward(np.array(original_pixel_range(scaler)))
    return float(black), float(white)
