"""Builds a :class:`~jaxrec.Coder` from a scan-type kernel on top of :mod:`jaxrec.search`.

A scan coder is described by these functions:

* ``validate(target, prior)`` -- boundary checks on concrete arguments (skipped under tracing
  by the checks themselves);
* ``prepare(key, target, prior) -> (chunk_fn, init_state)`` -- the chunk function of one problem;
* ``finish(result: SearchResult, key, data) -> {field: array}`` -- the message fields of the code
  (``key`` and ``data``, the problem as ``prepare`` received it, let a coder draw again what is a
  pure function of the winner's candidate number instead of carrying it through the search); the
  code itself (``code_class``, with ``steps``, ``status`` and the static origin) is assembled here;
* optionally ``precompute(target, prior) -> data`` -- per-problem tables built once *before* the
  search (``encode_batch`` builds them for the whole batch with ``vmap``); ``prepare`` then
  receives ``data`` in place of ``target``, so its per-iteration work in the batch loop stays cheap;
* optionally ``problem_status(data, prior)`` -- coder-specific input statuses read from ``data``
  (``target`` without ``precompute``), so the tables are built once;
* optionally ``expected_log2_steps(target, prior)`` -- for exact coders, ``log2`` of the expected
  number of steps on concrete inputs; an eager ``encode`` warns before a search that would run
  into ``max_candidates``.

:func:`scan_coder` turns them into ``encode`` (one problem, :func:`jaxrec.search.search`) and
``encode_batch`` (many problems on refilling lanes, :func:`jaxrec.search.search_batch`); both
return identical codes.  Invalid inputs (:func:`~jaxrec.coders.base.input_status`) make every
bound ``-inf``, so the search stops at its first position (``steps == 0``) and the code's
``status`` says why.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp

from jaxrec import search
from jaxrec.coders.base import (
    OK,
    Code,
    Coder,
    CoderSpec,
    check_code,
    check_pair,
    check_positive_int,
    compiled_encoder,
    decode_candidate,
    input_status,
    search_status,
    warn_status,
)
from jaxrec.core import prng
from jaxrec.core.checks import as_int
from jaxrec.core.distributions import Distribution, dinf
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array
Prepare = Callable[[Array, Distribution, Distribution], tuple[search.ChunkFn, Any]]

# encode_batch's default schedule: 64 lanes of 128 candidates (2^13 per iteration), widened up to
# 8x in the tail of the batch (jaxrec.search.search_batch).  Measured on CPU with
# experiments/bench_throughput.py against 128x128, 256x64 and 64x256: narrow lanes waste little
# past each problem's stopping point (half a lane chunk on average), and the tail widening removes
# the idle lanes that used to make narrow lanes slow; more lanes add per-iteration bookkeeping.
DEFAULT_LANE_CHUNK = 128
DEFAULT_CANDIDATES_IN_FLIGHT = 2**13
# The schedule options of a batch encoder (they never change the codes).
BATCH_OPTIONS = ("num_lanes", "lane_chunk_size", "max_widening")


def _broadcast_batch(tree: Any, batch: int) -> Any:
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape[-1:]), tree)


def check_single(target: Distribution, prior: Distribution) -> None:
    """Raises :class:`InvalidArgumentError` unless ``target`` and ``prior`` describe ONE problem
    (batch shape ``()``; inside ``vmap`` the mapped axis is already gone)."""
    check_pair(target, prior)
    if target.batch_shape or prior.batch_shape:
        raise InvalidArgumentError(
            f"encode codes one problem, got target batch shape {target.batch_shape} and prior batch shape "
            f"{prior.batch_shape}; for a batch use jaxrec.encode_batch(coder, keys, targets, prior) or jax.vmap"
        )


def check_batch(keys: Any, targets: Distribution, prior: Distribution) -> tuple[Array, int]:
    """Checks a batch ``(keys (B,), targets batch (B,), prior batch () or (B,))``; returns the typed
    keys and ``B``.  Raises :class:`InvalidArgumentError` naming any disagreement."""
    check_pair(targets, prior)
    if len(targets.batch_shape) != 1:
        raise InvalidArgumentError(f"targets must have batch shape (B,), got {targets.batch_shape}")
    batch = targets.batch_shape[0]
    if prior.batch_shape not in ((), (batch,)):
        raise InvalidArgumentError(
            f"prior must have batch shape () or ({batch},) to match the targets, got {prior.batch_shape}"
        )
    return prng.as_keys(keys, batch), batch


def masked_chunk_fn(chunk_fn: search.ChunkFn, active: Array) -> search.ChunkFn:
    """``chunk_fn`` whose scores and bounds are ``-inf`` when ``active`` is False, so that the
    search stops at its first position (the stop rule ``-inf >= -inf`` fires at once)."""

    def masked(state: Any, ns: Array) -> tuple[Array, Array, Any, Any]:
        scores, bounds, payload, state = chunk_fn(state, ns)
        return jnp.where(active, scores, -jnp.inf), jnp.where(active, bounds, -jnp.inf), payload, state

    return masked


def scan_coder(
    spec: CoderSpec,
    *,
    prepare: Prepare,
    finish: Callable[[search.SearchResult, Array, Any], dict[str, Array]],
    chunk_size: int,
    max_candidates: int,
    exact: bool,
    validate: Callable[[Distribution, Distribution], None] = lambda target, prior: None,
    decode: Callable[..., Array] = decode_candidate,
    code_class: type = Code,
    precompute: Callable[[Distribution, Distribution], Any] | None = None,
    expected_log2_steps: Callable[[Distribution, Distribution], Any] | None = None,
    problem_status: Callable[[Any, Distribution], Array] | None = None,
) -> Coder:
    """Assembles ``Coder(encode, decode, spec, encode_batch)`` from a scan kernel (see module doc).

    ``exact``: an exact coder reports ``EXHAUSTED`` when its stop rule has not fired by
    ``max_candidates`` and ``UNBOUNDED_RATIO`` for ``D_inf = inf``; a fixed-budget coder (ORC, MRC)
    runs out of candidates by design.  ``decode(key, code, prior)`` runs after the code has been
    checked against ``code_class``, ``spec.name`` and the prior's event size.  ``problem_status``
    (traceable, one problem, given ``precompute``'s data) adds coder-specific input statuses to
    :func:`~jaxrec.coders.base.input_status`'s (e.g. undefined bin weights: ``INVALID_INPUT``).
    """
    search.validate_sizes(chunk_size, max_candidates)
    if exact and expected_log2_steps is None:
        expected_log2_steps = dinf

    def prepared(target: Distribution, prior: Distribution) -> tuple[Any, Array]:
        """``(precompute's data or the target, the status before the search)`` of one problem."""
        data = target if precompute is None else precompute(target, prior)
        status = input_status(target, prior, bounded=exact)
        if problem_status is not None:
            status = jnp.where(status == OK, problem_status(data, prior), status).astype(jnp.int32)
        return data, status

    def make_code(res: search.SearchResult, status0: Array, prior: Distribution, key: Array, data: Any) -> Any:
        status = search_status(status0, res.stopped, exact=exact)
        return code_class(
            **finish(res, key, data), steps=res.steps, status=status, coder=spec.name, event_size=int(prior.event_size)
        )

    def warn_if_hopeless(target: Distribution, prior: Distribution) -> None:
        if expected_log2_steps is None or any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves((target, prior))):
            return
        log2_steps = jnp.max(jnp.asarray(expected_log2_steps(target, prior)))
        if isinstance(log2_steps, jax.core.Tracer):  # e.g. a partition traced by vmap
            return
        log2_steps = float(log2_steps)
        if math.isfinite(log2_steps) and log2_steps > math.log2(max_candidates) + 1:
            warnings.warn(
                f"{spec.name}: the expected number of steps, 2^{log2_steps:.1f}, exceeds the limit of {max_candidates} "
                "steps: the search will stop at the limit with status 'exhausted' (use smaller blocks, a larger "
                "limit, or a space-partitioning coder)",
                RuntimeWarning,
                stacklevel=3,
            )

    def search_one(key: Array, target: Distribution, prior: Distribution) -> Any:
        problem, status0 = prepared(target, prior)
        chunk_fn, init_state = prepare(key, problem, prior)
        res = search.search(
            masked_chunk_fn(chunk_fn, status0 == OK), init_state, chunk_size=chunk_size, max_candidates=max_candidates,
            score_dtype=prior.dtype,
        )
        return make_code(res, status0, prior, key, problem)

    encode = compiled_encoder(search_one, check_single, validate, warn_if_hopeless)

    def encode_batch(
        keys: Any, targets: Distribution, prior: Distribution, *, num_lanes: int | None = None,
        lane_chunk_size: int | None = None, max_widening: int | None = None,
    ) -> Any:
        """Encodes ``B`` problems: ``keys`` ``(B,)`` (int seeds, typed keys or ``uint32[B, 2]``),
        ``targets`` batch ``(B,)``; ``prior`` shared (batch shape ``()``) or batched ``(B,)``.
        Codes equal ``vmap(encode)``'s.

        ``lane_chunk_size`` (default ``min(chunk_size, 128)``), ``num_lanes`` (default
        ``2^13 // lane_chunk_size``) and ``max_widening`` (tail lanes up to ``2^max_widening``
        times wider; see :func:`jaxrec.search.search_batch`) set the schedule only, never the
        result.  ``max_widening`` defaults to ``search.MAX_WIDENING`` (3) when the batch has more
        problems than lanes (a refill queue forms, and its tail is where widening pays) and to 0
        when the whole batch fits in the lanes at once: each widening level compiles one more copy
        of the chunk function (about 1 s for PFR and 3 s for SP-PFR on a 2-core CPU; the CLI's
        first call on 8 MNIST digits takes 9 s instead of 18), while such a batch runs like
        ``vmap(encode)``.  Several batches run fastest one after another (``lax.map``), not
        ``vmap``-ped (every widening level would then run at every step).
        """
        keys, batch = check_batch(keys, targets, prior)
        validate(targets, prior)
        warn_if_hopeless(targets, prior)
        k = min(chunk_size, DEFAULT_LANE_CHUNK) if lane_chunk_size is None else lane_chunk_size
        check_positive_int("lane_chunk_size", k, search.MAX_CHUNK)
        lanes = max(1, DEFAULT_CANDIDATES_IN_FLIGHT // k) if num_lanes is None else num_lanes
        check_positive_int("num_lanes", lanes, 2**20)
        if max_widening is None:
            max_widening = search.MAX_WIDENING if batch > lanes else 0
        max_widening = as_int("max_widening", max_widening, low=0)
        codes = run_batch(keys, targets, _broadcast_batch(prior, batch), k, lanes, max_widening)
        warn_status(codes)
        return codes

    # Compiled once per (shapes, schedule) and coder: an eager encode_batch call does not retrace.
    @functools.partial(jax.jit, static_argnums=(3, 4, 5))
    def run_batch(keys: Array, targets: Distribution, priors: Distribution, k: int, lanes: int,
                     max_widening: int) -> Any:
        data, status0 = jax.vmap(prepared)(targets, priors)
        problems = (keys, data, priors, status0)

        def problem_fn(problem: tuple) -> tuple[search.ChunkFn, Any]:
            key, data, problem_prior, problem_status = problem
            chunk_fn, init_state = prepare(key, data, problem_prior)
            return masked_chunk_fn(chunk_fn, problem_status == OK), init_state

        res = search.search_batch(
            problem_fn, problems, chunk_size=k, max_candidates=max_candidates,
            num_lanes=lanes, score_dtype=priors.dtype, max_widening=max_widening,
        )
        return jax.vmap(make_code)(res, status0, priors, keys, data)

    compiled_decode = jax.jit(decode)  # once per coder, as the encoder's search

    def checked_decode(key: Any, code: Any, prior: Distribution) -> Array:
        check_code(code, code_class, spec.name, prior)
        return compiled_decode(prng.as_key(key), code, prior)

    return Coder(encode, checked_decode, spec, encode_batch)


def encode_batch(coder: Coder, keys: Any, targets: Distribution, prior: Distribution, **options: Any) -> Any:
    """Encodes a batch with ``coder.encode_batch`` when the coder has one, else ``vmap(encode)``.

    ``keys``: ``(B,)`` int seeds, typed keys or ``uint32[B, 2]``; ``targets``: batch shape ``(B,)``;
    ``prior``: shared or batched (``(B,)``).  ``options`` go to the coder's batch encoder.
    Raises :class:`InvalidArgumentError` when the batch sizes disagree.
    """
    if not isinstance(coder, Coder):
        raise InvalidArgumentError(f"coder must be a jaxrec Coder, got {type(coder).__name__}")
    unknown = sorted(set(options) - set(BATCH_OPTIONS))
    if unknown:
        raise InvalidArgumentError(f"unknown encode_batch options {unknown}; the options are {list(BATCH_OPTIONS)}")
    if coder.encode_batch is not None:
        return coder.encode_batch(keys, targets, prior, **options)
    if options:
        raise InvalidArgumentError(f"{coder.spec.name} has no batch encoder; options {sorted(options)} do not apply")
    keys, _ = check_batch(keys, targets, prior)
    codes = _vmapped_encode(coder.encode, bool(prior.batch_shape))(keys, targets, prior)
    warn_status(codes)
    return codes


@functools.lru_cache(maxsize=64)
def _vmapped_encode(encode: Callable[..., Any], batched_prior: bool) -> Callable[..., Any]:
    """``jit(vmap(encode))``, cached per encode function: compiled once per shapes."""
    return jax.jit(jax.vmap(encode, in_axes=(0, 0, 0 if batched_prior else None)))


def index_only(res: search.SearchResult, key: Array, data: Any) -> dict[str, Array]:
    """The ``finish`` of a coder whose message is the winner's candidate number alone."""
    return {"index": res.index}


def fixed_budget_coder(name: str, num_samples: int, chunk_size: int | None, prepare: Prepare) -> Coder:
    """A coder that scans exactly ``num_samples`` candidates (ORC, MRC): index in ``[0, N)``.

    ``chunk_size`` defaults to ``min(N, 1024)``; the status is ``OK`` for valid inputs, since
    running out of candidates is the design.
    """
    check_positive_int("num_samples", num_samples, search.MAX_CANDIDATES)
    chunk_size = min(num_samples, 1024) if chunk_size is None else chunk_size
    return scan_coder(
        CoderSpec(name, (("num_samples", num_samples), ("chunk_size", chunk_size))),
        prepare=prepare,
        finish=index_only,
        chunk_size=chunk_size,
        max_candidates=num_samples,
        exact=False,
    )
