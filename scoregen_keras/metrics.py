"""Sample-based distances on Keras: the keras.ops twins of `reference.metrics`.

Same names, signatures and formulas as the reference: sliced Wasserstein-1, MMD² (RBF), energy
distance, Fréchet distance and KID (cubic-kernel MMD² over subsets). Pairwise terms run on the
backend in float32 in row chunks (bounded memory), from coordinate differences so a point's
distance to itself is exactly 0; per-row sums come back to the host and are added in float64.
Fréchet's matrix square root runs on the host (eigendecompositions, through the reference).

Randomness: where the reference takes ``rng`` for random projections, `sliced_wasserstein` takes
a ``seed`` (int or `keras.random.SeedGenerator`) or pre-drawn ``projections``. KID's subsets are
row indices drawn on the host with ``numpy.random.default_rng(seed)`` in the reference's order,
so ``seed=s`` reproduces the reference with ``rng=default_rng(s)``. Every distance returns a
Python float.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np
from keras import ops

from reference import metrics as reference_metrics

Tensor = Any
Metric = Callable[[Any, Any], float]
Sampler = Callable[[np.random.Generator, int], np.ndarray]

CHUNK_ELEMENTS = 2**22
"""Upper bound on the entries of a temporary block on the backend (16 MB of float32)."""
MEDIAN_MAX_POINTS = reference_metrics.MEDIAN_MAX_POINTS
KID_SUBSETS = reference_metrics.KID_SUBSETS
KID_SUBSET_SIZE = reference_metrics.KID_SUBSET_SIZE
KID_DEGREE = reference_metrics.KID_DEGREE
FID_SQRTM_EPS = reference_metrics.FID_SQRTM_EPS
FeatureMoments = reference_metrics.FeatureMoments
"""Streaming float64 mean and covariance of feature rows: host NumPy, the reference's class."""
DEFAULT_PROJECTIONS = 200


def _as_2d(x: Any) -> Tensor:
    """A sample set as a floatx tensor (n, d); a 1-D array becomes (n, 1)."""
    x = ops.cast(ops.convert_to_tensor(x), keras.config.floatx())
    if len(x.shape) == 1:
        return ops.reshape(x, (-1, 1))
    return ops.reshape(x, (x.shape[0], -1))


def _pair(x: Any, y: Any, min_size: int = 1) -> tuple[Tensor, Tensor]:
    """Validate two sample sets: same feature dimension, at least `min_size` rows each."""
    x2, y2 = _as_2d(x), _as_2d(y)
    if x2.shape[1] != y2.shape[1]:
        raise ValueError(f"sample sets differ in dimension: {x2.shape[1]} vs {y2.shape[1]}")
    if min(x2.shape[0], y2.shape[0]) < min_size:
        raise ValueError(f"each sample set needs at least {min_size} points")
    return x2, y2


def _rows_per_chunk(n_columns: int) -> int:
    """Number of rows of a (rows, n_columns) temporary that fit in CHUNK_ELEMENTS."""
    return max(1, CHUNK_ELEMENTS // max(1, n_columns))


def _sq_dists(a: Tensor, b: Tensor) -> Tensor:
    """Squared Euclidean distances (n, m) between rows of a and b, from coordinate differences."""
    return ops.sum(ops.square(ops.expand_dims(a, 1) - ops.expand_dims(b, 0)), axis=-1)


def _host_sum(values: Tensor) -> float:
    """Sum of a backend tensor, finished on the host in float64."""
    return float(np.sum(np.asarray(ops.convert_to_numpy(values), dtype=np.float64)))


def _pairwise_sum(a: Tensor, b: Tensor, fn: Callable[[Tensor], Tensor]) -> float:
    """Sum of fn(squared distance) over all pairs (a_i, b_j): row chunks, row sums on the host."""
    step = _rows_per_chunk(b.shape[0] * b.shape[1])
    return sum(
        _host_sum(ops.sum(fn(_sq_dists(a[i : i + step], b)), axis=1))
        for i in range(0, a.shape[0], step)
    )


def _empirical_w1(xp: Tensor, yp: Tensor) -> Tensor:
    """Exact W1 between the columns of xp (n, P) and yp (m, P) as 1-D empirical laws, (P,).

    As in the reference: the quantile functions are step functions on the merged grid
    {i/n} ∪ {j/m} (built on the host; it depends only on n and m), so the integral is a sum.
    """
    n, m = xp.shape[0], yp.shape[0]
    xs, ys = ops.sort(xp, axis=0), ops.sort(yp, axis=0)
    if n == m:
        return ops.mean(ops.abs(xs - ys), axis=0)
    grid = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    widths = np.diff(grid, prepend=0.0)
    mid = grid - widths / 2
    ix = np.minimum(np.floor(mid * n).astype(np.int32), n - 1)
    iy = np.minimum(np.floor(mid * m).astype(np.int32), m - 1)
    gaps = ops.abs(ops.take(xs, ix, axis=0) - ops.take(ys, iy, axis=0))
    return ops.matmul(ops.cast(widths[None, :], xs.dtype), gaps)[0]


def sliced_wasserstein(
    x: Any,
    y: Any,
    seed: Any = None,
    n_projections: int = DEFAULT_PROJECTIONS,
    *,
    projections: Any = None,
) -> float:
    """Sliced Wasserstein-1: mean over random unit directions θ of W1(θᵀx, θᵀy).

    Directions: ``projections`` (P, d) when given (e.g. the reference's
    rng.standard_normal((P, d)) draw, for an exact comparison), else
    keras.random.normal((n_projections, d), seed=seed); either way normalised to unit length.
    Each 1-D W1 is exact for the empirical laws, for equal or unequal sizes.
    """
    x2, y2 = _pair(x, y)
    d = x2.shape[1]
    if projections is None:
        if n_projections < 1:
            raise ValueError(f"n_projections must be positive, got {n_projections}")
        theta = keras.random.normal((n_projections, d), seed=seed, dtype=x2.dtype)
    else:
        theta = ops.cast(ops.convert_to_tensor(projections), x2.dtype)
        if len(theta.shape) != 2 or theta.shape[1] != d or theta.shape[0] < 1:
            raise ValueError(f"projections must have shape (P, {d}), got {tuple(theta.shape)}")
    theta = theta / ops.sqrt(ops.sum(ops.square(theta), axis=1, keepdims=True))
    step = _rows_per_chunk(x2.shape[0] + y2.shape[0])
    w1 = [
        np.asarray(
            ops.convert_to_numpy(
                _empirical_w1(
                    ops.matmul(x2, ops.transpose(theta[i : i + step])),
                    ops.matmul(y2, ops.transpose(theta[i : i + step])),
                )
            ),
            dtype=np.float64,
        )
        for i in range(0, theta.shape[0], step)
    ]
    return float(np.mean(np.concatenate(w1)))


def median_bandwidth(x: Any, y: Any) -> float:
    """Median heuristic: the median Euclidean distance between distinct points of x ∪ y.

    Above MEDIAN_MAX_POINTS pooled points, the reference's evenly strided subset is used. Each
    distance appears twice off the diagonal of the full matrix, which leaves the median unchanged.
    """
    z = ops.concatenate(_pair(x, y), axis=0)
    n = z.shape[0]
    if n > MEDIAN_MAX_POINTS:
        z = ops.take(z, np.linspace(0, n - 1, MEDIAN_MAX_POINTS).astype(np.int32), axis=0)
        n = MEDIAN_MAX_POINTS
    step = _rows_per_chunk(n * z.shape[1])
    dists = ops.concatenate(
        [ops.sqrt(_sq_dists(z[i : i + step], z)) for i in range(0, n, step)], axis=0
    )
    # the off-diagonal entries: drop the last entry, view as (n - 1, n + 1), drop column 0
    off_diagonal = ops.reshape(ops.reshape(dists, (-1,))[:-1], (n - 1, n + 1))[:, 1:]
    return float(ops.convert_to_numpy(ops.median(ops.reshape(off_diagonal, (-1,)))))


def mmd_rbf(x: Any, y: Any, bandwidth: float | None = None) -> float:
    """Unbiased MMD² with the RBF kernel k(a, b) = exp(−‖a − b‖² / (2 h²)).

    MMD²_u = Σ_{i≠j} k(xᵢ, xⱼ)/(n(n−1)) + Σ_{i≠j} k(yᵢ, yⱼ)/(m(m−1)) − 2 Σ k(xᵢ, yⱼ)/(nm)
    (Gretton et al. 2012, eq. 3); it can be slightly negative. h = `median_bandwidth` when None.
    """
    x2, y2 = _pair(x, y, min_size=2)
    h = median_bandwidth(x2, y2) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be positive, got {h}")

    def kernel(d2: Tensor) -> Tensor:
        """RBF kernel as a function of the squared distance."""
        return ops.exp(-d2 / (2.0 * h**2))

    n, m = x2.shape[0], y2.shape[0]
    kxx = (_pairwise_sum(x2, x2, kernel) - n) / (n * (n - 1))  # k(x, x) = 1 on the diagonal
    kyy = (_pairwise_sum(y2, y2, kernel) - m) / (m * (m - 1))
    kxy = _pairwise_sum(x2, y2, kernel) / (n * m)
    return kxx + kyy - 2.0 * kxy


def energy_distance(x: Any, y: Any) -> float:
    """Energy distance 2E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ (Székely & Rizzo), V-statistic form.

    Averages run over all pairs, diagonal included, so identical sets give 0 (to float32
    round-off) and the value is ≥ 0.
    """
    x2, y2 = _pair(x, y)
    n, m = x2.shape[0], y2.shape[0]
    exy = _pairwise_sum(x2, y2, ops.sqrt) / (n * m)
    exx = _pairwise_sum(x2, x2, ops.sqrt) / n**2
    eyy = _pairwise_sum(y2, y2, ops.sqrt) / m**2
    return max(2.0 * exy - exx - eyy, 0.0)


def frechet_distance(
    mu1: Any,
    cov1: Any,
    mu2: Any,
    cov2: Any,
    *,
    method: str = "eigh",
    eps: float = FID_SQRTM_EPS,
) -> float:
    """Fréchet distance of two Gaussians, ‖μ₁−μ₂‖² + tr(C₁ + C₂ − 2(C₁C₂)^½), on the host.

    The moments (tensors or arrays) go to NumPy float64 and `reference.metrics.frechet_distance`
    takes tr (C₁C₂)^½: by eigendecompositions (method="eigh"), or by pytorch-fid's sqrtm with its
    ε retry and imaginary-part check (method="sqrtm", the standard FID).
    """
    moments = [np.asarray(ops.convert_to_numpy(v), np.float64) for v in (mu1, cov1, mu2, cov2)]
    return reference_metrics.frechet_distance(*moments, method=method, eps=eps)


def _moments(x: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Sample mean and unbiased covariance of x (n, d), computed on the backend."""
    mean = ops.mean(x, axis=0)
    centred = x - mean
    cov = ops.matmul(ops.transpose(centred), centred) / (x.shape[0] - 1)
    return ops.convert_to_numpy(mean), ops.convert_to_numpy(cov)


def frechet_distance_from_samples(x: Any, y: Any) -> float:
    """Fréchet distance between Gaussians fitted to x and y (sample mean, unbiased covariance)."""
    x2, y2 = _pair(x, y, min_size=2)
    return frechet_distance(*_moments(x2), *_moments(y2))


def _cubic_kernel(inner: Tensor, d: int) -> Tensor:
    """KID's kernel (inner / d + 1)³ from inner products, as two multiplications (fast pow)."""
    base = inner / d + 1.0
    return base * base * base


def polynomial_mmd(x: Any, y: Any) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(a, b) = (aᵀb / d + 1)³ (no subsets)."""
    x2, y2 = _pair(x, y, min_size=2)
    d, n, m = x2.shape[1], x2.shape[0], y2.shape[0]

    def total(a: Tensor, b: Tensor) -> float:
        """Sum of k over all pairs of rows (a_i, b_j): row chunks, row sums on the host."""
        step = _rows_per_chunk(b.shape[0])
        return sum(
            _host_sum(
                ops.sum(_cubic_kernel(ops.matmul(a[i : i + step], ops.transpose(b)), d), axis=1)
            )
            for i in range(0, a.shape[0], step)
        )

    def diagonal(a: Tensor) -> float:
        """Sum of k(a_i, a_i)."""
        return _host_sum(_cubic_kernel(ops.sum(ops.square(a), axis=1), d))

    kxx = (total(x2, x2) - diagonal(x2)) / (n * (n - 1))
    kyy = (total(y2, y2) - diagonal(y2)) / (m * (m - 1))
    return kxx + kyy - 2.0 * total(x2, y2) / (n * m)


def _batched_polynomial_mmd(xs: Tensor, ys: Tensor) -> np.ndarray:
    """Cubic-kernel MMD²_u of B pairs of sets at once: xs (B, n, d), ys (B, m, d) -> (B,)."""
    d, n, m = xs.shape[2], xs.shape[1], ys.shape[1]

    def total(a: Tensor, b: Tensor) -> np.ndarray:
        """Per batch entry: sum of k over all pairs of rows, finished on the host in float64."""
        k = _cubic_kernel(ops.matmul(a, ops.transpose(b, (0, 2, 1))), d)
        return np.sum(np.asarray(ops.convert_to_numpy(ops.sum(k, axis=2)), np.float64), axis=1)

    def diagonal(a: Tensor) -> np.ndarray:
        """Per batch entry: sum of k(a_i, a_i)."""
        k = _cubic_kernel(ops.sum(ops.square(a), axis=2), d)
        return np.sum(np.asarray(ops.convert_to_numpy(k), np.float64), axis=1)

    kxx = (total(xs, xs) - diagonal(xs)) / (n * (n - 1))
    kyy = (total(ys, ys) - diagonal(ys)) / (m * (m - 1))
    return kxx + kyy - 2.0 * total(xs, ys) / (n * m)


def kernel_inception_distance(
    x: Any,
    y: Any,
    seed: int | None = None,
    n_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    *,
    subsets: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> float:
    """KID (Bińkowski et al. 2018): mean over random subsets of the cubic-kernel MMD²_u.

    Each subset takes s = min(subset_size, n, m) rows of x and of y without replacement, drawn
    on the host from numpy.random.default_rng(seed) in the reference's order (choice(n, s), then
    choice(m, s), per subset); or ``subsets``, a list of (x indices, y indices) pairs.
    """
    x2, y2 = _pair(x, y, min_size=2)
    if subsets is None:
        if n_subsets < 1 or subset_size < 2:
            raise ValueError(
                f"need n_subsets >= 1 and subset_size >= 2, got {n_subsets} and {subset_size}"
            )
        rng = np.random.default_rng(seed)
        s = min(subset_size, x2.shape[0], y2.shape[0])
        subsets = []
        for _ in range(n_subsets):
            ix = rng.choice(x2.shape[0], s, replace=False)
            subsets.append((ix, rng.choice(y2.shape[0], s, replace=False)))
    if not subsets:
        raise ValueError("subsets must hold at least one pair of index arrays")
    sizes = {(len(ix), len(iy)) for ix, iy in subsets}
    s_x, s_y = next(iter(sizes))
    if len(sizes) > 1 or min(s_x, s_y) < 2 or max(s_x, s_y) ** 2 > CHUNK_ELEMENTS:
        values = [
            polynomial_mmd(
                ops.take(x2, np.asarray(ix, np.int32), axis=0),
                ops.take(y2, np.asarray(iy, np.int32), axis=0),
            )
            for ix, iy in subsets
        ]
    else:  # equal-size subsets: many at once, as batched matrix products
        ix_all = np.stack([np.asarray(ix, np.int32) for ix, _ in subsets])
        iy_all = np.stack([np.asarray(iy, np.int32) for _, iy in subsets])
        step = max(1, CHUNK_ELEMENTS // max(s_x, s_y) ** 2)
        values = np.concatenate(
            [
                _batched_polynomial_mmd(
                    ops.take(x2, ix_all[i : i + step], axis=0),
                    ops.take(y2, iy_all[i : i + step], axis=0),
                )
                for i in range(0, len(subsets), step)
            ]
        )
    return float(np.mean(values))


def noise_floor(
    metric_fn: Metric,
    sample_true: Sampler,
    n: int,
    n_pairs: int = 5,
    *,
    rng: np.random.Generator | int,
) -> tuple[float, float]:
    """Mean and std (ddof=1; 0 for one pair) of metric_fn between pairs of independent true draws.

    True data are drawn on the host: sample_true(rng, n) twice per pair, in the reference's
    order (an int ``rng`` seeds numpy.random.default_rng); metric_fn may run on the backend.
    """
    generator = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    return reference_metrics.noise_floor(metric_fn, sample_true, n, n_pairs, rng=generator)
