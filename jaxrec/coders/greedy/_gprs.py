"""Greedy Poisson rejection sampling (Flamich, NeurIPS 2023): global and parallel, exact.

Shared: a Poisson process ``{(T_n, X_n)}`` on ``R_+ x Omega`` with mean measure
``Lebesgue x P``.  GPRS accepts the *first* point under the graph of ``phi = sigma o r``,

    N = min{n : T_n <= sigma(r(X_n))},     sigma(h) = int_0^h d eta / (1 - W(eta)),

and ``X_N ~ Q`` exactly (Flamich, "Greedy Poisson rejection sampling", NeurIPS 2023).  ``E[N] = r* = 2^{D_inf}`` and the index
entropy satisfies ``D_CS <= H[N] <= D_CS + log2(e + 1)``.  The test is done in gap coordinates,
``ln sigma~(u(X_n)) >= ln T_n`` with ``u(x) = ln r* - ln r(x)`` (:mod:`jaxrec.widths`: no
cancellation at the mode, ``sigma`` tabulated once per problem).

**Parallel GPRS** (Alg. 4): the process is split into ``J`` independent streams of rate ``1/J``
(superposition theorem): stream ``j`` has candidates ``X^j_n`` (item ``n`` of shared candidate
stream ``j``, :func:`jaxrec.core.prng.candidates`) and times ``T^j_n = J (E^j_1 + ... + E^j_n)``.
The answer is the accepted point of smallest time over all streams -- the same law as global GPRS.  In the search core the ``J`` streams advance in
lockstep: position ``n`` scores ``max_j -ln T^j_n`` over its accepted points and is bounded by
``-min_j ln T^j_n``, so the scan stops exactly when no stream can beat the best accepted time.
The message (stream ``j``, position ``n``) is sent as the single integer ``J n + j``
(``Code.index``; ``J = 1`` is global GPRS, bit for bit).  ``Code.steps`` counts positions per stream
(``J steps`` candidates in all); ``E[steps] ~ r*/J``.

Arrival times come from :mod:`jaxrec.arrivals` (exact, chunk-invariant), so codes do not depend
on ``chunk_size``.  Pairs: 1-D Gaussians with ``scale_q < scale_p`` and uniform pairs (any ``D``);
for ``D > 1`` Gaussians use :func:`jaxrec.factorized`.  Under ``jit`` an unbounded pair returns
at once with ``exhausted = True``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import (
    Code,
    Coder,
    CoderSpec,
    check_bounded_ratio,
    check_positive_int,
    coder_factory,
    stream_candidate,
)
from jaxrec.coders.greedy import widths
from jaxrec.coders.scan import scan_coder
from jaxrec.core import arrivals, prng
from jaxrec.core.distributions import Distribution
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

__all__ = ["gprs", "gprs_chunk_fn", "width_tables"]


class WidthTables(NamedTuple):
    """Per-problem precomputation of the width-function coders: the model and its stretch table."""

    model: widths.Widths
    table: widths.StretchTable


def width_tables(target: Distribution, prior: Distribution) -> WidthTables:
    """``WidthTables`` of one (target, prior) pair (:func:`jaxrec.coders.greedy.widths.pair_widths`)."""
    model = widths.pair_widths(target, prior)
    return WidthTables(model, widths.stretch_table(model))


def gprs_chunk_fn(
    key: Array, prior: Distribution, model: widths.Widths, table: widths.StretchTable, num_streams: int
) -> search.ChunkFn:
    """The (parallel) GPRS chunk function for :func:`jaxrec.search.search`.

    State: arrival-time limbs ``uint32[J, 4]``.  For the positions ``ns`` (``int32[K]``) it returns
    ``scores[K] = max_j (-ln T^j_n if accepted else -inf)``, ``bounds[K] = -min_j ln T^j_n`` and the
    payload ``int32[K]``, the stream of the best accepted point.  An invalid pair
    (``ln r* = NaN``) gets ``bounds = -inf``: the scan stops at once without a winner.
    """
    dtype = prior.dtype
    log_j = math.log(num_streams)
    valid = jnp.isfinite(model.log_r_star)

    def stream(j: Array, base: Array, ns: Array) -> tuple[Array, Array, Array]:
        xs = prng.candidates(key, ns, prior, stream=j)
        log_t, base = arrivals.log_arrival_times(base, arrivals.exponential_increments(key, ns, stream=j), dtype)
        log_t = log_t + log_j
        accepted = widths.log_stretch_at_gap(table, model.level_gap(xs)) >= log_t
        return jnp.where(accepted, -log_t, -jnp.inf), log_t, base

    def chunk_fn(base: Array, ns: Array) -> tuple[Array, Array, Array, Array]:
        streams = jnp.arange(num_streams, dtype=jnp.int32)
        scores, log_t, base = jax.vmap(stream, in_axes=(0, 0, None))(streams, base, ns)
        best = jnp.argmax(scores, axis=0).astype(jnp.int32)
        bounds = jnp.where(valid, -jnp.min(log_t, axis=0), -jnp.inf)
        return jnp.max(scores, axis=0), bounds, best, base

    return chunk_fn


@coder_factory
def gprs(num_streams: int = 1, chunk_size: int = 256, max_steps: int = 2**24) -> Coder:
    """Exact (parallel) greedy Poisson rejection sampling.

    Args:
      num_streams: ``J``, independent Poisson streams searched in lockstep (1: global GPRS).
      chunk_size: positions per ``while_loop`` iteration (``J * chunk_size`` candidates); does not
        change the code.
      max_steps: positions examined at most per stream; ``J * max_steps`` must fit in ``int32``.
        If no point is accepted by then, the status is ``EXHAUSTED``.

    Returns:
      A :class:`~jaxrec.Coder`: ``encode(key, target, prior) -> Code`` with ``index = J n + j``
      (0-based position ``n`` in stream ``j``), ``steps`` positions per stream
      (``E = 2^{D_inf} / J`` roughly, exactly ``2^{D_inf}`` for ``J = 1``);
      ``decode(key, code, prior) -> (D,)``; ``encode_batch`` for many problems.
    """
    check_positive_int("num_streams", num_streams, 2**16)
    check_positive_int("max_steps", max_steps, search.MAX_CANDIDATES)
    if num_streams * max_steps > search.MAX_CANDIDATES:
        raise InvalidArgumentError(
            f"num_streams * max_steps must be <= {search.MAX_CANDIDATES} (the index J n + j is int32), got "
            f"{num_streams} * {max_steps}"
        )

    def prepare(key: Array, tables: WidthTables, prior: Distribution) -> tuple[search.ChunkFn, Array]:
        base = jnp.broadcast_to(arrivals.zero_time(), (num_streams, 4))
        return gprs_chunk_fn(key, prior, tables.model, tables.table, num_streams), base

    def finish(res: search.SearchResult, key: Array, tables: WidthTables) -> dict[str, Array]:
        return {"index": res.index * num_streams + res.payload}

    def decode(key: Any, code: Code, prior: Distribution) -> Array:
        index = jnp.asarray(code.index)
        return stream_candidate(prng.as_key(key), index // num_streams, prior, index % num_streams)

    spec = CoderSpec(
        "gprs", (("num_streams", num_streams), ("chunk_size", chunk_size), ("max_steps", max_steps))
    )
    return scan_coder(
        spec, prepare=prepare, finish=finish, decode=decode, chunk_size=chunk_size, max_candidates=max_steps,
        exact=True, validate=widths.check_pair, precompute=width_tables,
    )


# GPRS's index is PFR-like (E log2(index + 1) <~ KL + 1; Flamich, NeurIPS 2023), hence the same Zipf model.
registry.register_coder(
    "gprs", gprs, params=("num_streams", "chunk_size", "max_steps"), message=registry.zipf_index_message,
    check=check_bounded_ratio,
)
