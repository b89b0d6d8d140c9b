"""Entropy-coded uniform scalar quantization of a Gaussian source, with three decoders (the baselines).

Each coordinate of ``X ~ N(0, sigma^2)`` is mapped to the cell ``k = clip(round(x / step), -K, K)`` of a
midtread uniform quantizer (cells ``[(k - 1/2) step, (k + 1/2) step)``, the two outer cells reaching to
``+-inf``, ``K = ceil(range_sigmas sigma / step - 1/2)``), and the cell indices are range-coded under
their exact probabilities ``P_k`` (constriction, :class:`jaxrec.entropy.CategoricalModel`), so the rate
per coordinate is the entropy ``H = -sum_k P_k log2 P_k`` plus the coder's few bytes.  No common
randomness is used.  The decoders:

* ``"centroid"``: ``Xh = E[X | cell]`` -- the best MSE for these cells, ``D = sum_k P_k Var(X | k)``
  (entropy-coded scalar quantization, ECSQ; within 1.53 dB / 0.25 bit of Shannon's ``D(R)`` at high
  rate, Gish & Pierce, IEEE Trans. IT 1968), but ``Xh`` is discrete: no realism;
* ``"sample"``: ``Xh ~ N(0, sigma^2)`` restricted to the cell, drawn with the decoder's private
  randomness (posterior sampling).  ``Xh`` and ``X`` are independent given the cell with the same law,
  so ``Xh ~ N(0, sigma^2)`` exactly (perfect realism, for the whole block since coordinates are
  independent) and ``D = 2 sum_k P_k Var(X | k)``, twice the centroid decoder's.  It is a scheme
  without common randomness, so it lies above ``2 sigma^2 2^{-2H}``
  (:func:`~jaxrec.models.realism.perfect_realism_distortion` with ``common_randomness=False``);
* ``"noise"``: ``Xh = E[X | cell] + N(0, tau^2)`` with ``tau^2 = sigma^2 - Var(E[X | cell]) =
  sum_k P_k Var(X | k)``: the variance of the source is restored, ``D = 2 sum_k P_k Var(X | k)`` as for
  ``"sample"``, but the law of ``Xh`` is a Gaussian mixture, not ``N(0, sigma^2)`` (a moment-matching
  decoder, realism only approximate).

Cell tables (``log P_k``, ``E[X | k]``, ``Var(X | k)``) are computed in float64 from ``log Phi`` with the
interval reflected to the lower tail, so masses stay accurate far out; draws inside a cell use
:func:`jaxrec.core.truncated.sample_interval`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import log_ndtr

from jaxrec.core.distributions import DiagGaussian
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.core.truncated import sample_interval
from jaxrec.entropy import CategoricalModel, decode_indices, encode_indices

Array = jax.Array

__all__ = ["DECODERS", "MAX_CELLS", "ScalarQuantizer"]

DECODERS = ("centroid", "sample", "noise")
MAX_CELLS = 2**16
"""The most cells a quantizer may have (the categorical entropy model's alphabet limit)."""
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _log1mexp(x: np.ndarray) -> np.ndarray:
    """``log(1 - exp(x))`` for ``x <= 0`` (Maechler 2012)."""
    with np.errstate(divide="ignore"):
        return np.where(x > -math.log(2.0), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _log_interval_mass(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``log(Phi(b) - Phi(a))`` for standard-normal edges ``a < b`` (``+-inf`` allowed), reflected so the
    interval's centre is ``<= 0`` and both ``log Phi`` are far from 1."""
    flip = (a + b) > 0
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    log_lo, log_hi = log_ndtr(lo), log_ndtr(hi)
    return log_hi + _log1mexp(np.minimum(log_lo - log_hi, 0.0))


def _log_phi(z: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.where(np.isinf(z), -np.inf, -0.5 * z * z - _HALF_LOG_2PI)


@dataclasses.dataclass(frozen=True)
class ScalarQuantizer:
    """A midtread uniform scalar quantizer for ``N(0, sigma^2)`` coordinates (see the module docstring).

    Args:
      step: the cell width.
      sigma: the source's standard deviation.
      range_sigmas: inner cells cover ``+-range_sigmas sigma``; the two outer cells extend to infinity.

    Attributes (float64 tables over the ``2K + 1`` cells, index ``k + K``):
      log_probs: ``log P_k``.
      centroids: ``E[X | k]``.
      variances: ``Var(X | k)``.
    """

    step: float
    sigma: float = 1.0
    range_sigmas: float = 10.0
    log_probs: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    centroids: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)
    variances: np.ndarray = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("step", "sigma", "range_sigmas"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise InvalidArgumentError(f"{name} must be a finite number > 0, got {value!r}")
        half = max(0, math.ceil(self.range_sigmas * self.sigma / self.step - 0.5))
        if 2 * half + 1 > MAX_CELLS:
            raise InvalidArgumentError(
                f"step={self.step} gives {2 * half + 1} cells over +-{self.range_sigmas} sigma, more than {MAX_CELLS}"
            )
        k = np.arange(-half, half + 1, dtype=np.float64)
        a = np.where(k == -half, -np.inf, (k - 0.5) * self.step / self.sigma)  # standardized edges
        b = np.where(k == half, np.inf, (k + 0.5) * self.step / self.sigma)
        log_p = _log_interval_mass(a, b)
        phi_a, phi_b = np.exp(_log_phi(a) - log_p), np.exp(_log_phi(b) - log_p)  # phi(edge) / P_k
        mean = phi_a - phi_b
        with np.errstate(invalid="ignore"):
            tail = np.where(np.isinf(a), 0.0, a * phi_a) - np.where(np.isinf(b), 0.0, b * phi_b)
        var = np.maximum(1.0 + tail - mean * mean, 0.0)
        object.__setattr__(self, "log_probs", log_p)
        object.__setattr__(self, "centroids", self.sigma * mean)
        object.__setattr__(self, "variances", self.sigma**2 * var)

    # -- tables and closed forms ----------------------------------------------------------------

    @property
    def num_cells(self) -> int:
        """``2K + 1``."""
        return int(self.log_probs.size)

    @property
    def half_cells(self) -> int:
        """``K``: cell indices run over ``-K..K`` (stored as ``0..2K``)."""
        return self.num_cells // 2

    def entropy_bits(self) -> float:
        """``H = -sum_k P_k log2 P_k``: the ideal rate per coordinate."""
        p = np.exp(self.log_probs)
        return float(-np.sum(p * self.log_probs) / math.log(2.0))

    def mse(self, decoder: str) -> float:
        """Expected squared error per coordinate of a decoder (:data:`DECODERS`)."""
        _check_decoder(decoder)
        within = float(np.sum(np.exp(self.log_probs) * self.variances))
        return within if decoder == "centroid" else 2.0 * within

    @classmethod
    def at_rate(cls, rate_bits: float, sigma: float = 1.0, range_sigmas: float = 10.0) -> ScalarQuantizer:
        """The quantizer whose entropy is ``rate_bits`` per coordinate (bisection on ``log step``)."""
        if not (isinstance(rate_bits, (int, float)) and 0 < rate_bits < math.log2(MAX_CELLS) - 1):
            raise InvalidArgumentError(f"rate_bits must lie in (0, {math.log2(MAX_CELLS) - 1}), got {rate_bits!r}")
        lo, hi = math.log(sigma * 2.0 * range_sigmas / (MAX_CELLS - 1)), math.log(sigma * 2.0 * range_sigmas)
        for _ in range(80):  # the entropy falls as the step grows
            mid = 0.5 * (lo + hi)
            if cls(math.exp(mid), sigma, range_sigmas).entropy_bits() > rate_bits:
                lo = mid
            else:
                hi = mid
        return cls(math.exp(0.5 * (lo + hi)), sigma, range_sigmas)

    # -- encoder and decoders -------------------------------------------------------------------

    def quantize(self, x: Any) -> np.ndarray:
        """Cell indices ``k + K`` in ``[0, 2K]`` of the coordinates ``x`` (any shape), int64."""
        x = np.asarray(x, dtype=np.float64)
        if not np.all(np.isfinite(x)):
            raise InvalidArgumentError("x must be finite")
        k = np.clip(np.rint(x / self.step), -self.half_cells, self.half_cells)
        return k.astype(np.int64) + self.half_cells

    def reconstruct(self, cells: Any, decoder: str, key: Array | None = None) -> np.ndarray:
        """``Xh`` for cell indices ``cells`` (any shape, from :meth:`quantize`), float32 numpy.

        ``"sample"`` and ``"noise"`` need ``key``: the decoder's private randomness.
        """
        _check_decoder(decoder)
        cells = self._check_cells(cells)
        centroids = self.centroids[cells]
        if decoder == "centroid":
            return centroids.astype(np.float32)
        if key is None:
            raise InvalidArgumentError(f"decoder {decoder!r} needs a key (the decoder's private randomness)")
        if decoder == "noise":
            tau = math.sqrt(self.mse("centroid"))
            noise = tau * jax.random.normal(key, cells.shape, jnp.float32)
            return (centroids + np.asarray(noise, np.float64)).astype(np.float32)
        k = (cells - self.half_cells).astype(np.float64)
        lo = np.where(cells == 0, -np.inf, (k - 0.5) * self.step)
        hi = np.where(cells == self.num_cells - 1, np.inf, (k + 0.5) * self.step)
        source = DiagGaussian(jnp.zeros(1), jnp.full(1, self.sigma))
        column = lambda edges: jnp.asarray(edges.reshape(-1, 1), jnp.float32)
        draws = sample_interval(key, source, column(lo), column(hi))
        return np.asarray(draws, np.float32).reshape(cells.shape)

    def entropy_model(self) -> CategoricalModel:
        """The cells' exact probabilities as a :class:`jaxrec.entropy.CategoricalModel`."""
        return CategoricalModel(tuple(np.exp(self.log_probs - self.log_probs.max())))

    def encode(self, cells: Any) -> bytes:
        """Range-codes the cell indices (flattened, C order) under :meth:`entropy_model`."""
        return encode_indices(self._check_cells(cells).reshape(-1), self.entropy_model())

    def decode(self, data: bytes, count: int) -> np.ndarray:
        """The ``count`` cell indices of :meth:`encode`'s bytes, int64."""
        return decode_indices(data, self.entropy_model(), count)

    def _check_cells(self, cells: Any) -> np.ndarray:
        cells = np.asarray(cells)
        if not np.issubdtype(cells.dtype, np.integer) or cells.size and (cells.min() < 0 or cells.max() >= self.num_cells):
            raise InvalidArgumentError(f"cells must be ints in [0, {self.num_cells}), got {cells!r}")
        return cells.astype(np.int64)


def _check_decoder(decoder: str) -> None:
    if decoder not in DECODERS:
        raise InvalidArgumentError(f"decoder must be one of {DECODERS}, got {decoder!r}")
