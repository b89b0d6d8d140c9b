"""Poisson arrival times ``T_n = E_1 + ... + E_n`` that are exact past 2^24 and chunk-invariant.

PFR-type searches score candidate ``n`` with ``log r(X_n) - log T_n``.  Accumulating ``T_n`` in
float32 loses integer resolution beyond ``2^24`` (about 1.7e7 steps), and a float cumulative sum
over a chunk rounds differently for different chunk sizes, so the chosen index could depend on the
chunk size.  Here the time is a 64-bit fixed-point integer in units of ``2^-24`` held as four
16-bit limbs in ``uint32`` lanes:

* each increment ``E_n ~ Exp(1)`` (drawn from ``arrival_key(key, n)``) is rounded *up* to the grid,
  ``e_n = ceil(E_n 2^24)`` in ``[1, 2^32)``, so ``T_n > 0`` strictly (float32 ``E`` already lives on
  a grid of 2^-23 near 0, so this adds no visible quantization);
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

from jaxrec import prng

Array = jax.Array

MAX_CHUNK = 2**15
_UNIT_LOG2 = 24  # time unit 2^-24
_LIMB = 16
_MASK = (1 << _LIMB) - 1


def zero_time() -> Array:
    """``T_0 = 0`` as canonical limbs, ``uint32[4]`` (least significant first)."""
    return jnp.zeros((4,), jnp.uint32)


def exponential_increments(key: Array, ns: Array, stream: Array | int = 0) -> Array:
    """``uint32[K]`` grid increments ``ceil(E_n 2^24)`` for the indices ``ns`` (``int32[K]``)."""
    keys = jax.vmap(lambda n: prng.arrival_key(key, n, stream))(ns)
    e = jax.vmap(lambda k: jax.random.exponential(k, (), jnp.float32))(keys)
    scaled = jnp.ceil(e * jnp.float32(2.0**_UNIT_LOG2))
    return jnp.clip(scaled, 1.0, 2.0**32 - 256).astype(jnp.uint32)


def _normalize(limbs: Array) -> Array:
    """Propagates carries so every limb is < 2^16; ``limbs`` is ``uint32[..., 4]``."""
    out = []
    carry = jnp.zeros(limbs.shape[:-1], jnp.uint32)
    for i in range(4):
        v = limbs[..., i] + carry
        out.append(v & _MASK)
        carry = v >> _LIMB
    return jnp.stack(out, axis=-1)


def to_float(limbs: Array, dtype: jnp.dtype = jnp.float32) -> Array:
    """``T`` as a float from canonical limbs ``uint32[..., 4]``: one fixed rounding sequence."""
    f = limbs.astype(dtype)
    return ((f[..., 0] * 2.0**-24 + f[..., 1] * 2.0**-8) + f[..., 2] * 2.0**8) + f[..., 3] * 2.0**24


def accumulate(base: Array, increments: Array) -> tuple[Array, Array]:
    """Running sums ``T_{n0+k} = T_{n0} + sum_{i<=k} e_i`` for one chunk.

    Args:
      base: canonical limbs ``uint32[4]`` of the time before the chunk.
      increments: ``uint32[K]`` grid increments, ``K <= 2^15``.

    Returns:
      ``(limbs, last)``: canonical limbs ``uint32[K, 4]`` of every arrival in the chunk and those
      of the chunk's last arrival (the next chunk's ``base``).
    """
    low = jnp.cumsum(increments & _MASK, dtype=jnp.uint32)
    high = jnp.cumsum(increments >> _LIMB, dtype=jnp.uint32)
    raw = jnp.stack(
        [base[0] + low, base[1] + high, jnp.broadcast_to(base[2], low.shape), jnp.broadcast_to(base[3], low.shape)],
        axis=-1,
    )
    limbs = _normalize(raw)
    return limbs, limbs[-1]


def log_arrival_times(base: Array, increments: Array, dtype: jnp.dtype = jnp.float32) -> tuple[Array, Array]:
    """``(log T, last)`` for one chunk: ``log T`` is ``dtype[K]``; see :func:`accumulate`."""
    limbs, last = accumulate(base, increments)
    return jnp.log(to_float(limbs, dtype)), last
