"""The codec layer: the protocol a model implements, block plans, the file format and compress /
decompress.

* :mod:`~jaxrec.codec.protocol` -- what a model implements (:class:`Codec`, :class:`LosslessCodec`);
* :mod:`~jaxrec.codec.blocks` -- block plans (:func:`plan_blocks`);
* :mod:`~jaxrec.codec.container` -- the file format;
* :mod:`~jaxrec.codec.sections` -- payload sections (the coder's message, the lossless data);
* :mod:`~jaxrec.codec.runtime` -- jitted, sharded block coders;
* :mod:`~jaxrec.codec.api` -- :func:`compress`, :func:`decompress` and friends.
"""

from jaxrec.codec.api import (
    CompressReport,
    Rate,
    compress,
    compress_batch,
    compress_report,
    decompress,
    decompress_batch,
    describe,
)
from jaxrec.codec.blocks import BlockPlan, plan_blocks, single_block
from jaxrec.codec.protocol import Codec, LosslessCodec, ProgressiveCodec

__all__ = [
    "BlockPlan",
    "Codec",
    "CompressReport",
    "LosslessCodec",
    "ProgressiveCodec",
    "Rate",
    "compress",
    "compress_batch",
    "compress_report",
    "decompress",
    "decompress_batch",
    "describe",
    "plan_blocks",
    "single_block",
]
