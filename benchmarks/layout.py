"""Where the benchmarks write: the figures, the --quick smoke results, the training runs."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_RESULTS = RESULTS / "quick"  # --quick writes here, never over the figures
RUNS_DIR = RESULTS / "runs"  # ignored by git (`runs/`)


def default_output(name: str, quick: bool) -> Path:
    """results/NAME for the figures, results/quick/NAME for a --quick smoke run."""
    return (QUICK_RESULTS if quick else RESULTS) / name
