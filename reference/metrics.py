"""Sample-based distances: sliced Wasserstein, MMD, energy, Fréchet and kernel (KID) distances.

Every distance takes two sample sets x (n, *dims) and y (m, *dims) (flattened to (n, d) and
(m, d); a 1-D array is read as n scalars) and returns a Python float. Sample-set distances are
noisy: report them beside `noise_floor`, the same figure between independent draws of the true
data. Pairwise computations are chunked so memory stays bounded for large n.
`frechet_distance(..., method="sqrtm")` is pytorch-fid's formula (the standard FID), and
`FeatureMoments` accumulates the mean and covariance it takes in one streaming pass.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.spatial.distance

CHUNK_ELEMENTS = 2**22
"""Upper bound on the entries of a temporary (rows x columns) block (~32 MB of float64)."""

MEDIAN_MAX_POINTS = 4000
"""Largest pooled sample used by the median-distance bandwidth heuristic."""

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
"""KID defaults of Bińkowski et al. (2018) and common FID/KID tools: 100 subsets of 1 000."""
KID_DEGREE = 3
"""Degree of KID's polynomial kernel k(a, b) = (aᵀb / d + 1)³."""

FID_SQRTM_EPS = 1e-6
"""pytorch-fid's diagonal offset ε for a product of covariances whose sqrtm is not finite."""
SQRTM_IMAGINARY_ATOL = 1e-3
"""pytorch-fid's bound on the imaginary part of sqrtm(C₁C₂)'s diagonal (round-off above it is
an error)."""

Metric = Callable[[np.ndarray, np.ndarray], float]
Sampler = Callable[[np.random.Generator, int], np.ndarray]


def _as_2d(x: np.ndarray) -> np.ndarray:
    """Flatten a sample set to float64 (n, d); a 1-D array becomes (n, 1)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        return x[:, None]
    return x.reshape(x.shape[0], -1)


def _pair(x: np.ndarray, y: np.ndarray, min_size: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate two sample sets: same feature dimension, at least `min_size` rows each."""
    x2, y2 = _as_2d(x), _as_2d(y)
    if x2.shape[1] != y2.shape[1]:
        raise ValueError(f"sample sets differ in dimension: {x2.shape[1]} vs {y2.shape[1]}")
    if min(len(x2), len(y2)) < min_size:
        raise ValueError(f"each sample set needs at least {min_size} points")
    return x2, y2


def _rows_per_chunk(n_columns: int) -> int:
    """Number of rows of a (rows, n_columns) temporary that fit in CHUNK_ELEMENTS."""
    return max(1, CHUNK_ELEMENTS // max(1, n_columns))


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between rows of a (n, d) and b (m, d), from differences."""
    return scipy.spatial.distance.cdist(a, b, "sqeuclidean")


def _pairwise_sum(a: np.ndarray, b: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> float:
    """Sum of fn(squared distance) over all pairs (a_i, b_j), computed in row chunks."""
    step = _rows_per_chunk(len(b))
    return float(sum(np.sum(fn(_sq_dists(a[i : i + step], b))) for i in range(0, len(a), step)))


def _empirical_w1(xp: np.ndarray, yp: np.ndarray) -> np.ndarray:
    """Exact W1 between the columns of xp (n, P) and yp (m, P) as 1-D empirical laws.

    W1 = ∫₀¹ |F⁻¹(u) − G⁻¹(u)| du; both quantile functions are step functions, constant between
    consecutive points of the merged grid {i/n} ∪ {j/m}, so the integral is an exact finite sum.
    """
    n, m = len(xp), len(yp)
    xs, ys = np.sort(xp, axis=0), np.sort(yp, axis=0)
    if n == m:
        return np.mean(np.abs(xs - ys), axis=0)
    grid = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    widths = np.diff(grid, prepend=0.0)
    mid = grid - widths / 2
    ix = np.minimum(np.floor(mid * n).astype(int), n - 1)
    iy = np.minimum(np.floor(mid * m).astype(int), m - 1)
    return widths @ np.abs(xs[ix] - ys[iy])


def sliced_wasserstein(
    x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n_projections: int = 200
) -> float:
    """Sliced Wasserstein-1: mean over random unit directions θ of W1(θᵀx, θᵀy).

    Directions are drawn as rng.standard_normal((n_projections, d)) and normalised. Each 1-D W1
    is exact for the empirical laws, for equal or unequal sizes (through the quantile
    functions). In one dimension θ = ±1, so the result is the plain W1.
    """
    x2, y2 = _pair(x, y)
    if n_projections < 1:
        raise ValueError(f"n_projections must be positive, got {n_projections}")
    theta = rng.standard_normal((n_projections, x2.shape[1]))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    step = _rows_per_chunk(len(x2) + len(y2))
    w1 = [
        _empirical_w1(x2 @ theta[i : i + step].T, y2 @ theta[i : i + step].T)
        for i in range(0, n_projections, step)
    ]
    return float(np.mean(np.concatenate(w1)))


def median_bandwidth(x: np.ndarray, y: np.ndarray) -> float:
    """Median heuristic: the median Euclidean distance between distinct points of x ∪ y.

    Above MEDIAN_MAX_POINTS pooled points, an evenly strided subset is used (no randomness).
    """
    z = np.concatenate(_pair(x, y))
    if len(z) > MEDIAN_MAX_POINTS:
        z = z[np.linspace(0, len(z) - 1, MEDIAN_MAX_POINTS).astype(int)]
    return float(np.median(scipy.spatial.distance.pdist(z)))


def mmd_rbf(x: np.ndarray, y: np.ndarray, bandwidth: float | None = None) -> float:
    """Unbiased MMD² with the RBF kernel k(a, b) = exp(−‖a − b‖² / (2 h²)).

    MMD²_u = Σ_{i≠j} k(xᵢ, xⱼ)/(n(n−1)) + Σ_{i≠j} k(yᵢ, yⱼ)/(m(m−1)) − 2 Σ k(xᵢ, yⱼ)/(nm)
    (Gretton et al. 2012, eq. 3); it can be slightly negative. h = `median_bandwidth` when None.
    """
    x2, y2 = _pair(x, y, min_size=2)
    h = median_bandwidth(x2, y2) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be positive, got {h}")

    def kernel(d2: np.ndarray) -> np.ndarray:
        """RBF kernel as a function of the squared distance."""
        return np.exp(-d2 / (2.0 * h**2))

    n, m = len(x2), len(y2)
    kxx = (_pairwise_sum(x2, x2, kernel) - n) / (n * (n - 1))  # k(x, x) = 1 on the diagonal
    kyy = (_pairwise_sum(y2, y2, kernel) - m) / (m * (m - 1))
    kxy = _pairwise_sum(x2, y2, kernel) / (n * m)
    return kxx + kyy - 2.0 * kxy


def energy_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Energy distance 2E‖X − Y‖ − E‖X − X'‖ − E‖Y − Y'‖ (Székely & Rizzo), V-statistic form.

    Averages run over all pairs, diagonal included, so identical sets give exactly 0 and the
    value is ≥ 0. This is the square of what scipy.stats.energy_distance returns in 1-D.
    """
    x2, y2 = _pair(x, y)
    n, m = len(x2), len(y2)
    exy = _pairwise_sum(x2, y2, np.sqrt) / (n * m)
    exx = _pairwise_sum(x2, x2, np.sqrt) / n**2
    eyy = _pairwise_sum(y2, y2, np.sqrt) / m**2
    return max(2.0 * exy - exx - eyy, 0.0)


def _psd_eigenvalues_above_rank_tolerance(w: np.ndarray) -> np.ndarray:
    """Eigenvalues of a symmetric PSD matrix, zero below NumPy's matrix_rank tolerance.

    Round-off leaves eigenvalues of order eps·‖C‖ on a singular matrix's null space; their square
    roots, of order √eps, would bias a trace of square roots by ~1e-8 relative.
    """
    tolerance = np.max(np.abs(w)) * len(w) * np.finfo(np.float64).eps
    return np.where(w > tolerance, w, 0.0)


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix."""
    w, u = np.linalg.eigh(c)
    return (u * np.sqrt(_psd_eigenvalues_above_rank_tolerance(w))) @ u.T


def _trace_sqrt_eigh(cov1: np.ndarray, cov2: np.ndarray, eps: float) -> float:
    """tr (C₁C₂)^½ as Σ √λ of the symmetric C₁^½ C₂ C₁^½ (same eigenvalues); eps is unused."""
    root1 = _psd_sqrt(cov1)
    inner = root1 @ cov2 @ root1
    eigenvalues = np.linalg.eigvalsh(0.5 * (inner + inner.T))
    return float(np.sum(np.sqrt(_psd_eigenvalues_above_rank_tolerance(eigenvalues))))


def _trace_sqrt_sqrtm(cov1: np.ndarray, cov2: np.ndarray, eps: float) -> float:
    """tr sqrtm(C₁C₂) as pytorch-fid's calculate_frechet_distance takes it.

    ``scipy.linalg.sqrtm`` of the product; if that is not finite, of (C₁ + εI)(C₂ + εI) instead;
    a complex result keeps its real part unless an imaginary part on its diagonal exceeds
    SQRTM_IMAGINARY_ATOL (then ValueError).
    """
    covmean = scipy.linalg.sqrtm(cov1 @ cov2)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(len(cov1)) * eps
        covmean = scipy.linalg.sqrtm((cov1 + offset) @ (cov2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0.0, atol=SQRTM_IMAGINARY_ATOL):
            imaginary = np.max(np.abs(np.diagonal(covmean).imag))
            raise ValueError(
                f"sqrtm(C1 C2) has an imaginary component of {imaginary:.3g} on its diagonal: "
                "a covariance is not positive semi-definite"
            )
        covmean = covmean.real
    return float(np.trace(covmean))


FRECHET_TRACE_SQRT = {"eigh": _trace_sqrt_eigh, "sqrtm": _trace_sqrt_sqrtm}
"""How `frechet_distance` takes tr (C₁C₂)^½: by eigenvalues, or by sqrtm as pytorch-fid does."""


def frechet_distance(
    mu1: np.ndarray,
    cov1: np.ndarray,
    mu2: np.ndarray,
    cov2: np.ndarray,
    *,
    method: str = "eigh",
    eps: float = FID_SQRTM_EPS,
) -> float:
    """Fréchet (2-Wasserstein²) distance of two Gaussians: ‖μ₁−μ₂‖² + tr(C₁ + C₂ − 2(C₁C₂)^½).

    method="eigh": tr (C₁C₂)^½ as Σ √λ of the symmetric C₁^½ C₂ C₁^½ (same eigenvalues), which
    stays real and exact for the singular covariances of few samples in many feature dimensions.
    method="sqrtm": pytorch-fid's ``calculate_frechet_distance`` (the standard FID), whose
    ``sqrtm(C₁C₂)`` retries with C + eps·I when not finite and drops an imaginary round-off; the
    two agree to ~1e-7 relative on full-rank covariances. Everything in float64.
    """
    if method not in FRECHET_TRACE_SQRT:
        raise ValueError(f"method must be one of {sorted(FRECHET_TRACE_SQRT)}, got {method!r}")
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != mu1.shape * 2:
        raise ValueError("means must have shape (d,) and covariances (d, d), equal for both")
    trace_covmean = FRECHET_TRACE_SQRT[method](cov1, cov2, eps)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_covmean)


def frechet_distance_from_samples(x: np.ndarray, y: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to x and y (sample mean, unbiased covariance)."""
    x2, y2 = _pair(x, y, min_size=2)
    return frechet_distance(
        x2.mean(axis=0),
        np.cov(x2, rowvar=False).reshape(x2.shape[1], -1),
        y2.mean(axis=0),
        np.cov(y2, rowvar=False).reshape(y2.shape[1], -1),
    )


class FeatureMoments:
    """Mean and covariance (ddof 1, as ``np.cov``) of feature rows seen in batches, in one pass.

    Float64 sums of the rows and of their outer products, Σ xᵢ and Σ xᵢxᵢᵀ, so memory is
    O(d²) whatever the number of rows; rows are shifted by the first batch's mean before they are
    summed, which keeps C = (Σ xxᵀ − n x̄x̄ᵀ) / (n − 1) free of cancellation when the mean is large.
    Σ xxᵀ is BLAS's symmetric rank-k update (upper triangle, in place): a batch of 50 rows of 2048
    costs one pass over the d² sums instead of three (product, temporary, sum).
    """

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim, self.count = int(dim), 0
        self._shift: np.ndarray | None = None
        self._sum = np.zeros(self.dim)
        self._outer_upper = np.zeros((self.dim, self.dim), order="F")  # dsyrk updates it in place

    def update(self, features: np.ndarray) -> None:
        """Add a batch of rows (b, dim)."""
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must have shape (b, {self.dim}), got {x.shape}")
        if len(x) == 0:
            return
        if self._shift is None:
            self._shift = x.mean(axis=0)
        x = x - self._shift
        self.count += len(x)
        self._sum += x.sum(axis=0)
        self._outer_upper = scipy.linalg.blas.dsyrk(
            1.0, x, beta=1.0, c=self._outer_upper, trans=1, overwrite_c=True
        )

    def mean(self) -> np.ndarray:
        """x̄ (dim,)."""
        if self.count < 1:
            raise ValueError("no features were added")
        return self._shift + self._sum / self.count

    def covariance(self) -> np.ndarray:
        """C = Σ (xᵢ − x̄)(xᵢ − x̄)ᵀ / (n − 1) (dim, dim), as np.cov(x, rowvar=False)."""
        if self.count < 2:
            raise ValueError(f"a covariance needs at least 2 feature rows, got {self.count}")
        outer = np.triu(self._outer_upper) + np.triu(self._outer_upper, 1).T
        centred_sum = self._sum / self.count
        return (outer - self.count * np.outer(centred_sum, centred_sum)) / (self.count - 1)


def polynomial_mmd(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(a, b) = (aᵀb / d + 1)³ (no subsets).

    MMD²_u = Σ_{i≠j} k(xᵢ, xⱼ)/(n(n−1)) + Σ_{i≠j} k(yᵢ, yⱼ)/(m(m−1)) − 2 Σ k(xᵢ, yⱼ)/(nm).
    """
    x2, y2 = _pair(x, y, min_size=2)
    d, n, m = x2.shape[1], len(x2), len(y2)

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Polynomial kernel matrix between the rows of a and b."""
        return (a @ b.T / d + 1.0) ** KID_DEGREE

    def total(a: np.ndarray, b: np.ndarray) -> float:
        """Sum of k over all pairs of rows (a_i, b_j), computed in row chunks."""
        step = _rows_per_chunk(len(b))
        return float(sum(np.sum(kernel(a[i : i + step], b)) for i in range(0, len(a), step)))

    def diagonal(a: np.ndarray) -> float:
        """Sum of k(a_i, a_i)."""
        return float(np.sum((np.sum(a * a, axis=1) / d + 1.0) ** KID_DEGREE))

    kxx = (total(x2, x2) - diagonal(x2)) / (n * (n - 1))
    kyy = (total(y2, y2) - diagonal(y2)) / (m * (m - 1))
    return kxx + kyy - 2.0 * total(x2, y2) / (n * m)


def kernel_inception_distance(
    x: np.ndarray,
    y: np.ndarray,
    rng: np.random.Generator,
    n_subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
) -> float:
    """KID (Bińkowski et al. 2018): mean over random subsets of the cubic-kernel MMD²_u.

    Each subset takes s = min(subset_size, n, m) rows of x and s rows of y without replacement;
    draw order per subset: rng.choice(n, s, replace=False), then rng.choice(m, s, replace=False).
    Usually computed on features (Inception pool features; the digits classifier for 8×8 data).
    Unbiased, so identical laws give ≈ 0 and the value can be slightly negative.
    """
    x2, y2 = _pair(x, y, min_size=2)
    if n_subsets < 1 or subset_size < 2:
        raise ValueError(
            f"need n_subsets >= 1 and subset_size >= 2, got {n_subsets} and {subset_size}"
        )
    s = min(subset_size, len(x2), len(y2))
    values = []
    for _ in range(n_subsets):
        ix = rng.choice(len(x2), s, replace=False)
        iy = rng.choice(len(y2), s, replace=False)
        values.append(polynomial_mmd(x2[ix], y2[iy]))
    return float(np.mean(values))


def noise_floor(
    metric_fn: Metric,
    sample_true: Sampler,
    n: int,
    n_pairs: int = 5,
    *,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Mean and std (ddof=1; 0 for one pair) of metric_fn between pairs of independent true draws.

    Draw order per pair: x = sample_true(rng, n), then y = sample_true(rng, n).
    """
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be positive, got {n_pairs}")
    values = np.array([metric_fn(sample_true(rng, n), sample_true(rng, n)) for _ in range(n_pairs)])
    std = float(values.std(ddof=1)) if n_pairs > 1 else 0.0
    return float(values.mean()), std


def compare_to_reference(
    samples: np.ndarray,
    sample_true: Sampler,
    rng: np.random.Generator,
    n_pairs: int = 5,
    n_projections: int = 200,
) -> dict[str, dict[str, float]]:
    """SW1, MMD² and energy distance of samples vs fresh true draws, each beside its noise floor.

    Returns {metric: {"value", "floor_mean", "floor_std"}}. Draw order: the reference set
    sample_true(rng, len(samples)); then per metric (sliced_wasserstein, mmd_rbf,
    energy_distance) the SW projections for the value, then `noise_floor`'s draws (each SW
    evaluation inside the floor draws its projections after its pair).
    """
    n = len(samples)
    reference = sample_true(rng, n)

    def sw(a: np.ndarray, b: np.ndarray) -> float:
        """Sliced Wasserstein with this call's generator."""
        return sliced_wasserstein(a, b, rng, n_projections)

    report = {}
    for name, fn in (("sliced_wasserstein", sw), ("mmd_rbf", mmd_rbf), ("energy", energy_distance)):
        value = fn(samples, reference)
        floor_mean, floor_std = noise_floor(fn, sample_true, n, n_pairs, rng=rng)
        report[name] = {"value": value, "floor_mean": floor_mean, "floor_std": floor_std}
    return report
