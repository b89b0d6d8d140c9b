"""Shared randomness: how every random number in a REC search is derived from the shared key.

Encoder and decoder hold the same key. Everything the decoder must regenerate is a pure function
of ``(key, stream, n)`` built by ``fold_in`` chains, so candidate ``n`` costs O(1) to rebuild and
does not depend on how the encoder chunked its search:

* ``candidate_key(key, n, stream=s)`` -- the key of candidate ``n`` of sample stream ``s`` (stream
  0 for a plain coder; bins and parallel threads use their own stream ids);
* ``arrival_key(key, n, stream=s)`` -- the key of the n-th arrival-time / Gumbel draw.  Only the
  encoder uses it, but it is kept a pure function of ``(key, n)`` so that codes do not depend on
  the chunk size.

The PRNG implementation is pinned to ``threefry2x32`` with partitionable bit generation (the JAX
default since 0.5) -- the only implementations JAX documents as identical across CPU, GPU and TPU.
:func:`as_key` rejects keys of another implementation.  All draws pass explicit dtypes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

PRNG_IMPL = "threefry2x32"
# Domain-separation tags folded into the shared key (ASCII 'CAND', 'TIME', 'BINS', 'TREE').
CANDIDATE_TAG = 0x43414E44
ARRIVAL_TAG = 0x54494D45
BIN_TAG = 0x42494E53
TREE_TAG = 0x54524545  # ASCII 'TREE'

__all__ = [
    "PRNG_IMPL",
    "as_key",
    "as_keys",
    "key_to_words",
    "candidate_key",
    "arrival_key",
    "arrival_bits",
    "bin_key",
    "fold_in_index",
    "candidates",
    "node_location_key",
    "node_private_key",
    "tree_node_key",
]


_KEY_FORMS = "an int seed in [0, 2**32), a typed threefry2x32 key, or uint32[..., 2] key data"


def as_key(seed_or_key: Any) -> Array:
    """Returns ONE typed ``threefry2x32`` key (shape ``()``).

    Accepts a Python/numpy integer seed in ``[0, 2^32)`` (JAX silently truncates larger seeds,
    so they are refused), a scalar integer array (e.g. a seed traced by ``jit``), a typed key, or
    raw key data ``uint32[2]``; anything else, including several keys (use :func:`as_keys`), raises
    :class:`InvalidArgumentError`.
    """
    typed = _typed_keys(seed_or_key)
    if typed.shape != ():
        raise InvalidArgumentError(
            f"key must be one key, got keys of shape {typed.shape}; for a batch use jaxrec.encode_batch or jax.vmap"
        )
    return typed


def _check_host_seeds(name: str, value: Any, ndim: int) -> None:
    """Refuses concrete integer seeds (``ndim`` dimensions) outside ``[0, 2^32)`` *before* JAX
    converts them: without x64, JAX would wrap an ``int64`` seed such as ``2**32`` around silently."""
    if isinstance(value, (jax.Array, jax.core.Tracer)):
        return  # JAX arrays are checked after conversion (their values are what JAX would use)
    try:
        host = np.asarray(value)
    except (TypeError, ValueError, OverflowError):
        return  # not an array: the caller's conversion refuses it
    if host.dtype.kind in "iu" and host.ndim == ndim and host.size and (host.min() < 0 or host.max() >= 2**32):
        raise InvalidArgumentError(f"{name}: seeds must be in [0, 2**32), got {host.tolist()!r}")


def _typed_keys(seed_or_key: Any) -> Array:
    """Typed ``threefry2x32`` keys of any shape from one of the forms :func:`as_key` takes (key
    data ``uint32[..., 2]`` or typed keys of any shape)."""
    if isinstance(seed_or_key, bool) or seed_or_key is None or isinstance(seed_or_key, (str, bytes, float)):
        raise InvalidArgumentError(f"key must be {_KEY_FORMS}; got {seed_or_key!r}")
    if isinstance(seed_or_key, (int, np.integer)):
        seed = int(seed_or_key)
        if not 0 <= seed < 2**32:
            raise InvalidArgumentError(f"key: seed must be in [0, 2**32), got {seed}")
        return jax.random.key(seed, impl=PRNG_IMPL)
    arr = seed_or_key
    if jnp.issubdtype(getattr(arr, "dtype", None), jax.dtypes.prng_key):
        impl = str(jax.random.key_impl(arr))
        if PRNG_IMPL not in impl:
            raise InvalidArgumentError(f"key must use the {PRNG_IMPL} PRNG, got {impl}")
        return arr
    _check_host_seeds("key", arr, ndim=0)
    try:
        arr = jnp.asarray(arr)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgumentError(f"key must be {_KEY_FORMS}; got {seed_or_key!r}") from None
    if jnp.issubdtype(arr.dtype, jnp.integer) and arr.ndim == 0:  # a (possibly traced) integer seed
        if not isinstance(arr, jax.core.Tracer) and not 0 <= int(arr) < 2**32:
            raise InvalidArgumentError(f"key: seed must be in [0, 2**32), got {int(arr)}")
        return jax.random.key(arr, impl=PRNG_IMPL)
    if arr.dtype != jnp.uint32 or arr.shape[-1:] != (2,):
        raise InvalidArgumentError(f"key must be {_KEY_FORMS}; got {arr.dtype}{list(arr.shape)}")
    return jax.random.wrap_key_data(arr, impl=PRNG_IMPL)


def as_keys(keys: Any, batch: int) -> Array:
    """``(batch,)`` typed keys from ``(batch,)`` int seeds, typed keys or ``uint32[batch, 2]`` data.

    Raises :class:`InvalidArgumentError` for another form or another batch size.
    """
    if isinstance(keys, (int, np.integer, str, bytes, float)) or keys is None:
        raise InvalidArgumentError(f"keys must be {batch} keys (one per problem), got {keys!r}")
    if not jnp.issubdtype(getattr(keys, "dtype", None), jax.dtypes.prng_key):
        _check_host_seeds("keys", keys, ndim=1)
        try:
            arr = jnp.asarray(keys)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgumentError(f"keys must be {batch} keys ({_KEY_FORMS} each); got {keys!r}") from None
        if jnp.issubdtype(arr.dtype, jnp.integer) and arr.ndim == 1:  # int seeds
            if not isinstance(arr, jax.core.Tracer) and arr.size and (int(arr.min()) < 0 or int(arr.max()) >= 2**32):
                raise InvalidArgumentError(f"keys: seeds must be in [0, 2**32), got {np.asarray(arr)!r}")
            keys = jax.vmap(lambda seed: jax.random.key(seed, impl=PRNG_IMPL))(arr)
        else:
            keys = arr
    typed = _typed_keys(keys)
    if typed.shape != (batch,):
        raise InvalidArgumentError(f"need {batch} keys (one per problem), got keys of shape {typed.shape}")
    return typed


def key_to_words(key: Array) -> np.ndarray:
    """The two ``uint32`` words of a typed key, for a file header."""
    return np.asarray(jax.random.key_data(as_key(key)), dtype=np.uint32)


def fold_in_index(key: Array, n: Array) -> Array:
    """``fold_in`` for a non-negative index up to ``2^32 - 1`` (``int32`` or ``uint32``)."""
    return jax.random.fold_in(key, jnp.asarray(n).astype(jnp.uint32))


def _stream(key: Array, tag: int, stream: Array | int) -> Array:
    return fold_in_index(jax.random.fold_in(key, tag), stream)


def candidate_key(key: Array, n: Array, stream: Array | int = 0) -> Array:
    """Key of candidate ``n`` in sample stream ``stream``: ``fold_in(fold_in(fold_in(key, CAND), s), n)``."""
    return fold_in_index(_stream(key, CANDIDATE_TAG, stream), n)


def arrival_key(key: Array, n: Array, stream: Array | int = 0) -> Array:
    """Key of the ``n``-th arrival-time (or Gumbel) draw of stream ``stream``; encoder-only."""
    return fold_in_index(_stream(key, ARRIVAL_TAG, stream), n)


def arrival_bits(key: Array, ns: Array, stream: Array | int = 0) -> Array:
    """``uint32[K]`` random words for the indices ``ns``: the first word of ``arrival_key(key, n)``.

    ``fold_in`` is itself one threefry2x32 evaluation, so the key's data already is a uniformly
    random word; using it directly halves the hashing of an arrival-time draw.
    """
    keys = jax.vmap(lambda n: arrival_key(key, n, stream))(ns)
    return jax.random.key_data(keys)[..., 0]


def bin_key(key: Array, n: Array, stream: Array | int = 0) -> Array:
    """Key of the ``n``-th private bin choice (space-partitioning coders); encoder-only."""
    return fold_in_index(_stream(key, BIN_TAG, stream), n)


def candidates(key: Array, ns: Array, prior: Any, stream: Array | int = 0) -> Array:
    """Candidates ``X_n ~ P`` for the indices ``ns`` (``int32[K]``): ``(K, D)``.

    ``X_n = prior.sample(candidate_key(key, n, stream))``: the decoder rebuilds one with
    ``candidates(key, index[None], prior)[0]`` at O(D) cost.
    """
    return jax.vmap(lambda n: prior.sample(candidate_key(key, n, stream)))(ns)


# Tree searches (A* coding, branch-and-bound GPRS): node randomness from (depth, path) alone.

def tree_node_key(key: Array, depth: Array, path: Array) -> Array:
    """Key of the node ``(depth, path)``: a pure function of the shared key and the node.

    The branch bits of levels ``> depth`` must be zero (as :func:`jaxrec.coders.tree.paths.with_bit` leaves them).
    """
    k = fold_in_index(jax.random.fold_in(key, TREE_TAG), depth)
    for w in range(path.shape[0]):
        k = fold_in_index(k, path[w])
    return k


def node_location_key(node: Array) -> Array:
    """Shared key of a node's sample (the decoder regenerates it)."""
    return jax.random.fold_in(node, CANDIDATE_TAG)


def node_private_key(node: Array) -> Array:
    """Encoder-only key of a node's arrival time / Gumbel."""
    return jax.random.fold_in(node, ARRIVAL_TAG)
