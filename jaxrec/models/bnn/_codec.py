"""MIRACLE as a progressive codec: the latent is the network's weight variables.

The codec protocol (:mod:`jaxrec.codec.protocol`) with the item a dummy index (one network per
file) and the latent ``z`` the ``D`` variables of a :class:`~jaxrec.models.bnn.BayesianNetwork`:

* ``prior()`` -- the coding prior ``N(0, sigma_l^2)`` with the learned per-tensor scales (shared
  side information, stored next to the REC container by :mod:`jaxrec.models.bnn._bundle`);
* ``target(x)`` -- the trained posterior ``q`` (any ``x``);
* ``reconstruct(z)`` -- ``z`` itself: the decoded variables, from which the network is rebuilt;
* ``refine(x, target, z, fixed)`` -- MIRACLE's retraining (Havasi, Peharz & Hernandez-Lobato,
  ICLR 2019): after some blocks are sent, the variables not yet sent are trained for
  ``retrain_steps`` Adam steps with the sent ones held at their decoded values ``z``.

``refine`` starts from the given ``q`` (inverted into ``(loc, spread)`` by
:meth:`~jaxrec.models.bnn.BayesianNetwork.params_from`), with a fresh Adam state and, for Mean-Var,
the network's trained KL penalties, adapted by ``penalty_step`` on the blocks not yet sent (MIRACLE
uses 1.0005 while compressing). The prior scales stay fixed: the decoder already has them.
Minibatches and weight samples come from ``fold_in(fold_in(key(seed), #fixed), step)``, so the
encoder is deterministic. Coordinates already sent keep the given ``q`` in the result: retraining
never moves them (their values are ``z`` throughout). Blocks are sent whole, so a block's KL
shares (Mean-KL) or penalty (Mean-Var) are never split between sent and unsent variables.

The training data the retraining needs lives on the codec (``images``, ``labels``). A codec without
data (the decoder's, built by :func:`~jaxrec.models.bnn.load_bundle`), or with ``retrain_steps=0``,
does not retrain: its ``refine`` returns ``target``, so encoding with it sends the trained posterior's
samples block by block, MIRACLE without retraining.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxrec.codec import BlockPlan
from jaxrec.core.distributions import DiagGaussian
from jaxrec.core.errors import InvalidArgumentError
from jaxrec.models.bnn._network import BayesianNetwork
from jaxrec.models.bnn._train import minibatch, updated_penalty, variational_loss

Array = jax.Array

__all__ = ["MiracleCodec"]

class MiracleCodec(nnx.Module):
    """A trained :class:`BayesianNetwork` as a progressive codec (see the module docstring).

    Args:
      network: the network (its posterior is the target, its prior the coding distribution).
      images, labels: the training data for :meth:`refine` (uint8 ``(N, H, W[, C])``, ints
        ``(N,)``), or None for a decode-only codec.
      retrain_steps: Adam steps per :meth:`refine` call (MIRACLE: 100 per block for LeNet-5).
      batch_size, learning_rate: of the retraining.
      penalty_step: ``gamma`` of the Mean-Var penalty during retraining.
      seed: seed of the retraining's minibatches and weight samples.
    """

    def __init__(
        self,
        network: BayesianNetwork,
        images: Any = None,
        labels: Any = None,
        *,
        retrain_steps: int = 100,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        penalty_step: float = 1.0005,
        seed: int = 0,
    ):
        if (images is None) != (labels is None):
            raise InvalidArgumentError("give both images and labels (for refine) or neither (decode only)")
        for name, value, low in (("retrain_steps", retrain_steps, 0), ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidArgumentError(f"{name} must be an int >= {low}, got {value!r}")
        self.network = network
        self.images = None if images is None else jnp.asarray(images, jnp.uint8)
        self.labels = None if labels is None else jnp.asarray(labels, jnp.int32)
        if self.images is not None and self.labels.shape != self.images.shape[:1]:
            raise InvalidArgumentError(f"labels must have shape ({self.images.shape[0]},), got {self.labels.shape}")
        self.retrain_steps = retrain_steps
        self.batch_size = batch_size
        self.learning_rate = float(learning_rate)
        self.penalty_step = float(penalty_step)
        self.seed = int(seed)

    @property
    def plan(self) -> BlockPlan:
        """The block plan both sides share (from the network's config)."""
        return self.network.plan

    # -- codec protocol ---------------------------------------------------------------------------

    def prior(self) -> DiagGaussian:
        """``N(0, sigma_l^2)`` over the ``D`` variables."""
        return self.network.prior()

    def target(self, x: Any) -> DiagGaussian:
        """The trained posterior ``q`` (the item ``x`` is a dummy index)."""
        return self.network.posterior()

    def reconstruct(self, z: Array) -> Array:
        """The decoded variables ``z`` ``(D,)`` themselves; ``network.logits(z, images)`` classifies."""
        return z

    def refine(self, x: Any, target: DiagGaussian, z: Array, fixed: Array) -> DiagGaussian:
        """Retrains the unsent variables with the sent ones at ``z`` (see the module docstring).

        Args:
          x: the item (ignored: one network per file).
          target: the current ``q`` over the ``D`` variables.
          z: ``(D,)``, decoded values of the sent variables, zeros elsewhere.
          fixed: ``bool[D]``, True where a variable was sent.

        Returns:
          The retrained ``q``; equal to ``target`` where ``fixed`` (everywhere without training data).
        """
        if self.images is None or self.retrain_steps == 0:
            return target
        net = self.network
        prior = net.prior()
        params = net.params_from(target, prior)
        block_free = ~fixed[net.block_index.get_value()[:, 0]]
        optimizer = optax.adam(self.learning_rate)
        key = jax.random.fold_in(jax.random.key(self.seed), jnp.sum(fixed, dtype=jnp.int32))

        def loss_fn(params: tuple[Array, Array], penalty: Array, key: Array) -> tuple[Array, tuple[Array, Array]]:
            q = net.posterior_from(*params, prior)
            x, y = minibatch(self.images, self.labels, jax.random.fold_in(key, 0), self.batch_size)
            w = jnp.where(fixed, z, q.sample(jax.random.fold_in(key, 1)))
            return variational_loss(net, q, prior, w, x, y, penalty, block_free)

        def step(i: Array, carry: tuple) -> tuple:
            params, opt_state, penalty = carry
            grads, (_, block_kl) = jax.grad(loss_fn, has_aux=True)(params, penalty, jax.random.fold_in(key, i))
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return params, opt_state, updated_penalty(net, penalty, block_kl, self.penalty_step, block_free)

        carry = (params, optimizer.init(params), net.kl_penalty.get_value())
        params, _, _ = jax.lax.fori_loop(0, self.retrain_steps, step, carry)
        q = net.posterior_from(*params, prior)
        return DiagGaussian(jnp.where(fixed, target.loc, q.loc), jnp.where(fixed, target.scale, q.scale))
