"""Space partitions for REC: equal-prior-mass grids, MI-driven interval counts, bin weights.

Space-partitioning REC (He, Flamich & Hernandez-Lobato, NeurIPS 2024) searches a grid of bins ``B_j`` in proportion to weights ``pi_j``.

**Grid.**  Axis ``d`` of a factorized prior ``P`` is cut into ``J_d`` intervals of equal prior mass,
``I_{d,k} = [F_d^{-1}(k / J_d), F_d^{-1}((k + 1) / J_d))``; a bin is a multi-index ``j = (k_1..k_D)``
with ``P(B_j) = 1 / J``, ``J = prod_d J_d``.  A :class:`Partition` stores only the counts ``J_d``
(a pytree leaf), so it depends on the prior and shared statistics, never on Q: the decoder
rebuilds the edges from the prior.

**Weights.**  ``pi_j = prod_d pi_{d, k_d}`` (factorized), one table ``(D, max_intervals)`` per axis:

* ``"q_mass"``: ``pi_{d,k} = Q_d(I_{d,k})`` -- minimizes ``D_KL[Q || P']``, which drives the bias
  of fixed-budget SP-ORC;
* ``"sup_ratio"``: ``pi_{d,k} ∝ P_d(I_{d,k}) sup_{I_{d,k}} r_d`` -- minimizes ``D_inf[Q || P']``, the
  log2 of exact SP-PFR's expected steps, to ``log2 (1/J) sum_j sup_{B_j} r``;
* a callable ``policy(log_q_mass, log_sup_ratio, log_p_mass) -> log unnormalized weights``,
  all ``(D, max_intervals)`` in nats (e.g. a mixture of the two).

Here ``P' = sum_j pi_j P(. | B_j)`` is the search distribution, ``dQ/dP' = r / (J pi_j)``.  The
search uses the policy's weights rounded to integers ``c_{d,k} / 2^R`` (:func:`quantized_weights`,
``R = 16`` for axes of at most 16 intervals, else 31): bins are drawn from them by integer
inversion of ``R`` random bits (:func:`sample_bins`), so the probabilities the scores divide by are
exactly the sampler's, a bin of positive weight keeps at least ``2^-R`` (far bins of tiny ``Q``
mass no longer dominate ``D_inf[Q||P']`` under ``"q_mass"``), and only the heaviest bin of an axis
loses weight to the rounding (``D_inf`` up by at most ``log(1 / (1 - J_d^2 2^-R))``).

**Bits per axis.**  :func:`allocate_bits` turns per-dimension mutual-information estimates (bits,
from training statistics) into integer ``log2 J_d`` summing to a requested total: ``"mi"``
(proportional to MI, largest remainders, MI ~ 0 axes get one interval), and the paper's ablations
``"random"`` (every bit to a uniformly random axis) and ``"random_informative"`` (the same after
dropping MI ~ 0 axes).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrec.core.checks import as_float, as_int, as_real_array, describe, is_traced
from jaxrec.core.distributions import Distribution, interval_log_sup_ratio, kl
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.core.truncated import interval_log_mass

Array = jax.Array
LN2 = math.log(2.0)
MAX_INTERVALS_PER_AXIS = 2**30
MAX_PACKED_BITS = 64
# Axes with at most this many intervals use elementwise code (compare all, select chains) rather
# than searches and gathers: measured fastest on CPU.
SMALL_AXIS = 16
# log_scaled_bin_weights adds up at most this many axes unrolled, more in a fori_loop (bounded size).
UNROLLED_AXES = 16
STRATEGIES = ("mi", "random", "random_informative")
WeightPolicy = Callable[[Array, Array, Array], Array]

__all__ = [
    "STRATEGIES",
    "AxisTables",
    "Partition",
    "allocate_bits",
    "axis_tables",
    "bin_dtype",
    "bin_log_weights",
    "draw_bits",
    "draw_words",
    "log_scaled_bin_weights",
    "partition_from_mi",
    "quantized_weights",
    "resolve_policy",
    "reweighted_dinf",
    "reweighted_kl",
    "sample_bins",
]


def _bit_width(counts: Array) -> Array:
    """``ceil(log2 J)`` for ``J >= 1`` (``int32``): the bits a field holding ``0..J-1`` needs."""
    return (32 - lax.clz((counts - 1).astype(jnp.uint32))).astype(jnp.int32)


def _as_int_vector(name: str, value: Any, low: int, high: int) -> np.ndarray:
    """A concrete non-empty 1-D array of ints in ``[low, high]`` (``int64``), or
    :class:`InvalidArgumentError` naming ``name``."""
    try:
        host = np.asarray(value)
    except (TypeError, ValueError):
        host = None
    if host is None or host.ndim != 1 or host.size == 0 or host.dtype.kind not in "iu":
        raise InvalidArgumentError(f"{name} must be a non-empty 1-D int array (one entry per axis), got {describe(value)}")
    bad = np.flatnonzero((host < low) | (host > high))
    if bad.size:
        raise InvalidArgumentError(
            f"{name} must lie in [{low}, {high}], got {host[bad[0]]} at index {bad[0]} ({name}={host.tolist()})"
        )
    return host.astype(np.int64)


def _as_counts(num_intervals: Any) -> np.ndarray:
    return _as_int_vector("num_intervals", num_intervals, 1, MAX_INTERVALS_PER_AXIS)


@jax.tree_util.register_pytree_node_class
class Partition:
    """Axis-aligned grid with ``J_d`` equal-prior-mass intervals on axis ``d``.

    Args:
      num_intervals: ``J_d`` per axis, ints in ``[1, 2^30]``, shape ``(D,)``; a pytree leaf, so
        partitions of one event size and ``max_intervals`` can be stacked and vmapped.
      max_intervals: static width of the per-axis tables (``>= max_d J_d``); defaults to
        ``max_d J_d``.

    The bin multi-index packs into 64 bits (``sum_d ceil(log2 J_d) <= 64``), which names the
    bin's sample stream (:meth:`stream_words`).  Decoding costs O(D) for any counts; encoding
    builds per-axis tables of ``D x max_intervals`` entries (:func:`axis_tables`), so keep
    ``max_intervals`` to what fits in memory (a grid's total ``J`` can still be ``2^60``).
    Validation runs when the counts are concrete.
    """

    def __init__(self, num_intervals: Any, max_intervals: int | None = None):
        if is_traced(num_intervals):
            counts = jnp.asarray(num_intervals)
            if counts.ndim < 1 or not jnp.issubdtype(counts.dtype, jnp.integer):
                raise InvalidArgumentError(f"num_intervals must be an int array (..., D), got {describe(counts)}")
            if isinstance(max_intervals, bool) or not isinstance(max_intervals, int):
                raise InvalidArgumentError("max_intervals must be given (an int) when num_intervals is traced")
        else:
            host = _as_counts(num_intervals)
            counts = jnp.asarray(host, jnp.int32)
            packed = int(sum(int(c - 1).bit_length() for c in host))
            if packed > MAX_PACKED_BITS:
                raise InvalidArgumentError(
                    f"the bin index needs sum ceil(log2 J_d) = {packed} > {MAX_PACKED_BITS} bits; "
                    f"use fewer intervals (num_intervals={host.tolist()})"
                )
            largest = int(host.max())
            max_intervals = largest if max_intervals is None else as_int("max_intervals", max_intervals, low=largest)
        self.num_intervals = counts.astype(jnp.int32)
        self.max_intervals = max_intervals

    def tree_flatten(self) -> tuple[tuple[Array], int]:
        return (self.num_intervals,), self.max_intervals

    @classmethod
    def tree_unflatten(cls, max_intervals: int, leaves: tuple[Array]) -> Partition:
        obj = object.__new__(cls)
        obj.num_intervals, obj.max_intervals = leaves[0], max_intervals
        return obj

    def __repr__(self) -> str:
        return f"Partition(num_intervals={self.num_intervals!r}, max_intervals={self.max_intervals})"

    @classmethod
    def from_bits(cls, bits: Any, max_intervals: int | None = None) -> Partition:
        """``J_d = 2^{bits_d}`` (``bits``: ints in ``[0, 30]``, shape ``(D,)``)."""
        host = _as_int_vector("bits", bits, 0, 30)
        return cls(np.left_shift(1, host).astype(np.int32), max_intervals)

    @property
    def event_size(self) -> int:
        return self.num_intervals.shape[-1]

    @property
    def packed_bits_bound(self) -> int:
        """The most bits a bin index of any partition of this shape (``D`` axes of at most
        ``max_intervals`` intervals) packs into (:meth:`stream_words`): ``D ceil(log2
        max_intervals)``, static (a traced partition has the same)."""
        return self.event_size * (self.max_intervals - 1).bit_length()

    @property
    def log2_num_bins(self) -> Array:
        """``log2 J = sum_d log2 J_d``, float32 (exact for powers of two)."""
        return jnp.sum(jnp.log2(self.num_intervals.astype(jnp.float32)), axis=-1)

    def valid(self) -> Array:
        """``bool[...]``: every ``J_d`` in ``[1, max_intervals]`` and the bin index packs into
        64 bits.  Traceable: concrete counts are checked at construction, traced ones (a partition
        built inside ``jit``/``vmap``) only here; the coders report ``INVALID_INPUT`` otherwise."""
        counts = self.num_intervals
        in_range = jnp.all((counts >= 1) & (counts <= self.max_intervals), axis=-1)
        return in_range & (jnp.sum(_bit_width(jnp.maximum(counts, 1)), axis=-1) <= MAX_PACKED_BITS)

    def edges(self, prior: Distribution) -> Array:
        """Interval edges ``(D, max_intervals + 1)``: ``F_d^{-1}(k / J_d)``, ``+inf`` past ``J_d``.

        Edges in the lower half use ``prior.icdf(k / J)``, those in the upper half
        ``prior.isf((J - k) / J)``, so both tails are accurate.
        """
        k = jnp.arange(self.max_intervals + 1)[:, None]
        counts = self.num_intervals[None, :]
        k = jnp.minimum(k, counts)
        total = counts.astype(prior.dtype)
        lower = prior.icdf(k.astype(prior.dtype) / total)
        upper = prior.isf((counts - k).astype(prior.dtype) / total)
        return jnp.where(2 * k <= counts, lower, upper).T

    def sample_in_bin(self, prior: Distribution, bins: Array, bits: Array) -> Array:
        """``x ~ P(. | B_bins)`` from 32 random bits per axis: ``(D,)``.

        ``x_d = F_d^{-1}((k_d + u_d) / J_d)`` with ``u_d = (bits_d + 1/2) 2^-32``.  Intervals in the
        lower half of the prior use ``icdf(k/J + u/J)``; those in the upper half use
        ``isf((J-1-k)/J + (1-u)/J)`` with ``1 - u = (~bits + 1/2) 2^-32`` formed from the bits,
        so no ``1 - eps`` rounding occurs in either tail (a middle interval, odd ``J``, picks its
        half with the top bit).  Resolution: 2^-32 of the bin's mass at its outer end.  Both
        branches evaluate the prior's quantile at one argument ``t`` (``p`` or ``v``):
        :meth:`~jaxrec.core.distributions.Distribution.tail_quantile`: for a float32 Gaussian the
        polynomial quantile :func:`~jaxrec.core.normal_quantile.ndtri_lower_tail` (relative error
        below ``4e-7``), ``ndtri`` in float64.

        Args:
          prior: the prior, event size ``D``.
          bins: ``[D]`` interval indices ``k_d`` in ``[0, J_d)``, any integer type (widened to
            ``int32`` here: a search may pass them narrow, :func:`bin_dtype`).
          bits: ``uint32[D]`` random bits.
        """
        dtype = prior.dtype
        counts = self.num_intervals
        bins = bins.astype(jnp.int32)
        total = counts.astype(dtype)
        u = (bits.astype(dtype) + 0.5) * 2.0**-32
        one_minus_u = ((~bits).astype(dtype) + 0.5) * 2.0**-32
        middle = 2 * bins + 1 == counts
        lower = (2 * bins + 1 < counts) | (middle & (bits < jnp.uint32(2**31)))
        # t = p = k/J + u/J (lower half) or v = (J-1-k)/J + (1-u)/J (upper half): the operands are
        # selected before the two divisions, which gives the same floats as dividing both ways
        whole = jnp.where(lower, bins, counts - 1 - bins).astype(dtype)
        t = whole / total + jnp.where(lower, u, one_minus_u) / total
        return prior.tail_quantile(t, lower)

    def drawn_axes(self) -> int:
        """The axes a search draws bins for (static): ``D``, or for concrete counts one past the
        last axis with ``J_d > 1`` (the axes after it have one interval: bin 0 whatever is drawn,
        so a search skips their draws and hashes and finds the same bins)."""
        if is_traced(self.num_intervals):
            return self.event_size
        split = np.flatnonzero(np.asarray(self.num_intervals) > 1)
        return int(split[-1]) + 1 if split.size else 0

    def stream_words(self, bins: Array) -> tuple[Array, Array]:
        """The bin multi-index packed into two ``uint32`` words ``(hi, lo)`` (bit fields of width
        ``ceil(log2 J_d)``, axis 0 lowest); injective for a given partition.  ``bins`` is
        ``int32[..., D]``."""
        spill, lo_part = _packed_fields(bins.astype(jnp.uint32), self._field_offsets())
        # The fields are disjoint, so their sum is their bitwise or.
        return jnp.sum(spill, axis=-1, dtype=jnp.uint32), jnp.sum(lo_part, axis=-1, dtype=jnp.uint32)

    def pack_columns(self, bins: Array) -> tuple[Array, Array]:
        """:meth:`stream_words` of a chunk of bins laid out axis-major, ``[D, K]`` of any integer
        type: ``(hi, lo)``, ``uint32[K]`` each, the same words, or-ed row by row (:func:`fold_axes`)
        so that every operation is elementwise over the chunk.  When every partition of this shape
        packs into 32 bits (:attr:`packed_bits_bound`), ``hi`` is 0 and ``lo`` needs no spill test.  Measured at
        D = 25 on one CPU core (SP-PFR's bins, 1,024 candidates): packing the ``(K, D)`` transpose
        with :meth:`stream_words` cost ~24 ns per candidate, the rows ~2."""
        offsets = self._field_offsets()
        if self.packed_bits_bound <= 32:
            lo = fold_axes(lambda d: jnp.left_shift(bins[d].astype(jnp.uint32), offsets[d]), self.event_size, operator.or_)
            return jnp.zeros_like(lo), lo

        def row(d: int | Array) -> tuple[Array, Array]:
            return _packed_fields(bins[d].astype(jnp.uint32), offsets[d])

        return fold_axes(row, self.event_size, lambda a, b: (a[0] | b[0], a[1] | b[1]))

    def _field_offsets(self) -> Array:
        """``uint32[D]``: the lowest bit of each axis' field in the packed index."""
        widths = _bit_width(self.num_intervals)
        return (jnp.cumsum(widths) - widths).astype(jnp.uint32)


def _packed_fields(k: Array, offsets: Array) -> tuple[Array, Array]:
    """Interval indices ``k`` (``uint32``) placed at bit ``offsets`` of a 64-bit word: its high and
    low ``uint32`` halves ``(spill, lo_part)``, elementwise."""
    lo_part = jnp.where(offsets < 32, jnp.left_shift(k, offsets), 0)
    spill = jnp.where(offsets < 32, jnp.right_shift(k, 32 - offsets), jnp.left_shift(k, offsets - 32))
    spill = jnp.where(offsets == 0, 0, spill)  # a shift by 32 is 0 in XLA; keep it explicit
    return spill, lo_part


def fold_axes(row: Callable[[int | Array], Any], num_axes: int, combine: Callable[[Any, Any], Any] = operator.add) -> Any:
    """``combine(... combine(row(0), row(1)) ..., row(D - 1))``: per-axis rows of a chunk, each
    elementwise over its ``K`` candidates, combined in axis order; unrolled up to ``UNROLLED_AXES``
    axes, a ``fori_loop`` beyond (bounded program size).  On CPU this vectorizes over ``K``,
    where a reduction over the axis of a ``(D, K)`` or ``(K, D)`` array does not."""
    total = row(0)
    if num_axes <= UNROLLED_AXES:
        for d in range(1, num_axes):
            total = combine(total, row(d))
        return total
    return lax.fori_loop(1, num_axes, lambda d, acc: combine(acc, row(d)), total)


# ---------------------------------------------------------------------------------------------
# Bits per axis from mutual information.


def allocate_bits(
    mi_bits: Any,
    total_bits: int,
    strategy: str = "mi",
    *,
    seed: int = 0,
    informative_threshold: float = 0.05,
) -> np.ndarray:
    """Integer ``log2 J_d`` per axis summing to ``total_bits`` (host-side, deterministic).

    Args:
      mi_bits: ``(D,)`` per-dimension mutual-information estimates in bits (e.g. the mean
        training-set KL per dimension); shared statistics, never the item's own KL.
      total_bits: ``log2 J``, a whole number ``>= 0`` (an int, or an integral float such as ``5.0``;
        ``5.5`` is refused), at most ``30 *`` the number of eligible axes.
      strategy: ``"mi"`` -- bits proportional to MI over the informative axes, rounded by largest
        remainders (ties to the lower axis); ``"random"`` -- each bit to a uniformly random axis;
        ``"random_informative"`` -- each bit to a uniformly random informative axis.
      seed: numpy seed of the random strategies, an int ``>= 0`` (part of the shared configuration).
      informative_threshold: axes with ``mi_bits <= informative_threshold`` count as MI ~ 0.

    Returns:
      ``int64[D]`` bits per axis, each at most 30.
    """
    mi = as_real_array("mi_bits", mi_bits, ndim=1, nonempty=True, finite=True, nonnegative=True)
    total_bits = as_int("total_bits", total_bits, low=0)
    if strategy not in STRATEGIES:
        raise InvalidArgumentError(f"strategy must be one of {STRATEGIES}, got {describe(strategy)}")
    seed = as_int("seed", seed, low=0)
    informative_threshold = as_float("informative_threshold", informative_threshold)
    eligible = np.ones(mi.size, bool) if strategy == "random" else mi > informative_threshold
    if total_bits > 0 and (not eligible.any() or total_bits > 30 * int(eligible.sum())):
        raise InvalidArgumentError(
            f"cannot place {total_bits} bits on {int(eligible.sum())} eligible axes "
            f"(strategy {strategy!r}, mi_bits={mi.tolist()}) with at most 30 bits per axis"
        )
    bits = np.zeros(mi.size, np.int64)
    if total_bits == 0:
        return bits
    if strategy == "mi":
        weights = np.where(eligible, mi, 0.0)
        for _ in range(total_bits):  # largest remainder, one bit at a time, capped at 30 per axis
            deficit = np.where(bits < 30, weights * total_bits / weights.sum() - bits, -np.inf)
            bits[int(np.argmax(deficit))] += 1
        return bits
    rng = np.random.default_rng(seed)
    axes = np.flatnonzero(eligible)
    for _ in range(total_bits):
        open_axes = axes[bits[axes] < 30]
        bits[rng.choice(open_axes)] += 1
    return bits


def partition_from_mi(
    mi_bits: Any,
    total_bits: int,
    strategy: str = "mi",
    *,
    seed: int = 0,
    informative_threshold: float = 0.05,
    max_intervals: int | None = None,
) -> Partition:
    """``Partition.from_bits(allocate_bits(...))``: the grid for a block with these MI estimates."""
    bits = allocate_bits(mi_bits, total_bits, strategy, seed=seed, informative_threshold=informative_threshold)
    return Partition.from_bits(bits, max_intervals)


# ---------------------------------------------------------------------------------------------
# Per-axis tables: bin weights, the search bound and the bin sampler.


def _q_mass(log_q_mass: Array, log_sup: Array, log_p_mass: Array) -> Array:
    return log_q_mass


def _sup_ratio(log_q_mass: Array, log_sup: Array, log_p_mass: Array) -> Array:
    return log_p_mass + log_sup


POLICIES: dict[str, WeightPolicy] = {"q_mass": _q_mass, "sup_ratio": _sup_ratio}


def resolve_policy(weights: str | WeightPolicy) -> WeightPolicy:
    """The weight policy named by ``weights`` (or ``weights`` itself if callable); raises
    :class:`InvalidArgumentError` for another value."""
    if callable(weights):
        return weights
    try:
        return POLICIES[weights]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"weights must be one of {sorted(POLICIES)} or a callable, got {describe(weights)}"
        ) from None


class AxisTables(NamedTuple):
    """Everything per axis a space-partitioning search needs; leaves are ``(D, M)`` with
    ``M = max_intervals`` (entries past ``J_d`` are padding), logs in nats.

    Attributes:
      log_weight: ``log pi_{d,k}`` of the weights the search draws from: integer counts
        ``c_{d,k} / 2^R`` (:func:`draw_bits`), normalized exactly over ``k < J_d`` (``-inf`` on
        padding and for weight 0).
      log_q_mass: ``log Q_d(I_{d,k})``.
      log_sup: ``log sup_{I_{d,k}} r_d``.
      log_bound: scalar ``log M' = sum_d max_k [log sup_{I_{d,k}} r_d - log(J_d pi_{d,k})]``,
        ``log ess sup dQ/dP'`` (``+inf`` if some bin with ``Q(B) > 0`` has ``pi = 0``; NaN if the
        policy gives an infinite or NaN weight, or the counts do not fit in ``R`` bits).
      thresholds: ``uint32 (D, M)``, ``sum_{i <= k} c_{d,i}`` before the axis' last bin of positive
        weight and ``2^32 - 1`` from it on: an ``R``-bit draw ``b`` picks
        ``k = #{i : thresholds_{d,i} <= b}``.
    """

    log_weight: Array
    log_q_mass: Array
    log_sup: Array
    log_bound: Array
    thresholds: Array


def _interval_log_mass_by_axis(target: Distribution, lo: Array, hi: Array) -> Array:
    """:func:`~jaxrec.core.truncated.interval_log_mass` of ``(M, D)`` intervals, one axis at a time
    (``lax.map``), transposed: ``(D, M)``.  Written as one elementwise expression, the mass fed several
    consumers in :func:`axis_tables` and XLA:CPU recomputed its ``log_ndtr`` pieces in each of them
    (measured on a 2-core CPU, ``vmap`` over 1,024 problems of D = 5 with 2 intervals per axis:
    the tables took 11 us per problem, 3-4 us this way, the masses alone 0.9 us); a loop's output
    is materialized once.  Same formula; the last bits follow XLA's fusion, as they already did
    between a single and a vmapped call.  The tables only steer the encoder's search (the decoder
    never builds them), so codes stay exact and decodable either way."""
    axis_first = jax.tree.map(lambda a: jnp.moveaxis(a, -1, 0), (target, lo, hi))
    return lax.map(lambda column: interval_log_mass(*column), axis_first)


def draw_bits(max_intervals: int) -> int:
    """``R``, the bits of one axis' bin draw: 16 for tables of at most ``SMALL_AXIS`` intervals
    (two draws per 32-bit word), else 31 (one per word)."""
    return 16 if max_intervals <= SMALL_AXIS else 31


def draw_words(num_axes: int, max_intervals: int) -> int:
    """The 32-bit words that hold one candidate's ``num_axes`` bin draws (:func:`sample_bins`)."""
    per_word = 2 if draw_bits(max_intervals) == 16 else 1
    return -(-num_axes // per_word)


def quantized_weights(log_weight: Array) -> tuple[Array, Array, Array]:
    """Integer bin weights ``c_{d,k}`` summing to ``2^R`` per axis (``R`` = :func:`draw_bits`).

    Every bin but the first heaviest gets ``c = max(1, ceil(pi 2^R - 2^-8))`` (a bin of positive
    weight keeps a positive count; the slack absorbs float noise above an integer), the heaviest
    the rest, so only the heaviest bin loses weight: ``D_inf[Q||P']`` grows by at most
    ``log(1 / (1 - J_d^2 2^-R))`` per axis (``J_d <= 16`` at ``R = 16``).

    Args:
      log_weight: ``(D, M)`` normalized log weights (``-inf`` on padding).

    Returns:
      ``(log(c 2^-R) (D, M), fits bool, thresholds uint32 (D, M))``: ``fits`` is false when the
      rounded-up counts leave the heaviest bin nothing (only for ``J_d`` above about ``2^15``);
      the thresholds are the running sums of the counts before the last bin of positive weight
      and ``2^32 - 1`` (above every ``R``-bit draw) from it on.
    """
    size = log_weight.shape[-1]
    bits = draw_bits(size)
    live = log_weight > -jnp.inf
    heaviest = jnp.arange(size) == jnp.argmax(log_weight, axis=-1, keepdims=True)
    rounded_up = jnp.maximum(jnp.ceil(jnp.exp(log_weight) * 2.0**bits - 2.0**-8), 1.0)
    others = jnp.where(live & ~heaviest, rounded_up, 0.0).astype(jnp.uint32)  # each < 2^31
    running = jnp.cumsum(others, axis=-1, dtype=jnp.uint32)
    rest_sum = running[..., -1]
    fits = jnp.all(running[..., 1:] >= running[..., :-1]) & jnp.all(rest_sum < jnp.uint32(2**bits))  # no wrap
    counts = jnp.where(heaviest, (jnp.uint32(2**bits) - rest_sum)[..., None], others)
    cumulative = jnp.cumsum(counts, axis=-1, dtype=jnp.uint32)
    # from the last bin of positive weight on (bins past it have count 0), no draw reaches further
    last_live = jnp.max(jnp.where(live, jnp.arange(size), 0), axis=-1, keepdims=True)
    thresholds = jnp.where(jnp.arange(size) >= last_live, jnp.uint32(0xFFFFFFFF), cumulative)
    return jnp.log(counts.astype(log_weight.dtype) * 2.0**-bits), fits, thresholds


def axis_tables(
    target: Distribution, prior: Distribution, partition: Partition, weights: str | WeightPolicy
) -> AxisTables:
    """Builds the :class:`AxisTables` of ``(target, prior)`` on ``partition`` (O(D M) work)."""
    policy = resolve_policy(weights)
    edges = partition.edges(prior)
    lo, hi = edges[:, :-1].T, edges[:, 1:].T  # (M, D): broadcast against the (D,) parameters
    valid = (jnp.arange(partition.max_intervals)[:, None] < partition.num_intervals[None, :]).T
    log_q_mass = jnp.where(valid, _interval_log_mass_by_axis(target, lo, hi), -jnp.inf)
    log_sup = jnp.where(valid, interval_log_sup_ratio(target, prior, lo, hi).T, -jnp.inf)
    log_p_mass = -jnp.log(partition.num_intervals.astype(prior.dtype))[:, None]
    raw = jnp.where(valid, policy(log_q_mass, log_sup, log_p_mass), -jnp.inf)
    log_weight, counts_fit, thresholds = quantized_weights(raw - jax.nn.logsumexp(raw, axis=-1, keepdims=True))
    # sup over bins of r / (J pi): a bin with sup r = -inf (outside Q's support) never binds.
    excess = jnp.where(log_sup == -jnp.inf, -jnp.inf, log_sup + log_p_mass - log_weight)
    # A policy with an infinite or NaN weight (e.g. "sup_ratio" for an unbounded ratio) defines no
    # search: flag it explicitly rather than rely on NaN propagating through the max.
    undefined = jnp.any(jnp.isnan(raw) | (raw == jnp.inf)) | ~counts_fit
    log_bound = jnp.where(undefined, jnp.nan, jnp.sum(jnp.max(excess, axis=-1)))
    return AxisTables(log_weight, log_q_mass, log_sup, log_bound, thresholds)


def bin_log_weights(
    target: Distribution, prior: Distribution, partition: Partition, weights: str | WeightPolicy
) -> Array:
    """``log pi_{d,k}`` ``(D, max_intervals)``, normalized per axis (nats)."""
    return axis_tables(target, prior, partition, weights).log_weight


def reweighted_dinf(
    target: Distribution, prior: Distribution, partition: Partition, weights: str | WeightPolicy
) -> Array:
    """``D_inf[Q || P']`` in bits: ``log2`` of exact SP-PFR's expected number of steps."""
    return axis_tables(target, prior, partition, weights).log_bound / LN2


def reweighted_kl(
    target: Distribution, prior: Distribution, partition: Partition, weights: str | WeightPolicy
) -> Array:
    """``D_KL[Q || P']`` in bits.

    ``log dQ/dP' = log r - log(J pi_j)``, so ``D_KL[Q||P'] = D_KL[Q||P] - sum_d sum_k Q_d(I_k)
    log(J_d pi_{d,k})``; with ``"q_mass"`` weights this is ``D_KL[Q||P] - D_KL[Q_B || Unif_J]``.
    """
    t = axis_tables(target, prior, partition, weights)
    log_jpi = t.log_weight + jnp.log(partition.num_intervals.astype(prior.dtype))[:, None]
    q = jnp.exp(t.log_q_mass)
    gain = jnp.sum(jnp.where(q > 0, q * log_jpi, 0.0))
    return kl(target, prior) - gain / LN2


def bin_dtype(max_intervals: int) -> jnp.dtype:
    """The narrowest unsigned type of interval indices below ``max_intervals``: ``uint8`` up to
    256, ``uint16`` up to 2^16, else ``int32``: the type in which a search's chunk hands its bins
    to the in-bin points (:func:`jaxrec.coders.sp._sp_pfr.sp_chunk_fn`)."""
    if max_intervals <= 2**8:
        return jnp.dtype(jnp.uint8)
    return jnp.dtype(jnp.uint16) if max_intervals <= 2**16 else jnp.dtype(jnp.int32)


def sample_bins(tables: AxisTables, words: Array, drawn_axes: int | None = None) -> Array:
    """Interval indices ``k_d ~ pi_d`` per axis for a chunk of ``K`` candidates: ``int32[D, K]``.

    Axis ``d``'s draw is ``R`` = :func:`draw_bits` bits of ``words`` (``uint32[W, K]``,
    ``W =`` :func:`draw_words` of ``drawn_axes``): at ``R = 16`` the low (even ``d``) or high (odd
    ``d``) half of word ``d // 2``, at ``R = 31`` the top 31 bits of word ``d``, so an axis' bits do
    not depend on how many axes there are.  Then ``k = #{i : thresholds_{d,i} <= b}``: integer
    inversion, so ``P(k) = c_{d,k} / 2^R`` exactly, the weights whose logs the scores use (bins of
    weight 0 are never drawn).  Axes from ``drawn_axes`` on (default: none) are not drawn, their
    bins are 0: pass :meth:`Partition.drawn_axes`, past which every ``J_d`` is 1 (a one-interval
    axis picks 0 from any draw, so the bins are the same).
    """
    num_axes, size = tables.thresholds.shape
    drawn = num_axes if drawn_axes is None else drawn_axes
    if draw_bits(size) == 16:
        halves = jnp.stack([words & jnp.uint32(0xFFFF), words >> jnp.uint32(16)], axis=1)
        draws = halves.reshape((-1,) + words.shape[1:])[:drawn]
    else:
        draws = (words >> jnp.uint32(1))[:drawn]
    method = "compare_all" if size <= SMALL_AXIS else "scan"  # measured fastest on CPU
    picks = jax.vmap(lambda c, b: jnp.searchsorted(c, b, side="right", method=method))(tables.thresholds[:drawn], draws)
    return jnp.pad(picks.astype(jnp.int32), ((0, num_axes - drawn), (0, 0)))


def log_scaled_bin_weights(tables: AxisTables, partition: Partition, bins: Array) -> Array:
    """``log(J pi_j) = sum_d [log J_d + log pi_{d, k_d}]`` in nats for a chunk of bins
    ``[D, K]`` of any integer type (axis-major): ``(K,)``.

    Summed axis by axis in order ``d = 0, 1, ...`` over ``(K,)`` rows, each row's entries
    ``log pi_{d, k}`` looked up by a chain of selects for an axis of at most ``SMALL_AXIS``
    intervals (elementwise, so it vectorizes over ``K``), else gathered; unrolled up to
    ``UNROLLED_AXES`` axes, a ``fori_loop`` beyond.  Measured on a 2-core
    CPU: written as a reduction over axis 0 of the ``(D, K)`` array, XLA fused the sum with its
    producers (the bin draws and their hashes) into scalar code, and SP-ORC's ``encode_batch``
    (64 lanes x 128 candidates, D = 5) took 120 ns per candidate instead of 54.
    """
    log_counts = jnp.log(partition.num_intervals.astype(tables.log_weight.dtype))
    size = tables.log_weight.shape[-1]

    def row(d: int | Array) -> Array:
        weights, k = tables.log_weight[d], bins[d]
        if size > SMALL_AXIS:
            return log_counts[d] + weights[k]
        looked_up = jnp.broadcast_to(weights[0], k.shape)
        for value in range(1, size):
            looked_up = jnp.where(k == value, weights[value], looked_up)
        return log_counts[d] + looked_up

    return fold_axes(row, partition.event_size)
