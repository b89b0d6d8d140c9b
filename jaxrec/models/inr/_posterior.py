"""Fitting a Gaussian posterior over the INR latent of one image, with a KL band per group.

The posterior is ``q(h) = N(loc, diag(scale^2))`` with ``scale = softplus(rho) / 6`` (RECOMBINER's
scale transform; He et al., ICLR 2024), optionally capped at ``max_scale_ratio`` times the prior's
scale so that the density ratio ``q / p`` stays bounded (exact coders need a finite
``D_inf[Q||P]``). The objective for one image ``x`` (values on the ``[0, 1]`` scale) is the
beta-ELBO of COMBINER and RECOMBINER (Guo et al., NeurIPS 2023; He et al., ICLR 2024) with one
beta per group of latent coordinates:

    L = E_{h ~ q} mean_pixels (render(h) - x)^2 + sum_g beta_g KL[q_g || p_g]      (KL in nats)

estimated with ``num_samples`` reparameterized samples per step and minimized with Adam.

**Beta controller** (RECOMBINER's test-time rule): every ``adjust_every`` steps each group's KL
(bits) is compared with its band ``[kappa - lower, kappa + upper]``; beta is multiplied by
``factor`` above the band and divided by it below, clipped to ``[0, beta_max]``. So the KL of every
group settles just under ``kappa``, the budget one REC block can carry.

**Coded coordinates.** After some blocks have been sent, their coordinates are fixed to the
decoded values ``z`` (``fixed`` mask): the render uses ``z`` there with zero variance, their KL is
dropped, and only the other coordinates move (progressive fine-tuning).

**Restarting the controller.** The codec protocol hands ``refine`` only the current Q, not the
betas the previous fit ended with, so a fine-tuning round restarts every free group at the trained
beta and adjusts at every step (``adjust_every=1``): a beta off by a factor 2 is back in ~15 steps.
(Recovering the betas from the posterior's stationarity condition was tried and rejected: with the
short schedules of a CPU run the posteriors are far from stationary and the estimate was 3-5 times
too small.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

import jaxrec
from jaxrec.models.inr._network import InrNetwork

Array = jax.Array
Distortion = Callable[[Array], Array]

__all__ = [
    "SCALE_DIVISOR",
    "Band",
    "FitSettings",
    "Groups",
    "adjust_beta",
    "capped_scale",
    "fit_posterior",
    "group_kl_bits",
    "image_distortion",
    "inverse_scale",
    "posterior_scale",
]

SCALE_DIVISOR = 6.0
"""``scale = softplus(rho) / 6`` (RECOMBINER's ``st``)."""
LN2 = 0.6931471805599453


def posterior_scale(rho: Array) -> Array:
    """``softplus(rho) / 6``."""
    return jax.nn.softplus(rho) / SCALE_DIVISOR


def inverse_scale(scale: Array) -> Array:
    """``rho`` with ``posterior_scale(rho) == scale`` (``scale > 0``): ``log(expm1(6 scale))``."""
    return jnp.log(jnp.expm1(SCALE_DIVISOR * scale))


class Band(NamedTuple):
    """The KL band of the beta controller (bits) and its step.

    Attributes:
      kappa: the group budget; RECOMBINER: 16 bits.
      lower: beta falls while a group's KL is below ``kappa - lower`` (0.4 bits).
      upper: beta rises while a group's KL is above ``kappa + upper`` (0 bits).
      factor: multiplicative step of beta (1.05).
      adjust_every: steps between adjustments (10).
      beta_max: upper clip of beta (1e4).
    """

    kappa: float = 16.0
    lower: float = 0.4
    upper: float = 0.0
    factor: float = 1.05
    adjust_every: int = 10
    beta_max: float = 1e4


def adjust_beta(beta: Array, kl_bits: Array, low: float, high: float, factor: float, beta_max: float) -> Array:
    """One controller step, elementwise: ``beta * factor`` where ``kl_bits > high``, ``beta /
    factor`` where ``kl_bits < low``, unchanged inside ``[low, high]``; clipped to ``[0, beta_max]``."""
    beta = jnp.where(kl_bits > high, beta * factor, jnp.where(kl_bits < low, beta / factor, beta))
    return jnp.clip(beta, 0.0, beta_max)


class Groups(NamedTuple):
    """Which group (REC block) each latent coordinate belongs to.

    Attributes:
      index: ``int32[D]``, the group of each coordinate, in ``[0, count)``.
      count: ``G`` (static).
    """

    index: Array
    count: int


def group_kl_bits(kl_per_dim_bits: Array, groups: Groups) -> Array:
    """``(G,)``: the KL of each group, summed over its coordinates (``kl_per_dim_bits`` ``(D,)``)."""
    return jax.ops.segment_sum(kl_per_dim_bits, groups.index, num_segments=groups.count)


class FitSettings(NamedTuple):
    """Optimization settings of :func:`fit_posterior` (all static).

    Attributes:
      steps: Adam steps.
      learning_rate: Adam's step size (RECOMBINER: 2e-4).
      num_samples: reparameterized samples of ``h`` per step (RECOMBINER: 5).
      max_scale_ratio: cap of ``scale / prior scale`` (``None``: no cap).
      final_lr_fraction: the step size decays along a cosine to this fraction of
        ``learning_rate`` (1.0: constant, as RECOMBINER). A decay damps the controller's
        oscillation at the end of a short fit, where its KLs matter.
    """

    steps: int
    learning_rate: float = 2e-4
    num_samples: int = 1
    max_scale_ratio: float | None = None
    final_lr_fraction: float = 1.0


def capped_scale(rho: Array, prior_scale: Array, max_ratio: float | None) -> Array:
    """``posterior_scale(rho)``, capped at ``max_ratio * prior_scale`` unless ``max_ratio`` is None."""
    scale = posterior_scale(rho)
    return scale if max_ratio is None else jnp.minimum(scale, max_ratio * prior_scale)


def _scale(rho: Array, prior: jaxrec.DiagGaussian, settings: FitSettings) -> Array:
    return capped_scale(rho, prior.scale, settings.max_scale_ratio)


def image_distortion(network: InrNetwork, x: Array) -> Distortion:
    """``h -> mean (render(h) - x)^2``: the squared error of the INR at ``h`` against the image
    ``x`` ``(H, W, C)`` (values on the ``[0, 1]`` scale), averaged over pixels and channels."""
    return lambda h: jnp.mean((network.render(h) - x) ** 2)


def _expected_distortion(
    distortion: Distortion, loc: Array, scale: Array, fixed: Array, z: Array, key: Array, num_samples: int
) -> Array:
    """``E_q distortion(h)`` over ``num_samples`` draws, coded coordinates held at ``z``."""
    loc = jnp.where(fixed, z, loc)
    scale = jnp.where(fixed, 0.0, scale)
    eps = jax.random.normal(key, (num_samples, loc.shape[-1]), loc.dtype)
    return jnp.mean(jax.vmap(distortion)(loc + scale * eps))


def _kl_per_dim(loc: Array, scale: Array, prior: jaxrec.DiagGaussian, fixed: Array) -> Array:
    """``KL[q_d || p_d]`` in bits per coordinate, 0 at coded coordinates."""
    per_dim = jaxrec.kl(jaxrec.DiagGaussian(loc, scale), prior, per_dim=True)
    return jnp.where(fixed, 0.0, per_dim)


def fit_posterior(
    distortion: Distortion,
    prior: jaxrec.DiagGaussian,
    loc: Array,
    rho: Array,
    beta: Array,
    groups: Groups,
    band: Band,
    settings: FitSettings,
    key: Array,
    fixed: Array | None = None,
    z: Array | None = None,
) -> tuple[Array, Array, Array]:
    """Minimizes ``E_q distortion(h) + sum_g beta_g KL[q_g || p_g]`` (module docstring) over a
    Gaussian posterior; jit- and vmap-able.

    Args:
      distortion: ``h (D,) -> scalar``, differentiable; for an image :func:`image_distortion`.
      prior: ``p``, event size ``D``.
      loc, rho: ``(D,)``, the starting posterior.
      beta: ``(G,)``, the starting beta of each group.
      groups: the group of each coordinate.
      band: the controller's band.
      settings: steps, learning rate, samples, scale cap.
      key: randomness of the reparameterized samples.
      fixed: ``bool[D]``, coded coordinates (default none); ``z`` ``(D,)`` their values.

    Returns:
      ``(loc, rho, beta)`` after ``settings.steps`` Adam steps (fresh optimizer state, as
      RECOMBINER's fine-tuning); beta of groups with no free coordinate is 0.
    """
    fixed = jnp.zeros(loc.shape, bool) if fixed is None else fixed
    z = jnp.zeros_like(loc) if z is None else z
    free_groups = jax.ops.segment_sum((~fixed).astype(jnp.int32), groups.index, num_segments=groups.count) > 0
    beta = jnp.where(free_groups, beta, 0.0)
    optimizer = optax.adam(
        optax.cosine_decay_schedule(settings.learning_rate, settings.steps, alpha=settings.final_lr_fraction)
    )

    def loss(params: tuple[Array, Array], beta: Array, step_key: Array) -> Array:
        loc, rho = params
        scale = _scale(rho, prior, settings)
        expected = _expected_distortion(distortion, loc, scale, fixed, z, step_key, settings.num_samples)
        kl_nats = group_kl_bits(_kl_per_dim(loc, scale, prior, fixed), groups) * LN2
        return expected + jnp.sum(beta * kl_nats)

    def step(carry: tuple, inputs: tuple[Array, Array]) -> tuple[tuple, None]:
        params, opt_state, beta = carry
        index, step_key = inputs
        kl_bits = group_kl_bits(_kl_per_dim(params[0], _scale(params[1], prior, settings), prior, fixed), groups)
        adjusted = adjust_beta(beta, kl_bits, band.kappa - band.lower, band.kappa + band.upper, band.factor, band.beta_max)
        beta = jnp.where((index % band.adjust_every == 0) & free_groups, adjusted, beta)
        grads = jax.grad(loss)(params, beta, step_key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, beta), None

    params = (loc, rho)
    inputs = (jnp.arange(settings.steps), jax.random.split(key, settings.steps))
    (params, _, beta), _ = jax.lax.scan(step, (params, optimizer.init(params), beta), inputs)
    return params[0], params[1], beta
