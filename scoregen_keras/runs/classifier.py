"""A run's noise-conditional classifier, for class-guided sampling (Song et al. 2021, sec. 5).

`scoregen classifier RUN` trains a `NoiseConditionalClassifier` on the run's own training data
and their classes, noised by the run's SDE (for a run of NCSN noise levels, the VE SDE through
those levels). It is saved as RUN/classifier.keras (the model with its class names) beside
RUN/classifier.json (what it learnt from, and its accuracy on held-out examples at several times
t). `scoregen sample RUN --class NAME` then samples with the guided score
s(x, t) + scale grad_x log p_t(y | x) of a `ClassGuide` (for NCSN, its s(x, sigma) counterpart).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from scoregen_keras import backend, controllable, data
from scoregen_keras.runs.build import training_data
from scoregen_keras.runs.folder import RunError, one_line, write_json_atomic
from scoregen_keras.runs.load import Run, load_saved_model
from scoregen_keras.sde import SDE, VESDE, ScoreFn, batch_scalar, to_float
from scoregen_keras.training.callbacks import ProgressBar
from scoregen_keras.training.checkpoint import save_checkpoint
from scoregen_keras.training.classifier import (
    NoiseConditionalClassifier,
    log_posterior_grad_fn,
    train_classifier,
)

Tensor = Any
HELD_OUT_FRACTION = 0.1
ACCURACY_TIME_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
"""Where the held-out accuracy is measured: fractions of the way from the SDE's eps to T."""
EVAL_BATCH = 1_000
ALL_CLASSES = "all"
MAX_LISTED_CLASSES = 12  # an unknown class name lists at most this many known ones


def guidance_sde(run: Run) -> SDE:
    """The SDE the run's classifier learns on: the run's own, or for a run of NCSN noise levels
    the VE SDE through them, sigma(t) from the lowest level at t = 0 to the highest at T."""
    if run.model.sde is not None:
        return run.model.sde
    levels = run.model.sigma_values
    return VESDE(sigma_min=min(levels), sigma_max=max(levels), N=len(levels))


def held_out_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and held-out indices of n labelled examples, a seeded tenth (at least one) held out;
    RunError when fewer than two leave nothing to train on."""
    if n < 2:
        raise RunError(f"a classifier needs at least 2 labelled examples; the data have {n}.")
    return data.held_out_split(n, HELD_OUT_FRACTION, seed)


def held_out_accuracy(
    classifier: NoiseConditionalClassifier, sde: SDE, x: np.ndarray, y: np.ndarray, seed: int
) -> list[dict[str, float]]:
    """Accuracy on x_t = alpha x + std z at each of ACCURACY_TIME_FRACTIONS (z from
    default_rng([seed, k]) for the k-th time), with that time's t and std."""
    rows = []
    with backend.no_grad():
        for k, fraction in enumerate(ACCURACY_TIME_FRACTIONS):
            t = sde.eps + fraction * (sde.T - sde.eps)
            alpha, std = (
                float(keras.ops.convert_to_numpy(c)) for c in sde.marginal_coefficients(to_float(t))
            )
            z = np.random.default_rng([seed, k]).standard_normal(x.shape).astype(np.float32)
            correct = 0
            for start in range(0, len(x), EVAL_BATCH):
                x_t = alpha * x[start : start + EVAL_BATCH] + std * z[start : start + EVAL_BATCH]
                logits = classifier(to_float(x_t), to_float(np.full(len(x_t), t)))
                predicted = np.argmax(keras.ops.convert_to_numpy(logits), axis=1)
                correct += int(np.sum(predicted == y[start : start + EVAL_BATCH]))
            rows.append({"t": t, "std": std, "accuracy": correct / len(x)})
    return rows


@dataclasses.dataclass
class ClassifierResult:
    """A trained and saved classifier: where it is and what classifier.json says of it."""

    path: Path
    report_path: Path
    report: dict[str, Any]


def train_run_classifier(
    run: Run, steps: int, batch_size: int, seed: int = 0, progress: bool = False
) -> ClassifierResult:
    """Train the run's classifier on its training data and classes (all but a held-out tenth),
    measure it on the held-out tenth, and save both files atomically."""
    sde = guidance_sde(run)
    if steps <= 0 or batch_size <= 0:
        raise RunError("the classifier's steps and batch size must be positive.")
    dataset = training_data(run.config, progress)
    if dataset.labels is None:
        raise RunError(
            f"the data {dataset.name} have no classes; a classifier needs digits, mnist, "
            "fashion_mnist, cifar10, a toy mixture, an .npz file with labels 'y', or a folder "
            "with one subfolder of images per class."
        )
    train, held_out = held_out_split(len(dataset.x), seed)
    start = time.perf_counter()
    callbacks = [ProgressBar(steps, batch_size, desc="classifier")] if progress else []
    classifier = train_classifier(
        dataset.x[train],
        dataset.labels[train],
        sde,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        class_names=dataset.class_names,
        callbacks=callbacks,
    )
    seconds = time.perf_counter() - start
    held_out_y = dataset.labels[held_out]
    report = {
        "data": dataset.name,
        "classes": list(dataset.class_names),
        "n_train": len(train),
        "n_held_out": len(held_out),
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "hidden": list(classifier.hidden),
        "sde": sde.to_config(),
        "backend": keras.backend.backend(),
        "seconds": round(seconds, 3),
        # accuracy of always answering the commonest held-out class: the floor to beat
        "majority_fraction": float(np.max(np.bincount(held_out_y)) / len(held_out_y)),
        "accuracy": held_out_accuracy(classifier, sde, dataset.x[held_out], held_out_y, seed),
    }
    paths = run.paths
    try:
        save_checkpoint(classifier, paths.classifier)
        write_json_atomic(paths.classifier_report, report)
    except OSError as error:
        raise RunError(
            f"cannot save the classifier in {paths.root} ({one_line(error)})."
        ) from error
    return ClassifierResult(paths.classifier, paths.classifier_report, report)


def load_run_classifier(run: Run) -> NoiseConditionalClassifier:
    """RUN/classifier.keras, checked to be a classifier for this run's SDE and data shape."""
    sde = guidance_sde(run)
    path = run.paths.classifier
    if not path.exists():
        raise RunError(
            f"{run.paths.root} has no classifier; train one with "
            f"`scoregen classifier {run.paths.root}` first."
        )
    classifier = load_saved_model(path, "classifier", NoiseConditionalClassifier, compile=False)
    shapes = classifier.get_build_config().get("shapes_dict", {})
    built_for = tuple(shapes.get("x_shape", (None,))[1:])
    if classifier.sde.to_config() != sde.to_config() or built_for != tuple(
        run.config["data"]["shape"]
    ):
        raise RunError(
            f"classifier {path} was trained for another SDE or data shape than this run's; "
            f"train it again with `scoregen classifier {run.paths.root}`."
        )
    return classifier


@dataclasses.dataclass(frozen=True)
class ClassGuide:
    """The guided score for the chosen classes, cycled over the positions of a seed list."""

    classifier: NoiseConditionalClassifier
    classes: tuple[int, ...]
    scale: float

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of all the classifier's classes (index k: class k)."""
        return self.classifier.class_names

    def labels(self, positions: np.ndarray) -> np.ndarray:
        """The class of the samples at these positions of a seed list: the chosen classes in
        turn, position j getting classes[j mod K]."""
        classes = np.asarray(self.classes, dtype=np.int32)
        return classes[np.asarray(positions) % len(classes)]

    def score_fn(self, score_fn: ScoreFn, labels: np.ndarray) -> ScoreFn:
        """s(x, t) + scale grad_x log p_t(y | x) for batches whose examples have these labels."""
        return controllable.guided_score(
            score_fn, log_posterior_grad_fn(self.classifier), labels, self.scale
        )

    def sigma_score_fn(self, score_fn: ScoreFn, labels: np.ndarray) -> ScoreFn:
        """s(x, sigma) + scale grad_x log p_sigma(y | x) for a score of noise levels sigma (NCSN)
        and batches whose examples have these labels.

        x = x_0 + sigma z is x_t / alpha(t) at the t where the classifier SDE's sigma~(t) = sigma,
        so log p_sigma(y | x) = log p_t(y | alpha x); under VE (an NCSN run's `guidance_sde`)
        alpha = 1 and this is the classifier at t(sigma).
        """
        sde = self.classifier.sde
        grad_at_t = log_posterior_grad_fn(self.classifier)

        def grad_at_sigma(x: Tensor, sigma: Tensor, y: Tensor) -> Tensor:
            t = sde.t_from_sigma_tilde(sigma)
            alpha = batch_scalar(sde.marginal_coefficients(t)[0], x)
            return alpha * grad_at_t(alpha * x, t, y)

        return controllable.guided_score(score_fn, grad_at_sigma, labels, self.scale)


def class_guide(classifier: NoiseConditionalClassifier, choice: str, scale: float) -> ClassGuide:
    """A guide towards one class, by name or index, or every class in turn (`ALL_CLASSES`)."""
    names = classifier.class_names
    if choice == ALL_CLASSES:
        return ClassGuide(classifier, tuple(range(len(names))), float(scale))
    if choice in names:
        return ClassGuide(classifier, (names.index(choice),), float(scale))
    if choice.isdigit() and int(choice) < len(names):
        return ClassGuide(classifier, (int(choice),), float(scale))
    listed = ", ".join(names[:MAX_LISTED_CLASSES]) + (
        ", ..." if len(names) > MAX_LISTED_CLASSES else ""
    )
    raise RunError(
        f"unknown class '{choice}'; choose one of {listed} (or an index below {len(names)}), "
        f"or '{ALL_CLASSES}'."
    )
