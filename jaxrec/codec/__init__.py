"""The codec layer: the protocol a model implements, block plans, archives and compress / decompress.

* :mod:`~jaxrec.codec.protocol` -- what a model implements (:class:`Codec`, :class:`LosslessCodec`,
  :class:`ProgressiveCodec`);
* :mod:`~jaxrec.codec.blocks` -- block plans (:func:`plan_blocks`);
* :mod:`~jaxrec.codec.container` -- the file format (version 5: archives of many items);
* :mod:`~jaxrec.codec.sections` -- the streams of a chunk (the coder's message, the lossless data);
* :mod:`~jaxrec.codec.runtime` -- codec calls and jitted, sharded block coders, compiled once;
* :mod:`~jaxrec.codec.archive` -- :class:`ArchiveWriter` (batch by batch), :class:`ArchiveReader`
  (item by item);
* :mod:`~jaxrec.codec.api` -- :func:`compress`, :func:`decompress` and friends.
"""

from jaxrec.codec.api import (
    compress,
    compress_batch,
    compress_report,
    decompress,
    decompress_batch,
    describe,
)
from jaxrec.codec.archive import ArchiveReader, ArchiveWriter, CompressReport
from jaxrec.codec.blocks import BlockPlan, plan_blocks, single_block
from jaxrec.codec.protocol import Codec, LosslessCodec, ProgressiveCodec

__all__ = [
    "ArchiveReader",
    "ArchiveWriter",
    "BlockPlan",
    "Codec",
    "CompressReport",
    "LosslessCodec",
    "ProgressiveCodec",
    "compress",
    "compress_batch",
    "compress_report",
    "decompress",
    "decompress_batch",
    "describe",
    "plan_blocks",
    "single_block",
]
