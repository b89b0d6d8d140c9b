"""Poisson arrival times ``T_n = E_1 + ... + E_n`` that are exact past 2^24 and chunk-invariant.

PFR-type searches score candidate ``n`` with ``log r(X_n) - log T_n``.  Accumulating ``T_n`` in
float32 loses integer resolution beyond ``2^24`` (about 1.7e7 steps), and a float cumulative sum
over a chunk rounds differently for different chunk sizes, so the chosen index could depend on the
chunk size.  Here the time is a 64-bit fixed-point integer in units of ``2^-24`` held as four
16-bit limbs in ``uint32`` lanes:

* each increment ``E_n = -log U_n ~ Exp(1)`` takes its uniform ``U_n = (w_n + 1) 2^-24`` in
  ``(0, 1]`` from the top 24 bits of one encoder-only word ``w_n`` of index ``n``
  (:func:`jaxrec.core.prng.private_stream`; a coder that needs more private words per index, such
  as the space-partitioning bin choices, takes them from the same hashes), and is rounded *up* to
  the grid, ``e_n = ceil(E_n 2^24)`` in ``[1, 2^32)``, so ``T_n > 0`` strictly (``E`` lives on a
  float32 grid of ~2^-24 near 0, so this adds no visible quantization);
* within a chunk the two low limbs are summed with an integer ``cumsum`` (exact, hence associative:
  the limbs of ``T_n`` are the same whatever the chunk boundaries), then carries are normalised;
* ``T_n`` is converted to floating point from its canonical limbs by one fixed expression.

So ``T_n`` is a pure function of ``(key, n)``: bit-identical for any chunking, and exact up to
``T = 2^40`` (about 10^12 steps).  Chunks hold at most ``2^15`` candidates (so limb sums fit in
``uint32``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrec.core import prng

Array = jax.Array

MAX_CHUNK = 2**15
_UNIT_LOG2 = 24  # time unit 2^-24
_LIMB = 16
_MASK = (1 << _LIMB) - 1


def zero_time() -> Array:
    """``T_0 = 0`` as canonical limbs, ``uint32[4]`` (least significant first)."""
    return jnp.zeros((4,), jnp.uint32)


def increments_from_words(words: Array) -> Array:
    """``uint32[...]`` grid increments ``ceil(E 2^24)`` from ``uint32`` words ``w``.

    ``E = -log U`` with ``U = (m + 1) 2^-24``, ``m`` the top 24 bits of ``w``: exactly
    representable in float32, in ``(0, 1]``.
    """
    u = ((words >> 8).astype(jnp.float32) + 1.0) * jnp.float32(2.0**-24)
    scaled = jnp.ceil(-jnp.log(u) * jnp.float32(2.0**_UNIT_LOG2))
    return jnp.clip(scaled, 1.0, 2.0**32 - 256).astype(jnp.uint32)


def exponential_increments(key: Array, ns: Array, stream: Array | int = 0) -> Array:
    """``uint32[K]`` grid increments for the indices ``ns`` (``int32[K]``): word 0 of each index's
    encoder-only words (:func:`jaxrec.core.prng.private_stream`, one word, so one hash per index)."""
    return increments_from_words(prng.counter_words(prng.private_stream(key, stream), ns, 1)[0])


def _carry_limbs(l0: Array, l1: Array, l2: Array, l3: Array) -> tuple[Array, Array, Array, Array]:
    """Carry propagation on four separate limb arrays (no ``[..., 4]`` layout in the hot loop)."""
    out = []
    carry = jnp.zeros_like(l0)
    for limb in (l0, l1, l2, l3):
        v = limb + carry
        out.append(v & _MASK)
        carry = v >> _LIMB
    return tuple(out)


def _float_from_limbs(l0: Array, l1: Array, l2: Array, l3: Array, dtype: jnp.dtype) -> Array:
    f0, f1, f2, f3 = (limb.astype(dtype) for limb in (l0, l1, l2, l3))
    return ((f0 * 2.0**-24 + f1 * 2.0**-8) + f2 * 2.0**8) + f3 * 2.0**24


def to_float(limbs: Array, dtype: jnp.dtype = jnp.float32) -> Array:
    """``T`` as a float from canonical limbs ``uint32[..., 4]``: one fixed rounding sequence."""
    return _float_from_limbs(*(limbs[..., i] for i in range(4)), dtype)


def _running_limbs(base: Array, increments: Array) -> tuple[Array, Array, Array, Array]:
    """Canonical limbs of ``T_{n0} + cumsum(increments)`` as four ``uint32[K]`` arrays."""
    low = jnp.cumsum(increments & _MASK, dtype=jnp.uint32)
    high = jnp.cumsum(increments >> _LIMB, dtype=jnp.uint32)
    # base limbs are < 2^16 and the chunk sums < 2^31, so no uint32 sum overflows
    upper = (jnp.broadcast_to(base[2], low.shape), jnp.broadcast_to(base[3], low.shape))
    return _carry_limbs(base[0] + low, base[1] + high, *upper)


def accumulate(base: Array, increments: Array) -> tuple[Array, Array]:
    """Running sums ``T_{n0+k} = T_{n0} + sum_{i<=k} e_i`` for one chunk.

    Args:
      base: canonical limbs ``uint32[4]`` of the time before the chunk.
      increments: ``uint32[K]`` grid increments, ``K <= 2^15``.

    Returns:
      ``(limbs, last)``: canonical limbs ``uint32[K, 4]`` of every arrival in the chunk and those
      of the chunk's last arrival (the next chunk's ``base``).
    """
    limbs = jnp.stack(_running_limbs(base, increments), axis=-1)
    return limbs, limbs[-1]


def log_arrival_times(base: Array, increments: Array, dtype: jnp.dtype = jnp.float32) -> tuple[Array, Array]:
    """``(log T, last)`` for one chunk: ``log T`` is ``dtype[K]``; see :func:`accumulate`."""
    limbs = _running_limbs(base, increments)
    last = jnp.stack([limb[-1] for limb in limbs])
    return jnp.log(_float_from_limbs(*limbs, dtype)), last
