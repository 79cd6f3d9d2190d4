"""benchmarks/peer_profile.py's pure parts: the merged op table, grappler's log, the split."""

from __future__ import annotations

import importlib

import pytest

peer_profile = importlib.import_module("benchmarks.peer_profile")

GRAPPLER_LOG = """\
I0000 00:00:1.0  1 meta_optimizer.cc:1059] Starting optimization for grappler item: __inference_f_87
I0000 00:00:1.1  1 meta_optimizer.cc:973] model_pruner: Graph size after: 82 nodes (-1), 101 edges (-1), time = 0.181ms.
I0000 00:00:1.2  1 meta_optimizer.cc:973] tfg_optimizer{any(tfg-consolidate-attrs,tfg-toposort,tfg-shape-inference{graph-version=0})}: Graph size after: 82 nodes (0), 101 edges (0), time = 1ms.
I0000 00:00:1.3  1 meta_optimizer.cc:973] remapper: Graph size after: 63 nodes (0), 101 edges (0), time = 1.745ms.
I0000 00:00:1.4  1 meta_optimizer.cc:973] model_pruner: Graph size after: 63 nodes (0), 101 edges (0), time = 0.091ms.
I0000 00:00:1.5  1 meta_optimizer.cc:1092] Optimized main graph.
some other line: time = 5ms
"""  # noqa: E501


def test_merge_ops_ranks_by_the_larger_side_and_sums_the_rest() -> None:
    """Ops ranked by the larger self time of the two sides (ties by name), an op one side lacks
    at 0 ms and 0 calls; then the other ops and all ops summed per side, without calls."""
    ours = {"aten::conv": [60.0, 22.0], "aten::group_norm": [10.0, 47.0], "aten::to": [1.0, 605.0]}
    theirs = {"aten::conv": [70.0, 22.0], "aten::einsum": [10.0, 6.0], "aten::bmm": [9.0, 18.0]}
    rows = peer_profile.merge_ops({"scoregen": ours, "original": theirs}, top=3)
    assert [row["op"] for row in rows] == [
        "aten::conv",
        "aten::einsum",
        "aten::group_norm",
        "other ops (2)",
        "all ops",
    ]
    assert rows[0] == {"op": "aten::conv", "scoregen": [60.0, 22.0], "original": [70.0, 22.0]}
    assert rows[1]["scoregen"] == [0.0, 0.0] and rows[2]["original"] == [0.0, 0.0]
    assert rows[3] == {"op": "other ops (2)", "scoregen": [1.0, None], "original": [9.0, None]}
    assert rows[4] == {"op": "all ops", "scoregen": [71.0, None], "original": [89.0, None]}


def test_grappler_passes_sum_each_pass_over_rounds() -> None:
    """Each pass's time summed over its rounds (its options in braces dropped), largest first;
    lines that are not a pass's result are ignored."""
    passes = peer_profile.grappler_passes(GRAPPLER_LOG)
    assert list(passes) == ["remapper", "tfg_optimizer", "model_pruner"]
    assert passes["model_pruner"] == pytest.approx(0.272)
    assert passes["tfg_optimizer"] == 1.0
    assert peer_profile.grappler_passes("no grappler here") == {}


def test_first_step_split_leaves_the_rest() -> None:
    """rest = first step - tracing - grappler's passes (ms in the log) - one steady step."""
    fit = {"first_s": 24.0, "trace_s": 9.5, "steady_s": 0.5, "grappler_passes_ms": {"a": 6000.0}}
    split = peer_profile.first_step_split(fit)
    assert split == pytest.approx({"trace_s": 9.5, "grappler_s": 6.0, "rest_s": 8.0})


def test_without_the_original_nothing_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """main() says why in one line and returns 2, before starting any worker."""
    assert peer_profile.main(["--quick"]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "--original" in out
