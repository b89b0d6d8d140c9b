"""The perfect-realism Gaussian channel as a codec: REC sends ``Xh`` itself.

For a source ``X ~ N(0, sigma^2 I_n)`` the channel that attains the rate-distortion-perception bound
with common randomness (:mod:`jaxrec.models.realism._bounds`, Blau & Michaeli, ICML 2019; Theis &
Agustsson, 2021) is ``Xh = rho X + sigma sqrt(1 - rho^2) Z`` with ``rho = sqrt(1 - 2^{-2R})``.  As a
codec (:mod:`jaxrec.codec.protocol`) its latent is ``Xh``:

* ``prior() = N(0, sigma^2 I_n)``, the marginal of ``Xh``, which minimizes the expected KL;
* ``target(x) = N(rho x, sigma^2 (1 - rho^2) I_n)``, the channel's law given ``x`` -- narrower than the
  prior, so the density ratio is bounded (exact coders such as PFR apply);
* ``reconstruct(z) = z``.

Per coordinate ``KL[Q || P] = R + rho^2 (x^2 / sigma^2 - 1) / (2 ln 2)`` bits, whose mean over ``x`` is
``I(X; Xh) = R`` (:meth:`GaussianChannel.kl_statistics`, the shared statistics for block plans), and
``D_inf[Q || P] = R + x^2 / (2 sigma^2 ln 2)`` bits: the search cost of exact REC grows by about
0.72 bits per coordinate on top of the KL, whatever the rate.  Any exact coder returns ``Xh`` with exactly
the channel's law, so ``Xh ~ N(0, sigma^2 I_n)`` (perfect realism) and ``E|X - Xh|^2 / n = 2 sigma^2 (1 - rho)``::

    channel = GaussianChannel(dim=256, rate_bits=1.0)
    plan = jaxrec.plan_blocks(channel.kl_statistics(), budget_bits=8.0, key=0)
    report = jaxrec.codec.compress_report(channel, xs, key=0, coder=jaxrec.pfr(), plan=plan)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.core.distributions import DiagGaussian
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.models.realism._bounds import channel_correlation, channel_noise_scale

Array = jax.Array

__all__ = ["GaussianChannel"]


class GaussianChannel:
    """Codec of ``Xh = rho X + sigma sqrt(1 - rho^2) Z`` for items ``x`` of shape ``(dim,)`` (float32).

    Args:
      dim: ``n``, the coordinates of one item (the codec's latent size).
      rate_bits: ``R``, the channel's mutual information per coordinate (``rho`` follows from it).
      sigma: the source's standard deviation.
    """

    def __init__(self, dim: int, rate_bits: float, sigma: float = 1.0):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise InvalidArgumentError(f"dim must be a positive int, got {dim!r}")
        if not (isinstance(rate_bits, (int, float)) and math.isfinite(rate_bits) and rate_bits > 0):
            raise InvalidArgumentError(f"rate_bits must be a finite float > 0, got {rate_bits!r}")
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise InvalidArgumentError(f"sigma must be a finite float > 0, got {sigma!r}")
        self.dim = dim
        self.rate_bits = float(rate_bits)
        self.sigma = float(sigma)
        self.rho = float(channel_correlation(rate_bits))
        self.noise_scale = float(channel_noise_scale(rate_bits, sigma))

    def __repr__(self) -> str:
        return f"GaussianChannel(dim={self.dim}, rate_bits={self.rate_bits}, sigma={self.sigma}, rho={self.rho:.6f})"

    # -- codec protocol -------------------------------------------------------------------------

    def prior(self) -> DiagGaussian:
        """``N(0, sigma^2 I_n)``, float32."""
        return DiagGaussian(jnp.zeros(self.dim), jnp.full(self.dim, self.sigma))

    def target(self, x: Array) -> DiagGaussian:
        """``N(rho x, sigma^2 (1 - rho^2) I_n)`` for one item ``x`` of shape ``(n,)``."""
        x = jnp.asarray(x, jnp.float32)
        if x.shape != (self.dim,):
            raise InvalidArgumentError(f"an item must have shape ({self.dim},), got {x.shape}")
        return DiagGaussian(self.rho * x, jnp.full(self.dim, self.noise_scale))

    def reconstruct(self, z: Array) -> Array:
        """``Xh = z``: the latent is the reconstruction."""
        return z

    # -- shared statistics ----------------------------------------------------------------------

    def kl_statistics(self) -> np.ndarray:
        """``(n,)`` expected ``KL[Q || P]`` per coordinate in bits, ``= R`` (for :func:`jaxrec.plan_blocks`)."""
        return np.full(self.dim, self.rate_bits)

    def sample_source(self, key: Array, num_items: int) -> Array:
        """``(num_items, n)`` draws of ``X ~ N(0, sigma^2 I_n)``, float32."""
        return self.sigma * jax.random.normal(key, (num_items, self.dim), jnp.float32)
