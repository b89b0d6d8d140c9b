"""Realism statistics: is a set of reconstructions distributed like the source?

* :func:`ks_gaussian` -- one-sample Kolmogorov-Smirnov test of all coordinates pooled against
  ``N(0, sigma^2)`` (exact for i.i.d. coordinates);
* :func:`projection_ks` -- the same on ``K`` random unit projections of each item (by Cramer-Wold, a
  vector is ``N(0, sigma^2 I)`` iff every projection is ``N(0, sigma^2)``), Bonferroni-combined;
* :func:`two_sample_test` -- a kernel two-sample test (Gretton, Borgwardt, Rasch, Schoelkopf & Smola,
  "A kernel two-sample test", JMLR 2012) between two sets of vectors with a permutation null:
  ``kernel="gaussian"`` gives the unbiased ``MMD^2`` with ``k(x, y) = exp(-|x - y|^2 / (2 h^2))``;
  ``kernel="energy"`` gives the energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` (Szekely &
  Rizzo, "Energy statistics", J. Stat. Plan. Inference 2013), the ``MMD^2`` of the distance kernel,
  free of a bandwidth.

All are numpy/scipy on the host; a p-value is the probability, under "same distribution", of a
statistic at least as large (permutation p-values are ``(1 + #{perm >= observed}) / (1 + P)``).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from jaxrec.core.errors import InvalidArgumentError

__all__ = ["KERNELS", "TestResult", "ks_gaussian", "median_bandwidth", "projection_ks", "two_sample_test"]

KERNELS = ("gaussian", "energy")


class TestResult(NamedTuple):
    """A test statistic and its p-value (small p: the reconstructions are detectably unrealistic)."""

    statistic: float
    pvalue: float


def _matrix(name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 2 or not np.all(np.isfinite(arr)):
        raise InvalidArgumentError(f"{name} must be a finite (N, D) array with N >= 2, got shape {arr.shape}")
    return arr


def _sigma(sigma: Any) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not (math.isfinite(sigma) and sigma > 0):
        raise InvalidArgumentError(f"sigma must be a finite number > 0, got {sigma!r}")
    return float(sigma)


def ks_gaussian(samples: Any, sigma: float = 1.0) -> TestResult:
    """KS test of every coordinate of ``samples`` (any shape, pooled) against ``N(0, sigma^2)``."""
    flat = np.asarray(samples, dtype=np.float64).reshape(-1)
    if flat.size < 2 or not np.all(np.isfinite(flat)):
        raise InvalidArgumentError(f"samples must hold at least 2 finite values, got shape {np.shape(samples)}")
    res = stats.kstest(flat, stats.norm(scale=_sigma(sigma)).cdf)
    return TestResult(float(res.statistic), float(res.pvalue))


def projection_ks(samples: Any, sigma: float = 1.0, *, num_projections: int = 16, seed: int = 0) -> TestResult:
    """KS tests of ``samples @ u_j`` against ``N(0, sigma^2)`` for ``num_projections`` random unit ``u_j``.

    Args:
      samples: ``(N, D)``, one item per row (e.g. a block of coordinates).
      sigma, num_projections, seed: the source scale; the number of directions and their numpy seed.

    Returns:
      The largest KS statistic and the Bonferroni p-value ``min(1, K min_j p_j)``.
    """
    x = _matrix("samples", samples)
    if isinstance(num_projections, bool) or not isinstance(num_projections, int) or num_projections < 1:
        raise InvalidArgumentError(f"num_projections must be a positive int, got {num_projections!r}")
    directions = np.random.default_rng(seed).standard_normal((x.shape[1], num_projections))
    directions /= np.linalg.norm(directions, axis=0, keepdims=True)
    cdf = stats.norm(scale=_sigma(sigma)).cdf
    results = [stats.kstest(column, cdf) for column in (x @ directions).T]
    worst = min(float(r.pvalue) for r in results)
    return TestResult(max(float(r.statistic) for r in results), min(1.0, num_projections * worst))


def median_bandwidth(reference: Any) -> float:
    """The median pairwise Euclidean distance within ``reference`` ``(N, D)`` (the median heuristic)."""
    x = _matrix("reference", reference)
    dist = np.sqrt(_squared_distances(x, x))
    return float(np.median(dist[np.triu_indices(x.shape[0], k=1)]))


def _squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    sq = np.sum(x * x, axis=1)[:, None] + np.sum(y * y, axis=1)[None, :] - 2.0 * x @ y.T
    return np.maximum(sq, 0.0)


def two_sample_test(
    x: Any,
    y: Any,
    *,
    kernel: str = "gaussian",
    bandwidth: float | None = None,
    num_permutations: int = 200,
    seed: int = 0,
) -> TestResult:
    """Kernel two-sample test of ``x`` ``(N, D)`` against ``y`` ``(M, D)`` with a permutation null.

    Args:
      x, y: the two samples (independent of each other: compare reconstructions with *other*
        originals, not with their own).
      kernel: ``"gaussian"`` (unbiased ``MMD^2``; ``bandwidth`` ``h`` required -- fix it from
        reference data, e.g. :func:`median_bandwidth`, so statistics are comparable) or ``"energy"``
        (the energy distance; no bandwidth).
      num_permutations, seed: the permutation null and its numpy seed.

    Returns:
      :class:`TestResult`: the statistic (``MMD^2`` or energy distance, unbiased) and the permutation
      p-value. Work and memory ``O((N + M)^2 (D + P))``.
    """
    x, y = _matrix("x", x), _matrix("y", y)
    if x.shape[1] != y.shape[1]:
        raise InvalidArgumentError(f"x and y must have the same dimension, got {x.shape} and {y.shape}")
    if kernel not in KERNELS:
        raise InvalidArgumentError(f"kernel must be one of {KERNELS}, got {kernel!r}")
    if isinstance(num_permutations, bool) or not isinstance(num_permutations, int) or num_permutations < 1:
        raise InvalidArgumentError(f"num_permutations must be a positive int, got {num_permutations!r}")
    pooled = np.concatenate([x, y])
    sq = _squared_distances(pooled, pooled)
    if kernel == "gaussian":
        if bandwidth is None or not (math.isfinite(bandwidth) and bandwidth > 0):
            raise InvalidArgumentError(f"kernel 'gaussian' needs a finite bandwidth > 0, got {bandwidth!r}")
        gram = np.exp(-sq / (2.0 * bandwidth**2))
    else:
        gram = -np.sqrt(sq)  # the distance kernel: MMD^2 of -|x - y| is the energy distance
    np.fill_diagonal(gram, 0.0)
    n, m = x.shape[0], y.shape[0]
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_permutations + 1, n + m))
    masks[0, :n] = 1.0
    for row in masks[1:]:
        row[rng.permutation(n + m)[:n]] = 1.0
    in_x = masks @ gram  # (P + 1, N + M): row sums of the gram matrix over the x-side of each split
    xx = np.sum(in_x * masks, axis=1)
    xy = np.sum(in_x * (1.0 - masks), axis=1)
    yy = gram.sum() - 2.0 * xy - xx
    statistic = xx / (n * (n - 1)) + yy / (m * (m - 1)) - 2.0 * xy / (n * m)
    pvalue = (1.0 + np.sum(statistic[1:] >= statistic[0])) / (1.0 + num_permutations)
    return TestResult(float(statistic[0]), float(pvalue))
