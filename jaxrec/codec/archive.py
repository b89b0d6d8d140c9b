"""Archives: many items in one file, written batch by batch and read item by item.

:class:`ArchiveWriter` encodes items batch by batch (one jitted, sharded REC call per batch) and
cuts them into chunks of ``C`` items; :class:`ArchiveReader` decodes all items or any subset,
touching only the chunks that hold them. The layout is :mod:`jaxrec.codec.container` (format
version 5), the streams :mod:`jaxrec.codec.sections`.

**Encoding an item.** ``Q = codec.target(x)`` and ``P = codec.prior()`` are cut into the plan's
``B`` blocks (:mod:`jaxrec.codec.blocks`); block ``b`` of item number ``i`` is coded with the key
``fold_in(fold_in(key, i), b)`` by the coder (PFR: Li & El Gamal, IEEE Trans. Inf. Theory 2018;
space-partitioning coders: He, Flamich & Hernandez-Lobato, NeurIPS 2024; ...). A progressive codec
(one with ``refine``; MIRACLE, Havasi et al., ICLR 2019; COMBINER/RECOMBINER, Guo et al., NeurIPS
2023 and He et al., ICLR 2024) codes its blocks in groups, largest current KL first, and re-fits the
rest after each group. The coder's message goes to the index stream under the entropy models its
registry entry names, for the KL budget per block (the plan's, or else the item's largest block KL
rounded up: items with one budget form a *group*). A lossless codec's item then goes to the data
stream under ``likelihood(z)`` at the decoded latent (bits-back-free lossless coding with REC:
Flamich, Havasi & Hernandez-Lobato, NeurIPS 2020).

**Chunk size.** Ending a range-coder stream costs at most 64 bits (about 17 on average, whole
words included) and each stream's length in the item table one to three bytes. By default a chunk
holds about :data:`TARGET_CHUNK_BITS` = 2^18 ideal bits (32 KiB): the per-chunk overhead is then
about 0.02% of the payload, and reading one item decodes at most one chunk (about 230 MNIST digits
with the lossless VAE). ``chunk_items`` overrides it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrec.codec import container
from jaxrec.codec.blocks import BlockPlan
from jaxrec.codec.runtime import (
    LIKELIHOOD_BATCH,
    BlockCoder,
    block_decoder,
    block_encoder,
    block_key_data,
    cache_key_callable,
    code_template,
    codec_prior,
    likelihood_batch,
    problem_decoder,
    problem_encoder,
    reconstruct_batches,
    require_methods,
    resolve_devices,
    resolve_plan,
    run_sharded,
    vmap_call,
)
from jaxrec.codec.sections import (
    DataDecoder,
    DataEncoder,
    Stream,
    apply_snaps,
    as_format_error,
    check_tables,
    data_ideal_bits,
    decode_index_chunk,
    encode_index_chunk,
    fields_ideal_bits,
    index_streams,
    snap_marks,
)
from jaxrec.coders.base import Coder, CoderSpec, check_positive_int, warn_status
from jaxrec.coders.registry import REGISTRY, CoderEntry, lookup
from jaxrec.core import prng
from jaxrec.core.distributions import Distribution, kl
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import CategoricalModel, decode_streams, encode_streams

Array = jax.Array

__all__ = ["TARGET_CHUNK_BITS", "ArchiveReader", "ArchiveWriter", "CompressReport"]

TARGET_CHUNK_BITS = 2**18
"""Ideal bits per chunk the automatic chunk size aims at."""
MAX_MODEL_NAME = 256


class CompressReport(NamedTuple):
    """An archive plus diagnostics (``N`` items, ``B`` blocks).

    Attributes:
      archive: the file's bytes.
      code: the coder's ``Code`` with numpy leaves of shape ``(N, B, ...)`` (the message fields,
        ``steps`` and ``status``).
      block_kl: ``float64[N, B]``, ``KL[Q||P]`` of each block in bits (for a progressive codec, at
        the time the block was coded).
      index_bits: ``float64[N]``, ideal bits of each item's message under its entropy models.
      data_bits: ``float64[N]``, ``-log2 p(x | z)`` of each item under the codec's likelihood
        (zeros for a lossy codec).
      header_bytes: bytes outside the streams: magic, header, item table and checksum.
      payload_bytes: bytes of the streams.
    """

    archive: bytes
    code: Any
    block_kl: np.ndarray
    index_bits: np.ndarray
    data_bits: np.ndarray
    header_bytes: int
    payload_bytes: int

    @property
    def ideal_bits(self) -> float:
        """Sum over the items of the ideal codelength (message plus data)."""
        return float(self.index_bits.sum() + self.data_bits.sum())

    @property
    def total_bytes(self) -> int:
        return len(self.archive)

    @property
    def overhead(self) -> float:
        """Bytes on disk relative to the ideal: ``8 * total_bytes / ideal_bits - 1``."""
        return 8 * self.total_bytes / self.ideal_bits - 1


# ------------------------------------------------------------------------------------------------
# Resolving arguments


def resolve_coder(coder: Any, plan: BlockPlan) -> tuple[BlockCoder, CoderEntry]:
    """Resolves a ``coder`` argument into the header spec and the per-block coder."""
    make = None
    if isinstance(coder, (Coder, CoderSpec)):
        spec = coder.spec if isinstance(coder, Coder) else coder
    elif callable(coder):
        if plan.partitions is None:
            raise InvalidArgumentError("a callable coder (partition -> Coder) needs a plan with partitions")
        make = cache_key_callable(coder)
        spec = coder(jax.tree.map(lambda leaf: leaf[0], plan.partitions)).spec
    else:
        raise InvalidArgumentError(
            f"coder must be a Coder, a CoderSpec or a partition -> Coder callable, got {coder!r}"
        )
    entry = lookup(spec.name)
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
    return BlockCoder(header_spec, make), entry


def _header_spec(header: container.Header) -> tuple[CoderSpec, CoderEntry]:
    entry = REGISTRY.get(header.coder_name)
    if entry is None:
        raise FormatError(f"unknown coder {header.coder_name!r} (registered: {sorted(REGISTRY)})")
    stored, implied = entry.header_params(header.version)
    if len(header.coder_args) != len(stored):
        raise FormatError(
            f"coder {header.coder_name!r} takes {len(stored)} parameters in a version-{header.version} header, "
            f"the header has {len(header.coder_args)}"
        )
    oldest = (entry.oldest_format or {}).get(header.latent_dtype, 0)
    if header.version < oldest:
        written_by = container.WRITTEN_BY[header.version]
        raise FormatError(
            f"this version-{header.version} jaxrec file (written by jaxrec {written_by}) holds "
            f"{header.latent_dtype} {header.coder_name!r} codes, which this jaxrec decodes from version "
            f"{oldest} on (it draws other points from the same codes): decode it with jaxrec {written_by}"
        )
    params = {**dict(zip(stored, header.coder_args)), **implied}
    return CoderSpec(header.coder_name, tuple((name, params[name]) for name in entry.params)), entry


def _symbol_shapes(entry: CoderEntry, spec: CoderSpec, plan: BlockPlan, prior_blocks: Distribution, partitions: Any,
                   error: type) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """One block's code template and the symbols' ``(B, ...)`` shapes, in message order."""
    try:
        template = code_template(spec, prior_blocks, partitions)
        shapes = entry.symbol_shapes(spec, plan, template)
    except InvalidArgumentError as err:
        raise error(f"the coder parameters are invalid: {err}") from None
    return template, {name: (plan.num_blocks, *shape) for name, shape in shapes.items()}


def _item_shape_of(codec: Any, prior: Distribution) -> tuple[int, ...] | None:
    """The codec's declared ``item_shape``, or a lossless codec's (from the likelihood's shape), else None."""
    declared = getattr(codec, "item_shape", None)
    if declared is not None:
        return tuple(int(d) for d in declared)
    if callable(getattr(codec, "likelihood", None)):
        try:
            shape = jax.eval_shape(codec.likelihood, jax.ShapeDtypeStruct((prior.event_size,), prior.dtype)).shape
        except Exception:  # noqa: BLE001 -- host code cannot be traced: no shape to check against
            return None
        return tuple(shape[:-1])
    return None


def _latent_step(codec: Any) -> float | None:
    """The codec's ``latent_step`` (a lossless codec whose likelihood sees ``z`` only through
    ``rint(z / latent_step)``): ``None`` when it declares none, else a power of two.

    Raises:
      InvalidArgumentError: not a power of two (``2^-30`` to ``2^30``).
    """
    step = getattr(codec, "latent_step", None)
    if step is None:
        return None
    if isinstance(step, bool) or not isinstance(step, (int, float, np.floating)) or not any(step == 2.0**e for e in range(-30, 31)):
        raise InvalidArgumentError(f"codec.latent_step must be None or a power of two in [2**-30, 2**30], got {step!r}")
    return float(step)


def _check_chunk_items(chunk_items: Any) -> int | None:
    if chunk_items is None:
        return None
    return check_positive_int("chunk_items", chunk_items, container.MAX_CHUNK_ITEMS)


# ------------------------------------------------------------------------------------------------
# Writing


class ArchiveWriter:
    """Encodes items batch by batch into one archive.

    ::

        writer = ArchiveWriter(codec, key=0, coder=jaxrec.pfr(), plan=plan)
        for batch in batches:
            writer.add(batch)                 # one jitted (sharded) REC call per batch
        data = writer.finish()                # the archive's bytes
        report = writer.report()              # codes, KLs, ideal bits per item, sizes

    Args:
      codec: the encoder's codec: ``prior``, ``target`` (and ``likelihood`` for a lossless codec,
        ``refine`` for a progressive one; see :mod:`jaxrec.codec.protocol`).
      key: the shared seed (int in ``[0, 2^32)``) or threefry key, written into the header.
      coder: a registered coder (``jaxrec.pfr()``, ``jaxrec.orc(2**16)``, ...), its spec, or for
        space-partitioning coders a callable ``partition -> Coder``.
      plan: the block plan (with partitions for space-partitioning coders); ``None`` = one block.
      first_item: the item number of the first item; the ``i``-th item added is number
        ``first_item + i`` (its blocks' keys derive from it).
      devices: devices to shard each batch over; ``None`` = all local devices.
      group_size: for a progressive codec, the blocks coded per item and step (largest current KL
        first) before the codec re-fits the rest; ignored otherwise.
      chunk_items: items per chunk; ``None`` = about :data:`TARGET_CHUNK_BITS` ideal bits per
        chunk, estimated from the first batch.
      model: a name for the model, stored in the header (the command line stores the packaged
        model's name and file checksum there); ``""`` = none.
    """

    def __init__(
        self,
        codec: Any,
        *,
        key: Any,
        coder: Coder | CoderSpec | Callable[[Any], Coder],
        plan: BlockPlan | None = None,
        first_item: int = 0,
        devices: Sequence[Any] | None = None,
        group_size: int = 1,
        chunk_items: int | None = None,
        model: str = "",
    ) -> None:
        require_methods(codec, ("prior", "target"), "encoder")
        self._codec = codec
        self._prior = codec_prior(codec)
        self._plan = resolve_plan(plan, self._prior.event_size)
        self._block_coder, self._entry = resolve_coder(coder, self._plan)
        self._key_words = prng.key_to_words(key)
        if isinstance(first_item, bool) or not isinstance(first_item, (int, np.integer)) or not 0 <= first_item < 2**32:
            raise InvalidArgumentError(f"first_item must be an int in [0, 2**32), got {first_item!r}")
        self._first_item = int(first_item)
        self._devices = resolve_devices(devices)
        self._progressive = callable(getattr(codec, "refine", None))
        if self._progressive:
            check_positive_int("group_size", group_size, self._plan.num_blocks)
        self._group_size = group_size
        self._lossless = callable(getattr(codec, "likelihood", None))
        self._snap_step = _latent_step(codec) if self._lossless else None
        self._chunk_items = _check_chunk_items(chunk_items)
        if not isinstance(model, str) or len(model.encode("utf-8")) > MAX_MODEL_NAME:
            raise InvalidArgumentError(f"model must be a str of at most {MAX_MODEL_NAME} bytes, got {model!r}")
        self._model = model
        self._partitions = self._plan.partitions if self._entry.partitioned else None
        _, self._prior_blocks = self._plan.split(self._prior, self._prior)
        _, self._shapes = _symbol_shapes(
            self._entry, self._block_coder.spec, self._plan, self._prior_blocks, self._partitions, InvalidArgumentError
        )
        self._expected_shape = _item_shape_of(codec, self._prior)
        self._item_shape: tuple[int, ...] | None = None
        self._item_dtype: np.dtype | None = None
        # groups of entropy models, by budget, in order of first appearance
        self._budgets: dict[float, int] = {}
        self._group_models: list[tuple] = []
        self._group_streams: list[list[Stream]] = []
        self._group_ids: list[np.ndarray] = []
        # the open chunk
        self._open_symbols: list[dict[str, np.ndarray]] = []
        self._open_groups: list[np.ndarray] = []
        self._open_count = 0
        self._pending: list[tuple[np.ndarray, np.ndarray, int]] = []  # (items, z, first position) to data-encode
        self._pending_count = 0
        self._data_encoder = DataEncoder() if self._lossless else None
        self._chunks: list[tuple[bytes, bytes]] = []
        # per item diagnostics
        self._codes: list[Any] = []
        self._block_kl: list[np.ndarray] = []
        self._index_bits: list[np.ndarray] = []
        self._data_bits = np.zeros(0)
        self._count = 0
        self._archive: bytes | None = None

    @property
    def num_items(self) -> int:
        """Items added so far."""
        return self._count

    # -- items -----------------------------------------------------------------------------------

    def _check_items(self, xs: Any) -> np.ndarray:
        try:
            arr = np.asarray(xs)
        except Exception as err:  # noqa: BLE001 -- ragged lists and the like
            raise InvalidArgumentError(f"xs must be an array of items, got {type(xs).__name__}: {err}") from None
        if arr.dtype.name not in container.ITEM_DTYPES:
            raise InvalidArgumentError(
                f"xs must have a boolean, integer or float dtype (one of {container.ITEM_DTYPES}), got {arr.dtype}"
            )
        if arr.ndim < 1 or arr.shape[0] < 1:
            raise InvalidArgumentError(f"xs must have a leading item axis of size >= 1, got shape {arr.shape}")
        shape = tuple(arr.shape[1:])
        if self._expected_shape is not None and shape != self._expected_shape:
            raise InvalidArgumentError(
                f"items must have the codec's item shape {self._expected_shape}, got items of shape {shape}"
            )
        if self._item_shape is not None and (shape, arr.dtype) != (self._item_shape, self._item_dtype):
            raise InvalidArgumentError(
                f"every batch of an archive must have items of one shape and dtype: {self._item_shape} "
                f"{self._item_dtype} before, now {shape} {arr.dtype}"
            )
        if arr.dtype.kind == "f" or arr.dtype.name == "bfloat16":
            bad = np.flatnonzero(~np.isfinite(arr.astype(np.float64)).reshape(arr.shape[0], -1).all(axis=1))
            if bad.size:
                raise InvalidArgumentError(f"xs must be finite: item {bad[0]} has NaN or inf values")
        if self._lossless and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise InvalidArgumentError(f"a lossless codec's items must be integer arrays, got {arr.dtype}")
        if self._first_item + self._count + arr.shape[0] > 2**32:
            raise InvalidArgumentError(
                f"item numbers must stay below 2**32: first_item {self._first_item} + {self._count + arr.shape[0]} items"
            )
        return arr

    def _targets(self, xs: np.ndarray) -> Distribution:
        n, dtype = xs.shape[0], self._prior.dtype
        try:
            targets = vmap_call(self._codec, "target", jnp.asarray(xs))
        except InvalidArgumentError:
            raise
        except Exception as err:
            raise InvalidArgumentError(
                f"codec.target failed on items of shape {xs.shape[1:]} and dtype {xs.dtype}: {type(err).__name__}: {err}"
            ) from err
        return _checked_targets(targets, n, dtype, self._prior.event_size)

    # -- encoding --------------------------------------------------------------------------------

    def add(self, xs: Any) -> None:
        """Encodes the items ``xs`` (a leading item axis ``n``) and appends them to the archive.

        Raises:
          InvalidArgumentError: items of another shape than the codec's (or the earlier batches'),
            a dtype that is not numeric, NaN/inf values, a target with non-finite parameters, or a
            message a coder cannot send; the message names the argument and the item.
        """
        if self._archive is not None:
            raise InvalidArgumentError("this archive is finished: start a new ArchiveWriter")
        xs = self._check_items(xs)
        n, plan, spec, entry = xs.shape[0], self._plan, self._block_coder.spec, self._entry
        targets = self._targets(xs)
        numbers = np.arange(self._first_item + self._count, self._first_item + self._count + n, dtype=np.uint32)
        key_data = block_key_data(np.tile(self._key_words, (n, 1)), numbers, plan.num_blocks)
        z = None
        if self._progressive:
            code, block_kl, z = _encode_progressive(
                self._codec, xs, targets, self._prior, plan, self._block_coder, entry, key_data, self._devices,
                self._group_size,
            )
        else:
            target_blocks, prior_blocks = plan.split(targets, self._prior)
            if entry.check is not None:
                entry.check(target_blocks, prior_blocks)
            encoder = block_encoder(self._block_coder, entry.partitioned, self._devices)
            code, block_kl = run_sharded(
                encoder, self._devices, (key_data, target_blocks), (prior_blocks, self._partitions), n
            )
            if self._lossless:
                decoder = block_decoder(spec, self._devices)
                z = plan.merge(run_sharded(decoder, self._devices, (key_data, code), (prior_blocks, self._partitions), n))
        symbols = entry.symbols(spec, {f: getattr(code, f) for f in type(code).MESSAGE})
        group_ids = self._assign_groups(block_kl)
        index_bits = np.zeros(n)
        for g in np.unique(group_ids):
            chosen = group_ids == g
            index_bits[chosen] = fields_ideal_bits(self._group_streams[g], {s: v[chosen] for s, v in symbols.items()})
        z = np.asarray(z) if self._lossless else None  # the data stream's latents (lossless codecs only)
        if self._chunk_items is None:
            self._chunk_items = self._auto_chunk_items(xs, index_bits, z)
        self._codes.append(code)
        self._block_kl.append(np.asarray(block_kl, np.float64))
        self._index_bits.append(index_bits)
        self._group_ids.append(group_ids)
        self._item_shape, self._item_dtype = tuple(xs.shape[1:]), xs.dtype
        self._data_bits = np.concatenate([self._data_bits, np.zeros(n)])
        start = 0
        while start < n:  # fill the open chunk, closing it when full
            take = min(n - start, self._chunk_items - self._open_count)
            part = slice(start, start + take)
            self._open_symbols.append({s: v[part] for s, v in symbols.items()})
            self._open_groups.append(group_ids[part])
            if self._lossless:
                self._pending.append((xs[part], z[part], self._count + start))
                self._pending_count += take
                self._encode_data(final=False)
            self._open_count += take
            start += take
            if self._open_count == self._chunk_items:
                self._close_chunk()
        self._count += n

    def _assign_groups(self, block_kl: np.ndarray) -> np.ndarray:
        """Group number of each item: items share entropy models unless the budget is their own KL."""
        plan = self._plan
        budgets = [plan.budget_bits if plan.budget_bits is not None else float(math.ceil(k.max())) for k in block_kl]
        ids = np.zeros(len(budgets), np.int64)
        for i, budget in enumerate(budgets):
            if budget not in self._budgets:
                message = self._entry.message(self._block_coder.spec, budget, plan)
                models = tuple(model for _, model in message)
                self._budgets[budget] = len(self._group_models)
                self._group_models.append(models)
                self._group_streams.append(index_streams(self._entry, models, plan, self._shapes))
            ids[i] = self._budgets[budget]
        return ids

    def _auto_chunk_items(self, xs: np.ndarray, index_bits: np.ndarray, z: np.ndarray | None) -> int:
        """``TARGET_CHUNK_BITS`` over the mean ideal bits per item of the first batch (its data bits
        estimated on one likelihood batch)."""
        bits = float(index_bits.mean())
        if z is not None:
            m = min(len(xs), LIKELIHOOD_BATCH)
            tables = check_tables(likelihood_batch(self._codec, z[:m]), xs.shape[1:], InvalidArgumentError)
            bits += float(data_ideal_bits(xs[:m], tables).mean())
        return int(np.clip(TARGET_CHUNK_BITS // max(bits, 1.0), 1, container.MAX_CHUNK_ITEMS))

    def _encode_data(self, final: bool) -> None:
        """Data-encodes the pending items of the open chunk in likelihood batches aligned to the
        chunk's first item (the decoder cuts the same batches); ``final`` also encodes a last,
        partial batch."""
        if not self._pending_count or (self._pending_count < LIKELIHOOD_BATCH and not final):
            return
        items = np.concatenate([p[0] for p in self._pending])
        z = np.concatenate([p[1] for p in self._pending])
        first = self._pending[0][2]
        usable = len(items) if final else len(items) - len(items) % LIKELIHOOD_BATCH
        for offset in range(0, usable, LIKELIHOOD_BATCH):
            zb = z[offset : min(offset + LIKELIHOOD_BATCH, usable)]
            if self._snap_step is not None:  # the snap marks of the batch first (see sections.snap_marks)
                marks = snap_marks(zb, self._snap_step)
                self._data_encoder.encode_marks(marks)
                zb = apply_snaps(zb, self._snap_step, marks)
            tables = check_tables(likelihood_batch(self._codec, zb), self._item_shape, InvalidArgumentError)
            m = tables.shape[0]
            bits = self._data_encoder.encode(items[offset : offset + m], tables)
            self._data_bits[first + offset : first + offset + m] = bits
        rest = len(items) - usable
        self._pending = [(items[usable:], z[usable:], first + usable)] if rest else []
        self._pending_count = rest

    def _close_chunk(self) -> None:
        if self._lossless:
            self._encode_data(final=True)
            data = self._data_encoder.finish()
            self._data_encoder = DataEncoder()
        else:
            data = b""
        groups = np.concatenate(self._open_groups)
        symbols = {s: np.concatenate([part[s] for part in self._open_symbols]) for s in self._shapes}
        index = encode_index_chunk(
            [(self._group_streams[g], {s: v[groups == g] for s, v in symbols.items()}) for g in np.unique(groups)]
        )
        self._chunks.append((index, data))
        self._open_symbols, self._open_groups, self._open_count = [], [], 0

    def finish(self) -> bytes:
        """Closes the last chunk and returns the archive's bytes (warns, ``RuntimeWarning``, when an
        exact coder hit its step limit on some block)."""
        if self._archive is not None:
            return self._archive
        if not self._count:
            raise InvalidArgumentError("the archive is empty: add items before finish()")
        if self._open_count:
            self._close_chunk()
        group_ids = np.concatenate(self._group_ids)
        counts = tuple(int(c) for c in np.bincount(group_ids, minlength=len(self._group_models)))
        group_stream = encode_streams([(group_ids, CategoricalModel(counts))]) if len(counts) > 1 else b""
        self._group_stream_bytes = len(group_stream)
        spec = self._block_coder.spec
        header = container.Header(
            coder_name=spec.name,
            coder_args=tuple(value for _, value in spec.params),
            key_words=(int(self._key_words[0]), int(self._key_words[1])),
            first_item=self._first_item,
            latent_size=self._plan.dim,
            latent_dtype=str(self._prior.dtype),
            num_blocks=self._plan.num_blocks,
            plan_fingerprint=self._plan.fingerprint,
            item_shape=tuple(int(d) for d in self._item_shape),
            item_dtype=self._item_dtype.name,
            lossless=self._lossless,
            num_items=self._count,
            chunk_items=min(self._chunk_items, self._count),
            groups=tuple(self._group_models),
            group_counts=counts,
            model=self._model,
            snap_marks=self._snap_step is not None,
        )
        self._archive = container.write(header, group_stream, self._chunks)
        warn_status(self._code(), stacklevel=3)
        return self._archive

    def _code(self) -> Any:
        return jax.tree.map(lambda *leaves: np.concatenate(leaves), *self._codes)

    def report(self) -> CompressReport:
        """The archive (finishing it if needed) and the per-item diagnostics."""
        archive = self.finish()
        payload = self._group_stream_bytes + sum(len(index) + len(data) for index, data in self._chunks)
        return CompressReport(
            archive=archive,
            code=self._code(),
            block_kl=np.concatenate(self._block_kl),
            index_bits=np.concatenate(self._index_bits),
            data_bits=self._data_bits.copy(),
            header_bytes=len(archive) - payload,
            payload_bytes=payload,
        )


def _checked_targets(targets: Any, n: int, dtype: Any, event_size: int, valid: bool = True) -> Distribution:
    """The codec's ``n`` targets in the prior's dtype, checked: distributions of batch shape ``(n,)``
    and event size ``event_size``, and (``valid``) of finite parameters and positive scales."""
    if not isinstance(targets, Distribution) or targets.batch_shape != (n,):
        raise InvalidArgumentError(
            f"codec.target(x) / codec.refine(...) must return a jaxrec distribution with batch shape (), got {targets!r}"
        )
    if targets.event_size != event_size:
        raise InvalidArgumentError(
            f"codec.target(x) / codec.refine(...) must return targets of event size {event_size} like the prior, "
            f"got {targets.event_size}"
        )
    targets = jax.tree.map(lambda a: jnp.asarray(a, dtype), targets)
    bad = np.flatnonzero(~np.asarray(targets.valid())) if valid else ()
    if len(bad):
        raise InvalidArgumentError(
            f"the target of item {bad[0]} has non-finite parameters or non-positive scales "
            f"({jax.tree.map(lambda a: np.asarray(a)[bad[0]], targets)}); check the item and the codec's target()"
        )
    return targets


def _encode_progressive(
    codec: Any, xs: np.ndarray, targets: Distribution, prior: Distribution, plan: BlockPlan, block_coder: BlockCoder,
    entry: CoderEntry, key_data: Array, devices: tuple[Any, ...], group_size: int,
) -> tuple[Any, np.ndarray, np.ndarray]:
    """Codes the blocks of every item in steps of ``group_size`` blocks, largest current KL first,
    re-fitting the rest with ``codec.refine`` after each step (see :mod:`jaxrec.codec.protocol`).

    Returns ``(code [N, B, ...], block_kl [N, B] at the time each block was coded, z [N, D])``;
    ``z`` holds the decoded latent, bit for bit what the decoder rebuilds.
    """
    n, num_blocks = key_data.shape[:2]
    key_data = np.asarray(key_data)
    dtype = prior.dtype
    encoder = problem_encoder(block_coder, entry.partitioned, devices)
    decoder = problem_decoder(block_coder.spec, devices)
    coded = np.zeros((n, num_blocks), bool)
    z = np.zeros((n, plan.dim), dtype)
    fixed = np.zeros((n, plan.dim), bool)
    block_kl = np.zeros((n, num_blocks))
    code = None
    xs = jnp.asarray(xs)
    while not coded.all():
        target_blocks, prior_blocks = plan.split(targets, prior)
        if entry.check is not None:
            entry.check(target_blocks, prior_blocks)
        kls = np.where(coded, -np.inf, np.asarray(kl(target_blocks, prior_blocks), np.float64))
        width = min(group_size, num_blocks - int(coded[0].sum()))
        chosen = np.argsort(-kls, axis=1, kind="stable")[:, :width]  # (N, G) blocks of this step
        rows, cols = np.repeat(np.arange(n), width), chosen.reshape(-1)
        take = lambda tree, *index: jax.tree.map(lambda a: np.asarray(a)[index], tree)
        problem_priors = take(prior_blocks, cols)
        partitions = take(plan.partitions, cols) if entry.partitioned else None
        problems = (key_data[rows, cols], take(target_blocks, rows, cols), problem_priors, partitions)
        step_code, step_kl = run_sharded(encoder, devices, problems, (), rows.size)
        step_z = run_sharded(decoder, devices, (problems[0], step_code, problem_priors, partitions), (), rows.size)
        if code is None:
            code = jax.tree.map(lambda a: np.zeros((n, num_blocks) + a.shape[1:], a.dtype), step_code)
        for full, new in zip(jax.tree.leaves(code), jax.tree.leaves(step_code)):
            full[rows, cols] = new
        block_kl[rows, cols] = step_kl
        coded[rows, cols] = True
        real = plan.mask[cols]  # (M, S): drop padding
        dims = plan.index[cols][real]
        owner = np.repeat(rows, real.sum(axis=1))
        z[owner, dims] = np.asarray(step_z)[real]
        fixed[owner, dims] = True
        if not coded.all():
            refined = vmap_call(codec, "refine", xs, targets, jnp.asarray(z), jnp.asarray(fixed))
            refined = _checked_targets(refined, n, dtype, plan.dim, valid=False)
            if type(refined) is not type(targets):
                raise InvalidArgumentError(
                    f"codec.refine must return a {type(targets).__name__} like the target, got {type(refined).__name__}"
                )
            # only the coordinates not coded yet are used: the coded ones keep their last target
            keep = lambda new, old: jnp.where(jnp.asarray(fixed), old, new)
            targets = _checked_targets(jax.tree.map(keep, refined, targets), n, dtype, plan.dim)
    return code, block_kl, z


# ------------------------------------------------------------------------------------------------
# Reading


def read_group_ids(archive: container.Archive) -> np.ndarray | None:
    """The group of every item of an archive, from its group stream (None when there is one group)."""
    header = archive.header
    if len(header.groups) == 1:
        return None
    with as_format_error("the group stream"):
        ids = decode_streams(archive.group_stream, [(CategoricalModel(header.group_counts), header.num_items)])[0]
    if tuple(np.bincount(ids, minlength=len(header.groups))) != header.group_counts:
        raise FormatError("the group stream does not match the header's group counts")
    return ids


class ArchiveReader:
    """Decodes the items of an archive, all of them or any subset.

    ::

        reader = ArchiveReader(codec, data, plan=plan)
        len(reader), reader.header            # item count, header
        xs = reader.read()                    # every item, (N, ...)
        x = reader.read([17, 4])              # items 17 and 4: decodes only their chunks

    The header is checked against the codec and the plan when the reader is made.

    Args:
      codec: the decoder's codec: ``prior``, and ``reconstruct`` (lossy) or ``likelihood``
        (lossless); ``target`` is not needed.
      data: the archive's bytes.
      plan: the encoder's block plan (``None`` = one block); the header's fingerprint catches a mismatch.
      devices: devices to shard the latent decoding over; ``None`` = all local devices.

    Raises:
      FormatError: malformed bytes, or a header inconsistent with the codec or the plan (latent
        size, block plan, lossless or not, a coder or dtype this decoder cannot reproduce); the
        message says which.
      InvalidArgumentError: ``data`` is not bytes, or the codec lacks a method it needs.
    """

    def __init__(self, codec: Any, data: bytes, *, plan: BlockPlan | None = None,
                 devices: Sequence[Any] | None = None) -> None:
        if isinstance(data, (list, tuple)):
            raise InvalidArgumentError(
                "data must be one archive (bytes): compress_batch writes all items into one archive"
            )
        self.archive = container.read(data)
        header = self.header
        self._spec, self._entry = _header_spec(header)
        if header.latent_dtype == "float64" and not jax.config.jax_enable_x64:
            raise FormatError("the archive was written with float64 latents: decode it with jax x64 enabled")
        lossless_codec = callable(getattr(codec, "likelihood", None))
        if header.lossless and not lossless_codec:
            raise FormatError("the archive is lossless, but the codec is lossy (it has no likelihood())")
        if not header.lossless and lossless_codec:
            raise FormatError("the archive is lossy, but the codec is lossless (it has likelihood())")
        require_methods(codec, ("prior", "likelihood" if header.lossless else "reconstruct"), "decoder")
        self._codec = codec
        self._snap_step = _latent_step(codec) if header.snap_marks else None  # see sections.snap_marks
        if header.snap_marks and self._snap_step is None:
            raise FormatError(
                "the archive's data streams carry snap marks, but the codec declares no latent_step "
                "(is it the codec the archive was written with?)"
            )
        prior = codec_prior(codec, header.latent_dtype)
        if prior.event_size != header.latent_size:
            raise FormatError(
                f"the archive's latent has {header.latent_size} dimensions, the codec's prior {prior.event_size}"
            )
        self._plan = plan = resolve_plan(plan, prior.event_size)
        if plan.fingerprint != header.plan_fingerprint or plan.num_blocks != header.num_blocks:
            raise FormatError(
                f"the archive was written with another block plan ({header.num_blocks} blocks, fingerprint "
                f"{header.plan_fingerprint:08x}; this plan: {plan.num_blocks} blocks, {plan.fingerprint:08x})"
            )
        if self._entry.partitioned and plan.partitions is None:
            raise FormatError(f"coder {self._spec.name!r} needs the plan's partitions, this plan has none")
        self._partitions = plan.partitions if self._entry.partitioned else None
        _, self._prior_blocks = plan.split(prior, prior)
        self._template, self._shapes = _symbol_shapes(
            self._entry, self._spec, plan, self._prior_blocks, self._partitions, FormatError
        )
        self._group_streams = []
        for models in header.groups:
            if len(models) != len(self._shapes):
                raise FormatError(
                    f"coder {header.coder_name!r} sends {len(self._shapes)} symbols, the header has {len(models)} models"
                )
            with as_format_error("the header's entropy models"):
                self._group_streams.append(index_streams(self._entry, models, plan, self._shapes))
        self._devices = resolve_devices(devices)
        self._group_ids = read_group_ids(self.archive)

    @property
    def header(self) -> container.Header:
        return self.archive.header

    def __len__(self) -> int:
        return self.header.num_items

    def _chunk_groups(self, chunk: int) -> np.ndarray:
        """The group of every item of ``chunk``."""
        positions = self.header.chunk_range(chunk)
        if self._group_ids is None:
            return np.zeros(len(positions), np.int64)
        return self._group_ids[positions.start : positions.stop]

    def _chunk_symbols(self, chunk: int) -> dict[str, np.ndarray]:
        """``{symbol: int64[n, B, ...]}`` of the items of ``chunk``, from its index stream."""
        positions = self.header.chunk_range(chunk)
        groups = self._chunk_groups(chunk)
        present = np.unique(groups)
        decoded = decode_index_chunk(
            self.archive.index_stream(chunk),
            [(self._group_streams[g], int((groups == g).sum())) for g in present],
            self._shapes,
        )
        symbols = {name: np.zeros((len(positions), *shape), np.int64) for name, shape in self._shapes.items()}
        for g, part in zip(present, decoded):
            for name, value in symbols.items():
                value[groups == g] = part[name]
        return symbols

    def _latents(self, symbols: dict[str, np.ndarray], positions: np.ndarray) -> np.ndarray:
        """``z [n, D]`` of the items at ``positions`` from their symbols ``[n, B, ...]``."""
        n, plan = len(positions), self._plan
        with as_format_error("an index stream"):
            try:
                fields = self._entry.fields(self._spec, symbols)
            except InvalidArgumentError as err:
                raise FormatError(f"an index stream is invalid: {err}") from None
        template = self._template
        for name, value in fields.items():
            info = np.iinfo(getattr(template, name).dtype)
            if value.size and (value.min() < info.min or value.max() > info.max):
                raise FormatError(f"decoded {name} {value.max()} does not fit the coder's {info.dtype}")
        code = template.replace(
            **{f: np.asarray(fields[f]).astype(getattr(template, f).dtype) for f in type(template).MESSAGE},
            steps=np.zeros((n, plan.num_blocks) + template.steps.shape, template.steps.dtype),
            status=np.zeros((n, plan.num_blocks) + template.status.shape, template.status.dtype),
        )
        # pad to a power of two: archives of similar sizes share one compiled decoder
        bucket = max(1 << (n - 1).bit_length(), len(self._devices))
        index = np.minimum(np.arange(bucket), n - 1)
        code = jax.tree.map(lambda a: np.asarray(a)[index], code)
        numbers = (self.header.first_item + positions[index]).astype(np.uint32)
        key_words = np.tile(np.asarray(self.header.key_words, np.uint32), (bucket, 1))
        key_data = block_key_data(key_words, numbers, plan.num_blocks)
        decoder = block_decoder(self._spec, self._devices)
        blocks = run_sharded(decoder, self._devices, (key_data, code), (self._prior_blocks, self._partitions), bucket)
        return np.asarray(plan.merge(blocks))[:n]

    def read(self, items: Sequence[int] | None = None) -> np.ndarray:
        """Decodes items: all of them (``items=None``) or those at the given positions (in that order).

        Only the chunks holding them are decoded: for a lossy archive only the selected items'
        latents; for a lossless one the chunk's data stream up to the last selected item (it is
        sequential).

        Returns:
          ``(n, ...)`` numpy array: for a lossless archive the exact items, of the dtype they were
          compressed from; else ``codec.reconstruct(z)`` of each.

        Raises:
          FormatError: a corrupt stream (the checksum of the whole archive was checked when the
            reader was made, so only forged archives get here).
          InvalidArgumentError: ``items`` is not a sequence of positions in ``[0, N)``.
        """
        return self._by_chunk(items, self._read_chunk)

    def latents(self, items: Sequence[int] | None = None) -> np.ndarray:
        """The decoded latents ``z`` of items (all, or those at the given positions, in that order):
        what ``reconstruct`` or ``likelihood`` sees (before any snap marks), bit for bit as this
        backend regenerates the candidates. Decodes only the index streams of the chunks holding them.

        Returns:
          ``(n, D)`` numpy array of the header's latent dtype.

        Raises:
          FormatError: a corrupt index stream.
          InvalidArgumentError: ``items`` is not a sequence of positions in ``[0, N)``.
        """
        return self._by_chunk(items, self._chunk_latents)

    def _by_chunk(self, items: Sequence[int] | None, decode: Callable[[int, np.ndarray], np.ndarray]) -> np.ndarray:
        """``decode(chunk, rows)`` (rows: sorted positions within the chunk) over the chunks holding
        ``items``, stacked in the order of ``items`` (``None`` = all)."""
        positions = self._positions(items)
        chunk_of = positions // self.header.chunk_items
        decoded: dict[int, np.ndarray] = {}
        for c in np.unique(chunk_of):
            start = int(c) * self.header.chunk_items
            rows = np.unique(positions[chunk_of == c]) - start
            decoded.update(zip((start + rows).tolist(), decode(int(c), rows)))
        return np.stack([decoded[int(p)] for p in positions])

    def _chunk_latents(self, chunk: int, rows: np.ndarray) -> np.ndarray:
        """The latents of the items at ``rows`` (sorted positions within ``chunk``)."""
        symbols = self._chunk_symbols(chunk)
        return self._latents({k: v[rows] for k, v in symbols.items()}, chunk * self.header.chunk_items + rows)

    def rates(self) -> tuple[np.ndarray, np.ndarray]:
        """``(index_bits, data_bits)``, ``float64[N]`` each: the ideal bits of every item's message
        under the header's entropy models and of its data under the codec's likelihood (zeros
        for a lossy archive). Decodes the whole archive."""
        header = self.header
        index_bits, data_bits = np.zeros(header.num_items), np.zeros(header.num_items)
        for c in range(header.num_chunks):
            positions = header.chunk_range(c)
            symbols = self._chunk_symbols(c)
            groups = self._chunk_groups(c)
            for g in np.unique(groups):
                chosen = groups == g
                bits = fields_ideal_bits(self._group_streams[g], {k: v[chosen] for k, v in symbols.items()})
                index_bits[positions.start : positions.stop][chosen] = bits
            if header.lossless:
                z = self._latents(symbols, np.arange(positions.start, positions.stop))
                _, data_bits[positions.start : positions.stop] = self._decode_data(c, z)
        return index_bits, data_bits

    def _read_chunk(self, chunk: int, rows: np.ndarray) -> np.ndarray:
        """The items at ``rows`` (sorted positions within ``chunk``)."""
        header = self.header
        start = chunk * header.chunk_items
        symbols = self._chunk_symbols(chunk)
        if not header.lossless:
            z = self._latents({k: v[rows] for k, v in symbols.items()}, start + rows)
            return reconstruct_batches(self._codec, z)
        # the data stream is sequential: decode up to the likelihood batch of the last row wanted
        need = min(len(header.chunk_range(chunk)), (int(rows.max()) // LIKELIHOOD_BATCH + 1) * LIKELIHOOD_BATCH)
        z = self._latents({k: v[:need] for k, v in symbols.items()}, start + np.arange(need))
        items, _ = self._decode_data(chunk, z)
        return self._as_items(items[rows])

    def _decode_data(self, chunk: int, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The first ``len(z)`` items of ``chunk``'s data stream, ``int64[n, size]``, and their ideal bits."""
        decoder = DataDecoder(self.archive.data_stream(chunk))
        items, bits = [], []
        for offset in range(0, len(z), LIKELIHOOD_BATCH):
            zb = z[offset : offset + LIKELIHOOD_BATCH]
            if self._snap_step is not None:
                zb = apply_snaps(zb, self._snap_step, decoder.decode_marks(*zb.shape))
            tables = check_tables(likelihood_batch(self._codec, zb), self.header.item_shape, FormatError)
            items.append(decoder.decode(tables))
            bits.append(data_ideal_bits(items[-1], tables))
        if len(z) == len(self.header.chunk_range(chunk)):
            decoder.finish()
        return np.concatenate(items), np.concatenate(bits)

    def _positions(self, items: Sequence[int] | None) -> np.ndarray:
        n = self.header.num_items
        if items is None:
            return np.arange(n)
        try:
            positions = np.asarray(items)
        except Exception:  # noqa: BLE001
            positions = np.asarray(None)
        if positions.ndim != 1 or positions.size == 0 or not np.issubdtype(positions.dtype, np.integer):
            raise InvalidArgumentError(f"items must be a non-empty sequence of item positions, got {items!r}")
        bad = positions[(positions < 0) | (positions >= n)]
        if bad.size:
            raise InvalidArgumentError(f"items must be positions in [0, {n}) of this archive, got {int(bad[0])}")
        return positions.astype(np.int64)

    def _as_items(self, symbols: np.ndarray) -> np.ndarray:
        """Decoded symbols ``[n, size]`` as items of the archive's shape and dtype."""
        dtype = container.item_dtype(self.header.item_dtype)
        if np.issubdtype(dtype, np.integer) or dtype == np.bool_:
            info = (0, 1) if dtype == np.bool_ else (np.iinfo(dtype).min, np.iinfo(dtype).max)
            if symbols.size and (symbols.min() < info[0] or symbols.max() > info[1]):
                raise FormatError(f"decoded values do not fit the archive's item dtype {dtype}")
        return symbols.astype(dtype).reshape(symbols.shape[0], *self.header.item_shape)
