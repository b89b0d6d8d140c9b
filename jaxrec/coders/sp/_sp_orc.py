"""SP-ORC: space-partitioning ORC, i.e. SP-PFR truncated at ``N`` candidates (fixed budget).

Bins, arrival times and scores are those of :mod:`jaxrec.coders.sp._sp_pfr`; the winner is the
argmax over the first ``N`` candidates, which is
ORC run on the search distribution ``P' = sum_j pi_j P(. | B_j)`` instead of ``P``.  Its bias is
therefore governed by ``D_KL[Q||P']`` (:func:`jaxrec.coders.sp.partition.reweighted_kl`) rather than
``D_KL[Q||P]``: with ``"q_mass"`` weights (the default) that is
``D_KL[Q||P] - D_KL[Q_B || Unif_J]``, so the same ``N`` covers up to ``log2 J`` more bits of KL.

Within-bin indices: a candidate's own number ``m`` (``index < N``).  Distinct visits to one bin
have distinct numbers, which is all the sample law needs (:mod:`jaxrec.coders.sp._sp_pfr`, point
(2)), and the index is sent uniformly on ``[0, N)`` -- ``log2 N`` bits, as a visit count would
cost under the same uniform code -- with no counting work in the search (a visit count needs a sort
of every chunk's bins; it would only pay with an entropy model of the within-bin count, which the
message does not use).  The search runs on the shared chunked core, so SP-ORC has a batch encoder on
refilling lanes like every scan coder.

**Points.**  Since every candidate has its own number, candidate ``m``'s point in its bin ``j_m`` is
drawn from item ``m`` of the key's candidate stream (:func:`jaxrec.core.prng.candidate_stream`,
the words plain ORC turns into ``X_m ~ P``) rather than from a stream per bin: given the private bins,
the points are independent draws of ``P(. | B_{j_m})``, so the candidates are iid ``P'``, and the
search saves a hash and the bin packing per candidate (SP-PFR's visit counts repeat across candidates
and need the per-bin streams).  The decoder rebuilds the point from ``(key, bin, index)`` in O(D).
"""

from __future__ import annotations

import functools
from typing import Any

import jax

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import Coder, CoderSpec, check_positive_int, coder_factory
from jaxrec.coders.scan import scan_coder
from jaxrec.coders.sp._sp_pfr import (
    MAX_STEPS,
    SPCode,
    check_event_size,
    check_partition,
    check_weights,
    finish_sp,
    make_decode,
    partition_counts,
    sp_chunk_fn,
    spec_params,
    weights_status,
    with_tables,
    within_bin_candidate,
    within_bin_log_ratios,
)
from jaxrec.coders.sp.partition import (
    AxisTables,
    Partition,
    WeightPolicy,
    resolve_policy,
)
from jaxrec.core import arrivals, prng
from jaxrec.core.distributions import Distribution
from jaxrec.entropy import PlanAlphabetModel, UniformModel

Array = jax.Array

__all__ = ["sp_orc"]


def candidate_numbers(state: tuple, packed: tuple[Array, Array], ns: Array) -> tuple[Array, tuple]:
    """SP-ORC's within-bin indices: the candidates' own numbers (no state)."""
    return ns, state


def numbered_candidate(key: Array, prior: Distribution, partition: Partition, bins: Array, index: Array) -> Array:
    """SP-ORC's candidate ``index`` in bins ``bins`` (``int32[D]``): ``(D,)``, drawn within the bins
    from item ``index`` of the candidate stream of ``key``."""
    return within_bin_candidate(prng.candidate_stream(key), prior, partition, bins, index)


def numbered_log_ratios(
    key: Array, target: Distribution, prior: Distribution, partition: Partition, bins: Array,
    packed: tuple[Array, Array], index: Array,
) -> Array:
    """``log r`` in nats of the points :func:`numbered_candidate` draws, for a chunk: bins ``[D, K]``,
    candidate numbers ``int32[K]`` (``packed`` unused); ``(K,)``."""
    return within_bin_log_ratios(prng.candidate_stream(key), target, prior, partition, bins, index)


@coder_factory
def sp_orc(
    partition: Partition,
    num_samples: int,
    weights: str | WeightPolicy = "q_mass",
    chunk_size: int | None = None,
) -> Coder:
    """Space-partitioning ORC with a budget of ``num_samples`` candidates.

    Args:
      partition: the grid (shared with the decoder; captured here).
      num_samples: ``N`` (at most ``2^30``).
      weights: bin-weight policy, ``"q_mass"`` (default: minimizes ``D_KL[Q||P']``, which drives
        the bias), ``"sup_ratio"`` or a callable (:mod:`jaxrec.partition`).  Unlike SP-PFR, the
        output law depends on it.
      chunk_size: candidates per loop iteration; defaults to ``min(N, 1024)``.

    Returns:
      A :class:`~jaxrec.Coder` with ``encode(key, target, prior) -> SPCode`` (``index < N``,
      status ``OK`` for valid inputs; ``INVALID_INPUT`` when the weights are undefined),
      ``decode(key, code, prior) -> (D,)`` and ``encode_batch`` (many problems on refilling lanes,
      same codes as ``vmap(encode)``).
    """
    check_partition(partition)
    resolve_policy(weights)
    check_positive_int("num_samples", num_samples, MAX_STEPS)
    chunk_size = min(num_samples, 1024) if chunk_size is None else chunk_size

    def validate(target: Distribution, prior: Distribution) -> None:
        check_event_size(partition, prior)
        check_weights(target, prior, partition, weights)

    def prepare(key: Array, problem: tuple[Distribution, AxisTables], prior: Distribution) -> tuple[search.ChunkFn, Any]:
        target, tables = problem
        chunk_fn = sp_chunk_fn(key, target, prior, partition, candidate_numbers, numbered_log_ratios)
        return chunk_fn, (arrivals.zero_time(), (), tables)

    spec = CoderSpec("sp_orc", spec_params(partition, num_samples=num_samples, chunk_size=chunk_size))
    return scan_coder(
        spec, prepare=prepare, finish=functools.partial(finish_sp, partition=partition), chunk_size=chunk_size,
        max_candidates=num_samples, exact=False,
        validate=validate, decode=make_decode(partition, numbered_candidate), code_class=SPCode,
        precompute=functools.partial(with_tables, partition=partition, weights=weights),
        problem_status=functools.partial(weights_status, partition=partition),
    )


def sp_orc_message(spec: CoderSpec, budget_bits: float, plan: Any) -> registry.Message:
    """The bin, uniform per axis over its ``J_d`` intervals, and the within-bin index, uniform on ``[0, N)``."""
    return ("bin", PlanAlphabetModel()), ("index", UniformModel(spec.kwargs["num_samples"]))


registry.register_coder(
    "sp_orc", sp_orc, params=("num_samples", "chunk_size"), message=sp_orc_message, partitioned=True,
    alphabet=partition_counts,
    oldest_format={"float32": 3, "float64": 3},  # version 3: points from the candidate stream (and the float32 quantile)
)
