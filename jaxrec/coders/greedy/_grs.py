"""Greedy rejection sampling (Harsha et al. 2007), staircase form, exact.

With ``W(h) = int min(q, h p)`` the level ladder is

    L_0 = 0,    L_i = L_{i-1} + (1 - W(L_{i-1})),

and step ``i`` draws ``X_i ~ P`` (shared) and ``U_i ~ U(0, 1)`` (encoder-private) and accepts iff

    L_{i-1} + U_i (L_i - L_{i-1}) < r(X_i),

so that after step ``i`` exactly ``min(q, L_i p)`` has been accepted (Harsha, Jain, McAllester & Radhakrishnan, CCC 2007; Flamich & Theis, ISIT 2023).
``X_K ~ Q`` exactly, ``E[K + 1] = r* = 2^{D_inf}`` and the sent integer is the number of
rejections ``K`` (``Code.index``, 0-based position of the accepted candidate).

The ladder does not depend on the candidates, so each chunk first computes its ``K`` levels with a
short sequential ``lax.scan`` from the carried level (in gap coordinates ``u_i = ln(r*/L_i)``,
``u_i = u_{i-1} - log1p((1 - W(L_{i-1})) / L_{i-1})``, exact near ``r*``), then tests all ``K``
candidates at once: ``u(X_i) < u_thr_i`` with
``u_thr_i = u_{i-1} - log1p(U_i (L_i - L_{i-1}) / L_{i-1})``.  The levels are the same whatever the
chunking, so the code does not depend on ``chunk_size``.  ``1 - W`` comes from the pair's
stretch table (:func:`jaxrec.coders.greedy.widths.log_residual_at_gap`, built once per problem, relative error
below ~3e-6), so the sampler is exact up to that accuracy of the ladder (a total-variation error of
the same order, far below what any test can see).

Pairs: as :func:`jaxrec.coders.greedy.widths.pair_widths` (1-D Gaussians with ``scale_q < scale_p``, uniform
pairs).  Under ``jit`` an unbounded pair returns at once with ``exhausted = True``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrec import search
from jaxrec.coders import registry
from jaxrec.coders.base import (
    Coder,
    CoderSpec,
    check_bounded_ratio,
    check_positive_int,
    coder_factory,
    decode_candidate,
)
from jaxrec.coders.greedy import widths
from jaxrec.coders.greedy._gprs import WidthTables, width_tables
from jaxrec.coders.scan import index_only, scan_coder
from jaxrec.core import prng
from jaxrec.core.distributions import Distribution, open_unit

Array = jax.Array

__all__ = ["grs", "grs_chunk_fn", "Ladder"]


class Ladder(NamedTuple):
    """The level before a step: ``log_level = ln L_{i-1}`` (``-inf`` for ``L_0 = 0``) and its gap
    ``gap = ln r* - ln L_{i-1}`` (``+inf`` for ``L_0``)."""

    log_level: Array
    gap: Array


def ladder_start(dtype: jnp.dtype) -> Ladder:
    return Ladder(jnp.asarray(-jnp.inf, dtype), jnp.asarray(jnp.inf, dtype))


def ladder_step(model: widths.Widths, prev: Ladder, log_step: Array) -> Ladder:
    """``L_i = L_{i-1} + step`` in log and gap form (the gap is updated without ``ln r*`` cancellation)."""
    first = prev.log_level == -jnp.inf
    ratio = jnp.exp(log_step - jnp.where(first, 0.0, prev.log_level))
    gap = jnp.where(first, model.log_r_star - log_step, prev.gap - jnp.log1p(ratio))
    return Ladder(jnp.logaddexp(prev.log_level, log_step), jnp.maximum(gap, 0.0))


def threshold_gap(model: widths.Widths, prev: Ladder, log_step: Array, v: Array) -> Array:
    """Gap of the acceptance level ``L_{i-1} + v * step`` (``v`` in ``(0, 1)``)."""
    first = prev.log_level == -jnp.inf
    frac = v * jnp.exp(log_step - jnp.where(first, 0.0, prev.log_level))
    return jnp.where(first, model.log_r_star - jnp.log(v) - log_step, prev.gap - jnp.log1p(frac))


def grs_chunk_fn(key: Array, prior: Distribution, model: widths.Widths, table: widths.StretchTable) -> search.ChunkFn:
    """The GRS chunk function: state :class:`Ladder`; score 0 for an accepted candidate, else
    ``-inf``; bound 0 (the scan stops right after the first acceptance; ``-inf`` if the pair is
    invalid)."""
    dtype = prior.dtype
    valid = jnp.isfinite(model.log_r_star)
    candidates, private = prng.candidate_stream(key), prng.private_stream(key)

    def level(prev: Ladder, _: Array) -> tuple[Ladder, tuple[Ladder, Array]]:
        log_step = widths.log_residual_at_gap(table, prev.gap)
        return ladder_step(model, prev, log_step), (prev, log_step)

    def chunk_fn(state: Ladder, ns: Array) -> tuple[Array, Array, None, Ladder]:
        state, (prev, log_step) = lax.scan(level, state, ns)
        v = open_unit(prng.counter_words(private, ns, 1)[0]).astype(dtype)
        gap_x = model.level_gap(prng.stream_candidates(candidates, ns, prior).T)
        accepted = gap_x < threshold_gap(model, prev, log_step, v)
        scores = jnp.where(accepted & valid, 0.0, -jnp.inf).astype(dtype)
        bounds = jnp.where(valid, jnp.zeros_like(scores), -jnp.inf)
        return scores, bounds, None, state

    return chunk_fn


@coder_factory
def grs(chunk_size: int = 64, max_steps: int = 2**24) -> Coder:
    """Exact greedy rejection sampling (staircase form).

    Args:
      chunk_size: candidates per ``while_loop`` iteration (levels per ``lax.scan``); does not
        change the code.
      max_steps: candidates examined at most; the status is ``EXHAUSTED`` if none was accepted.

    Returns:
      A :class:`~jaxrec.Coder`: ``encode(key, target, prior) -> Code`` with ``index = K`` (the
      number of rejections), ``steps = K + 1`` (``E = 2^{D_inf}``); ``decode(key, code, prior) ->
      (D,)``; ``encode_batch`` for many problems.
    """
    check_positive_int("max_steps", max_steps, search.MAX_CANDIDATES)

    def prepare(key: Array, tables: WidthTables, prior: Distribution) -> tuple[search.ChunkFn, Ladder]:
        return grs_chunk_fn(key, prior, tables.model, tables.table), ladder_start(prior.dtype)

    return scan_coder(
        CoderSpec("grs", (("chunk_size", chunk_size), ("max_steps", max_steps))),
        prepare=prepare, finish=index_only, decode=decode_candidate, chunk_size=chunk_size, max_candidates=max_steps,
        exact=True, validate=widths.check_pair, precompute=width_tables,
    )


# The number of rejections K has E log2(K + 1) <= KL + O(1) (Harsha et al., IEEE Trans. Inf. Theory
# 2010, Thm. 2), so it is sent under the same Zipf model as a PFR index.
registry.register_coder(
    "grs", grs, params=("chunk_size", "max_steps"), message=registry.zipf_index_message, check=check_bounded_ratio
)
