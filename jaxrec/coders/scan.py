"""Builds a :class:`~jaxrec.Coder` from a scan-type kernel on top of :mod:`jaxrec.search`.

A scan coder is described by three functions:

* ``validate(target, prior)`` -- boundary checks on concrete arguments (skipped under tracing
  by the checks themselves);
* ``prepare(key, target, prior) -> (chunk_fn, init_state)`` -- the chunk function of one problem;
* ``finish(result: SearchResult) -> code`` -- the transmitted integers plus diagnostics;
* optionally ``precompute(target, prior) -> data`` -- per-problem tables built once *before* the
  search (``encode_batch`` builds them for the whole batch with ``vmap``); ``prepare`` then
  receives ``data`` in place of ``target``, so its per-iteration work in the batch loop stays cheap.

:func:`scan_coder` turns them into ``encode`` (one problem, :func:`jaxrec.search.search`) and
``encode_batch`` (many problems on refilling lanes, :func:`jaxrec.search.search_batch`); both
return identical codes.
"""

from __future__ import annotations

from typing import Any, Callable

import jax

from jaxrec import search
from jaxrec.coders.base import (
    Code,
    Coder,
    CoderSpec,
    check_pair,
    check_positive_int,
    decode_candidate,
)
from jaxrec.core import prng
from jaxrec.core.distributions import Distribution

Array = jax.Array
Prepare = Callable[[Array, Distribution, Distribution], tuple[search.ChunkFn, Any]]

# encode_batch's default schedule: 64 lanes of 128 candidates (2^13 per iteration), widened up to
# 8x in the tail of the batch (jaxrec.search.search_batch).  Measured on CPU with
# experiments/bench_throughput.py against 128x128, 256x64 and 64x256: narrow lanes waste little
# past each problem's stopping point (half a lane chunk on average), and the tail widening removes
# the idle lanes that used to make narrow lanes slow; more lanes add per-iteration bookkeeping.
DEFAULT_LANE_CHUNK = 128
DEFAULT_CANDIDATES_IN_FLIGHT = 2**13


def _broadcast_batch(tree: Any, batch: int) -> Any:
    return jax.tree.map(lambda a: jax.numpy.broadcast_to(a, (batch,) + a.shape[-1:]), tree)


def scan_coder(
    spec: CoderSpec,
    *,
    prepare: Prepare,
    finish: Callable[[search.SearchResult], Any],
    chunk_size: int,
    max_candidates: int,
    validate: Callable[[Distribution, Distribution], None] = lambda target, prior: None,
    decode: Callable[..., Array] = decode_candidate,
    precompute: Callable[[Distribution, Distribution], Any] | None = None,
) -> Coder:
    """Assembles ``Coder(encode, decode, spec, encode_batch)`` from a scan kernel (see module doc)."""
    search.validate_sizes(chunk_size, max_candidates)

    def encode(key: Any, target: Distribution, prior: Distribution) -> Any:
        check_pair(target, prior)
        validate(target, prior)
        problem = target if precompute is None else precompute(target, prior)
        chunk_fn, init_state = prepare(prng.as_key(key), problem, prior)
        res = search.search(
            chunk_fn, init_state, chunk_size=chunk_size, max_candidates=max_candidates, score_dtype=prior.dtype
        )
        return finish(res)

    def encode_batch(
        keys: Any, targets: Distribution, prior: Distribution, *, num_lanes: int | None = None,
        lane_chunk_size: int | None = None, max_widening: int = search.MAX_WIDENING,
    ) -> Any:
        """Encodes ``B`` problems: ``keys`` ``(B,)``, ``targets`` batch ``(B,)``; ``prior`` shared
        (batch shape ``()``) or batched ``(B,)``.  Codes equal ``vmap(encode)``'s.

        ``lane_chunk_size`` (default ``min(chunk_size, 128)``), ``num_lanes`` (default
        ``2^13 // lane_chunk_size``) and ``max_widening`` (tail lanes up to ``2^max_widening``
        times wider, default 3; see :func:`jaxrec.search.search_batch`) set the schedule only,
        never the result.
        """
        check_pair(targets, prior)
        validate(targets, prior)
        keys = prng.as_key(keys)
        batch = targets.batch_shape[0] if targets.batch_shape else 1
        k = min(chunk_size, DEFAULT_LANE_CHUNK) if lane_chunk_size is None else lane_chunk_size
        lanes = max(1, DEFAULT_CANDIDATES_IN_FLIGHT // k) if num_lanes is None else num_lanes
        priors = _broadcast_batch(prior, batch)
        problems = (keys, targets if precompute is None else jax.vmap(precompute)(targets, priors), priors)
        res = search.search_batch(
            lambda p: prepare(*p), problems, chunk_size=k, max_candidates=max_candidates,
            num_lanes=lanes, score_dtype=prior.dtype, max_widening=max_widening,
        )
        return jax.vmap(finish)(res)

    return Coder(encode, decode, spec, encode_batch)


def encode_batch(coder: Coder, keys: Any, targets: Distribution, prior: Distribution, **options: Any) -> Any:
    """Encodes a batch with ``coder.encode_batch`` when the coder has one, else ``vmap(encode)``.

    ``keys``: ``(B,)`` typed keys or ``uint32[B, 2]``; ``targets``: batch shape ``(B,)``;
    ``prior``: shared or batched.  ``options`` go to the coder's batch encoder.
    """
    if coder.encode_batch is not None:
        return coder.encode_batch(keys, targets, prior, **options)
    prior_axis = 0 if prior.batch_shape else None
    return jax.vmap(coder.encode, in_axes=(0, 0, prior_axis))(keys, targets, prior)


def fixed_budget_coder(name: str, num_samples: int, chunk_size: int | None, prepare: Prepare) -> Coder:
    """A coder that scans exactly ``num_samples`` candidates (ORC, MRC): index in ``[0, N)``.

    ``chunk_size`` defaults to ``min(N, 1024)``; ``Code.exhausted`` is always False, since
    running out of candidates is the design.
    """
    check_positive_int("num_samples", num_samples, search.MAX_CANDIDATES)
    chunk_size = min(num_samples, 1024) if chunk_size is None else chunk_size
    return scan_coder(
        CoderSpec(name, (("num_samples", num_samples), ("chunk_size", chunk_size))),
        prepare=prepare,
        finish=lambda res: Code(res.index, res.steps, jax.numpy.zeros_like(res.stopped)),
        chunk_size=chunk_size,
        max_candidates=num_samples,
    )
