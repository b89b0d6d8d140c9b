"""SP-ORC: space-partitioning ORC, i.e. SP-PFR truncated at ``N`` candidates (fixed budget).

Reference notes: space-partitioning.md §5.5.  Candidates, bins, arrival times and scores are those
of :mod:`jaxrec.coders.sp_pfr`; the winner is the argmax over the first ``N`` candidates, which is
ORC run on the search distribution ``P' = sum_j pi_j P(. | B_j)`` instead of ``P``.  Its bias is
therefore governed by ``D_KL[Q||P']`` (:func:`jaxrec.coders.sp.partition.reweighted_kl`) rather than
``D_KL[Q||P]``: with ``"q_mass"`` weights (the default) that is
``D_KL[Q||P] - D_KL[Q_B || Unif_J]``, so the same ``N`` covers up to ``log2 J`` more bits of KL.

Within-bin indices: with the budget known, the bins of all ``N`` candidates are drawn up front
(private randomness) and one stable sort gives every candidate its number of earlier visits to its
bin -- O(N log N) time and ``int32[N]`` state, no table and no overflow.  ``index < N`` always.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import (
    INVALID_INPUT,
    OK,
    Coder,
    CoderSpec,
    check_code,
    check_positive_int,
    input_status,
    origin,
    search_status,
    warn_status,
)
from jaxrec.coders.scan import check_single, masked_chunk_fn
from jaxrec.coders.sp._sp_pfr import (
    MAX_STEPS,
    SPCode,
    check_event_size,
    check_partition,
    make_decode,
    partition_counts,
    run_ranks,
    sp_chunk_fn,
    spec_params,
    stable_argsort,
    table_key,
)
from jaxrec.coders.sp.partition import (
    AxisTables,
    Partition,
    WeightPolicy,
    axis_tables,
    sample_bins,
)
from jaxrec.core import arrivals, prng
from jaxrec.core.distributions import Distribution
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.entropy import PlanAlphabetModel, UniformModel

Array = jax.Array

__all__ = ["sp_orc"]


def visit_ranks(key: Array, partition: Partition, tables: AxisTables, num_samples: int) -> Array:
    """``int32[N]``: for each candidate, how many earlier candidates chose its bin."""
    ns = jnp.arange(num_samples, dtype=jnp.int32)
    num_axes = partition.event_size
    bins = jax.vmap(
        lambda n: sample_bins(tables, jax.random.bits(prng.bin_key(key, n), (num_axes,), jnp.uint32))
    )(ns)
    keys = table_key(partition, bins)
    order = stable_argsort(keys)
    rank, _ = run_ranks(keys[order])
    return jnp.zeros_like(rank).at[order].set(rank)


def check_weights(log_bound: Array) -> None:
    """Raises outside ``jit`` when the weights are undefined (NaN), e.g. ``"sup_ratio"`` with an
    unbounded density ratio; no-op on tracers."""
    if not isinstance(log_bound, jax.core.Tracer) and bool(jnp.isnan(log_bound)):
        raise InvalidArgumentError(
            "the bin weights are undefined for this target (e.g. 'sup_ratio' with an unbounded density "
            "ratio); use weights='q_mass'"
        )


def _read_ranks(ranks: Array, keys: Array, ns: Array) -> tuple[Array, Array]:
    return ranks[ns], ranks


def sp_orc(
    partition: Partition,
    num_samples: int,
    weights: str | WeightPolicy = "q_mass",
    chunk_size: int | None = None,
) -> Coder:
    """Space-partitioning ORC with a budget of ``num_samples`` candidates.

    Args:
      partition: the grid (shared with the decoder; captured here).
      num_samples: ``N`` (at most ``2^30 - 2^15``).  The encoder holds ``int32[N]`` of state.
      weights: bin-weight policy, ``"q_mass"`` (default: minimizes ``D_KL[Q||P']``, which drives
        the bias), ``"sup_ratio"`` or a callable (:mod:`jaxrec.partition`).  Unlike SP-PFR, the
        output law depends on it.
      chunk_size: candidates per loop iteration; defaults to ``min(N, 1024)``.

    Returns:
      A :class:`~jaxrec.Coder` with ``encode(key, target, prior) -> SPCode`` (``index < N``,
      status ``OK`` for valid inputs) and ``decode(key, code, prior) -> (D,)``.
    """
    check_partition(partition)
    check_positive_int("num_samples", num_samples, MAX_STEPS)
    chunk_size = min(num_samples, 1024) if chunk_size is None else chunk_size
    search.validate_sizes(chunk_size, num_samples)

    def encode(key: Any, target: Distribution, prior: Distribution) -> SPCode:
        check_single(target, prior)
        check_event_size(partition, prior)
        key = prng.as_key(key)
        tables = axis_tables(target, prior, partition, weights)
        check_weights(tables.log_bound)
        # weights undefined (e.g. "sup_ratio" with an unbounded ratio, under jit): invalid input
        status0 = jnp.where(jnp.isnan(tables.log_bound), INVALID_INPUT, input_status(target, prior, bounded=False))
        res = search.search(
            masked_chunk_fn(sp_chunk_fn(key, target, prior, partition, _read_ranks), status0 == OK),
            (arrivals.zero_time(), visit_ranks(key, partition, tables, num_samples), tables),
            chunk_size=chunk_size,
            max_candidates=num_samples,
            score_dtype=prior.dtype,
        )
        bins, index = res.payload
        status = search_status(status0, res.stopped, exact=False)
        code = SPCode(bins, index, res.steps, status, **origin("sp_orc", prior))
        warn_status(code)
        return code

    def decode(key: Any, code: SPCode, prior: Distribution) -> Array:
        check_code(code, SPCode, "sp_orc", prior)
        return raw_decode(key, code, prior)

    raw_decode = make_decode(partition)

    spec = CoderSpec("sp_orc", spec_params(partition, num_samples=num_samples, chunk_size=chunk_size))
    return Coder(encode, decode, spec)


def sp_orc_message(spec: CoderSpec, budget_bits: float, plan: Any) -> registry.Message:
    """The bin, uniform per axis over its ``J_d`` intervals, and the within-bin index, uniform on ``[0, N)``."""
    return ("bin", PlanAlphabetModel()), ("index", UniformModel(spec.kwargs["num_samples"]))


registry.register_coder(
    "sp_orc", sp_orc, params=("num_samples", "chunk_size"), message=sp_orc_message, partitioned=True,
    alphabet=partition_counts,
)
