"""Block plans: split a D-dimensional latent into blocks of bounded KL, as MIRACLE/COMBINER/RECOMBINER do.

A REC coder's work grows like ``2^{KL}`` (``2^{D_inf}`` for exact coders), so a large latent is cut
into blocks of about ``kappa`` bits each and every block is coded separately (MIRACLE: Havasi,
Peharz & Hernandez-Lobato, ICLR 2019; COMBINER: Guo et al., NeurIPS 2023;
RECOMBINER: He et al., ICLR 2024). The plan is *shared side information*: it is computed once from
statistics both sides know -- typically the mean KL per latent dimension over a training set,
``jaxrec.kl(targets, prior, per_dim=True).mean(0)`` -- and never from the item being coded.

:func:`plan_blocks` follows COMBINER's ``partition.py``:

1. shuffle the dimensions with a permutation drawn from a shared key
   (``jax.random.permutation``, threefry: integer work, identical on every backend);
2. walk them in that order and greedily fill blocks, starting a new block when adding the next
   dimension would push the block's KL past ``budget_bits`` or when the block already holds
   ``max_block_size`` dimensions. A single dimension above the budget gets a block of its own.

**Padding.** Blocks of a plan have different sizes, but all blocks of all items are encoded by one
``vmap``; so every block is padded to the largest size ``S``. A padded coordinate gets target ==
prior (both take the prior's parameters there), which contributes ``log r = 0`` exactly to every
candidate's log ratio, ``0`` to ``log ess sup r`` and ``0`` to the KL. Padding therefore works with
*any* coder without a mask argument, and since ``jax.random.normal(k, (S,))[:d] ==
jax.random.normal(k, (d,))`` (threefry, partitionable) a padded block even yields the same code as
the unpadded one. The price is candidate generation for ``S - d`` dead coordinates. It needs the
target and the prior to be of the same distribution type (for example both ``DiagGaussian``), which
every model codec satisfies; a mixed pair is accepted only when no block is padded.

**Partitions.** Space-partitioning coders (``sp_pfr``/``sp_orc``) need a partition per block.
:meth:`BlockPlan.with_partitions` calls a user function once per block with the block's latent
dimensions and stacks the results into a pytree with a leading axis of size ``num_blocks``; the
codec hands block ``b``'s slice to the coder factory inside the vmapped encode. Padded coordinates
must get a single interval.

Shapes: ``D`` latent size, ``B`` number of blocks, ``S`` largest block size.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.core import prng
from jaxrec.core.checks import (
    as_bool,
    as_callable,
    as_float,
    as_int,
    as_real_array,
    describe,
)
from jaxrec.core.distributions import Distribution
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array

__all__ = ["BlockPlan", "plan_blocks", "single_block"]


@dataclasses.dataclass(frozen=True, eq=False)
class BlockPlan:
    """A split of ``D`` latent dimensions into ``B`` blocks (build with :func:`plan_blocks`).

    Attributes:
      order: ``int32[D]``, a permutation of ``0..D-1``: block 0 holds dimensions
        ``order[:sizes[0]]``, block 1 the next ``sizes[1]``, and so on.
      sizes: ``int32[B]``, block sizes (each >= 1, summing to ``D``).
      budget_bits: the KL budget per block the plan was packed to, or ``None`` (no statistics).
        Index entropy models (the Zipf exponent of PFR) are derived from it.
      block_kl: ``float64[B]``, the plan statistics' KL of each block in bits, or ``None``.
      partitions: per-block partitions for space-partitioning coders (a pytree whose leaves have
        a leading axis ``B``), or ``None``.
    """

    order: np.ndarray
    sizes: np.ndarray
    budget_bits: float | None = None
    block_kl: np.ndarray | None = None
    partitions: Any = None

    def __post_init__(self) -> None:
        order = np.asarray(self.order)
        sizes = np.asarray(self.sizes)
        if order.ndim != 1 or not np.issubdtype(order.dtype, np.integer) or order.size == 0:
            raise InvalidArgumentError(f"order must be a non-empty 1-D integer array, got {order!r}")
        if not np.array_equal(np.sort(order), np.arange(order.size)):
            raise InvalidArgumentError(f"order must be a permutation of 0..{order.size - 1}")
        if sizes.ndim != 1 or not np.issubdtype(sizes.dtype, np.integer) or sizes.size == 0 or sizes.min() < 1:
            raise InvalidArgumentError(f"sizes must be a non-empty 1-D array of ints >= 1, got {sizes!r}")
        if int(sizes.sum()) != order.size:
            raise InvalidArgumentError(f"sizes sum to {int(sizes.sum())}, but order has {order.size} dimensions")
        if self.budget_bits is not None:
            object.__setattr__(self, "budget_bits", as_float("budget_bits", self.budget_bits, low=0, low_open=True))
        if self.block_kl is not None:
            block_kl = as_real_array("block_kl", self.block_kl)
            if block_kl.shape != sizes.shape:
                raise InvalidArgumentError(f"block_kl must have shape {sizes.shape}, got {block_kl.shape}")
            object.__setattr__(self, "block_kl", block_kl)
        object.__setattr__(self, "order", order.astype(np.int32))
        object.__setattr__(self, "sizes", sizes.astype(np.int32))

    @property
    def dim(self) -> int:
        """``D``, the latent size."""
        return int(self.order.size)

    @property
    def num_blocks(self) -> int:
        """``B``."""
        return int(self.sizes.size)

    @property
    def max_size(self) -> int:
        """``S``, the padded block size."""
        return int(self.sizes.max())

    @functools.cached_property
    def mask(self) -> np.ndarray:
        """``bool[B, S]``: True at real coordinates, False at padding."""
        return np.arange(self.max_size)[None, :] < self.sizes[:, None]

    @functools.cached_property
    def index(self) -> np.ndarray:
        """``int32[B, S]``: latent dimension of each block coordinate; padding repeats ``order[0]``."""
        index = np.full((self.num_blocks, self.max_size), self.order[0], np.int32)
        index[self.mask] = self.order
        return index

    def split(self, target: Distribution, prior: Distribution) -> tuple[Distribution, Distribution]:
        """Cuts a (target, prior) pair into padded blocks.

        Args:
          target: event size ``D``, any batch shape ``(...)`` (e.g. ``(N,)`` items).
          prior: event size ``D``, batch shape ``()``: one coding distribution for all items.

        Returns:
          ``(target_blocks, prior_blocks)`` with batch shapes ``(..., B)`` and ``(B,)`` and event
          size ``S``; at padded coordinates the target equals the prior.
        """
        _check_dist("target", target, self.dim)
        _check_dist("prior", prior, self.dim)
        if prior.batch_shape != ():
            raise InvalidArgumentError(f"prior must have batch shape (), got {prior.batch_shape}")
        padded = not bool(self.mask.all())
        if padded and type(target) is not type(prior):
            raise InvalidArgumentError(
                f"padding blocks needs target and prior of one type, got {type(target).__name__} "
                f"and {type(prior).__name__}; use a plan whose blocks all have one size"
            )
        return _split(self.index, self.mask, target, prior, padded)

    def merge(self, blocks: Array) -> Array:
        """Inverse of :meth:`split` for samples: ``(..., B, S) -> (..., D)`` (padding dropped)."""
        try:
            blocks = jnp.asarray(blocks)
        except (TypeError, ValueError):
            raise InvalidArgumentError(f"blocks must be a numeric array (..., B, S), got {describe(blocks)}") from None
        if blocks.shape[-2:] != self.mask.shape:
            raise InvalidArgumentError(f"blocks must end in shape {self.mask.shape}, got {blocks.shape}")
        return _merge(blocks, self.positions)

    @functools.cached_property
    def positions(self) -> np.ndarray:
        """``int32[D]``: flat position in the ``(B, S)`` block array of each latent dimension."""
        return np.flatnonzero(self.mask)[np.argsort(self.order)].astype(np.int32)

    def with_partitions(self, build: Callable[[np.ndarray, int], Any]) -> BlockPlan:
        """Returns a copy with per-block partitions for space-partitioning coders.

        Args:
          build: ``build(dims, size) -> partition``, called once per block with ``dims``
            (``int32[d]``, the block's latent dimensions in block order) and ``size = S``. It must
            return a pytree for an ``S``-dimensional block whose coordinates ``d..S-1`` are padding
            (give them one interval each), built only from shared information (prior, statistics).

        Returns:
          The plan with ``partitions`` = the blocks' pytrees stacked along a new leading axis.
        """
        as_callable("build", build)
        parts = [build(self.index[b, : self.sizes[b]], self.max_size) for b in range(self.num_blocks)]
        structures = {jax.tree.structure(part) for part in parts}
        if len(structures) != 1:
            raise InvalidArgumentError(
                f"the blocks' partitions must share one pytree structure (e.g. one max_intervals), got {structures}"
            )
        stacked = jax.tree.map(lambda *leaves: np.stack([np.asarray(leaf) for leaf in leaves]), *parts)
        return dataclasses.replace(self, partitions=stacked)

    @functools.cached_property
    def fingerprint(self) -> int:
        """CRC32 of the block layout and the partitions (written in file headers, checked on decode)."""
        crc = zlib.crc32(self.order.astype("<i4").tobytes())
        crc = zlib.crc32(self.sizes.astype("<i4").tobytes(), crc)
        for leaf in jax.tree.leaves(self.partitions):
            arr = np.asarray(leaf)
            crc = zlib.crc32(f"{arr.dtype.str}{arr.shape}".encode(), crc)
            crc = zlib.crc32(np.ascontiguousarray(arr).tobytes(), crc)
        return crc


@functools.partial(jax.jit, static_argnames="padded")
def _split(index: Array, mask: Array, target: Distribution, prior: Distribution, padded: bool) -> tuple:
    prior_blocks = jax.tree.map(lambda p: p[index], prior)
    if not padded:
        return jax.tree.map(lambda t: t[..., index], target), prior_blocks
    target_blocks = jax.tree.map(lambda t, p: jnp.where(mask, t[..., index], p), target, prior_blocks)
    return target_blocks, prior_blocks


@jax.jit
def _merge(blocks: Array, positions: Array) -> Array:
    return blocks.reshape(*blocks.shape[:-2], -1)[..., positions]


def _check_dist(name: str, dist: Any, dim: int) -> None:
    if not isinstance(dist, Distribution):
        raise InvalidArgumentError(f"{name} must be a jaxrec distribution, got {type(dist).__name__}")
    if dist.event_size != dim:
        raise InvalidArgumentError(f"{name} has event size {dist.event_size}, but the plan covers {dim} dimensions")


def single_block(dim: int) -> BlockPlan:
    """The trivial plan: all ``dim`` dimensions in one block, in their natural order."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise InvalidArgumentError(f"dim must be an int >= 1, got {dim!r}")
    return BlockPlan(order=np.arange(dim), sizes=np.array([dim]))


def plan_blocks(
    kl_per_dim: Any,
    budget_bits: float,
    *,
    key: Any = 0,
    max_block_size: int | None = None,
    shuffle: bool = True,
) -> BlockPlan:
    """Greedy block packing to a KL budget (as COMBINER's reference code does: Guo et al., NeurIPS 2023).

    Args:
      kl_per_dim: ``float[D]``, shared per-dimension KL statistics in bits (>= 0, finite), e.g. the
        mean posterior KL per latent over a training set.
      budget_bits: ``kappa``, the largest KL a block may collect (16 in COMBINER/RECOMBINER).
      key: seed or key of the shared shuffle.
      max_block_size: at most this many dimensions per block (COMBINER uses 25); ``None`` = no cap.
      shuffle: shuffle before packing (as the papers do); ``False`` keeps the natural order.

    Returns:
      A :class:`BlockPlan`; each block's statistics KL is ``<= budget_bits`` unless it is a single
      dimension whose own KL exceeds the budget.

    Raises:
      InvalidArgumentError: negative or non-finite KL, a bad budget or block size.
    """
    kl_dim = as_real_array("kl_per_dim", kl_per_dim, ndim=1, nonempty=True, finite=True, nonnegative=True)
    budget = as_float("budget_bits", budget_bits, low=0, low_open=True)
    dim = kl_dim.size
    cap = dim if max_block_size is None else as_int("max_block_size", max_block_size, low=1)
    if as_bool("shuffle", shuffle):
        order = np.asarray(jax.random.permutation(prng.as_key(key), dim), dtype=np.int64)
    else:
        order = np.arange(dim)
    sizes: list[int] = []
    block_kl: list[float] = []
    size, total = 0, 0.0
    for value in kl_dim[order].tolist():  # sequential float64 sums: the same on every machine
        if size and (size == cap or total + value > budget):
            sizes.append(size)
            block_kl.append(total)
            size, total = 0, 0.0
        size += 1
        total += value
    sizes.append(size)
    block_kl.append(total)
    return BlockPlan(order=order, sizes=np.array(sizes), budget_bits=budget, block_kl=np.array(block_kl))
