"""Ideal codelengths of REC indices in bits, written with ``jax.numpy``.

They run on numpy or JAX arrays, inside ``jit`` too: :func:`zipf_exponent` (the exponent both sides
derive from a KL budget), :func:`zipf_bits`, :func:`uniform_bits`, :func:`elias_gamma_bits`,
:func:`elias_delta_bits`.  Concrete arguments are validated (indices whole numbers ``>= 0``, ``alpha > 1``,
``num_symbols >= 1``; :class:`~jaxrec.core.errors.InvalidArgumentError` otherwise); traced ones are not.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import zeta as _jax_zeta

from jaxrec.core.checks import describe, is_traced
from jaxrec.core.errors import InvalidArgumentError

__all__ = ["elias_delta_bits", "elias_gamma_bits", "uniform_bits", "zipf_bits", "zipf_exponent"]

_ZETA_CAP = 64.0


def zipf_exponent(kl_budget_bits: Any) -> Any:
    r"""Zipf exponent both sides derive from a shared KL budget (Li & El Gamal 2018).

    With :math:`\eta = \mathrm{KL} + 1`, an upper bound on :math:`\mathbb E\log_2(\mathrm{index}+1)`
    for PFR, the exponent is :math:`\alpha = 1 + 1/\eta \in (1, 2]`. See :func:`zipf_bits` for the
    resulting codelength bound.

    Args:
      kl_budget_bits: scalar or array, the KL budget in bits agreed by encoder and decoder. A
        concrete value must be finite and ``>= 0``; a traced value (inside ``jit``) is not checked.

    Returns:
      ``alpha``, same shape; a Python ``float`` for a concrete scalar.

    Raises:
      InvalidArgumentError: a concrete budget that is not finite or is negative.
    """
    if isinstance(kl_budget_bits, jax.core.Tracer):
        return 1.0 + 1.0 / (kl_budget_bits + 1.0)
    try:
        kl = np.asarray(kl_budget_bits, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(f"kl_budget_bits must be a real number, got {kl_budget_bits!r}") from err
    bad = ~(np.isfinite(kl) & (kl >= 0))
    if bad.any():
        raise InvalidArgumentError(f"kl_budget_bits must be finite and >= 0, got {kl[bad].flat[0].item()!r}")
    alpha = 1.0 + 1.0 / (kl + 1.0)
    return float(alpha) if alpha.ndim == 0 else alpha


def _check_whole(name: str, value: Any, low: int) -> None:
    """Raises :class:`InvalidArgumentError` unless concrete ``value`` holds whole numbers ``>= low``
    (an integer array, or a float array with integral values); no-op on traced values."""
    if is_traced(value):
        return
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    if arr.dtype.kind not in "iuf":
        raise InvalidArgumentError(f"{name} must be an array of whole numbers >= {low}, got {describe(value)}")
    ok = arr >= low
    if arr.dtype.kind == "f":
        ok &= np.isfinite(arr) & (arr == np.floor(arr))
    if not ok.all():
        where = tuple(int(i) for i in np.argwhere(~ok)[0]) if arr.ndim else ()
        raise InvalidArgumentError(
            f"{name} must be whole numbers >= {low}, got {arr[where].item()!r}" + (f" at index {where}" if where else "")
        )


def _check_alpha(alpha: Any) -> None:
    """Raises :class:`InvalidArgumentError` unless concrete ``alpha`` is real, finite and ``> 1``."""
    if is_traced(alpha):
        return
    try:
        arr = np.asarray(alpha)
    except (TypeError, ValueError):
        arr = np.asarray(None)
    # checked in the dtype zipf_bits computes in: an alpha that rounds to 1 there has zeta(alpha) = inf
    if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr) & (arr.astype(jnp.result_type(float)) > 1)):
        raise InvalidArgumentError(f"alpha must be a finite real number > 1 (e.g. zipf_exponent(kl)), got {describe(alpha)}")


def _checked_index(index: Any) -> Any:
    """``index`` checked; a host value (Python, numpy) converted to the default float dtype here,
    before it reaches a compiled program (which would wrap an int64 around to int32)."""
    _check_whole("index", index, 0)
    return index if isinstance(index, jax.Array) else jnp.asarray(index, dtype=float)


def _plus_one(index: jax.Array) -> jax.Array:
    """``index + 1`` as the default float dtype."""
    return jnp.asarray(index, dtype=float) + 1.0


def _floor_log2(n: jax.Array) -> jax.Array:
    """``floor(log2 n)`` for float ``n >= 1``; exact while ``n`` is exactly representable."""
    return (jnp.frexp(n)[1] - 1).astype(n.dtype)


def zipf_bits(index: Any, alpha: Any) -> jax.Array:
    r"""Ideal codelength :math:`-\log_2 p(\mathrm{index})` under the Zipf (zeta) prior.

    :math:`p(n) = (n+1)^{-\alpha} / \zeta(\alpha)` for :math:`n \ge 0`, so
    :math:`-\log_2 p(n) = \alpha \log_2(n+1) + \log_2\zeta(\alpha)`.

    **Bound** (Li & El Gamal 2018, "Strong functional representation lemma"). For any index
    distribution with :math:`L = \mathbb E\log_2(\mathrm{index}+1) \le \eta` and
    :math:`\alpha = 1 + 1/\eta`,

    .. math::
       \mathbb E[\text{zipf\_bits}] = \alpha L + \log_2\zeta(\alpha)
       \le \eta + 1 + \log_2(\eta + 1),

    because :math:`\zeta(\alpha) = \sum_{m\ge1} m^{-\alpha} \le 1 + \int_1^\infty x^{-\alpha}dx
    = 1 + 1/(\alpha-1) = 1 + \eta`. PFR has :math:`L \le \mathrm{KL} + 1`, and
    :func:`zipf_exponent` takes :math:`\eta = \mathrm{KL} + 1`, giving
    :math:`\mathrm{KL} + \log_2(\mathrm{KL}+2) + 2`. Where :math:`L \le \mathrm{KL}` is known, taking
    :math:`\eta = \mathrm{KL}` gives the familiar :math:`\mathrm{KL} + \log_2(\mathrm{KL}+1) + 1`.

    Args:
      index: integer array, any shape, ``>= 0``.
      alpha: exponent ``> 1``, broadcastable against ``index``.

    Returns:
      Float array of the broadcast shape (default float dtype: float32 unless x64 is enabled).

    Raises:
      InvalidArgumentError: a concrete index that is not a whole number ``>= 0``, a concrete
        ``alpha <= 1`` or non-finite, or shapes that do not broadcast.
    """
    _check_alpha(alpha)
    index = _checked_index(index)
    if not is_traced(index, alpha):
        try:
            np.broadcast_shapes(np.shape(index), np.shape(alpha))
        except ValueError:
            raise InvalidArgumentError(
                f"index and alpha must broadcast together, got shapes {np.shape(index)} and {np.shape(alpha)}"
            ) from None
    return _zipf_bits(index, jnp.asarray(alpha, dtype=float))


@jax.jit
def _zipf_bits(index: jax.Array, alpha: jax.Array) -> jax.Array:
    # zeta(alpha) - 1 < 2^(1 - alpha): below 2^-63 it is 1 in float64, and zeta returns NaN for very large alpha
    return alpha * jnp.log2(_plus_one(index)) + jnp.log2(_jax_zeta(jnp.minimum(alpha, _ZETA_CAP), 1.0))


def uniform_bits(num_symbols: Any) -> jax.Array:
    """Ideal codelength ``log2 N`` of an index uniform on ``[0, N)``; any shape, float (``N`` whole, ``>= 1``)."""
    _check_whole("num_symbols", num_symbols, 1)
    if not is_traced(num_symbols):  # log2 in float64 first: N up to 2^1023 without overflow to inf
        return jnp.asarray(np.log2(np.asarray(num_symbols, np.float64)), dtype=float)
    return jnp.log2(jnp.asarray(num_symbols, dtype=float))


def elias_gamma_bits(index: Any) -> jax.Array:
    r"""Length of the Elias gamma code of :math:`n = \mathrm{index}+1`: :math:`2\lfloor\log_2 n\rfloor + 1`.

    Any shape, float; exact for ``index < 2**24`` (``2**53`` with x64).
    """
    return _elias_gamma_bits(_checked_index(index))


@jax.jit
def _elias_gamma_bits(index: jax.Array) -> jax.Array:
    return 2.0 * _floor_log2(_plus_one(index)) + 1.0


def elias_delta_bits(index: Any) -> jax.Array:
    r"""Length of the Elias delta code of :math:`n = \mathrm{index}+1`.

    With :math:`k = \lfloor\log_2 n\rfloor`: :math:`k + 2\lfloor\log_2(k+1)\rfloor + 1` (the gamma
    code of the bit length :math:`k+1`, then the :math:`k` bits below the leading one). Any shape,
    float; exact for ``index < 2**24`` (``2**53`` with x64).
    """
    return _elias_delta_bits(_checked_index(index))


@jax.jit
def _elias_delta_bits(index: jax.Array) -> jax.Array:
    k = _floor_log2(_plus_one(index))
    return k + 2.0 * _floor_log2(k + 1.0) + 1.0
