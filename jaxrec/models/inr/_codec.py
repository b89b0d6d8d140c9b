"""The Bayesian INR as a progressive codec (COMBINER / RECOMBINER) for jaxrec's compress/decompress.

The latent ``z`` of an image is one sample ``h`` of its posterior over the INR latent (layout:
``_config``), sent block by block with REC under the learned prior (Guo et al., NeurIPS 2023;
He et al., ICLR 2024):

* ``prior()`` -- the learned factorized Gaussian ``p`` (shared side information);
* ``target(x)`` -- the posterior of image ``x``: from RECOMBINER's test-time initialization (the
  prior's mean, the training images' mean ``rho``) ``fit.steps`` Adam steps of the beta-ELBO with
  one beta per block, each kept in its KL band ``[kappa - 0.4, kappa]`` bits by the controller;
* ``refine(x, target, z, fixed)`` -- after some blocks are coded, ``refine.steps`` Adam steps on
  the remaining coordinates with the coded ones held at their decoded values (progressive
  fine-tuning); the blocks' betas restart at the trained beta and are adjusted at every step;
* ``reconstruct(z)`` -- one forward pass of the INR at ``z``, rounded to 8 bits: ``uint8 (H, W, C)``.

Items are ``uint8 (H, W, C)`` images. The KL bands are those of the blocks of one
:class:`~jaxrec.BlockPlan`, so a codec is bound to a plan (:meth:`InrCodec.bind`); decoding
(``prior`` and ``reconstruct``) does not depend on the binding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import jaxrec
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.models.inr._network import InrNetwork
from jaxrec.models.inr._posterior import (
    Band,
    FitSettings,
    Groups,
    capped_scale,
    fit_posterior,
    image_distortion,
    inverse_scale,
)

Array = jax.Array

__all__ = ["InrCodec", "groups_of_plan"]


def groups_of_plan(plan: jaxrec.BlockPlan) -> Groups:
    """The block of every latent coordinate of ``plan``."""
    index = np.empty(plan.dim, np.int32)
    index[plan.order] = np.repeat(np.arange(plan.num_blocks, dtype=np.int32), plan.sizes)
    return Groups(jnp.asarray(index), plan.num_blocks)


class InrCodec(nnx.Module):
    """The codec of the module docstring.

    Args:
      network: the INR with its learned shared parts.
      prior: the learned prior, event size ``D``.
      init_rho: ``(D,)``, the training images' mean posterior ``rho`` (test-time initialization).
      beta: the trained beta, every block's starting beta.
      groups: the block of each coordinate (use :meth:`bind`).
      band: the blocks' KL band.
      fit: settings of ``target``'s optimization.
      refine: settings of each ``refine`` round.
      seed: randomness of the reparameterized samples (encoder only).
    """

    def __init__(
        self,
        network: InrNetwork,
        prior: jaxrec.DiagGaussian,
        init_rho: Array,
        beta: float,
        groups: Groups,
        band: Band,
        fit: FitSettings,
        refine: FitSettings,
        seed: int = 0,
    ):
        dim = network.config.latent_size
        if prior.event_size != dim or prior.batch_shape != () or np.shape(init_rho) != (dim,):
            raise InvalidArgumentError(
                f"the prior and init_rho must cover the {dim} latents, got {prior!r} and shape {np.shape(init_rho)}"
            )
        if np.shape(groups.index) != (dim,):
            raise InvalidArgumentError(f"groups.index must have shape ({dim},), got {np.shape(groups.index)}")
        if not (np.isfinite(beta) and beta > 0):
            raise InvalidArgumentError(f"beta must be finite and > 0, got {beta!r}")
        self.network = network
        self.prior_loc = nnx.Variable(jnp.asarray(prior.loc, jnp.float32))
        self.prior_scale = nnx.Variable(jnp.asarray(prior.scale, jnp.float32))
        self.init_rho = nnx.Variable(jnp.asarray(init_rho, jnp.float32))
        self.beta = nnx.Variable(jnp.float32(beta))
        self.group_index = nnx.Variable(jnp.asarray(groups.index, jnp.int32))
        self.num_groups = int(groups.count)
        self.band = band
        self.fit_settings = fit
        self.refine_settings = refine
        self.seed = seed

    def bind(
        self,
        plan: jaxrec.BlockPlan,
        band: Band | None = None,
        fit: FitSettings | None = None,
        refine: FitSettings | None = None,
    ) -> InrCodec:
        """A copy whose KL bands are the blocks of ``plan``; ``band``, ``fit`` and ``refine``
        replace this codec's settings when given."""
        if plan.dim != self.network.config.latent_size:
            raise InvalidArgumentError(f"the plan covers {plan.dim} latents, the codec has {self.network.config.latent_size}")
        return InrCodec(
            self.network, self.prior(), self.init_rho.get_value(), float(self.beta.get_value()), groups_of_plan(plan),
            self.band if band is None else band,
            self.fit_settings if fit is None else fit,
            self.refine_settings if refine is None else refine,
            self.seed,
        )

    @property
    def groups(self) -> Groups:
        return Groups(self.group_index.get_value(), self.num_groups)

    @property
    def item_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one item (archives check items against it)."""
        return self.network.config.image_shape

    # -- codec protocol -------------------------------------------------------------------------------

    def prior(self) -> jaxrec.DiagGaussian:
        """The learned prior, float32, event size ``D``."""
        return jaxrec.DiagGaussian(self.prior_loc.get_value(), self.prior_scale.get_value())

    def target(self, x: Array) -> jaxrec.DiagGaussian:
        """The posterior of one uint8 image ``x`` ``(H, W, C)``, fitted with the per-block beta controller."""
        prior = self.prior()
        beta = jnp.full(self.num_groups, self.beta.get_value())
        loc, rho, _ = fit_posterior(
            image_distortion(self.network, _to_unit(x)), prior, prior.loc, self.init_rho.get_value(), beta,
            self.groups, self.band, self.fit_settings, jax.random.key(self.seed),
        )
        return jaxrec.DiagGaussian(loc, self._scale(rho, self.fit_settings))

    def refine(self, x: Array, target: jaxrec.DiagGaussian, z: Array, fixed: Array) -> jaxrec.DiagGaussian:
        """The posterior of the coordinates not yet coded, fine-tuned with the coded ones fixed at ``z``.

        Every free block restarts at the trained beta, adjusted at every step (the protocol does
        not carry the betas of the previous round; see :mod:`jaxrec.models.inr._posterior`).
        """
        prior = self.prior()
        key = jax.random.fold_in(jax.random.key(self.seed), jnp.sum(fixed, dtype=jnp.int32))
        beta = jnp.full(self.num_groups, self.beta.get_value())
        loc, rho, _ = fit_posterior(
            image_distortion(self.network, _to_unit(x)), prior, target.loc, inverse_scale(target.scale), beta,
            self.groups, self.band._replace(adjust_every=1), self.refine_settings, key, fixed, z,
        )
        scale = self._scale(rho, self.refine_settings)
        return jaxrec.DiagGaussian(jnp.where(fixed, z, loc), jnp.where(fixed, target.scale, scale))

    def reconstruct(self, z: Array) -> Array:
        """The decoded image: ``round(255 clip(render(z), 0, 1))`` as ``uint8 (H, W, C)``."""
        image = self.network.render(z)
        return jnp.round(jnp.clip(image, 0.0, 1.0) * 255.0).astype(jnp.uint8)

    # -- helpers --------------------------------------------------------------------------------------

    def _scale(self, rho: Array, settings: FitSettings) -> Array:
        return capped_scale(rho, self.prior_scale.get_value(), settings.max_scale_ratio)


def _to_unit(x: Array) -> Array:
    return jnp.asarray(x, jnp.float32) / 255.0
