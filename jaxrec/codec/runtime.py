"""The codec runtime: calling codec methods, block keys, and the jitted (sharded) block coders.

**Compile once.** Every compiled function here is cached on its static configuration: the block
coders on ``(coder spec, partitioned, devices)`` (a space-partitioning coder given as
``functools.partial(factory, **kwargs)`` is keyed on the factory and its arguments, so a new
``partial`` with the same arguments hits the cache), the codec's methods on the codec (its graph
and array shapes for an array pytree such as a Flax NNX module; its identity for any other
hashable object, which is then treated as a constant); ``jax.jit`` then compiles once per argument
shapes. A second ``compress*`` or ``decompress*`` call with the same codec, coder, plan, devices and
item count neither retraces nor recompiles.

**Sharding.** :func:`run_sharded` splits the items (or independent block problems) over the local
devices (``jax.shard_map`` over a 1-D ``Mesh``, items padded to a multiple of the device count):
each device runs its own search loop, with no cross-device synchronisation inside it.

**Portability.** The decoder makes no discrete decision from floats it computes itself: the coder
and the entropy models come from header values (integers, and floats stored bit-exactly), block
keys from the header's key words through integer ``fold_in``, bin alphabets from the plan's
integers, and the latent dtype the encoder used is recorded and imposed on the decoder's prior (an
x64 decoder still regenerates float32 candidates). A candidate is ``loc + scale * normal(bits)``
with threefry bits that are identical on every backend (Salmon et al., SC 2011); ``normal``'s
``erfinv`` may differ in the last ulp between backends, which moves ``z`` by an ulp, never the
choice of index.

**Multi-host.** Under ``jax.distributed``, each process compresses its own items on its local
devices, passing ``first_item`` = the global number of its first item; every item then has the
keys it would have had in a single-process run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
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



LIKELIHOOD_BATCH = 32
"""Items per evaluation of ``codec.likelihood`` (see :func:`likelihood_batch`)."""
RECONSTRUCT_BATCH = 16
"""Items per evaluation of ``codec.reconstruct`` (see :func:`reconstruct_batches`)."""

_UNTRACEABLE: set[tuple[type, str]] = set()  # (codec type, method) whose method runs host code


def _is_array_tree(obj: Any) -> bool:
    return all(isinstance(leaf, (jax.Array, np.ndarray, np.generic)) for leaf in jax.tree.leaves(obj))


def _is_hashable(obj: Any) -> bool:
    try:
        hash(obj)
    except TypeError:
        return False
    return True


@functools.partial(jax.jit, static_argnames=("method",))
def _jit_vmap_method(codec: Any, method: str, *args: Any) -> Any:
    return jax.vmap(getattr(codec, method))(*args)


@functools.partial(jax.jit, static_argnames=("codec", "method"))
def _jit_vmap_constant(codec: Any, method: str, *args: Any) -> Any:
    return jax.vmap(getattr(codec, method))(*args)


def vmap_call(codec: Any, method: str, *args: Any) -> Any:
    """``vmap(codec.method)(*args)`` over the items (leading axis of every argument), jitted: with
    the codec as an argument when it is an array pytree, as a static (constant) argument when it is
    another hashable object, eagerly otherwise."""
    if _is_array_tree(codec):
        return _jit_vmap_method(codec, method, *args)
    if _is_hashable(codec):
        return _jit_vmap_constant(codec, method, *args)
    return jax.vmap(getattr(codec, method))(*args)


def likelihood_batch(codec: Any, z: np.ndarray) -> np.ndarray:
    """``codec.likelihood`` of the latents ``z`` ``[m, D]`` of one batch (``m <=``
    :data:`LIKELIHOOD_BATCH`), as numpy weights ``[m, *item_shape, K]``.

    Encoder and decoder cut a chunk into the same batches (:data:`LIKELIHOOD_BATCH` items from its
    first item) and this pads each to the next power of two by repeating its last latent, so the
    likelihood sees bit-identical inputs of identical shapes on both sides. A likelihood that cannot
    be traced (it runs host code on ``z``) is called eagerly, once per item."""
    z = np.asarray(z)
    untraceable = (type(codec), "likelihood")
    if untraceable not in _UNTRACEABLE:
        padded = z[np.minimum(np.arange(1 << (z.shape[0] - 1).bit_length()), z.shape[0] - 1)]
        try:
            return np.asarray(vmap_call(codec, "likelihood", jnp.asarray(padded)))[: z.shape[0]]
        except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
            _UNTRACEABLE.add(untraceable)
    return np.stack([np.asarray(codec.likelihood(jnp.asarray(row))) for row in z])


def reconstruct_batches(codec: Any, z: np.ndarray) -> np.ndarray:
    """``codec.reconstruct`` of every latent in ``z`` ``[n, D]``: ``(n, ...)`` numpy.

    Called on batches of exactly :data:`RECONSTRUCT_BATCH` latents (the last one padded by repeating
    its last latent): a float network's last bits can depend on the batch shape, so this keeps an
    item's reconstruction bit-identical whichever items are decoded with it (one item alone, a
    subset, the whole archive), at one compiled shape."""
    z = np.asarray(z)
    parts = []
    for start in range(0, z.shape[0], RECONSTRUCT_BATCH):
        part = z[start : start + RECONSTRUCT_BATCH]
        padded = part[np.minimum(np.arange(RECONSTRUCT_BATCH), part.shape[0] - 1)]
        parts.append(np.asarray(vmap_call(codec, "reconstruct", jnp.asarray(padded)))[: part.shape[0]])
    return np.concatenate(parts)


def require_methods(codec: Any, methods: Sequence[str], side: str) -> None:
    """Raises :class:`InvalidArgumentError` unless ``codec`` has every method in ``methods``."""
    for method in methods:
        if not callable(getattr(codec, method, None)):
            raise InvalidArgumentError(
                f"the {side} needs codec.{method}(); {type(codec).__name__} has none (see jaxrec.codec.protocol)"
            )


def codec_prior(codec: Any, dtype: str | None = None) -> Distribution:
    """``codec.prior()``, checked (a distribution of batch shape ``()``, float32 or float64), cast to ``dtype``."""
    require_methods(codec, ("prior",), "codec")
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


class _Partial(functools.partial):
    """A ``functools.partial`` equal to any partial of the same function and arguments (so that
    compiled block coders are cached across equal partials, not per object)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, functools.partial) and (self.func, self.args, self.keywords) == (
            other.func, other.args, other.keywords,
        )

    def __hash__(self) -> int:
        return hash((self.func, self.args, tuple(sorted(self.keywords.items()))))


def cache_key_callable(make: Callable[[Any], Coder]) -> Callable[[Any], Coder]:
    """``make`` itself, or for a ``functools.partial`` with hashable arguments an equal one that
    hashes by value."""
    if isinstance(make, functools.partial) and _is_hashable((make.func, make.args, tuple(make.keywords.items()))):
        return _Partial(make.func, *make.args, **make.keywords)
    return make


class BlockCoder(NamedTuple):
    """What the encoder runs per block: the header spec, and for partitioned coders optionally the
    user's ``partition -> Coder`` callable (else the registry factory; see :func:`cache_key_callable`)."""

    spec: CoderSpec
    make: Callable[[Any], Coder] | None = None

    def __call__(self, partition: Any) -> Coder:
        return self.make(partition) if self.make is not None else coder_from_spec(self.spec, partition)


@functools.lru_cache(maxsize=64)
def block_encoder(block_coder: BlockCoder, partitioned: bool, devices: tuple[Any, ...]) -> Callable:
    """``(key_data [N,B,2], targets [N,B,S], priors [B,S], partitions [B,...]) -> (Code [N,B,...], kl [N,B])``."""

    def encode_items(key_data: Array, targets: Distribution, priors: Distribution, partitions: Any) -> tuple:
        if partitioned:
            # per block (its own partition), the N items on refilling lanes; blocks one after the
            # other: under vmap the batched search's lane-width switch and stop tests would run
            # every branch for every block, 5x the work (measured: MNIST SP-PFR, 4 blocks)
            blocks_first = lambda tree: jax.tree.map(lambda a: jnp.moveaxis(a, 1, 0), tree)
            code = lax.map(
                lambda args: encode_batch(block_coder(args[3]), *args[:3]),
                (blocks_first(key_data), blocks_first(targets), priors, partitions),
            )
            code = jax.tree.map(lambda a: jnp.moveaxis(a, 0, 1), code)
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
