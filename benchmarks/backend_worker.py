"""One benchmark process per Keras backend: the driver runs `SCRIPT --worker ARGS` with
KERAS_BACKEND set (it must be set before Keras starts), the worker prints one RESULT line of JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKER_FLAG = "--worker"
RESULT_PREFIX = "RESULT "
FAILURE_TAIL_LINES = 30


def add_worker_flag(parser: argparse.ArgumentParser) -> None:
    """The hidden --worker option that makes a benchmark script run one backend's part."""
    parser.add_argument(WORKER_FLAG, action="store_true", help=argparse.SUPPRESS)


def emit_result(payload: dict[str, Any]) -> None:
    """Print the worker's result as the RESULT line the driver reads."""
    print(RESULT_PREFIX + json.dumps(payload), flush=True)


def run_worker(
    script: str | Path,
    backend: str,
    argv: list[str],
    empty: dict[str, Any],
    env: dict[str, str] | None = None,
    echo: bool = False,
) -> dict[str, Any]:
    """Run the worker of `script` on `backend`; its RESULT payload.

    On failure: {"backend": backend, **empty, "notes": ["exit N: the last lines of output"]}.
    ``env`` adds variables; ``echo`` prints the worker's other lines as they come, prefixed.
    """
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), environment.get("PYTHONPATH")])
    )
    environment.update(env or {})
    tail: deque[str] = deque(maxlen=FAILURE_TAIL_LINES)
    result = None
    with subprocess.Popen(
        [sys.executable, str(script), WORKER_FLAG, *argv],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(RESULT_PREFIX):
                result = json.loads(line[len(RESULT_PREFIX) :])
                continue
            tail.append(line.rstrip())
            if echo:
                print(f"[{backend}] {line}", end="", flush=True)
    if result is None:
        failure = "\n".join(tail)
        return {"backend": backend, **empty, "notes": [f"exit {proc.returncode}: {failure}"]}
    return result


def print_notes(result: dict[str, Any]) -> None:
    """The notes of one backend's result (failures, skipped settings), a line each."""
    for note in result["notes"]:
        print(f"{result['backend']:<11} note: {note}")
