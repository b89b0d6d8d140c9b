"""PFR: the Poisson functional representation (Li & El Gamal, 2018), exact.

Shared: a Poisson process ``{(T_n, X_n)}`` with mean measure ``Lebesgue x P``.  The encoder sends

    N* = argmin_n T_n / r(X_n) = argmax_n [log r(X_n) - log T_n],    r = dQ/dP,

and ``X_{N*} ~ Q`` exactly.  Since ``T_m / r(X_m) >= T_m / M`` (``M = ess sup r``), the search
stops at the first ``n`` with ``log T_n - log M >= min_{m<n} log(T_m / r(X_m))``; the expected
number of candidates examined is ``M = 2^{D_inf[Q||P]}`` and ``E log2(N*+1) <= D_KL + 1``
(Li & El Gamal, IEEE Trans. Inf. Theory 2018).

``X_n`` is candidate ``n`` of the shared stream (:func:`jaxrec.core.prng.candidates`); the arrival
times come from the encoder-only stream (:mod:`jaxrec.core.arrivals`, exact and chunk-invariant),
so the code depends only on ``(key, target, prior)``.
"""

from __future__ import annotations

import jax

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import (
    Coder,
    CoderSpec,
    check_bounded_ratio,
    check_positive_int,
    coder_factory,
)
from jaxrec.coders.scan import index_only, scan_coder
from jaxrec.core import arrivals, prng
from jaxrec.core.distributions import Distribution, log_sup_ratio

Array = jax.Array


def pfr_chunk_fn(key: Array, target: Distribution, prior: Distribution, log_m: Array) -> search.ChunkFn:
    """The PFR chunk function for :func:`jaxrec.search.search`.

    State: the arrival-time limbs ``uint32[4]``.  ``score_n = log r(X_n) - log T_n`` and
    ``bound_n = log M - log T_n`` (nats).  With ``log_m = +inf`` the search never stops early.
    The log ratios come from :func:`jaxrec.core.prng.stream_log_ratio` (candidates never materialized).
    """
    dtype = prior.dtype
    candidates, private = prng.candidate_stream(key), prng.private_stream(key)

    def chunk_fn(base: Array, ns: Array) -> tuple[Array, Array, None, Array]:
        log_r = prng.stream_log_ratio(candidates, ns, target, prior)
        increments = arrivals.increments_from_words(prng.counter_words(private, ns, 1)[0])
        log_t, base = arrivals.log_arrival_times(base, increments, dtype)
        return log_r - log_t, log_m - log_t, None, base

    return chunk_fn


def prepare_pfr(key: Array, target: Distribution, prior: Distribution) -> tuple[search.ChunkFn, Array]:
    """``(chunk_fn, init_state)`` of the PFR scan for one problem (shared by PFR and ORC)."""
    return pfr_chunk_fn(key, target, prior, log_sup_ratio(target, prior)), arrivals.zero_time()


@coder_factory
def pfr(chunk_size: int = 1024, max_steps: int = 2**26) -> Coder:
    """Exact PFR coder.

    Args:
      chunk_size: candidates evaluated per ``while_loop`` iteration (1 to 2^15). Does not change
        the code, only speed (>= 1024 is a good default everywhere).
      max_steps: at most this many candidates are examined; if the stop rule has not fired by
        then, the code holds the best candidate so far and its status is ``EXHAUSTED``.

    Returns:
      A :class:`~jaxrec.Coder`: ``encode(key, target, prior) -> Code`` with ``Code.index`` the
      0-based candidate index and ``steps`` the examined count (``E[steps] = 2^{D_inf}``);
      ``decode(key, code, prior) -> (D,)``; ``encode_batch`` for many problems.
    """
    check_positive_int("max_steps", max_steps, search.MAX_CANDIDATES)
    return scan_coder(
        CoderSpec("pfr", (("chunk_size", chunk_size), ("max_steps", max_steps))),
        prepare=prepare_pfr,
        finish=index_only,
        validate=check_bounded_ratio,
        chunk_size=chunk_size,
        max_candidates=max_steps,
        exact=True,
    )


registry.register_coder(
    "pfr", pfr, params=("chunk_size", "max_steps"), message=registry.zipf_index_message, check=check_bounded_ratio
)
