"""Branch-and-bound GPRS for 1-D unimodal density ratios (Flamich 2023, Alg. 5 and App. F), exact.

Greedy Poisson rejection sampling (:mod:`jaxrec.coders.gprs`) accepts the first point of the
Poisson process ``{(T_n, X_n)}`` (rate ``Lebesgue x P``) with ``T_n <= phi(X_n)``,
``phi = sigma o r``.  Branch and bound enumerates the process on a binary partition tree of the
line instead of in time order of one long stream: node ``B`` carries the first point of the
process restricted to ``B`` after its parent's time,

    T_B = T_parent + E_B / P(B),    X_B ~ P|_B,    E_B ~ Exp(1),

and its children split ``B`` (every point of the process sits at exactly one node).  The search
pops nodes in increasing ``T_B`` from a fixed-capacity priority queue
(:mod:`jaxrec.treesearch`); the first popped node with ``T_B <= phi(X_B)`` is the answer -- the
same point global GPRS returns on this realisation of the process -- and a child ``C`` is pruned
when ``sup_C phi < T_C`` (no point below it can ever be accepted).  For a unimodal ``r`` with mode
``nu``, ``sup_C phi = sigma~(u(clip(nu, C)))`` in gap coordinates (:mod:`jaxrec.widths`).

* **split-on-sample** (``split="sample"``, Alg. 5, "sac"): ``B`` splits at ``X_B``.  The child on
  the far side of ``X_B`` from the mode has ``sup phi = phi(X_B) < T_B < T_C`` and is always pruned,
  so the queue holds one node and the search is a single root-to-leaf path.
* **dyadic** (``split="dyadic"``): ``B`` splits at its prior median, so a node's region is a
  dyadic interval of the prior's CDF.  Both children can survive; the queue orders them by time.
  (The paper's App. F construction was not available; this is the general best-first
  branch-and-bound over the same process, which is exact for any partition.)

Message: the chosen node as ``(depth, path)`` (:class:`~jaxrec.coders.tree.paths.TreeCode`, no ``int32``
overflow at any depth).  Expected steps are ``O(D_KL)`` (sac: about 1.4 per bit), not
``O(2^{D_inf})``.  ``TreeCode.steps`` counts popped (tested) nodes.

The tree, its node randomness (:func:`jaxrec.core.prng.tree_node_key`) and its split points are exactly
those of A* coding (:mod:`jaxrec.coders.astar`, AS* for ``"sample"``, AD* for ``"dyadic"``), so the
decoders are shared: the decoder replays the path (O(depth)) and needs neither ``Q``, nor times,
nor ``sigma``.  Truncated sampling is tail-accurate (:mod:`jaxrec.truncated`); for depths beyond
about 20 use float64 (``jax.enable_x64``).

Scope: one 1-D Gaussian pair with ``scale_q < scale_p`` (``jax.vmap`` over problems, the
per-dimension wrapper :func:`jaxrec.factorized` for ``D > 1``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
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
from jaxrec.coders.greedy import widths
from jaxrec.coders.greedy._gprs import WidthTables, width_tables
from jaxrec.coders.tree import paths
from jaxrec.coders.tree.partition_tree import (  # the A* partition tree (same nodes, same decoder)
    DYADIC_SPLIT,
    SAMPLE_SPLIT,
    Node,
    Ratio,
    child_nodes,
    make_decoder,
    root_node,
    root_sample_and_cut,
    sample_and_cut,
    tree_message,
    tree_pack,
    tree_unpack,
)
from jaxrec.coders.tree.paths import TreeCode
from jaxrec.core.distributions import DiagGaussian, Distribution
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.search import heap as pq

Array = jax.Array

SPLITS = (SAMPLE_SPLIT, DYADIC_SPLIT)

__all__ = ["gprs_bnb"]


class _Carry(NamedTuple):
    heap: pq.Heap
    done: Array
    depth: Array
    path: Array
    steps: Array
    depth_cut: Array


def _ratio(model: widths.GaussianWidths) -> Ratio:
    """The A* tree's view of the ratio (``ln r`` in standard coordinates)."""
    return Ratio(
        log_m=model.log_r_star, mode=model.nu, curvature=0.5 / model.kappa, bounded=jnp.isfinite(model.log_r_star)
    )


def _log_phi_sup(tables: WidthTables, lo: Array, hi: Array) -> Array:
    """``ln sup_(lo, hi) phi``: the stretch at the point of ``(lo, hi)`` nearest the mode."""
    model = tables.model
    return widths.log_stretch_at_gap(tables.table, model.gap_of_z(jnp.clip(model.nu, lo, hi)))


def _node_sample(node: Node, split: str) -> Array:
    """The node's sample ``X_B`` (standard coordinates), as the A* tree draws it."""
    if split == SAMPLE_SPLIT:  # split-on-sample nodes store their sample as the cut
        return node.cut
    root_x, _ = root_sample_and_cut(node.u, split)
    x, _ = sample_and_cut(node.lo, node.hi, node.u, split)
    return jnp.where(node.depth == 0, root_x, x)


def _search(
    key: Array, tables: WidthTables, dtype: jnp.dtype, active: Array, *, split: str, capacity: int, max_steps: int,
    max_depth: int,
) -> tuple[Array, Array, Array, Array]:
    """Best-first search in time order with ``sup phi`` pruning (module docstring):
    ``(depth, path, steps, exhausted)``; an inactive problem pushes no root and stops at once."""
    ratio = _ratio(tables.model)
    root, _, _ = root_node(key, ratio, paths.path_words(max_depth), dtype, split)
    heap = pq.heap_init(capacity, root, dtype)
    heap = pq.heap_push(heap, -root.log_t, root, when=ratio.bounded & active)
    init = _Carry(heap, jnp.array(False), root.depth, root.path, jnp.int32(0), jnp.array(False))

    def running(c: _Carry) -> Array:
        return ~c.done & (c.heap.size > 0) & (c.steps < max_steps)

    def body(c: _Carry) -> _Carry:
        _, node, heap = pq.heap_pop(c.heap)
        x = _node_sample(node, split)
        log_phi = widths.log_stretch_at_gap(tables.table, tables.model.gap_of_z(x))
        accepted = log_phi >= node.log_t
        kids, _, _ = child_nodes(key, ratio, node, split)
        alive = (kids.log_mass > -jnp.inf) & (_log_phi_sup(tables, kids.lo, kids.hi) >= kids.log_t)
        deep = kids.depth > max_depth
        push = ~accepted & alive & ~deep
        for i in range(2):
            heap = pq.heap_push(heap, -kids.log_t[i], jax.tree.map(lambda a: a[i], kids), when=push[i])
        return _Carry(
            heap,
            accepted,
            jnp.where(accepted, node.depth, c.depth),
            jnp.where(accepted, node.path, c.path),
            c.steps + 1,
            c.depth_cut | jnp.any(~accepted & alive & deep),
        )

    final = lax.while_loop(running, body, init)
    exhausted = ~final.done | final.heap.overflow | final.depth_cut
    return final.depth, final.path, final.steps, exhausted


def _check_problem(target: Any, prior: Any) -> None:
    check_pair(target, prior)
    if not (isinstance(target, DiagGaussian) and isinstance(prior, DiagGaussian)):
        raise InvalidArgumentError(
            f"gprs_bnb supports DiagGaussian pairs, got {type(target).__name__} and {type(prior).__name__}"
        )
    widths.check_pair(target, prior)


@coder_factory
def gprs_bnb(split: str = "sample", capacity: int = 64, max_steps: int = 2**12, max_depth: int = 128) -> Coder:
    """Exact branch-and-bound GPRS for one 1-D Gaussian pair (``scale_q < scale_p``).

    Args:
      split: ``"sample"`` (split-on-sample, "sac") or ``"dyadic"`` (split at the prior median).
      capacity: priority-queue size (``"sample"`` needs 1); an overflow sets the status ``EXHAUSTED``.
      max_steps: nodes tested at most (``TreeCode.steps``); reaching it sets ``EXHAUSTED``.
      max_depth: deepest node (sets the path length ``W = ceil(max_depth / 32)`` words); a search
        that needs to go deeper sets ``EXHAUSTED``.

    Returns:
      A :class:`~jaxrec.Coder`: ``encode(key, target, prior) -> TreeCode`` and
      ``decode(key, code, prior) -> (1,)`` (O(depth); the AS*/AD* decoder of the same tree).
    """
    if split not in SPLITS:
        raise InvalidArgumentError(f"split must be one of {SPLITS}, got {split!r}")
    check_positive_int("capacity", capacity, pq.MAX_CAPACITY)
    check_positive_int("max_steps", max_steps, 2**31 - 3)
    check_positive_int("max_depth", max_depth, paths.MAX_DEPTH)

    def search_tree(key: Array, target: Distribution, prior: Distribution) -> TreeCode:
        status0 = input_status(target, prior, bounded=True)
        depth, path, steps, exhausted = _search(
            key, width_tables(target, prior), prior.dtype, status0 == OK, split=split,
            capacity=capacity, max_steps=max_steps, max_depth=max_depth,
        )
        status = search_status(status0, ~exhausted, exact=True)
        return TreeCode(depth, path, jnp.where(status0 == OK, steps, 0), status, **origin("gprs_bnb", prior))

    encode = compiled_encoder(search_tree, _check_problem)

    spec = CoderSpec(
        "gprs_bnb", (("split", split), ("capacity", capacity), ("max_steps", max_steps), ("max_depth", max_depth))
    )
    return Coder(encode, make_decoder(split, "gprs_bnb"), spec)


registry.register_coder(
    "gprs_bnb", gprs_bnb, params=("split", "capacity", "max_steps", "max_depth"), message=tree_message,
    check=check_bounded_ratio, pack=tree_pack, unpack=tree_unpack("max_depth"),
)
