"""Heap-index paths: the message of a tree-search coder.

The transmitted message of a tree coder is the chosen node's *heap index* (root 1, children ``2k``
and ``2k + 1``; Flamich, Markou & Hernandez-Lobato, ICML 2022, Sec. 3).  Past depth 31 that
overflows ``int32``, so it is carried as ``(depth, path)``: ``depth`` an ``int32`` (root 0) and
``path`` ``uint32[W]`` words holding the branch bits, bit ``l - 1`` (``1`` = right child) of the
branch taken at level ``l = 1 .. depth`` sitting in word ``(l - 1) // 32`` at position
``(l - 1) % 32``.  ``heap_index = 2^depth + sum_l bit_l 2^(depth - l)``; :func:`heap_index` and
:func:`from_heap_index` convert on the host (Python ints, any depth).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.coders.base import CodeBase, code_type, static_field
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

WORD_BITS = 32
MAX_DEPTH = 1024

__all__ = [
    "MAX_DEPTH",
    "MAX_SENT_DEPTH",
    "TreeCode",
    "from_heap_index",
    "heap_index",
    "pack_heap_index",
    "unpack_heap_index",
    "path_bit",
    "path_words",
    "prefix",
    "with_bit",
]


@code_type
class TreeCode(CodeBase):
    """What a tree-search coder sends (``depth``, ``path``) plus diagnostics.

    Attributes:
      depth: ``int32``, depth of the chosen node (root 0).
      path: ``uint32[W]``, its branch bits (see the module docstring); together with ``depth``
        this is the heap index ``2^depth + path-as-integer``.
      steps: ``int32``, tree nodes whose sample the encoder drew (its own step count, comparable
        with a scan coder's candidates).
      status: ``int32`` (:mod:`jaxrec.coders.base`); ``EXHAUSTED`` when an exact search stopped
        before its stop rule proved the result (queue overflow, depth limit, or step limit).
    """

    MESSAGE: ClassVar[tuple[str, ...]] = ("depth", "path")
    depth: Array
    path: Array
    steps: Array
    status: Array
    coder: str = static_field()
    event_size: int = static_field()


def path_words(max_depth: int) -> int:
    """``W``, the ``uint32`` words needed for paths up to ``max_depth`` (at least one)."""
    return max(1, -(-max_depth // WORD_BITS))


def with_bit(path: Array, level: Array, bit: Array) -> Array:
    """``path`` with branch ``bit`` (0 or 1) recorded at ``level`` (1-based; must be unset)."""
    word = (level - 1) // WORD_BITS
    shift = ((level - 1) % WORD_BITS).astype(jnp.uint32)
    return path.at[word].set(path[word] | (jnp.asarray(bit).astype(jnp.uint32) << shift))


def path_bit(path: Array, level: Array) -> Array:
    """The branch bit (``int32`` 0/1) taken at ``level`` (1-based)."""
    word = (level - 1) // WORD_BITS
    shift = ((level - 1) % WORD_BITS).astype(jnp.uint32)
    return ((path[word] >> shift) & jnp.uint32(1)).astype(jnp.int32)


def prefix(path: Array, depth: Array) -> Array:
    """``path`` with the branch bits of levels ``> depth`` cleared: the path of the ancestor at ``depth``."""
    starts = jnp.arange(path.shape[0], dtype=jnp.int32) * WORD_BITS
    keep = jnp.clip(depth - starts, 0, WORD_BITS)
    low_mask = jnp.where(
        keep >= WORD_BITS, jnp.uint32(0xFFFFFFFF), (jnp.uint32(1) << keep.astype(jnp.uint32)) - jnp.uint32(1)
    )
    return path & low_mask


def heap_index(depth: Any, path: Any) -> int:
    """Host-side heap index (a Python ``int``, any depth) of a concrete ``(depth, path)``."""
    depth = int(depth)
    words = [int(w) for w in jnp.asarray(path).reshape(-1)]
    index = 1
    for level in range(1, depth + 1):
        word, shift = divmod(level - 1, WORD_BITS)
        index = 2 * index + ((words[word] >> shift) & 1)
    return index


def from_heap_index(index: int, max_depth: int) -> tuple[Array, Array]:
    """``(depth int32, path uint32[W])`` of a heap index ``>= 1`` (inverse of :func:`heap_index`)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 1:
        raise InvalidArgumentError(f"heap index must be an int >= 1, got {index!r}")
    depth = index.bit_length() - 1
    if depth > max_depth:
        raise InvalidArgumentError(f"heap index {index} has depth {depth} > max_depth {max_depth}")
    words = [0] * path_words(max_depth)
    for level in range(1, depth + 1):
        bit = (index >> (depth - level)) & 1
        word, shift = divmod(level - 1, WORD_BITS)
        words[word] |= bit << shift
    return jnp.int32(depth), jnp.asarray(words, jnp.uint32)


MAX_SENT_DEPTH = 62
"""Deepest node a file can carry: its 0-based heap index ``2^depth - 1 + path`` must fit a
:class:`~jaxrec.entropy.ZipfModel` (below ``2^63 - 1``)."""


def pack_heap_index(depth: np.ndarray, path: np.ndarray) -> np.ndarray:
    """0-based heap indices ``2^depth - 1 + sum_l bit_l 2^(depth - l)``, ``int64[...]``, of nodes
    ``(depth int[...], path uint32[..., W])`` (host side, vectorized over the leading axes).

    Raises :class:`InvalidArgumentError` for a node deeper than :data:`MAX_SENT_DEPTH`.
    """
    depth = np.asarray(depth, np.int64)
    path = np.asarray(path, np.uint64)
    if depth.size and int(depth.max()) > MAX_SENT_DEPTH:
        raise InvalidArgumentError(
            f"a node of depth {int(depth.max())} cannot be sent (at most {MAX_SENT_DEPTH} levels): use smaller blocks"
        )
    value = np.zeros(depth.shape, np.int64)
    for level in range(1, int(depth.max(initial=0)) + 1):
        word, shift = divmod(level - 1, WORD_BITS)
        bit = ((path[..., word] >> np.uint64(shift)) & np.uint64(1)).astype(np.int64)
        value = np.where(level <= depth, 2 * value + bit, value)
    return (np.int64(1) << depth) - 1 + value


def unpack_heap_index(index: np.ndarray, max_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`pack_heap_index`: ``(depth int32[...], path uint32[..., W])`` with
    ``W = path_words(max_depth)``.  Raises :class:`InvalidArgumentError` for a depth beyond ``max_depth``."""
    n = np.asarray(index, np.int64) + 1
    depth = np.zeros(n.shape, np.int64)
    for shift in (32, 16, 8, 4, 2, 1):  # exact floor(log2 n) for n >= 1
        depth += shift * ((n >> (depth + shift)) > 0)
    if depth.size and int(depth.max()) > max_depth:
        raise InvalidArgumentError(f"heap index of depth {int(depth.max())} exceeds max_depth {max_depth}")
    path = np.zeros(n.shape + (path_words(max_depth),), np.uint64)
    for level in range(1, int(depth.max(initial=0)) + 1):
        bit = np.where(level <= depth, (n >> np.maximum(depth - level, 0)) & 1, 0).astype(np.uint64)
        word, shift = divmod(level - 1, WORD_BITS)
        path[..., word] |= bit << np.uint64(shift)
    return depth.astype(np.int32), path.astype(np.uint32)
