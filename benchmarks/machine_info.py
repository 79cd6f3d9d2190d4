"""The machine a benchmark's figures come from, as its JSON records it."""

from __future__ import annotations

import os
import platform
from typing import Any


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (None where the platform has none)."""
    if not hasattr(os, "getloadavg"):
        return None
    return [round(value, 2) for value in os.getloadavg()]


def machine(**extra: Any) -> dict[str, Any]:
    """Platform, processor, CPU count, 1-min load now and Python version, plus `extra` entries."""
    load = load_average()
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_1min_at_start": None if load is None else load[0],
        "python": platform.python_version(),
        **extra,
    }
