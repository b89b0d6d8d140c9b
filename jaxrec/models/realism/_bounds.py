"""Distortion-rate bounds for a Gaussian source under perfect realism, and the channel that attains one.

Source ``X ~ N(0, sigma^2)`` per coordinate (i.i.d.), squared error per coordinate, rate ``R`` in bits per
coordinate, and *perfect realism*: the reconstruction ``Xh`` has exactly the law of the source (for a
block ``X^n``: ``Xh^n ~ N(0, sigma^2 I_n)``).  With ``eps = 2^{-2R}``:

1. **Shannon** (no realism constraint): ``D(R) = sigma^2 eps`` (Cover & Thomas, Elements of
   Information Theory, 2006, Thm. 10.3.2).

2. **Perfect realism with common randomness**: ``D(R) = 2 sigma^2 (1 - sqrt(1 - eps))``.  This is Blau &
   Michaeli's Gaussian rate-distortion-perception function at perception 0 ("Rethinking lossy
   compression: the rate-distortion-perception tradeoff", ICML 2019, Thm. 2 with ``W_2`` perception)
   and the perfect-realism case of Zhang, Qian, Chen & Khisti ("Universal rate-distortion-perception
   representations for lossy compression", NeurIPS 2021).  It needs common randomness between encoder
   and decoder to be achieved (Wagner, "The rate-distortion-perception trade-off: the role of common
   randomness", arXiv:2202.04147, 2022); one-shot it is achieved up to a ``log`` overhead by sending a
   sample of the channel::

       Xh = rho X + sqrt(1 - rho^2) sigma Z,   Z ~ N(0, 1),   rho = sqrt(1 - eps),

   with relative entropy coding (Li & El Gamal, "Strong functional representation lemma and
   applications to coding theorems", IEEE Trans. IT 2018; Theis & Agustsson, "On the advantages of
   stochastic encoders", 2021).  Its mutual information is ``I(X; Xh) = -1/2 log2(1 - rho^2) = R`` and
   ``E (X - Xh)^2 = 2 sigma^2 (1 - rho)``.
   *Converse* (any ``Xh ~ N(0, sigma^2)`` with ``I(X; Xh) <= R``): by Cauchy-Schwarz
   ``E[X Xh] = E[E[X|Xh] Xh] <= sigma sqrt(E E[X|Xh]^2)``, and ``E E[X|Xh]^2 = sigma^2 - mmse(X|Xh)
   <= sigma^2 (1 - eps)`` because ``mmse(X|Xh) >= sigma^2 2^{-2 I(X; Xh)}`` (the Gaussian
   rate-distortion converse); so ``E (X - Xh)^2 = 2 sigma^2 - 2 E[X Xh] >= 2 sigma^2 (1 - sqrt(1 - eps))``.

3. **Perfect realism without common randomness**: ``D(R) = 2 sigma^2 eps``, twice Shannon's (3 dB).
   Asymptotically, Saldi, Linder & Yuksel ("Output constrained lossy source coding with limited common
   randomness", IEEE Trans. IT 2015) and Wagner (2022) characterize the rates with common randomness
   rate ``R_c`` through an auxiliary ``U`` with ``X - U - Xh``: ``R >= I(X; U)`` and
   ``R + R_c >= I(Xh; U)``; at ``R_c = 0`` both informations are at most ``R``.
   *Converse*, one-shot, for any block length ``n`` and any encoder and decoder with private
   randomness (so ``X^n - M - Xh^n`` is a Markov chain), message entropy ``H(M) <= n R`` and
   ``Xh^n ~ N(0, sigma^2 I_n)``: ``E<X^n, Xh^n> = E<E[X^n|M], E[Xh^n|M]> <= sqrt(E|E[X^n|M]|^2
   E|E[Xh^n|M]|^2)`` and, as in 2., ``E|E[X^n|M]|^2 <= n sigma^2 (1 - 2^{-2 I(X^n; M)/n}) <= n sigma^2
   (1 - eps)``, the same for ``Xh^n`` since it is Gaussian too; so the distortion per coordinate is
   ``>= 2 sigma^2 - 2 sigma^2 (1 - eps) = 2 sigma^2 eps``.  *Achievability*: a jointly Gaussian ``U``
   with correlation ``sqrt(1 - eps)`` to both ``X`` and ``Xh`` meets both rate constraints with equality
   (asymptotically, Saldi et al. 2015).  Entropy-coded scalar quantization with posterior sampling at
   the decoder (:mod:`jaxrec.models.realism._quantization`) is a concrete scheme of this class:
   ``D = 2 E Var(X | cell)`` at rate ``H(cell)``.

Ordering: ``sigma^2 eps <= 2 sigma^2 (1 - sqrt(1 - eps)) <= 2 sigma^2 eps``; at high rate the bound with
common randomness approaches Shannon's (``~ sigma^2 eps (1 + eps/4)``) while the one without stays a
factor 2 (3 dB) above it; at low rate common randomness saves a factor ``~ (1 - D / (2 sigma^2))`` in rate.
All functions are numpy, elementwise, and accept arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from jaxrec.core.errors import InvalidArgumentError

__all__ = [
    "channel_correlation",
    "channel_noise_scale",
    "channel_rate",
    "distortion_rate",
    "perfect_realism_distortion",
    "perfect_realism_rate",
    "rate_distortion",
]

_LN2 = float(np.log(2.0))


def _rates(rate_bits: Any) -> np.ndarray:
    rate = np.asarray(rate_bits, dtype=np.float64)
    if not np.all(np.isfinite(rate)) or np.any(rate < 0):
        raise InvalidArgumentError(f"rate_bits must be finite and >= 0, got {rate_bits!r}")
    return rate


def _variance(variance: Any) -> np.ndarray:
    var = np.asarray(variance, dtype=np.float64)
    if not np.all(np.isfinite(var)) or np.any(var <= 0):
        raise InvalidArgumentError(f"variance must be finite and > 0, got {variance!r}")
    return var


def _distortions(distortion: Any) -> np.ndarray:
    dist = np.asarray(distortion, dtype=np.float64)
    if np.any(np.isnan(dist)) or np.any(dist <= 0):
        raise InvalidArgumentError(f"distortion must be > 0, got {distortion!r}")
    return dist


def channel_correlation(rate_bits: Any) -> np.ndarray:
    """``rho = sqrt(1 - 2^{-2R})``: the correlation of the optimal perfect-realism channel at ``R`` bits.

    Computed as ``sqrt(-expm1(-2 R ln 2))``, accurate for small ``R``.
    """
    return np.sqrt(-np.expm1(-2.0 * _LN2 * _rates(rate_bits)))


def channel_noise_scale(rate_bits: Any, sigma: Any = 1.0) -> np.ndarray:
    """``sigma sqrt(1 - rho^2) = sigma 2^{-R}``: the standard deviation of ``Xh`` given ``X``."""
    return np.sqrt(_variance(np.square(sigma))) * np.exp2(-_rates(rate_bits))


def channel_rate(rho: Any) -> np.ndarray:
    """``I(X; rho X + sqrt(1 - rho^2) sigma Z) = -1/2 log2(1 - rho^2)`` bits, for ``rho`` in ``[0, 1)``."""
    r = np.asarray(rho, dtype=np.float64)
    if not np.all((r >= 0) & (r < 1)):
        raise InvalidArgumentError(f"rho must lie in [0, 1), got {rho!r}")
    return -0.5 * np.log1p(-r * r) / _LN2


def distortion_rate(rate_bits: Any, variance: Any = 1.0) -> np.ndarray:
    """Shannon's ``D(R) = sigma^2 2^{-2R}`` (no realism constraint)."""
    return _variance(variance) * np.exp2(-2.0 * _rates(rate_bits))


def perfect_realism_distortion(rate_bits: Any, variance: Any = 1.0, *, common_randomness: bool) -> np.ndarray:
    """The least MSE per coordinate at ``R`` bits with ``Xh ~ N(0, sigma^2)`` exactly.

    ``common_randomness=True``: ``2 sigma^2 (1 - sqrt(1 - eps))``, computed as
    ``2 sigma^2 eps / (1 + sqrt(1 - eps))`` (no cancellation at high rate); ``False``:
    ``2 sigma^2 eps``; ``eps = 2^{-2R}``.  See the module docstring for the derivations.
    """
    var = _variance(variance)
    eps = np.exp2(-2.0 * _rates(rate_bits))
    if common_randomness:
        return 2.0 * var * eps / (1.0 + np.sqrt(1.0 - eps))
    return 2.0 * var * eps


def rate_distortion(distortion: Any, variance: Any = 1.0) -> np.ndarray:
    """Shannon's ``R(D) = max(0, 1/2 log2(sigma^2 / D))`` bits."""
    return np.maximum(0.0, 0.5 * np.log2(_variance(variance) / _distortions(distortion)))


def perfect_realism_rate(distortion: Any, variance: Any = 1.0, *, common_randomness: bool) -> np.ndarray:
    """The inverse of :func:`perfect_realism_distortion`: bits per coordinate for MSE ``D`` (0 at ``D >= 2 sigma^2``).

    With common randomness ``R = -1/2 log2(1 - rho^2)``, ``rho = 1 - D / (2 sigma^2)`` (evaluated as
    ``1 - rho^2 = u (2 - u)``, ``u = 1 - rho``); without,
    ``R = 1/2 log2(2 sigma^2 / D)``.
    """
    var = _variance(variance)
    d = _distortions(distortion)
    if common_randomness:
        u = np.minimum(d / (2.0 * var), 1.0)  # 1 - rho; 1 - rho^2 = u (2 - u) without cancellation
        return -0.5 * np.log2(u * (2.0 - u))
    return np.maximum(0.0, 0.5 * np.log2(2.0 * var / d))
