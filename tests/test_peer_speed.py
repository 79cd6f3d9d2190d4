"""benchmarks/peer_speed.py's checks of the original's tree and per-round ratios, and the
persistent workers of benchmarks/backend_worker.py that it interleaves."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

peer_speed = importlib.import_module("benchmarks.peer_speed")
backend_worker = importlib.import_module("benchmarks.backend_worker")

ECHO_WORKER = """
import sys
from benchmarks import backend_worker

if "--worker" in sys.argv:
    print("a line that is not a result")
    backend_worker.serve(
        {
            "echo": lambda command: {"args": sys.argv[2:], **command},
            "exit": lambda command: sys.exit(3),
        }
    )
"""


def _tree(tmp_path: Path, patched: bool) -> Path:
    """A stand-in score_sde_pytorch tree, with or without the CPU patch's mark."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "ncsnpp.py").write_text("")
    (tmp_path / "op").mkdir()
    mark = "# CPU parity patch: ..." if patched else "upfirdn2d_op = load(...)"
    (tmp_path / "op" / "upfirdn2d.py").write_text(mark + "\n")
    return tmp_path


def test_a_missing_or_unpatched_tree_gets_one_sentence(tmp_path: Path) -> None:
    """No path, a folder that is no score_sde_pytorch tree, an unpatched one: one sentence each."""
    for tree, words in (
        (None, "no original"),
        (tmp_path / "absent", "is not a score_sde_pytorch tree"),
        (_tree(tmp_path, patched=False), "lacks the CPU patch"),
    ):
        problem = peer_speed.tree_problem(tree)
        assert words in problem
        assert problem.endswith(".") and "\n" not in problem


def test_a_patched_tree_passes(tmp_path: Path) -> None:
    """The patch's mark in op/upfirdn2d.py and models/ncsnpp.py: no problem."""
    assert peer_speed.tree_problem(_tree(tmp_path, patched=True)) is None


def test_without_the_original_nothing_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """main() says why in one line and returns 2, before starting any worker."""
    assert peer_speed.main(["--quick"]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "--original" in out


def test_ratios_pair_rounds_with_the_original_s() -> None:
    """Each ratio divides by the original's time of the same round; a missing round is skipped."""
    results = {
        "original": {"train": [{"round": 0, "s_per_step": 2.0}, {"round": 1, "s_per_step": 4.0}]},
        "scoregen jax": {
            "train": [
                {"round": 0, "s_per_step": 3.0},
                {"round": 1, "s_per_step": 4.0},
                {"round": 2, "s_per_step": 9.0},
            ]
        },
    }
    assert peer_speed._ratios(results, "scoregen jax", "train") == [1.5, 1.0]
    assert peer_speed._ratios(results, "original", "train") == [1.0, 1.0]
    assert (
        peer_speed._ratios({"scoregen jax": results["scoregen jax"]}, "scoregen jax", "train") == []
    )


def test_a_worker_answers_commands_until_closed(tmp_path: Path) -> None:
    """Worker.request sends a JSON command and returns the RESULT payload, skipping other lines."""
    script = tmp_path / "echo_worker.py"
    script.write_text(ECHO_WORKER)
    worker = backend_worker.Worker(script, "torch", ["--flag", "1"])
    try:
        assert worker.request({"do": "echo", "n": 1}) == {
            "args": ["--flag", "1"],
            "do": "echo",
            "n": 1,
        }
        assert worker.request({"do": "echo", "n": 2})["n"] == 2
    finally:
        worker.close()


def test_a_worker_that_exits_raises_with_its_last_lines(tmp_path: Path) -> None:
    """A worker gone before its RESULT: WorkerError naming its exit code and its output."""
    script = tmp_path / "echo_worker.py"
    script.write_text(ECHO_WORKER)
    worker = backend_worker.Worker(script, "torch", [])
    with pytest.raises(backend_worker.WorkerError, match="exit 3: a line that is not a result"):
        worker.request({"do": "exit"})
    worker.close()
