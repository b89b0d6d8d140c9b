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

**Overhead.**  Runtime becomes a *sum*: ``sum_d E[steps_d]``, e.g.
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
import numpy as np

from jaxrec.coders import registry
from jaxrec.coders.base import (
    CodeBase,
    Coder,
    CoderSpec,
    check_bounded_ratio,
    check_code,
    coder_factory,
)
from jaxrec.coders.scan import check_batch, check_single
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


@coder_factory
def factorized(coder: Coder) -> Coder:
    """Wraps a 1-D ``coder`` to code each coordinate of a factorized problem separately.

    Returns:
      A :class:`~jaxrec.Coder` whose ``encode(key, target, prior)`` returns the 1-D coder's code
      with a trailing axis ``D`` on every leaf (``steps[d]`` and ``status[d]`` are dimension ``d``'s),
      labelled ``coder = "factorized(<inner>)"`` and ``event_size = D``, and whose
      ``decode(key, code, prior)`` returns ``(D,)``; ``encode_batch`` takes ``(B,)`` keys and
      ``(B, D)`` targets.
    """
    if not isinstance(coder, Coder):
        raise InvalidArgumentError(f"factorized wraps a jaxrec Coder, got {type(coder).__name__}")
    label = f"factorized({coder.spec.name})"

    def encode(key: Any, target: Distribution, prior: Distribution) -> Any:
        check_single(target, prior)
        check_bounded_ratio(target, prior)
        return encode_dims(prng.as_key(key), target, prior).replace(coder=label, event_size=target.event_size)

    @jax.jit  # compiled once per wrapper and shapes: eager calls do not recompile the inner searches
    def encode_dims(key: Array, target: Distribution, prior: Distribution) -> Any:
        num_dims = target.event_size
        keys = dimension_keys(key, num_dims)
        return jax.vmap(coder.encode)(keys, _per_dim(target, num_dims), _per_dim(prior, num_dims))

    def decode(key: Any, code: Any, prior: Distribution) -> Array:
        # one code per dimension: every leaf ends in the axis D (the code's event size, checked against the prior's)
        check_code(code, CodeBase, label, prior, code_batch=(code.event_size,) if isinstance(code, CodeBase) else ())
        return decode_dims(prng.as_key(key), code.replace(coder=coder.spec.name, event_size=1), prior)

    @jax.jit
    def decode_dims(key: Array, inner: Any, prior: Distribution) -> Array:
        num_dims = prior.event_size
        xs = jax.vmap(coder.decode)(dimension_keys(key, num_dims), inner, _per_dim(prior, num_dims))
        return xs[..., 0]

    def encode_batch(keys: Any, targets: Distribution, prior: Distribution, **options: Any) -> Any:
        """``B`` problems: keys ``(B,)``, targets batch ``(B,)``; codes get leaves ``(B, D)``."""
        keys, batch = check_batch(keys, targets, prior)
        check_bounded_ratio(targets, prior)
        num_dims = targets.event_size
        flat_keys = jax.vmap(lambda k: dimension_keys(k, num_dims))(keys).reshape(batch * num_dims)
        flatten = lambda dist: jax.tree.map(
            lambda a: jnp.broadcast_to(a, (batch, num_dims)).reshape(batch * num_dims, 1), dist
        )
        codes = _encode_batch(coder, flat_keys, flatten(targets), flatten(prior), **options)
        codes = jax.tree.map(lambda a: a.reshape((batch, num_dims) + a.shape[1:]), codes)
        return codes.replace(coder=label, event_size=num_dims)

    inner_args = (coder.spec.name, *(value for _, value in coder.spec.params))
    spec = CoderSpec("factorized", (("coder", inner_args),))
    return Coder(encode, decode, spec, encode_batch)


def _inner_spec(args: tuple) -> CoderSpec:
    """The wrapped coder's spec from the header value ``(name, *args)`` (the registry names the args)."""
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        raise InvalidArgumentError(f"the wrapped coder must be given as (name, *args), got {args!r}")
    entry = registry.lookup(args[0])
    if entry.partitioned or len(args) - 1 != len(entry.params):
        raise InvalidArgumentError(f"cannot rebuild the wrapped coder {args!r} (registry parameters {entry.params})")
    return CoderSpec(args[0], tuple(zip(entry.params, args[1:])))


def _factorized_from_args(coder: tuple) -> Coder:
    """The registry factory: ``factorized`` of the coder the header names."""
    return factorized(registry.coder_from_spec(_inner_spec(coder)))


def _message(spec: CoderSpec, budget_bits: float, plan: Any) -> registry.Message:
    """The wrapped coder's message per dimension, with the block budget shared by its ``S`` dimensions."""
    inner = _inner_spec(spec.kwargs["coder"])
    return registry.lookup(inner.name).message(inner, budget_bits / plan.max_size, plan)


def _pack(spec: CoderSpec, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    inner = _inner_spec(spec.kwargs["coder"])
    return registry.lookup(inner.name).symbols(inner, fields)


def _unpack(spec: CoderSpec, symbols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    inner = _inner_spec(spec.kwargs["coder"])
    return registry.lookup(inner.name).fields(inner, symbols)


registry.register_coder(
    "factorized", _factorized_from_args, params=("coder",), message=_message,
    check=check_bounded_ratio, pack=_pack, unpack=_unpack,
)
