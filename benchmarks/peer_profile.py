"""Issue 27: where the remaining time goes -- profiles of scoregen beside the original score_sde.

For the cells of benchmarks/peer_speed.py that miss their target, on its networks (its builders:
the issue's size, batch 8, one thread), each measurement in its own process:

- PyTorch score call: torch.profiler over --calls calls of scoregen's EMA score (torch backend,
  no grad, as the sampler calls it) and of the original's (``mutils.get_score_fn``: forward and
  SDE scaling, as its sampler calls it): self CPU ms and calls per call for each op, both sides in
  one table; the median wall per call without and with the profiler, and outside ops = a wall -
  all ops' self time (Python between ops: module / layer dispatch; the profiled run's op times
  carry part of the profiler's own cost).
- TensorFlow first train step: Keras' fit (a tf.function graph on a CPU, no XLA), its first
  one-step call split into scoregen's ``train_step`` traced (its Python runs only while
  tf.function traces it: a wrapper times it), grappler's passes (its own log,
  TF_CPP_VMODULE=meta_optimizer=1) and the rest (the outer function's trace, executor set-up,
  fit's set-up, the first run beyond a steady step); then the steady step. Once more with
  grappler switched off (``disable_meta_optimizer``).
Prints the tables and writes benchmarks/results/peer_profile.json.

    python benchmarks/peer_profile.py --original /work/peer/score_sde_pytorch
    python benchmarks/peer_profile.py --original PATH --models ddpmpp --calls 5
    python benchmarks/peer_profile.py --original PATH --quick      # smoke test: a tiny network
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks import backend_worker  # noqa: E402
from benchmarks.layout import default_output  # noqa: E402
from benchmarks.machine_info import load_average, machine  # noqa: E402
from benchmarks.peer_speed import (  # noqa: E402
    MODELS,
    SIZES,
    Original,
    Scoregen,
    Timed,
    thread_env,
    tree_problem,
)

JSON_NAME = "peer_profile.json"
CALLS, WARM_UP, TRAIN_STEPS, TOP_OPS = 20, 2, 5, 12
QUICK = {"size": "quick", "calls": 2, "train_steps": 1}
SCORE_T = 0.5  # the time both score functions are called at
MS = 1e3
SIDES = ("scoregen", "original")
NO_OP = (0.0, 0.0)  # an op one side never calls: self ms, calls
# grappler's time per pass comes from its VLOG on standard error, which the TF worker captures
GRAPPLER_LOG = {"TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_VMODULE": "meta_optimizer=1"}
PASS_TIME = re.compile(
    r"meta_optimizer\.cc:\d+\] ([\w-]+)[^:]*: Graph size after:.*time = ([\d.]+)ms"
)
GRAPPLER = {"on": {}, "off": {"disable_meta_optimizer": True}}  # tf.config.optimizer options


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--original", type=Path, default=None, help="patched score_sde_pytorch")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--size", default="issue", choices=SIZES)
    parser.add_argument("--calls", type=int, default=CALLS, help="profiled score calls")
    parser.add_argument("--train-steps", type=int, default=TRAIN_STEPS, help="steady TF steps")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny network")
    parser.add_argument("--output", type=Path, default=None, help="JSON path")
    parser.add_argument("--note", default="", help="free text stored in the JSON")
    parser.add_argument("--job", default="original", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="ncsnpp", help=argparse.SUPPRESS)
    backend_worker.add_worker_flag(parser)
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    args.output = args.output or default_output(JSON_NAME, args.quick)
    return args


# --------------------------------------------------------------------------- pure helpers


def merge_ops(sides: dict[str, dict[str, list[float]]], top: int) -> list[dict[str, Any]]:
    """Each side's ops ({op: [self ms, calls]}) as the rows of one table, {"op": name, side:
    [ms, calls]}: the `top` ops by the larger self time, then the other ops and all ops summed
    (calls None)."""

    def larger(name: str) -> tuple[float, str]:
        return -max(ops.get(name, NO_OP)[0] for ops in sides.values()), name

    names = sorted({name for ops in sides.values() for name in ops}, key=larger)
    rows = [
        {"op": n, **{s: list(ops.get(n, NO_OP)) for s, ops in sides.items()}} for n in names[:top]
    ]
    for label, group in ((f"other ops ({len(names[top:])})", names[top:]), ("all ops", names)):
        sums = {
            side: [sum(ops.get(n, NO_OP)[0] for n in group), None] for side, ops in sides.items()
        }
        rows.append({"op": label, **sums})
    return rows


def grappler_passes(log: str) -> dict[str, float]:
    """Grappler's ms per pass (summed over graphs and rounds) from its VLOG lines, largest first."""
    passes: dict[str, float] = {}
    for name, ms in PASS_TIME.findall(log):
        passes[name] = passes.get(name, 0.0) + float(ms)
    return dict(sorted(passes.items(), key=lambda item: -item[1]))


def first_step_split(fit: dict[str, Any]) -> dict[str, float]:
    """The first fit step as train_step's tracing + grappler + the rest + one steady step."""
    grappler = sum(fit["grappler_passes_ms"].values()) / MS
    rest = fit["first_s"] - fit["trace_s"] - grappler - fit["steady_s"]
    return {"trace_s": fit["trace_s"], "grappler_s": grappler, "rest_s": rest}


# --------------------------------------------------------------------------- workers


def median_wall_ms(call: Any, calls: int) -> float:
    """The median wall ms of `calls` calls."""
    import numpy as np

    walls = []
    for _ in range(calls):
        with Timed() as clock:
            call()
        walls.append(clock.wall)
    return float(np.median(walls)) * MS


def profile_calls(call: Any, calls: int) -> dict[str, Any]:
    """The median wall ms per call, without and with torch.profiler; over the profiled calls,
    per call, ops ({op: [self CPU ms, calls]}) and annotations (record_function spans such as
    a module's forward, whose self time is Python between ops)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad():
        for _ in range(WARM_UP):
            call()
        wall_ms = median_wall_ms(call, calls)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            profiled_ms = median_wall_ms(call, calls)
    events = {
        e.key: [e.self_cpu_time_total / MS / calls, e.count / calls] for e in prof.key_averages()
    }
    return {
        "wall_ms": wall_ms,
        "profiled_wall_ms": profiled_ms,
        "ops": {k: v for k, v in events.items() if "::" in k},
        "annotations": {k: v for k, v in events.items() if "::" not in k},
    }


def torch_original(args: argparse.Namespace) -> dict[str, Any]:
    """The original's score function (as its sampler builds it) on the benchmark batch."""
    import torch

    system = Original(args.original, MODELS[args.model], SIZES[args.size], 1)
    mutils = importlib.import_module("models.utils")
    sde = system.make_sde(system.config.model.num_scales)
    score_fn = mutils.get_score_fn(sde, system.model, train=False, continuous=True)
    t = torch.full((system.batch.shape[0],), SCORE_T)
    return profile_calls(lambda: score_fn(system.batch, t), args.calls)


def torch_scoregen(args: argparse.Namespace) -> dict[str, Any]:
    """scoregen's EMA score (torch backend, as the sampler calls it) on the benchmark batch."""
    from keras import ops

    system = Scoregen(MODELS[args.model], SIZES[args.size], 1)
    x = ops.convert_to_tensor(system.x[: system.size.batch])
    t = ops.full((system.size.batch,), SCORE_T)
    return profile_calls(lambda: system.score_fn(x, t), args.calls)


@contextlib.contextmanager
def captured_stderr() -> Iterator[list[str]]:
    """File descriptor 2 (TensorFlow's C++ log) into a temporary file; its text is appended to
    the yielded list when the descriptor is restored."""
    saved, text = os.dup(2), []
    with tempfile.TemporaryFile(mode="w+") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield text
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            text.append(log.read())


def tf_fit(args: argparse.Namespace, grappler: str) -> dict[str, Any]:
    """Keras' fit, grappler on or off: the first one-step call, train_step's tracing and
    grappler's passes within it, then the steady step."""
    import tensorflow as tf

    tf.config.optimizer.set_experimental_options(GRAPPLER[grappler])
    system = Scoregen(MODELS[args.model], SIZES[args.size], 1)
    train_step, traces = system.model.train_step, []

    def traced_step(*data: Any) -> Any:
        with Timed() as clock:  # the step's Python runs only while tf.function traces it
            logs = train_step(*data)
        traces.append(clock.wall)
        return logs

    system.model.train_step = traced_step  # fit's make_train_function reads the attribute
    with captured_stderr() as log:
        first = system.train(1)
    trace_s, n_traces = sum(traces), len(traces)
    steady = system.train(args.train_steps)
    return {
        "first_s": first.wall,
        "first_cpu_s": first.cpu,
        "trace_s": trace_s,
        "traces": n_traces,
        "steady_s": steady.wall / args.train_steps,
        "grappler_passes_ms": grappler_passes(log[0]),
    }


# job -> (backend, extra environment, worker)
JOBS: dict[str, tuple[str, dict[str, str], Any]] = {
    "original": ("torch", {}, torch_original),
    "scoregen": ("torch", {}, torch_scoregen),
    **{
        f"tf grappler {g}": ("tensorflow", GRAPPLER_LOG, functools.partial(tf_fit, grappler=g))
        for g in GRAPPLER
    },
}


# --------------------------------------------------------------------------- driver


def run_job(args: argparse.Namespace, model: str, job: str) -> dict[str, Any]:
    """One job in its own process; its result, or {"failed": the reason}."""
    backend, env, _ = JOBS[job]
    argv = ["--job", job, "--model", model, "--size", args.size, "--calls", str(args.calls)]
    argv += ["--train-steps", str(args.train_steps), "--original", str(args.original)]
    reply = backend_worker.run_worker(__file__, backend, argv, {}, env={**thread_env(1), **env})
    return {"failed": reply["notes"][0]} if "notes" in reply else reply


def torch_summary(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The op table, then per side the walls and outside ops: the wall without the profiler or
    the profiled run's wall (whose op times it shares) - all ops."""
    rows = merge_ops({side: results[side]["ops"] for side in SIDES}, TOP_OPS)
    ops_ms = {side: rows[-1][side][0] for side in SIDES}  # the "all ops" row
    labels = {"wall_ms": "no profiler", "profiled_wall_ms": "profiled"}
    for key, label in labels.items():
        rows.append({"op": f"wall, {label}", **{s: [results[s][key], None] for s in SIDES}})
    for key, label in labels.items():
        outside = {s: [results[s][key] - ops_ms[s], None] for s in SIDES}
        rows.append({"op": f"outside ops, {label}", **outside})
    return {"rows": rows, "annotations": {side: results[side]["annotations"] for side in SIDES}}


def print_torch(title: str, torch: dict[str, Any], calls: int) -> None:
    """The op table of one model's score call, both sides, and the annotations' self time."""
    print(f"\n{title}: PyTorch score call, self CPU ms and calls per call ({calls} profiled)")
    header = f"{'op':<32} {'scoregen':>9} {'calls':>6} {'original':>9} {'calls':>6} {'diff':>7}"
    print(header + "\n" + "-" * len(header))
    for row in torch["rows"]:
        (ours, n_ours), (theirs, n_theirs) = (row[side] for side in SIDES)
        n_ours, n_theirs = ("" if n is None else f"{n:.0f}" for n in (n_ours, n_theirs))
        print(
            f"{row['op']:<32} {ours:>9.1f} {n_ours:>6} {theirs:>9.1f} {n_theirs:>6} "
            f"{ours - theirs:>+7.1f}"
        )
    for side, spans in torch["annotations"].items():
        listed = ", ".join(f"{name} {ms:.1f} ms" for name, (ms, _) in spans.items())
        print(f"{side} annotations (self time, not in all ops): {listed or 'none'}")


def print_tf(title: str, tf: dict[str, dict[str, Any]]) -> None:
    """The first fit step's split and the steady step, grappler on and off."""
    print(f"\n{title}: TensorFlow fit, the first one-step call split, seconds")
    header = f"{'grappler':<9} {'first (cpu)':>12} {'trace':>6} {'passes':>6} {'rest':>6} "
    print(header + f"{'steady':>7}  top passes\n" + "-" * (len(header) + 20))
    for grappler, fit in tf.items():
        if "failed" in fit:
            print(f"{grappler:<9} failed: {fit['failed']}")
            continue
        split, passes = fit["split"], list(fit["grappler_passes_ms"].items())
        top = ", ".join(f"{name} {ms / MS:.1f}" for name, ms in passes[:4]) or "-"
        print(
            f"{grappler:<9} {fit['first_s']:>5.1f} ({fit['first_cpu_s']:>4.1f}) "
            f"{split['trace_s']:>6.1f} {split['grappler_s']:>6.1f} {split['rest_s']:>6.1f} "
            f"{fit['steady_s']:>7.3f}  {top}"
        )
    on, off = tf["on"], tf["off"]
    if "failed" not in on and "failed" not in off:
        print(
            f"grappler on - off: first step {on['first_s'] - off['first_s']:+.1f} s, steady "
            f"step {on['steady_s'] - off['steady_s']:+.3f} s"
        )


def main(argv: list[str] | None = None) -> int:
    """Run every job of each model, print the tables, write the JSON; 2 without the original."""
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        backend_worker.emit_result(JOBS[args.job][2](args))
        return 0
    problem = tree_problem(args.original)
    if problem is not None:
        print(problem)
        return 2
    meta = machine(load_average_at_end=None, shared="yes: other developers' work runs beside it")
    started, models = time.perf_counter(), {}
    for model in args.models:
        title, results = MODELS[model].title, {job: run_job(args, model, job) for job in JOBS}
        failed = next((results[s]["failed"] for s in SIDES if "failed" in results[s]), None)
        tf = {g: results[f"tf grappler {g}"] for g in GRAPPLER}
        for fit in (fit for fit in tf.values() if "failed" not in fit):
            fit["split"] = first_step_split(fit)
        torch = {"failed": failed} if failed else torch_summary(results)
        models[model] = {"title": title, "torch": torch, "tensorflow": tf}
        if failed:
            print(f"\n{title}: the PyTorch profile failed: {failed}")
        else:
            print_torch(title, torch, args.calls)
        print_tf(title, tf)
    load = load_average()
    meta["load_average_at_end"] = None if load is None else load[0]
    print(
        "\nwall: median per call; outside ops = a wall - all ops' self time (the profiled run's "
        "ops carry part of the profiler's own cost). trace: train_step's Python under tracing; "
        "passes: grappler's log; rest = first - trace - passes - steady. "
        f"{time.perf_counter() - started:.0f} s in all; 1-min load "
        f"{meta['load_average_1min_at_start']} at start, {meta['load_average_at_end']} at end."
    )
    payload = {
        "issue": 27,
        "definition": {
            "torch": "rows: {op, scoregen: [self CPU ms, calls], original: [...]} per score "
            "call (torch.profiler), then the other and all ops; wall: the median wall ms per "
            "call, without the profiler and in the profiled run; outside ops = a wall - all ops; "
            "annotations: record_function spans (not ops), whose self time is Python between ops",
            "tensorflow": "Keras fit, grappler on / off (disable_meta_optimizer): first_s the "
            "first one-step call, trace_s train_step's Python under tracing, grappler_passes_ms "
            "its VLOG's ms per pass, split.rest_s = first - trace - passes - steady; steady_s",
        },
        "settings": {
            "batch": SIZES[args.size].batch,
            "threads": 1,
            "original": str(args.original),
            **{key: getattr(args, key) for key in ("size", "calls", "train_steps")},
        },
        "machine": meta,
        "argv": argv,
        "note": args.note,
        "models": models,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    partial = args.output.with_suffix(".json.partial")
    partial.write_text(json.dumps(payload, indent=2) + "\n")
    partial.replace(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
