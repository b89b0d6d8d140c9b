"""Boundary checks of the public API: canonical values in, :class:`InvalidArgumentError` out.

Every function takes the argument's *name* and its value, returns the value in canonical form
(a Python ``int``/``float``/``bool`` or a host ``numpy`` array) and otherwise raises
:class:`~jaxrec.core.errors.InvalidArgumentError` whose message names the argument, shows the
value (or, for arrays, its dtype and shape) and says what was expected.  They run on the host, on
concrete values only: callers skip them for traced values (:func:`is_traced`), whose shapes and
dtypes they check statically instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from jaxrec.core.errors import InvalidArgumentError

__all__ = [
    "as_bool",
    "as_callable",
    "as_float",
    "as_int",
    "as_real_array",
    "describe",
    "is_traced",
]

_REPR_LIMIT = 120


def is_traced(*values: Any) -> bool:
    """Whether any leaf of ``values`` is a JAX tracer (inside ``jit``/``vmap``/``grad``)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(values))


def describe(value: Any) -> str:
    """A short description of ``value`` for an error message: ``float32[3, 5]`` (plus the values
    when there are at most 8) for arrays, a ``repr`` cut to 120 characters otherwise."""
    if isinstance(value, (np.ndarray, jax.Array)) and not is_traced(value):
        arr = np.asarray(value)
        head = f"{arr.dtype}{list(arr.shape)}"
        return head if arr.size > 8 else f"{head} {arr.tolist()!r}"
    if is_traced(value):
        return f"traced {value.dtype}{list(value.shape)}"
    text = repr(value)
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _bounds(low: float | None, high: float | None, low_open: bool = False) -> str:
    if low is not None and high is not None:
        return f" in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f" {'>' if low_open else '>='} {low}"
    return f" <= {high}" if high is not None else ""


def _scalar(value: Any) -> Any:
    """A concrete 0-d array or numpy scalar as a Python number; anything else unchanged."""
    if isinstance(value, (np.ndarray, jax.Array, np.generic)) and not is_traced(value) and np.ndim(value) == 0:
        return np.asarray(value).item()
    return value


def as_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """``value`` as a Python ``int`` in ``[low, high]``.

    Accepts Python and numpy integers, 0-d integer arrays and *integral* floats (``5.0``, as a
    number written without a type often is); refuses ``bool``, ``5.5``, NaN, strings and arrays.
    """
    scalar = _scalar(value)
    expected = f"{name} must be an int{_bounds(low, high)}"
    if isinstance(scalar, bool) or not isinstance(scalar, (int, float)):
        raise InvalidArgumentError(f"{expected}, got {describe(value)}")
    if isinstance(scalar, float):
        if not scalar.is_integer():
            raise InvalidArgumentError(f"{expected} (a whole number), got {describe(value)}")
        scalar = int(scalar)
    if (low is not None and scalar < low) or (high is not None and scalar > high):
        raise InvalidArgumentError(f"{expected}, got {describe(value)}")
    return scalar


def as_float(
    name: str, value: Any, *, low: float | None = None, high: float | None = None, low_open: bool = False
) -> float:
    """``value`` as a finite Python ``float`` in ``[low, high]`` (``(low, high]`` with ``low_open``).

    Accepts Python/numpy reals and 0-d real arrays; refuses ``bool``, NaN, infinities, strings,
    complex numbers and arrays.
    """
    scalar = _scalar(value)
    expected = f"{name} must be a finite real number{_bounds(low, high, low_open)}"
    if isinstance(scalar, bool) or not isinstance(scalar, (int, float)):
        raise InvalidArgumentError(f"{expected}, got {describe(value)}")
    number = float(scalar)
    too_low = low is not None and (number <= low if low_open else number < low)
    if not math.isfinite(number) or too_low or (high is not None and number > high):
        raise InvalidArgumentError(f"{expected}, got {describe(value)}")
    return number


def as_bool(name: str, value: Any) -> bool:
    """``value`` as a Python ``bool``; only ``True``/``False`` (Python or numpy) are accepted."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidArgumentError(f"{name} must be True or False, got {describe(value)}")


def as_callable(name: str, value: Any) -> Callable[..., Any]:
    """``value`` if it is callable."""
    if not callable(value):
        raise InvalidArgumentError(f"{name} must be a callable, got {describe(value)}")
    return value


def as_real_array(
    name: str,
    value: Any,
    *,
    ndim: int | None = None,
    nonempty: bool = False,
    finite: bool = False,
    nonnegative: bool = False,
) -> np.ndarray:
    """``value`` as a host ``float64`` array, checked.

    Accepts anything numpy converts to a real (integer, float or bool) array: lists, numpy and
    concrete JAX arrays.  Refuses strings, objects, complex numbers, ragged lists and traced
    values, and, when asked, another number of dimensions, an empty array, non-finite entries
    (naming the first) and negative ones.
    """
    what = f"{name} must be a real array" + (f" with {ndim} dimension{'s' if ndim != 1 else ''}" if ndim is not None else "")
    if is_traced(value):
        raise InvalidArgumentError(f"{what} of concrete values (not traced inside jit), got {describe(value)}")
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(f"{what}, got {describe(value)} ({err})") from None
    if arr.dtype.kind not in "biuf":
        raise InvalidArgumentError(f"{what}, got {describe(value)} (dtype {arr.dtype})")
    arr = arr.astype(np.float64)
    if ndim is not None and arr.ndim != ndim:
        raise InvalidArgumentError(f"{what}, got shape {arr.shape}")
    if nonempty and arr.size == 0:
        raise InvalidArgumentError(f"{name} must not be empty, got shape {arr.shape}")
    ok = np.ones(arr.shape, bool)
    if finite:
        ok &= np.isfinite(arr)
    if nonnegative:
        ok &= arr >= 0
    if not ok.all():
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        wanted = " and ".join(w for w, on in (("finite", finite), (">= 0", nonnegative)) if on)
        raise InvalidArgumentError(
            f"{name} must be {wanted}, got {arr[where].item()!r} at index {where[0] if len(where) == 1 else where}"
        )
    return arr
