"""compress / decompress: items through the block plan, the coder and the entropy models into archives.

* :func:`compress_batch` writes ``N`` items into one archive (format version 5,
  :mod:`jaxrec.codec.container`): one header, the items' messages and data as range-coded streams
  over chunks of items, an item table; :func:`compress_report` also returns the codes, the block KLs
  and the ideal bits of every item; :func:`compress` writes an archive of one item.
* :func:`decompress_batch` decodes all items of an archive or the ``items`` asked for (only their
  chunks are decoded); :func:`decompress` decodes one item.
* :func:`describe` reads a header without a codec (``jaxrec info``).

Batches of items are encoded batch by batch with :class:`~jaxrec.codec.archive.ArchiveWriter` and
read item by item with :class:`~jaxrec.codec.archive.ArchiveReader`; these functions are thin
wrappers over them. A second call with the same codec, coder, plan, devices and item count reuses
the compiled functions (:mod:`jaxrec.codec.runtime`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from jaxrec.codec import container
from jaxrec.codec.archive import (
    ArchiveReader,
    ArchiveWriter,
    CompressReport,
    read_group_ids,
)
from jaxrec.codec.blocks import BlockPlan
from jaxrec.codec.protocol import Codec
from jaxrec.codec.runtime import resolve_devices
from jaxrec.codec.sections import as_format_error
from jaxrec.coders.base import Coder, CoderSpec
from jaxrec.coders.registry import REGISTRY
from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import PlanAlphabetModel, decode_streams, ideal_bits

__all__ = ["compress", "compress_batch", "compress_report", "decompress", "decompress_batch", "describe"]


def compress_report(
    codec: Codec,
    xs: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    first_item: int = 0,
    devices: Sequence[Any] | None = None,
    group_size: int = 1,
    chunk_items: int | None = None,
) -> CompressReport:
    """Compresses ``N`` items into one archive in one jitted (and sharded) call, keeping the diagnostics.

    Args:
      codec: a :class:`Codec` (or :class:`LosslessCodec`, :class:`ProgressiveCodec`).
      xs: the items stacked along a leading axis, ``(N, ...)``.
      key: the shared seed (int in ``[0, 2^32)``) or threefry key; written into the header.
      coder: a registered coder (``jaxrec.pfr()``, ``jaxrec.orc(2**16)``, ...), its spec, or for
        space-partitioning coders a callable ``partition -> Coder``.
      plan: the block plan (with partitions for space-partitioning coders); ``None`` = one block.
      first_item: the item number of ``xs[0]``; block ``b`` of ``xs[i]`` uses the key
        ``fold_in(fold_in(key, first_item + i), b)``.
      devices: devices to shard the items over; ``None`` = all local devices.
      group_size: for a progressive codec (one with ``refine``), the blocks coded per item and step
        (largest current KL first) before the codec re-fits the rest; ignored otherwise.
      chunk_items: items per chunk of the archive (``None``: about 2^18 ideal bits per chunk).

    Returns:
      A :class:`~jaxrec.codec.archive.CompressReport`: the archive and, per item and block, the
      codes, KLs and ideal bits. Warns (``RuntimeWarning``) when an exact coder hit its step limit.
    """
    writer = ArchiveWriter(
        codec, key=key, coder=coder, plan=plan, first_item=first_item, devices=devices, group_size=group_size,
        chunk_items=chunk_items,
    )
    writer.add(xs)
    return writer.report()


def compress_batch(
    codec: Codec,
    xs: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    first_item: int = 0,
    devices: Sequence[Any] | None = None,
    group_size: int = 1,
    chunk_items: int | None = None,
) -> bytes:
    """Compresses the items ``xs`` (leading axis ``N``) into one archive; see :func:`compress_report`."""
    return compress_report(
        codec, xs, key=key, coder=coder, plan=plan, first_item=first_item, devices=devices, group_size=group_size,
        chunk_items=chunk_items,
    ).archive


def compress(
    codec: Codec,
    x: Any,
    *,
    key: Any,
    coder: Coder | CoderSpec | Callable[[Any], Coder],
    plan: BlockPlan | None = None,
    item: int = 0,
    group_size: int = 1,
) -> bytes:
    """Compresses one item into an archive of one item.

    Args:
      codec: a :class:`Codec` (or :class:`LosslessCodec`, :class:`ProgressiveCodec`).
      x: the item.
      key: the shared seed (int in ``[0, 2^32)``) or threefry key.
      coder: a registered coder (``jaxrec.pfr()``, ``jaxrec.orc(2**16)``, ...), its spec, or a
        ``partition -> Coder`` callable for space-partitioning coders.
      plan: the block plan; ``None`` = one block.
      item: the item number (block ``b`` uses ``fold_in(fold_in(key, item), b)``).
      group_size: see :func:`compress_report`.

    Returns:
      The file's bytes (layout: :mod:`jaxrec.codec.container`). Warns (``RuntimeWarning``) when an
      exact coder hit its step limit.
    """
    try:
        batch = np.asarray(x)[None]
    except Exception as err:  # noqa: BLE001 -- ragged lists and the like
        raise InvalidArgumentError(f"x must be an array, got {type(x).__name__}: {err}") from None
    writer = ArchiveWriter(
        codec, key=key, coder=coder, plan=plan, first_item=item, devices=resolve_devices(None)[:1],
        group_size=group_size,
    )
    writer.add(batch)
    return writer.finish()


def decompress_batch(
    codec: Codec,
    data: bytes,
    *,
    plan: BlockPlan | None = None,
    items: Sequence[int] | None = None,
    devices: Sequence[Any] | None = None,
) -> np.ndarray:
    """Decompresses the items of an archive (e.g. from :func:`compress_batch`).

    Args:
      codec: the decoder's codec: ``prior``, and ``reconstruct`` (lossy) or ``likelihood`` (lossless).
      data: the archive's bytes.
      plan: the encoder's block plan (``None`` = one block); the header's fingerprint catches a mismatch.
      items: positions of the items to decode, in the order wanted; ``None`` = all. Only the chunks
        holding them are decoded.
      devices: devices to shard the latent decoding over; ``None`` = all local devices.

    Returns:
      ``(n, ...)`` numpy array: for a lossless codec the exact items, of the dtype they were
      compressed from; else ``codec.reconstruct(z)`` of each.

    Raises:
      FormatError: malformed bytes, or a header inconsistent with the codec or the plan (latent
        size, block plan, lossless or not, a coder or dtype this decoder cannot reproduce).
      InvalidArgumentError: ``data`` is not bytes, ``items`` are not positions of the archive, or
        the codec lacks a method the decoder needs.
    """
    return ArchiveReader(codec, data, plan=plan, devices=devices).read(items)


def decompress(codec: Codec, data: bytes, *, plan: BlockPlan | None = None, item: int | None = None) -> np.ndarray:
    """Decompresses one item: ``codec.reconstruct(z)``, or the exact item for a lossless codec.

    Args:
      codec: the decoder's codec (see :func:`decompress_batch`).
      data: a file written by :func:`compress`, or any archive with ``item`` given.
      plan: the encoder's block plan (``None`` = one block).
      item: the position of the item in the archive; ``None`` for a file of one item.

    Raises:
      FormatError: see :func:`decompress_batch`.
      InvalidArgumentError: ``item`` is None but the archive holds several items, or out of range.
    """
    reader = ArchiveReader(codec, data, plan=plan, devices=resolve_devices(None)[:1])
    if item is None:
        if len(reader) != 1:
            raise InvalidArgumentError(
                f"this archive holds {len(reader)} items: pass item=i, or use decompress_batch"
            )
        item = 0
    if isinstance(item, bool) or not isinstance(item, (int, np.integer)):
        raise InvalidArgumentError(f"item must be an int position, got {item!r}")
    return reader.read([item])[0]


def describe(data: bytes) -> dict[str, Any]:
    """The header of an archive and its sizes, as a JSON-ready dict (``jaxrec info``).

    Needs neither the codec nor the plan. ``index_ideal_bits`` (all items' messages under the
    header's models) is given when every model is a coding model and every symbol has one element
    per block (PFR, ORC, MRC, GPRS, GRS, the tree coders): it is then decoded from the index
    streams; ``None`` otherwise (plan alphabets need the plan). Raises
    :class:`~jaxrec.core.errors.FormatError` for a malformed file.
    """
    archive = container.read(data)
    header = archive.header
    entry = REGISTRY.get(header.coder_name)
    stored = entry.header_params(header.version)[0] if entry is not None else ()
    known = entry is not None and len(stored) == len(header.coder_args)
    names = stored if known else tuple(f"arg{i}" for i in range(len(header.coder_args)))
    index_bits = None
    if not any(isinstance(m, PlanAlphabetModel) for models in header.groups for m in models):
        # Assumes one symbol per block and field (true of pfr, orc, mrc, gprs, grs, the tree coders)
        with contextlib.suppress(FormatError), as_format_error("the index streams"):
            groups = read_group_ids(archive)
            total = 0.0
            for chunk in range(header.num_chunks):
                positions = header.chunk_range(chunk)
                ids = np.zeros(len(positions), int) if groups is None else groups[positions.start : positions.stop]
                specs = [(m, int((ids == g).sum()) * header.num_blocks) for g in np.unique(ids) for m in header.groups[g]]
                decoded = decode_streams(archive.index_stream(chunk), specs)
                total += sum(ideal_bits(values, model) for values, (model, _) in zip(decoded, specs))
            index_bits = total
    return {
        "format_version": header.version,
        "prng": header.prng_impl,
        "model": header.model,
        "coder": header.coder_name,
        "coder_registered": entry is not None,
        "coder_params": dict(zip(names, header.coder_args)),
        "key_words": list(header.key_words),
        "first_item": header.first_item,
        "num_items": header.num_items,
        "chunk_items": header.chunk_items,
        "num_chunks": header.num_chunks,
        "latent_size": header.latent_size,
        "latent_dtype": header.latent_dtype,
        "num_blocks": header.num_blocks,
        "plan_fingerprint": f"{header.plan_fingerprint:08x}",
        "item_shape": list(header.item_shape),
        "item_dtype": header.item_dtype,
        "lossless": header.lossless,
        "snap_marks": header.snap_marks,
        "entropy_models": [[repr(m) for m in models] for models in header.groups],
        "group_counts": list(header.group_counts),
        "index_ideal_bits": index_bits,
        "bytes": len(archive.data),
        "header_bytes": archive.header_bytes,
        "table_bytes": archive.table_bytes,
        "payload_bytes": archive.payload_bytes,
        "checksum_bytes": 4,
        "bits_per_item": 8 * len(archive.data) / header.num_items,
    }
