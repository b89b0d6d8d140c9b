"""Apply a 1-D coder dimension by dimension to a factorized ``D``-dimensional problem.

The optimal-runtime samplers (branch-and-bound GPRS, AS*/AD*, AGRS) and the width-function
coders (GPRS, GRS) are 1-D.  For a factorized target ``Q = prod_d Q_d`` against a factorized
prior ``P = prod_d P_d``, coding each coordinate independently with its own shared randomness
gives an exact sample of ``Q`` whenever the 1-D coder is exact::

    coder = jaxrec.factorized(jaxrec.gprs_bnb())
    code = coder.encode(key, target, prior)   # every Code leaf gets a trailing axis D
    x = coder.decode(key, code, prior)        # (D,)

Dimension ``d`` uses the key ``fold_in(fold_in(key, 'DIMS'), d)``; its code is that of the 1-D
coder on ``(Q_d, P_d)``.

**Overhead** (rec-algorithms.md §11).  Runtime becomes a *sum*: ``sum_d E[steps_d]``, e.g.
``sum_d 2^{D_inf,d}`` for GPRS/GRS instead of ``2^{sum_d D_inf,d}`` for a joint search -- which is
the point.  Codelength pays the per-index overhead in every dimension: about
``sum_d [D_KL,d + log2(D_KL,d + 1) + c]`` bits instead of ``D_KL + log2(D_KL + 1) + c`` (``c`` a
few bits), so it is expensive when each dimension carries little information; group dimensions
into blocks of a few bits each (:mod:`jaxrec.blocks`) or use a joint coder there.
``experiments/samplers_1d.py`` reports the measured overhead.

Both ``encode`` and ``decode`` ``vmap`` the 1-D coder over ``D``; ``encode_batch`` flattens
``B x D`` problems into one batch for the 1-D coder's own batch encoder.  The wrapper needs a
bounded ratio in every coordinate (checked when the parameters are concrete).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxrec.coders.base import Coder, CoderSpec, check_bounded_ratio, check_pair
from jaxrec.coders.scan import encode_batch as _encode_batch
from jaxrec.core import prng
from jaxrec.core.distributions import Distribution
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

DIM_TAG = 0x44494D53  # ASCII 'DIMS'

__all__ = ["dimension_keys", "factorized"]


def dimension_keys(key: Array, num_dims: int) -> Array:
    """``(D,)`` keys, ``fold_in(fold_in(key, DIMS), d)`` for ``d < D``."""
    base = jax.random.fold_in(prng.as_key(key), DIM_TAG)
    return jax.vmap(lambda d: prng.fold_in_index(base, d))(jnp.arange(num_dims, dtype=jnp.int32))


def _per_dim(dist: Distribution, num_dims: int) -> Distribution:
    """Leaves ``(..., D)`` -> ``(..., D, 1)``: ``D`` one-dimensional problems on axis ``-2``."""
    return jax.tree.map(lambda a: jnp.broadcast_to(a, a.shape[:-1] + (num_dims,))[..., None], dist)


def factorized(coder: Coder) -> Coder:
    """Wraps a 1-D ``coder`` to code each coordinate of a factorized problem separately.

    Returns:
      A :class:`~jaxrec.Coder` whose ``encode(key, target, prior)`` returns the 1-D coder's code
      with a trailing axis ``D`` on every leaf (``steps[d]`` is dimension ``d``'s work) and whose
      ``decode(key, code, prior)`` returns ``(D,)``; ``encode_batch`` takes ``(B,)`` keys and
      ``(B, D)`` targets.
    """
    if not isinstance(coder, Coder):
        raise InvalidArgumentError(f"factorized wraps a jaxrec Coder, got {type(coder).__name__}")

    def encode(key: Any, target: Distribution, prior: Distribution) -> Any:
        check_pair(target, prior)
        check_bounded_ratio(target, prior, per_dim=True)
        num_dims = target.event_size
        keys = dimension_keys(key, num_dims)
        return jax.vmap(coder.encode)(keys, _per_dim(target, num_dims), _per_dim(prior, num_dims))

    def decode(key: Any, code: Any, prior: Distribution) -> Array:
        if not isinstance(prior, Distribution):
            raise InvalidArgumentError(f"prior must be a jaxrec distribution, got {type(prior).__name__}")
        num_dims = prior.event_size
        xs = jax.vmap(coder.decode)(dimension_keys(key, num_dims), code, _per_dim(prior, num_dims))
        return xs[..., 0]

    def encode_batch(keys: Any, targets: Distribution, prior: Distribution, **options: Any) -> Any:
        """``B`` problems: keys ``(B,)``, targets batch ``(B,)``; codes get leaves ``(B, D)``."""
        check_pair(targets, prior)
        check_bounded_ratio(targets, prior, per_dim=True)
        keys = prng.as_key(keys)
        batch, num_dims = targets.batch_shape[0], targets.event_size
        flat_keys = jax.vmap(lambda k: dimension_keys(k, num_dims))(keys).reshape(batch * num_dims)
        flatten = lambda dist: jax.tree.map(
            lambda a: jnp.broadcast_to(a, (batch, num_dims)).reshape(batch * num_dims, 1), dist
        )
        codes = _encode_batch(coder, flat_keys, flatten(targets), flatten(prior), **options)
        return jax.tree.map(lambda a: a.reshape((batch, num_dims) + a.shape[1:]), codes)

    spec = CoderSpec("factorized", (("coder", coder.spec),))
    return Coder(encode, decode, spec, encode_batch)
