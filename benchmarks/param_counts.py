"""Parameter counts of the CIFAR-10 NCSN++ / DDPM++ configurations against Song et al. (2021).

Builds each network symbolically (no forward computation on data), counts every weight (the
fixed Gaussian Fourier frequencies of NCSN++ included, as in the paper's code) and compares with
the published figure. Prints a table, writes benchmarks/results/param_counts.json and exits
with status 1 when any count is off by more than TOLERANCE (relative).

Usage: KERAS_BACKEND=jax python benchmarks/param_counts.py
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import keras

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from scoregen_keras.networks.ncsnpp import CONFIGS, PARAMETER_TARGETS  # noqa: E402

TOLERANCE = 0.01  # relative difference allowed against the published count
RESULTS = ROOT / "benchmarks" / "results" / "param_counts.json"


def count_parameters(name: str) -> int:
    """Build configuration `name` on symbolic inputs and return its number of weights."""
    cls, config = CONFIGS[name]
    net = cls(**config)
    size, channels = config["image_size"], config["channels"]
    net.build((1, size, size, channels))
    return int(net.count_params())


def main(argv: list[str] | None = None) -> int:
    """Count, compare, print, save; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    rows = []
    for name, target in PARAMETER_TARGETS.items():
        count = count_parameters(name)
        rel = (count - target) / target
        rows.append(
            {
                "name": name,
                "count": count,
                "target": int(target),
                "rel_diff": rel,
                "pass": abs(rel) <= TOLERANCE,
            }
        )
        keras.backend.clear_session()

    header = f"{'name':<22}{'count':>14}{'target':>14}{'rel. diff':>11}  pass"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<22}{r['count']:>14,}{r['target']:>14,}{r['rel_diff']:>+11.3%}"
            f"  {'yes' if r['pass'] else 'NO'}"
        )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    payload = {"backend": keras.backend.backend(), "tolerance": TOLERANCE, "results": rows}
    args.output.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0 if all(r["pass"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
