"""The standard normal quantile of a lower-tail mass, cheap in float32.

Space partitioning draws every candidate coordinate as ``Phi^{-1}(t)`` of a tail mass
``t in (0, 1/2]`` (:meth:`jaxrec.Partition.sample_in_bin`), so this quantile is paid per axis per
candidate. ``jax.scipy.special.ndtri`` evaluates two logs, a square root, four divisions and three
rational functions per value (every lane computes every branch); here, in float32, one log, one
square root, one division and 18 multiply-adds.

Following Giles ("Approximating the erfinv function", GPU Computing Gems Jade Edition, 2011), with
``x = 1 - 2t`` and ``w = -log(1 - x^2)``, the quantile is ``Phi^{-1}(t) = -x h(w)`` where
``h(w) = sqrt(2) erfinv(x) / x`` is smooth in ``w``; ``1 - x^2 = 4 t (1 - t)`` is formed from ``t``
itself, so the far tail keeps its relative accuracy (``x`` near 1 never rounds). Two branches:

* ``w < 8`` (``t > 8.4e-5``): ``h`` is a degree-10 polynomial in ``w - 4``;
* ``w >= 8``: ``h = sqrt(w) g(v)``, ``g`` a degree-8 polynomial in ``v - 0.2301``, ``v = 1 / sqrt(w)``
  (``g`` tends to ``sqrt(2)`` as ``t -> 0``, so the branch covers every normal float32 ``t``).

The coefficients are our weighted least-squares fits (``tools/fit_normal_quantile.py``; fits within
``9e-8`` relative on ``w in [0, 88]``). Evaluated in float32 the function is within ``4e-7`` of
``Phi^{-1}(t)`` relative (largest error measured: ``3.1e-7``, over four million ``t`` spread over every
binade from the smallest normal float32 to 1/2, and every float32 next to 1/2, the branch split and
``2^-63``; ``ndtri`` in float32: ``4.2e-7``);
``t = 1/2`` gives 0 and ``t = 0`` gives ``-inf``. Other dtypes use ``ndtri`` (the polynomials have
float32 accuracy only).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import ndtri

Array = jax.Array

__all__ = ["ndtri_lower_tail"]

_SPLIT_W = 8.0
_CENTER_W = 4.0
_COEFFICIENTS_W = (
    5.535988334415265e-10, -6.950862108112688e-10, -4.9482114405918765e-08, 2.967597936276434e-07,
    7.114820164133562e-07, -2.2237867597141303e-05, 0.00016799192235339433, -0.00028766633477061987,
    -0.010211866348981857, 0.32294169068336487, 2.6287105083465576,
)
_CENTER_V = 0.2300768792629242
_COEFFICIENTS_V = (
    -315.2056579589844, 77.28389739990234, 28.952035903930664, 4.739236354827881, -1.3653099536895752,
    0.8842248916625977, 0.06376037746667862, -0.283833771944046, 1.3631913661956787,
)


def ndtri_lower_tail(t: Array) -> Array:
    """``Phi^{-1}(t)`` for a lower-tail mass ``t in [0, 1/2]`` (any shape; the quantile of an
    upper-tail mass ``t`` is its negation). Float32: the polynomials of the module docstring, relative error below
    ``4e-7``; other dtypes: ``jax.scipy.special.ndtri``. Values outside ``[0, 1/2]`` are undefined."""
    t = jnp.asarray(t)
    if t.dtype != jnp.float32:
        return ndtri(t)
    w = -jnp.log(4.0 * t * (1.0 - t))
    root_w = jnp.sqrt(w)
    central = jnp.polyval(jnp.asarray(_COEFFICIENTS_W, t.dtype), w - _CENTER_W)  # Horner, highest power first
    tail = root_w * jnp.polyval(jnp.asarray(_COEFFICIENTS_V, t.dtype), 1.0 / root_w - _CENTER_V)
    return (2.0 * t - 1.0) * jnp.where(w < _SPLIT_W, central, tail)
