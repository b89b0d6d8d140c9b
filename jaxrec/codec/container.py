"""The jaxrec file format, version 5: one header, an item table and entropy-coded chunks of items.

A file (an *archive*) holds ``N >= 1`` items coded with one coder, key, block plan and set of
entropy models; :func:`jaxrec.compress` writes archives of one item. The items are cut into
*chunks* of ``C`` consecutive items; each chunk is one range-coded stream per section (the
coder's message, then for lossless codecs the data), so that the cost of ending a stream is paid
once per chunk, not once per item, and item ``i`` is decoded from its chunk alone.

Layout (integers little-endian; ``varint`` = unsigned LEB128 of at most 10 bytes; ``value`` = a
typed value, see below)::

    magic          4 bytes   b"\\x89JXR"
    version        u8        FORMAT_VERSION (5; versions 2 to 4 are read, see below)
    prng           u8        1 = threefry2x32 with the version-2 candidate stream (jaxrec.core.prng)
    flags          u8        bit 0: latent is float64 (else float32); bit 1: lossless (every chunk
                             has a data stream); bit 2 (version 4): the data streams carry snap
                             marks (lossless only); other bits 0
    model          varint length + UTF-8     a name of the model, at most 256 bytes ("" = none;
                                             the command line writes "<name> crc32=<hex>")
    coder name     varint length + ASCII     e.g. "sp_pfr"
    coder args     varint count + values     the coder's static parameters, positional (names from
                                             the coder registry, jaxrec.coders.registry; a
                                             parameter added in a later version is absent from
                                             older headers, CoderEntry.added_params)
    key            varint, varint            the two uint32 words of the archive's threefry key
    first item     varint                    item i is number first_item + i: block b of it uses
                                             fold_in(fold_in(key, first_item + i), b)
    latent size    varint                    D
    num blocks     varint                    B
    plan           u32                       BlockPlan.fingerprint (CRC32 of the block layout)
    item shape     varint ndim + varints     shape of one item
    item dtype     u8                        index into ITEM_DTYPES (the dtype of the items given
                                             to compress; lossless decoding returns it)
    num items      varint                    N >= 1
    chunk items    varint                    C, 1 <= C <= MAX_CHUNK_ITEMS
    groups         varint G >= 1, then per group: varint count + models (u8 kind: 1 zipf,
                   2 uniform, 3 categorical, 4 plan alphabet; its fields as values in dataclass
                   order). A group is one set of entropy models of the coder's message (items
                   share one unless the KL budget came from each item's own KL); G > 1 adds a
                   varint item count per group (summing to N).
    item table     [varint words of the group stream, if G > 1]; then per chunk
                   (ceil(N / C) of them): varint words of its index stream [, varint words of its
                   data stream, if lossless]. Streams are whole 32-bit words.
    payload        [the group stream: the N group numbers under CategoricalModel(counts)], then
                   chunk 0's index stream [and data stream], chunk 1's, ...
    crc32          u32       zlib.crc32 of everything before it

Typed values: a tag byte, then 0 None, 1 False, 2 True, 3 int (zigzag varint), 4 float32 (4 bytes),
5 float64 (8 bytes), 6 str (varint length + UTF-8), 7 tuple (varint count + values; nesting depth at
most 2). Floats are written as float32 when that is exact, so a model parameter is reproduced bit
for bit.

:func:`read` raises :class:`~jaxrec.core.errors.FormatError` for anything malformed -- bad magic, an
unknown version (a version-1 file needs jaxrec 0.1: its candidate stream is not this one; a version-2
file has the layout and the candidates of version 3 and is read, but version 3 draws other
space-partitioning points from the same codes -- float32 points within bins with the polynomial
quantile of :mod:`jaxrec.core.normal_quantile` instead of ``ndtri``, SP-ORC's points from the
candidate stream instead of a stream per bin -- so the decoder refuses a version-2 file of SP-ORC
codes or float32 SP-PFR codes, naming jaxrec 0.2: each coder lists the oldest version it decodes,
``CoderEntry.oldest_format`` in :mod:`jaxrec.coders.registry`; a version-3 file has version 4's
layout and candidates and is read: version 4 added the snap marks (flags bit 2) to the data streams
of lossless codecs that declare ``latent_step``, see :mod:`jaxrec.codec.sections`; a version-4 file
has version 5's layout and is read: version 5 draws SP-PFR's points from bin streams labelled by the
bin in the counter under shared row keys, and older SP-PFR headers, which lack its ``shared_keys``
parameter, mean ``shared_keys=False``, the per-bin keys they were drawn with), truncation, trailing bytes, checksum mismatch, values out of range -- and nothing else, on any
input: every count is bounded by the bytes that remain (or by a constant of the format, for ``C``),
so corrupt input cannot make it allocate or loop without bound.
"""

from __future__ import annotations

import dataclasses
import math
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import ml_dtypes
import numpy as np

from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import (
    CategoricalModel,
    IndexModel,
    PlanAlphabetModel,
    UniformModel,
    ZipfModel,
)

__all__ = [
    "FORMAT_VERSION",
    "ITEM_DTYPES",
    "MAGIC",
    "MAX_CHUNK_ITEMS",
    "Archive",
    "Header",
    "read",
    "write",
]

MAGIC = b"\x89JXR"
FORMAT_VERSION = 5
READABLE_VERSIONS = (2, 3, 4, 5)
WRITTEN_BY = {1: "0.1", 2: "0.2", 3: "0.3", 4: "0.4", 5: "0.5"}
"""The jaxrec release that writes each format version (named by the errors that refuse a file)."""
PRNG_IDS = {1: "threefry2x32"}
DTYPES = ("float32", "float64")
ITEM_DTYPES = (
    "bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
    "float16", "bfloat16", "float32", "float64",
)
"""Item dtypes an archive can record, by their numpy names (the u8 in the header is the position)."""
MAX_CHUNK_ITEMS = 2**16
"""Largest chunk: a decoder works on at most this many items at once, whatever the header says."""

MODEL_KINDS: dict[int, type] = {1: ZipfModel, 2: UniformModel, 3: CategoricalModel, 4: PlanAlphabetModel}
_KIND_OF = {cls: kind for kind, cls in MODEL_KINDS.items()}

_MAX_NAME = 64
_MAX_MODEL = 256
_MAX_NDIM = 32
_MAX_DEPTH = 2
_U32 = 2**32
_FLAG_FLOAT64 = 1
_FLAG_LOSSLESS = 2
_FLAG_SNAP_MARKS = 4
_CRC = struct.Struct("<I")

_T_NONE, _T_FALSE, _T_TRUE, _T_INT, _T_F32, _T_F64, _T_STR, _T_TUPLE = range(8)

Models = tuple[IndexModel | PlanAlphabetModel, ...]


def item_dtype(dtype: Any) -> np.dtype:
    """The numpy dtype of an :data:`ITEM_DTYPES` name."""
    return np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)


@dataclasses.dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the codec and the block plan.

    Attributes:
      coder_name: registry name of the coder (``CoderSpec.name``).
      coder_args: its static parameters, positional, in ``CoderSpec.params`` order.
      key_words: ``(w0, w1)``, the threefry2x32 key data of the archive.
      first_item: item ``i`` of the archive is item number ``first_item + i``.
      latent_size: ``D``.
      latent_dtype: ``"float32"`` or ``"float64"``: the dtype candidates were generated in.
      num_blocks: ``B``.
      plan_fingerprint: :attr:`jaxrec.codec.blocks.BlockPlan.fingerprint` of the encoder's plan.
      item_shape: shape of one item.
      item_dtype: name of the items' dtype (one of :data:`ITEM_DTYPES`).
      lossless: True when every chunk has a data stream (items entropy-coded given the latent).
      snap_marks: True when the data streams carry snap marks (a lossless codec with a
        ``latent_step``: :func:`jaxrec.codec.sections.snap_marks`); version 4 on.
      num_items: ``N``.
      chunk_items: ``C``, items per chunk (the last chunk may hold fewer).
      groups: the entropy models of the transmitted symbols, one tuple per group, in coding order.
      group_counts: items per group (summing to ``N``).
      model: a name of the model the archive was written with (``""`` = not recorded).
      prng_impl: the PRNG implementation (only ``"threefry2x32"`` exists).
      version: the format version.
    """

    coder_name: str
    coder_args: tuple[Any, ...]
    key_words: tuple[int, int]
    first_item: int
    latent_size: int
    latent_dtype: str
    num_blocks: int
    plan_fingerprint: int
    item_shape: tuple[int, ...]
    item_dtype: str
    lossless: bool
    num_items: int
    chunk_items: int
    groups: tuple[Models, ...]
    group_counts: tuple[int, ...]
    model: str = ""
    prng_impl: str = "threefry2x32"
    version: int = FORMAT_VERSION
    snap_marks: bool = False

    @property
    def num_chunks(self) -> int:
        return -(-self.num_items // self.chunk_items)

    def chunk_of(self, item: int) -> int:
        """The chunk holding item ``item`` (0-based position in the archive)."""
        return item // self.chunk_items

    def chunk_range(self, chunk: int) -> range:
        """Positions of the items of chunk ``chunk``."""
        return range(chunk * self.chunk_items, min((chunk + 1) * self.chunk_items, self.num_items))


@dataclasses.dataclass(frozen=True)
class Archive:
    """A parsed archive: the header and where each stream lies in ``data``.

    Attributes:
      header: the :class:`Header`.
      data: the archive's bytes.
      group_span: ``(start, end)`` of the group stream (empty when ``G == 1``).
      chunk_spans: per chunk, ``((start, end) of the index stream, (start, end) of the data
        stream)``; the data span is empty for lossy archives.
      header_bytes: bytes of the magic and the header, before the item table.
      table_bytes: bytes of the item table.
    """

    header: Header
    data: bytes
    group_span: tuple[int, int]
    chunk_spans: tuple[tuple[tuple[int, int], tuple[int, int]], ...]
    header_bytes: int
    table_bytes: int

    @property
    def group_stream(self) -> bytes:
        return self.data[slice(*self.group_span)]

    def index_stream(self, chunk: int) -> bytes:
        return self.data[slice(*self.chunk_spans[chunk][0])]

    def data_stream(self, chunk: int) -> bytes:
        return self.data[slice(*self.chunk_spans[chunk][1])]

    @property
    def payload_bytes(self) -> int:
        """Bytes of the streams."""
        return len(self.data) - self.header_bytes - self.table_bytes - _CRC.size


# ------------------------------------------------------------------------------------------------
# Writing


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _uint(name: str, value: Any, limit: int = 2**64) -> bytes:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < limit:
        raise InvalidArgumentError(f"{name} must be an int in [0, {limit}), got {value!r}")
    return _varint(int(value))


def _str(name: str, value: Any, limit: int) -> bytes:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a str, got {value!r}")
    raw = value.encode("utf-8")
    if len(raw) > limit:
        raise InvalidArgumentError(f"{name} is longer than {limit} bytes: {value!r}")
    return _varint(len(raw)) + raw


def _exact_f32(v: float) -> bool:
    """True when float32 holds ``v`` exactly (infinities and NaN included)."""
    if math.isnan(v):
        return True
    try:
        return struct.unpack("<f", struct.pack("<f", v))[0] == v
    except OverflowError:
        return False


def _value(value: Any, depth: int = 0) -> bytes:
    if value is None:
        return bytes([_T_NONE])
    if isinstance(value, (bool, np.bool_)):
        return bytes([_T_TRUE if value else _T_FALSE])
    if isinstance(value, (int, np.integer)):
        v = int(value)
        if not -(2**63) <= v < 2**63:
            raise InvalidArgumentError(f"integer parameter {v} does not fit in 64 bits")
        return bytes([_T_INT]) + _varint((v << 1) ^ (v >> 63))  # zigzag
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if _exact_f32(v):
            return bytes([_T_F32]) + struct.pack("<f", v)
        return bytes([_T_F64]) + struct.pack("<d", v)
    if isinstance(value, str):
        return bytes([_T_STR]) + _str("string parameter", value, 2**16)
    if isinstance(value, tuple) and depth < _MAX_DEPTH:
        return bytes([_T_TUPLE]) + _varint(len(value)) + b"".join(_value(v, depth + 1) for v in value)
    raise InvalidArgumentError(
        f"header values must be None, bool, int, float, str or (nested at most {_MAX_DEPTH}) tuples; got {value!r}"
    )


def _model(model: Any) -> bytes:
    kind = _KIND_OF.get(type(model))
    if kind is None:
        raise InvalidArgumentError(f"unknown entropy model {model!r}")
    return bytes([kind]) + b"".join(_value(getattr(model, f.name)) for f in dataclasses.fields(model))


def _check_header(header: Header, group_stream: bytes, chunks: Sequence[tuple[bytes, bytes]]) -> None:
    if header.version != FORMAT_VERSION:
        raise InvalidArgumentError(f"can only write format version {FORMAT_VERSION}, got {header.version!r}")
    if header.latent_dtype not in DTYPES:
        raise InvalidArgumentError(f"latent_dtype must be one of {DTYPES}, got {header.latent_dtype!r}")
    if header.item_dtype not in ITEM_DTYPES:
        raise InvalidArgumentError(f"item_dtype must be one of {ITEM_DTYPES}, got {header.item_dtype!r}")
    if len(header.item_shape) > _MAX_NDIM:
        raise InvalidArgumentError(f"item_shape has more than {_MAX_NDIM} axes: {header.item_shape!r}")
    if len(header.key_words) != 2:
        raise InvalidArgumentError(f"key_words must be two uint32 words, got {header.key_words!r}")
    if not 1 <= header.num_blocks <= header.latent_size:
        raise InvalidArgumentError(
            f"need 1 <= num_blocks <= latent_size, got {header.num_blocks} and {header.latent_size}"
        )
    if not 1 <= header.chunk_items <= MAX_CHUNK_ITEMS:
        raise InvalidArgumentError(f"chunk_items must be in [1, {MAX_CHUNK_ITEMS}], got {header.chunk_items!r}")
    _uint("first_item", header.first_item, _U32)
    _uint("num_items", header.num_items, _U32 + 1)
    if not 1 <= header.num_items <= _U32 - header.first_item:
        raise InvalidArgumentError(
            f"need num_items >= 1 and first_item + num_items <= 2**32, got {header.num_items!r}, {header.first_item!r}"
        )
    if not header.groups or len(header.group_counts) != len(header.groups) or sum(header.group_counts) != header.num_items:
        raise InvalidArgumentError(
            f"need one or more groups whose counts sum to num_items, got {len(header.groups)} groups, "
            f"counts {header.group_counts!r}"
        )
    if any(count < 1 for count in header.group_counts):
        raise InvalidArgumentError(f"every group must hold an item, got counts {header.group_counts!r}")
    if len({len(models) for models in header.groups}) != 1:
        raise InvalidArgumentError("every group must list the same number of models")
    if len(chunks) != header.num_chunks:
        raise InvalidArgumentError(f"expected {header.num_chunks} chunks, got {len(chunks)}")
    if bool(group_stream) and len(header.groups) == 1:
        raise InvalidArgumentError("a group stream is written only when there are several groups")
    for stream in (group_stream, *(s for chunk in chunks for s in chunk)):
        if len(stream) % 4:
            raise InvalidArgumentError(f"streams must be whole 32-bit words, got {len(stream)} bytes")
    if not header.lossless and any(data for _, data in chunks):
        raise InvalidArgumentError("a lossy archive has no data streams")
    if not isinstance(header.snap_marks, bool) or (header.snap_marks and not header.lossless):
        raise InvalidArgumentError(f"snap_marks must be a bool, True only for a lossless archive, got {header.snap_marks!r}")


def write(header: Header, group_stream: bytes, chunks: Sequence[tuple[bytes, bytes]]) -> bytes:
    """Serializes an archive.

    Args:
      header: the :class:`Header`.
      group_stream: the group numbers' stream (``b""`` when there is one group).
      chunks: per chunk, ``(index stream, data stream)``; data streams are ``b""`` when lossy.
    """
    _check_header(header, group_stream, chunks)
    prng_id = {v: k for k, v in PRNG_IDS.items()}.get(header.prng_impl)
    if prng_id is None:
        raise InvalidArgumentError(f"unknown PRNG implementation {header.prng_impl!r}")
    flags = (_FLAG_FLOAT64 if header.latent_dtype == "float64" else 0) | (_FLAG_LOSSLESS if header.lossless else 0)
    flags |= _FLAG_SNAP_MARKS if header.snap_marks else 0
    out = bytearray(MAGIC)
    out += bytes([FORMAT_VERSION, prng_id, flags])
    out += _str("model", header.model, _MAX_MODEL)
    out += _str("coder_name", header.coder_name, _MAX_NAME)
    out += _varint(len(header.coder_args)) + b"".join(_value(v) for v in header.coder_args)
    out += b"".join(_uint("key word", w, _U32) for w in header.key_words)
    out += _uint("first_item", header.first_item, _U32)
    out += _uint("latent_size", header.latent_size)
    out += _uint("num_blocks", header.num_blocks)
    _uint("plan_fingerprint", header.plan_fingerprint, _U32)
    out += _CRC.pack(int(header.plan_fingerprint))
    out += _varint(len(header.item_shape)) + b"".join(_uint("item_shape", d) for d in header.item_shape)
    out += bytes([ITEM_DTYPES.index(header.item_dtype)])
    out += _uint("num_items", header.num_items) + _uint("chunk_items", header.chunk_items)
    out += _varint(len(header.groups))
    for models in header.groups:
        out += _varint(len(models)) + b"".join(_model(m) for m in models)
    if len(header.groups) > 1:
        out += b"".join(_uint("group count", c) for c in header.group_counts)
        out += _varint(len(group_stream) // 4)
    for index, data in chunks:
        out += _varint(len(index) // 4) + (_varint(len(data) // 4) if header.lossless else b"")
    out += group_stream
    for index, data in chunks:
        out += index + data
    out += _CRC.pack(zlib.crc32(out))
    return bytes(out)


# ------------------------------------------------------------------------------------------------
# Reading


class _Reader:
    """Bounds-checked cursor over the header bytes; every failure is a FormatError."""

    def __init__(self, data: bytes, pos: int, end: int):
        self.data, self.pos, self.end = data, pos, end

    @property
    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int, what: str) -> bytes:
        if n > self.left:
            raise FormatError(f"truncated: {what} needs {n} bytes, {self.left} left")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def varint(self, what: str, limit: int = 2**64) -> int:
        value = shift = 0
        for _ in range(10):
            b = self.byte(what)
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if value >= limit:
                    raise FormatError(f"{what} = {value} is out of range (limit {limit})")
                return value
        raise FormatError(f"{what}: varint longer than 10 bytes")

    def count(self, what: str, per_item: int = 1) -> int:
        """A count of items that take at least ``per_item`` bytes each: bounded by what is left."""
        return self.varint(what, self.left // per_item + 1)

    def words(self, what: str) -> int:
        """A stream length in 32-bit words: more words than the bytes left is truncation."""
        value = self.varint(what)
        if value > self.left // 4:
            raise FormatError(f"truncated: a stream of {value} words is announced, {self.left} bytes are left")
        return value

    def string(self, what: str, limit: int) -> str:
        raw = self.take(self.varint(f"{what} length", limit + 1), what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{what} is not valid UTF-8: {raw!r}") from None

    def value(self, what: str, depth: int = 0) -> Any:
        tag = self.byte(what)
        if tag == _T_NONE:
            return None
        if tag in (_T_FALSE, _T_TRUE):
            return tag == _T_TRUE
        if tag == _T_INT:
            z = self.varint(what)
            return (z >> 1) ^ -(z & 1)
        if tag == _T_F32:
            return struct.unpack("<f", self.take(4, what))[0]
        if tag == _T_F64:
            return struct.unpack("<d", self.take(8, what))[0]
        if tag == _T_STR:
            return self.string(what, 2**16)
        if tag == _T_TUPLE and depth < _MAX_DEPTH:
            return tuple(self.value(what, depth + 1) for _ in range(self.count(f"{what} count")))
        raise FormatError(f"{what}: unknown value tag {tag}")

    def models(self) -> list[tuple[type, tuple]]:
        raw = []
        for _ in range(self.count("model count")):
            kind = self.byte("model kind")
            cls = MODEL_KINDS.get(kind)
            if cls is None:
                raise FormatError(f"unknown entropy model kind {kind}")
            raw.append((cls, tuple(self.value(f"{cls.__name__} field") for _ in dataclasses.fields(cls))))
        return raw


def _check_magic(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) and MAGIC.startswith(data):
        raise FormatError(f"truncated: {len(data)} bytes, not even the magic number")
    if data[: len(MAGIC)] != MAGIC:
        raise FormatError(f"bad magic {data[:4]!r}: not a jaxrec file (expected {MAGIC!r})")
    return data


def _build_models(raw: list[tuple[type, tuple]]) -> Models:
    models = []
    for cls, fields in raw:
        try:
            models.append(cls(*fields))
        except (InvalidArgumentError, TypeError, ValueError) as err:
            raise FormatError(f"invalid {cls.__name__} parameters {fields!r}: {err}") from None
    return tuple(models)


def read(data: bytes) -> Archive:
    """Parses and checks an archive written by :func:`write` (the CRC32 of the whole file included).

    Returns:
      The :class:`Archive`: header and stream locations.

    Raises:
      FormatError: bad magic, an unknown version (version 1 names jaxrec 0.1), truncated, trailing
        bytes, checksum mismatch or an invalid header value; the message says which.
      InvalidArgumentError: ``data`` is not bytes-like.
    """
    data = _check_magic(data)
    r = _Reader(data, len(MAGIC), max(len(data) - _CRC.size, len(MAGIC)))
    version = r.byte("version")
    if version == 1:
        raise FormatError(
            f"this is a version-1 jaxrec file (written by jaxrec {WRITTEN_BY[1]}); version 2 draws other "
            f"candidates from the same key, so it cannot be decoded here: decode it with jaxrec {WRITTEN_BY[1]}"
        )
    if version not in READABLE_VERSIONS:
        raise FormatError(f"unknown format version {version} (this jaxrec reads versions {READABLE_VERSIONS})")
    prng_id = r.byte("prng")
    flags = r.byte("flags")
    model = r.string("model", _MAX_MODEL)
    coder_name = r.string("coder name", _MAX_NAME)
    coder_args = tuple(r.value("coder argument") for _ in range(r.count("coder argument count")))
    key_words = (r.varint("key word 0", _U32), r.varint("key word 1", _U32))
    first_item = r.varint("first item", _U32)
    latent_size = r.varint("latent size")
    num_blocks = r.varint("num blocks")
    plan_fingerprint = _CRC.unpack(r.take(4, "plan fingerprint"))[0]
    ndim = r.varint("item ndim", _MAX_NDIM + 1)
    item_shape = tuple(r.varint("item shape") for _ in range(ndim))
    dtype_id = r.byte("item dtype")
    lossless = bool(flags & _FLAG_LOSSLESS)
    num_items = r.varint("num items", _U32 - first_item + 1)
    chunk_items = r.varint("chunk items", MAX_CHUNK_ITEMS + 1)
    if num_items < 1 or chunk_items < 1:
        raise FormatError(f"need num items >= 1 and chunk items >= 1, got {num_items} and {chunk_items}")
    raw_groups = [r.models() for _ in range(r.count("group count", 1))]
    if not raw_groups:
        raise FormatError("the archive lists no group of entropy models")
    several = len(raw_groups) > 1
    group_counts = tuple(r.varint("group item count", num_items + 1) for _ in raw_groups) if several else (num_items,)
    num_chunks = -(-num_items // chunk_items)
    streams_per_chunk = 1 + lossless
    if num_chunks * streams_per_chunk > r.left:  # every length takes a byte
        raise FormatError(f"truncated: the item table of {num_chunks} chunks does not fit in {r.left} bytes")
    header_bytes = r.pos
    group_words = r.words("group stream length") if several else 0
    lengths = [r.words("stream length") for _ in range(num_chunks * streams_per_chunk)]
    table_bytes = r.pos - header_bytes
    expected = r.pos + 4 * (group_words + sum(lengths)) + _CRC.size
    if len(data) < expected:
        raise FormatError(f"truncated: the header announces {expected} bytes, got {len(data)}")
    if len(data) > expected:
        raise FormatError(f"{len(data) - expected} trailing bytes after the checksum")
    stored = _CRC.unpack(data[-_CRC.size :])[0]
    if zlib.crc32(data[: -_CRC.size]) != stored:
        raise FormatError("checksum mismatch: the file is corrupt")
    # Semantic checks (after the checksum, so corruption is reported as such).
    if prng_id not in PRNG_IDS:
        raise FormatError(f"unknown PRNG id {prng_id}")
    known = _FLAG_FLOAT64 | _FLAG_LOSSLESS | (_FLAG_SNAP_MARKS if version >= 4 else 0)
    if flags & ~known:
        raise FormatError(f"unknown flags {flags:#04x}")
    if flags & _FLAG_SNAP_MARKS and not lossless:
        raise FormatError("the flags announce snap marks in a lossy archive (it has no data streams)")
    latent_dtype = DTYPES[flags & _FLAG_FLOAT64]
    if dtype_id >= len(ITEM_DTYPES):
        raise FormatError(f"unknown item dtype {dtype_id}")
    if not 1 <= num_blocks <= latent_size:
        raise FormatError(f"need 1 <= num blocks <= latent size, got {num_blocks} and {latent_size}")
    if sum(group_counts) != num_items or min(group_counts) < 1:
        raise FormatError(f"the groups' item counts {group_counts} do not add up to {num_items} items")
    groups = tuple(_build_models(raw) for raw in raw_groups)
    if len({len(models) for models in groups}) != 1:
        raise FormatError("the groups list different numbers of entropy models")
    pos = header_bytes + table_bytes
    group_span = (pos, pos + 4 * group_words)
    pos = group_span[1]
    spans = []
    for c in range(num_chunks):
        index = (pos, pos + 4 * lengths[streams_per_chunk * c])
        data_span = (index[1], index[1] + (4 * lengths[streams_per_chunk * c + 1] if lossless else 0))
        spans.append((index, data_span))
        pos = data_span[1]
    header = Header(
        coder_name=coder_name,
        coder_args=coder_args,
        key_words=key_words,
        first_item=first_item,
        latent_size=latent_size,
        latent_dtype=latent_dtype,
        num_blocks=num_blocks,
        plan_fingerprint=plan_fingerprint,
        item_shape=item_shape,
        item_dtype=ITEM_DTYPES[dtype_id],
        lossless=lossless,
        num_items=num_items,
        chunk_items=chunk_items,
        groups=groups,
        group_counts=group_counts,
        model=model,
        prng_impl=PRNG_IDS[prng_id],
        version=version,
        snap_marks=bool(flags & _FLAG_SNAP_MARKS),
    )
    return Archive(header, data, group_span, tuple(spans), header_bytes, table_bytes)
