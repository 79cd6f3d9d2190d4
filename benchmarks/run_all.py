"""Rerun every benchmark and regenerate benchmarks/RESULTS.md from their JSON files.

Each script of SCRIPTS found in benchmarks/ runs as a subprocess (its own Python, so each can set
KERAS_BACKEND before Keras starts), one after the other; a script that fails or misses a target
is recorded with its exit status and the others still run. Then the section of
benchmarks/RESULTS.md between the markers <!-- results:start --> and <!-- results:end --> is
rewritten from the JSON files in benchmarks/results/: markdown tables, links to the PNG plots, the
machine and the budgets. The README links that file.

    python benchmarks/run_all.py                 # full budgets (an hour or more on 2 CPU cores)
    python benchmarks/run_all.py --quick         # smoke budgets, into benchmarks/results/quick/
    python benchmarks/run_all.py --only quality_toy quality_digits
    python benchmarks/run_all.py --render-only   # only rewrite RESULTS.md from existing JSON
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from benchmarks.layout import QUICK_RESULTS, RESULTS  # noqa: E402

BENCHMARKS = ROOT / "benchmarks"
REPORT = BENCHMARKS / "RESULTS.md"
RUN_LOG = RESULTS / "run_all.json"
QUICK_REPORT = QUICK_RESULTS / "RESULTS.md"  # --quick's report: RESULTS.md is left alone
OUTPUT_FLAG = "--output"  # every script takes --output PATH.json (its PNGs go beside it)
START, END = "<!-- results:start -->", "<!-- results:end -->"

# script -> extra arguments under --quick (small budgets); scripts missing here are skipped
SCRIPTS: dict[str, list[str]] = {
    "reference_samplers": ["--n", "2000"],
    "reference_training": ["--steps", "800", "300", "--budget", "10", "5"],
    "reference_likelihood": ["--points", "50", "--hutchinson-points", "5"],
    "param_counts": [],
    "sampler_overhead": ["--backends", "jax", "--rounds", "3"],
    "noise_cost": ["--quick", "--backends", "jax"],
    "pc_defaults": ["--quick"],
    "nfe_quality": ["--quick"],
    "quality_toy": ["--quick"],
    "quality_digits": ["--quick"],
    "class_guidance": ["--quick"],
    "train_throughput": ["--backends", "jax", "--steps", "5", "--repeats", "1"],
    "mixed_precision": ["--quick"],
    "fid_features": ["--quick", "--threads", "1"],
    # peer_speed and peer_profile are left out: without --original (score_sde_pytorch) they exit
    # 2; their JSON renders
    # import_scale has no --quick: one backend, the smaller CIFAR-10 config (still a 1 GB file)
    "import_scale": ["--backends", "jax", "--config", "ve/cifar10_ncsnpp_continuous"],
    "reproducible_sampling": ["--quick", "--backends", "jax"],  # no --run: the step rule only
}

Row = list[Any]


# ------------------------------------------------------------------------------ running


def run_scripts(names: list[str], quick: bool) -> dict[str, dict[str, Any]]:
    """Run each benchmark script; name -> {argv, returncode, seconds, date} (skipped if absent)."""
    log: dict[str, dict[str, Any]] = {}
    for name in names:
        script = BENCHMARKS / f"{name}.py"
        if not script.exists():
            print(f"-- {name}: no {script.name}, skipped")
            log[name] = {"skipped": True}
            continue
        extra = [*SCRIPTS[name], OUTPUT_FLAG, str(QUICK_RESULTS / f"{name}.json")] if quick else []
        argv = [sys.executable, str(script), *extra]
        print(f"-- {name}: {' '.join(argv[1:])}", flush=True)
        start = time.perf_counter()
        returncode = subprocess.run(argv, cwd=ROOT, check=False).returncode
        seconds = time.perf_counter() - start
        print(f"-- {name}: exit {returncode} after {seconds:.0f} s", flush=True)
        log[name] = {
            "argv": argv[1:],
            "returncode": returncode,
            "seconds": round(seconds, 1),
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
        }
    return log


# ---------------------------------------------------------------------------- rendering


def fmt(value: Any, digits: int = 4) -> str:
    """A table cell: floats to `digits` significant figures, booleans as pass / FAIL."""
    if isinstance(value, bool):
        return "pass" if value else "**FAIL**"
    if isinstance(value, float):
        if value != value:  # NaN
            return "n/a"
        return f"{value:.{digits}g}"
    if value is None:
        return "–"
    return str(value).replace("|", "\\|")


def md_table(headers: list[str], rows: list[Row]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


IMAGE_PREFIX = "benchmarks/results/"  # image links as seen from the repository's root


def image(path: Path, alt: str) -> str:
    """A markdown image link as seen from the root (benchmarks/results/NAME), '' if missing."""
    if not path.exists():
        return ""
    return f"![{alt}]({IMAGE_PREFIX}{path.name})"


def relink(section: str, results: Path, report: Path) -> str:
    """The section's image links made relative to `report` for PNGs in `results`."""
    prefix = Path(os.path.relpath(results.resolve(), report.resolve().parent)).as_posix()
    prefix = "" if prefix == "." else f"{prefix}/"
    return section.replace(f"]({IMAGE_PREFIX}", f"]({prefix}")


def _seconds(value: Any) -> str:
    """Seconds as '123 s' (or 'unknown')."""
    return "unknown" if value is None else f"{float(value):.0f} s"


def render_quality_toy(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 6 item 1: per SDE and sampler, the checks against mixture5's exact density."""
    t = data["targets"]
    out = [
        f"Targets: |NLL gap| ≤ {t['nll_gap_abs']} nats, |log-density gap| ≤ {t['logp_gap_abs']} "
        f"nats, occupancy TV ≤ {t['occupancy_tv']}, SW1 / floor ≤ {t['sw1_ratio']}; "
        f"{data['n_samples']} samples per sampler, NLL on {data['n_nll_points']} held-out points.",
        "",
    ]
    rows = [
        [
            sde.upper(),
            row["sampler"],
            row["nfe"],
            row["logp_gap"],
            row["occupancy_tv"],
            row["sw1_ratio"],
            row["passed"],
        ]
        for sde, entry in data["runs"].items()
        for row in entry["rows"]
    ]
    out += [
        md_table(["SDE", "sampler", "NFE", "logp gap", "occ. TV", "SW1 / floor", "verdict"], rows)
    ]
    nll_rows = [
        [
            sde.upper(),
            e["nll"]["model_nll"],
            e["nll"]["exact_nll"],
            e["nll"]["nll_gap"],
            e["nll"]["nll_gap_std_error"],
            e["nll"]["passed"],
        ]
        for sde, e in data["runs"].items()
    ]
    out += [
        "",
        md_table(["SDE", "model NLL", "exact NLL", "gap", "± s.e.", "verdict"], nll_rows),
        "",
    ]
    for sde, entry in data["runs"].items():
        tr = entry["training"]
        out.append(
            f"- {sde.upper()}: preset `{tr['preset']}`, {tr['step']} steps × batch "
            f"{tr['batch_size']} (lr {tr['lr']:g}), trained in {_seconds(tr['train_seconds'])}"
            f"{'' if tr.get('trained_now') else ' (run reused)'}."
        )
    link = image(results / "quality_toy.png", "toy samples")
    return out + (["", link] if link else [])


def _load(values: Any) -> str:
    """Load averages [1, 5, 15 min] as '1.2 / 3.4 / 5.6' (or 'unknown')."""
    return "unknown" if not values else " / ".join(f"{float(v):.1f}" for v in values)


def render_quality_digits(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 6 item 2: Fréchet distance to held-out digits beside the real-vs-real floor."""
    m, tr, sa, ref = data["metrics"], data["training"], data["sampling"], data["reference"]
    fd, kid, conf = m["fd_digits"], m["kid_digits"], m["class_confidence_digits"]
    halves = data["two_halves"]["fd_digits"]
    n = sa["n_samples"]
    rows = [
        ["Fréchet distance", fd["value"], fd["floor_mean"], fd["floor_std"], fd["ratio"]],
        ["KID", kid["value"], kid["floor_mean"], kid["floor_std"], kid["ratio"]],
        ["class confidence (IS-like)", conf["value"], conf["floor_mean"], conf["floor_std"], None],
        [
            "Fréchet distance, two halves of all digits",
            halves["value"],
            halves["floor_mean"],
            halves.get("floor_std"),
            halves["value"] / halves["floor_mean"],
        ],
    ]
    wall = tr.get("wall_s") or tr.get("train_seconds")
    per_step = (
        f" of wall time (compilation and previews included; {tr['seconds_per_step']:.3g} s a step)"
        if tr.get("seconds_per_step")
        else ""
    )
    mach = data.get("machine", {})
    out = [
        f"Command: `KERAS_BACKEND={mach.get('backend', 'jax')} python benchmarks/quality_digits.py`"
        f" on `{mach.get('platform')}`, {mach.get('cpu_count')} CPUs (shared with other work).",
        "",
        f"Budget: preset `{tr['preset']}` ({tr['model']}, {tr['parameters']} parameters, "
        f"{tr['sde'].upper()} SDE) trained {tr['step']} steps × batch {tr['batch_size']} "
        f"(lr {tr['lr']:g}) on `{tr['dataset']}` ({tr['n_train']} digits) in {_seconds(wall)}"
        f"{per_step}{'' if tr.get('trained_now') else ' (run reused)'}; load average "
        f"(1 / 5 / 15 min) {_load(tr.get('load_average_before'))} before and "
        f"{_load(tr.get('load_average_after'))} after training. {n} samples with "
        f"`{sa['sampler']}`, {sa.get('sampler_steps') or 'default'} steps ({sa['nfe']} NFE).",
        "",
        f"Reference: the {ref['n_held_out']} digits of `{ref['held_out']}`, never trained on. "
        f"Floor: the same figure for {ref['n_floor_subsets']} random {n}-subsets of the train "
        f"digits against the same held-out digits (mean ± std); the two-halves row compares "
        f"with half of all digits (floor: the other half, {data['two_halves']['n_pairs']} "
        f"splits). Class confidence of the held-out digits: {fmt(conf.get('held_out'))}.",
        "",
        md_table(["digits-classifier features", "samples", "floor", "± std", "ratio"], rows),
        "",
        f"Fréchet ratio {data['fd_ratio']:.2f} (target ≤ {data['fd_ratio_target']:g}): "
        f"{fmt(bool(data['passed']))}."
        + (
            " KID is unbiased, so real against real scatters around 0 and its ratio is undefined."
            if kid["floor_mean"] <= 0
            else ""
        ),
    ]
    links = [
        image(results / "digits_samples.png", "digits samples"),
        image(results / "digits_loss.png", "digits training loss"),
    ]
    links = [link for link in links if link]
    return out + (["", " ".join(links)] if links else [])


def render_class_guidance(data: dict[str, Any], results: Path) -> list[str]:
    """Guided digits judged by the shipped digits classifier, per guidance scale."""
    c, s = data["classifier"], data["sampling"]
    first, last = c["accuracy"][0]["accuracy"], c["accuracy"][-1]["accuracy"]
    rows = [
        [
            "unguided" if row["scale"] == 0 else fmt(row["scale"], 3),
            fmt(row["fraction"], 3),
            fmt(row["worst_class_fraction"], 3),
            fmt(row["class_confidence"], 3),
            _seconds(row["seconds"]),
        ]
        for row in data["rows"]
    ]
    headers = ["scale", "judged the digit asked for", "worst digit", "class confidence", "time"]
    lines = [
        f"Run: `{data['run_dir'].split('/')[-1]}` at step {data['run_step']}. Its classifier "
        f"(`scoregen classifier`): {c['steps']} steps on {c['n_train']} noised training digits, "
        f"held-out accuracy {fmt(first, 3)} at t = eps and {fmt(last, 3)} at t = T (commonest "
        f"class {fmt(c['majority_fraction'], 3)}). Sampling: "
        f"{s['per_class']} samples of each digit with `{s['sampler']}`, {s['sampler_steps']} "
        f"steps (NFE {s['nfe']}), judged by the shipped digits feature classifier.",
        "",
        md_table(headers, rows),
    ]
    picture = results / "class_guidance.png"
    if picture.exists():
        lines += ["", image(picture, "class-guided digits, one row per digit")]
    return lines


def render_nfe_quality(data: dict[str, Any], results: Path) -> list[str]:
    """Sample quality against NFE for each sampler on a trained toy model."""
    tr = data.get("training", {})
    rows = [
        [r["sampler"], r["setting"], r["nfe"], r["logp_gap"], r["occupancy_tv"], r["sw1_ratio"]]
        for r in data["rows"]
    ]
    out = [
        f"Model: {data.get('model', '?')}; {tr.get('steps', '?')} steps × batch "
        f"{tr.get('batch_size', '?')}; {data.get('n_samples', '?')} samples.",
        "",
        md_table(["sampler", "setting", "NFE", "logp gap", "occ. TV", "SW1 / floor"], rows),
    ]
    link = image(results / "nfe_quality.png", "NFE vs quality")
    return out + (["", link] if link else [])


def render_reference_samplers(data: dict[str, Any], results: Path) -> list[str]:
    """Exact-score samplers and likelihoods of the NumPy oracle."""
    rows = [
        [s["sampler"], s["nfe"], s["logp_gap"], s["occupancy_tv"], s["sw1_ratio"], s["passed"]]
        for s in data["samplers"]
    ]
    out = [
        f"Exact scores of mixture5, {data.get('n', '?')} samples each.",
        "",
        md_table(["sampler", "NFE", "logp gap", "occ. TV", "SW1 / floor", "verdict"], rows),
    ]
    if data.get("likelihood"):
        keys = [k for k in data["likelihood"][0] if k != "seconds"]
        out += ["", md_table(keys, [[entry.get(k) for k in keys] for entry in data["likelihood"]])]
    return out


def render_reference_training(data: dict[str, Any], results: Path) -> list[str]:
    """The NumPy MLP trained on mixture5: relative score error by noise level."""
    rows = [[r["t"], r["sigma"], r["relative_score_error"]] for r in data["rows"]]
    return [
        f"Steps per phase {data.get('steps')}, wall time {_seconds(data.get('wall_time_s'))}.",
        "",
        md_table(["t", "σ(t)", "relative score error"], rows),
    ]


def render_param_counts(data: dict[str, Any], results: Path) -> list[str]:
    """Parameter counts of the CIFAR-10 configurations against the paper."""
    rows = [[r["name"], r["count"], r["target"], r["rel_diff"], r["pass"]] for r in data["results"]]
    return [md_table(["network", "parameters", "paper", "rel. diff.", "verdict"], rows)]


def render_sampler_overhead(data: dict[str, Any], results: Path) -> list[str]:
    """Wall time per NFE relative to one compiled score evaluation, with the rounds' spread."""
    target = data.get("target")
    floor = data.get("host_round_trip")
    rows = []
    for result in data["results"]:
        for model in result.get("models", []):
            named = list(model["samplers"].items())
            if floor:  # a floor, not a sampler: no verdict
                named.append((floor["row"], model["host_round_trip"]))
            for sampler, row in named:
                interval = "–".join(f"{v:.2f}" for v in row.get("overhead_median_interval", []))
                spread = "–".join(f"{v:.2f}" for v in row.get("overhead_range", []))
                if "overhead_rounds" in row:
                    spread += f" ({len(row['overhead_rounds'])})"
                where = [result["backend"], model["model"], model["batch"], sampler]
                judged = target is not None and sampler in model["samplers"]
                verdict = row["overhead"] <= target if judged else None
                measured = [row["nfe"], row["wall_s"], row["overhead"], interval, spread]
                noise = [
                    _milliseconds(row.get("noise_s_per_step")),
                    _milliseconds(row.get("score_s_per_step")),
                    None if "noise_fraction" not in row else f"{100 * row['noise_fraction']:.1f}",
                ]
                rows.append([*where, *measured, *noise, verdict])
    headers = [
        "backend",
        "model",
        "batch",
        "sampler",
        "NFE",
        "wall s",
        "overhead",
        "95% interval",
        "rounds",
        "noise ms / step",
        "score ms / step",
        "noise % of wall",
        "verdict",
    ]
    intro = f"Target overhead ≤ {target}; {data.get('definition', '')}"
    if "median_interval" in data:
        intro += f" (95% interval: {data['median_interval']})"
    intro += " (rounds: the lowest and highest round, and how many rounds)."
    if floor:
        intro += f" Floor rows: {floor['definition']}."
    intro += (
        " Noise: the per-sample counter normals the sampler draws (host Philox, one transfer "
        "per chunk), per step beside the score's, and their share of the wall time."
    )
    return [intro, "", md_table(headers, rows)]


def _milliseconds(seconds: float | None) -> float | None:
    """Seconds as milliseconds (None stays None)."""
    return None if seconds is None else 1e3 * seconds


def render_noise_cost(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 25: the candidate noise sources per draw, against keras.random, per backend."""
    rows = [
        [
            result["backend"],
            shape["name"],
            shape["draws_per_request"],
            candidate,
            1e3 * row["seconds_per_draw"],
            row["ratio_to_keras_random"],
            "–".join(f"{v:.2f}" for v in row["ratio_range"]),
        ]
        for result in data["results"]
        for shape in result["shapes"]
        for candidate, row in shape["candidates"].items()
    ]
    headers = ["backend", "shape", "draws", "candidate", "ms / draw", "× keras.random", "range"]
    return [data.get("definition", ""), "", md_table(headers, rows)]


def render_pc_defaults(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 25 item 6: the library's PC default for points before and after, then every row."""
    pairs = [
        [
            row["what"],
            row["dim"],
            f"{row['before_logp_gap']:+.4f} ± {row['before_logp_gap_se']:.4f}",
            f"{row['before_spread_ratio']:.3f}",
            f"{row['after_logp_gap']:+.4f} ± {row['after_logp_gap_se']:.4f}",
            f"{row['after_spread_ratio']:.3f}",
        ]
        for row in data.get("before_after", [])
    ]
    table = [
        [
            row["factor"],
            row["setting"],
            row["dim"],
            row["nfe"],
            f"{row['logp_gap']:+.4f} ± {row['logp_gap_se']:.4f}",
            f"{row['spread_ratio']:.3f} ± {row['spread_ratio_se']:.3f}",
            row["occupancy_tv"],
            row["sw1_ratio"],
        ]
        for row in data["rows"]
    ]
    intro = (
        "Before: score_sde's Langevin corrector at snr 0.16 (norms averaged over the batch); "
        f"after: ALD at snr 0.16, the PC corrector of point runs. {data['n']} 2-D samples a row, "
        "exact scores unless 'trained run'; spread 1 = as wide as the data."
    )
    headers = ["", "dim", "before: logp gap", "spread", "after: logp gap", "spread"]
    every = ["factor", "setting", "dim", "NFE", "logp gap", "spread", "occ. TV", "SW1 / floor"]
    return [intro, "", md_table(headers, pairs), "", md_table(every, table)]


def render_train_throughput(data: dict[str, Any], results: Path) -> list[str]:
    """Optimizer steps per second by backend, model, batch and precision."""
    rows = [
        [
            r["backend"],
            row["model"],
            row["parameters"],
            row["batch"],
            row["precision"],
            row["devices"],
            row["steps_per_s"],
            row["examples_per_s"],
        ]
        for r in data["results"]
        for row in r["rows"]
    ]
    headers = ["backend", "model", "params", "batch", "precision", "devices", "steps/s", "ex./s"]
    out = [f"{data.get('definition', '')}; {data.get('machine', '')}.", "", md_table(headers, rows)]
    notes = [f"- {r['backend']}: {note}" for r in data["results"] for note in r.get("notes", [])]
    return out + (["", *notes] if notes else [])


def render_mixed_precision(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 7 item 3: score error of the toy preset by precision, as a ratio to float32."""
    times = data["times"]
    rows = [
        [
            r["backend"],
            row["precision"],
            row["steps"],
            None if row["train_seconds"] is None else round(float(row["train_seconds"])),
            *row["errors"],
            row["mean_error"],
            row["ratio"],
            row["passed"],
        ]
        for r in data["results"]
        for row in r["rows"]
    ]
    headers = ["backend", "precision", "steps", "train s", *[f"t = {t:g}" for t in times]]
    headers += ["mean", "× float32", "verdict"]
    first = next((row for r in data["results"] for row in r["rows"]), {})
    sde = first.get("sde", {})
    sde_text = ", ".join(f"{k} {v:g}" for k, v in sde.items() if isinstance(v, (int, float)))
    out = [
        f"Relative score error of the EMA model against the exact mixture5 score under the run's "
        f"SDE ({sde.get('type', '?')}: {sde_text}); {data['eval_n']} noisy points per t. Preset "
        f"`{first.get('preset', '?')}`, {first.get('steps', '?')} steps × batch "
        f"{first.get('batch_size', '?')}, the same seed in every precision. Target: mean error "
        f"≤ {data['target_ratio']:g} × float32's on the same backend.",
        "",
        md_table(headers, rows),
    ]
    notes = [
        f"- {r['backend']} {row['precision']}: {row['steps'] - row['optimizer_steps']} of "
        f"{row['steps']} steps skipped by dynamic loss scaling (no optimizer update)."
        for r in data["results"]
        for row in r["rows"]
        if row.get("optimizer_steps", row["steps"]) < row["steps"]
    ]
    notes += [f"- {r['backend']}: {note}" for r in data["results"] for note in r.get("notes", [])]
    return out + (["", *notes] if notes else [])


def render_fid_features(data: dict[str, Any], results: Path) -> list[str]:
    """FID Inception images/s per backend; peak memory of the statistics pass against N."""
    speed = [
        [r["backend"], r.get("images"), r.get("size"), r.get("batch"), r.get("first_batch_s"),
         r.get("images_per_s"), r.get("peak_rss_mib")]
        for r in data["speed"]
    ]  # fmt: skip
    memory = [
        [r.get("n", r.get("n_asked")), r.get("peak_rss_before_mib"), r.get("peak_rss_after_mib"),
         r.get("growth_mib"), r.get("all_features_mib"), r.get("pass_s")]
        for r in data["memory"]
    ]  # fmt: skip
    notes = [
        f"- {r['backend']}: {note}" for r in data["speed"] + data["memory"] for note in r["notes"]
    ]
    return [
        f"{data.get('definition', '')}; pytorch-fid: {data.get('pytorch_fid', '')}.",
        "",
        md_table(["backend", "images", "size", "batch", "1st batch s", "img/s", "peak MiB"], speed),
        "",
        md_table(
            ["N", "peak MiB before", "after", "growth", "N × 2048 float64 MiB", "pass s"], memory
        ),
        *(["", *notes] if notes else []),
    ]


def render_train_digits_classifier(data: dict[str, Any], results: Path) -> list[str]:
    """The shipped digits feature classifier."""
    r = data["result"]
    rows = [[r["n_train"], r["train_accuracy"], r["n_held_out"], r["held_out_accuracy"], r["pass"]]]
    return [md_table(["train", "train acc.", "held out", "held-out acc.", "verdict"], rows)]


def _number(value: float | None, spec: str) -> str | None:
    """A number formatted by `spec` (None stays None: a '–' cell)."""
    return None if value is None else format(value, spec)


def _span(bounds: list[float] | None) -> str | None:
    """A [low, high] range as 'low–high' to 2 decimals (None stays None)."""
    return None if bounds is None else "–".join(f"{v:.2f}" for v in bounds)


def _shared(meta: dict[str, Any]) -> str:
    """' The machine was shared (...).' when the JSON's machine record says so, else ''."""
    shared = meta.get("shared")
    if shared is True:
        return " The machine was shared with other work."
    if isinstance(shared, str) and shared.startswith("yes"):
        return f" The machine was shared ({shared.removeprefix('yes').strip(' :')})."
    return ""


PEER_BEFORE = "peer_speed_before.json"  # the same benchmark before the speed fixes
PEER_HEADERS = [
    "model",
    "system",
    *[
        f"{kind} {column}"
        for kind in ("train", "sample")
        for column in ("s", "× orig.", "range", "cpu ×")
    ],
    "1st train s (cpu)",
    "1st sample s (cpu)",
    "RSS MiB",
    "peak MiB",
    "rise",
    "cpu / wall",
]


def _first_call(first: dict[str, float]) -> str:
    """A first call's wall seconds and, in brackets, its CPU seconds."""
    return f"{first['wall_s']:.1f} ({first['cpu_s']:.1f})"


def _peer_row(title: str, name: str, system: dict[str, Any]) -> Row:
    """One system's row of the issue 27 table (a system that failed to start: its error)."""
    if "train" not in system:
        return [title, name, f"failed: {system.get('failed')}", *[None] * (len(PEER_HEADERS) - 3)]
    train, sample, memory = system["train"], system["sample"], system["memory"]
    before, peak = memory["rss_before_training_mb"], memory["peak_rss_training_mb"]
    return [
        title,
        name,
        *[
            cell
            for clock in (train, sample)
            for cell in (
                _number(clock["s_per_step"], ".3f"),
                _number(clock["ratio"], ".2f"),
                _span(clock["ratio_range"]),
                _number(clock.get("cpu_ratio"), ".2f"),
            )
        ],
        _first_call(system["first_train"]),
        _first_call(system["first_sample"]),
        _number(before, ".0f"),
        _number(peak, ".0f"),
        None if before is None or peak is None else f"{peak - before:+.0f}",
        _number(train["cpu_per_wall"], ".2f"),
    ]


def _parameters(model: dict[str, Any]) -> str:
    """A model's parameter counts over its systems, and whether they agree."""
    counts = sorted({s["parameters"] for s in model["systems"].values() if "parameters" in s})
    agree = "same on every side" if model["parameters_agree"] else "**DIFFER**"
    return f"{' / '.join(f'{c:,}' for c in counts)} parameters ({agree})"


def render_peer_table(data: dict[str, Any]) -> list[str]:
    """One peer_speed JSON: its note and settings, the table per model and system, notes."""
    s, models = data["settings"], data["models"].values()
    networks = "; ".join(
        f"{m['title']}: {_parameters(m)}, {m['size']['image_size']}×{m['size']['image_size']}"
        f"×3, nf {m['size']['nf']}, batch {m['batch']}"
        for m in models
    )
    note = data.get("note", "").rstrip(".")
    intro = (
        f"{f'Note: {note}. ' if note else ''}Settings: size `{s['size']}`, {s['rounds']} rounds of "
        f"{s['train_steps']} train + {s['sample_steps']} sample steps, {s['threads']} thread(s) "
        f"per framework.{_shared(data.get('machine', {}))} {networks}."
    )
    rows = [_peer_row(m["title"], n, system) for m in models for n, system in m["systems"].items()]
    notes = [
        f"- {m['title']}, {n}: then failed: {system['failed']}"
        for m in models
        for n, system in m["systems"].items()
        if "train" in system and "failed" in system
    ]
    return [intro, "", md_table(PEER_HEADERS, rows), *(["", *notes] if notes else [])]


def render_peer_speed(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 27 beside score_sde_pytorch; below, the same table of peer_speed_before.json."""
    legend = (
        "s: median seconds per step; × orig.: median over rounds of the ratio to the original in "
        "the same round (range: lowest and highest round); cpu ×: the same for CPU seconds "
        "(steadier on a shared machine); 1st: the first call (one train step; one sampler run "
        "of the sample steps), compilation included, wall (CPU) seconds; RSS: resident memory "
        "before the first train step; peak: peak resident memory of the training rounds; rise: "
        "peak − RSS; cpu / wall of the training rounds."
    )
    out = [*render_peer_table(data), "", legend]
    before = results / PEER_BEFORE
    if before.exists():
        before_data = json.loads(before.read_text(encoding="utf-8"))
        out += ["", "#### Before the fixes", "", *render_peer_table(before_data)]
    return out


PROFILE_OPS = ["op", "scoregen ms", "calls", "original ms", "calls", "difference ms"]
PROFILE_TF = ["grappler", "1st step s (cpu)", "train_step traced s", "grappler passes s"]
PROFILE_TF += ["rest s", "steady step s", "largest passes (s)"]
PROFILE_SIDES = ("scoregen", "original")


def _profile_torch(torch: dict[str, Any]) -> list[str]:
    """One model's op table of the PyTorch score call, then its annotations' self time."""
    if "failed" in torch:
        return [f"PyTorch profile failed: {torch['failed']}"]
    rows = []
    for row in torch["rows"]:
        (ours, n_ours), (theirs, n_theirs) = (row[side] for side in PROFILE_SIDES)
        row_ms = [f"{ours:.1f}", _number(n_ours, ".0f"), f"{theirs:.1f}", _number(n_theirs, ".0f")]
        rows.append([row["op"], *row_ms, f"{ours - theirs:+.1f}"])
    spans = [
        f"{side}: " + (", ".join(f"{k} {v[0]:.1f} ms" for k, v in found.items()) or "none")
        for side, found in torch["annotations"].items()
    ]
    return [md_table(PROFILE_OPS, rows), "", f"Annotations (not ops): {'; '.join(spans)}."]


def _profile_tf(tf: dict[str, dict[str, Any]]) -> list[str]:
    """One model's TensorFlow first fit step split, grappler on and off."""
    rows = []
    for grappler, fit in tf.items():
        if "failed" in fit:
            rows.append([grappler, f"failed: {fit['failed']}", *[None] * (len(PROFILE_TF) - 2)])
            continue
        split, passes = fit["split"], list(fit["grappler_passes_ms"].items())[:4]
        rows.append(
            [
                grappler,
                f"{fit['first_s']:.1f} ({fit['first_cpu_s']:.1f})",
                *[f"{split[key]:.1f}" for key in ("trace_s", "grappler_s", "rest_s")],
                f"{fit['steady_s']:.3f}",
                ", ".join(f"{name} {ms / 1000:.1f}" for name, ms in passes) or None,
            ]
        )
    out = [md_table(PROFILE_TF, rows)]
    if all("failed" not in fit for fit in tf.values()):
        on, off = tf["on"], tf["off"]
        out += [
            "",
            f"Grappler on − off: first step {on['first_s'] - off['first_s']:+.1f} s, "
            f"steady step {on['steady_s'] - off['steady_s']:+.3f} s.",
        ]
    return out


def render_peer_profile(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 27's remaining costs: per model the PyTorch score call's ops beside the original's,
    and TensorFlow's first fit step split, grappler on and off."""
    s = data["settings"]
    note = data.get("note", "").rstrip(".")
    out = [
        f"{f'Note: {note}. ' if note else ''}Size `{s['size']}`, batch {s['batch']}, "
        f"{s['threads']} thread. PyTorch: self CPU ms and calls per score call over {s['calls']} "
        "profiled calls (scoregen's EMA score, no grad; the original's score function); wall: "
        "median without the profiler, or the profiled run's; outside ops = a wall − all ops (the "
        "profiled run's op times include some of the profiler's cost). TensorFlow: the first "
        "one-step fit call split into train_step's tracing, grappler's passes (its log) and the "
        "rest (outer trace, executor set-up, first run beyond a steady step); steady: mean of "
        f"{s['train_steps']} steps.{_shared(data.get('machine', {}))}"
    ]
    for model in data["models"].values():
        out += ["", f"#### {model['title']}", "", *_profile_torch(model["torch"]), ""]
        out += _profile_tf(model["tensorflow"])
    return out


def render_import_scale(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 24: import time and peak memory per backend, then the parity checks."""
    w, target, rows = data["written"], data["memory_target"], data["backends"]
    table = [
        [
            r["backend"],
            r.get("import_seconds"),
            _number(r.get("peak_over_weights"), ".2f"),
            _number(r.get("peak_total_over_weights"), ".2f"),
            r.get("load_seconds"),
            r.get("pc_step_seconds"),
            r.get("pc_step_nfe"),
            r.get("sample_finite"),
            r.get("memory_pass"),
        ]
        for r in rows
    ]
    headers = ["backend", "import s", "peak / weights", "(total)", "load s", "PC step s", "NFE"]
    headers += ["finite sample", f"≤ {target:g}×"]
    with_parity = [r for r in rows if r.get("parity")]
    checks = list(dict.fromkeys(check for r in with_parity for check in r["parity"]))
    parity = [
        [
            check,
            *[f"{r['parity'][check]['max_rel_diff']:.2e}" for r in with_parity],
            f"{with_parity[0]['parity'][check]['tolerance']:.0e}",
            all(r["parity"][check]["max_rel_diff"] <= r["parity"][check]["tolerance"]
                for r in with_parity),
        ]
        for check in checks
    ]  # fmt: skip
    intro = (
        f"`{data['config']}`: {w['parameters']:,} parameters ({w['weights_bytes'] / 2**20:.0f} "
        f"MiB of float32 weights), the published checkpoint {w['file_bytes'] / 2**20:.0f} MiB. "
        f"Peak / weights: the import's peak resident memory above the process's before it, over "
        f"the weights' size (total: the whole peak); target ≤ {target:g}×. Memory "
        f"{fmt(bool(data['memory_pass']))}, parity {fmt(bool(data['parity_pass']))}."
        f"{_shared(data.get('machine', {}))}"
    )
    out = [intro, "", md_table(headers, table)]
    if parity:
        backends = [r["backend"] for r in with_parity]
        out += [
            "",
            md_table(["max relative difference", *backends, "tolerance", "verdict"], parity),
        ]
    notes = [f"- {r['backend']}: {note}" for r in rows for note in r.get("notes", [])]
    return out + (["", *notes] if notes else [])


def _sci(value: float | None) -> str | None:
    """A difference in scientific notation, exactly 0 as '0' (None stays None)."""
    if value is None:
        return None
    return "0" if value == 0 else f"{value:.1e}"


def _run_name(path: str) -> str:
    """A run folder's name."""
    return Path(path).name


def render_reproducible_sampling(data: dict[str, Any], results: Path) -> list[str]:
    """Issue 25: the same seeds across backends and batch sizes; the Langevin norm rule."""
    out = [
        f"{data['seeds']} seeds, {data['steps']} steps for the fixed-step samplers; largest "
        "|difference| in model space (data of unit scale): differences, not timings."
    ]
    backends = data["backends"]
    if not backends and not data["batch"]:
        out[0] += " No run folder was given (--run): the step rule only."
    if backends:
        others = list(dict.fromkeys(k for row in backends for k in row if " - " in k))
        rows = [
            [_run_name(r["run"]), r["sampler"], *[_sci(r.get(k)) for k in others],
             f"{r['max_abs_value']:.2f}"]
            for r in backends
        ]  # fmt: skip
        out += ["", md_table(["run", "sampler", *others, "max \\|x\\|"], rows)]
    if data["batch"]:
        sizes = list(
            dict.fromkeys(k for e in data["batch"] for row in e["batch"].values() for k in row)
        )
        rows = [
            [_run_name(e["run"]), name, *[_sci(row.get(k)) for k in sizes]]
            for e in data["batch"]
            for name, row in e["batch"].items()
        ]
        runs = ", ".join(
            f"`{_run_name(e['run'])}` ({e['dataset']}, step {e['step']})" for e in data["batch"]
        )
        out += [
            "",
            f"Batch sizes: each seed against the one-batch draw of all seeds; runs {runs}.",
            "",
            md_table(["run", "sampler", *[f"{k} vs all" for k in sizes]], rows),
        ]
    rule = data.get("rule")
    if rule:
        out += [
            "",
            f"Langevin step rule at {'×'.join(map(str, rule['shape']))} (PC, snr {rule['snr']:g}, "
            f"N {rule['N']}, VE σ_max {rule['sigma_max']:g}, exact score of a Gaussian, "
            f"{rule['n']} seeds; spread 1 = as wide as the data): norms over the batch "
            f"(score_sde) {rule['spread_batch']:.4f} ± {rule['spread_batch_se']:.4f}, per "
            f"example {rule['spread_per_example']:.4f} ± {rule['spread_per_example_se']:.4f}; "
            f"paired difference {rule['paired_difference']:+.5f} ± "
            f"{rule['paired_difference_se']:.5f}.",
        ]
    notes = [f"- {note}" for note in data.get("notes", [])]
    return out + (["", *notes] if notes else [])


def _scalar(value: Any) -> bool:
    """True for a JSON scalar."""
    return value is None or isinstance(value, (bool, int, float, str))


def _find_records(data: Any) -> list[dict[str, Any]] | None:
    """The first list of flat-ish dicts in a JSON document (depth-first)."""
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return data
    children = data.values() if isinstance(data, dict) else data if isinstance(data, list) else []
    for child in children:
        found = _find_records(child)
        if found is not None:
            return found
    return None


def render_generic(data: dict[str, Any], results: Path) -> list[str]:
    """Fallback: the scalar fields of the first list of records as a table."""
    records = _find_records(data)
    if not records:
        scalars = {k: v for k, v in data.items() if _scalar(v)} if isinstance(data, dict) else {}
        return [md_table(["field", "value"], [[k, v] for k, v in scalars.items()])]
    keys = [k for k in records[0] if _scalar(records[0][k])]
    return [md_table(keys, [[record.get(k) for k in keys] for record in records])]


TITLES: dict[str, tuple[str, Callable[[dict[str, Any], Path], list[str]]]] = {
    "quality_toy": ("Toy quality: default presets against the exact density", render_quality_toy),
    "quality_digits": ("Digits: Fréchet distance to held-out digits", render_quality_digits),
    "class_guidance": ("Digits: class-guided sampling", render_class_guidance),
    "nfe_quality": ("Sample quality against NFE (toy, VE)", render_nfe_quality),
    "reference_samplers": ("NumPy oracle: exact-score samplers", render_reference_samplers),
    "reference_training": ("NumPy oracle: MLP training", render_reference_training),
    "reference_likelihood": ("NumPy oracle: likelihood", render_generic),
    "param_counts": ("Parameter counts against the papers", render_param_counts),
    "sampler_overhead": ("Sampler overhead over the model", render_sampler_overhead),
    "noise_cost": ("Per-sample noise against keras.random", render_noise_cost),
    "pc_defaults": ("The default PC sampler on point data", render_pc_defaults),
    "train_throughput": ("Training throughput", render_train_throughput),
    "mixed_precision": ("Mixed precision: score error against float32", render_mixed_precision),
    "train_digits_classifier": ("Digits feature classifier", render_train_digits_classifier),
    "fid_features": ("Standard FID: feature speed and statistics memory", render_fid_features),
    "peer_speed": ("NCSN++ and DDPM++ against the original", render_peer_speed),
    "peer_profile": (
        "Where the remaining time goes (profiles beside the original)",
        render_peer_profile,
    ),
    "import_scale": ("Importing published checkpoints: time and peak memory", render_import_scale),
    "reproducible_sampling": (
        "Reproducible sampling: the same seed across backends and batch sizes",
        render_reproducible_sampling,
    ),
}


def _machine_line(payloads: dict[str, dict[str, Any]]) -> str:
    """The machine: this platform and CPU count, and what the quality runs recorded."""
    line = f"Machine: `{platform.platform()}`, {os.cpu_count()} CPUs"
    recorded = payloads.get("quality_toy", {}).get("machine")
    if isinstance(recorded, dict):
        line += (
            f"; the quality runs recorded `{recorded.get('platform')}`, "
            f"{recorded.get('cpu_count')} CPUs, backend {recorded.get('backend')}, "
            f"1-min load {recorded.get('load_average_1min_at_start')} at the start "
            "(the cores were shared)"
        )
    return line + "."


def render_results(
    results: Path = RESULTS, run_log: dict[str, dict[str, Any]] | None = None, quick: bool = False
) -> str:
    """The markdown of the results section, from the JSON files in `results`."""
    payloads: dict[str, dict[str, Any]] = {}
    for name in TITLES:
        path = results / f"{name}.json"
        if path.exists():
            payloads[name] = json.loads(path.read_text(encoding="utf-8"))
    lines = [
        "## Results",
        "",
        "Generated by `python benchmarks/run_all.py` from the JSON files in `benchmarks/results/`"
        "; every figure below is regenerated by that one command (`--quick`, smoke budgets, "
        "writes its figures and report to `benchmarks/results/quick/` instead).",
        "",
        _machine_line(payloads),
    ]
    if quick:
        lines += ["", "**Smoke budgets (`--quick`): these are not the reference figures.**"]
    for name, (title, render) in TITLES.items():
        if name not in payloads:
            continue
        lines += ["", f"### {title}", "", f"`benchmarks/{name}.py`"]
        entry = (run_log or {}).get(name)
        if entry and not entry.get("skipped"):
            when = f", {entry['date']}" if "date" in entry else ""
            lines[-1] += f" (exit {entry['returncode']}, {entry['seconds']:.0f} s{when})"
        lines.append("")
        try:
            lines += render(payloads[name], results)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError):
            lines += render_generic(payloads[name], results)
    return "\n".join(lines) + "\n"


def update_report(report: Path, section: str) -> None:
    """Replace the text between the results markers (appending the markers when absent)."""
    text = report.read_text(encoding="utf-8") if report.exists() else ""
    block = f"{START}\n{section}{END}"
    if START in text and END in text and text.index(START) < text.index(END):
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + block + "\n"
    report.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    """Rerun the benchmarks (unless --render-only), then regenerate the results section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke budgets: results and report in {QUICK_RESULTS}"
    )
    parser.add_argument("--only", nargs="+", default=None, choices=list(SCRIPTS))
    parser.add_argument("--skip", nargs="+", default=[], choices=list(SCRIPTS))
    parser.add_argument("--render-only", action="store_true", help="rerun nothing")
    parser.add_argument(
        "--report", type=Path, default=None, help=f"default {REPORT.relative_to(ROOT)}"
    )
    args = parser.parse_args(argv)
    results = QUICK_RESULTS if args.quick else RESULTS
    report = args.report or (QUICK_REPORT if args.quick else REPORT)
    run_log = results / RUN_LOG.name
    results.mkdir(parents=True, exist_ok=True)
    log: dict[str, dict[str, Any]] = {}
    ran: dict[str, dict[str, Any]] = {}
    if run_log.exists():  # scripts not rerun keep the entry of their last run
        log = json.loads(run_log.read_text(encoding="utf-8")).get("scripts", {})
    if not args.render_only:
        names = [n for n in (args.only or list(SCRIPTS)) if n not in args.skip]
        ran = run_scripts(names, args.quick)
        log = {**log, **ran}
        run_log.write_text(
            json.dumps({"quick": args.quick, "scripts": log}, indent=2) + "\n", encoding="utf-8"
        )
    update_report(report, relink(render_results(results, log, args.quick), results, report))
    print(f"rewrote the results section of {report}")
    failed = [n for n, e in ran.items() if not e.get("skipped") and e.get("returncode")]
    if failed:
        print(f"scripts that failed or missed a target: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
