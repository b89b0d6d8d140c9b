"""SP-PFR: exact space-partitioning PFR (He, Flamich & Hernandez-Lobato, NeurIPS 2024).

A :class:`~jaxrec.coders.sp.partition.Partition` cuts the
space into bins ``B_j`` of prior mass ``1/J``; the encoder searches bins in proportion to weights
``pi_j`` (:mod:`jaxrec.partition`), i.e. draws from ``P' = sum_j pi_j P(. | B_j)``, and sends the
winner's bin ``j*`` and its index ``n*`` *within* the bin.

**Shared streams.**  Bin ``j`` has its own stream ``X^{(j)}_0, X^{(j)}_1, ... ~ P(. | B_j)`` iid,
``X^{(j)}_n`` a pure function of ``(key, j, n)`` (:func:`bin_candidate`), so decoding is O(D): its
coordinates come from counter-mode threefry words (Salmon et al., SC 2011) of the bin's stream,
which is (format version 5, ``shared_keys=True``) the bin's packed index in the counter under row keys
shared by all bins, :class:`~jaxrec.core.prng.LabelledStreams`, when every bin of the grid's shape
packs into 32 bits, else (and in files of versions 2 to 4) a key hashed from the bin
(:func:`bin_streams`).  Distinct bins, distinct streams, either way.

**Encoder** (private randomness: :func:`jaxrec.core.prng.private_stream` words, an arrival time
and a bin choice per axis for each candidate).  Candidate
``m = 0, 1, ...`` has a unit-rate Poisson arrival time ``t_m`` (:mod:`jaxrec.arrivals`), a bin
``j_m ~ pi`` (independent per-axis draws, :func:`jaxrec.coders.sp.partition.sample_bins`), a within-bin index
``n_m`` (below) and the point ``x_m = X^{(j_m)}_{n_m}``.  Its score is the PFR score in the clock
``s_m = J pi_{j_m} t_m``::

    score_m = log r(x_m) - log(J pi_{j_m}) - log t_m,      bound_m = log M' - log t_m,

with ``M' = max_j sup_{B_j} r / (J pi_j)`` (per axis, summed in logs); the winner is the first
argmax and the scan stops at the first ``m`` with ``max_{m' < m} score_{m'} >= bound_m``
(:func:`jaxrec.search.search`).

**Exactness.**  (1) By the marking theorem the candidates of bin ``j`` arrive at rate ``pi_j`` in
``t``, independently across bins.  (2) Let the within-bin indices be any rule that depends only on
the private bin sequence ``j_0, j_1, ...`` and gives distinct visits to one bin distinct indices.
Then, given the private randomness, the points of bin ``j`` read distinct elements of an iid
``P(. | B_j)`` stream that the private randomness never looked at, so they are iid
``P(. | B_j)`` and independent of the times.  (3) In the clock ``s = J pi_j t`` bin ``j``'s points form
a rate-``1/J`` Poisson process with marks ``P(. | B_j)``; the superposition over bins is a unit-rate
process with marks ``P(B_j) P(. | B_j)`` summed, i.e. ``P``: exactly the PFR process, and the score
is its PFR score, so the winner is an exact sample of Q (Li & El Gamal 2018).  (4) Later candidates
have ``score <= log sup_{B_j} r - log(J pi_j) - log t <= bound``, so the stop rule loses nothing.
``pi`` only changes the exploration order: ``E[steps] = M' = 2^{D_inf[Q||P']}``.  The ``pi`` of
(1)-(4) are the integer weights the bin sampler draws from exactly (:func:`jaxrec.coders.sp.partition.quantized_weights`),
and the scores and the bound use their logs, so the argument holds with no rounding in between.

**Within-bin indices** (the visit counters, :class:`VisitCounts`).  ``n_m`` is the number of
earlier candidates in ``j_m``'s counter slot (:func:`counter_slots`): the bin's packed index when
the whole grid fits in the ``table_size`` counters carried in the search state, else a hash of it,
so bins may share a counter.  A chunk of ``K`` candidates is counted in blocks of 32 in order on CPU
(one scatter-add and one gather per block, ranks within a block by comparison: O(32 K) per chunk),
elsewhere with a fixed number of kernels (per-block histograms for up to 64 counters, else one sort
of the chunk's slots, O(K log K)), and exactly the outcome of processing candidates one at a time,
so indices do not depend on the chunk size or the platform.  Distinct visits to one bin get
distinct indices whether or not its counter is shared, which is all (2) needs: the sample is exact
in every case, and a shared counter only costs code length (larger indices).

**Message** ``(bin, index)``: ``log2 J`` bits for the bin (uniform when ``P`` is the marginal) and a
Zipf code for the index; ``E log2(n* + 1) <= E_Q log2(1 + r / J)``, so the total is about
``D_KL[Q||P] + E[(log2 J - log2 r)_+]`` plus the Zipf overhead (see :mod:`jaxrec.coding`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import (
    INVALID_INPUT,
    OK,
    CodeBase,
    Coder,
    CoderSpec,
    check_bounded_ratio,
    check_positive_int,
    code_type,
    coder_factory,
    static_field,
)
from jaxrec.coders.scan import scan_coder
from jaxrec.coders.sp.partition import (
    AxisTables,
    Partition,
    WeightPolicy,
    axis_tables,
    bin_dtype,
    draw_words,
    log_scaled_bin_weights,
    resolve_policy,
    reweighted_dinf,
    sample_bins,
)
from jaxrec.core import arrivals, prng
from jaxrec.core.distributions import Distribution, log_ratio_per_dim
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.entropy import PlanAlphabetModel

Array = jax.Array
# (counter state, packed bins (hi, lo) uint32[K] each, candidate numbers int32[K]) -> (within-bin indices, state)
IndexFn = Callable[[Any, tuple[Array, Array], Array], tuple[Array, Any]]
# (key, target, prior, partition, bins [D, K] (any integer type), packed bins, within-bin indices) -> log r (K,)
LogRatioFn = Callable[[Array, Distribution, Distribution, Partition, Array, tuple[Array, Array], Array], Array]
# (key, prior, partition, bins int32[D], index) -> the point (D,): the decoder's side of a LogRatioFn
CandidateFn = Callable[[Array, Distribution, Partition, Array, Array], Array]

MAX_STEPS = 2**30
MAX_TABLE_SIZE = 2**16
MAX_SEARCH_INTERVALS = 2**15
_KEY_MIX = 0x9E3779B9

__all__ = [
    "SPCode", "VisitCounts", "bin_candidate", "bin_log_ratios", "bin_streams", "labelled_streams", "sp_chunk_fn",
    "sp_pfr", "within_bin_candidate", "within_bin_log_ratios",
]


@code_type
class SPCode(CodeBase):
    """What a space-partitioning coder sends, plus diagnostics.

    Attributes:
      bin: ``int32[D]``, the winner's interval index on each axis (``0 <= bin_d < J_d``).
      index: ``int32``, the winner's 0-based index: SP-PFR, within its bin's stream (the number of
        earlier visits to its bin's counter); SP-ORC, its candidate number (the item of the
        candidate stream its point is drawn from).
      steps: ``int32``, candidates examined (``E[steps] = 2^{D_inf[Q||P']}`` for SP-PFR).
      status: ``int32`` (:mod:`jaxrec.coders.base`); ``EXHAUSTED`` when SP-PFR hit ``max_steps``.
    """

    MESSAGE: ClassVar[tuple[str, ...]] = ("bin", "index")
    bin: Array
    index: Array
    steps: Array
    status: Array
    coder: str = static_field()
    event_size: int = static_field()


def axis_partition(partition: Partition, axis: Array) -> Partition:
    """The one-axis partition of axis ``axis`` (``num_intervals`` a scalar): its methods then act
    elementwise on that axis' ``(K,)`` bins and bits."""
    return jax.tree.map(lambda counts: counts[..., axis], partition)


def within_bin_candidate(stream: prng.Stream, prior: Distribution, partition: Partition, bins: Array, index: Array) -> Array:
    """``(D,)``: the point in bins ``bins`` (``int32[D]``) drawn from item ``index`` of ``stream``
    (key data ``uint32[2]`` or :class:`~jaxrec.core.prng.LabelledStreams`): its ``D`` words
    (:func:`jaxrec.core.prng.counter_words`) feed :meth:`Partition.sample_in_bin`.  O(D)."""
    words = prng.counter_words(stream, jnp.asarray(index)[None], partition.event_size)[:, 0]
    return partition.sample_in_bin(prior, bins, words)


def within_bin_log_ratios(
    stream: prng.Stream, target: Distribution, prior: Distribution, partition: Partition, bins: Array, index: Array
) -> Array:
    """``log r`` in nats of the points :func:`within_bin_candidate` draws, for a chunk of ``K``
    (bin, item) pairs: ``stream`` key data ``uint32[2]`` (shared), ``uint32[K, 2]`` (one per pair)
    or :class:`~jaxrec.core.prng.LabelledStreams` (a label per pair), bins axis-major ``[D, K]`` of
    any integer type, items ``int32[K]``.  Returns ``(K,)``, the points never materialized: the words feed the
    per-axis within-bin sampler and log ratio inside one loop over the items
    (:func:`jaxrec.core.prng.sum_over_words`), the same numbers the candidate function turns into
    points."""

    def term(axis: Array, words: Array) -> Array:
        t, p = (jax.tree.map(lambda a: a[..., axis], dist) for dist in (target, prior))
        x = axis_partition(partition, axis).sample_in_bin(p, bins[axis], words)
        return log_ratio_per_dim(t, p, x)

    return prng.sum_over_words(stream, index, partition.event_size, term)


def labelled_streams(partition: Partition, shared_keys: bool) -> bool:
    """Whether SP-PFR's bin streams are :class:`~jaxrec.core.prng.LabelledStreams` (row keys shared
    by every bin, the packed bin index in the counter): with ``shared_keys`` when every bin of
    every partition of this shape packs into 32 bits (:attr:`Partition.packed_bits_bound`, static,
    so a traced partition draws what a concrete one does); else one key per bin
    (:func:`jaxrec.core.prng.bin_stream`)."""
    return shared_keys and partition.packed_bits_bound <= 32


def bin_streams(key: Array, partition: Partition, packed: tuple[Array, Array], labelled: bool) -> prng.Stream:
    """The shared streams of the bins packed as ``(hi, lo)`` (scalars or ``uint32[K]``): labelled
    by ``lo`` under :func:`~jaxrec.core.prng.bin_row_keys` (``labelled``, format version 5), or
    one key per bin, :func:`~jaxrec.core.prng.bin_stream` (versions 2 to 4, and grids whose
    packed index needs more than 32 bits).  Distinct bins draw from distinct streams either way."""
    if labelled:
        return prng.LabelledStreams(prng.bin_row_keys(key, (partition.event_size + 1) // 2), packed[1])
    return prng.bin_stream(key, *packed)


def bin_candidate(
    key: Array, prior: Distribution, partition: Partition, bins: Array, index: Array, *, labelled: bool
) -> Array:
    """``X^{(j)}_n ~ P(. | B_j)``: ``(D,)`` from ``(key, bins, index)`` in O(D): element ``n`` of the
    bin's shared stream (:func:`bin_streams` of the bin's packed index :meth:`Partition.stream_words`;
    ``labelled``: :func:`labelled_streams` of the coder)."""
    stream = bin_streams(key, partition, partition.stream_words(bins), labelled)
    return within_bin_candidate(stream, prior, partition, bins, index)


def bin_log_ratios(
    key: Array, target: Distribution, prior: Distribution, partition: Partition, bins: Array,
    packed: tuple[Array, Array], index: Array, *, labelled: bool,
) -> Array:
    """``log r(X^{(j_k)}_{n_k})`` in nats for a chunk of ``K`` (bin, index) pairs: bins axis-major
    ``[D, K]`` (any integer type), their packed words ``(hi, lo)`` and the indices ``int32[K]``; ``(K,)``, the
    numbers :func:`bin_candidate` turns into points."""
    stream = bin_streams(key, partition, packed, labelled)
    return within_bin_log_ratios(stream, target, prior, partition, bins, index)


def _fmix32(h: Array) -> Array:
    """MurmurHash3's 32-bit finalizer (a bijection of ``uint32`` that mixes all bits)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def counter_slots(partition: Partition, packed: tuple[Array, Array], table_size: int) -> Array:
    """``int32[K]`` counter slots of packed bins ``(hi, lo)`` in a table of ``table_size`` (a power
    of two) slots: the packed index itself when the whole grid fits (``sum_d ceil(log2 J_d) <=
    log2 table_size``, one counter per bin), else ``fmix32(lo ^ hi * c)`` masked."""
    hi, lo = packed
    hi_max, lo_max = partition.stream_words(partition.num_intervals - 1)  # fields are disjoint: the largest
    fits = (hi_max == 0) & (lo_max < jnp.uint32(table_size))
    hashed = _fmix32(lo ^ (hi * jnp.uint32(_KEY_MIX)))
    return (jnp.where(fits, lo, hashed) & jnp.uint32(table_size - 1)).astype(jnp.int32)


def fitted_table_size(partition: Partition, table_size: int) -> int:
    """The number of visit counters a search carries: ``table_size``, or fewer when the partition
    is concrete and its packed grid fits in a smaller power of two.  The slots are the packed bin
    indices either way (:func:`counter_slots`), so the codes are the same; the search state shrinks
    (batch lanes select over it at every step)."""
    if isinstance(partition.num_intervals, jax.core.Tracer):
        return table_size
    with jax.ensure_compile_time_eval():  # concrete even inside an outer trace
        hi_max, lo_max = partition.stream_words(partition.num_intervals - 1)  # as counter_slots' test
    if int(hi_max) != 0 or int(lo_max) >= table_size:
        return table_size
    return 1 << int(lo_max).bit_length()


# VisitCounts.assign on CPU ranks a chunk in blocks of RANK_BLOCK candidates.  Measured on a 2-core
# CPU (one core, T = 4096 counters, ns per candidate, one problem at K = 1024 / 64 vmapped lanes at
# K = 128): one sort of the chunk's slots 33 / 26; blocks of 32 7 / 5; blocks of 16 11 / 9.  On
# accelerators tables of at most SMALL_TABLE counters use per-block histograms instead of the sort.
RANK_BLOCK = 32
SMALL_TABLE = 64


def later_in_blocks(slots: Array, table_size: int) -> tuple[Array, Array]:
    """Cuts ``slots`` (``int32[K]``) into blocks of ``RANK_BLOCK``, padded with slot
    ``table_size``: ``(blocks, later)``, both ``int32[ceil(K / RANK_BLOCK), RANK_BLOCK]``, with
    ``later`` the number of positions after each one in its block holding the same slot."""
    size = slots.shape[0]
    padded = -(-size // RANK_BLOCK) * RANK_BLOCK
    blocks = jnp.pad(slots, (0, padded - size), constant_values=table_size).reshape(-1, RANK_BLOCK)
    position = jnp.arange(RANK_BLOCK)
    after = position[None, :] > position[:, None]
    return blocks, jnp.sum((blocks[:, None, :] == blocks[:, :, None]) & after, axis=2, dtype=jnp.int32)


def count_in_blocks(counts: Array, slots: Array) -> tuple[Array, Array]:
    """:meth:`VisitCounts.assign` on CPU: the blocks of :func:`later_in_blocks` in order (a
    :func:`jax.lax.scan`), each added to the counters by one scatter-add (repeated slots summed),
    after which a candidate's index is its slot's count less one less its block's later visits to
    the slot (one gather).  The counters are read after the update: a read before it makes XLA
    copy the table (carried in a loop) at every block.  O(K RANK_BLOCK) elementwise work and
    ``2 K / RANK_BLOCK`` gathers and scatters per chunk, whatever the table size; the padding
    slot is dropped by the scatters and filled by the gathers.  Returns ``(index int32[K],
    counts)``."""
    blocks, later = later_in_blocks(slots, counts.shape[0])

    def block(counts: Array, rows: tuple[Array, Array]) -> tuple[Array, Array]:
        block_slots, block_later = rows
        counts = counts.at[block_slots].add(1, mode="drop")
        return counts, counts.at[block_slots].get(mode="fill", fill_value=0) - 1 - block_later

    counts, index = lax.scan(block, counts, (blocks, later))
    return index.reshape(-1)[: slots.shape[0]], counts


def count_by_histograms(counts: Array, slots: Array) -> tuple[Array, Array]:
    """:meth:`VisitCounts.assign` on accelerators for a table of at most ``SMALL_TABLE`` counters:
    the per-block slot histograms ``[K / RANK_BLOCK, T]`` of :func:`later_in_blocks`' blocks,
    summed over the blocks up to each one, give every slot's count through each block; a
    candidate's index is its slot's count through its block less one less the block's later visits
    to the slot.  O(K (RANK_BLOCK + T)) elementwise work, no sort, a fixed number of kernels.
    Returns ``(index int32[K], counts)``."""
    table = counts.shape[0]
    blocks, later = later_in_blocks(slots, table)
    histogram = jnp.sum(blocks[:, :, None] == jnp.arange(table, dtype=jnp.int32), axis=1, dtype=jnp.int32)
    through = counts + jnp.cumsum(histogram, axis=0)  # [blocks, T]: visits per slot through each block
    index = jnp.take_along_axis(through, blocks, axis=1, mode="clip") - 1 - later
    return index.reshape(-1)[: slots.shape[0]], through[-1]


def later_in_run(sorted_keys: Array) -> Array:
    """For sorted keys ``[K]``: the number of elements after each one in its run of equal keys."""
    size = sorted_keys.shape[0]
    idx = jnp.arange(size, dtype=jnp.int32)
    ends = jnp.concatenate([sorted_keys[1:] != sorted_keys[:-1], jnp.array([True])])
    return lax.cummin(jnp.where(ends, idx, size), reverse=True) - idx


def sort_by_group(groups: Array) -> tuple[Array, Array]:
    """Sorts positions ``0..K-1`` by ``(groups, position)``: returns ``(sorted groups, positions)``.

    ``groups`` is ``int32[K]`` with ``(max(groups) + 1) K <= 2^32``: ``group * K + position`` is
    sorted as one ``uint32`` operand, several times faster on CPU than a sort with a payload.
    """
    size = groups.shape[0]
    packed = jnp.sort(groups.astype(jnp.uint32) * jnp.uint32(size) + jnp.arange(size, dtype=jnp.uint32))
    return (packed // size).astype(jnp.int32), (packed % size).astype(jnp.int32)


def count_by_sort(counts: Array, slots: Array) -> tuple[Array, Array]:
    """:meth:`VisitCounts.assign` on accelerators: one sort of the chunk's slots gives each
    candidate the number of later visits to its slot within the chunk; its index is its slot's
    count after the chunk (one scatter-add, then one gather: read before the update, the table
    carried in a loop is copied at every chunk) less one less those.  A constant number of kernels
    per chunk (the blocks of :func:`count_in_blocks` would launch ``2 K / RANK_BLOCK`` dependent
    ones); O(K log K).  Returns ``(index int32[K], counts)``."""
    groups, positions = sort_by_group(slots)
    later = jnp.zeros_like(slots).at[positions].set(later_in_run(groups), unique_indices=True)
    counts = counts.at[slots].add(1)
    return counts[slots] - 1 - later, counts


class VisitCounts(NamedTuple):
    """Visit counters of SP-PFR: ``int32[table_size]``, one per slot (:func:`counter_slots`)."""

    counts: Array

    @classmethod
    def empty(cls, table_size: int) -> VisitCounts:
        return cls(jnp.zeros((table_size,), jnp.int32))

    def assign(self, slots: Array, ns: Array) -> tuple[Array, VisitCounts]:
        """Within-bin indices for one chunk and the updated counters: candidate ``k``'s index is
        the number of earlier visits to its slot (all chunks before, and the chunk's candidates
        before ``k``), exactly the one-at-a-time rule, so it does not depend on the chunking.
        ``slots``: ``int32[K]`` in ``[0, T)``; ``ns`` is unused (the order is the chunk's).

        Implementations with the same results, chosen when the program is lowered
        (:func:`jax.lax.platform_dependent`): blocks of 32 counted in order on CPU
        (:func:`count_in_blocks`, O(32 K)); elsewhere a fixed number of kernels per chunk, per-block
        histograms for at most ``SMALL_TABLE`` counters (:func:`count_by_histograms`, O(K (32 +
        T))), else one sort (:func:`count_by_sort`, O(K log K)).
        """
        accelerators = count_by_histograms if self.counts.shape[0] <= SMALL_TABLE else count_by_sort
        index, counts = lax.platform_dependent(self.counts, slots, cpu=count_in_blocks, default=accelerators)
        return index, VisitCounts(counts)


def sp_chunk_fn(
    key: Array, target: Distribution, prior: Distribution, partition: Partition, index_fn: IndexFn,
    log_ratios: LogRatioFn,
) -> search.ChunkFn:
    """The space-partitioning chunk function for :func:`jaxrec.search.search`.

    State: ``(arrival-time limbs uint32[4], counter state of index_fn, AxisTables)``; the tables
    ride in the state (built once per problem by the caller) rather than in the closure, so a
    batched search that rebuilds closures per iteration does not rebuild them.  Payload: the
    candidates' within-bin indices ``int32[K]``; their bins are not carried (a ``[K, D]`` payload
    cost SP-PFR 8% of its time at D = 25: the search materializes it for the winner's row) but
    drawn again for the winner alone (:func:`finish_sp`).  Scores and bounds as in the module
    docstring (nats); the arrival times and bins from :func:`private_draws`, handed to the points'
    log ratios in :func:`in_bin_dtype`.  ``index_fn`` gives the within-bin indices, ``log_ratios``
    the points' log ratios (the coder's decoder rebuilds the same points: SP-PFR :func:`bin_log_ratios`, SP-ORC its numbered stream).
    """
    dtype = prior.dtype
    point_bins = in_bin_dtype(partition)

    def chunk_fn(state: tuple[Array, Any, AxisTables], ns: Array) -> tuple[Array, Array, Array, tuple]:
        base, counter, tables = state
        time_words, bins = private_draws(key, tables, partition, ns)
        packed = partition.pack_columns(bins)
        index, counter = index_fn(counter, packed, ns)
        log_r = log_ratios(key, target, prior, partition, bins.astype(point_bins), packed, index)
        log_jpi = log_scaled_bin_weights(tables, partition, bins)
        log_t, base = arrivals.log_arrival_times(base, arrivals.increments_from_words(time_words), dtype)
        scores = log_r - log_jpi - log_t
        return scores, tables.log_bound - log_t, index, (base, counter, tables)

    return chunk_fn


def in_bin_dtype(partition: Partition) -> jnp.dtype:
    """The integer type in which a chunk hands its ``(D, K)`` bins to the in-bin points: the
    narrowest (:func:`~jaxrec.coders.sp.partition.bin_dtype`) when all of their hash rows run in
    :func:`jaxrec.core.prng.sum_over_words`' loop (``D // 2`` a multiple of 4 and at least 8:
    D = 16, 17, 24, 25, ...), else ``int32``.  Measured on one CPU core (SP-PFR, ``J_d = 2``,
    ``encode_batch`` of 1,024 problems, ns per candidate, ``int32`` -> ``uint8``): D = 16 124 -> 108, 17 99 -> 88, 25 (64 lanes x 128,
    the chunk alone) 120 -> 97; but D = 5, 8, 10, 13, 14, whose rows (or some of them) are unrolled
    outside the loop, 2-3.5x slower (D = 14 103 -> 341), as was ``uint8`` for the packed index at
    D = 5.  How XLA:CPU compiles the narrow reads was not understood further; single chunks did not
    show the slowdown."""
    groups, unrolled = prng.looped_rows(partition.event_size)
    return bin_dtype(partition.max_intervals) if groups and not unrolled else jnp.dtype(jnp.int32)


def private_draws(key: Array, tables: AxisTables, partition: Partition, ns: Array) -> tuple[Array, Array]:
    """Candidates ``ns``' (``int32[K]``) encoder-only draws: ``(arrival-time words uint32[K], bins
    int32[D, K])``, from ``1 + W`` words of :func:`jaxrec.core.prng.private_stream` each (one hash
    per two): word ``0`` for the arrival time, words ``1..W`` for the bins (:func:`sample_bins`:
    16-bit draws, two axes per word, for tables of at most 16 intervals; an axis' bits do not
    depend on the number of axes, so a padded block draws the same bins for its live axes).  A
    pure function of ``(key, n)``: the chunk draws every candidate's, :func:`finish_sp` the
    winner's again."""
    drawn_axes = partition.drawn_axes()
    words = prng.counter_words(prng.private_stream(key), ns, 1 + draw_words(drawn_axes, partition.max_intervals))
    return words[0], sample_bins(tables, words[1:], drawn_axes)


def check_partition(partition: Any) -> Partition:
    """Raises :class:`InvalidArgumentError` unless ``partition`` is a :class:`Partition` whose
    tables the search can draw from: at most ``MAX_SEARCH_INTERVALS`` intervals per axis (its
    integer bin weights of 31 bits then always fit, :func:`~jaxrec.coders.sp.partition.quantized_weights`)."""
    if not isinstance(partition, Partition):
        raise InvalidArgumentError(f"partition must be a jaxrec.coders.sp.partition.Partition, got {type(partition).__name__}")
    if partition.max_intervals > MAX_SEARCH_INTERVALS:
        raise InvalidArgumentError(
            f"a space-partitioning search draws bins from axes of at most {MAX_SEARCH_INTERVALS} intervals, "
            f"got max_intervals={partition.max_intervals}"
        )
    return partition


def check_table_size(table_size: Any) -> None:
    """Raises :class:`InvalidArgumentError` unless ``table_size`` is a power of two in ``[1, 2^16]``."""
    check_positive_int("table_size", table_size, MAX_TABLE_SIZE)
    if table_size & (table_size - 1):
        raise InvalidArgumentError(f"table_size must be a power of two, got {table_size}")


def check_event_size(partition: Partition, prior: Distribution) -> None:
    if prior.event_size != partition.event_size:
        raise InvalidArgumentError(
            f"prior event size {prior.event_size} != partition event size {partition.event_size}"
        )


def spec_params(partition: Partition, **params: Any) -> tuple[tuple[str, Any], ...]:
    """Static spec entries: the partition's counts (``None`` when traced) and ``params``."""
    counts = partition.num_intervals
    counts = None if isinstance(counts, jax.core.Tracer) else tuple(np.asarray(counts).tolist())
    return (("num_intervals", counts), ("max_intervals", partition.max_intervals)) + tuple(params.items())


def make_decode(partition: Partition, candidate: CandidateFn) -> Callable[[Any, SPCode, Distribution], Array]:
    """``decode(key, code, prior) -> (D,)``: ``candidate(key, prior, partition, code.bin, code.index)``
    (SP-PFR: :func:`bin_candidate`, the bin stream's element ``code.index``); O(D)."""

    def decode(key: Any, code: SPCode, prior: Distribution) -> Array:
        check_event_size(partition, prior)
        return candidate(prng.as_key(key), prior, partition, code.bin, code.index)

    return decode


def with_tables(
    target: Distribution, prior: Distribution, partition: Partition, weights: str | WeightPolicy
) -> tuple[Distribution, AxisTables]:
    """``(target, its AxisTables)``: built once per problem before the search (``encode_batch``
    builds them for the whole batch instead of once per lane and iteration)."""
    return target, axis_tables(target, prior, partition, weights)


def weights_status(problem: tuple[Distribution, AxisTables], prior: Distribution, partition: Partition) -> Array:
    """``INVALID_INPUT`` where the bin weights are undefined (a NaN search bound in the problem's
    tables, e.g. ``"sup_ratio"`` with an unbounded density ratio) or the partition is invalid (a
    traced count outside ``[1, max_intervals]``, :meth:`Partition.valid`), else ``OK`` (traceable)."""
    _, tables = problem
    undefined = jnp.isnan(tables.log_bound)
    return jnp.where(undefined | ~partition.valid(), INVALID_INPUT, OK).astype(jnp.int32)


def per_problem(fn: Callable[..., Array], target: Distribution, prior: Distribution, *args: Any) -> Array:
    """``fn(target, prior, *args)`` for one problem, mapped over a batch axis of ``target`` (and of
    ``prior`` when it has one): the boundary checks of ``encode_batch`` see whole batches."""
    if target.batch_shape:
        return jax.vmap(lambda t, p: fn(t, p, *args), in_axes=(0, 0 if prior.batch_shape else None))(target, prior)
    return fn(target, prior, *args)


@functools.partial(jax.jit, static_argnums=3)
def batch_reweighted_dinf(
    target: Distribution, prior: Distribution, partition: Partition, weights: str | WeightPolicy
) -> Array:
    """:func:`~jaxrec.coders.sp.partition.reweighted_dinf` per problem (:func:`per_problem`), in
    bits, compiled once per shapes and weight policy: the boundary checks of ``encode`` and
    ``encode_batch`` run it outside the search (op by op, the tables of 1,024 5-D problems took
    56-89 ms a call on CPU, twice per ``encode_batch``; compiled, 1.5-11 ms)."""
    return per_problem(reweighted_dinf, target, prior, partition, weights)


def check_weights(
    target: Distribution, prior: Distribution, partition: Partition, weights: str | WeightPolicy
) -> None:
    """Raises outside ``jit`` when the bin weights are undefined (NaN search bound), e.g.
    ``"sup_ratio"`` with an unbounded density ratio; no-op on tracers (:func:`weights_status`
    flags them there).  ``target`` (and ``prior``) may carry one batch axis."""
    if any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves((target, prior, partition))):
        return
    undefined = jnp.any(jnp.isnan(batch_reweighted_dinf(target, prior, partition, weights)))
    if not isinstance(undefined, jax.core.Tracer) and bool(undefined):  # concrete arguments inside a jit trace
        raise InvalidArgumentError(
            "the bin weights are undefined for this target (e.g. 'sup_ratio' with an unbounded density "
            "ratio); use weights='q_mass'"
        )


def finish_sp(
    res: search.SearchResult, key: Array, problem: tuple[Distribution, AxisTables], partition: Partition
) -> dict[str, Array]:
    """The message fields of a space-partitioning code: the winner's bins ``int32[D]``, drawn
    again from its candidate number ``res.index`` (:func:`private_draws`, the chunk's own draws),
    and its within-bin index (the payload).  A search without a winner (every score ``-inf``: an
    invalid input) keeps the empty payload's zeros for both."""
    _, tables = problem
    bins = private_draws(key, tables, partition, res.index[None])[1][:, 0]
    return {"bin": jnp.where(res.score > -jnp.inf, bins, 0), "index": res.payload}


@coder_factory
def sp_pfr(
    partition: Partition,
    weights: str | WeightPolicy = "sup_ratio",
    chunk_size: int = 256,
    max_steps: int = 2**26,
    table_size: int = 4096,
    shared_keys: bool = True,
) -> Coder:
    """Exact space-partitioning PFR coder.

    Args:
      partition: the grid (shared with the decoder; captured here).
      weights: bin-weight policy, ``"sup_ratio"`` (default: minimizes ``D_inf[Q||P']``, the
        expected steps), ``"q_mass"``, or a callable (:mod:`jaxrec.partition`).  The law of the
        output and of the code length do not depend on it, only the steps do (the realized code
        does); the decoder never needs it.
      chunk_size: candidates per ``while_loop`` iteration (1 to 2^15); does not change the code.
      max_steps: candidate limit (at most ``2^30``); reaching it sets the status ``EXHAUSTED``.
      table_size: visit counters (a power of two, at most 2^16): one per bin when the packed
        grid fits (``sum_d ceil(log2 J_d) <= log2 table_size``), else bins share counters by a
        hash (:func:`counter_slots`; exact samples still, slightly larger indices).  Per-chunk cost
        does not depend on the size (:meth:`VisitCounts.assign`); memory is 4 bytes a counter, and a
        concrete partition whose grid fits in fewer counters carries only those
        (:func:`fitted_table_size`, same codes).
      shared_keys: the bins' streams share one key per hash row and carry the bin in the counter
        (:func:`labelled_streams`: format version 5, when ``D ceil(log2 max_intervals) <= 32``; a
        hash and a key per candidate fewer), else one key per bin (``False``: the points of format
        versions 2 to 4, which the decoder of an older file uses).  Changes the code, not its law.

    Returns:
      A :class:`~jaxrec.Coder` with ``encode(key, target, prior) -> SPCode``,
      ``decode(key, code, prior) -> (D,)`` (both jit- and vmap-able) and ``encode_batch`` (many
      problems on refilling lanes, :func:`jaxrec.encode_batch`; same codes as ``vmap(encode)``).
      A custom policy with ``pi = 0`` where Q has mass makes ``M'`` infinite: the search then
      runs to ``max_steps`` and reports ``EXHAUSTED``.
    """
    check_partition(partition)
    resolve_policy(weights)
    check_positive_int("max_steps", max_steps, MAX_STEPS)
    check_table_size(table_size)
    if not isinstance(shared_keys, bool):
        raise InvalidArgumentError(f"shared_keys must be a bool, got {shared_keys!r}")
    labelled = labelled_streams(partition, shared_keys)

    def validate(target: Distribution, prior: Distribution) -> None:
        check_event_size(partition, prior)
        check_bounded_ratio(target, prior)
        check_weights(target, prior, partition, weights)

    counters = fitted_table_size(partition, table_size)

    def count_visits(counts: VisitCounts, packed: tuple[Array, Array], ns: Array) -> tuple[Array, VisitCounts]:
        return counts.assign(counter_slots(partition, packed, counters), ns)

    def prepare(key: Array, problem: tuple[Distribution, AxisTables], prior: Distribution) -> tuple[search.ChunkFn, Any]:
        target, tables = problem
        chunk_fn = sp_chunk_fn(
            key, target, prior, partition, count_visits, functools.partial(bin_log_ratios, labelled=labelled)
        )
        return chunk_fn, (arrivals.zero_time(), VisitCounts.empty(counters), tables)

    spec = CoderSpec(
        "sp_pfr",
        spec_params(
            partition, chunk_size=chunk_size, max_steps=max_steps, table_size=table_size, shared_keys=shared_keys
        ),
    )
    return scan_coder(
        spec, prepare=prepare, finish=functools.partial(finish_sp, partition=partition), chunk_size=chunk_size,
        max_candidates=max_steps, exact=True,
        validate=validate, decode=make_decode(partition, functools.partial(bin_candidate, labelled=labelled)),
        code_class=SPCode,
        precompute=functools.partial(with_tables, partition=partition, weights=weights),
        problem_status=functools.partial(weights_status, partition=partition),
        expected_log2_steps=lambda target, prior: batch_reweighted_dinf(target, prior, partition, weights),
    )


def _log2_num_bins(plan: Any) -> np.ndarray:
    """``log2 J`` of each block's partition, ``float64[B]``."""
    return np.log2(np.asarray(plan.partitions.num_intervals, np.float64)).sum(axis=-1)


def partition_counts(plan: Any, symbol: str) -> np.ndarray:
    """The alphabet of the ``bin`` symbols: ``J_d`` of every block and axis, ``int[B, S]``."""
    return np.asarray(plan.partitions.num_intervals)


def sp_pfr_message(spec: CoderSpec, budget_bits: float, plan: Any) -> registry.Message:
    """The bin, uniform per axis over its ``J_d`` intervals (the plan's partition), and the within-bin
    index under a Zipf model of ``KL - mean log2 J``: it costs about ``E log2(1 + r/J) <= (KL - log2 J)_+
    + 1`` bits (He, Flamich & Hernandez-Lobato, NeurIPS 2024, Sec. 3)."""
    return ("bin", PlanAlphabetModel()), ("index", registry.zipf_model(budget_bits - float(_log2_num_bins(plan).mean())))


registry.register_coder(
    "sp_pfr", sp_pfr, params=("chunk_size", "max_steps", "table_size", "shared_keys"), message=sp_pfr_message,
    partitioned=True, check=check_bounded_ratio, alphabet=partition_counts,
    oldest_format={"float32": 3},  # version 3: the polynomial within-bin quantile in float32
    added_params={"shared_keys": (5, False)},  # version 5: labelled bin streams; versions 2-4 drew one key per bin
)
