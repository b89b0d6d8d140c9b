"""Entropy models for REC messages: frozen, hashable descriptions whose fields are what a file
header carries, coded to bytes through `constriction`_'s range coder (:mod:`jaxrec.entropy.streams`).

* :class:`ZipfModel` -- an unbounded index under ``p(n) ∝ (n + 1)^-alpha`` (PFR-type indices);
* :class:`UniformModel` -- an index uniform on ``[0, N)`` (fixed-budget coders);
* :class:`CategoricalModel` -- explicit probabilities over a small alphabet;
* :class:`PlanAlphabetModel` -- uniform per symbol over an alphabet the block plan gives
  (the bins of space-partitioning coders).

A model implements three private methods the streams use: ``_check(idx)`` (raise
:class:`~jaxrec.core.errors.InvalidArgumentError` for an index outside its support), ``_segments(idx)``
(the constriction symbols and models that encode ``idx``) and ``_decode(coder, count)``; and
``_ideal_bits(idx)``, the ideal codelength.

.. _constriction: https://bamler-lab.github.io/constriction/
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from typing import Any

import constriction
import numpy as np
import scipy.special

from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy.bits import zipf_bits

__all__ = [
    "CategoricalModel",
    "IndexModel",
    "PlanAlphabetModel",
    "UniformModel",
    "ZipfModel",
]

CHUNK_BITS = 16
"""Raw bits are sent in ``Uniform(2**c)`` chunks of ``c <= CHUNK_BITS`` bits."""
MAX_LENGTH_CLASS = 62
"""Largest bit-length class ``k = floor(log2(index + 1))`` a :class:`ZipfModel` codes."""
MAX_ZIPF_INDEX = 2**63 - 2
"""Largest index a :class:`ZipfModel` codes (``index + 1 < 2**63``)."""
MIN_ZIPF_ALPHA = 1.0 + 2.0**-30
"""Smallest Zipf exponent accepted (``zipf_exponent`` of a KL budget below ``2**30`` bits)."""
MAX_UNIFORM_SYMBOLS = 2**62
MAX_CATEGORICAL_SYMBOLS = 2**16

ZIPF_HEAD_BITS = 4
"""Bits below the leading one that :class:`ZipfModel` codes with the Zipf mass, not as raw bits."""

_RangeEncoder = constriction.stream.queue.RangeEncoder
_RangeDecoder = constriction.stream.queue.RangeDecoder
_cm = constriction.stream.model
_CHUNK_SLOTS = -(-(MAX_LENGTH_CLASS - ZIPF_HEAD_BITS) // CHUNK_BITS)  # raw-bit chunks of the longest class


# --------------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------------


def _as_indices(indices: Any) -> np.ndarray:
    """Flattened (C order) int64 copy of an integer array; shape ``(count,)``."""
    try:
        arr = np.asarray(indices)
    except (TypeError, ValueError) as err:  # ragged lists, tracers
        raise InvalidArgumentError(f"indices must be an integer array, got {indices!r}") from err
    if arr.size == 0:  # e.g. [] (float64): nothing to check
        return np.zeros(0, np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgumentError(f"indices must have an integer dtype, got {arr.dtype} ({np.asarray(arr.flat[0]).item()!r})")
    arr = arr.reshape(-1)
    if arr.dtype == np.uint64 and arr.max() > np.iinfo(np.int64).max:
        raise InvalidArgumentError(f"index {int(arr.max())} does not fit in int64")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        pos = int(np.argmin(arr))
        raise InvalidArgumentError(f"indices must be >= 0, got {arr[pos]} at position {pos}")
    return arr


def _check_upper(idx: np.ndarray, limit: int, what: str) -> None:
    """Raise if some index is ``> limit``; the message names the first offender."""
    over = np.flatnonzero(idx > limit)
    if over.size:
        raise InvalidArgumentError(f"index {idx[over[0]]} at position {over[0]} is outside {what}")


def _as_count(count: Any) -> int:
    try:
        value = operator.index(count)
    except TypeError as err:
        raise InvalidArgumentError(f"count must be an integer, got {count!r}") from err
    if value < 0 or isinstance(count, bool):
        raise InvalidArgumentError(f"count must be a non-negative integer, got {count!r}")
    return value


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------

# One piece of a stream: (symbols int32 (m,), constriction model, *per-symbol parameters).
_Segment = tuple[Any, ...]


def _floor_log2_exact(n: np.ndarray) -> np.ndarray:
    """Exact ``floor(log2 n)`` of int64 ``n >= 1`` by binary search on the bit position."""
    k = np.zeros(n.shape, np.int64)
    for shift in (32, 16, 8, 4, 2, 1):
        k += shift * ((n >> (k + shift)) > 0)
    return k


def _zipf_buckets() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The static bucket layout of :class:`ZipfModel`.

    Bucket ``s`` holds the ``n`` with bit-length class ``k`` and leading ``h + 1 = min(k, 4) + 1``
    bits ``head``: ``n in [head * 2**r, (head + 1) * 2**r)`` with ``r = k - h`` tail bits.

    Returns:
      ``(offset, head, tail_bits)``: ``offset`` (63,) int64, the first bucket of each class;
      ``head`` and ``tail_bits`` (num_buckets,) int64, per bucket.
    """
    k = np.arange(MAX_LENGTH_CLASS + 1)
    h = np.minimum(k, ZIPF_HEAD_BITS)
    offset = np.concatenate([[0], np.cumsum(2**h)[:-1]])
    head = np.concatenate([2**hk + np.arange(2**hk) for hk in h])
    tail_bits = np.repeat(k - h, 2**h)
    return offset, head, tail_bits


_BUCKET_OFFSET, _BUCKET_HEAD, _BUCKET_TAIL_BITS = _zipf_buckets()


@functools.lru_cache(maxsize=256)
def _zipf_bucket_weights(alpha: float) -> np.ndarray:
    r"""Integer-valued float64 weights, shape (num_buckets,), proportional to the buckets' Zipf mass.

    The mass of :math:`[a, b)` is :math:`\sum_{n=a}^{b-1} n^{-\alpha} = \zeta(\alpha, a) - \zeta(\alpha, b)`
    (Hurwitz zeta, float64), normalised over ``n < 2**63`` and rounded to multiples of ``2**-32``.
    The rounding keeps the table a pure function of ``alpha`` even where two machines' libm differ
    in the last ulp (it then changes only if a value lies within an ulp of a rounding boundary);
    constriction quantises these integers to its 24-bit fixed point identically on both sides.
    """
    lo = np.ldexp(_BUCKET_HEAD.astype(np.float64), _BUCKET_TAIL_BITS)
    hi = np.ldexp(_BUCKET_HEAD + 1.0, _BUCKET_TAIL_BITS)
    mass = scipy.special.zeta(alpha, lo) - scipy.special.zeta(alpha, hi)
    weights = np.rint(mass / mass.sum() * 2.0**32)
    weights.flags.writeable = False  # shared by the cache
    return weights


def _chunk_widths(tail_bits: np.ndarray) -> np.ndarray:
    """Widths in bits, shape ``(count, 4)``, of the chunks of ``tail_bits`` raw bits (0 = absent)."""
    return np.clip(tail_bits[:, None] - CHUNK_BITS * np.arange(_CHUNK_SLOTS), 0, CHUNK_BITS)


@dataclasses.dataclass(frozen=True)
class ZipfModel:
    r"""Unbounded index under the Zipf prior :math:`p(n) \propto (n+1)^{-\alpha}`.

    Code of ``n = index + 1``, with ``k = floor(log2 n)`` its bit-length class:

    1. one ``Categorical`` symbol (959 buckets) for ``k`` together with the ``h = min(k, 4)`` bits of
       ``n`` below its leading one, holding the exact Zipf mass of each bucket;
    2. the remaining ``k - h`` low bits as ``Uniform(2**c)`` chunks (``c <= 16``, least significant
       first); all bucket symbols of a stream come first, then all chunks.

    Inside a bucket the code is uniform where the prior decreases by at most a factor
    ``(17/16)**alpha``; this and constriction's 24-bit quantisation cost under 1e-3 bits per index
    against :func:`zipf_bits` (measured 3e-4 to 5e-4; sending all ``k`` low bits raw would cost
    0.05 to 0.08), on top of the range coder's fixed 0 to 64 bits per byte string.

    Attributes:
      alpha: exponent, ``>= MIN_ZIPF_ALPHA`` and finite; usually ``zipf_exponent(kl_budget_bits)``.
    """

    alpha: float

    def __post_init__(self) -> None:
        try:
            alpha = float(self.alpha)
        except (TypeError, ValueError) as err:
            raise InvalidArgumentError(f"alpha must be a real number, got {self.alpha!r}") from err
        if not (np.isfinite(alpha) and alpha >= MIN_ZIPF_ALPHA):
            raise InvalidArgumentError(f"alpha must be finite and >= 1 + 2**-30, got {self.alpha!r}")
        object.__setattr__(self, "alpha", alpha)

    def _check(self, idx: np.ndarray) -> None:
        _check_upper(idx, MAX_ZIPF_INDEX, "[0, 2**63 - 1) of ZipfModel")

    def _bucket_model(self) -> Any:
        return _cm.Categorical(_zipf_bucket_weights(self.alpha), perfect=False)

    def _segments(self, idx: np.ndarray) -> list[_Segment]:
        n = idx + 1
        k = _floor_log2_exact(n)
        tail_bits = k - np.minimum(k, ZIPF_HEAD_BITS)
        head = n >> tail_bits
        bucket = _BUCKET_OFFSET[k] + head - (np.int64(1) << (k - tail_bits))
        widths = _chunk_widths(tail_bits)
        present = widths > 0
        tail = (n - (head << tail_bits))[:, None] >> (CHUNK_BITS * np.arange(_CHUNK_SLOTS))
        chunks = (tail & ((1 << CHUNK_BITS) - 1))[present]
        return [
            (bucket.astype(np.int32), self._bucket_model()),
            (chunks.astype(np.int32), _cm.Uniform(), np.left_shift(1, widths[present]).astype(np.int32)),
        ]

    def _decode(self, coder: Any, count: int) -> np.ndarray:
        bucket = coder.decode(self._bucket_model(), count)
        tail_bits = _BUCKET_TAIL_BITS[bucket]
        widths = _chunk_widths(tail_bits)
        present = widths > 0
        chunks = np.zeros(widths.shape, np.int64)
        chunks[present] = coder.decode(_cm.Uniform(), np.left_shift(1, widths[present]).astype(np.int32))
        tail = (chunks << (CHUNK_BITS * np.arange(_CHUNK_SLOTS))).sum(axis=1)
        return (_BUCKET_HEAD[bucket] << tail_bits) + tail - 1

    def _ideal_bits(self, idx: np.ndarray) -> float:
        return float(np.sum(np.asarray(zipf_bits(idx, self.alpha), dtype=np.float64)))


@dataclasses.dataclass(frozen=True)
class UniformModel:
    """Index uniform on ``[0, num_symbols)``, ``1 <= num_symbols <= 2**62``.

    Up to ``2**16`` symbols the index is one ``Uniform(N)`` symbol. Beyond, it is written in mixed
    radix ``(H, 2**c1, 2**c2, ...)``: a top digit ``H = ((N - 1) >> b) + 1 in (2**15, 2**16]`` over
    the high 16 bits, then the low ``b`` bits in chunks of ``<= 16`` bits. This costs at most
    ``log2(1 + 2**-15)`` ~ 4e-5 bits over ``log2 N`` (plus constriction's quantisation, at most
    ``-log2(1 - 2**-8)`` ~ 0.006 bits for a non power-of-two digit). ``N = 1`` writes nothing.

    Attributes:
      num_symbols: the alphabet size ``N``.
    """

    num_symbols: int

    def __post_init__(self) -> None:
        try:
            n = operator.index(self.num_symbols)
        except TypeError as err:
            raise InvalidArgumentError(f"num_symbols must be an integer, got {self.num_symbols!r}") from err
        if isinstance(self.num_symbols, bool) or not 1 <= n <= MAX_UNIFORM_SYMBOLS:
            raise InvalidArgumentError(f"num_symbols must be in [1, 2**62], got {self.num_symbols!r}")
        object.__setattr__(self, "num_symbols", n)

    def _radices(self) -> tuple[int, ...]:
        """Digit sizes, most significant first; their product is ``>= N``; empty for ``N = 1``."""
        n = self.num_symbols
        if n <= 2**CHUNK_BITS:
            return (n,) if n > 1 else ()
        low_bits = (n - 1).bit_length() - CHUNK_BITS
        full, rest = divmod(low_bits, CHUNK_BITS)
        widths = [CHUNK_BITS] * full + ([rest] if rest else [])
        return (((n - 1) >> low_bits) + 1, *(2**w for w in widths))

    def _check(self, idx: np.ndarray) -> None:
        _check_upper(idx, self.num_symbols - 1, f"[0, {self.num_symbols}) of UniformModel")

    def _segments(self, idx: np.ndarray) -> list[_Segment]:
        segments = []
        for radix in reversed(self._radices()):  # least significant digit first
            idx, digit = np.divmod(idx, radix)
            segments.append((digit.astype(np.int32), _cm.Uniform(radix)))
        return segments[::-1]

    def _decode(self, coder: Any, count: int) -> np.ndarray:
        idx = np.zeros(count, np.int64)
        for radix in self._radices():
            idx = idx * radix + coder.decode(_cm.Uniform(radix), count)
        bad = np.flatnonzero(idx >= self.num_symbols)
        if bad.size:
            raise FormatError(f"decoded index {idx[bad[0]]} is outside [0, {self.num_symbols})")
        return idx

    def _ideal_bits(self, idx: np.ndarray) -> float:
        return idx.size * float(np.log2(self.num_symbols))


@dataclasses.dataclass(frozen=True)
class CategoricalModel:
    """Index with explicit probabilities over a small alphabet ``[0, len(probs))``.

    ``probs`` (any non-negative finite weights with a positive sum, at most ``2**16`` of them) is
    stored as a tuple of floats, so the model is hashable. Indices with zero weight cannot be
    encoded. A single-symbol alphabet writes nothing.

    Attributes:
      probs: the weights; normalised when used.
    """

    probs: tuple[float, ...]

    def __post_init__(self) -> None:
        try:
            p = np.asarray(self.probs, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise InvalidArgumentError(f"probs must be an array of real numbers, got {self.probs!r}") from err
        if p.ndim != 1 or not 1 <= p.size <= MAX_CATEGORICAL_SYMBOLS:
            raise InvalidArgumentError(f"probs must be 1-D with 1 to 2**16 entries, got shape {p.shape}")
        bad = np.flatnonzero(~(np.isfinite(p) & (p >= 0)))
        if bad.size:
            raise InvalidArgumentError(f"probs must be finite and >= 0, got {float(p[bad[0]])!r} at position {bad[0]}")
        if not p.sum() > 0:
            raise InvalidArgumentError("probs must have a positive sum")
        object.__setattr__(self, "probs", tuple(float(v) for v in p))

    def _check(self, idx: np.ndarray) -> None:
        _check_upper(idx, len(self.probs) - 1, f"[0, {len(self.probs)}) of CategoricalModel")
        zero = np.flatnonzero(np.asarray(self.probs)[idx] == 0)
        if zero.size:
            raise InvalidArgumentError(f"index {idx[zero[0]]} at position {zero[0]} has probability 0")

    def _constriction_model(self) -> Any:
        # normalised here, first by the max, so subnormal or huge weights stay normalisable
        p = np.asarray(self.probs) / max(self.probs)
        return _cm.Categorical(p / p.sum(), perfect=False)

    def _segments(self, idx: np.ndarray) -> list[_Segment]:
        if len(self.probs) == 1:
            return []
        return [(idx.astype(np.int32), self._constriction_model())]

    def _decode(self, coder: Any, count: int) -> np.ndarray:
        if len(self.probs) == 1:
            return np.zeros(count, np.int64)
        idx = coder.decode(self._constriction_model(), count).astype(np.int64)
        zero = np.flatnonzero(np.asarray(self.probs)[idx] == 0)
        if zero.size:
            raise FormatError(f"decoded index {idx[zero[0]]} has probability 0")
        return idx

    def _ideal_bits(self, idx: np.ndarray) -> float:
        p = np.asarray(self.probs)
        return float(-np.sum(np.log2(p[idx] / p.sum())))


@dataclasses.dataclass(frozen=True)
class PlanAlphabetModel:
    """Entropy model "uniform per symbol over its own alphabet, whose size the block plan gives".

    For message fields whose alphabet varies per block and coordinate and is shared side
    information -- the bin ``k_d in [0, J_d)`` of a space-partitioning coder, with ``J_d`` from the
    block's partition. It has no parameters: the sizes are integers in the plan, which the
    header's plan fingerprint pins.
    """



IndexModel = ZipfModel | UniformModel | CategoricalModel
_MODEL_TYPES = (ZipfModel, UniformModel, CategoricalModel)


def _as_model(model: Any) -> IndexModel:
    if not isinstance(model, _MODEL_TYPES):
        raise InvalidArgumentError(f"model must be a ZipfModel, UniformModel or CategoricalModel, got {model!r}")
    return model


def _validated(indices: Any, model: Any) -> tuple[np.ndarray, IndexModel]:
    model = _as_model(model)
    idx = _as_indices(indices)
    model._check(idx)
    return idx, model
