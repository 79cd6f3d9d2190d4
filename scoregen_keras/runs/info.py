"""What a run folder holds, read from its config.json and run.json alone (no checkpoint loaded)."""

from __future__ import annotations

import os
from typing import Any

from scoregen_keras.runs.folder import RunPaths, read_json, run_config, run_folder

PROVENANCE_FIELDS = ("format", "file", "sha256", "weights", "config")
"""What `run_info` shows of an imported run's imported_from (the translated spec is left out)."""


def run_info(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's summary: status and step, model, noise process, data, sampler, and for an
    imported model where it came from (file, sha256, weights chosen)."""
    root = run_folder(run_dir)
    paths = RunPaths(root)
    config = run_config(root)
    status = read_json(paths.status, "run status") if paths.status.exists() else {}
    data = config["data"]
    info: dict[str, Any] = {
        "run_dir": str(root),
        "status": status.get("status", "unknown"),
        "step": status.get("step"),
        "model": config.get("model"),
        "network": (config.get("network") or {}).get("class"),
        "sde": config.get("sde"),
        "sde_config": config.get("sde_config", {}),
        "preconditioning": config.get("preconditioning", "edm"),
        "data": {
            "kind": data.get("kind"),
            "shape": data.get("shape"),
            "dataset": config.get("dataset"),
            "value_range": data.get("value_range"),
        },
        "sampler": config.get("sampler"),
        "backend": config.get("backend"),
    }
    source = config.get("imported_from")
    if isinstance(source, dict):
        info["imported_from"] = {key: source.get(key) for key in PROVENANCE_FIELDS}
        info["conventions"] = config.get("conventions")
    return info
