"""The shared search core: a chunked ``lax.while_loop`` with a running argmax and a stop rule.

Every scan-type REC coder (PFR, ORC, MRC, SP-PFR, SP-ORC, GPRS, GRS) is a *chunk function*
plugged into :func:`search`::

    chunk_fn(state, ns) -> (scores, bounds, payload, new_state)

* ``ns``: ``int32[K]``, the candidate indices of this chunk (``K = chunk_size``);
* ``scores``: ``float[K]``, the candidates' scores; the winner is the **first** maximum;
* ``bounds``: ``float[K]``, where ``bounds[k]`` is an upper bound on the score of candidate
  ``ns[k]`` *and every later candidate* (``+inf`` for "no bound");
* ``payload``: a pytree of ``[K, ...]`` arrays kept for the winner (e.g. the bin of a candidate);
* ``new_state``: carried to the next chunk (e.g. the arrival-time accumulator).

Stop rule (branch and bound): the search stops at the first candidate ``n`` with
``max_{m<n} score_m >= bounds[n]`` -- no candidate from ``n`` on can beat the running best -- or at
``max_candidates``.  Candidates from the stopping position on are masked out of the argmax, so the
result is exactly that of the sequential algorithm and does not depend on ``chunk_size``; ``steps``
is the stopping position itself (the number of candidates the sequential algorithm examines), not
rounded up to whole chunks.  A chunk in which the rule cannot fire (running best below its smallest
bound) takes a cheaper branch that skips the cumulative max; the result is the same.

For PFR (Li & El Gamal 2018), ``score_n = log r(X_n) - log T_n`` and
``bound_n = log M - log T_n`` with ``M = ess sup dQ/dP``, which reproduces its exact stop rule
``T_n / M >= min_{m<n} T_m / r(X_m)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrec.core import arrivals
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array
ChunkFn = Callable[[Any, Array], tuple[Array, Array, Any, Any]]

# Indices are int32; keep n0 + chunk_size representable.
MAX_CHUNK = arrivals.MAX_CHUNK
MAX_CANDIDATES = 2**31 - 1 - MAX_CHUNK
# search_batch: at most 2^3 = 8-fold wider lanes in the tail of a batch (one compiled copy each).
MAX_WIDENING = 3


class SearchResult(NamedTuple):
    """Outcome of :func:`search` (all scalars unless the payload says otherwise).

    Attributes:
      index: ``int32``, 0-based index of the winning candidate (0 if no candidate scored > -inf).
      score: the winner's score.
      payload: the winner's payload (pytree of the chunk function's per-candidate leaves).
      steps: ``int32``, candidates examined before the stop rule fired, or ``max_candidates``.
      stopped: ``bool``, True when the stop rule fired (the result is final); False when the
        search ran out of candidates first.
    """

    index: Array
    score: Array
    payload: Any
    steps: Array
    stopped: Array


class _Carry(NamedTuple):
    start: Array
    best_score: Array
    best_index: Array
    best_payload: Any
    steps: Array
    done: Array
    stopped: Array
    state: Any


def validate_sizes(chunk_size: int, max_candidates: int) -> None:
    """Raises :class:`InvalidArgumentError` unless ``1 <= chunk_size <= 2^15`` and
    ``1 <= max_candidates <= MAX_CANDIDATES``."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or not 1 <= chunk_size <= arrivals.MAX_CHUNK:
        raise InvalidArgumentError(f"chunk_size must be an int in [1, {arrivals.MAX_CHUNK}], got {chunk_size!r}")
    if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or not 1 <= max_candidates <= MAX_CANDIDATES:
        raise InvalidArgumentError(f"the candidate limit must be an int in [1, {MAX_CANDIDATES}], got {max_candidates!r}")


def _evaluate(chunk_fn: ChunkFn, chunk_size: int, c: _Carry) -> tuple[Array, Array, Array, Any, Any]:
    """Runs the chunk function on the next chunk: ``(ns, scores, bounds, payload, new_state)``;
    NaN scores count as ``-inf``."""
    ns = c.start + jnp.arange(chunk_size, dtype=jnp.int32)
    scores, bounds, payload, state = chunk_fn(c.state, ns)
    return ns, jnp.where(jnp.isnan(scores), -jnp.inf, scores), bounds, payload, state


def _fold_exact(
    c: _Carry, ns: Array, scores: Array, bounds: Array, payload: Any, state: Any, max_candidates: int
) -> _Carry:
    """Folds one evaluated chunk into the carry, locating the exact stopping position.

    ``running[k] = max(best, scores[:k])`` (a cumulative max); the first ``k`` with
    ``running[k] >= bounds[k]`` or ``ns[k] >= max_candidates`` stops the search, and candidates
    from there on are masked out of the argmax.
    """
    chunk_size = ns.shape[0]
    offsets = jnp.arange(chunk_size, dtype=jnp.int32)
    running = lax.cummax(jnp.concatenate([c.best_score[None], scores]))[:-1]
    rule = running >= bounds
    halt = rule | (ns >= max_candidates)
    any_halt = jnp.any(halt)
    first = jnp.where(any_halt, jnp.argmax(halt), chunk_size).astype(jnp.int32)
    masked = jnp.where(offsets < first, scores, -jnp.inf)
    return _take_best(c, ns, masked, payload, state)._replace(
        steps=c.start + first, done=any_halt, stopped=any_halt & rule[jnp.minimum(first, chunk_size - 1)]
    )


def _take_best(c: _Carry, ns: Array, scores: Array, payload: Any, state: Any) -> _Carry:
    """Advances past the chunk, keeping its first maximum of ``scores`` if it beats the best so far
    (``steps`` counts the whole chunk; :func:`_fold_exact` overrides it)."""
    k = jnp.argmax(scores)
    better = scores[k] > c.best_score
    pick = lambda new, old: jnp.where(better, new, old)
    return c._replace(
        start=c.start + ns.shape[0],
        best_score=pick(scores[k], c.best_score),
        best_index=pick(ns[k], c.best_index),
        best_payload=jax.tree.map(lambda p, old: pick(p[k], old), payload, c.best_payload),
        steps=c.start + ns.shape[0],
        state=state,
    )


def _chunk_step(chunk_fn: ChunkFn, chunk_size: int, max_candidates: int, c: _Carry) -> _Carry:
    """One exact search step: evaluate a chunk and fold it in (the vmapped lanes of
    :func:`search_batch` use this form, with no branch)."""
    return _fold_exact(c, *_evaluate(chunk_fn, chunk_size, c), max_candidates)


def _chunk_step_with_fast_path(chunk_fn: ChunkFn, chunk_size: int, max_candidates: int, c: _Carry) -> _Carry:
    """:func:`_chunk_step` with a cheap branch for the common chunk in which the search cannot stop.

    If ``max(best, max(scores)) < min(bounds)`` and the chunk lies below ``max_candidates``, no
    ``running[k]`` can reach ``bounds[k]``, so the stop rule does not fire anywhere in the chunk
    and the fold is a plain argmax; only the (usually last) chunk that may stop pays for the
    cumulative max.  Both branches give the same carry, so the result is unchanged.
    """
    ns, scores, bounds, payload, state = _evaluate(chunk_fn, chunk_size, c)
    calm = (jnp.maximum(c.best_score, jnp.max(scores)) < jnp.min(bounds)) & (ns[-1] < max_candidates)
    # the state bypasses the branches: XLA copies what a conditional returns (a table in the state
    # would be copied at every step)
    c = c._replace(state=None)
    folded = lax.cond(
        calm,
        lambda: _take_best(c, ns, scores, payload, None),
        lambda: _fold_exact(c, ns, scores, bounds, payload, None, max_candidates),
    )
    return folded._replace(state=state)


def search(
    chunk_fn: ChunkFn,
    init_state: Any,
    *,
    chunk_size: int,
    max_candidates: int,
    score_dtype: jnp.dtype = jnp.float32,
) -> SearchResult:
    """Runs the chunked branch-and-bound scan described in the module docstring.

    Args:
      chunk_fn: ``(state, ns int32[K]) -> (scores [K], bounds [K], payload, state)``.
      init_state: the state before the first chunk.
      chunk_size: ``K``, candidates per ``while_loop`` iteration (1 to 2^15).
      max_candidates: candidates ``0 .. max_candidates-1`` are searched at most.
      score_dtype: dtype of the running best score.

    Returns:
      A :class:`SearchResult`. Pure and traceable: works under ``jit`` and ``vmap`` (a vmapped
      search runs until its slowest lane stops; finished lanes keep their result).
    """
    validate_sizes(chunk_size, max_candidates)
    init = _initial_carry(chunk_fn, init_state, chunk_size, score_dtype)
    final = lax.while_loop(
        lambda c: ~c.done,
        lambda c: _chunk_step_with_fast_path(chunk_fn, chunk_size, max_candidates, c),
        init,
    )
    return _result(final)


def _initial_carry(chunk_fn: ChunkFn, init_state: Any, chunk_size: int, score_dtype: jnp.dtype) -> _Carry:
    ns0 = jnp.arange(chunk_size, dtype=jnp.int32)
    payload_shapes = jax.eval_shape(chunk_fn, init_state, ns0)[2]
    return _Carry(
        start=jnp.int32(0),
        best_score=jnp.array(-jnp.inf, score_dtype),
        best_index=jnp.int32(0),
        best_payload=jax.tree.map(lambda s: jnp.zeros(s.shape[1:], s.dtype), payload_shapes),
        steps=jnp.int32(0),
        done=jnp.array(False),
        stopped=jnp.array(False),
        state=init_state,
    )


def _result(c: _Carry) -> SearchResult:
    return SearchResult(c.best_index, c.best_score, c.best_payload, c.steps, c.stopped)


ProblemFn = Callable[[Any], tuple[ChunkFn, Any]]


class _QueueCarry(NamedTuple):
    lane_problem: Array  # int32[L], problem each lane works on (>= B: idle)
    next_problem: Array  # int32, first problem not yet given to a lane
    lanes: _Carry  # per-lane search carries, leading axis L
    results: SearchResult  # per-problem outputs, leading axis B


def search_batch(
    problem_fn: ProblemFn,
    problems: Any,
    *,
    chunk_size: int,
    max_candidates: int,
    num_lanes: int,
    score_dtype: jnp.dtype = jnp.float32,
    max_widening: int = MAX_WIDENING,
) -> SearchResult:
    """Runs :func:`search` for a batch of ``B`` problems on ``num_lanes`` lanes with refill.

    ``jax.vmap(search)`` runs every lane until the *slowest* problem stops, so with heavy-tailed
    step counts (PFR: ``steps ~ 2^{D_inf} E``, ``E ~ Exp(1)``) most lanes idle most of the time.
    Here the ``L`` lanes form a work queue inside one ``while_loop``:

    * **refill** -- a lane takes the next unstarted problem as soon as its own stops, so while the
      queue lasts every iteration evaluates ``L K`` candidates of live problems;
    * **widening** -- once the queue is empty and only ``A`` problems remain, the live lanes are
      packed into ``L / 2^j`` rows that each evaluate ``2^j K`` candidates per iteration, with
      ``j`` the largest level such that ``A <= L / 2^j`` (``j <= max_widening``, ``2^j K <= 2^15``).
      The slowest problems of the batch -- which set the run time of ``vmap`` -- then proceed up
      to ``2^j`` times faster instead of running beside idle lanes.

    The search result of a problem never depends on its chunk sizes (see :func:`search`), so each
    problem's result equals ``vmap(search)``'s bit for bit whatever widths it ran at.  The cost is
    one compiled copy of the chunk function per level.

    Do not ``vmap`` this function over several batches: under ``vmap`` every batch steps until the
    slowest leaves each level's loop, and the level loops' bodies become selects (a switch over
    the levels measured 5x the work on four MNIST blocks).  Run such batches one after another
    (``lax.map``), as :mod:`jaxrec.codec` does.

    Args:
      problem_fn: ``problem -> (chunk_fn, init_state)`` for one problem (a pytree slice).
      problems: pytree whose leaves have a leading axis ``B``.
      chunk_size: ``K``, candidates per lane and iteration while all lanes are busy.
      max_candidates, score_dtype: as in :func:`search`.
      num_lanes: ``L``, problems in flight at once (``L K`` candidates per iteration).
      max_widening: the most doublings of the lane width in the tail (0 disables widening).

    Returns:
      A :class:`SearchResult` whose leaves have a leading axis ``B``.
    """
    validate_sizes(chunk_size, max_candidates)
    num_problems = jax.tree.leaves(problems)[0].shape[0]
    num_lanes = max(1, min(num_lanes, num_problems))
    levels = _widening_levels(num_lanes, chunk_size, max_widening)
    take = lambda i: jax.tree.map(lambda a: a[jnp.minimum(i, num_problems - 1)], problems)

    def fresh_carry(i: Array) -> _Carry:
        chunk_fn, init_state = problem_fn(take(i))
        return _initial_carry(chunk_fn, init_state, chunk_size, score_dtype)

    def step_lanes(level: int, lane_problem: Array, lanes: _Carry) -> _Carry:
        def step_lane(i: Array, c: _Carry) -> _Carry:
            chunk_fn, _ = problem_fn(take(i))
            return _chunk_step(chunk_fn, chunk_size << level, max_candidates, c)

        if level == 0:
            return jax.vmap(step_lane)(lane_problem, lanes)
        # live lanes first; the first L / 2^level rows hold all of them
        rows = jnp.argsort(lane_problem >= num_problems, stable=True)[: num_lanes >> level]
        stepped = jax.vmap(step_lane)(lane_problem[rows], jax.tree.map(lambda a: a[rows], lanes))
        return jax.tree.map(lambda a, new: a.at[rows].set(new), lanes, stepped)

    lane_ids = jnp.arange(num_lanes, dtype=jnp.int32)
    lanes0 = jax.vmap(fresh_carry)(lane_ids)
    results0 = jax.tree.map(lambda a: jnp.zeros((num_problems,) + a.shape[1:], a.dtype), _result(lanes0))

    def level_of(q: _QueueCarry) -> Array:
        live = jnp.sum(q.lane_problem < num_problems)
        return sum((live <= (num_lanes >> j)).astype(jnp.int32) for j in range(1, levels + 1))

    def body(level: int, q: _QueueCarry) -> _QueueCarry:
        lanes = step_lanes(level, q.lane_problem, q.lanes)
        finished = lanes.done & (q.lane_problem < num_problems)
        target = jnp.where(finished, q.lane_problem, num_problems)  # out of range -> dropped
        results = jax.tree.map(
            lambda out, new: out.at[target].set(new, mode="drop"), q.results, _result(lanes)
        )
        refill = lanes.done
        new_problem = q.next_problem + jnp.cumsum(refill, dtype=jnp.int32) - 1
        lane_problem = jnp.where(refill, new_problem, q.lane_problem)
        fresh = jax.vmap(fresh_carry)(lane_problem)
        lanes = jax.tree.map(
            lambda f, old: jnp.where(refill.reshape(refill.shape + (1,) * (old.ndim - 1)), f, old), fresh, lanes
        )
        # an idle lane (problem >= B) is marked done so it never writes and keeps refilling past B
        lanes = lanes._replace(done=lane_problem >= num_problems)
        next_problem = q.next_problem + jnp.sum(refill, dtype=jnp.int32)
        return _QueueCarry(lane_problem, next_problem, lanes, results)

    q = _QueueCarry(lane_ids, jnp.int32(num_lanes), lanes0._replace(done=lane_ids >= num_problems), results0)
    # The live count only falls once the queue is empty, so the level only rises: one while loop per
    # level, each running while its level is current (none at all if the level is skipped). A
    # lax.switch over the levels in one loop would copy the lanes' state into and out of the
    # branch at every step (XLA does not update a conditional's operands in place).
    for level in range(levels + 1):
        q = lax.while_loop(
            lambda q, level=level: jnp.any(q.lane_problem < num_problems) & (level_of(q) <= level),
            functools.partial(body, level), q,
        )
    return q.results


def _widening_levels(num_lanes: int, chunk_size: int, max_widening: int) -> int:
    """The largest ``j <= max_widening`` with ``2^j <= num_lanes`` and ``2^j chunk_size <= 2^15``."""
    if not isinstance(max_widening, int) or max_widening < 0:
        raise InvalidArgumentError(f"max_widening must be a non-negative int, got {max_widening!r}")
    j = 0
    while j < max_widening and (num_lanes >> (j + 1)) >= 1 and (chunk_size << (j + 1)) <= arrivals.MAX_CHUNK:
        j += 1
    return j
