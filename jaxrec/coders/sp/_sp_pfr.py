"""SP-PFR: exact space-partitioning PFR (He, Flamich & Hernandez-Lobato, NeurIPS 2024).

Reference notes: space-partitioning.md §5.3-5.4.  A :class:`~jaxrec.coders.sp.partition.Partition` cuts the
space into bins ``B_j`` of prior mass ``1/J``; the encoder searches bins in proportion to weights
``pi_j`` (:mod:`jaxrec.partition`), i.e. draws from ``P' = sum_j pi_j P(. | B_j)``, and sends the
winner's bin ``j*`` and its index ``n*`` *within* the bin.

**Shared streams.**  Bin ``j`` has its own stream ``X^{(j)}_0, X^{(j)}_1, ... ~ P(. | B_j)`` iid,
``X^{(j)}_n`` a pure function of ``(key, j, n)`` (:func:`bin_candidate`), so decoding is O(D).

**Encoder** (private randomness: ``arrival_key`` times, ``bin_key`` bin choices).  Candidate
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
``pi`` only changes the exploration order: ``E[steps] = M' = 2^{D_inf[Q||P']}``.

**Within-bin indices** (the visit counter, :class:`VisitTable`).  ``n_m`` is the number of earlier
visits to ``j_m``, kept in a bucketed hash table of (bin key, count) carried in the search state
(``table_size`` slots: buckets of 16 ways, no array of size ``J``).  Per chunk of ``K`` candidates a
stable sort of the chunk's bin keys gives within-chunk ranks, one gather per candidate reads its
bucket, and new bins take their bucket's free ways in order of first visit -- O(K log K) per
chunk, independent of the table size, and exactly the outcome of processing candidates one at a
time, so indices do not depend on the chunk size.  A bin never moves or leaves; a bin whose
bucket is full at its first visit is never counted and gets ``n_m = 2^30 + m`` (distinct per visit,
disjoint from counts).  A key is the packed bin index folded to 32 bits (exact for
``J <= 2^32``); two bins sharing a key share a counter.  All cases satisfy (2), so the sample is
exact in every case; they only cost code length (``SPCode.index >= 2^30`` flags an uncounted bin).

**Message** ``(bin, index)``: ``log2 J`` bits for the bin (uniform when ``P`` is the marginal) and a
Zipf code for the index; ``E log2(n* + 1) <= E_Q log2(1 + r / J)``, so the total is about
``D_KL[Q||P] + E[(log2 J - log2 r)_+]`` plus the Zipf overhead (see :mod:`jaxrec.coding`).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import (
    CodeBase,
    Coder,
    CoderSpec,
    check_bounded_ratio,
    check_positive_int,
    code_type,
    static_field,
)
from jaxrec.coders.scan import scan_coder
from jaxrec.coders.sp.partition import (
    AxisTables,
    Partition,
    WeightPolicy,
    axis_tables,
    reweighted_dinf,
    sample_bins,
)
from jaxrec.core import arrivals, prng
from jaxrec.core.distributions import Distribution, log_ratio
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.entropy import PlanAlphabetModel

Array = jax.Array
# (counter state, bin keys uint32[K], candidate numbers int32[K]) -> (within-bin indices, state)
IndexFn = Callable[[Any, Array, Array], tuple[Array, Any]]

OVERFLOW_BASE = 2**30
WAYS = 16
MAX_STEPS = OVERFLOW_BASE - arrivals.MAX_CHUNK
_EMPTY_KEY = 0xFFFFFFFF
_MAX_KEY = 0xFFFFFFFE
_KEY_MIX = 0x9E3779B9

__all__ = ["SPCode", "VisitTable", "bin_candidate", "sp_chunk_fn", "sp_pfr"]


@code_type
class SPCode(CodeBase):
    """What a space-partitioning coder sends, plus diagnostics.

    Attributes:
      bin: ``int32[D]``, the winner's interval index on each axis (``0 <= bin_d < J_d``).
      index: ``int32``, the winner's 0-based index within its bin's stream (``>= 2^30`` only if
        the visit table overflowed, see the module docstring).
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


def bin_candidate(key: Array, prior: Distribution, partition: Partition, bins: Array, index: Array) -> Array:
    """``X^{(j)}_n ~ P(. | B_j)``: ``(D,)`` from ``(key, bins, index)`` in O(D).

    The bin's packed index ``(hi, lo)`` (:meth:`Partition.stream_words`) names the stream:
    ``candidate_key(fold_in(key, hi), n, stream=lo)``, whose bits feed
    :meth:`Partition.sample_in_bin`.
    """
    hi, lo = partition.stream_words(bins)
    ckey = prng.candidate_key(prng.fold_in_index(key, hi), index, stream=lo)
    bits = jax.random.bits(ckey, (partition.event_size,), jnp.uint32)
    return partition.sample_in_bin(prior, bins, bits)


def table_key(partition: Partition, bins: Array) -> Array:
    """32-bit counter key of bins ``int32[..., D]``: the packed index when ``J <= 2^32``, else its
    two words mixed; capped below the empty-slot marker (collisions only merge counters)."""
    hi, lo = partition.stream_words(bins)
    return jnp.minimum(lo ^ (hi * jnp.uint32(_KEY_MIX)), jnp.uint32(_MAX_KEY))


def run_ranks(sorted_keys: Array) -> tuple[Array, Array]:
    """For sorted keys ``[K]``: each element's 0-based rank within its run of equal keys, and the
    position of its run's first element."""
    idx = jnp.arange(sorted_keys.shape[0], dtype=jnp.int32)
    starts = jnp.concatenate([jnp.array([True]), sorted_keys[1:] != sorted_keys[:-1]])
    first = lax.cummax(jnp.where(starts, idx, 0))
    return idx - first, first


def sort_by_group(groups: Array) -> tuple[Array, Array]:
    """Sorts positions ``0..K-1`` by ``(groups, position)``: returns ``(sorted groups, positions)``.

    ``groups`` is ``int32[K]`` with ``(max(groups) + 1) K <= 2^32``: ``group * K + position`` is
    sorted as one ``uint32`` operand, several times faster on CPU than a sort with a payload.
    """
    size = groups.shape[0]
    packed = jnp.sort(groups.astype(jnp.uint32) * jnp.uint32(size) + jnp.arange(size, dtype=jnp.uint32))
    return (packed // size).astype(jnp.int32), (packed % size).astype(jnp.int32)


def stable_argsort(keys: Array) -> Array:
    """``jnp.argsort(keys, stable=True)`` for ``uint32[K]``; for ``K <= 2^16`` via one sort of the keys,
    a binary search (each key's first sorted position names its class) and :func:`sort_by_group`."""
    size = keys.shape[0]
    if size > 2**16:
        return jnp.argsort(keys, stable=True)
    classes = jnp.searchsorted(jnp.sort(keys), keys, method="scan_unrolled").astype(jnp.int32)
    return sort_by_group(classes)[1]


def _fmix32(h: Array) -> Array:
    """MurmurHash3's 32-bit finalizer (a bijection of ``uint32`` that mixes all bits)."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


class VisitTable(NamedTuple):
    """Bucketed hash table of (bin key, visit count): ``num_buckets x WAYS`` slots.

    A key lives in bucket ``fmix32(key) mod num_buckets``; each bucket's ways fill left to right
    in the order of the keys' first visits, and a key never moves or leaves.  A key whose bucket
    is full at its first visit is never counted.  Empty slots hold ``0xFFFFFFFF`` (above every key).
    """

    keys: Array
    counts: Array

    @classmethod
    def empty(cls, capacity: int) -> "VisitTable":
        num_buckets = max(capacity // WAYS, 1)
        return cls(
            jnp.full((num_buckets, WAYS), _EMPTY_KEY, jnp.uint32), jnp.zeros((num_buckets, WAYS), jnp.int32)
        )

    def assign(self, keys: Array, ns: Array) -> tuple[Array, "VisitTable"]:
        """Within-bin indices for one chunk (candidates ``ns``, increasing) and the updated table.

        Returns ``int32[K]``: the number of earlier visits to the same key, or
        ``OVERFLOW_BASE + ns`` for keys that are not counted.  Exactly the outcome of processing the
        candidates one by one (new keys of a bucket take its free ways in first-visit order), so it
        does not depend on the chunking.  O(K log K + K WAYS).
        """
        num_buckets = self.keys.shape[0]
        size = keys.shape[0]
        # Rank of each candidate among the chunk's visits to its key, and its key's first visit.
        order = stable_argsort(keys)
        sorted_rank, sorted_first = run_ranks(keys[order])
        rank = jnp.zeros((size,), jnp.int32).at[order].set(sorted_rank)
        first = jnp.zeros((size,), jnp.int32).at[order].set(order[sorted_first])
        # Look the keys up in their buckets.
        bucket = (_fmix32(keys) % jnp.uint32(num_buckets)).astype(jnp.int32)
        row = self.keys[bucket]
        match = row == keys[:, None]
        hit = jnp.any(match, axis=-1)
        found_way = jnp.argmax(match, axis=-1).astype(jnp.int32)
        fill = jnp.sum(row != jnp.uint32(_EMPTY_KEY), axis=-1, dtype=jnp.int32)
        # New keys take their bucket's free ways in order of first visit.
        new_start = (rank == 0) & ~hit
        groups, positions = sort_by_group(jnp.where(new_start, bucket, num_buckets))
        rank_in_bucket = jnp.zeros((size,), jnp.int32).at[positions].set(run_ranks(groups)[0])
        new_way = fill + rank_in_bucket
        admitted_start = new_start & (new_way < WAYS)
        way = jnp.where(hit, found_way, new_way[first])
        counted = hit | admitted_start[first]
        previous = jnp.where(hit, self.counts[bucket, found_way], 0)
        index = jnp.where(counted, previous + rank, OVERFLOW_BASE + ns)
        counts = self.counts.at[jnp.where(counted, bucket, num_buckets), way].add(1, mode="drop")
        table_keys = self.keys.at[jnp.where(admitted_start, bucket, num_buckets), new_way].set(keys, mode="drop")
        return index, VisitTable(table_keys, counts)


def sp_chunk_fn(
    key: Array, target: Distribution, prior: Distribution, partition: Partition, index_fn: IndexFn
) -> search.ChunkFn:
    """The space-partitioning chunk function for :func:`jaxrec.search.search`.

    State: ``(arrival-time limbs uint32[4], counter state of index_fn, AxisTables)``; the tables
    ride in the state (built once per problem by the caller) rather than in the closure, so a
    batched search that rebuilds closures per iteration does not rebuild them.  Payload: the
    candidates' ``(bins int32[K, D], within-bin indices int32[K])``.  Scores and bounds as in the
    module docstring (nats).
    """
    dtype = prior.dtype
    num_axes = partition.event_size
    log_counts = jnp.log(partition.num_intervals.astype(dtype))
    axes = jnp.arange(num_axes)

    def chunk_fn(state: tuple[Array, Any, AxisTables], ns: Array) -> tuple[Array, Array, tuple[Array, Array], tuple]:
        base, counter, tables = state
        bin_bits = jax.vmap(lambda n: jax.random.bits(prng.bin_key(key, n), (num_axes,), jnp.uint32))(ns)
        bins = jax.vmap(lambda b: sample_bins(tables, b))(bin_bits)
        index, counter = index_fn(counter, table_key(partition, bins), ns)
        xs = jax.vmap(lambda j, n: bin_candidate(key, prior, partition, j, n))(bins, index)
        log_jpi = jnp.sum(log_counts + tables.log_weight[axes, bins], axis=-1)
        log_t, base = arrivals.log_arrival_times(base, arrivals.exponential_increments(key, ns), dtype)
        scores = log_ratio(target, prior, xs) - log_jpi - log_t
        return scores, tables.log_bound - log_t, (bins, index), (base, counter, tables)

    return chunk_fn


def check_partition(partition: Any) -> Partition:
    if not isinstance(partition, Partition):
        raise InvalidArgumentError(f"partition must be a jaxrec.coders.sp.partition.Partition, got {type(partition).__name__}")
    return partition


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


def make_decode(partition: Partition) -> Callable[[Any, SPCode, Distribution], Array]:
    """``decode(key, code, prior) -> (D,)``: the bin stream's element ``code.index``; O(D)."""

    def decode(key: Any, code: SPCode, prior: Distribution) -> Array:
        check_event_size(partition, prior)
        return bin_candidate(prng.as_key(key), prior, partition, code.bin, code.index)

    return decode


def sp_pfr(
    partition: Partition,
    weights: str | WeightPolicy = "sup_ratio",
    chunk_size: int = 256,
    max_steps: int = 2**26,
    table_size: int = 4096,
) -> Coder:
    """Exact space-partitioning PFR coder.

    Args:
      partition: the grid (shared with the decoder; captured here).
      weights: bin-weight policy, ``"sup_ratio"`` (default: minimizes ``D_inf[Q||P']``, the
        expected steps), ``"q_mass"``, or a callable (:mod:`jaxrec.partition`).  The law of the
        output and of the code length do not depend on it, only the steps do (the realized code
        does); the decoder never needs it.
      chunk_size: candidates per ``while_loop`` iteration (1 to 2^15); does not change the code.
      max_steps: candidate limit (at most ``2^30 - 2^15``); reaching it sets the status ``EXHAUSTED``.
      table_size: slots of the visit table (``16 x`` buckets, at most 2^20): about this many
        distinct bins are counted exactly (a bin whose bucket is full at its first visit is not).
        Per-chunk cost is O(chunk_size log chunk_size) whatever the size; memory is 8 bytes a slot.
        Uncounted bins still give exact samples, with indices ``>= 2^30``.

    Returns:
      A :class:`~jaxrec.Coder` with ``encode(key, target, prior) -> SPCode``,
      ``decode(key, code, prior) -> (D,)`` (both jit- and vmap-able) and ``encode_batch`` (many
      problems on refilling lanes, :func:`jaxrec.encode_batch`; same codes as ``vmap(encode)``).
      A custom policy with ``pi = 0`` where Q has mass makes ``M'`` infinite: the search then
      runs to ``max_steps`` and reports ``EXHAUSTED``.
    """
    check_partition(partition)
    check_positive_int("max_steps", max_steps, MAX_STEPS)
    check_positive_int("table_size", table_size, 2**20)

    def validate(target: Distribution, prior: Distribution) -> None:
        check_event_size(partition, prior)
        check_bounded_ratio(target, prior)

    def prepare(key: Array, target: Distribution, prior: Distribution) -> tuple[search.ChunkFn, Any]:
        tables = axis_tables(target, prior, partition, weights)
        chunk_fn = sp_chunk_fn(key, target, prior, partition, VisitTable.assign)
        return chunk_fn, (arrivals.zero_time(), VisitTable.empty(table_size), tables)

    def finish(res: search.SearchResult) -> dict[str, Array]:
        bins, index = res.payload
        return {"bin": bins, "index": index}

    spec = CoderSpec(
        "sp_pfr",
        spec_params(partition, chunk_size=chunk_size, max_steps=max_steps, table_size=table_size),
    )
    return scan_coder(
        spec, prepare=prepare, finish=finish, chunk_size=chunk_size, max_candidates=max_steps, exact=True,
        validate=validate, decode=make_decode(partition), code_class=SPCode,
        expected_log2_steps=lambda target, prior: reweighted_dinf(target, prior, partition, weights),
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
    "sp_pfr", sp_pfr, params=("chunk_size", "max_steps", "table_size"), message=sp_pfr_message,
    partitioned=True, check=check_bounded_ratio, alphabet=partition_counts,
)
