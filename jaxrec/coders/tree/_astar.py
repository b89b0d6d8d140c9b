"""A* coding (Flamich, Markou & Hernandez-Lobato, ICML 2022): AS*, AD* and depth-limited DAD*.

A* sampling (Maddison, Tarlow & Minka 2014) searches a binary space-partition tree of the
prior ``P``.  Node ``B`` carries the first arrival ``T_B`` of a unit-rate Poisson process restricted
to ``B`` (``G_B = -ln T_B`` is its Gumbel, ``~ Gumbel(ln P(B))``) and a location ``X_B ~ P|_B``.
Splitting ``B`` into ``C_0, C_1`` removes ``X_B`` from the process; each child gets the first of
the remaining arrivals in it, ``T_C = T_B + E / P(C)`` with ``E ~ Exp(1)`` (the truncated-Gumbel
step, done in log space: ``ln T_C = logaddexp(ln T_B, ln E - ln P(C))``).  With
``r = dQ/dP``, the node's score is ``ln r(X_B) - ln T_B`` and its bound is
``sup_B ln r - ln T_B``, an upper bound on the scores of the node and all its descendants.
A* pops the node of highest bound from a priority queue, splits it, scores and pushes the children,
and stops when the best score so far reaches the top bound.  The argmax of ``ln r(X) - ln T``
over the whole process is an exact sample of ``Q`` (the Poisson functional representation), and
the encoder sends its **heap index** as ``(depth, path)`` (:class:`jaxrec.coders.tree.paths.TreeCode`).

* **AS*** splits ``B = (a, b)`` at its sample ``X_B``.  Expected runtime ``O(D_inf[Q||P])`` for
  1-D unimodal ratios (the paper's theorem).  The child masses are ``U P(B)`` and ``(1 - U) P(B)``
  with ``U`` the uniform that placed ``X_B`` (inverse-CDF sampling), so no CDF differences are taken.
  The child on the far side of ``X_B`` from the mode is bounded by ``ln r(X_B) - ln T_C`` below its
  parent's score, so it is never queued: the queue holds one node and the search is one path.
* **AD*** splits at the ``P``-median of ``B`` (dyadic in CDF space): ``P(C) = 2^{-depth}`` exactly.
  ``O(D_inf)`` runtime is empirical; the queue holds a few nodes.

Measured (float32, 2000 problems each, P = N(0, 1)): mean node samples ``steps`` about
``2 D_inf + 2`` for both (D_inf = 1, 7.2, 13.1, 21.5, 34.6 bits: AS* 4.5, 15.7, 26.1, 41.7, 69.0;
AD* 4.7, 14.5, 26.3, 43.3, 69.3) and mean depth about ``D_KL``.  ``TreeCode.steps`` counts node
samples drawn: the root plus two per expanded node.
* **DAD*** is AD* restricted to the tree of depth ``<= depth``: the exact argmax over its
  ``2^{depth+1} - 1`` nodes, an approximate sample whose bias falls with ``depth``; the heap index
  fits in ``depth + 1`` bits.

The decoder walks from the root to ``(depth, path)``, recomputing each ancestor's split point
(AS*: the ancestor's sample, so O(depth) samples; AD*: the median), then draws the node's sample.
Every node's randomness comes from :func:`jaxrec.core.prng.tree_node_key`, a function of the shared
key and ``(depth, path)`` only.  Decoding depends only on the split rule, so AD* decodes DAD* codes
(the tree and its decoders live in :mod:`jaxrec.coders.partition_tree`, shared with branch-and-bound
GPRS, :mod:`jaxrec.coders.gprs_bnb`).
The decoded sample is the chosen node's: bit for bit when encoder and decoder run the same batch
layout, within a few ulps otherwise (XLA CPU rounds transcendentals differently for different
array sizes, and the node sample is a truncated-normal quantile).

Scope: a **1-D** Gaussian target against a 1-D Gaussian prior with ``scale_q < scale_p`` (bounded
unimodal ratio).  In the prior's standard coordinates
``z = (x - loc_p) / scale_p``, ``Q = N(mu, s^2)`` and ``ln r(z) = ln r* - (z - nu)^2 / (2 kappa)``
with ``nu = mu / (1 - s^2)``, ``kappa = s^2 / (1 - s^2)``, so ``sup_(a,b) ln r = ln r(clip(nu, a, b))``.
For ``D > 1`` apply the coder dimension by dimension with :func:`jaxrec.factorized`; each dimension
then pays its own ``O(log(KL_d + 1))`` index overhead.  ``encode`` raises
:class:`~jaxrec.core.errors.InvalidArgumentError` for ``D != 1``, batched inputs (use ``jax.vmap``),
non-Gaussian pairs and, when the parameters are concrete, ``scale_q >= scale_p``; under ``jit`` an
unbounded ratio yields the status ``UNBOUNDED_RATIO``.

Message cost: the heap index, e.g. Elias-delta or Zipf coded; ``E[depth] = O(D_KL)`` bits.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrec.coders import registry
from jaxrec.coders.base import (
    OK,
    Coder,
    CoderSpec,
    check_bounded_ratio,
    check_pair,
    check_positive_int,
    coder_factory,
    compiled_encoder,
    input_status,
    origin,
    search_status,
)
from jaxrec.coders.tree import paths
from jaxrec.coders.tree.partition_tree import (
    DYADIC_SPLIT,
    SAMPLE_SPLIT,
    Ratio,
    child_nodes,
    gaussian_ratio,
    make_decoder,
    root_node,
    tree_message,
    tree_pack,
    tree_unpack,
)
from jaxrec.coders.tree.paths import TreeCode
from jaxrec.core.distributions import DiagGaussian, Distribution
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.search import heap as pq

Array = jax.Array

DEFAULT_CAPACITY = 256
DEFAULT_MAX_STEPS = 2**16
DEFAULT_MAX_DEPTH = 64

__all__ = ["adstar", "astar", "dadstar"]


class _Carry(NamedTuple):
    heap: pq.Heap
    best_score: Array
    best_depth: Array
    best_path: Array
    steps: Array
    depth_cut: Array


def _search(
    key: Array, ratio: Ratio, dtype: jnp.dtype, active: Array, *, split: str, capacity: int, max_steps: int,
    max_depth: int, exact: bool,
) -> tuple[Array, Array, Array, Array]:
    """A* over the partition tree (see the module docstring): ``(depth, path, steps, exhausted)``;
    an inactive problem (invalid input) pushes no root and stops at once."""
    words = paths.path_words(max_depth)
    root, root_score, root_bound = root_node(key, ratio, words, dtype, split)
    heap = pq.heap_init(capacity, root, dtype)
    heap = pq.heap_push(heap, root_bound, root, when=ratio.bounded & active)
    init = _Carry(heap, root_score, root.depth, root.path, jnp.int32(1), jnp.array(False))

    def unfinished(c: _Carry) -> Array:
        return (c.heap.size > 0) & (pq.heap_top(c.heap) > c.best_score)

    def body(c: _Carry) -> _Carry:
        _, node, heap = pq.heap_pop(c.heap)
        splittable = node.depth < max_depth  # only an exact search pushes nodes at max_depth
        kids, scores, bounds = child_nodes(key, ratio, node, split)
        scores = jnp.where(splittable, scores, -jnp.inf)
        k = jnp.argmax(scores)
        better = scores[k] > c.best_score
        best_score = jnp.where(better, scores[k], c.best_score)
        best_depth = jnp.where(better, kids.depth[k], c.best_depth)
        best_path = jnp.where(better, kids.path[k], c.best_path)
        # Children at max_depth have no descendants in a depth-limited tree: nothing to push.
        pushable = splittable & (bounds > best_score) & ((kids.depth < max_depth) | exact)
        for i in range(2):
            heap = pq.heap_push(heap, bounds[i], jax.tree.map(lambda a: a[i], kids), when=pushable[i])
        return _Carry(
            heap, best_score, best_depth, best_path,
            c.steps + 2 * splittable.astype(jnp.int32), c.depth_cut | ~splittable,
        )

    final = lax.while_loop(lambda c: unfinished(c) & (c.steps < max_steps), body, init)
    exhausted = final.heap.overflow | final.depth_cut | unfinished(final)
    return final.best_depth, final.best_path, final.steps, exhausted


def _check_problem(name: str, target: Any, prior: Any) -> None:
    check_pair(target, prior)
    if not (isinstance(target, DiagGaussian) and isinstance(prior, DiagGaussian)):
        raise InvalidArgumentError(
            f"{name} supports DiagGaussian target and prior, got {type(target).__name__} and {type(prior).__name__}"
        )
    if target.event_size != 1 or target.batch_shape or prior.batch_shape:
        raise InvalidArgumentError(
            f"{name} encodes one 1-D problem (event size 1, no batch axes); got target loc shape "
            f"{tuple(target.loc.shape)}, prior loc shape {tuple(prior.loc.shape)}. Use jax.vmap for batches "
            "and jaxrec.factorized(coder) for D > 1."
        )
    scales = (target.scale, prior.scale)
    if not any(isinstance(a, jax.core.Tracer) for a in scales):
        if not bool(np.all(np.asarray(target.scale) < np.asarray(prior.scale))):
            raise InvalidArgumentError(
                f"{name} needs a bounded density ratio: target scale {np.asarray(target.scale)!r} must be "
                f"< prior scale {np.asarray(prior.scale)!r}"
            )


def _tree_coder(name: str, split: str, *, capacity: int, max_steps: int, max_depth: int, exact: bool) -> Coder:
    check_positive_int("capacity", capacity, pq.MAX_CAPACITY)
    check_positive_int("max_steps", max_steps, 2**31 - 3)
    check_positive_int("max_depth" if exact else "depth", max_depth, paths.MAX_DEPTH)

    def search_tree(key: Array, target: Distribution, prior: Distribution) -> TreeCode:
        status0 = input_status(target, prior, bounded=True)
        depth, path, steps, exhausted = _search(
            key, gaussian_ratio(target, prior), prior.dtype, status0 == OK, split=split,
            capacity=capacity, max_steps=max_steps, max_depth=max_depth, exact=exact,
        )
        status = search_status(status0, ~exhausted, exact=True)
        return TreeCode(depth, path, jnp.where(status0 == OK, steps, 0), status, **origin(name, prior))

    encode = compiled_encoder(search_tree, functools.partial(_check_problem, name))

    depth_name = "max_depth" if exact else "depth"
    spec = CoderSpec(name, (("capacity", capacity), ("max_steps", max_steps), (depth_name, max_depth)))
    return Coder(encode, make_decoder(split, name), spec)


@coder_factory
def astar(
    capacity: int = DEFAULT_CAPACITY, max_steps: int = DEFAULT_MAX_STEPS, max_depth: int = DEFAULT_MAX_DEPTH
) -> Coder:
    """AS* coding (split on samples), exact.

    Args:
      capacity: priority-queue size; an overflow sets the status ``EXHAUSTED``.  Queue sizes stay small for
        1-D unimodal problems (a few nodes per bit of ``D_inf``).
      max_steps: node samples drawn at most (``TreeCode.steps``); reaching it sets ``EXHAUSTED``.
      max_depth: deepest node the search may split into (sets the path length ``W``); a search
        that needs to go deeper sets ``EXHAUSTED``.

    Returns:
      A :class:`~jaxrec.Coder`: ``encode(key, target, prior) -> TreeCode`` (1-D Gaussian pair,
      ``scale_q < scale_p``) and ``decode(key, code, prior) -> (1,)``, O(depth).
    """
    return _tree_coder("astar", SAMPLE_SPLIT, capacity=capacity, max_steps=max_steps, max_depth=max_depth, exact=True)


@coder_factory
def adstar(
    capacity: int = DEFAULT_CAPACITY, max_steps: int = DEFAULT_MAX_STEPS, max_depth: int = DEFAULT_MAX_DEPTH
) -> Coder:
    """AD* coding (dyadic splits at the prior median of each node), exact; arguments as :func:`astar`."""
    return _tree_coder("adstar", DYADIC_SPLIT, capacity=capacity, max_steps=max_steps, max_depth=max_depth, exact=True)


@coder_factory
def dadstar(depth: int, capacity: int = DEFAULT_CAPACITY, max_steps: int = DEFAULT_MAX_STEPS) -> Coder:
    """DAD*: AD* on the dyadic tree cut at ``depth``, approximate (bias falls with ``depth``).

    The code is the argmax of ``ln r(X) - ln T`` over the ``2^{depth+1} - 1`` nodes of depth
    ``<= depth`` (found by A* with pruning, not by enumeration); its heap index is below
    ``2^{depth+1}``.  ``EXHAUSTED`` is set only by a queue overflow or ``max_steps``, never by the
    depth limit, which is the design.
    """
    return _tree_coder("dadstar", DYADIC_SPLIT, capacity=capacity, max_steps=max_steps, max_depth=depth, exact=False)


for _name, _depth in (("astar", "max_depth"), ("adstar", "max_depth"), ("dadstar", "depth")):
    registry.register_coder(
        _name, {"astar": astar, "adstar": adstar, "dadstar": dadstar}[_name],
        params=("capacity", "max_steps", _depth), message=tree_message, check=check_bounded_ratio,
        pack=tree_pack, unpack=tree_unpack(_depth),
    )
