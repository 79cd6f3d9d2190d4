"""Train the digits feature classifier shipped in data/digits_classifier.weights.npz.

The small CNN of `scoregen_keras.networks.features.build_digits_classifier` is trained on
scikit-learn's 8×8 digits, scaled to [0, 1] exactly as `scoregen_keras.data.load_dataset("digits")`
does (pixels / 16), on the fixed train split of `data.digits_split` (the data set
`digits:train`), with a fixed seed. Prints a table (train and held-out accuracy), writes the
weights as plain .npz arrays and benchmarks/results/train_digits_classifier.json, and exits with
status 1 when the held-out accuracy is below TARGET_ACCURACY.

Usage: KERAS_BACKEND=tensorflow python benchmarks/train_digits_classifier.py [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

from scoregen_keras.data import load_dataset  # noqa: E402
from scoregen_keras.networks import features  # noqa: E402

SEED = 0
EPOCHS = 60
BATCH_SIZE = 32
LEARNING_RATE = 1e-3
TARGET_ACCURACY = 0.97
RESULTS = ROOT / "benchmarks" / "results" / "train_digits_classifier.json"


def accuracy(model: keras.Model, x: np.ndarray, y: np.ndarray) -> float:
    """Fraction of examples whose largest logit is the true class."""
    logits = keras.ops.convert_to_numpy(model.predict(x, batch_size=256, verbose=0))
    return float(np.mean(np.argmax(logits, axis=1) == y))


def _shown(path: Path) -> str:
    """A path relative to the repository when inside it (for the results file)."""
    resolved = path.resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else str(resolved)


def main() -> int:
    """Train, evaluate, save; return the exit status."""
    from sklearn.datasets import load_digits

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=features.DIGITS_WEIGHTS)
    args = parser.parse_args()

    x = load_dataset("digits").x  # (1797, 8, 8, 1) float32 in [0, 1]
    y = load_digits().target
    train, held_out = features.digits_split(len(x))
    keras.utils.set_random_seed(SEED)
    model = features.build_digits_classifier()
    model.compile(
        optimizer=keras.optimizers.Adam(LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    start = time.perf_counter()
    model.fit(x[train], y[train], batch_size=BATCH_SIZE, epochs=EPOCHS, shuffle=True, verbose=0)
    seconds = time.perf_counter() - start
    row = {
        "backend": keras.backend.backend(),
        "seed": SEED,
        "epochs": EPOCHS,
        "n_train": len(train),
        "n_held_out": len(held_out),
        "train_accuracy": accuracy(model, x[train], y[train]),
        "held_out_accuracy": accuracy(model, x[held_out], y[held_out]),
        "seconds": round(seconds, 1),
        "weights": _shown(args.out),
    }
    row["pass"] = row["held_out_accuracy"] >= TARGET_ACCURACY
    args.out.parent.mkdir(parents=True, exist_ok=True)
    features.save_digits_weights(model, args.out)

    header = f"{'backend':<12}{'n train':>9}{'n held out':>12}{'train acc':>11}{'held-out acc':>14}"
    print(header)
    print("-" * len(header))
    print(
        f"{row['backend']:<12}{row['n_train']:>9}{row['n_held_out']:>12}"
        f"{row['train_accuracy']:>11.4f}{row['held_out_accuracy']:>14.4f}"
    )
    print(
        f"weights: {row['weights']}  ({seconds:.1f} s, target held-out accuracy {TARGET_ACCURACY})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"target": TARGET_ACCURACY, "result": row}, indent=2) + "\n")
    return 0 if row["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
