"""The results report of benchmarks/run_all.py (RESULTS.md), rendered from small fake JSON files."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest


@pytest.fixture(scope="module")
def run_all() -> ModuleType:
    """benchmarks/run_all.py as a module (benchmarks/ is a namespace package)."""
    return importlib.import_module("benchmarks.run_all")


def _toy_row(sampler: str, nfe: int, sw1_ratio: float, passed: bool) -> dict:
    """One sampler row of quality_toy.json."""
    return {
        "sampler": sampler,
        "nfe": nfe,
        "logp_gap": -0.0123,
        "occupancy_tv": 0.0071,
        "sw1_ratio": sw1_ratio,
        "passed": passed,
    }


def _toy_run(preset: str) -> dict:
    """One SDE's entry of quality_toy.json."""
    return {
        "training": {
            "preset": preset,
            "step": 6000,
            "batch_size": 512,
            "lr": 2e-3,
            "train_seconds": 251.7,
            "trained_now": True,
        },
        "rows": [_toy_row("PC-1000", 2000, 1.234, True), _toy_row("ODE RK45", 236, 3.5, False)],
        "nll": {
            "model_nll": 1.9512,
            "exact_nll": 1.9321,
            "nll_gap": 0.0191,
            "nll_gap_std_error": 0.002,
            "passed": True,
        },
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A results folder with fake quality_toy, quality_digits and param_counts JSON and a PNG."""
    folder = tmp_path / "results"
    folder.mkdir()
    toy = {
        "machine": {"platform": "Linux-test", "cpu_count": 2, "backend": "jax"},
        "targets": {
            "nll_gap_abs": 0.05,
            "logp_gap_abs": 0.15,
            "occupancy_tv": 0.03,
            "sw1_ratio": 2.5,
        },
        "n_samples": 10000,
        "n_nll_points": 10000,
        "runs": {"ve": _toy_run("toy"), "vp": _toy_run("toy-vp")},
    }
    digits = {
        "machine": {"platform": "Linux-test", "cpu_count": 2, "backend": "jax"},
        "training": {
            "preset": "digits",
            "model": "ncsnpp/digits",
            "parameters": 123456,
            "sde": "ve",
            "step": 1500,
            "batch_size": 128,
            "lr": 2e-3,
            "dataset": "digits:train",
            "n_train": 1438,
            "wall_s": 700.0,
            "seconds_per_step": 0.35,
            "trained_now": True,
            "load_average_before": [2.0, 3.3, 4.0],
            "load_average_after": [5.0, 4.5, 4.0],
        },
        "sampling": {"sampler": "pc", "sampler_steps": 500, "n_samples": 1000, "nfe": 1000},
        "reference": {"held_out": "digits:held-out", "n_held_out": 359, "n_floor_subsets": 10},
        "metrics": {
            "fd_digits": {"value": 6.0, "floor_mean": 2.0, "floor_std": 0.5, "ratio": 3.0},
            "kid_digits": {"value": 0.01, "floor_mean": 0.001, "floor_std": 0.0005, "ratio": 10.0},
            "class_confidence_digits": {
                "value": 8.5,
                "floor_mean": 9.6,
                "floor_std": 0.05,
                "held_out": 9.4,
            },
        },
        "two_halves": {
            "fd_digits": {"value": 4.0, "floor_mean": 1.0, "floor_std": 0.25},
            "n_pairs": 5,
        },
        "fd_ratio": 3.0,
        "fd_ratio_target": 3.0,
        "passed": True,
    }
    params = {
        "results": [
            {
                "name": "ncsnpp/cifar10",
                "count": 62758915,
                "target": 62700000,
                "rel_diff": 0.00094,
                "pass": True,
            }
        ]
    }
    for name, payload in (
        ("quality_toy", toy),
        ("quality_digits", digits),
        ("param_counts", params),
    ):
        (folder / f"{name}.json").write_text(json.dumps(payload))
    (folder / "quality_toy.png").write_bytes(b"\x89PNG")
    return folder


def test_render_tables_from_json(run_all: ModuleType, results: Path) -> None:
    """Each JSON file becomes a titled markdown table carrying its figures and verdicts."""
    text = run_all.render_results(results)
    assert "### Toy quality" in text and "### Digits" in text and "### Parameter counts" in text
    assert "| SDE | sampler | NFE | logp gap | occ. TV | SW1 / floor | verdict |" in text
    assert "| VE | PC-1000 | 2000 | -0.0123 | 0.0071 | 1.234 | pass |" in text
    assert "| VP | ODE RK45 | 236 | -0.0123 | 0.0071 | 3.5 | **FAIL** |" in text
    assert "| VE | 1.951 | 1.932 | 0.0191 | 0.002 | pass |" in text
    assert "| Fréchet distance | 6 | 2 | 0.5 | 3 |" in text
    assert "| Fréchet distance, two halves of all digits | 4 | 1 | 0.25 | 4 |" in text
    assert "1500 steps × batch 128 (lr 0.002) on `digits:train` (1438 digits) in 700 s" in text
    assert "(compilation and previews included; 0.35 s a step)" in text
    assert "1000 samples with `pc`, 500 steps (1000 NFE)" in text
    assert "2.0 / 3.3 / 4.0 before and 5.0 / 4.5 / 4.0 after" in text
    assert "the 359 digits of `digits:held-out`" in text and "10 random 1000-subsets" in text
    assert "Fréchet ratio 3.00 (target ≤ 3): pass." in text
    assert "| ncsnpp/cifar10 | 62758915 | 62700000 | 0.00094 | pass |" in text
    assert "trained in 252 s" in text
    assert "Machine: `" in text and "CPUs" in text
    # a link only for the PNG that exists
    assert "![toy samples](benchmarks/results/quality_toy.png)" in text
    assert "digits_samples.png" not in text
    assert "Smoke budgets" not in text
    assert "Smoke budgets" in run_all.render_results(results, quick=True)


def test_quick_reports_stay_out_of_the_report(
    run_all: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--quick runs every script with an --output under results/quick, where the report goes."""
    commands = []
    monkeypatch.setattr(
        run_all.subprocess,
        "run",
        lambda argv, **kwargs: commands.append(argv) or SimpleNamespace(returncode=0),
    )
    run_all.run_scripts(list(run_all.SCRIPTS), quick=True)
    for name, argv in zip(run_all.SCRIPTS, commands, strict=True):
        assert argv[-2:] == ["--output", str(run_all.QUICK_RESULTS / f"{name}.json")]
    report = run_all.REPORT
    quick = run_all.QUICK_RESULTS
    section = "![toy samples](benchmarks/results/quality_toy.png)"
    assert (
        run_all.relink(section, run_all.RESULTS, report)
        == "![toy samples](results/quality_toy.png)"
    )
    assert run_all.relink(section, quick, report) == "![toy samples](results/quick/quality_toy.png)"
    assert run_all.relink(section, quick, run_all.QUICK_REPORT) == "![toy samples](quality_toy.png)"
    assert run_all.QUICK_REPORT.parent == quick and quick.parent == run_all.RESULTS


def _precision_row(precision: str, mean: float, ratio: float, passed: bool | None) -> dict:
    """One precision's row of mixed_precision.json."""
    return {
        "precision": precision,
        "preset": "toy",
        "steps": 6000,
        "batch_size": 512,
        "sde": {"type": "VESDE", "sigma_min": 0.01, "sigma_max": 50.0, "N": 1000, "eps": 1e-5},
        "train_seconds": 131.6,
        "errors": [0.03, mean],
        "mean_error": mean,
        "ratio": ratio,
        "passed": passed,
    }


def test_render_mixed_precision(run_all: ModuleType, results: Path) -> None:
    """The mixed-precision table: errors by t, the ratio to float32, the verdict, the notes."""
    payload = {
        "times": [0.05, 0.5],
        "eval_n": 20000,
        "target_ratio": 1.5,
        "results": [
            {
                "backend": "jax",
                "rows": [
                    _precision_row("float32", 0.0168, 1.0, None),
                    _precision_row("mixed_bfloat16", 0.0170, 1.0119, True),
                    {
                        **_precision_row("mixed_float16", 0.0169, 1.006, True),
                        "optimizer_steps": 5990,
                    },
                ],
                "notes": ["mixed_float16: RunError: training diverged"],
            }
        ],
    }
    (results / "mixed_precision.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "### Mixed precision" in text and "`benchmarks/mixed_precision.py`" in text
    assert "| t = 0.05 | t = 0.5 | mean | × float32 | verdict |" in text
    assert "| jax | mixed_bfloat16 | 6000 | 132 | 0.03 | 0.017 | 0.017 | 1.012 | pass |" in text
    assert "VESDE: sigma_min 0.01, sigma_max 50" in text and "≤ 1.5 × float32" in text
    assert "- jax: mixed_float16: RunError: training diverged" in text
    assert "- jax mixed_float16: 10 of 6000 steps skipped by dynamic loss scaling" in text


def test_render_sampler_overhead(run_all: ModuleType, results: Path) -> None:
    """The overhead table: the median per sampler, its interval, the lowest and highest round and
    how many rounds."""
    row = {
        "nfe": 200,
        "wall_s": 0.5123,
        "score_s": 0.0021,
        "overhead": 1.1834,
        "overhead_median_interval": [0.954, 1.3],
        "overhead_range": [0.954, 1.3],
        "overhead_rounds": [0.954, 1.1834, 1.3],
        "noise_s_per_step": 0.00025,
        "score_s_per_step": 0.0042,
        "noise_fraction": 0.0987,
    }
    payload = {
        "target": 1.2,
        "definition": "median over rounds of wall time / (NFE x score time)",
        "median_interval": "order statistics",
        "results": [
            {
                "backend": "torch",
                "models": [{"model": "mlp/toy", "batch": 1024, "samplers": {"pc": row}}],
            }
        ],
    }
    (results / "sampler_overhead.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "Target overhead ≤ 1.2; median over rounds of wall time / (NFE x score time)" in text
    assert "(95% interval: order statistics)" in text
    headers = (
        "| NFE | wall s | overhead | 95% interval | rounds | noise ms / step | score ms / step"
    )
    assert headers + " | noise % of wall | verdict |" in text
    row = "| torch | mlp/toy | 1024 | pc | 200 | 0.5123 | 1.183 | 0.95–1.30 | 0.95–1.30 (3) |"
    assert row + " 0.25 | 4.2 | 9.9 | pass |" in text
    payload["target"] = 1.1
    (results / "sampler_overhead.json").write_text(json.dumps(payload))
    failed = "| 1.183 | 0.95–1.30 | 0.95–1.30 (3) | 0.25 | 4.2 | 9.9 | **FAIL** |"
    assert failed in run_all.render_results(results)


def test_the_host_round_trip_floor_is_listed_without_a_verdict(
    run_all: ModuleType, results: Path
) -> None:
    """The floor row follows the model's samplers; over the target it is still not a failure."""
    row = {"nfe": 100, "wall_s": 0.25, "score_s": 0.002, "overhead": 1.25}
    row["overhead_range"] = [1.1, 1.4]
    model = {"model": "mlp/toy", "batch": 1024, "samplers": {"pc": row}}
    model["host_round_trip"] = row
    payload = {
        "target": 1.2,
        "definition": "median ratio",
        "host_round_trip": {"row": "(floor) round trip", "definition": "calls read back"},
        "results": [{"backend": "jax", "models": [model]}],
    }
    (results / "sampler_overhead.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "Floor rows: calls read back." in text
    no_noise = "| – | – | – |"  # results written before the noise columns
    assert (
        "| jax | mlp/toy | 1024 | pc | 100 | 0.25 | 1.25 |  | 1.10–1.40 " + no_noise + " **FAIL** |"
        in text
    )
    floor_row = (
        "| jax | mlp/toy | 1024 | (floor) round trip | 100 | 0.25 | 1.25 |  | 1.10–1.40 "
        + no_noise
        + " – |"
    )
    assert floor_row in text


def test_unknown_layout_falls_back_to_a_generic_table(run_all: ModuleType, results: Path) -> None:
    """A JSON file whose layout its renderer does not know still gives a table of its records."""
    (results / "param_counts.json").write_text(json.dumps({"rows": [{"net": "x", "n": 3}]}))
    assert "| net | n |\n| --- | --- |\n| x | 3 |" in run_all.render_results(results)


def test_update_report_replaces_only_the_marked_section(
    run_all: ModuleType, tmp_path: Path
) -> None:
    """Text outside the markers is kept; a report without markers gets them appended."""
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{run_all.START}\nold figures\n{run_all.END}\noutro\n")
    run_all.update_report(readme, "new figures\n")
    assert readme.read_text() == f"intro\n{run_all.START}\nnew figures\n{run_all.END}\noutro\n"
    bare = tmp_path / "BARE.md"
    bare.write_text("intro\n")
    run_all.update_report(bare, "figures\n")
    assert bare.read_text() == f"intro\n\n{run_all.START}\nfigures\n{run_all.END}\n"


def test_rerunning_some_scripts_keeps_the_log_of_the_others(
    run_all: ModuleType, results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--only merges the scripts it ran into run_all.json; the others keep their last entry."""
    old = {"argv": [], "returncode": 0, "seconds": 108.0}
    (results / "run_all.json").write_text(
        json.dumps({"quick": False, "scripts": {"quality_toy": old}})
    )
    new = {"argv": [], "returncode": 0, "seconds": 71.0, "date": "2026-11-30"}
    monkeypatch.setattr(run_all, "RESULTS", results)
    monkeypatch.setattr(run_all, "run_scripts", lambda names, quick: dict.fromkeys(names, new))
    readme = results / "README.md"
    assert run_all.main(["--only", "param_counts", "--report", str(readme)]) == 0
    log = json.loads((results / "run_all.json").read_text())["scripts"]
    assert log == {"quality_toy": old, "param_counts": new}
    text = readme.read_text()
    assert "`benchmarks/quality_toy.py` (exit 0, 108 s)" in text
    assert "`benchmarks/param_counts.py` (exit 0, 71 s, 2026-11-30)" in text


def test_render_class_guidance(run_all: ModuleType, results: Path) -> None:
    """The guidance table: one row per scale, scale 0 named unguided, the classifier's figures."""
    accuracy = [{"t": 1e-5, "std": 0.01, "accuracy": 0.97}, {"t": 1.0, "std": 10, "accuracy": 0.1}]
    payload = {
        "run_dir": "/somewhere/runs/digits-2000",
        "run_step": 2000,
        "classifier": {
            "steps": 2000,
            "n_train": 1294,
            "accuracy": accuracy,
            "majority_fraction": 0.125,
        },
        "sampling": {"sampler": "pc", "sampler_steps": 500, "per_class": 50, "nfe": 1000},
        "rows": [
            {
                "scale": 0.0,
                "fraction": 0.1,
                "worst_class_fraction": 0.02,
                "class_confidence": 8.5,
                "seconds": 150.2,
            },
            {
                "scale": 4.0,
                "fraction": 0.93,
                "worst_class_fraction": 0.8,
                "class_confidence": 9.1,
                "seconds": 160.0,
            },
        ],
    }
    (results / "class_guidance.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "### Digits: class-guided sampling" in text
    assert "Run: `digits-2000` at step 2000" in text
    assert "held-out accuracy 0.97 at t = eps and 0.1 at t = T (commonest class 0.125)" in text
    assert "50 samples of each digit with `pc`, 500 steps (NFE 1000)" in text
    assert "| unguided | 0.1 | 0.02 | 8.5 | 150 s |" in text
    assert "| 4 | 0.93 | 0.8 | 9.1 | 160 s |" in text


def test_render_fid_features(run_all: ModuleType, results: Path) -> None:
    """Speed per backend and memory per N, a failed worker's note; the definition leads."""
    speed = {"images": 200, "size": 32, "batch": 50, "first_batch_s": 9.5, "peak_rss_mib": 1200.0}
    memory = {
        "n": 50000,
        "peak_rss_before_mib": 800.0,
        "peak_rss_after_mib": 930.0,
        "growth_mib": 130.0,
        "all_features_mib": 781.25,
        "pass_s": 250.0,
    }
    payload = {
        "definition": "pool3 images/s: best of 2 passes",
        "pytorch_fid": "not measured",
        "speed": [
            {"backend": "jax", **speed, "images_per_s": 4.25, "notes": []},
            {"backend": "torch", "notes": ["exit 1: out of memory"]},
        ],
        "memory": [{"backend": "tensorflow", **memory, "notes": []}],
    }
    (results / "fid_features.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "### Standard FID: feature speed and statistics memory" in text
    assert "pool3 images/s: best of 2 passes; pytorch-fid: not measured." in text
    assert "| jax | 200 | 32 | 50 | 9.5 | 4.25 | 1200 |" in text
    assert "| torch | – | – | – | – | – | – |" in text
    assert "| 50000 | 800 | 930 | 130 | 781.2 | 250 |" in text
    assert "- torch: exit 1: out of memory" in text


def _peer_clock(seconds: float, ratio: float, ratio_range: list[float]) -> dict:
    """One system's train or sample summary of peer_speed.json."""
    return {
        "s_per_step": seconds,
        "s_per_step_range": [seconds, seconds],
        "cpu_s_per_step": seconds,
        "ratio": ratio,
        "ratio_range": ratio_range,
        "cpu_ratio": 1.18,
        "cpu_per_wall": 0.65,
    }


def _peer_system(train_s: float, train_ratio: float) -> dict:
    """One system's entry of peer_speed.json."""
    return {
        "parameters": 1777667,
        "train": _peer_clock(train_s, train_ratio, [0.7325, 1.4597]),
        "sample": _peer_clock(0.3824, 2.0383, [0.7692, 2.4139]),
        "first_train": {"wall_s": 54.98, "cpu_s": 34.47},
        "first_sample": {"wall_s": 15.33, "cpu_s": 8.66},
        "memory": {"rss_before_training_mb": 1277.0, "peak_rss_training_mb": 2476.2},
    }


def _peer_payload(note: str, train_s: float, train_ratio: float) -> dict:
    """peer_speed.json with the original, scoregen jax and a system that failed to start."""
    model = {
        "title": "NCSN++ (VE, continuous)",
        "size": {"image_size": 32, "nf": 32},
        "batch": 8,
        "parameters_agree": True,
        "systems": {
            "original": _peer_system(1.1322, 1.0),
            "scoregen jax": _peer_system(train_s, train_ratio),
            "scoregen torch": {"failed": "exit 1: out of memory"},
        },
    }
    settings = {"size": "issue", "rounds": 5, "train_steps": 3, "sample_steps": 5, "threads": 1}
    machine = {"shared": "yes: other developers' work runs beside it"}
    return {"settings": settings, "machine": machine, "note": note, "models": {"ncsnpp": model}}


def test_render_peer_speed(run_all: ModuleType, results: Path) -> None:
    """Issue 27: a row per model and system under the note and settings; a failed system says
    so; peer_speed_before.json, when present, adds the same table for the figures before."""
    payload = _peer_payload("after the fixes", 1.4813, 1.3484)
    (results / "peer_speed.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "### NCSN++ and DDPM++ against the original" in text
    assert (
        "Note: after the fixes. Settings: size `issue`, 5 rounds of 3 train + 5 sample steps, "
        "1 thread(s) per framework. The machine was shared (other developers' work runs beside "
        "it). NCSN++ (VE, continuous): 1,777,667 parameters (same on every side)"
    ) in text
    row = "| NCSN++ (VE, continuous) | scoregen jax | 1.481 | 1.35 | 0.73–1.46 | 1.18 | 0.382 |"
    assert (
        row + " 2.04 | 0.77–2.41 | 1.18 | 55.0 (34.5) | 15.3 (8.7) | 1277 | 2476 | +1199 |" in text
    )
    assert "| scoregen torch | failed: exit 1: out of memory | – |" in text
    assert "Before the fixes" not in text
    before = _peer_payload("before any fix", 2.9626, 2.6168)
    (results / "peer_speed_before.json").write_text(json.dumps(before))
    after, _, earlier = run_all.render_results(results).partition("#### Before the fixes")
    assert row in after and "Note: before any fix." in earlier
    assert "| NCSN++ (VE, continuous) | scoregen jax | 2.963 | 2.62 | 0.73–1.46 |" in earlier


def _profile_payload() -> dict:
    """peer_profile.json: one model, two op rows, the sums and a wall row; TF with grappler on,
    and off failed."""
    rows = [
        {"op": "aten::mkldnn_convolution", "scoregen": [60.7, 22.0], "original": [72.8, 22.0]},
        {"op": "aten::native_group_norm", "scoregen": [10.4, 47.0], "original": [0.0, 0.0]},
        {"op": "all ops", "scoregen": [106.5, None], "original": [101.25, None]},
        {
            "op": "outside ops, no profiler (wall - all ops)",
            "scoregen": [25.5, None],
            "original": [2.0, None],
        },
    ]
    annotations = {"scoregen": {}, "original": {"DataParallel.forward": [2.04, 1.0]}}
    torch = {"rows": rows, "annotations": annotations}
    on = {
        "first_s": 31.04,
        "first_cpu_s": 28.61,
        "steady_s": 0.4871,
        "grappler_passes_ms": {"remapper": 3150.0, "constant_folding": 2460.0},
        "split": {"trace_s": 11.26, "grappler_s": 9.81, "rest_s": 9.48},
    }
    tf = {"on": on, "off": {"failed": "exit 1: killed"}}
    model = {"title": "DDPM++ (VP, continuous)", "torch": torch, "tensorflow": tf}
    settings = {"size": "issue", "batch": 8, "threads": 1, "calls": 20, "train_steps": 3}
    return {"settings": settings, "machine": {"shared": True}, "models": {"ddpmpp": model}}


def test_render_peer_profile(run_all: ModuleType, results: Path) -> None:
    """Issue 27's profiles: per model the op rows beside the original's (sums without calls,
    the difference signed), the annotations, and TF's first-step split; a failed run says so;
    with both runs, grappler's on − off difference."""
    (results / "peer_profile.json").write_text(json.dumps(_profile_payload()))
    text = run_all.render_results(results)
    assert "### Where the remaining time goes (profiles beside the original)" in text
    assert "Size `issue`, batch 8, 1 thread. PyTorch: self CPU ms and calls per score call " in text
    assert "steady: mean of 3 steps. The machine was shared with other work." in text
    assert "#### DDPM++ (VP, continuous)" in text
    assert "| aten::mkldnn_convolution | 60.7 | 22 | 72.8 | 22 | -12.1 |" in text
    assert "| aten::native_group_norm | 10.4 | 47 | 0.0 | 0 | +10.4 |" in text
    assert "| all ops | 106.5 | – | 101.2 | – | +5.2 |" in text
    assert "| outside ops, no profiler (wall - all ops) | 25.5 | – | 2.0 | – | +23.5 |" in text
    assert "Annotations (not ops): scoregen: none; original: DataParallel.forward 2.0 ms." in text
    row = "| on | 31.0 (28.6) | 11.3 | 9.8 | 9.5 | 0.487 | remapper 3.1, constant_folding 2.5 |"
    assert row in text
    assert "| off | failed: exit 1: killed | – |" in text
    assert "Grappler on − off" not in text
    payload = _profile_payload()
    off = {**payload["models"]["ddpmpp"]["tensorflow"]["on"], "first_s": 14.34, "steady_s": 0.4}
    payload["models"]["ddpmpp"]["tensorflow"]["off"] = off
    (results / "peer_profile.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "Grappler on − off: first step +16.7 s, steady step +0.087 s." in text


def test_render_import_scale(run_all: ModuleType, results: Path) -> None:
    """Issue 24: import seconds and peak memory over the weights per backend with the memory
    verdict, a failed backend's note, then the parity checks with their tolerances."""
    parity = {
        "ncsnpp_ve_c3 score": {"max_rel_diff": 3.3948e-07, "tolerance": 1e-05},
        "diffusers PC pipeline final mean": {"max_rel_diff": 2.7691e-07, "tolerance": 1e-04},
    }
    jax = {
        "backend": "jax",
        "import_seconds": 56.0,
        "load_seconds": 6.8,
        "pc_step_seconds": 57.7,
        "pc_step_nfe": 2,
        "sample_finite": True,
        "parity": parity,
        "notes": [],
        "peak_over_weights": 3.38,
        "peak_total_over_weights": 7.44,
        "memory_pass": False,
    }
    payload = {
        "config": "ve/celebahq_256_ncsnpp_continuous",
        "written": {"parameters": 65574549, "weights_bytes": 262298196, "file_bytes": 1050108053},
        "memory_target": 3.0,
        "backends": [jax, {"backend": "torch", "notes": ["exit 1: killed"]}],
        "parity_pass": False,
        "memory_pass": False,
        "machine": {"shared": True},
    }
    (results / "import_scale.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "### Importing published checkpoints: time and peak memory" in text
    assert (
        "65,574,549 parameters (250 MiB of float32 weights), the published checkpoint 1001 MiB"
        in text
    )
    assert "Memory **FAIL**, parity **FAIL**. The machine was shared with other work." in text
    assert "| jax | 56 | 3.38 | 7.44 | 6.8 | 57.7 | 2 | pass | **FAIL** |" in text
    assert "| torch | – | – | – | – | – | – | – | – |" in text and "- torch: exit 1: killed" in text
    assert "| max relative difference | jax | tolerance | verdict |" in text
    assert "| diffusers PC pipeline final mean | 2.77e-07 | 1e-04 | pass |" in text


def test_render_reproducible_sampling(run_all: ModuleType, results: Path) -> None:
    """Issue 25: backend differences per run and sampler, batch-size differences (exactly 0
    as 0), and the Langevin step rule's spreads."""
    payload = {
        "seeds": 8,
        "steps": 10,
        "backends": [
            {
                "run": "/tmp/runs/toy",
                "sampler": "ode heun",
                "max_abs_value": 2.7018,
                "jax - tensorflow": 3.5763e-07,
                "torch - tensorflow": 0.0,
            }
        ],
        "batch": [
            {
                "run": "/tmp/runs/toy",
                "dataset": "mixture5",
                "step": 3000,
                "batch": {
                    "ode RK45": {"batch 1": 0.0016847, "batch 3": 0.00073779},
                    "edm heun": {"batch 1": 0.0, "batch 3": 2.3842e-07},
                },
            }
        ],
        "rule": {
            "shape": [8, 8, 3],
            "n": 32,
            "N": 100,
            "snr": 0.16,
            "sigma_max": 50.0,
            "spread_batch": 1.01234,
            "spread_batch_se": 0.0123,
            "spread_per_example": 1.00321,
            "spread_per_example_se": 0.0111,
            "paired_difference": -0.00913,
            "paired_difference_se": 0.00101,
        },
        "notes": ["exit 1: torch failed"],
    }
    (results / "reproducible_sampling.json").write_text(json.dumps(payload))
    text = run_all.render_results(results)
    assert "### Reproducible sampling: the same seed across backends and batch sizes" in text
    assert "| run | sampler | jax - tensorflow | torch - tensorflow | max \\|x\\| |" in text
    assert "| toy | ode heun | 3.6e-07 | 0 | 2.70 |" in text
    assert "runs `toy` (mixture5, step 3000)" in text
    assert (
        "| toy | ode RK45 | 1.7e-03 | 7.4e-04 |" in text
        and "| toy | edm heun | 0 | 2.4e-07 |" in text
    )
    assert "norms over the batch (score_sde) 1.0123 ± 0.0123, per example 1.0032 ± 0.0111" in text
    assert "paired difference -0.00913 ± 0.00101." in text and "- exit 1: torch failed" in text
