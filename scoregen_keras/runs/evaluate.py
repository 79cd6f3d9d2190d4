"""Sample quality of a trained model: distances to the data, each beside its noise floor.

Sample-set distances are noisy and biased by the set sizes, so every figure comes with the same
figure between two disjoint random halves of the true data (the real-vs-real floor). For each
of ``n_pairs`` random splits of the data into halves A and B (k points each,
k = min(n_samples, n_data // 2)), the value is metric(samples, A) and the floor is
metric(B, A); both are reported as mean and std over the splits. A perfect model (samples drawn
like B) scores the floor.

- points: sliced Wasserstein-1, MMD² (RBF, median bandwidth) and energy distance; with an exact
  density (the Gaussian mixtures of `reference.datasets.EXACT_MIXTURES`) also the mean exact
  log-density gap (samples − data: samples too wide or too narrow), the total variation of the
  component occupancies (mode imbalance), and, given the model's log-likelihood, the NLL gap
  E_data[log p(x) − log p_model(x)] = KL(p || p_model) ≥ 0.
- images: Fréchet distance and KID in a feature space: the shipped digits classifier for 8×8×1
  images (plus the Inception-score-like class confidence), else the pool features of
  keras.applications' InceptionV3 with ImageNet weights (``fd_inception_imagenet``,
  ``kid_inception_imagenet``; `features.ImageNetInceptionWeightsError` when its weights are
  unavailable). That network is not the papers' FID network, so these are no FID.
- the standard FID (``fid_statistics=`` a statistics file, e.g. CIFAR-10's train set written by
  `scoregen fid --save-stats`): pytorch-fid's FID of the samples, quantised to 8 bits as PNGs,
  against the file (`runs.fid.sampled_fid`). Comparable with the papers' figures at n = 50 000;
  no floor (the file holds no images to split) and no other metric (those need every sample and
  the data in memory; this streams the samples).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import numpy as np

from reference import sde as reference_sde_lib
from reference.datasets import EXACT_MIXTURES
from scoregen_keras import metrics
from scoregen_keras.choices import COUNTER_NOISE
from scoregen_keras.data import original_pixel_range
from scoregen_keras.likelihood import ode_likelihood
from scoregen_keras.networks import features
from scoregen_keras.runs import fid
from scoregen_keras.runs.build import load_run_data
from scoregen_keras.runs.config import run_dataset
from scoregen_keras.runs.folder import RunError
from scoregen_keras.runs.load import Run
from scoregen_keras.runs.sample import draw_samples, sample_seeds
from scoregen_keras.sde import SDE

POINTS, IMAGES = "points", "images"
FID = "fid"
"""The standard FID's name in a report: pytorch-fid's network and formula, nothing else."""
DEFAULT_PAIRS = 5
DEFAULT_PROJECTIONS = metrics.DEFAULT_PROJECTIONS
KID_SUBSETS = 50
"""KID subsets per comparison (the usual 100 halved: each evaluation runs 2 x n_pairs KIDs)."""
DEFAULT_NLL_POINTS = 200
DIGITS_SHAPE = features.DIGITS_SHAPE
EVAL_DATA_SEED_OFFSET = 1
"""Toy data for evaluation are drawn with the run's seed plus this: independent of training."""
Entry = dict[str, float | int]
Metric = Callable[[np.ndarray, np.ndarray], float]


def _flat(x: Any) -> np.ndarray:
    """A sample set as float64 (n, D)."""
    x = np.asarray(keras.ops.convert_to_numpy(x), dtype=np.float64)
    return x.reshape(len(x), -1)


def _stats(values: list[float]) -> tuple[float, float]:
    """Mean and std (ddof=1; 0 for one value)."""
    array = np.asarray(values, dtype=np.float64)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _splits(n_data: int, k: int, n_pairs: int, rng: np.random.Generator) -> list[tuple]:
    """n_pairs random pairs of disjoint index sets (A, B) of size k each."""
    splits = []
    for _ in range(n_pairs):
        order = rng.permutation(n_data)
        splits.append((order[:k], order[k : 2 * k]))
    return splits


def _against_floor(
    metric_fn: Metric, samples: np.ndarray, data: np.ndarray, splits: list[tuple]
) -> Entry:
    """metric(samples, A) and the floor metric(B, A), mean and std over the splits."""
    values = [metric_fn(samples, data[a]) for a, _ in splits]
    floors = [metric_fn(data[b], data[a]) for a, b in splits]
    value, value_std = _stats(values)
    floor_mean, floor_std = _stats(floors)
    return {
        "value": value,
        "value_std": value_std,
        "floor_mean": floor_mean,
        "floor_std": floor_std,
    }


def _occupancy(mixture: Any, x: np.ndarray) -> np.ndarray:
    """Fraction of points assigned to each component by the largest exact posterior."""
    labels = np.argmax(mixture.posterior(x), axis=1)
    return np.bincount(labels, minlength=mixture.n_components) / len(x)


def _point_metrics(
    samples: np.ndarray,
    data: np.ndarray,
    splits: list[tuple],
    seed: int,
    n_projections: int,
    density: Any,
    model_log_prob: Callable[[np.ndarray], np.ndarray] | None,
    n_nll: int,
) -> dict[str, Entry]:
    """SW1, MMD², energy (and the exact-density checks) against the two-halves floor."""
    generator = keras.random.SeedGenerator(seed)

    def sw(x: np.ndarray, y: np.ndarray) -> float:
        """Sliced Wasserstein with fresh projections from the evaluation's seed generator."""
        return metrics.sliced_wasserstein(x, y, generator, n_projections)

    report = {
        "sliced_wasserstein": _against_floor(sw, samples, data, splits),
        "mmd_rbf": _against_floor(metrics.mmd_rbf, samples, data, splits),
        "energy": _against_floor(metrics.energy_distance, samples, data, splits),
    }
    if density is None:
        return report

    def logp_gap(x: np.ndarray, y: np.ndarray) -> float:
        """Mean exact log-density of x minus that of y (nats)."""
        return float(np.mean(density.log_prob(x)) - np.mean(density.log_prob(y)))

    def occupancy_tv(x: np.ndarray, y: np.ndarray) -> float:
        """Total variation between the component occupancies of x and y."""
        return 0.5 * float(np.sum(np.abs(_occupancy(density, x) - _occupancy(density, y))))

    report["logp_gap"] = _against_floor(logp_gap, samples, data, splits)
    report["occupancy_tv"] = _against_floor(occupancy_tv, samples, data, splits)
    if model_log_prob is not None and n_nll > 0:
        points = data[splits[0][0][:n_nll]]
        gap = density.log_prob(points) - np.asarray(model_log_prob(points), dtype=np.float64)
        report["nll_gap"] = {
            "value": float(np.mean(gap)),
            "std_error": float(np.std(gap, ddof=1) / np.sqrt(len(gap))) if len(gap) > 1 else 0.0,
            "n": len(gap),
        }
    return report


def _image_metrics(
    samples: np.ndarray,
    data: np.ndarray,
    splits: list[tuple],
    seed: int,
    pixel_range: tuple[float, float],
    imagenet_weights: str | Path | None,
) -> dict[str, Entry]:
    """Fréchet distance and KID in digits-classifier or ImageNet Inception features, with floors."""
    low, high = pixel_range
    if tuple(samples.shape[1:]) == DIGITS_SHAPE:
        space = "digits"

        def extract(x: np.ndarray) -> np.ndarray:
            """Digits-classifier features of images in [0, 1]."""
            return features.digits_features(np.clip((x - low) / (high - low), 0.0, 1.0))
    else:
        space = "inception_imagenet"

        def extract(x: np.ndarray) -> np.ndarray:
            """ImageNet InceptionV3 pool features."""
            return features.imagenet_inception_features(x, pixel_range, imagenet_weights)

    used = np.unique(np.concatenate([np.concatenate(pair) for pair in splits]))
    sample_features = extract(samples)
    data_features = np.zeros((len(data), sample_features.shape[1]))
    data_features[used] = extract(data[used])  # only the images some split uses

    def kid(x: np.ndarray, y: np.ndarray) -> float:
        """KID with subsets drawn from the evaluation's seed."""
        return metrics.kernel_inception_distance(x, y, seed, KID_SUBSETS)

    names = (f"fd_{space}", f"kid_{space}")
    report = {
        names[0]: _against_floor(
            metrics.frechet_distance_from_samples, sample_features, data_features, splits
        ),
        names[1]: _against_floor(kid, sample_features, data_features, splits),
    }
    if space == "digits":
        unit = np.clip((samples - low) / (high - low), 0.0, 1.0)
        unit_data = np.clip((data - low) / (high - low), 0.0, 1.0)
        score = features.class_confidence_score(features.digits_class_probabilities(unit))
        floors = [
            features.class_confidence_score(features.digits_class_probabilities(unit_data[b]))
            for _, b in splits
        ]
        floor_mean, floor_std = _stats(floors)
        report["class_confidence_digits"] = {
            "value": score,
            "floor_mean": floor_mean,
            "floor_std": floor_std,
        }
    return report


def evaluate_samples(
    samples: Any,
    data: Any,
    kind: str,
    *,
    seed: int = 0,
    n_pairs: int = DEFAULT_PAIRS,
    n_projections: int = DEFAULT_PROJECTIONS,
    pixel_range: tuple[float, float] = (0.0, 1.0),
    density: Any = None,
    model_log_prob: Callable[[np.ndarray], np.ndarray] | None = None,
    n_nll: int = DEFAULT_NLL_POINTS,
    imagenet_weights: str | Path | None = None,
) -> dict[str, Entry]:
    """Metrics of samples against data ("points" or "images"), each beside its noise floor.

    Returns {metric: {"value", "value_std", "floor_mean", "floor_std"}} (see the module
    docstring); "nll_gap" has "value", "std_error" and "n" instead. ``density``: an object with
    log_prob(x) and posterior(x) (a `reference.distributions.GaussianMixture`) for point data.
    ``model_log_prob(x)``: the model's log-likelihood per example (nats), evaluated on the first
    ``n_nll`` points of the first reference half. ``pixel_range``: the values of black and
    white in the image arrays. Data splits draw from numpy.random.default_rng(seed).
    """
    if kind not in (POINTS, IMAGES):
        raise ValueError(f"kind must be '{POINTS}' or '{IMAGES}', got {kind!r}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be positive, got {n_pairs}")
    samples_np = np.asarray(keras.ops.convert_to_numpy(samples), dtype=np.float64)
    data_np = np.asarray(keras.ops.convert_to_numpy(data), dtype=np.float64)
    if samples_np.shape[1:] != data_np.shape[1:]:
        raise ValueError(
            f"samples have examples of shape {samples_np.shape[1:]}, data {data_np.shape[1:]}"
        )
    if len(samples_np) < 2 or len(data_np) < 4:
        raise ValueError("need at least 2 samples and 4 data points")
    k = min(len(samples_np), len(data_np) // 2)
    splits = _splits(len(data_np), k, n_pairs, np.random.default_rng(seed))
    if kind == POINTS:
        return _point_metrics(
            _flat(samples_np),
            _flat(data_np),
            splits,
            seed,
            n_projections,
            density,
            model_log_prob,
            n_nll,
        )
    return _image_metrics(samples_np, data_np, splits, seed, pixel_range, imagenet_weights)


# ------------------------------------------------------------------------------------ runs


def reference_sde(sde: SDE) -> reference_sde_lib.SDE:
    """The NumPy `reference.sde` twin of a Keras SDE (same class, parameters and eps).

    For exact scores of a run's noise process: pass `run.model.sde`, so the oracle follows the
    run's config (`sde`, `sde_config`) rather than a library default.
    """
    config = sde.to_config()
    kind, eps = config.pop("type"), config.pop("eps")
    twin = getattr(reference_sde_lib, kind, None)
    if not (isinstance(twin, type) and issubclass(twin, reference_sde_lib.SDE)):
        raise ValueError(f"reference.sde has no counterpart of the Keras SDE '{kind}'.")
    result = twin(**config)
    result.eps = float(eps)
    return result


def model_log_prob_fn(run: Run) -> Callable[[np.ndarray], np.ndarray] | None:
    """log p_model(x) in the data's original scale via the probability-flow ODE (exact divergence).

    None for runs without an SDE (discrete NCSN noise levels have no likelihood ODE).
    """
    model = run.model
    if model.sde is None:
        return None
    scaler = run.scaler

    def log_prob(x: np.ndarray) -> np.ndarray:
        """Model log-density (nats) of original-scale points, change of scale included."""
        z = scaler.forward(x)
        log_p, _, _ = ode_likelihood(model.score_fn(use_ema=True), model.sde, z)
        return log_p - z[0].size * np.log(scaler.scale)

    return log_prob


def evaluate_run(
    run: Run,
    n: int,
    sampler: str = "pc",
    seed: int = 0,
    steps: int | None = None,
    n_pairs: int = DEFAULT_PAIRS,
    n_nll: int = DEFAULT_NLL_POINTS,
    imagenet_weights: str | Path | None = None,
    progress: bool = False,
    against: str | None = None,
    batch_size: int | None = None,
    fid_statistics: str | Path | None = None,
    fid_weights: str | Path | None = None,
    download: bool = True,
    *,
    seeds: Any | None = None,
    noise: str = COUNTER_NOISE,
) -> dict[str, Any]:
    """Draw n samples from a loaded run and evaluate them against data (original scale).

    The samples' seeds are ``seeds`` (n then their number), else seed .. seed+n-1, drawn with
    ``noise`` (`draw_samples`); ``seed`` also seeds the data's splits and the metrics' draws.

    The data are the run's own data set, or ``against`` (any `load_dataset` name with the run's
    kind and example shape, e.g. ``digits:held-out`` for a run trained on ``digits:train``).
    Toy sets are drawn afresh (2n points, seed = run seed + EVAL_DATA_SEED_OFFSET); other data
    sets are loaded whole. ``batch_size`` caps the samples drawn at once (`draw_samples`).
    With ``fid_statistics`` (a statistics file) the one metric is the standard FID against it,
    with the FID Inception weights ``fid_weights`` (`find_fid_weights`; ``download`` if absent).
    Returns the run's identity, the sampler's cost and the metrics.
    """
    config = run.config
    seeds = sample_seeds(n if seeds is None else None, seed, seeds)
    n = len(seeds)
    identity = {
        "run_dir": str(run.paths.root),
        "checkpoint": str(run.checkpoint),
        "step": run.step,
        "backend": keras.backend.backend(),
        "dataset": config.get("dataset"),
        "kind": config["data"]["kind"],
        "sampler": sampler,
        "n": n,
        "seed": seed,
        "seeds": {
            "first": int(seeds[0]),
            "last": int(seeds[-1]),
            "consecutive": bool(np.all(np.diff(seeds) == 1)),
        },
        "noise": noise,
    }
    if fid_statistics is not None:
        return {
            **identity,
            **_standard_fid(
                run,
                seeds,
                noise,
                sampler,
                steps,
                batch_size,
                progress,
                fid_statistics,
                fid_weights,
                download,
            ),
        }
    kind = config["data"]["kind"]
    name = run_dataset(config, against, "evaluate")
    dataset = load_run_data(name, config, 2 * n, seed=int(config["seed"]) + EVAL_DATA_SEED_OFFSET)
    drawn = draw_samples(
        run.model,
        config,
        n,
        sampler=sampler,
        seeds=seeds,
        noise=noise,
        steps=steps,
        progress=progress,
        batch_size=batch_size,
    )
    density = EXACT_MIXTURES[name]() if kind == POINTS and name in EXACT_MIXTURES else None
    # images: the data's pixels in the run's units (both sets share the model's pixel scale)
    data_scaler = run.scaler if kind == IMAGES else dataset.scaler
    report = evaluate_samples(
        drawn.x_original,
        data_scaler.inverse(dataset.x),
        kind,
        seed=seed,
        n_pairs=n_pairs,
        pixel_range=original_pixel_range(data_scaler),
        density=density,
        model_log_prob=model_log_prob_fn(run) if density is not None else None,
        n_nll=n_nll,
        imagenet_weights=imagenet_weights,
    )
    return {
        **identity,
        "against": name,
        "nfe": drawn.nfe,
        "sampling_seconds": round(drawn.seconds, 3),
        "metrics": report,
    }


def _standard_fid(
    run: Run,
    seeds: np.ndarray,
    noise: str,
    sampler: str,
    steps: int | None,
    batch_size: int | None,
    progress: bool,
    statistics: str | Path,
    weights: str | Path | None,
    download: bool,
) -> dict[str, Any]:
    """evaluate_run's fields for the standard FID of the samples of these seeds against a
    statistics file."""
    if run.config["data"]["kind"] != IMAGES:
        raise RunError("the standard FID is for image runs; this run's data are points.")
    result = fid.sampled_fid(
        run,
        statistics,
        len(seeds),
        fid.network_loader(weights, download),
        sampler=sampler,
        seeds=seeds,
        noise=noise,
        steps=steps,
        batch_size=batch_size,
        progress=progress,
    )
    return {
        "against": str(statistics),
        "nfe": result.nfe,
        "sampling_seconds": round(result.sampling_seconds, 3),
        "metrics": {FID: {"value": result.fid, "n": result.statistics.count}},
    }
