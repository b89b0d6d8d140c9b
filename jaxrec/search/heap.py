"""A bounded priority queue for tree searches, usable inside ``lax.while_loop`` and under ``vmap``.

Tree-search coders (A* coding AS*/AD*/DAD*, branch-and-bound GPRS) refine a binary partition of
the sample space: the search repeatedly pops the most promising node and pushes its two children.
:class:`Heap` is a max-heap of fixed ``capacity`` stored as arrays, so it can live in a
``while_loop`` carry: heap positions hold ``(priority, slot)`` pairs (position 0 is the maximum,
the children of position ``i`` are ``2i + 1`` and ``2i + 2``, positions ``>= size`` hold ``-inf``)
and the items (any pytree) sit in a pool of ``C`` slots that never moves.  :func:`heap_push`
(masked by ``when``) and :func:`heap_pop` are O(log C) with one vectorized shift along a
root-to-leaf chain instead of a swap loop; :func:`heap_top` peeks.  A push into a full heap drops
that item and sets ``Heap.overflow``: the search result is then no longer exact and the coder must
report it.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

MAX_CAPACITY = 2**20

__all__ = ["Heap", "MAX_CAPACITY", "heap_init", "heap_pop", "heap_push", "heap_top"]


class Heap(NamedTuple):
    """A fixed-capacity max-priority queue: an array binary heap over a pool of item slots; a pytree.

    Attributes:
      priority: ``float[C]`` heap order; ``priority[0]`` is the maximum; ``-inf`` beyond ``size``.
      slot: ``int32[C]``, the pool slot holding the item of each heap position.
      items: pytree with leaves ``[C, ...]``, the item pool (indexed by slot, never moved).
      free: ``int32[C]``; ``free[:C - size]`` is the stack of unused pool slots.
      size: ``int32``, number of stored items.
      overflow: ``bool``, True once a push found the heap full (that item was dropped).
    """

    priority: Array
    slot: Array
    items: Any
    free: Array
    size: Array
    overflow: Array


def _levels(capacity: int) -> int:
    """Height of a heap of ``capacity``: the length of its longest root-to-leaf path."""
    return max(1, math.ceil(math.log2(capacity + 1)))


def heap_init(capacity: int, item_like: Any, dtype: jnp.dtype = jnp.float32) -> Heap:
    """An empty heap of ``capacity`` items shaped like ``item_like`` (a pytree of arrays for one item).

    Raises :class:`InvalidArgumentError` unless ``1 <= capacity <= 2^20``.
    """
    if isinstance(capacity, bool) or not isinstance(capacity, int) or not 1 <= capacity <= MAX_CAPACITY:
        raise InvalidArgumentError(f"capacity must be an int in [1, {MAX_CAPACITY}], got {capacity!r}")
    items = jax.tree.map(lambda a: jnp.zeros((capacity,) + jnp.shape(a), jnp.asarray(a).dtype), item_like)
    slots = jnp.arange(capacity, dtype=jnp.int32)
    return Heap(jnp.full((capacity,), -jnp.inf, dtype), slots, items, slots, jnp.int32(0), jnp.array(False))


def heap_top(heap: Heap) -> Array:
    """The largest priority, ``-inf`` when the heap is empty."""
    return jnp.where(heap.size > 0, heap.priority[0], -jnp.inf)


def _shift_along(heap: Heap, path: Array, valid: Array, moved: Array, priority: Array, slot: Array) -> Heap:
    """Moves heap positions ``path[1..moved]`` one step along ``path`` and puts the entry at ``path[moved]``.

    ``path`` (``int32[L]``) is a root-to-leaf or leaf-to-root chain of positions; entry ``j < moved``
    takes the contents of ``path[j + 1]``.  Positions with ``valid`` False are not written.
    """
    j = jnp.arange(path.shape[0])
    nxt = jnp.roll(path, -1)
    cap = heap.priority.shape[0]
    prio = jnp.where(j < moved, heap.priority[nxt], priority)
    slots = jnp.where(j < moved, heap.slot[nxt], slot)
    target = jnp.where(valid & (j <= moved), path, cap)  # out of range: dropped
    return heap._replace(
        priority=heap.priority.at[target].set(prio, mode="drop"),
        slot=heap.slot.at[target].set(slots, mode="drop"),
    )


def heap_push(heap: Heap, priority: Array, item: Any, when: Array | bool = True) -> Heap:
    """Inserts ``(priority, item)`` if ``when`` (a traced ``bool`` is fine); O(log C).

    The item is written once into a free pool slot; the sift-up moves ``(priority, slot)`` pairs
    along the leaf-to-root chain in one vectorized gather/scatter (the chain's priorities are
    sorted, so the insertion point is a count).  A full heap is left unchanged and ``overflow`` is
    set.  A new item never moves above an equal priority.
    """
    cap = heap.priority.shape[0]
    when = jnp.asarray(when)
    full = heap.size >= cap
    active = when & ~full
    priority = jnp.asarray(priority, heap.priority.dtype)
    slot = heap.free[jnp.clip(cap - heap.size - 1, 0, cap - 1)]
    # Leaf-to-root chain from the new position: path[j] = ((size + 1) >> j) - 1.
    up = (heap.size + 1) >> jnp.arange(_levels(cap), dtype=jnp.int32)
    path, valid = up - 1, (up >= 1) & active
    smaller = valid & (jnp.arange(path.shape[0]) >= 1) & (heap.priority[jnp.maximum(path, 0)] < priority)
    moved = jnp.sum(smaller)  # ancestors below the new priority form a prefix of the chain
    heap = _shift_along(heap, path, valid, moved, priority, slot)
    items = jax.tree.map(
        lambda a, v: a.at[jnp.where(active, slot, cap)].set(v, mode="drop"), heap.items, item
    )
    return heap._replace(
        items=items, size=heap.size + active.astype(jnp.int32), overflow=heap.overflow | (when & full)
    )


def heap_pop(heap: Heap) -> tuple[Array, Any, Heap]:
    """Removes the top item: ``(priority, item, heap)``; O(log C).

    The hole left at the root is filled by the last entry, placed along the chain of larger
    children (found with priority reads only, then one vectorized shift).  On an empty heap returns
    priority ``-inf``, an unspecified item and the heap unchanged.
    """
    cap = heap.priority.shape[0]
    nonempty = heap.size > 0
    top_prio = heap_top(heap)
    top_slot = heap.slot[0]
    top_item = jax.tree.map(lambda a: a[top_slot], heap.items)
    size = jnp.maximum(heap.size - 1, 0)
    last_prio, last_slot = heap.priority[size], heap.slot[size]
    prio = heap.priority.at[size].set(-jnp.inf)  # slots >= size hold -inf

    def larger_child(level: int, path: Array) -> Array:
        i = path[level]
        left, right = 2 * i + 1, 2 * i + 2
        p_left = jnp.where(left < size, prio[jnp.minimum(left, cap - 1)], -jnp.inf)
        p_right = jnp.where(right < size, prio[jnp.minimum(right, cap - 1)], -jnp.inf)
        child = jnp.where(p_right > p_left, right, left)
        return path.at[level + 1].set(jnp.where(child < size, child, cap))

    levels = _levels(cap)
    path = lax.fori_loop(0, levels - 1, larger_child, jnp.zeros((levels,), jnp.int32))
    valid = (path < size) & nonempty
    bigger = valid & (jnp.arange(levels) >= 1) & (prio[jnp.minimum(path, cap - 1)] > last_prio)
    moved = jnp.sum(bigger)  # children above the displaced entry form a prefix of the chain
    heap = _shift_along(heap._replace(priority=prio), path, valid, moved, last_prio, last_slot)
    free = heap.free.at[jnp.where(nonempty, cap - size - 1, cap)].set(top_slot, mode="drop")
    return top_prio, top_item, heap._replace(free=free, size=size)
