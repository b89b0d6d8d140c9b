"""The codec runtime: calling codec methods, block keys, and the jitted (sharded) block coders.

   :func:`jaxrec.search.search_batch`) over the ``N * B`` problems, or for space-partitioning
   coders a ``vmap`` over items and blocks with each block's partition. :func:`compress_batch`
   shards the items over the local devices (``jax.shard_map`` over a 1-D ``Mesh``, items padded to
   a multiple of the device count): each device runs its own search loop, with no cross-device
   synchronisation inside it.
3. The transmitted ``Code`` fields go through the coder's entropy models (:mod:`jaxrec.coding`),
   whose parameters are written into the header; a lossless codec adds the data section.
4. :mod:`jaxrec.container` writes the file (header, payload, CRC32).

:func:`decompress` reverses it: parse (FormatError on anything malformed), rebuild the coder from
the header through the coder registry, check the header against the codec and the plan, decode the
indices, ``vmap(coder.decode)`` over items and blocks, merge, then ``reconstruct`` (or decode the
data section).

**Portability.** The decoder makes no discrete decision from floats it computes itself: the coder
and the entropy models come from header values (integers, and floats stored bit-exactly), block
keys from the header's key words through integer ``fold_in``, bin alphabets from the plan's
integers, and the latent dtype the encoder used is recorded and imposed on the decoder's prior (an
x64 decoder still regenerates float32 candidates). A candidate is ``loc + scale * normal(bits)``
with threefry bits that are identical on every backend; ``normal``'s ``erfinv`` may differ in the
last ulp between backends, which moves ``z`` by an ulp, never the choice of index.

**Multi-host.** Under ``jax.distributed``, each process compresses its own items with
:func:`compress_batch` on its local devices, passing ``first_item`` = the global number of its
first item; every file then has the keys it would have had in a single-process run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrec.codec import container
from jaxrec.codec.blocks import BlockPlan, single_block
from jaxrec.coders.base import Coder, CoderSpec
from jaxrec.coders.registry import coder_from_spec
from jaxrec.coders.scan import encode_batch
from jaxrec.core import prng
from jaxrec.core.distributions import Distribution, kl
from jaxrec.core.errors import InvalidArgumentError

Array = jax.Array



def _is_array_tree(obj: Any) -> bool:
    return all(isinstance(leaf, (jax.Array, np.ndarray, np.generic)) for leaf in jax.tree.leaves(obj))


@functools.partial(jax.jit, static_argnames=("method",))
def _jit_vmap_method(codec: Any, method: str, *args: Any) -> Any:
    return jax.vmap(getattr(codec, method))(*args)


def vmap_call(codec: Any, method: str, *args: Any) -> Any:
    """``vmap(codec.method)(*args)`` over the items (leading axis of every argument), jitted with the
    codec as an argument when it is an array pytree."""
    if _is_array_tree(codec):
        return _jit_vmap_method(codec, method, *args)
    return jax.vmap(getattr(codec, method))(*args)


def codec_prior(codec: Any, dtype: str | None = None) -> Distribution:
    for method in ("prior", "target", "reconstruct"):
        if not callable(getattr(codec, method, None)):
            raise InvalidArgumentError(f"codec {type(codec).__name__} has no method {method}() (see jaxrec.codec)")
    prior = codec.prior()
    if not isinstance(prior, Distribution) or prior.batch_shape != ():
        raise InvalidArgumentError(
            f"codec.prior() must return a jaxrec distribution with batch shape (), got {prior!r}"
        )
    if dtype is not None:
        prior = jax.tree.map(lambda a: jnp.asarray(a, dtype), prior)
    if str(prior.dtype) not in container.DTYPES:
        raise InvalidArgumentError(f"the prior's dtype must be float32 or float64, got {prior.dtype}")
    return prior


def resolve_plan(plan: BlockPlan | None, dim: int) -> BlockPlan:
    plan = single_block(dim) if plan is None else plan
    if not isinstance(plan, BlockPlan):
        raise InvalidArgumentError(f"plan must be a BlockPlan or None, got {type(plan).__name__}")
    if plan.dim != dim:
        raise InvalidArgumentError(f"the plan covers {plan.dim} dimensions, the codec's latent has {dim}")
    return plan


# ------------------------------------------------------------------------------------------------
# The jitted block coders


@functools.partial(jax.jit, static_argnums=2)
def block_key_data(key_words: Array, items: Array, num_blocks: int) -> Array:
    """``uint32[N, B, 2]``: key data of ``fold_in(fold_in(key_i, item_i), block)`` from the
    files' key words ``uint32[N, 2]`` and item numbers ``uint32[N]`` (integer work only)."""
    blocks = jnp.arange(num_blocks, dtype=jnp.uint32)

    def item_keys(words: Array, item: Array) -> Array:
        item_key = prng.fold_in_index(prng.as_key(words), item)
        return jax.vmap(lambda b: jax.random.key_data(prng.fold_in_index(item_key, b)))(blocks)

    return jax.vmap(item_keys)(key_words, items)


def resolve_devices(devices: Sequence[Any] | None) -> tuple[Any, ...]:
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not devices:
        raise InvalidArgumentError("devices must name at least one device")
    return devices


def _distribute(fn: Callable, devices: tuple[Any, ...], sharded: int = 2) -> Callable:
    """``jit(fn)`` of four arguments; over several devices ``jit(shard_map(fn))`` with the first
    ``sharded`` arguments split along their leading (item or problem) axis, the others replicated."""
    if len(devices) == 1:
        return jax.jit(fn)
    mesh = Mesh(np.array(devices), ("items",))
    specs = tuple(PartitionSpec("items") if i < sharded else PartitionSpec() for i in range(4))
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec("items"), check_vma=False))


def _over_blocks(fn: Callable) -> Callable:
    """``fn(key, x, prior, partition)`` of one block, vmapped over items (prior and partition
    shared) and blocks (all four per block)."""
    return jax.vmap(jax.vmap(fn, in_axes=(0, 0, 0, 0)), in_axes=(0, 0, None, None))


class BlockCoder(NamedTuple):
    """What the encoder runs per block: the header spec, and for partitioned coders optionally the
    user's ``partition -> Coder`` callable (else the registry factory)."""

    spec: CoderSpec
    make: Callable[[Any], Coder] | None = None

    def __call__(self, partition: Any) -> Coder:
        return self.make(partition) if self.make is not None else coder_from_spec(self.spec, partition)


@functools.lru_cache(maxsize=64)
def block_encoder(block_coder: BlockCoder, partitioned: bool, devices: tuple[Any, ...]) -> Callable:
    """``(key_data [N,B,2], targets [N,B,S], priors [B,S], partitions [B,...]) -> (Code [N,B,...], kl [N,B])``."""

    def encode_items(key_data: Array, targets: Distribution, priors: Distribution, partitions: Any) -> tuple:
        if partitioned:
            code = _over_blocks(lambda k, t, p, part: block_coder(part).encode(k, t, p))(
                key_data, targets, priors, partitions
            )
        else:  # N * B independent problems on refilling lanes (same codes as vmap(encode))
            n, b = key_data.shape[:2]
            flat = lambda tree: jax.tree.map(lambda a: a.reshape((n * b,) + a.shape[2:]), tree)
            problem_priors = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape), priors)
            code = encode_batch(block_coder(None), flat(key_data), flat(targets), flat(problem_priors))
            code = jax.tree.map(lambda a: a.reshape((n, b) + a.shape[1:]), code)
        return code, kl(targets, priors)

    return _distribute(encode_items, devices)


@functools.lru_cache(maxsize=64)
def block_decoder(spec: CoderSpec, devices: tuple[Any, ...]) -> Callable:
    """``(key_data [N,B,2], code [N,B,...], priors [B,S], partitions [B,...]) -> z blocks [N,B,S]``."""
    return _distribute(_over_blocks(lambda k, c, p, part: coder_from_spec(spec, part).decode(k, c, p)), devices)


@functools.lru_cache(maxsize=64)
def problem_encoder(block_coder: BlockCoder, partitioned: bool, devices: tuple[Any, ...]) -> Callable:
    """``(key_data [M,2], targets [M,S], priors [M,S], partitions [M,...]) -> (code [M,...], kl [M])``:
    ``M`` independent block problems, each with its own prior and partition (progressive coding
    codes a different set of blocks for every item), all four arguments sharded."""

    def encode_problems(key_data: Array, targets: Distribution, priors: Distribution, partitions: Any) -> tuple:
        if partitioned:
            code = jax.vmap(lambda k, t, p, part: block_coder(part).encode(k, t, p))(
                key_data, targets, priors, partitions
            )
        else:
            code = encode_batch(block_coder(None), key_data, targets, priors)
        return code, kl(targets, priors)

    return _distribute(encode_problems, devices, sharded=4)


@functools.lru_cache(maxsize=64)
def problem_decoder(spec: CoderSpec, devices: tuple[Any, ...]) -> Callable:
    """``(key_data [M,2], code [M,...], priors [M,S], partitions [M,...]) -> z [M,S]``, all sharded."""
    decode = jax.vmap(lambda k, c, p, part: coder_from_spec(spec, part).decode(k, c, p))
    return _distribute(decode, devices, sharded=4)


def _pad_items(tree: Any, n: int, multiple: int) -> Any:
    """Pads the leading axis to a multiple of ``multiple`` by repeating the last item."""
    extra = -n % multiple
    if not extra:
        return tree
    index = np.minimum(np.arange(n + extra), n - 1)
    return jax.tree.map(lambda a: jnp.asarray(a)[index], tree)


def run_sharded(fn: Callable, devices: tuple[Any, ...], sharded: tuple, replicated: tuple, n: int) -> Any:
    """Calls a :func:`_distribute` function on ``n`` items or problems (padded to a multiple of the
    device count, sharded or placed on the one device); returns numpy leaves ``[n, ...]``."""
    sharded = _pad_items(sharded, n, len(devices))
    if len(devices) > 1:
        mesh = Mesh(np.array(devices), ("items",))
        sharded = jax.device_put(sharded, NamedSharding(mesh, PartitionSpec("items")))
        replicated = jax.device_put(replicated, NamedSharding(mesh, PartitionSpec()))
    else:
        sharded, replicated = jax.device_put((sharded, replicated), devices[0])
    return jax.tree.map(lambda a: np.asarray(a)[:n], fn(*sharded, *replicated))


def code_template(spec: CoderSpec, prior_blocks: Distribution, partitions: Any) -> Any:
    """One block's ``Code`` as ShapeDtypeStructs, cached per (spec, shapes): no search is run."""

    def signature(tree: Any) -> tuple:
        leaves, treedef = jax.tree.flatten(tree)
        return treedef, tuple((leaf.shape[1:], str(leaf.dtype)) for leaf in leaves)

    return _template_for(spec, signature(prior_blocks), signature(partitions))


@functools.lru_cache(maxsize=64)
def _template_for(spec: CoderSpec, prior_signature: tuple, partition_signature: tuple) -> Any:
    abstract = lambda sig: jax.tree.unflatten(sig[0], [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in sig[1]])
    return jax.eval_shape(
        lambda p, part: coder_from_spec(spec, part).encode(jnp.zeros(2, jnp.uint32), p, p),  # Q = P: valid, cheap
        abstract(prior_signature),
        abstract(partition_signature),
    )
