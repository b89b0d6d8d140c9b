"""Learning the INR prior on training images: the EM-like loop of COMBINER and RECOMBINER.

COMBINER (Guo et al., NeurIPS 2023, Sec. 3.2) and RECOMBINER (He et al., ICLR 2024, Sec. 3.4) learn
a factorized Gaussian prior ``p = N(mu_p, diag sigma_p^2)`` over the INR latent by coordinate
descent on ``sum_i [MSE_i + beta KL[q_i || p]]`` over the training images ``i``:

1. **E-step.** ``steps`` Adam steps on every training posterior ``q_i`` at once (a ``vmap`` over
   images) and, for RECOMBINER, on the shared upsampler and matrices ``A_l``; one reparameterized
   sample per image and step; a fresh optimizer state each iteration (as the reference code).
2. **Beta.** The mean KL per image (bits) is compared with the window
   ``[max(lowest, r - range), r] * pixels`` for a target rate ``r`` (bpp); beta is multiplied by
   ``beta_factor`` above it and divided below it (RECOMBINER: 1.5, range 0.3, lowest 0.1 bpp).
3. **M-step.** The prior that minimizes ``sum_i KL[q_i || p]``, in closed form
   (:func:`closed_form_prior`).

After the last iteration the fit records the statistics the codec needs: the training-mean KL per
coordinate in bits (the block plans and the space partitions are built from it), the mean
posterior ``rho`` (the test-time initialization) and the final beta.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import jaxrec
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.models.inr._network import InrNetwork
from jaxrec.models.inr._posterior import LN2, adjust_beta, posterior_scale

Array = jax.Array

__all__ = ["PriorFit", "PriorSchedule", "closed_form_prior", "initial_posteriors", "learn_prior"]

INIT_RHO = -4.0
"""Initial posterior ``rho`` (RECOMBINER: -4, scale ~0.003)."""
INIT_PRIOR_RHO = -2.0
"""The initial prior's scale is ``softplus(-2) / 6 ~ 0.021`` (RECOMBINER)."""
POSITIONAL_INIT_STD = 0.1
"""Initial means of the positional latents are N(0, 0.1^2) (RECOMBINER)."""
SIREN_C = 6.0


def closed_form_prior(loc: Array, scale: Array) -> jaxrec.DiagGaussian:
    """The factorized Gaussian ``p`` minimizing ``sum_i KL[N(loc_i, scale_i^2) || p]``.

    Per coordinate, ``mu_p = mean_i loc_i`` and ``sigma_p^2 = mean_i (scale_i^2 + (loc_i - mu_p)^2)``
    (setting the derivatives of the summed closed-form KL to zero; the M-step of COMBINER, Guo et
    al., NeurIPS 2023). RECOMBINER's code uses the unbiased variance of the means instead, which
    differs by a factor ``N / (N - 1)`` on that term. ``loc`` and ``scale`` are ``(N, D)``.
    """
    mu = jnp.mean(loc, axis=0)
    var = jnp.mean(scale**2 + (loc - mu) ** 2, axis=0)
    return jaxrec.DiagGaussian(mu, jnp.sqrt(var))


class PriorSchedule(NamedTuple):
    """Settings of :func:`learn_prior`.

    Attributes:
      target_bpp: the rate ``r`` the mean training KL is steered to (bits per pixel).
      iterations: EM iterations (RECOMBINER: 550).
      steps: Adam steps per E-step (RECOMBINER: 100).
      first_steps: Adam steps of the first E-step (RECOMBINER: 200).
      learning_rate: Adam's step size (RECOMBINER: 2e-4).
      beta_init: the first beta (RECOMBINER: 1e-8).
      beta_factor: beta's multiplicative step (1.5).
      bitrate_range: width of the rate window below ``r`` (0.3 bpp).
      lowest_bitrate: the window never reaches below this (0.1 bpp).
    """

    target_bpp: float
    iterations: int = 550
    steps: int = 100
    first_steps: int = 200
    learning_rate: float = 2e-4
    beta_init: float = 1e-8
    beta_factor: float = 1.5
    bitrate_range: float = 0.3
    lowest_bitrate: float = 0.1


class PriorFit(NamedTuple):
    """The result of :func:`learn_prior`.

    Attributes:
      network: the INR with its learned upsampler and ``A_l``.
      prior: the learned ``p``, event size ``D``.
      beta: the final beta.
      init_rho: ``(D,)``, the mean posterior ``rho`` over the training images.
      kl_per_dim: ``float64 (D,)``, the mean ``KL[q_i,d || p_d]`` over training images, in bits.
      loc, rho: ``(N, D)``, the training posteriors (to continue learning at another rate).
      history: one dict per iteration: ``mse``, ``kl_bits`` (mean per image), ``beta``.
    """

    network: InrNetwork
    prior: jaxrec.DiagGaussian
    beta: float
    init_rho: np.ndarray
    kl_per_dim: np.ndarray
    loc: Array
    rho: Array
    history: list[dict[str, float]]


def initial_posteriors(network: InrNetwork, num_images: int, key: Array) -> tuple[Array, Array]:
    """RECOMBINER's initial training posteriors ``(loc, rho)``, each ``(N, D)``: SIREN latents
    ``U(+-sqrt(c / d_hidden) / w0)``, positional latents ``N(0, 0.1^2)``, ``rho = -4``."""
    config = network.config
    w_std = math.sqrt(SIREN_C / config.layer_dims[-2]) / config.w0
    k_w, k_p = jax.random.split(key)
    weights = jax.random.uniform(k_w, (num_images, config.num_weights), jnp.float32, -w_std, w_std)
    grid = POSITIONAL_INIT_STD * jax.random.normal(k_p, (num_images, config.latent_size - config.num_weights))
    loc = jnp.concatenate([weights, grid], axis=1)
    return loc, jnp.full_like(loc, INIT_RHO)


def _images_01(images: Any, config: Any) -> Array:
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[1:] != config.image_shape:
        raise InvalidArgumentError(f"images must be uint8 (N, {', '.join(map(str, config.image_shape))}), got {arr.dtype} {arr.shape}")
    return jnp.asarray(arr, jnp.float32) / 255.0


@functools.lru_cache(maxsize=16)
def _e_step(num_steps: int, learning_rate: float) -> Callable:
    """A jitted E-step: ``num_steps`` Adam steps on (posteriors, network parameters); cached, so
    E-steps of one length share one compilation."""
    optimizer = optax.adam(learning_rate)

    @jax.jit
    def run(graphdef: Any, net_params: Any, rest: Any, prior: jaxrec.DiagGaussian, loc: Array, rho: Array,
            x: Array, beta: Array, key: Array) -> tuple:
        def loss(params: tuple, step_key: Array) -> tuple[Array, Array]:
            net_params, loc, rho = params
            network = nnx.merge(graphdef, net_params, rest)
            scale = posterior_scale(rho)
            h = loc + scale * jax.random.normal(step_key, loc.shape, loc.dtype)
            mse = jnp.mean((jax.vmap(network.render)(h) - x) ** 2, axis=(1, 2, 3))
            kl_bits = jaxrec.kl(jaxrec.DiagGaussian(loc, scale), prior)
            return jnp.sum(mse) + beta * LN2 * jnp.sum(kl_bits), jnp.mean(mse)

        def step(carry: tuple, step_key: Array) -> tuple[tuple, Array]:
            params, opt_state = carry
            (_, mse), grads = jax.value_and_grad(loss, has_aux=True)(params, step_key)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), mse

        params = (net_params, loc, rho)
        (params, _), mse = jax.lax.scan(step, (params, optimizer.init(params)), jax.random.split(key, num_steps))
        return (*params, mse[-1])

    return run


def learn_prior(
    network: InrNetwork,
    images: Any,
    schedule: PriorSchedule,
    *,
    seed: int = 0,
    start: PriorFit | None = None,
    progress: bool = True,
) -> PriorFit:
    """Learns the prior (and the shared INR parts) on ``images`` with the EM-like loop.

    Args:
      network: the INR; its parameters are the starting point (updated copy returned, the argument
        is not modified).
      images: uint8 ``(N, H, W, C)`` training images.
      schedule: iterations, steps, learning rate, target rate and beta settings.
      seed: randomness of the initial posteriors and the reparameterized samples.
      start: continue from this fit (its posteriors, prior, beta and network) instead of
        RECOMBINER's initialization, e.g. to learn the prior of a nearby rate.
      progress: a tqdm bar over iterations (MSE, KL per image, beta).

    Returns:
      A :class:`PriorFit`.
    """
    from tqdm.auto import tqdm

    config = network.config
    x = _images_01(images, config)
    n = x.shape[0]
    if schedule.iterations < 1 or schedule.steps < 1 or schedule.first_steps < 1:
        raise InvalidArgumentError(f"iterations and steps must be >= 1, got {schedule}")
    if not schedule.target_bpp > 0:
        raise InvalidArgumentError(f"target_bpp must be > 0, got {schedule.target_bpp}")
    key = jax.random.key(seed)
    if start is None:
        key, sub = jax.random.split(key)
        loc, rho = initial_posteriors(network, n, sub)
        dim = config.latent_size
        prior = jaxrec.DiagGaussian(jnp.zeros(dim), jnp.full(dim, posterior_scale(jnp.float32(INIT_PRIOR_RHO))))
        beta = schedule.beta_init
        network = nnx.clone(network)
    else:
        if start.loc.shape[0] != n:
            raise InvalidArgumentError(f"start was fitted on {start.loc.shape[0]} images, got {n}")
        loc, rho, prior, beta, network = start.loc, start.rho, start.prior, start.beta, nnx.clone(start.network)
    graphdef, net_params, rest = nnx.split(network, nnx.Param, ...)
    pixels = config.num_pixels
    high = schedule.target_bpp * pixels
    low = max(schedule.lowest_bitrate, schedule.target_bpp - schedule.bitrate_range) * pixels
    first = _e_step(schedule.first_steps if start is None else schedule.steps, schedule.learning_rate)
    later = _e_step(schedule.steps, schedule.learning_rate)
    history: list[dict[str, float]] = []
    bar = tqdm(range(schedule.iterations), desc=f"prior @ {schedule.target_bpp:g} bpp", disable=not progress)
    for it in bar:
        key, sub = jax.random.split(key)
        run = first if it == 0 else later
        net_params, loc, rho, mse = run(graphdef, net_params, rest, prior, loc, rho, x, jnp.float32(beta), sub)
        scale = posterior_scale(rho)
        kl_bits = float(jnp.mean(jaxrec.kl(jaxrec.DiagGaussian(loc, scale), prior)))
        beta = float(adjust_beta(jnp.float32(beta), jnp.float32(kl_bits), low, high, schedule.beta_factor, 1.0))
        beta = max(beta, 1e-20)
        prior = closed_form_prior(loc, scale)
        history.append({"mse": float(mse), "kl_bits": kl_bits, "beta": beta})
        bar.set_postfix(psnr=f"{-10 * math.log10(max(float(mse), 1e-12)):.2f}", bpp=f"{kl_bits / pixels:.3f}", beta=f"{beta:.2e}")
    network = nnx.merge(graphdef, net_params, rest)
    scale = posterior_scale(rho)
    kl_per_dim = np.asarray(jnp.mean(jaxrec.kl(jaxrec.DiagGaussian(loc, scale), prior, per_dim=True), axis=0), np.float64)
    return PriorFit(
        network=network,
        prior=prior,
        beta=beta,
        init_rho=np.asarray(jnp.mean(rho, axis=0)),
        kl_per_dim=kl_per_dim,
        loc=loc,
        rho=rho,
        history=history,
    )
