"""The codec protocol: what a model implements to be compressed with REC.

A codec is any object (a Flax NNX module is the intended case) with these methods, each for ONE
item; jaxrec vmaps ``target``, ``refine``, ``reconstruct`` and ``likelihood`` over items itself::

    class MyCodec(nnx.Module):
        def prior(self) -> Distribution:          # P over the flat latent: event size D, batch shape ()   (both sides)
        def target(self, x) -> Distribution:      # Q for item x: event size D, batch shape ()   (encoder)
        def reconstruct(self, z) -> Array:        # x_hat from a latent sample z: (D,) -> item   (decoder, lossy)
        # lossless codecs only:
        def likelihood(self, z) -> Array:         # p(x | z) as weights, (*x.shape, K)   (both sides)
        # progressive codecs only:
        def refine(self, x, target, z, fixed) -> Distribution:   # re-fit Q given coded blocks   (encoder)
        # optional:
        item_shape: tuple[int, ...]               # shape of one item, checked by compress
        latent_step: float                        # lossless: likelihood sees z only through rint(z / step)

* ``prior()`` is the coding distribution both sides share (N(0, I) for a VAE, the learned prior of
  COMBINER). It cannot depend on the item.
* ``target(x)`` is the posterior the encoder wants a sample of: amortized (a VAE's encoder) or
  fitted by optimization (an INR's weight posterior, trained with optax inside ``target``). It
  must be a pure JAX function of ``x`` (it is ``vmap``-ed over items); only the encoder calls it,
  so a decoder-side codec needs only ``prior`` and ``reconstruct`` (or ``likelihood``).
* ``reconstruct(z)`` is the decoder network, also ``vmap``-ed; only the decoder of a lossy codec
  calls it, and its output (shape and dtype) is what decompression returns.
* ``likelihood(z)`` makes the codec lossless (bits-back-free lossless coding with REC: Flamich,
  Havasi & Hernandez-Lobato, NeurIPS 2020). The items ``x`` are then integer arrays with values
  in ``[0, K)``, entropy-coded (constriction ``Categorical``, one row per element) under the
  weights: non-negative, finite, positive at ``x``, not necessarily normalized; decompression
  returns ``x`` exactly, in the dtype it was compressed from. It is called with the *decoded*
  latent ``z`` (the decoder's, not the encoder's float copy), vmapped and jitted over batches of at
  most 32 items that encoder and decoder cut alike (or eagerly, once per item, when it runs host
  code such as numpy). The encoder and the decoder must get bit-identical weights from the same
  ``z``: compute them with integers or fixed-order IEEE arithmetic (see
  :mod:`jaxrec.models.lossless`), not with a float network whose last bits depend on the backend.
* ``refine(x, target, z, fixed)`` makes the codec **progressive** (MIRACLE, Havasi et al., ICLR
  2019; COMBINER, Guo et al., NeurIPS 2023; RECOMBINER, He et al., ICLR 2024): the encoder codes
  the blocks of the plan in groups, and after each group asks the codec for an updated target of
  the coordinates not coded yet, given the ones already fixed. ``target`` is the item's current Q
  (event size ``D``), ``z`` the ``(D,)`` latent holding the *decoded* values of the coded
  coordinates (bit for bit what the decoder will see) and zeros elsewhere, ``fixed`` a ``bool[D]``
  mask of the coded coordinates. It returns Q over all ``D`` coordinates, of the target's type;
  only the coordinates not yet fixed are used. It runs on the encoder only, vmapped over items, and
  may run an optax loop. The decoder never calls it: every block is decoded from its own key and
  code, whatever the order in which the encoder coded them, so decompression of a progressive
  codec is the same as of any other.
* ``item_shape``, when present, makes :func:`~jaxrec.compress` refuse items of another shape with
  an error naming the expected one (a lossless codec's shape is otherwise read off ``likelihood``).
* ``latent_step`` (a power of two), when a lossless codec declares it, says that ``likelihood``
  depends on ``z`` only through ``rint(z / latent_step)`` (after any clipping): integer weights
  from a float ``z`` still differ between backends wherever the decoder's regenerated ``z`` differs
  from the encoder's in its last bits *across a rounding boundary* (XLA:GPU and XLA:CPU differ by
  1-3 ulps on about 7% of the coordinates).  The archive then carries **snap marks** (format
  version 4): the encoder marks every coordinate within ``max(16 ulp, 2^-20)`` of a boundary, and
  both sides move it a quarter step inside the encoder's cell before calling ``likelihood``
  (:func:`jaxrec.codec.sections.snap_marks`; about 0.03 bits per coordinate).  A lossless codec
  that quantizes ``z`` should declare it: without it, an archive encoded on one backend can fail
  to decode on another.

A VAE implements the first four methods; a Bayesian INR (COMBINER) implements ``prior``,
``target``, ``reconstruct`` and ``refine`` with ``z`` = its weights. The methods are jitted: a
codec that is a pytree with array leaves (Flax NNX modules are) is passed to ``jax.jit`` as an
argument; any other hashable object is a static argument, i.e. a constant cached by identity (do
not mutate it between calls); an unhashable one is called inside ``vmap`` without ``jit``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import jax

from jaxrec.core.distributions import Distribution

Array = jax.Array

__all__ = ["Codec", "LosslessCodec", "ProgressiveCodec"]


@runtime_checkable
class Codec(Protocol):
    """What a model implements to be compressed with REC (see the module docstring)."""

    def prior(self) -> Distribution:
        """The coding distribution P over the flat latent: event size ``D``, batch shape ``()``."""
        ...

    def target(self, x: Any) -> Distribution:
        """The target Q for one item ``x``: event size ``D``, batch shape ``()``; vmappable."""
        ...

    def reconstruct(self, z: Array) -> Array:
        """The reconstruction of one item from a latent sample ``z`` of shape ``(D,)``; vmappable."""
        ...


@runtime_checkable
class LosslessCodec(Codec, Protocol):
    """A codec whose items are integer arrays, entropy-coded given the latent."""

    def likelihood(self, z: Array) -> Array:
        """``p(x | z)`` for one item: weights ``(*x.shape, K)``, bit-identical on both sides."""
        ...


@runtime_checkable
class ProgressiveCodec(Codec, Protocol):
    """A codec whose encoder re-fits the not-yet-coded coordinates after each group of blocks."""

    def refine(self, x: Any, target: Distribution, z: Array, fixed: Array) -> Distribution:
        """Updated Q for one item given the coded coordinates.

        Args:
          x: the item.
          target: its current Q, event size ``D``, batch shape ``()``.
          z: ``(D,)``, the decoded values of the coded coordinates, zeros elsewhere.
          fixed: ``bool[D]``, True where a coordinate is coded.

        Returns:
          Q over all ``D`` coordinates (only the unfixed ones are used); vmappable.
        """
        ...
