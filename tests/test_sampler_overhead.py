"""The interval benchmarks/sampler_overhead.py gives for each median overhead."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from scipy.stats import binom

sampler_overhead = importlib.import_module("benchmarks.sampler_overhead")


def coverage(j: int, n: int) -> float:
    """P(x_(j) <= median <= x_(n+1-j)) for n draws of a continuous distribution."""
    return 1.0 - 2.0 * binom.cdf(j - 1, n, 0.5)


@pytest.mark.parametrize("n", range(6, 41))
def test_the_median_interval_is_the_narrowest_with_95_percent_coverage(n: int) -> None:
    """x_(j), x_(n+1-j): coverage >= 95 %, and the next narrower pair falls below it."""
    values = list(np.random.default_rng(n).permutation(np.arange(1.0, n + 1)))
    low, high = sampler_overhead.median_interval(values)
    j = int(low)
    assert high == n + 1 - j
    assert coverage(j, n) >= 0.95 > coverage(j + 1, n)


def test_few_rounds_give_their_extremes() -> None:
    """Below 6 rounds no pair reaches 95 %: the lowest and the highest (21 rounds: 6th, 16th)."""
    assert sampler_overhead.median_interval([1.3, 0.9, 1.1]) == [0.9, 1.3]
    assert sampler_overhead.median_interval([1.0, 1.2, 0.8, 1.1, 0.9, 1.05, 1.15]) == [0.8, 1.2]
    assert sampler_overhead.median_interval(list(range(21, 0, -1))) == [6, 16]
