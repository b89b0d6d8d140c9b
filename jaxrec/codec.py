"""Codecs: the small protocol a model implements, and compress / decompress through REC and bytes.

The protocol
============

A codec is any object (a Flax NNX module is the intended case) with these methods, each for ONE
item; jaxrec vmaps ``target`` and ``reconstruct`` over items itself::

    class MyCodec(nnx.Module):
        def prior(self) -> Distribution:          # P over the flat latent: event size D, batch shape ()
        def target(self, x) -> Distribution:      # Q for item x: event size D, batch shape ()
        def reconstruct(self, z) -> Array:        # x_hat from a latent sample z: (D,) -> item shape
        # lossless codecs only:
        def likelihood(self, z) -> Array:         # p(x | z) as weights, (*x.shape, K)

* ``prior()`` is the coding distribution both sides share (N(0, I) for a VAE, the learned prior of
  COMBINER). It cannot depend on the item.
* ``target(x)`` is the posterior the encoder wants a sample of: amortized (a VAE's encoder) or
  fitted by optimization (an INR's weight posterior, trained with optax inside ``target``). It
  must be a pure JAX function of ``x`` (it is ``vmap``-ed over items); only the encoder calls it.
* ``reconstruct(z)`` is the decoder network, also ``vmap``-ed; only the decoder calls it.
* ``likelihood(z)`` makes the codec lossless. The items ``x`` are then integer arrays with values
  in ``[0, K)``, entropy-coded (constriction ``Categorical``, one row per element) under the
  weights: non-negative, finite, positive at ``x``, not necessarily normalized. It is called
  eagerly, once per item, with the *decoded* latent ``z`` (the decoder's, not the encoder's
  float copy), and may run host code (numpy). The encoder and the decoder must get bit-identical
  weights from the same ``z``: compute them with integers or fixed-order IEEE arithmetic (see
  :mod:`jaxrec.lossless`), not with a float network whose last bits depend on batch size or
  backend. :func:`decompress` then returns ``x`` exactly.

A VAE implements all four methods; a Bayesian INR (COMBINER) implements the first three with ``z`` =
its weights. Codecs that are pytrees with array leaves (Flax NNX modules are) are passed to
``jax.jit`` as arguments; other objects are called inside ``vmap`` without ``jit``.

Compression
===========

``compress(codec, x, key=..., coder=jaxrec.pfr(), plan=plan) -> bytes``:

1. ``Q = codec.target(x)``, ``P = codec.prior()``; the block plan (:mod:`jaxrec.blocks`) cuts both
   into ``B`` blocks padded to one size.
2. Block ``b`` of item ``i`` uses the key ``fold_in(fold_in(key, i), b)``. One jitted call encodes
   all blocks of all items: the coder's ``encode_batch`` (refilling lanes,
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

Coder registry
==============

The header names the coder (``CoderSpec.name``) and stores its static parameters;
:func:`register_coder` maps a name to its factory, the parameter names, the ``Code`` fields it
transmits and their entropy models. ``pfr``, ``orc``, ``mrc``, ``sp_pfr`` and ``sp_orc`` are
registered here. Space-partitioning coders are ``partitioned``: the decoder builds block ``b``'s
coder from ``plan.partitions[b]``. The encoder accepts such a coder as a ``Coder`` (rebuilt from
its spec with the factory's defaults for anything not in the spec, such as ``weights``) or as a
callable ``partition -> Coder`` such as ``functools.partial(jaxrec.sp_orc, num_samples=2**10,
weights="sup_ratio")`` (reuse one callable object: the compiled encoder is cached on it).
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import constriction
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxrec import container, prng
from jaxrec.blocks import BlockPlan, single_block
from jaxrec.coders import Coder, CoderSpec, mrc, orc, pfr
from jaxrec.coders.base import check_bounded_ratio
from jaxrec.coders.gprs import gprs
from jaxrec.coders.scan import encode_batch
from jaxrec.coders.sp_orc import sp_orc
from jaxrec.coders.sp_pfr import sp_pfr
from jaxrec.coding import (
    IndexModel,
    UniformModel,
    ZipfModel,
    decode_streams,
    encode_streams,
    ideal_bits,
    zipf_bits,
    zipf_exponent,
)
from jaxrec.container import PlanAlphabetModel
from jaxrec.distributions import Distribution, kl
from jaxrec.errors import FormatError, InvalidArgumentError

Array = jax.Array
FieldModel = IndexModel | PlanAlphabetModel

__all__ = [
    "Codec",
    "CoderEntry",
    "CompressReport",
    "LosslessCodec",
    "Rate",
    "coder_from_spec",
    "compress",
    "compress_batch",
    "compress_report",
    "decompress",
    "decompress_batch",
    "describe",
    "register_coder",
]


# ------------------------------------------------------------------------------------------------
# The protocol


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


# ------------------------------------------------------------------------------------------------
# Coder registry


class CoderEntry(NamedTuple):
    """How to rebuild a coder from a header and entropy-code its ``Code``.

    Attributes:
      factory: ``factory(**params) -> Coder``, or ``factory(partition, **params)`` when
        ``partitioned`` (called inside ``vmap`` with a traced partition).
      params: the names of the spec parameters stored in the header, in order; the factory must
        accept them as keywords. (A partitioned coder's spec may hold more, describing its
        partition; those come from the plan instead.)
      fields: the ``Code`` fields that are transmitted, in coding order.
      models: ``models(spec, budget_bits, plan) -> tuple[FieldModel, ...]``, one entropy model
        per field: an :mod:`jaxrec.coding` model (its parameters go into the header), or
        :class:`~jaxrec.container.PlanAlphabetModel` for a field whose alphabet sizes
        ``alphabet(plan, field)`` gives. ``budget_bits`` is the KL budget per block both sides
        know (the plan's, or the item's largest block KL rounded up).
      partitioned: the factory takes a per-block partition from ``BlockPlan.partitions``.
      check: optional ``check(target_blocks, prior_blocks)``, run outside ``jit`` before encoding;
        raises :class:`InvalidArgumentError` for what the coder cannot report from inside ``jit``.
      alphabet: ``alphabet(plan, field) -> int[B, ...]``, the alphabet size of every element of
        a :class:`PlanAlphabetModel` field (e.g. the partition counts ``J_d``).
    """

    factory: Callable[..., Coder]
    params: tuple[str, ...]
    fields: tuple[str, ...]
    models: Callable[[CoderSpec, float, BlockPlan], tuple[FieldModel, ...]]
    partitioned: bool = False
    check: Callable[[Distribution, Distribution], None] | None = None
    alphabet: Callable[[BlockPlan, str], np.ndarray] | None = None


_REGISTRY: dict[str, CoderEntry] = {}


def register_coder(
    name: str,
    factory: Callable[..., Coder],
    *,
    params: Sequence[str],
    models: Callable[[CoderSpec, float, BlockPlan], tuple[FieldModel, ...]],
    fields: Sequence[str] = ("index",),
    partitioned: bool = False,
    check: Callable[[Distribution, Distribution], None] | None = None,
    alphabet: Callable[[BlockPlan, str], np.ndarray] | None = None,
) -> None:
    """Makes coders named ``name`` usable by :func:`compress` and decodable from file headers.

    See :class:`CoderEntry` for the arguments. Registering a name again replaces its entry.
    """
    if not isinstance(name, str) or not name.isascii() or not 1 <= len(name) <= 64:
        raise InvalidArgumentError(f"coder name must be 1 to 64 ASCII characters, got {name!r}")
    if not fields:
        raise InvalidArgumentError("a coder must transmit at least one Code field")
    _REGISTRY[name] = CoderEntry(factory, tuple(params), tuple(fields), models, partitioned, check, alphabet)


def _zipf(budget_bits: float) -> ZipfModel:
    """Zipf model for a KL budget; alpha rounded to float32 (4 header bytes, read back exactly)."""
    alpha = np.float32(zipf_exponent(max(budget_bits, 0.0)))
    return ZipfModel(float(max(alpha, np.nextafter(np.float32(1.0), np.float32(2.0)))))


def _log2_num_bins(plan: BlockPlan) -> np.ndarray:
    """``log2 J`` of each block's partition, ``float64[B]``."""
    return np.log2(np.asarray(plan.partitions.num_intervals, np.float64)).sum(axis=-1)


def _pfr_models(spec: CoderSpec, budget_bits: float, plan: BlockPlan) -> tuple[FieldModel, ...]:
    return (_zipf(budget_bits),)


def _uniform_models(spec: CoderSpec, budget_bits: float, plan: BlockPlan) -> tuple[FieldModel, ...]:
    return (UniformModel(spec.kwargs["num_samples"]),)


def _sp_pfr_models(spec: CoderSpec, budget_bits: float, plan: BlockPlan) -> tuple[FieldModel, ...]:
    # The within-bin index costs about E log2(1 + r/J) <= (KL - log2 J)_+ + 1 bits.
    return PlanAlphabetModel(), _zipf(budget_bits - float(_log2_num_bins(plan).mean()))


def _sp_orc_models(spec: CoderSpec, budget_bits: float, plan: BlockPlan) -> tuple[FieldModel, ...]:
    return PlanAlphabetModel(), UniformModel(spec.kwargs["num_samples"])


def _partition_counts(plan: BlockPlan, field: str) -> np.ndarray:
    return np.asarray(plan.partitions.num_intervals)


register_coder("pfr", pfr, params=("chunk_size", "max_steps"), models=_pfr_models, check=check_bounded_ratio)
register_coder("orc", orc, params=("num_samples", "chunk_size"), models=_uniform_models)
# GPRS codes one-dimensional blocks (a plan with one latent dimension per block); its index is
# PFR-like (E log2(index + 1) <~ KL + 1), hence the same Zipf model.
register_coder(
    "gprs", gprs, params=("num_streams", "chunk_size", "max_steps"), models=_pfr_models, check=check_bounded_ratio
)
register_coder("mrc", mrc, params=("num_samples", "chunk_size"), models=_uniform_models)
register_coder(
    "sp_pfr", sp_pfr, params=("chunk_size", "max_steps", "table_size"), fields=("bin", "index"),
    models=_sp_pfr_models, partitioned=True, check=check_bounded_ratio, alphabet=_partition_counts,
)
register_coder(
    "sp_orc", sp_orc, params=("num_samples", "chunk_size"), fields=("bin", "index"),
    models=_sp_orc_models, partitioned=True, alphabet=_partition_counts,
)


def _lookup(name: str) -> CoderEntry:
    entry = _REGISTRY.get(name)
    if entry is None:
        raise InvalidArgumentError(f"coder {name!r} is not registered (known: {sorted(_REGISTRY)})")
    return entry


def coder_from_spec(spec: CoderSpec, partition: Any = None) -> Coder:
    """Rebuilds a registered coder from its header spec (and a block's partition if partitioned)."""
    entry = _lookup(spec.name)
    kwargs = {name: spec.kwargs[name] for name in entry.params}
    return entry.factory(partition, **kwargs) if entry.partitioned else entry.factory(**kwargs)


class _BlockCoder(NamedTuple):
    """What the encoder runs per block: the header spec, and for partitioned coders optionally the
    user's ``partition -> Coder`` callable (else the registry factory)."""

    spec: CoderSpec
    make: Callable[[Any], Coder] | None = None

    def __call__(self, partition: Any) -> Coder:
        return self.make(partition) if self.make is not None else coder_from_spec(self.spec, partition)


def _block_coder(coder: Any, plan: BlockPlan) -> tuple[_BlockCoder, CoderEntry]:
    """Resolves ``compress``'s ``coder`` argument into the header spec and the per-block coder."""
    make = None
    if isinstance(coder, (Coder, CoderSpec)):
        spec = coder.spec if isinstance(coder, Coder) else coder
    elif callable(coder):
        if plan.partitions is None:
            raise InvalidArgumentError("a callable coder (partition -> Coder) needs a plan with partitions")
        make = coder
        spec = coder(jax.tree.map(lambda leaf: leaf[0], plan.partitions)).spec
    else:
        raise InvalidArgumentError(
            f"coder must be a Coder, a CoderSpec or a partition -> Coder callable, got {coder!r}"
        )
    entry = _lookup(spec.name)
    given = dict(spec.params)
    missing = [name for name in entry.params if name not in given]
    extra = [name for name in given if name not in entry.params]
    if missing or (extra and not entry.partitioned):
        raise InvalidArgumentError(
            f"coder {spec.name!r} has parameters {tuple(given)}, the registry stores {entry.params}"
        )
    header_spec = CoderSpec(spec.name, tuple((name, given[name]) for name in entry.params))
    if entry.partitioned:
        if plan.partitions is None:
            raise InvalidArgumentError(f"coder {spec.name!r} needs per-block partitions: use plan.with_partitions(...)")
    elif entry.factory(**header_spec.kwargs).spec != spec:
        raise InvalidArgumentError(f"the registry's factory does not rebuild {spec}: no decoder could read the file")
    return _BlockCoder(header_spec, make), entry


# ------------------------------------------------------------------------------------------------
# Reports


class Rate(NamedTuple):
    """Ideal codelength and actual size of one file.

    Attributes:
      index_bits: ``sum -log2 p(symbol)`` of the transmitted ``Code`` fields under the file's
        entropy models, over all blocks.
      data_bits: ``-log2 p(x | z)`` under the codec's likelihood (0 for lossy codecs).
      header_bytes: bytes outside the payload: magic, header and CRC32.
      payload_bytes: bytes of the entropy-coded sections.
    """

    index_bits: float
    data_bits: float
    header_bytes: int
    payload_bytes: int

    @property
    def ideal_bits(self) -> float:
        return self.index_bits + self.data_bits

    @property
    def total_bytes(self) -> int:
        return self.header_bytes + self.payload_bytes


class CompressReport(NamedTuple):
    """Files plus diagnostics from :func:`compress_report` (``N`` items, ``B`` blocks).

    Attributes:
      files: ``N`` byte strings, one self-contained file per item.
      code: the coder's ``Code`` with numpy leaves of shape ``(N, B, ...)`` (``steps``,
        ``exhausted`` and the transmitted fields).
      block_kl: ``float[N, B]``, ``KL[Q||P]`` of each block in bits.
      rates: ``N`` :class:`Rate` records.
    """

    files: list[bytes]
    code: Any
    block_kl: np.ndarray
    rates: list[Rate]


# ------------------------------------------------------------------------------------------------
# Calling the codec


def _is_array_tree(obj: Any) -> bool:
    return all(isinstance(leaf, (jax.Array, np.ndarray, np.generic)) for leaf in jax.tree.leaves(obj))


@functools.partial(jax.jit, static_argnames=("method",))
def _jit_vmap_method(codec: Any, method: str, xs: Any) -> Any:
    return jax.vmap(getattr(codec, method))(xs)


def _vmap_call(codec: Any, method: str, xs: Any) -> Any:
    """``vmap(codec.method)(xs)``, jitted with the codec as an argument when it is an array pytree."""
    if _is_array_tree(codec):
        return _jit_vmap_method(codec, method, xs)
    return jax.vmap(getattr(codec, method))(xs)


def _prior(codec: Any, dtype: str | None = None) -> Distribution:
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


def _plan(plan: BlockPlan | None, dim: int) -> BlockPlan:
    plan = single_block(dim) if plan is None else plan
    if not isinstance(plan, BlockPlan):
        raise InvalidArgumentError(f"plan must be a BlockPlan or None, got {type(plan).__name__}")
    if plan.dim != dim:
        raise InvalidArgumentError(f"the plan covers {plan.dim} dimensions, the codec's latent has {dim}")
    return plan


# ------------------------------------------------------------------------------------------------
# The jitted block coders


@functools.partial(jax.jit, static_argnums=2)
def _block_key_data(key_words: Array, items: Array, num_blocks: int) -> Array:
    """``uint32[N, B, 2]``: key data of ``fold_in(fold_in(key_i, item_i), block)`` from the
    files' key words ``uint32[N, 2]`` and item numbers ``uint32[N]`` (integer work only)."""
    blocks = jnp.arange(num_blocks, dtype=jnp.uint32)

    def item_keys(words: Array, item: Array) -> Array:
        item_key = prng.fold_in_index(prng.as_key(words), item)
        return jax.vmap(lambda b: jax.random.key_data(prng.fold_in_index(item_key, b)))(blocks)

    return jax.vmap(item_keys)(key_words, items)


def _devices(devices: Sequence[Any] | None) -> tuple[Any, ...]:
    devices = tuple(jax.local_devices() if devices is None else devices)
    if not devices:
        raise InvalidArgumentError("devices must name at least one device")
    return devices


def _distribute(fn: Callable, devices: tuple[Any, ...]) -> Callable:
    """``jit(fn)``; over several devices ``jit(shard_map(fn))`` with the first two arguments split
    along their leading (item) axis and the other two replicated."""
    if len(devices) == 1:
        return jax.jit(fn)
    mesh = Mesh(np.array(devices), ("items",))
    specs = (PartitionSpec("items"), PartitionSpec("items"), PartitionSpec(), PartitionSpec())
    return jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec("items"), check_vma=False))


def _over_blocks(fn: Callable) -> Callable:
    """``fn(key, x, prior, partition)`` of one block, vmapped over items (prior and partition
    shared) and blocks (all four per block)."""
    return jax.vmap(jax.vmap(fn, in_axes=(0, 0, 0, 0)), in_axes=(0, 0, None, None))


@functools.lru_cache(maxsize=64)
def _encoder(block_coder: _BlockCoder, partitioned: bool, devices: tuple[Any, ...]) -> Callable:
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
def _decoder(spec: CoderSpec, devices: tuple[Any, ...]) -> Callable:
    """``(key_data [N,B,2], code [N,B,...], priors [B,S], partitions [B,...]) -> z blocks [N,B,S]``."""
    return _distribute(_over_blocks(lambda k, c, p, part: coder_from_spec(spec, part).decode(k, c, p)), devices)


def _pad_items(tree: Any, n: int, multiple: int) -> Any:
    """Pads the leading axis to a multiple of ``multiple`` by repeating the last item."""
    extra = -n % multiple
    if not extra:
        return tree
    index = np.minimum(np.arange(n + extra), n - 1)
    return jax.tree.map(lambda a: jnp.asarray(a)[index], tree)


def _run(fn: Callable, devices: tuple[Any, ...], sharded: tuple, replicated: tuple, n: int) -> Any:
    """Calls a :func:`_distribute` function on ``n`` items (padded to a multiple of the device
    count, sharded or placed on the one device); returns numpy leaves ``[n, ...]``."""
    sharded = _pad_items(sharded, n, len(devices))
    if len(devices) > 1:
        mesh = Mesh(np.array(devices), ("items",))
        sharded = jax.device_put(sharded, NamedSharding(mesh, PartitionSpec("items")))
        replicated = jax.device_put(replicated, NamedSharding(mesh, PartitionSpec()))
    else:
        sharded, replicated = jax.device_put((sharded, replicated), devices[0])
    return jax.tree.map(lambda a: np.asarray(a)[:n], fn(*sharded, *replicated))


def _code_template(spec: CoderSpec, prior_blocks: Distribution, partitions: Any) -> Any:
    """One block's ``Code`` as ShapeDtypeStructs, cached per (spec, shapes): no search is run."""

    def signature(tree: Any) -> tuple:
        leaves, treedef = jax.tree.flatten(tree)
        return treedef, tuple((leaf.shape[1:], str(leaf.dtype)) for leaf in leaves)

    return _template_for(spec, signature(prior_blocks), signature(partitions))


@functools.lru_cache(maxsize=64)
def _template_for(spec: CoderSpec, prior_signature: tuple, partition_signature: tuple) -> Any:
    abstract = lambda sig: jax.tree.unflatten(sig[0], [jax.ShapeDtypeStruct(shape, dtype) for shape, dtype in sig[1]])
    return jax.eval_shape(
        lambda p, part: coder_from_spec(spec, part).encode(jnp.zeros(2, jnp.uint32), p, p),
        abstract(prior_signature),
        abstract(partition_signature),
    )


# ------------------------------------------------------------------------------------------------
# The index section: Code fields <-> entropy-coded streams


class _Stream(NamedTuple):
    field: str
    model: IndexModel
    select: np.ndarray | None  # bool mask over the item's (B, ...) field values; None = all


def _streams(
    entry: CoderEntry, models: Sequence[FieldModel], plan: BlockPlan, shapes: dict[str, tuple]
) -> list[_Stream]:
    """The index section's streams in coding order. A :class:`PlanAlphabetModel` field becomes one
    ``UniformModel(J)`` stream per distinct alphabet size ``J > 1`` (ascending), over the
    elements of that size; elements of size 1 carry no information and are not sent."""
    streams = []
    for field, model in zip(entry.fields, models):
        if not isinstance(model, PlanAlphabetModel):
            streams.append(_Stream(field, model, None))
            continue
        if entry.alphabet is None:
            raise FormatError(f"field {field!r} has a plan-alphabet model, but its coder registered no alphabet")
        sizes = np.broadcast_to(np.asarray(entry.alphabet(plan, field), np.int64), shapes[field])
        streams += [_Stream(field, UniformModel(int(j)), sizes == j) for j in np.unique(sizes) if j > 1]
    return streams


def _stream_values(stream: _Stream, field: np.ndarray) -> np.ndarray:
    """The symbols of ``stream`` from field values ``[..., B, ...]`` (leading axes kept, flattened)."""
    lead = field.ndim - (stream.select.ndim if stream.select is not None else field.ndim)
    values = field if stream.select is None else field[(slice(None),) * lead + (stream.select,)]
    return values.reshape(values.shape[:lead] + (-1,))


def _encode_fields(streams: list[_Stream], fields: dict[str, np.ndarray]) -> bytes:
    """The index section of one item, from its field values ``{field: int[B, ...]}``."""
    return encode_streams([(_stream_values(s, fields[s.field]), s.model) for s in streams])


def _ideal_bits(streams: list[_Stream], fields: dict[str, np.ndarray]) -> np.ndarray:
    """``float64[N]``: ideal bits of ``N`` items' index sections, from fields ``int[N, B, ...]``.

    Zipf costs are evaluated in one vectorized call (``coding.ideal_bits`` per item would dispatch
    a JAX computation per item); the other models are plain numpy."""
    n = next(iter(fields.values())).shape[0]
    bits = np.zeros(n)
    for s in streams:
        values = _stream_values(s, fields[s.field]).reshape(n, -1)
        if isinstance(s.model, ZipfModel):
            bits += np.asarray(zipf_bits(values, s.model.alpha), np.float64).sum(axis=1)
        else:
            bits += [ideal_bits(v, s.model) for v in values]
    return bits


def _decode_fields(data: bytes, streams: list[_Stream], shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
    """Inverse of :func:`_encode_fields`: ``{field: int64[B, ...]}``."""
    counts = [int(np.prod(shapes[s.field])) if s.select is None else int(s.select.sum()) for s in streams]
    with _as_format_error("the index section"):
        decoded = decode_streams(data, [(s.model, count) for s, count in zip(streams, counts)])
    fields = {name: np.zeros(shape, np.int64) for name, shape in shapes.items()}
    for s, values in zip(streams, decoded):
        if s.select is None:
            fields[s.field] = values.reshape(shapes[s.field])
        else:
            fields[s.field][s.select] = values
    return fields


@contextlib.contextmanager
def _as_format_error(what: str) -> Iterator[None]:
    """Turns what a decoder of corrupt bytes can raise (including constriction's Rust panics,
    which derive from BaseException) into FormatError."""
    try:
        yield
    except FormatError:
        raise
    except (ValueError, KeyError, IndexError, OverflowError) as err:
        raise FormatError(f"{what} is corrupt: {err}") from None
    except BaseException as err:
        if type(err).__name__ == "PanicException":
            raise FormatError(f"{what} is corrupt: {err}") from None
        raise


# ------------------------------------------------------------------------------------------------
# The data section of lossless codecs (constriction categorical family, one row per element)

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)


def _likelihood_table(
    codec: Any, z: Array, data_shape: tuple[int, ...], error: type = InvalidArgumentError
) -> np.ndarray:
    """``float64[n, K]``, ``n = prod(data_shape)``: the codec's weights, validated. A shape that
    does not fit ``data_shape`` raises ``error`` (a FormatError when the shape came from a file)."""
    weights = np.asarray(codec.likelihood(z))
    if weights.ndim < 1 or weights.shape[:-1] != tuple(data_shape) or weights.shape[-1] < 1:
        raise error(f"codec.likelihood(z) has shape {weights.shape}, the item shape is {tuple(data_shape)}")
    table = weights.reshape(-1, weights.shape[-1]).astype(np.float64)
    if not (np.isfinite(table).all() and (table >= 0).all() and (table.sum(axis=1) > 0).all()):
        raise InvalidArgumentError("codec.likelihood(z) must give finite weights >= 0 with a positive sum per element")
    return table


def _encode_data(x: Any, table: np.ndarray) -> tuple[bytes, float]:
    """``(bytes, ideal bits)`` of the item ``x`` (integers in ``[0, K)``) under ``table``."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise InvalidArgumentError(f"a lossless codec's items must be integer arrays, got {x.dtype}")
    symbols = x.reshape(-1).astype(np.int64)
    bad = np.flatnonzero((symbols < 0) | (symbols >= table.shape[1]))
    if bad.size:
        raise InvalidArgumentError(
            f"x has value {symbols[bad[0]]} at flat position {bad[0]}, outside [0, {table.shape[1]})"
        )
    p = table[np.arange(symbols.size), symbols] / table.sum(axis=1)
    zero = np.flatnonzero(p == 0)
    if zero.size:
        raise InvalidArgumentError(f"codec.likelihood gives weight 0 to x's value at flat position {zero[0]}")
    coder = constriction.stream.stack.AnsCoder()
    coder.encode_reverse(symbols.astype(np.int32), _CATEGORICAL, table)
    return coder.get_compressed().astype("<u4").tobytes(), float(-np.log2(p).sum())


def _decode_data(data: bytes, table: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_encode_data`: ``int64[n]``; FormatError unless ``data`` is exactly the
    encoding of what it decodes to."""
    if len(data) % 4 or data[-4:] == b"\0\0\0\0":
        raise FormatError("the data section is not a valid ANS stream")
    with _as_format_error("the data section"):
        coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
        symbols = np.asarray(coder.decode(_CATEGORICAL, table), np.int64)
    if (table[np.arange(symbols.size), symbols] == 0).any() or _encode_data(symbols, table)[0] != data:
        raise FormatError("the data section is corrupt (it does not re-encode to itself)")
    return symbols


# ------------------------------------------------------------------------------------------------
# Compress


def compress_report(
    codec: Codec,
    xs: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    first_item: int = 0,
    devices: Sequence[Any] | None = None,
) -> CompressReport:
    """Compresses ``N`` items in one jitted (and sharded) call and keeps the diagnostics.

    Args:
      codec: a :class:`Codec` (or :class:`LosslessCodec`).
      xs: the items stacked along a leading axis, ``(N, ...)``.
      key: the shared seed (int in ``[0, 2^32)``) or threefry key; written into every header.
      coder: a registered coder (``jaxrec.pfr()``, ``jaxrec.orc(2**16)``, ...), its spec, or for
        space-partitioning coders a callable ``partition -> Coder``.
      plan: the block plan (with partitions for space-partitioning coders); ``None`` = one block.
      first_item: the item number of ``xs[0]``; item ``i`` is number ``first_item + i``.
      devices: devices to shard the items over; ``None`` = all local devices.

    Returns:
      A :class:`CompressReport`: the files and, per item and block, the codes and KLs.
    """
    prior = _prior(codec)
    dtype = prior.dtype
    plan = _plan(plan, prior.event_size)
    block_coder, entry = _block_coder(coder, plan)
    spec = block_coder.spec
    xs = jnp.asarray(xs)
    if xs.ndim < 1 or xs.shape[0] < 1:
        raise InvalidArgumentError(f"xs must have a leading item axis of size >= 1, got shape {xs.shape}")
    n = int(xs.shape[0])
    if isinstance(first_item, bool) or not isinstance(first_item, int) or not 0 <= first_item <= 2**32 - n:
        raise InvalidArgumentError(f"first_item must be an int with first_item + N <= 2**32, got {first_item!r}")
    lossless = callable(getattr(codec, "likelihood", None))
    targets = _vmap_call(codec, "target", xs)
    if not isinstance(targets, Distribution) or targets.batch_shape != (n,):
        raise InvalidArgumentError(
            f"codec.target(x) must return a jaxrec distribution with batch shape (), got {targets!r}"
        )
    target_blocks, prior_blocks = plan.split(jax.tree.map(lambda a: jnp.asarray(a, dtype), targets), prior)
    if entry.check is not None:
        entry.check(target_blocks, prior_blocks)
    partitions = plan.partitions if entry.partitioned else None
    devices = _devices(devices)
    key_words = prng.key_to_words(key)
    items = np.arange(first_item, first_item + n, dtype=np.uint32)
    key_data = _block_key_data(np.tile(key_words, (n, 1)), items, plan.num_blocks)
    encoder = _encoder(block_coder, entry.partitioned, devices)
    code, block_kl = _run(encoder, devices, (key_data, target_blocks), (prior_blocks, partitions), n)
    if lossless:
        z_blocks = _run(_decoder(spec, devices), devices, (key_data, code), (prior_blocks, partitions), n)
        z = plan.merge(z_blocks)
    fields = {f: getattr(code, f) for f in entry.fields}
    shapes = {f: value.shape[1:] for f, value in fields.items()}
    # Items share their entropy models unless the budget comes from each item's own KL.
    budgets = [plan.budget_bits if plan.budget_bits is not None else float(math.ceil(kl_i.max())) for kl_i in block_kl]
    models = {budget: entry.models(spec, budget, plan) for budget in set(budgets)}
    streams = {budget: _streams(entry, m, plan, shapes) for budget, m in models.items()}
    index_bits = np.zeros(n)
    for budget, group in streams.items():
        items = np.array([b == budget for b in budgets])
        index_bits[items] = _ideal_bits(group, {f: value[items] for f, value in fields.items()})
    files, rates = [], []
    items_host = np.asarray(xs) if lossless else None
    for i, budget in enumerate(budgets):
        index_bytes = _encode_fields(streams[budget], {f: value[i] for f, value in fields.items()})
        sections, data_bits = [index_bytes], 0.0
        if lossless:
            data_bytes, data_bits = _encode_data(items_host[i], _likelihood_table(codec, z[i], xs.shape[1:]))
            sections.append(data_bytes)
        header = container.Header(
            coder_name=spec.name,
            coder_args=tuple(value for _, value in spec.params),
            key_words=(int(key_words[0]), int(key_words[1])),
            item=first_item + i,
            latent_size=plan.dim,
            latent_dtype=str(dtype),
            num_blocks=plan.num_blocks,
            plan_fingerprint=plan.fingerprint,
            data_shape=tuple(int(d) for d in xs.shape[1:]),
            lossless=lossless,
            models=tuple(models[budget]),
        )
        files.append(container.write(header, sections))
        payload = sum(len(section) for section in sections)
        rates.append(Rate(float(index_bits[i]), data_bits, len(files[-1]) - payload, payload))
    return CompressReport(files, code, block_kl, rates)


def _warn_exhausted(code: Any) -> None:
    exhausted = np.asarray(getattr(code, "exhausted", False))
    if exhausted.any():
        warnings.warn(
            f"{int(exhausted.sum())} block(s) reached the coder's step limit: their samples are the best "
            "candidates found, not exact samples of the target (raise max_steps or use smaller blocks)",
            RuntimeWarning,
            stacklevel=3,
        )


def compress_batch(
    codec: Codec,
    xs: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    first_item: int = 0,
    devices: Sequence[Any] | None = None,
) -> list[bytes]:
    """Compresses the items ``xs`` (leading axis ``N``) into ``N`` files; see :func:`compress_report`.

    File ``i`` is byte-identical to ``compress(codec, xs[i], key=key, coder=coder, plan=plan,
    item=first_item + i)``. Warns (RuntimeWarning) when an exact coder hit its step limit.
    """
    report = compress_report(codec, xs, key=key, coder=coder, plan=plan, first_item=first_item, devices=devices)
    _warn_exhausted(report.code)
    return report.files


def compress(
    codec: Codec,
    x: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    item: int = 0,
) -> bytes:
    """Compresses one item into a self-contained file.

    Args:
      codec: a :class:`Codec` (or :class:`LosslessCodec`).
      x: the item.
      key: the shared seed (int in ``[0, 2^32)``) or threefry key.
      coder: a registered coder (``jaxrec.pfr()``, ``jaxrec.orc(2**16)``, ...), its spec, or a
        ``partition -> Coder`` callable for space-partitioning coders.
      plan: the block plan; ``None`` = one block.
      item: the item number (block ``b`` uses ``fold_in(fold_in(key, item), b)``).

    Returns:
      The file's bytes (layout: :mod:`jaxrec.container`). Warns (RuntimeWarning) when an exact
      coder hit its step limit.
    """
    report = compress_report(
        codec, jnp.asarray(x)[None], key=key, coder=coder, plan=plan, first_item=item, devices=_devices(None)[:1]
    )
    _warn_exhausted(report.code)
    return report.files[0]


# ------------------------------------------------------------------------------------------------
# Decompress


def _header_spec(header: container.Header) -> tuple[CoderSpec, CoderEntry]:
    entry = _REGISTRY.get(header.coder_name)
    if entry is None:
        raise FormatError(f"unknown coder {header.coder_name!r} (registered: {sorted(_REGISTRY)})")
    if len(header.coder_args) != len(entry.params):
        raise FormatError(
            f"coder {header.coder_name!r} takes {len(entry.params)} parameters, the header has {len(header.coder_args)}"
        )
    if len(header.models) != len(entry.fields):
        raise FormatError(
            f"coder {header.coder_name!r} sends {len(entry.fields)} fields, the header has {len(header.models)} models"
        )
    return CoderSpec(header.coder_name, tuple(zip(entry.params, header.coder_args))), entry


# Header fields the files of one decompress_batch call must share (keys and items may differ).
_SHARED_FIELDS = (
    "coder_name", "coder_args", "latent_size", "latent_dtype", "num_blocks", "plan_fingerprint", "data_shape",
    "lossless",
)


def decompress_batch(
    codec: Codec,
    files: Sequence[bytes],
    *,
    plan: BlockPlan | None = None,
    devices: Sequence[Any] | None = None,
) -> Array:
    """Decompresses files that share coder, latent and plan (e.g. from :func:`compress_batch`).

    Returns:
      The reconstructions stacked, ``(N, ...)``: ``codec.reconstruct(z)``, or the exact items for a
      lossless codec.

    Raises:
      FormatError: a malformed file, or a header inconsistent with the codec or the plan (latent
        size, block plan, lossless or not, a coder or dtype this decoder cannot reproduce); the
        message says which.
      InvalidArgumentError: ``files`` is empty or its files differ in coder, latent or plan.
    """
    if isinstance(files, (bytes, bytearray)) or not len(files):
        raise InvalidArgumentError("files must be a non-empty sequence of byte strings")
    parsed = [container.read(f) for f in files]
    header = parsed[0][0]
    for i, (h, _) in enumerate(parsed):
        if any(getattr(h, k) != getattr(header, k) for k in _SHARED_FIELDS):
            raise InvalidArgumentError(f"file {i} differs from file 0 in coder, latent or plan; decode them separately")
    spec, entry = _header_spec(header)
    if header.latent_dtype == "float64" and not jax.config.jax_enable_x64:
        raise FormatError("the file was written with float64 latents: decode it with jax x64 enabled")
    prior = _prior(codec, header.latent_dtype)
    if prior.event_size != header.latent_size:
        raise FormatError(
            f"the file's latent has {header.latent_size} dimensions, the codec's prior {prior.event_size}"
        )
    plan = _plan(plan, prior.event_size)
    if plan.fingerprint != header.plan_fingerprint or plan.num_blocks != header.num_blocks:
        raise FormatError(
            f"the file was written with another block plan ({header.num_blocks} blocks, fingerprint "
            f"{header.plan_fingerprint:08x}; this plan: {plan.num_blocks} blocks, {plan.fingerprint:08x})"
        )
    lossless = callable(getattr(codec, "likelihood", None))
    if header.lossless != lossless:
        raise FormatError(f"the file is {'lossless' if header.lossless else 'lossy'}, the codec is not")
    if entry.partitioned and plan.partitions is None:
        raise FormatError(f"coder {spec.name!r} needs the plan's partitions, this plan has none")
    partitions = plan.partitions if entry.partitioned else None
    _, prior_blocks = plan.split(prior, prior)
    try:
        template = _code_template(spec, prior_blocks, partitions)
    except InvalidArgumentError as err:
        raise FormatError(f"the header's coder parameters are invalid: {err}") from None
    shapes = {f: (plan.num_blocks, *getattr(template, f).shape) for f in entry.fields}
    values = []
    for h, sections in parsed:
        fields = _decode_fields(sections[0], _streams(entry, h.models, plan, shapes), shapes)
        for name, value in fields.items():
            info = np.iinfo(getattr(template, name).dtype)
            if value.size and (value.min() < info.min or value.max() > info.max):
                raise FormatError(f"decoded {name} {value.max()} does not fit the coder's {info.dtype}")
        values.append(fields)
    n = len(files)
    code = type(template)(**{
        f: np.stack([v[f] for v in values]).astype(getattr(template, f).dtype) if f in entry.fields
        else np.zeros((n, plan.num_blocks, *getattr(template, f).shape), getattr(template, f).dtype)
        for f in template._fields
    })
    key_words = np.array([h.key_words for h, _ in parsed], np.uint32)
    key_data = _block_key_data(key_words, np.array([h.item for h, _ in parsed], np.uint32), plan.num_blocks)
    devices = _devices(devices)
    z = plan.merge(_run(_decoder(spec, devices), devices, (key_data, code), (prior_blocks, partitions), n))
    if not lossless:
        return _vmap_call(codec, "reconstruct", z)
    items = [
        _decode_data(sections[1], _likelihood_table(codec, z[i], h.data_shape, FormatError)).reshape(h.data_shape)
        for i, (h, sections) in enumerate(parsed)
    ]
    return jnp.asarray(np.stack(items))


def decompress(codec: Codec, data: bytes, *, plan: BlockPlan | None = None) -> Array:
    """Decompresses one file: ``codec.reconstruct(z)``, or the exact item for a lossless codec.

    ``plan`` must be the encoder's block plan (``None`` = one block); the header's fingerprint
    catches a mismatch. Raises :class:`~jaxrec.errors.FormatError` naming what is wrong.
    """
    return decompress_batch(codec, [data], plan=plan, devices=_devices(None)[:1])[0]


def describe(data: bytes) -> dict[str, Any]:
    """The header of a jaxrec file and its index rate, as a JSON-ready dict (``jaxrec info``).

    Needs neither the codec nor the plan; the index section is decoded under the header's
    models when they are all coding models (``index_ideal_bits``; ``None`` for plan alphabets,
    which need the plan). Raises :class:`~jaxrec.errors.FormatError` for a malformed file.
    """
    header, sections = container.read(data)
    entry = _REGISTRY.get(header.coder_name)
    known = entry is not None and len(entry.params) == len(header.coder_args)
    names = entry.params if known else tuple(f"arg{i}" for i in range(len(header.coder_args)))
    index_bits = None
    if not any(isinstance(m, PlanAlphabetModel) for m in header.models):
        # Assumes one symbol per block and field (true of pfr, orc, mrc); else the rate is unknown.
        with contextlib.suppress(FormatError), _as_format_error("the index section"):
            decoded = decode_streams(sections[0], [(m, header.num_blocks) for m in header.models])
            index_bits = sum(ideal_bits(values, m) for values, m in zip(decoded, header.models))
    payload = sum(len(s) for s in sections)
    return {
        "format_version": header.version,
        "prng": header.prng_impl,
        "coder": header.coder_name,
        "coder_registered": entry is not None,
        "coder_params": dict(zip(names, header.coder_args)),
        "key_words": list(header.key_words),
        "item": header.item,
        "latent_size": header.latent_size,
        "latent_dtype": header.latent_dtype,
        "num_blocks": header.num_blocks,
        "plan_fingerprint": f"{header.plan_fingerprint:08x}",
        "data_shape": list(header.data_shape),
        "lossless": header.lossless,
        "entropy_models": [repr(m) for m in header.models],
        "index_ideal_bits": index_bits,
        "bytes": len(data),
        "header_bytes": len(data) - payload,
        "payload_bytes": payload,
        "section_bytes": [len(s) for s in sections],
    }
