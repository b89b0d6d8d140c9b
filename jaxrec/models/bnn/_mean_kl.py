"""The Gaussian Mean-KL map: a posterior given by its mean and its KL to the prior.

Mean-KL parameterization (Lin, Flamich & Hernandez-Lobato, "Minimal Random Code Learning with
Mean-KL Parameterization", ICML 2023 Neural Compression Workshop): instead of ``(mean, std)``,
each weight's posterior ``q = N(mu, sigma^2)`` is described by its mean and by its KL to the
coding prior ``p = N(mu_p, sigma_p^2)``, so the coding cost is fixed by construction.

**The map.** With ``s = sigma^2 / sigma_p^2`` and ``d = (mu - mu_p)^2 / sigma_p^2``,

    KL[q || p] = (s - ln s - 1 + d) / 2   nats.

Fixing ``KL = kappa`` leaves ``s - ln s - 1 = delta`` with ``delta = 2 kappa - d``, whose root in
``(0, 1]`` (posteriors no wider than the prior) is ``s = -W_0(-e^{-1-delta})`` on the principal
branch of the Lambert W function. It exists iff ``delta >= 0``, i.e. the mean is *feasible*:
``|mu - mu_p| <= r = sigma_p sqrt(2 kappa)``.

**Float32 evaluation.** Writing ``s = e^{-t}`` turns the equation into ``h(t) = t + e^{-t} - 1 =
delta`` with ``t >= 0``. :func:`neg_log_variance_ratio` solves it with Newton's method on ``h``,
which is increasing and convex; ``h`` is evaluated by its Taylor series for ``t < 1/2`` (the
difference ``t + expm1(-t)`` loses all digits there), the start is the two-term inversion
``t ~ u + u^2/6`` (``u = sqrt(2 delta)``) of the series below ``delta = 1`` and
``t ~ delta + 1 - e^{-delta-1}`` above. ``delta`` itself is formed without cancellation (see
below), so the map stays accurate at both ends: ``delta -> 0`` (all KL in the mean, ``s -> 1``,
where ``W_0`` meets its branch point ``-1/e``) and large ``delta`` (``s ~ e^{-1-delta}``). Its
derivative ``dt/d delta = 1 / (1 - e^{-t})`` comes from the implicit function theorem
(``jax.custom_jvp``), not from unrolled Newton steps.

**The feasible-mean constraint.** A free mean parameter ``m`` is squashed into the feasible ball,

    mu = mu_p + r tanh(m / r),     so     delta = 2 kappa sech^2(m / r) >= 0,

computed as a product (no ``2 kappa - d`` cancellation). For ``|m| << r`` the mean is ``m``; as
``|m| / r`` grows the mean saturates at the ball's edge, where all of the weight's KL goes into
the mean and ``sigma -> sigma_p``. ``kappa = 0`` gives ``q = p``. :func:`mean_kl_inverse` maps
``q`` back to ``(m, kappa)`` (up to float32 rounding; it is how a re-fit starts from a given ``q``).

Float32 range: ``sigma = sigma_p e^{-t/2}`` stays a normal float32 for ``kappa`` up to about
80 nats (115 bits) per weight.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxrec.core.distributions import DiagGaussian

Array = jax.Array

__all__ = ["excess_from_log_variance_ratio", "mean_kl_gaussian", "mean_kl_inverse", "neg_log_variance_ratio"]

_NEWTON_STEPS = 4
_SERIES_BELOW = 0.5
_CENTRAL = 1.0 / math.sqrt(2.0)
_MAX_Y = 40.0


def _excess(t: Array) -> Array:
    """``h(t) = t + e^{-t} - 1 >= 0`` for ``t >= 0``, accurate in float32 for every ``t``."""
    # Below 1/2: t^2 (1/2! - t/3! + t^2/4! - ...) through t^10/10! (truncation < 2^-30 relative);
    # the difference t + expm1(-t) would cancel there.
    small = jnp.minimum(t, _SERIES_BELOW)
    series = jnp.zeros_like(t)
    for k in reversed(range(9)):
        series = series * small + (-1.0) ** k / math.factorial(k + 2)
    return jnp.where(t < _SERIES_BELOW, small * small * series, t + jnp.expm1(-t))


def excess_from_log_variance_ratio(log_s: Array) -> Array:
    """``delta = s - ln s - 1`` for ``log_s = ln s <= 0`` (the inverse of :func:`neg_log_variance_ratio`)."""
    return _excess(-jnp.asarray(log_s))


@jax.custom_jvp
def neg_log_variance_ratio(delta: Array) -> Array:
    """``t = -ln s >= 0`` with ``s - ln s - 1 = delta``, ``s in (0, 1]``: ``s = -W_0(-e^{-1-delta})``.

    Args:
      delta: ``(...)`` float, ``>= 0`` (``2 kappa - d`` in the module docstring; negative values
        are treated as 0, i.e. the boundary of the feasible set).

    Returns:
      ``t``, same shape and dtype; ``sigma = sigma_p e^{-t/2}``.
    """
    delta = jnp.maximum(jnp.asarray(delta), 0.0)
    u = jnp.sqrt(2.0 * delta)
    t = jnp.where(delta < 1.0, u + u * u / 6.0, delta + 1.0 - jnp.exp(-delta - 1.0))
    tiny = jnp.finfo(delta.dtype).tiny
    for _ in range(_NEWTON_STEPS):
        slope = jnp.maximum(-jnp.expm1(-t), tiny)
        t = jnp.maximum(t - (_excess(t) - delta) / slope, 0.0)
    return t


@neg_log_variance_ratio.defjvp
def _neg_log_variance_ratio_jvp(primals: tuple[Array], tangents: tuple[Array]) -> tuple[Array, Array]:
    (delta,), (d_delta,) = primals, tangents
    t = neg_log_variance_ratio(delta)
    slope = jnp.maximum(-jnp.expm1(-t), jnp.finfo(t.dtype).tiny)   # h'(t) = 1 - e^{-t}
    return t, jnp.where(delta > 0, d_delta / slope, 0.0)


def _sech2(y: Array) -> Array:
    """``sech^2 y = 4 e^{-2|y|} / (1 + e^{-2|y|})^2`` without overflow."""
    e = jnp.exp(-2.0 * jnp.abs(y))
    return 4.0 * e / (1.0 + e) ** 2


def mean_kl_gaussian(mean_param: Array, kl_nats: Array, prior: DiagGaussian) -> DiagGaussian:
    """The Gaussian ``q`` with ``KL[q||p] = kl_nats`` per coordinate and mean ``mu_p + r tanh(m / r)``.

    Args:
      mean_param: ``m``, ``(..., D)``, the unconstrained mean offset from the prior's mean.
      kl_nats: ``kappa >= 0``, ``(..., D)``, the KL of each coordinate in nats.
      prior: ``p``, a :class:`~jaxrec.DiagGaussian` broadcastable to ``(..., D)``.

    Returns:
      ``q`` with loc ``mu_p + r tanh(m / r)`` and scale ``sigma_p e^{-t/2}``, ``r = sigma_p
      sqrt(2 kappa)``, ``t`` from :func:`neg_log_variance_ratio` at ``delta = 2 kappa sech^2(m/r)``.
    """
    kappa = jnp.maximum(jnp.asarray(kl_nats), 0.0)
    radius = prior.scale * jnp.sqrt(2.0 * kappa)
    y = mean_param / jnp.maximum(radius, jnp.finfo(radius.dtype).tiny)
    t = neg_log_variance_ratio(2.0 * kappa * _sech2(y))
    return DiagGaussian(prior.loc + radius * jnp.tanh(y), prior.scale * jnp.exp(-0.5 * t))


def mean_kl_inverse(q: DiagGaussian, prior: DiagGaussian) -> tuple[Array, Array]:
    """``(m, kappa)`` with ``mean_kl_gaussian(m, kappa, prior) == q`` up to float32 rounding.

    ``kappa = (delta + d) / 2`` with ``delta`` from the variance ratio and ``d`` from the mean;
    ``y = m / r`` solves both ``tanh y = (mu - mu_p) / r`` and ``sech^2 y = delta / (2 kappa)``.
    The first is used while ``|tanh y| <= 1/sqrt 2`` and the second, ``y = log1p(sqrt(1 - w)) -
    log(w) / 2`` with ``w = sech^2 y``, towards saturation, where ``atanh`` loses its digits; at
    ``sigma = sigma_p`` (``w = 0``) ``|y|`` is capped at 40, where ``tanh`` is 1 and ``sech^2``
    below ``1e-34``.

    Args:
      q: ``N(mu, sigma^2)`` with ``sigma <= sigma_p`` (a ``q`` built by :func:`mean_kl_gaussian`).
      prior: ``N(mu_p, sigma_p^2)``, broadcastable to ``q``.

    Returns:
      ``m`` and ``kappa`` (nats), each of ``q``'s shape.
    """
    log_s = 2.0 * (jnp.log(q.scale) - jnp.log(prior.scale))
    offset = (q.loc - prior.loc) / prior.scale
    delta = excess_from_log_variance_ratio(jnp.minimum(log_s, 0.0))
    kappa = 0.5 * (delta + offset * offset)
    tiny = jnp.finfo(kappa.dtype).tiny
    radius = prior.scale * jnp.sqrt(2.0 * kappa)
    ratio = jnp.clip((q.loc - prior.loc) / jnp.maximum(radius, tiny), -1.0, 1.0)
    w = jnp.clip(delta / jnp.maximum(2.0 * kappa, tiny), tiny, 1.0)
    y_saturated = jnp.minimum(jnp.log1p(jnp.sqrt(1.0 - w)) - 0.5 * jnp.log(w), _MAX_Y)
    central = jnp.abs(ratio) <= _CENTRAL
    y = jnp.where(central, jnp.arctanh(jnp.where(central, ratio, 0.0)), jnp.sign(ratio) * y_saturated)
    return radius * y, kappa
