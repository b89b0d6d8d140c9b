"""The coder contract: an optax-style pair of pure functions and the ``Code`` they exchange.

A coder factory (``jaxrec.pfr(...)``) returns a :class:`Coder`::

    code = coder.encode(key, target, prior)   # searches; jit- and vmap-able
    x = coder.decode(key, code, prior)        # O(D); never needs the target

``key`` is the shared randomness (an int seed, a typed ``threefry2x32`` key or its ``uint32[2]``
data).  ``target`` and ``prior`` are :mod:`jaxrec.distributions` pytrees with event size ``D``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from jaxrec.core import prng
from jaxrec.core.distributions import Distribution, log_sup_ratio
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array


class Code(NamedTuple):
    """What a scan-type coder sends, plus diagnostics (a pytree of scalars per problem).

    Attributes:
      index: ``int32``, 0-based index of the chosen candidate: the integer that is transmitted.
      steps: ``int32``, candidates the algorithm examined (its own step count, independent of
        the chunk size; comparable with ``2^{D_inf}`` for exact coders).
      exhausted: ``bool``, True when an exact coder hit ``max_steps`` before its stop rule fired:
        the sample is then only the best candidate so far, not an exact sample of Q.
    """

    index: Array
    steps: Array
    exhausted: Array


class CoderSpec(NamedTuple):
    """Static description of a coder (its factory name and arguments), written in file headers."""

    name: str
    params: tuple[tuple[str, Any], ...]

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)


class Coder(NamedTuple):
    """``encode(key, target, prior) -> Code`` and ``decode(key, code, prior) -> x (D,)``.

    ``encode_batch(keys, targets, prior, **options)``, when a coder provides it, encodes a batch
    (leading axis ``B`` on ``keys`` and ``targets``; ``prior`` shared or batched) with the same
    result as ``jax.vmap(encode)`` but a schedule that keeps lanes busy; use
    :func:`jaxrec.encode_batch`, which falls back to ``vmap`` for coders without one.
    """

    encode: Callable[..., Any]
    decode: Callable[..., Array]
    spec: CoderSpec
    encode_batch: Callable[..., Any] | None = None


def check_pair(target: Any, prior: Any) -> None:
    """Raises :class:`InvalidArgumentError` unless both are distributions of one event size."""
    for name, dist in (("target", target), ("prior", prior)):
        if not isinstance(dist, Distribution):
            raise InvalidArgumentError(f"{name} must be a jaxrec distribution, got {type(dist).__name__}")
    if target.event_size != prior.event_size:
        raise InvalidArgumentError(
            f"target and prior event sizes differ: {target.event_size} != {prior.event_size}"
        )


def check_bounded_ratio(target: Any, prior: Any, per_dim: bool = False) -> None:
    """Raises :class:`InvalidArgumentError` where ``D_inf[Q||P] = inf`` (a PFR-type search would never
    stop); skipped when the parameters are traced.  Names the first offending (batch..., dim) index.

    Args:
      per_dim: check every coordinate on its own (for coders applied dimension by dimension).
    """
    log_m = log_sup_ratio(target, prior, per_dim=per_dim)
    if isinstance(log_m, jax.core.Tracer):
        return
    bad = np.argwhere(~np.isfinite(np.atleast_1d(np.asarray(log_m))))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise InvalidArgumentError(
            f"this coder needs a bounded density ratio (D_inf[Q||P] < inf), but it is unbounded at index "
            f"{where} (a target at least as wide as the prior); use a wider prior or a fixed-budget coder (orc/mrc)"
        )


def check_positive_int(name: str, value: Any, upper: int) -> int:
    """Returns ``value`` if it is an int in ``[1, upper]``; raises :class:`InvalidArgumentError`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise InvalidArgumentError(f"{name} must be an int in [1, {upper}], got {value!r}")
    return value


@jax.jit
def _sample_candidate(key: Array, index: Array, prior: Distribution) -> Array:
    return prior.sample(prng.candidate_key(key, index))


def decode_candidate(key: Any, code: Code, prior: Distribution) -> Array:
    """Rebuilds candidate ``code.index`` of stream 0: ``(D,)``, O(D) work.

    Always runs compiled, so an eager call returns the same bits as the encoder's (compiled)
    search on the same backend; XLA's fusion of ``loc + scale * z`` can differ from op-by-op
    evaluation in the last ulp.
    """
    if not isinstance(prior, Distribution):
        raise InvalidArgumentError(f"prior must be a jaxrec distribution, got {type(prior).__name__}")
    return _sample_candidate(prng.as_key(key), code.index, prior)
