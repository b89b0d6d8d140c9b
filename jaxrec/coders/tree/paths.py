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

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

WORD_BITS = 32
MAX_DEPTH = 1024

__all__ = [
    "MAX_DEPTH",
    "TreeCode",
    "from_heap_index",
    "heap_index",
    "path_bit",
    "path_words",
    "prefix",
    "with_bit",
]


class TreeCode(NamedTuple):
    """What a tree-search coder sends (``depth``, ``path``) plus diagnostics.

    Attributes:
      depth: ``int32``, depth of the chosen node (root 0).
      path: ``uint32[W]``, its branch bits (see the module docstring); together with ``depth``
        this is the heap index ``2^depth + path-as-integer``.
      steps: ``int32``, tree nodes whose sample the encoder drew (its own step count, comparable
        with a scan coder's candidates).
      exhausted: ``bool``, True when an exact search stopped before its stop rule proved the
        result (queue overflow, depth limit, or step limit): the sample is then not exact.
    """

    depth: Array
    path: Array
    steps: Array
    exhausted: Array


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
