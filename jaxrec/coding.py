"""Entropy models for REC indices: ideal codelengths and real bytes.

REC coders emit 0-based integer indices ``index >= 0`` (the winning candidate's number). This module

* gives their **ideal codelengths** in bits (:func:`zipf_bits`, :func:`uniform_bits`,
  :func:`elias_gamma_bits`, :func:`elias_delta_bits`), written with ``jax.numpy`` so that they run on
  numpy or JAX arrays, inside ``jit`` too;
* turns index arrays into **real bytes** and back with `constriction`_'s range coder
  (:func:`encode_indices`, :func:`decode_indices`, and :func:`encode_streams` /
  :func:`decode_streams` for several index lists with different models in one byte string), under
  the frozen, hashable models :class:`ZipfModel`, :class:`UniformModel` and :class:`CategoricalModel`,
  whose fields are exactly what a file header must carry;
* reports each model's ideal cost, :func:`ideal_bits`, to compare with the bytes actually written.

Byte format: the range coder's ``uint32`` words in little-endian order, nothing else (no length,
no model parameters: the caller stores those, counts included, since a stream does not delimit
itself). Decoding checks that the bytes are *exactly* the encoding of what they decode to (it
re-encodes and compares), so truncated or padded input raises :class:`~jaxrec.errors.FormatError`,
and so does most corrupt input; a corruption that happens to yield another valid encoding (a few
percent of bit flips) decodes to other indices, which the container's checksum catches. The range
coder is used rather than ANS because constriction's ANS coder starts from an empty state that
makes truncated streams valid encodings of other indices (often all zeros).

.. _constriction: https://bamler-lab.github.io/constriction/
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Sequence
from typing import Any, Union

import constriction
import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from jax.scipy.special import zeta as _jax_zeta

from jaxrec.errors import FormatError, InvalidArgumentError

__all__ = [
    "CategoricalModel",
    "IndexModel",
    "UniformModel",
    "ZipfModel",
    "decode_indices",
    "decode_sp",
    "decode_streams",
    "elias_delta_bits",
    "elias_gamma_bits",
    "encode_indices",
    "encode_sp",
    "encode_streams",
    "ideal_bits",
    "sp_ideal_bits",
    "sp_index_budget_bits",
    "sp_models",
    "uniform_bits",
    "zipf_bits",
    "zipf_exponent",
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
# Ideal codelengths (jax.numpy; jit-compatible; no validation, indices are assumed >= 0)
# --------------------------------------------------------------------------------------------------


def zipf_exponent(kl_budget_bits: Any) -> Any:
    r"""Zipf exponent both sides derive from a shared KL budget (Li & El Gamal 2018).

    With :math:`\eta = \mathrm{KL} + 1`, an upper bound on :math:`\mathbb E\log_2(\mathrm{index}+1)`
    for PFR, the exponent is :math:`\alpha = 1 + 1/\eta \in (1, 2]`. See :func:`zipf_bits` for the
    resulting codelength bound.

    Args:
      kl_budget_bits: scalar or array, the KL budget in bits agreed by encoder and decoder. A
        concrete value must be finite and ``>= 0``; a traced value (inside ``jit``) is not checked.

    Returns:
      ``alpha``, same shape; a Python ``float`` for a concrete scalar.

    Raises:
      InvalidArgumentError: a concrete budget that is not finite or is negative.
    """
    if isinstance(kl_budget_bits, jax.core.Tracer):
        return 1.0 + 1.0 / (kl_budget_bits + 1.0)
    try:
        kl = np.asarray(kl_budget_bits, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(f"kl_budget_bits must be a real number, got {kl_budget_bits!r}") from err
    bad = ~(np.isfinite(kl) & (kl >= 0))
    if bad.any():
        raise InvalidArgumentError(f"kl_budget_bits must be finite and >= 0, got {kl[bad].flat[0]!r}")
    alpha = 1.0 + 1.0 / (kl + 1.0)
    return float(alpha) if alpha.ndim == 0 else alpha


def _index_plus_one(index: Any) -> jax.Array:
    """``index + 1`` as the default float dtype (conversion first: no int64 -> int32 wrap-around)."""
    return jnp.asarray(index, dtype=float) + 1.0


def _floor_log2(n: jax.Array) -> jax.Array:
    """``floor(log2 n)`` for float ``n >= 1``; exact while ``n`` is exactly representable."""
    return (jnp.frexp(n)[1] - 1).astype(n.dtype)


def zipf_bits(index: Any, alpha: Any) -> jax.Array:
    r"""Ideal codelength :math:`-\log_2 p(\mathrm{index})` under the Zipf (zeta) prior.

    :math:`p(n) = (n+1)^{-\alpha} / \zeta(\alpha)` for :math:`n \ge 0`, so
    :math:`-\log_2 p(n) = \alpha \log_2(n+1) + \log_2\zeta(\alpha)`.

    **Bound** (Li & El Gamal 2018, "Strong functional representation lemma"). For any index
    distribution with :math:`L = \mathbb E\log_2(\mathrm{index}+1) \le \eta` and
    :math:`\alpha = 1 + 1/\eta`,

    .. math::
       \mathbb E[\text{zipf\_bits}] = \alpha L + \log_2\zeta(\alpha)
       \le \eta + 1 + \log_2(\eta + 1),

    because :math:`\zeta(\alpha) = \sum_{m\ge1} m^{-\alpha} \le 1 + \int_1^\infty x^{-\alpha}dx
    = 1 + 1/(\alpha-1) = 1 + \eta`. PFR has :math:`L \le \mathrm{KL} + 1`, and
    :func:`zipf_exponent` takes :math:`\eta = \mathrm{KL} + 1`, giving
    :math:`\mathrm{KL} + \log_2(\mathrm{KL}+2) + 2`. Where :math:`L \le \mathrm{KL}` is known, taking
    :math:`\eta = \mathrm{KL}` gives the familiar :math:`\mathrm{KL} + \log_2(\mathrm{KL}+1) + 1`.

    Args:
      index: integer array, any shape, ``>= 0``.
      alpha: exponent ``> 1``, broadcastable against ``index``.

    Returns:
      Float array of the broadcast shape (default float dtype: float32 unless x64 is enabled).
    """
    alpha = jnp.asarray(alpha, dtype=float)
    return alpha * jnp.log2(_index_plus_one(index)) + jnp.log2(_jax_zeta(alpha, 1.0))


def uniform_bits(num_symbols: Any) -> jax.Array:
    """Ideal codelength ``log2 N`` of an index uniform on ``[0, N)``; any shape, float."""
    return jnp.log2(jnp.asarray(num_symbols, dtype=float))


def elias_gamma_bits(index: Any) -> jax.Array:
    r"""Length of the Elias gamma code of :math:`n = \mathrm{index}+1`: :math:`2\lfloor\log_2 n\rfloor + 1`.

    Any shape, float; exact for ``index < 2**24`` (``2**53`` with x64).
    """
    return 2.0 * _floor_log2(_index_plus_one(index)) + 1.0


def elias_delta_bits(index: Any) -> jax.Array:
    r"""Length of the Elias delta code of :math:`n = \mathrm{index}+1`.

    With :math:`k = \lfloor\log_2 n\rfloor`: :math:`k + 2\lfloor\log_2(k+1)\rfloor + 1` (the gamma
    code of the bit length :math:`k+1`, then the :math:`k` bits below the leading one). Any shape,
    float; exact for ``index < 2**24`` (``2**53`` with x64).
    """
    k = _floor_log2(_index_plus_one(index))
    return k + 2.0 * _floor_log2(k + 1.0) + 1.0


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
        raise InvalidArgumentError(f"indices must have an integer dtype, got {arr.dtype} ({arr.flat[0]!r})")
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
            raise InvalidArgumentError(f"probs must be finite and >= 0, got {p[bad[0]]!r} at position {bad[0]}")
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


IndexModel = Union[ZipfModel, UniformModel, CategoricalModel]
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


# --------------------------------------------------------------------------------------------------
# Bytes
# --------------------------------------------------------------------------------------------------


def ideal_bits(indices: Any, model: IndexModel) -> float:
    """Sum over ``indices`` (integer array, any shape) of ``-log2 p(index)`` under ``model``.

    For :class:`ZipfModel` this is the sum of :func:`zipf_bits` (the untruncated, unquantised prior).
    """
    idx, model = _validated(indices, model)
    return model._ideal_bits(idx)


def encode_streams(streams: Sequence[tuple[Any, IndexModel]]) -> bytes:
    """Encode several index arrays, each under its own model, into one byte string.

    Args:
      streams: ``(indices, model)`` pairs; ``indices`` is an integer array of any shape (flattened
        in C order).

    Returns:
      The range coder's words as little-endian bytes (a multiple of 4 long). Decode with
      :func:`decode_streams` and the same models and counts.

    Raises:
      InvalidArgumentError: a non-integer dtype, a negative or out-of-support index (named in the
        message), or an unknown model.
    """
    segments: list[_Segment] = []
    for indices, model in streams:
        idx, model = _validated(indices, model)
        segments += model._segments(idx)
    coder = _RangeEncoder()
    for symbols, entropy_model, *params in segments:
        coder.encode(symbols, entropy_model, *params)
    return coder.get_compressed().astype("<u4").tobytes()


def _words(data: Any) -> np.ndarray:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) % 4:
        raise FormatError(f"compressed data must be a multiple of 4 bytes long, got {len(data)}")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def decode_streams(data: bytes, specs: Sequence[tuple[IndexModel, int]]) -> list[np.ndarray]:
    """Inverse of :func:`encode_streams`.

    Args:
      data: bytes from :func:`encode_streams`.
      specs: ``(model, count)`` pairs, in the order the streams were encoded. Counts are trusted:
        decoding allocates and works in proportion to them, whatever ``data`` holds.

    Returns:
      One int64 array of shape ``(count,)`` per spec.

    Raises:
      FormatError: ``data`` is not exactly the encoding of the decoded indices (truncated, padded or
        corrupt) or decodes outside a model's support.
      InvalidArgumentError: ``data`` is not bytes-like, or a bad model or count.
    """
    specs = [(_as_model(model), _as_count(count)) for model, count in specs]
    words = _words(data)
    coder = _RangeDecoder(words)
    try:
        decoded = [model._decode(coder, count) for model, count in specs]
    except AssertionError as err:  # constriction's RangeDecoder on data no encoder can produce
        raise FormatError(f"compressed data is corrupt: {err}") from err
    if encode_streams([(idx, model) for idx, (model, _) in zip(decoded, specs)]) != words.astype("<u4").tobytes():
        raise FormatError("compressed data is truncated, padded or corrupt (it does not re-encode to itself)")
    return decoded


def encode_indices(indices: Any, model: IndexModel) -> bytes:
    """Encode one index array (integer, any shape, flattened) under ``model``; see :func:`encode_streams`."""
    return encode_streams([(indices, model)])


def decode_indices(data: bytes, model: IndexModel, count: int) -> np.ndarray:
    """Decode ``count`` indices, int64 shape ``(count,)``, written by :func:`encode_indices`."""
    return decode_streams(data, [(model, count)])[0]


# --------------------------------------------------------------------------------------------------
# Space-partitioning codes (jaxrec.sp_pfr, jaxrec.sp_orc): a bin multi-index and a within-bin index
# --------------------------------------------------------------------------------------------------


def sp_index_budget_bits(kl_budget_bits: Any, log2_num_bins: Any) -> Any:
    r"""KL budget for the within-bin index of a space-partitioning code: ``max(KL - log2 J, 0)``.

    The winner's within-bin index has :math:`\mathbb E\log_2(n^*+1) \le \mathbb E_Q\log_2(1 + r/J)
    \le (\mathrm{KL} - \log_2 J) + \mathbb E_Q[(\log_2 J - \log_2 r)_+] + 1` (space-partitioning.md
    §5.4), so ``zipf_exponent(sp_index_budget_bits(KL, log2 J))`` (``eta = budget + 1``) fits when
    ``log2 J`` stays below the typical ``log2 r``.  Both sides derive it from shared statistics
    (e.g. the block's MI and its partition), never from the item's own KL.  Works on floats or arrays.
    """
    return np.maximum(np.asarray(kl_budget_bits, np.float64) - np.asarray(log2_num_bins, np.float64), 0.0)


def sp_ideal_bits(index: Any, num_intervals: Any, alpha: Any) -> jax.Array:
    r"""Ideal length of a space-partitioning code: :math:`\log_2 J + \text{zipf\_bits}(n, \alpha)`.

    The bin costs :math:`\sum_d \log_2 J_d = \log_2 J` (uniform per axis: optimal when the prior is
    the marginal, since then the winner's bin is marginally uniform), the within-bin index its Zipf
    code.

    Args:
      index: within-bin indices, any shape ``S``.
      num_intervals: ``J_d``, ``(..., D)`` broadcastable against ``S``.
      alpha: Zipf exponent (e.g. ``zipf_exponent(sp_index_budget_bits(KL, log2 J))``).
    """
    log2_j = jnp.sum(jnp.log2(jnp.asarray(num_intervals, dtype=float)), axis=-1)
    return log2_j + zipf_bits(index, alpha)


def sp_models(num_intervals: Any, index_model: IndexModel) -> list[IndexModel]:
    """The models of a space-partitioning stream: ``UniformModel(J_d)`` per axis, then ``index_model``
    (a :class:`ZipfModel` for SP-PFR; ``UniformModel(N)`` or a Zipf model for SP-ORC)."""
    counts = np.asarray(num_intervals)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer) or counts.min() < 1:
        raise InvalidArgumentError(f"num_intervals must be a non-empty 1-D array of ints >= 1, got {counts!r}")
    return [UniformModel(int(j)) for j in counts] + [_as_model(index_model)]


def encode_sp(bins: Any, index: Any, num_intervals: Any, index_model: IndexModel) -> bytes:
    """Bytes of ``B`` space-partitioning codes: ``bins`` ``int[B, D]`` (``SPCode.bin``) and ``index``
    ``int[B]`` (``SPCode.index``), one stream per axis (uniform over its ``J_d`` intervals; axes with
    ``J_d = 1`` write nothing) and one for the indices.  Raises :class:`InvalidArgumentError` for a
    bin outside ``[0, J_d)`` or a shape mismatch."""
    models = sp_models(num_intervals, index_model)
    bins, index = np.asarray(bins), np.asarray(index)
    if bins.ndim != 2 or bins.shape[1] != len(models) - 1 or index.shape != bins.shape[:1]:
        raise InvalidArgumentError(
            f"expected bins [B, {len(models) - 1}] and index [B], got {list(bins.shape)} and {list(index.shape)}"
        )
    return encode_streams([(bins[:, d], m) for d, m in enumerate(models[:-1])] + [(index, models[-1])])


def decode_sp(data: bytes, num_intervals: Any, index_model: IndexModel, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_sp`: ``(bins int64[count, D], index int64[count])``; corrupt bytes
    raise :class:`~jaxrec.errors.FormatError`."""
    models = sp_models(num_intervals, index_model)
    streams = decode_streams(data, [(m, count) for m in models])
    return np.stack(streams[:-1], axis=-1), streams[-1]
