"""Shared randomness: how every random number in a REC search is derived from the shared key.

Encoder and decoder hold the same key.  Everything the decoder must regenerate is a pure function
of ``(key, stream, n)``, so candidate ``n`` costs O(D) to rebuild and does not depend on how the
encoder chunked its search.

**Counter-mode streams.**  A *stream* is a threefry2x32 key derived once per problem,
``s = fold_in(fold_in(key, TAG), stream)``.  Item ``n`` of a stream owns 32-bit words
``w = 0, 1, ...``: word ``w`` is output ``w mod 2`` of the hash ``threefry2x32(s, (w // 2, n))``
(Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011).  A hash is
spent per *two* words, the counter is the pair ``(w // 2, n)`` (no 64-bit arithmetic, no
dependence on neighbouring items), word ``w`` of item ``n`` is a function of ``(s, n, w)`` alone
(not of how many words the item uses: a block padded with dead coordinates draws the same words
for its live ones), and a chunk of ``K`` items is one ``(ceil(width / 2), K)`` array of hashes, laid
out with the item axis minor so that it vectorizes.  The hash is
written out here (:func:`threefry2x32`, bit-identical to JAX's ``threefry2x32`` primitive, checked
in the tests) because JAX lowers its primitive on CPU as a rolled loop that XLA cannot fuse.

* :func:`candidate_stream`, :func:`stream_candidates`, :func:`candidates` -- the shared candidate
  stream (tag ``CAND``; stream 0 for a plain coder, GPRS threads and iREC's auxiliary variables use
  their own stream ids): ``X_n = prior.from_words(words of n)``, one word per dimension (SP-ORC
  draws its candidate ``n``'s point within its bins from the same words);
* :func:`private_stream` -- encoder-only words per candidate (tag ``TIME``): arrival times,
  Gumbels, acceptance uniforms, space-partitioning bin choices.  Only the encoder uses them, but
  they are pure functions of ``(key, n)`` so that codes do not depend on the chunk size;
* :func:`bin_row_keys` -- the shared per-bin streams of SP-PFR (tag ``ROWS``, format version 5): one
  key per hash row shared by every bin, the bin's packed index (at most 32 bits) in the counter
  (:class:`LabelledStreams`: word ``w`` of item ``n`` of bin ``b`` is output ``w mod 2`` of
  ``threefry2x32(k_{w // 2}, (b, n))``), so a chunk hashes under ``ceil(D / 2)`` keys shared by all
  its candidates;
* :func:`bin_stream` -- SP-PFR's per-bin streams for grids whose packed index needs more than 32
  bits, and for every grid in files of format versions 2 to 4 (tag ``BINS``): the bin's packed
  index is hashed into the bin's own stream key (a hash per candidate, and per-candidate keys).

The PRNG implementation is pinned to ``threefry2x32`` (the JAX default, identical on CPU, GPU and
TPU); :func:`as_key` rejects keys of another implementation.  Tree searches (A* coding,
branch-and-bound GPRS) and AGRS keep ``fold_in`` chains (:func:`tree_node_key`,
:func:`candidate_key`, :func:`arrival_key`): they draw a handful of scalars per node.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxrec.core.distributions import columns, log_ratio_per_dim
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

PRNG_IMPL = "threefry2x32"
# Domain-separation tags folded into the shared key (ASCII 'CAND', 'TIME', 'BINS', 'TREE').
CANDIDATE_TAG = 0x43414E44
ARRIVAL_TAG = 0x54494D45
BIN_TAG = 0x42494E53
ROW_TAG = 0x524F5753  # ASCII 'ROWS'
TREE_TAG = 0x54524545  # ASCII 'TREE'

__all__ = [
    "PRNG_IMPL",
    "LabelledStreams",
    "arrival_key",
    "as_key",
    "as_keys",
    "bin_row_keys",
    "bin_stream",
    "candidate_key",
    "candidate_stream",
    "candidates",
    "counter_words",
    "fold_in_index",
    "key_to_words",
    "node_location_key",
    "node_private_key",
    "private_stream",
    "stream_candidates",
    "stream_log_ratio",
    "stream_words",
    "sum_over_words",
    "threefry2x32",
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


def _check_host_seeds(name: str, value: Any, ndim: int) -> Any:
    """Refuses concrete integer seeds (``ndim`` dimensions) outside ``[0, 2^32)`` *before* JAX
    converts them, and returns the others as ``uint32``: without x64, JAX would wrap an ``int64``
    seed such as ``2**32`` around silently (and ``2**31`` to a negative ``int32``)."""
    if isinstance(value, (jax.Array, jax.core.Tracer)):
        return value  # JAX arrays are checked after conversion (their values are what JAX would use)
    try:
        host = np.asarray(value)
    except (TypeError, ValueError, OverflowError):
        return value  # not an array: the caller's conversion refuses it
    if host.dtype.kind in "iu" and host.ndim == ndim and host.size:
        if host.min() < 0 or host.max() >= 2**32:
            raise InvalidArgumentError(f"{name}: seeds must be in [0, 2**32), got {host.tolist()!r}")
        return host.astype(np.uint32)
    return value


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
    arr = _check_host_seeds("key", arr, ndim=0)
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
        keys = _check_host_seeds("keys", keys, ndim=1)
        try:
            arr = jnp.asarray(keys)
        except (TypeError, ValueError, OverflowError):
            raise InvalidArgumentError(f"keys must be {batch} keys ({_KEY_FORMS} each); got {keys!r}") from None
        if jnp.issubdtype(arr.dtype, jnp.integer) and arr.ndim == 1:  # int seeds
            if not isinstance(arr, jax.core.Tracer) and arr.size and not np.all((np.asarray(arr) >= 0) & (np.asarray(arr) < 2**32)):
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


# ---------------------------------------------------------------------------------------------
# Counter-mode streams.

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_ROW_GROUP = 4  # hash rows unrolled per iteration of sum_over_words' loop
_KS_PARITY = 0x1BD11BDA


def threefry2x32(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """Threefry-2x32 with 20 rounds (Salmon et al., SC 2011): the hash of counter ``(x0, x1)``
    under key ``(k0, k1)``, all ``uint32`` and broadcast against each other.

    Bit-identical to ``jax.extend.random.threefry2x32_p``; written with plain integer ops and the
    rounds unrolled so that XLA fuses the whole hash into the loop that consumes it.
    """
    u32 = lambda v: jnp.asarray(v, jnp.uint32)
    return _threefry2x32_rounds(u32(k0), u32(k1), u32(x0), u32(x1))


@jax.jit
def _threefry2x32_rounds(k0: Array, k1: Array, x0: Array, x1: Array) -> tuple[Array, Array]:
    """:func:`threefry2x32` of ``uint32`` arguments (one compiled program when called outside ``jit``)."""
    ks = (k0, k1, k0 ^ k1 ^ jnp.uint32(_KS_PARITY))
    x0, x1 = x0 + ks[0], x1 + ks[1]
    for i in range(5):
        for r in _ROTATIONS[i % 2]:
            x0 = x0 + x1
            x1 = (x1 << jnp.uint32(r)) | (x1 >> jnp.uint32(32 - r))
            x1 = x1 ^ x0
        x0 = x0 + ks[(i + 1) % 3]
        x1 = x1 + ks[(i + 2) % 3] + jnp.uint32(i + 1)
    return x0, x1


def stream_words(key: Array, tag: int, stream: Array | int = 0) -> Array:
    """``uint32[2]``: the key data of stream ``stream`` under domain tag ``tag``."""
    return jax.random.key_data(_stream(key, tag, stream))


def candidate_stream(key: Array, stream: Array | int = 0) -> Array:
    """``uint32[2]``: shared candidate stream ``stream`` (derive it once per problem)."""
    return stream_words(key, CANDIDATE_TAG, stream)


def private_stream(key: Array, stream: Array | int = 0) -> Array:
    """``uint32[2]``: encoder-only stream ``stream`` (arrival times, Gumbels, acceptance
    uniforms, bin choices), independent of every candidate stream."""
    return stream_words(key, ARRIVAL_TAG, stream)


class LabelledStreams(NamedTuple):
    """A family of counter-mode streams told apart by a 32-bit label in the counter instead of by
    their keys: word ``w`` of item ``n`` of the stream labelled ``b`` is output ``w mod 2`` of
    ``threefry2x32(keys[w // 2], (b, n))``.  The ``keys`` are shared by every stream of the family,
    so a chunk of items of distinct streams hashes under a few scalar keys (no key per item).

    Attributes:
      keys: ``uint32[R, 2]``, one key per hash row (``R >= ceil(width / 2)`` for the widths drawn).
      label: ``uint32`` scalar or ``uint32[K]`` (one label per item), the stream of each item.
    """

    keys: Array
    label: Array


Stream = Array | LabelledStreams
"""Key data ``uint32[2]`` (one stream), ``uint32[K, 2]`` (a stream per item) or :class:`LabelledStreams`."""


def _check_rows(stream: Stream, width: int) -> None:
    """Raises :class:`InvalidArgumentError` when :class:`LabelledStreams` hold fewer row keys than
    ``width`` words need (a gather past them would clamp to the last key and repeat its words)."""
    if isinstance(stream, LabelledStreams) and stream.keys.shape[-2] < (width + 1) // 2:
        raise InvalidArgumentError(
            f"LabelledStreams hold {stream.keys.shape[-2]} row keys, {width} words need {(width + 1) // 2}"
        )


def _hash_row(stream: Stream, row: Array, items: Array) -> tuple[Array, Array]:
    """The hash of row ``row`` (``uint32``, broadcast against ``items``) of the items ``items``:
    ``threefry2x32(stream, (row, n))``, or ``threefry2x32(keys[row], (label, n))`` for
    :class:`LabelledStreams`."""
    if isinstance(stream, LabelledStreams):
        key = stream.keys[row]
        return threefry2x32(key[..., 0], key[..., 1], stream.label, items)
    return threefry2x32(stream[..., 0], stream[..., 1], row, items)


@functools.partial(jax.jit, static_argnames="width")
def counter_words(stream: Stream, ns: Array, width: int) -> Array:
    """``uint32[width, K]``: the ``width`` words of the items ``ns`` (``int32[K]``) of a stream.

    ``stream`` is the stream's key data ``uint32[2]`` (or ``uint32[K, 2]``, one stream per item),
    or :class:`LabelledStreams`.  Word ``w`` of item ``n`` is output ``w mod 2`` of
    ``threefry2x32(stream, (w // 2, n))`` (labelled: ``threefry2x32(keys[w // 2], (label, n))``):
    ``ceil(width / 2)`` hashes per item; word ``w`` depends neither on ``width`` nor on which
    other items are drawn with it.
    """
    _check_rows(stream, width)
    half = (width + 1) // 2
    rows = jnp.arange(half, dtype=jnp.uint32)[:, None]
    y0, y1 = _hash_row(stream, rows, jnp.asarray(ns).astype(jnp.uint32))
    return jnp.stack([y0, y1], axis=1).reshape((2 * half,) + y0.shape[1:])[:width]


def sum_over_words(stream: Stream, ns: Array, width: int, term: Callable[[Array, Array], Array]) -> Array:
    """``sum_w term(w, word_w)`` over the ``width`` words of each item ``ns`` (``int32[K]``): ``(K,)``.

    The words are those of :func:`counter_words`, but the ``(width, K)`` array is never formed:
    each hash row ``h`` is drawn as a ``(K,)`` array and feeds ``term(2h, y0) + term(2h + 1, y1)``
    at once, so every computation is elementwise over the item axis.  On CPU, XLA vectorizes such
    loops, whereas a reduction over a ``(width, K)`` axis-major array is fused with its producer
    into scalar code (several times slower for an inverse-CDF term).  Rows are unrolled in groups
    of ``_ROW_GROUP`` inside a ``fori_loop`` (bounded program size for any width); the sum runs in
    the fixed order ``((w_0 + w_1) + (w_2 + w_3)) + ...``, independent of ``K``, so trailing words
    whose terms are exactly 0 (padding) leave it unchanged.

    Args:
      stream: key data ``uint32[2]`` (or ``uint32[K, 2]``, one stream per item), or
        :class:`LabelledStreams`.
      ns: ``int32[K]`` item numbers.
      width: words per item.
      term: ``(w int32 scalar, words uint32[K]) -> float[K]``.
    """
    _check_rows(stream, width)
    half, full = (width + 1) // 2, width // 2
    groups, _ = looped_rows(width)
    items = jnp.asarray(ns).astype(jnp.uint32)

    def row(h: Array) -> tuple[Array, Array]:
        return _hash_row(stream, h.astype(jnp.uint32), items)

    def pairs(h: Array, total: Any) -> Array:
        y0, y1 = row(h)
        contribution = term(2 * h, y0) + term(2 * h + 1, y1)
        return contribution if total is None else total + contribution

    total = None
    if groups:
        def group(g: Array, acc: Array) -> Array:
            for j in range(_ROW_GROUP):
                acc = pairs(g * _ROW_GROUP + j, acc)
            return acc

        first = jax.eval_shape(lambda: term(jnp.int32(0), items))
        total = lax.fori_loop(0, groups, group, jnp.zeros(first.shape, first.dtype))
    for h in range(groups * _ROW_GROUP, full):
        total = pairs(jnp.int32(h), total)
    if width % 2:  # the last row's second word is not used
        y0, _ = row(jnp.int32(half - 1))
        last = term(jnp.int32(width - 1), y0)
        total = last if total is None else total + last
    return total


def looped_rows(width: int) -> tuple[int, int]:
    """How :func:`sum_over_words` lays out the ``width // 2`` full hash rows of an item:
    ``(groups, unrolled)``, ``groups`` iterations of its loop of ``_ROW_GROUP`` rows each (none
    when there are at most ``_ROW_GROUP`` rows) and ``unrolled`` rows after it."""
    full = width // 2
    groups = full // _ROW_GROUP if full > _ROW_GROUP else 0
    return groups, full - groups * _ROW_GROUP


def bin_stream(key: Array, hi: Array, lo: Array) -> Array:
    """``uint32[..., 2]``: the shared stream of the space-partitioning bin packed as ``(hi, lo)``
    (:meth:`jaxrec.coders.sp.partition.Partition.stream_words`): ``threefry2x32(s, (hi, lo))``
    with ``s`` the ``BINS`` stream of ``key``, one hash per bin (distinct bins, distinct streams)."""
    s = stream_words(key, BIN_TAG)
    k0, k1 = threefry2x32(s[0], s[1], hi, lo)
    return jnp.stack([k0, k1], axis=-1)


def bin_row_keys(key: Array, num_rows: int) -> Array:
    """``uint32[num_rows, 2]``: the row keys of SP-PFR's labelled bin streams
    (:class:`LabelledStreams`, labelled by the bin's packed index): ``k_h = threefry2x32(s, (h, 0))``
    with ``s`` the ``ROWS`` stream of ``key``."""
    s = stream_words(key, ROW_TAG)
    k0, k1 = threefry2x32(s[0], s[1], jnp.arange(num_rows, dtype=jnp.uint32), 0)
    return jnp.stack([k0, k1], axis=-1)


def stream_candidates(stream: Array, ns: Array, prior: Any) -> Array:
    """Candidates ``X_n ~ P`` of a stream for the indices ``ns`` (``int32[K]``), axis-major:
    ``(D, K)``.

    ``X_n = prior.from_words(w_n)`` with ``w_n`` item ``n``'s ``D`` words (:func:`counter_words`).
    This is the layout the searches use: the item axis is minor, so hashing, the inverse CDF and
    the log density ratio vectorize over it.
    """
    return columns(prior).from_words(counter_words(stream, ns, prior.event_size))


def stream_log_ratio(stream: Array, ns: Array, target: Any, prior: Any) -> Array:
    """``log dQ/dP(X_n)`` in nats at a stream's candidates ``ns``: ``(K,)``, the candidates never
    materialized (:func:`sum_over_words` over ``log q_d(x_d) - log p_d(x_d)``, ``x_d`` from word ``d``).

    The log ratios of the candidates :func:`stream_candidates` returns, up to the rounding of a
    fused multiply-add: a search scores with this, the decoder rebuilds the winner with
    :func:`candidates`.
    """

    def term(d: Array, words: Array) -> Array:
        t, p = (jax.tree.map(lambda a: a[..., d], dist) for dist in (target, prior))
        return log_ratio_per_dim(t, p, p.from_words(words))

    return sum_over_words(stream, ns, prior.event_size, term)


def candidates(key: Array, ns: Array, prior: Any, stream: Array | int = 0) -> Array:
    """Candidates ``X_n ~ P`` of shared stream ``stream`` for the indices ``ns``: ``(K, D)``.

    The transpose of :func:`stream_candidates` on :func:`candidate_stream`; the decoder rebuilds
    one with ``candidates(key, index[None], prior)[0]`` at O(D) cost.
    """
    return stream_candidates(candidate_stream(key, stream), ns, prior).T


# Per-draw keys (AGRS, iREC's Gumbels): a few scalars per candidate, drawn with jax.random.

def candidate_key(key: Array, n: Array, stream: Array | int = 0) -> Array:
    """Key of draw ``n`` of shared stream ``stream``: ``fold_in(fold_in(fold_in(key, CAND), s), n)``."""
    return fold_in_index(_stream(key, CANDIDATE_TAG, stream), n)


def arrival_key(key: Array, n: Array, stream: Array | int = 0) -> Array:
    """Key of encoder-only draw ``n`` of stream ``stream``: ``fold_in(fold_in(fold_in(key, TIME), s), n)``."""
    return fold_in_index(_stream(key, ARRIVAL_TAG, stream), n)


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
