"""Integer likelihood tables for lossless coding: the same bits on every machine and backend.

A lossless latent-variable codec sends ``z`` with REC and then entropy-codes the pixels ``x`` under
``p(x|z)`` (:mod:`jaxrec.codec`, constriction's categorical coder).  Entropy coding works only if
encoder and decoder build *exactly* the same tables, and float network outputs do not guarantee
that: BLAS blocking, batch size, fused multiply-adds, XLA versions and backends all move the last
bits.  So the tables come from an **integer** twin of the decoder network (integer networks, Ballé,
Johnston & Minnen, ICLR 2019) and an integer-only evaluation of the likelihood.  Everything here is
``jax.numpy`` on ``int32`` (jit- and vmap-able); the steps are

1. ``z`` (float32, the *decoded* latent) -> ``z_q = rint(clip(z, -16, 16) * 2^10)``;
2. each dense layer ``acc = a_q @ W_q + b_q`` with ``W_q = rint(clip(W, -8, 8) * 2^12)`` and
   ``b_q = rint(b * 2^(12 + f_in))`` computed from the float32 parameters; hidden layers apply
   ReLU, a rounding right shift to 10 fractional bits and a clip to ``[0, 64)``; the head shifts to
   :data:`PARAM_FRAC_BITS` (see :func:`integer_mlp`);
3. the beta-binomial pmf (``n = 255``) from grid indices ``j_alpha, j_beta`` (``alpha =
   2^(j/32)``) by the ratio recurrence in fixed-point log2 (16 fractional bits),

   ``l_0 = 0,  l_{k+1} = l_k + L(255-k) - L(k+1) + L(k + alpha) - L(254-k + beta)``,

   with ``L`` read from tables (``l_k`` itself from tabulated prefix sums of the three terms:
   the same integers, two row gathers per pixel), then ``w_k = floor(2^30 * 2^-(max l - l_k)) + 1``
   through a 4096-entry ``exp2`` table (see :func:`beta_binomial_weights`).

**Why the tables are the same everywhere.**  Integer addition, multiplication, shifts, max,
cumulative sums and gathers are exact on every backend; a matmul's accumulation order does not
matter for integers (two's complement wraps, so even an intermediate overflow gives the exact
result when the final value fits in ``int32``); multiplying float32 by a power of two and
``rint`` are exact.  The lookup tables are built with numpy float64 ``log2``/``exp2`` and every
entry within ``1e-6`` of a rounding tie is recomputed with Python's :mod:`decimal` (correctly
rounded software arithmetic), so they do not depend on the platform's libm.  Constriction then
quantizes the integer weights (converted exactly to float64) with IEEE basic arithmetic only.

**What the archive adds.**  ``z`` itself is not the same everywhere: the decoder regenerates the
chosen REC candidate from pinned threefry bits through float32 transcendental functions, and XLA:GPU
and XLA:CPU differ in the last bits (on an H200, 7.5% of the MNIST test latents by 1-3 ulps).  Where
that moves ``z * 2^10`` across a rounding boundary (2 of 200,000 coordinates there) the tables
differ, so the VAE declares ``latent_step = 2^-10`` and format-4 archives carry snap marks that put
every coordinate near a boundary on the encoder's side (:func:`jaxrec.codec.sections.snap_marks`).
Accumulators are sized for realistic activations
(``|acc| < 2^31`` needs ``|h| < 512`` before the shift); larger values wrap *deterministically*,
costing bits, never losslessness.  The float encoder network never needs to match.
"""

from __future__ import annotations

import decimal
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

__all__ = [
    "LOG2_PARAM_MAX",
    "NUM_LEVELS",
    "PARAM_FRAC_BITS",
    "beta_binomial_weights",
    "integer_mlp",
    "quantize_latent",
]

NUM_LEVELS = 256
LATENT_FRAC_BITS = 10
LATENT_CLIP = 16.0
WEIGHT_FRAC_BITS = 12
WEIGHT_CLIP = 8.0
ACT_FRAC_BITS = 10
ACT_CLIP = 64.0
PARAM_FRAC_BITS = 5
"""Likelihood parameters are sent to the tables as ``round(2^5 log2 alpha)``."""
LOG2_PARAM_MAX = 8
"""``|log2 alpha|, |log2 beta| <= 8``."""
LOG_FRAC_BITS = 16
EXP_FRAC_BITS = 12
WEIGHT_BITS = 30
_TIE_MARGIN = 1e-6


def _round_fixed(scaled: np.ndarray, exact: Callable[[tuple[int, ...]], decimal.Decimal]) -> np.ndarray:
    """``floor(v + 1/2)`` of values ``v`` given in float64 (libm accuracy, a few ulps), int64.

    Entries whose fractional part is within ``_TIE_MARGIN`` of 1/2 (where libm error could flip
    the rounding) are recomputed with ``exact(index)``, a 50-digit decimal value of ``v``.
    """
    out = np.floor(scaled + 0.5).astype(np.int64)
    near = np.abs(scaled - np.floor(scaled) - 0.5) < _TIE_MARGIN
    for index in zip(*np.nonzero(near)):
        out[index] = int((exact(index) + decimal.Decimal("0.5")).to_integral_value(rounding=decimal.ROUND_FLOOR))
    return out


_CTX = decimal.Context(prec=50)
_LN2 = _CTX.ln(decimal.Decimal(2))


def _dec_log2(value: decimal.Decimal) -> decimal.Decimal:
    return _CTX.divide(_CTX.ln(value), _LN2)


def _dec_exp2(value: decimal.Decimal) -> decimal.Decimal:
    return _CTX.exp(_CTX.multiply(value, _LN2))


@functools.lru_cache(maxsize=1)
def _log2_tables() -> tuple[np.ndarray, np.ndarray]:
    """``(log2_int, log2_shifted)``, int32, ``2^16``-scaled and rounded:

    * ``log2_int[m] = log2 m`` for ``m = 1..255`` (entry 0 is unused, 0);
    * ``log2_shifted[m, j + J] = log2(m + 2^(j / 32))`` for ``m = 0..255``, ``|j| <= J = 256``.
    """
    scale = 2.0**LOG_FRAC_BITS
    limit = LOG2_PARAM_MAX << PARAM_FRAC_BITS
    m = np.arange(NUM_LEVELS, dtype=np.float64)
    ints = _round_fixed(
        np.log2(np.maximum(m, 1.0)) * scale,
        lambda i: _dec_log2(decimal.Decimal(max(i[0], 1))) * int(scale),
    )
    j = np.arange(-limit, limit + 1)
    shifted = _round_fixed(
        np.log2(m[:, None] + np.exp2(j[None, :] / 2.0**PARAM_FRAC_BITS)) * scale,
        lambda i: _dec_log2(i[0] + _dec_exp2(decimal.Decimal(int(j[i[1]])) / 2**PARAM_FRAC_BITS)) * int(scale),
    )
    return ints.astype(np.int32), shifted.astype(np.int32)


@functools.lru_cache(maxsize=1)
def _exp2_table() -> np.ndarray:
    """``round(2^30 * 2^(-r / 4096))`` for ``r = 0..4095``, int32 in ``(2^29, 2^30]``."""
    r = np.arange(2**EXP_FRAC_BITS)
    return _round_fixed(
        np.exp2(WEIGHT_BITS - r / 2.0**EXP_FRAC_BITS),
        lambda i: _dec_exp2(WEIGHT_BITS - decimal.Decimal(int(r[i[0]])) / 2**EXP_FRAC_BITS),
    ).astype(np.int32)


def quantize_latent(z: Array) -> Array:
    """``rint(clip(z, -16, 16) * 2^10)`` as int32, from float32 ``z`` (exact)."""
    z = jnp.asarray(z, jnp.float32)
    return jnp.rint(jnp.clip(z, -LATENT_CLIP, LATENT_CLIP) * 2.0**LATENT_FRAC_BITS).astype(jnp.int32)


def _rounding_shift(acc: Array, shift: int) -> Array:
    """``round(acc / 2^shift)`` (ties up) for ``shift >= 1``, exact in int32."""
    return jnp.right_shift(acc + (1 << (shift - 1)), shift)


def integer_mlp(layers: Sequence[tuple[Array, Array]], z: Array) -> Array:
    """The integer twin of a ReLU MLP ``(kernel (in, out), bias (out,))`` applied to ``z`` ``(..., in)``.

    Returns the head's outputs in fixed point with :data:`PARAM_FRAC_BITS` fractional bits, int32
    ``(..., out)`` (see the module docstring, steps 1-2).
    """
    a, frac = quantize_latent(z), LATENT_FRAC_BITS
    for i, (kernel, bias) in enumerate(layers):
        w = jnp.asarray(kernel, jnp.float32)
        w_q = jnp.rint(jnp.clip(w, -WEIGHT_CLIP, WEIGHT_CLIP) * 2.0**WEIGHT_FRAC_BITS).astype(jnp.int32)
        acc_frac = WEIGHT_FRAC_BITS + frac
        b = jnp.asarray(bias, jnp.float32) * 2.0**acc_frac
        b_q = jnp.rint(jnp.clip(b, -(2.0**30), 2.0**30)).astype(jnp.int32)
        acc = jnp.matmul(a, w_q, preferred_element_type=jnp.int32) + b_q
        if i < len(layers) - 1:
            a = jnp.clip(_rounding_shift(jnp.maximum(acc, 0), acc_frac - ACT_FRAC_BITS), 0, int(ACT_CLIP * 2**ACT_FRAC_BITS))
            frac = ACT_FRAC_BITS
        else:
            a = _rounding_shift(acc, acc_frac - PARAM_FRAC_BITS)
    return a


@functools.lru_cache(maxsize=1)
def _prefix_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, a, b)``, int32: the prefix sums of the recurrence's three terms (step 3 of the module
    docstring), so that ``l_k = c[k] + a[j_alpha + J, k] - b[j_beta + J, k]`` for ``k = 0..255``:

    * ``c[k] = sum_{i<k} L(255 - i) - L(i + 1)``;
    * ``a[j + J, k] = sum_{i<k} L(i + 2^(j/32))``;
    * ``b[j + J, k] = sum_{i<k} L(254 - i + 2^(j/32))``.

    Sums of the same integers as the recurrence (exact: every partial sum is below ``2^31``), so
    the weights are bit for bit those of the step-by-step recurrence; per pixel they cost two row
    gathers instead of 510 element gathers and a cumulative sum.
    """
    log2_int, log2_shifted = (t.astype(np.int64) for t in _log2_tables())
    n = NUM_LEVELS - 1
    k = np.arange(n)

    def prefix(terms: np.ndarray) -> np.ndarray:  # (..., n) -> (..., n + 1): sums of the first k terms
        sums = np.concatenate([np.zeros(terms.shape[:-1] + (1,), np.int64), np.cumsum(terms, axis=-1)], axis=-1)
        assert np.abs(sums).max() < 2**31
        return sums.astype(np.int32)

    return (
        prefix(log2_int[n - k] - log2_int[k + 1]),
        prefix(log2_shifted[k].T),
        prefix(log2_shifted[n - 1 - k].T),
    )


def beta_binomial_weights(j_alpha: Array, j_beta: Array) -> Array:
    """Integer weights ``w_k ~ BetaBinomial(k; 255, 2^(j_alpha/32), 2^(j_beta/32))``, ``k = 0..255``.

    Args:
      j_alpha, j_beta: int32 ``(...)`` grid indices, clipped here to ``[-256, 256]``
        (``alpha, beta`` in ``[2^-8, 2^8]``).

    Returns:
      int32 ``(..., 256)``, every weight in ``[1, 2^30 + 1]``; the mode gets ``2^30 + 1``.
      ``w / sum(w)`` matches the exact pmf to a relative ``~1e-3`` per entry (fixed-point log2 with
      16 fractional bits summed over up to 255 steps), not counting the ``+1`` floor.
    """
    c, a, b = (jnp.asarray(t) for t in _prefix_tables())
    exp2 = jnp.asarray(_exp2_table())
    limit = LOG2_PARAM_MAX << PARAM_FRAC_BITS
    ja = jnp.clip(jnp.asarray(j_alpha, jnp.int32), -limit, limit) + limit
    jb = jnp.clip(jnp.asarray(j_beta, jnp.int32), -limit, limit) + limit
    ell = c + a[ja] - b[jb]
    gap = jnp.right_shift(jnp.max(ell, axis=-1, keepdims=True) - ell, LOG_FRAC_BITS - EXP_FRAC_BITS)
    octaves = jnp.minimum(jnp.right_shift(gap, EXP_FRAC_BITS), 31)
    return jnp.right_shift(exp2[gap & (2**EXP_FRAC_BITS - 1)], octaves) + 1
