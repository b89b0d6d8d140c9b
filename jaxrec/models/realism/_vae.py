"""A lossy codec over the MNIST VAE: only the latent is sent; the decoder returns a sample of ``p(x|z)``
(realism) or its mean (MSE).

The encoder sends ``z ~ q(z|x)`` with REC, exactly (PFR, SP-PFR) or approximately (ORC); no pixel
stream follows.  If the VAE were exact (``q(z|x) = p(z|x)`` and ``p(x) = p_data(x)``), the sampling
decoder ``x_hat ~ p(x|z)`` would be a posterior sample of ``x`` given the message, so
``x_hat ~ p_data`` (perfect realism) at a distortion twice the MMSE -- the image analogue of the
Gaussian channel (Blau & Michaeli, ICML 2019, Thm. 2; Theis, Salimans, Hoffman & Mentzer, "Lossy
compression with Gaussian diffusion", 2022, Sec. 2).  The mean decoder ``E[x|z]`` is the MSE-oriented
variant (blurry, not realistic).  The rate is set by the VAE's latent size or ``beta``.

:class:`LossyVAE` wraps a trained :class:`jaxrec.models.vae.VAE` in the codec protocol
(:mod:`jaxrec.codec.protocol`): ``prior`` and ``target`` are the VAE's; ``reconstruct(z)`` is

* ``decoder="mean"``: ``255 alpha / (alpha + beta)`` per pixel (:meth:`VAE.reconstruct`);
* ``decoder="sample"``: ``x_i ~ BetaBinomial(255, alpha_i(z), beta_i(z))`` independently per pixel
  (``p ~ Beta(alpha, beta)``, ``x ~ Binomial(255, p)``), drawn with the key :func:`latent_key`
  derives from the codec's ``seed`` and the bits of ``z``.  Both sides know ``z`` bit for bit, so
  this randomness is *shared*: the encoder knows the decoder's ``x_hat``.  (Across backends ``z`` can
  differ in its last ulp, see the README's portability notes; the sample is then a different, equally
  valid draw.)

Both return float32 images of ``image_shape`` with values in ``[0, 255]`` (integers for ``"sample"``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from jaxrec.core.distributions import DiagGaussian
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.models.vae import NUM_LEVELS, VAE

Array = jax.Array

__all__ = ["RECONSTRUCTIONS", "LossyVAE", "latent_key", "sample_likelihood"]

RECONSTRUCTIONS = ("sample", "mean")


def latent_key(seed: int, z: Array) -> Array:
    """A threefry key from ``seed`` and the float32 bits of ``z`` ``(L,)``: ``fold_in`` of every word in turn."""
    words = lax.bitcast_convert_type(jnp.asarray(z, jnp.float32), jnp.uint32)
    key, _ = lax.scan(lambda k, w: (jax.random.fold_in(k, w), None), jax.random.key(seed, impl="threefry2x32"), words)
    return key


def sample_likelihood(model: VAE, key: Array, z: Array) -> Array:
    """One draw of ``x ~ p(x|z)`` (beta-binomial per pixel) for ``z`` ``(L,)``: float32 ``image_shape``."""
    log2_a, log2_b = model.likelihood_params(z)
    beta_key, binomial_key = jax.random.split(key)
    p = jax.random.beta(beta_key, jnp.exp2(log2_a), jnp.exp2(log2_b))
    x = jax.random.binomial(binomial_key, jnp.float32(NUM_LEVELS - 1), p)
    return x.astype(jnp.float32).reshape(model.config.image_shape)


class LossyVAE(nnx.Module):
    """The lossy codec of the module docstring.

    Args:
      vae: a trained :class:`jaxrec.models.vae.VAE`.
      reconstruction: ``"sample"`` (realism) or ``"mean"`` (MSE).
      seed: the shared seed of the sampling decoder (side information, like the weights).
    """

    def __init__(self, vae: VAE, *, reconstruction: str = "sample", seed: int = 0):
        if not isinstance(vae, VAE):
            raise InvalidArgumentError(f"vae must be a jaxrec.models.vae.VAE, got {type(vae).__name__}")
        if reconstruction not in RECONSTRUCTIONS:
            raise InvalidArgumentError(f"reconstruction must be one of {RECONSTRUCTIONS}, got {reconstruction!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise InvalidArgumentError(f"seed must be an int in [0, 2**32), got {seed!r}")
        self.vae = vae
        self.reconstruction = reconstruction
        self.seed = seed

    @property
    def item_shape(self) -> tuple[int, ...]:
        """The shape of one image."""
        return self.vae.config.image_shape

    @property
    def num_pixels(self) -> int:
        return math.prod(self.item_shape)

    def prior(self) -> DiagGaussian:
        """The VAE's ``N(0, I_L)``."""
        return self.vae.prior()

    def target(self, x: Array) -> DiagGaussian:
        """The VAE's posterior ``q(z|x)`` for one image."""
        return self.vae.target(x)

    def reconstruct(self, z: Array) -> Array:
        """A sample of ``p(x|z)`` keyed by ``(seed, z)``, or the likelihood's mean: float32 ``image_shape``."""
        if self.reconstruction == "mean":
            return self.vae.reconstruct(z)
        return sample_likelihood(self.vae, latent_key(self.seed, z), z)
