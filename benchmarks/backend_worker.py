"""One benchmark process per Keras backend: the driver runs `SCRIPT --worker ARGS` with
KERAS_BACKEND set (it must be set before Keras starts), the worker prints one RESULT line of JSON.

A driver that interleaves several processes (rounds taken in turn, so a slow spell of a shared
machine hits every system alike) keeps them running: `Worker` starts one, `request` sends it a
command (one JSON line on its standard input) and waits for its RESULT line; the worker side is
`serve`, which answers each command with its handler's payload.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
from collections import deque
from collections.abc import Callable
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


def _environment(backend: str, env: dict[str, str] | None) -> dict[str, str]:
    """The worker's environment: ours, KERAS_BACKEND, quiet TensorFlow, the repository first on
    PYTHONPATH, then ``env``."""
    environment = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), environment.get("PYTHONPATH")])
    )
    environment.update(env or {})
    return environment


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
    tail: deque[str] = deque(maxlen=FAILURE_TAIL_LINES)
    result = None
    with subprocess.Popen(
        [sys.executable, str(script), WORKER_FLAG, *argv],
        env=_environment(backend, env),
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


class WorkerError(RuntimeError):
    """A persistent worker exited before answering; the message ends with its last lines."""


class Worker:
    """A worker process kept running between commands: `SCRIPT --worker ARGS` answering `serve`."""

    def __init__(
        self,
        script: str | Path,
        backend: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        label: str | None = None,
        echo: bool = False,
    ) -> None:
        """Start the worker of `script` on `backend` (``env`` and ``echo`` as for run_worker)."""
        self.label = label or backend
        self.echo = echo
        self._tail: deque[str] = deque(maxlen=FAILURE_TAIL_LINES)
        self._proc = subprocess.Popen(
            [sys.executable, str(script), WORKER_FLAG, *argv],
            env=_environment(backend, env),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def request(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send one command, return the payload of the worker's RESULT line."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(json.dumps(command) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            pass  # the worker has exited: reported below with its last lines
        for line in self._proc.stdout:
            if line.startswith(RESULT_PREFIX):
                return json.loads(line[len(RESULT_PREFIX) :])
            self._tail.append(line.rstrip())
            if self.echo:
                print(f"[{self.label}] {line}", end="", flush=True)
        code = self._proc.wait()
        raise WorkerError(f"exit {code}: " + "\n".join(self._tail))

    def close(self) -> None:
        """Ask the worker to stop (end of its input) and wait for it."""
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
            self._proc.wait()


def serve(handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Worker side of `Worker`: answer each command line (its "do" names the handler) with a
    RESULT line, until the input ends."""
    for line in sys.stdin:
        if line.strip():
            command = json.loads(line)
            emit_result(handlers[command["do"]](command))
