"""The jaxrec file format: magic, version, header, entropy-coded payload, CRC32.

One file holds one item. Layout (integers little-endian; ``varint`` = unsigned LEB128 of at most
10 bytes; ``value`` = a typed value, see below)::

    magic          4 bytes   b"\\x89JXR"
    version        u8        FORMAT_VERSION (1)
    prng           u8        1 = threefry2x32 with partitionable bits (jaxrec.prng)
    flags          u8        bit 0: latent is float64 (else float32); bit 1: lossless (a data
                             section follows the index section); other bits 0
    coder name     varint length + ASCII     e.g. "pfr"
    coder args     varint count + values     the coder's static parameters, positional (the coder
                                             registry in jaxrec.codec names them)
    key            varint, varint            the two uint32 words of the file's threefry key
    item           varint                    item number: block b uses fold_in(fold_in(key, item), b)
    latent size    varint                    D
    num blocks     varint                    B
    plan           u32                       BlockPlan.fingerprint (CRC32 of the block layout)
    data shape     varint ndim + varints     shape of the item x
    models         varint count + per model: u8 kind (1 zipf, 2 uniform, 3 categorical,
                                             4 plan alphabet) and its fields as values, in dataclass order
    sections       varint count + varint lengths   1 (indices) or 2 (indices, data)
    payload        the sections' bytes, concatenated (constriction ANS words, little-endian u32)
    crc32          u32       zlib.crc32 of everything before it

Typed values: a tag byte, then 0 None, 1 False, 2 True, 3 int (zigzag varint), 4 float32 (4 bytes),
5 float64 (8 bytes), 6 str (varint length + UTF-8), 7 tuple (varint count + values; nesting depth at
most 2). Floats are written as float32 when that is exact, so a model parameter is reproduced bit
for bit.

:func:`read` raises :class:`~jaxrec.core.errors.FormatError` for anything malformed -- bad magic, unknown
version, truncation, trailing bytes, checksum mismatch, values out of range -- and nothing else, on
any input: every count is bounded by the bytes that remain, so corrupt input cannot make it
allocate or loop without bound.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxrec.core.errors import FormatError, InvalidArgumentError
from jaxrec.entropy import (
    CategoricalModel,
    IndexModel,
    PlanAlphabetModel,
    UniformModel,
    ZipfModel,
)

__all__ = ["FORMAT_VERSION", "MAGIC", "Header", "read", "write"]

MAGIC = b"\x89JXR"
FORMAT_VERSION = 1
PRNG_IDS = {1: "threefry2x32"}
DTYPES = ("float32", "float64")


MODEL_KINDS: dict[int, type] = {1: ZipfModel, 2: UniformModel, 3: CategoricalModel, 4: PlanAlphabetModel}
_KIND_OF = {cls: kind for kind, cls in MODEL_KINDS.items()}

_MAX_NAME = 64
_MAX_NDIM = 32
_MAX_DEPTH = 2
_U32 = 2**32
_FLAG_FLOAT64 = 1
_FLAG_LOSSLESS = 2
_CRC = struct.Struct("<I")

_T_NONE, _T_FALSE, _T_TRUE, _T_INT, _T_F32, _T_F64, _T_STR, _T_TUPLE = range(8)


@dataclasses.dataclass(frozen=True)
class Header:
    """Everything a decoder needs besides the codec and the block plan.

    Attributes:
      coder_name: registry name of the coder (``CoderSpec.name``).
      coder_args: its static parameters, positional, in ``CoderSpec.params`` order.
      key_words: ``(w0, w1)``, the threefry2x32 key data of the file.
      item: item number; block ``b`` of the file uses ``fold_in(fold_in(key, item), b)``.
      latent_size: ``D``.
      latent_dtype: ``"float32"`` or ``"float64"``: the dtype candidates were generated in.
      num_blocks: ``B``.
      plan_fingerprint: :attr:`jaxrec.codec.blocks.BlockPlan.fingerprint` of the encoder's plan.
      data_shape: shape of the item ``x``.
      lossless: True when a data section (``x`` entropy-coded given the latent) follows.
      models: the entropy models of the transmitted ``Code`` fields, in coding order.
      prng_impl: the PRNG implementation (only ``"threefry2x32"`` exists).
      version: the format version.
    """

    coder_name: str
    coder_args: tuple[Any, ...]
    key_words: tuple[int, int]
    item: int
    latent_size: int
    latent_dtype: str
    num_blocks: int
    plan_fingerprint: int
    data_shape: tuple[int, ...]
    lossless: bool
    models: tuple[IndexModel | PlanAlphabetModel, ...]
    prng_impl: str = "threefry2x32"
    version: int = FORMAT_VERSION


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
    if v != v:
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


def write(header: Header, sections: Sequence[bytes]) -> bytes:
    """Serializes a header and its payload sections (1 section, or 2 when ``header.lossless``)."""
    if header.version != FORMAT_VERSION:
        raise InvalidArgumentError(f"can only write format version {FORMAT_VERSION}, got {header.version!r}")
    prng_id = {v: k for k, v in PRNG_IDS.items()}.get(header.prng_impl)
    if prng_id is None:
        raise InvalidArgumentError(f"unknown PRNG implementation {header.prng_impl!r}")
    if header.latent_dtype not in DTYPES:
        raise InvalidArgumentError(f"latent_dtype must be one of {DTYPES}, got {header.latent_dtype!r}")
    if len(sections) != 1 + bool(header.lossless):
        raise InvalidArgumentError(f"expected {1 + bool(header.lossless)} sections, got {len(sections)}")
    if len(header.data_shape) > _MAX_NDIM:
        raise InvalidArgumentError(f"data_shape has more than {_MAX_NDIM} axes: {header.data_shape!r}")
    if len(header.key_words) != 2:
        raise InvalidArgumentError(f"key_words must be two uint32 words, got {header.key_words!r}")
    if not 1 <= header.num_blocks <= header.latent_size:
        raise InvalidArgumentError(
            f"need 1 <= num_blocks <= latent_size, got {header.num_blocks} and {header.latent_size}"
        )
    flags = (_FLAG_FLOAT64 if header.latent_dtype == "float64" else 0) | (_FLAG_LOSSLESS if header.lossless else 0)
    out = bytearray(MAGIC)
    out += bytes([FORMAT_VERSION, prng_id, flags])
    out += _str("coder_name", header.coder_name, _MAX_NAME)
    out += _varint(len(header.coder_args)) + b"".join(_value(v) for v in header.coder_args)
    out += b"".join(_uint("key word", w, _U32) for w in header.key_words)
    out += _uint("item", header.item, _U32)
    out += _uint("latent_size", header.latent_size)
    out += _uint("num_blocks", header.num_blocks)
    _uint("plan_fingerprint", header.plan_fingerprint, _U32)
    out += _CRC.pack(int(header.plan_fingerprint))
    out += _varint(len(header.data_shape)) + b"".join(_uint("data_shape", d) for d in header.data_shape)
    out += _varint(len(header.models)) + b"".join(_model(m) for m in header.models)
    out += _varint(len(sections)) + b"".join(_varint(len(s)) for s in sections)
    for section in sections:
        out += section
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


def _check_magic(data: Any) -> bytes:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidArgumentError(f"data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) and MAGIC.startswith(data):
        raise FormatError(f"truncated: {len(data)} bytes, not even the magic number")
    if data[: len(MAGIC)] != MAGIC:
        raise FormatError(f"bad magic {data[:4]!r}: not a jaxrec file (expected {MAGIC!r})")
    return data


def read(data: bytes) -> tuple[Header, tuple[bytes, ...]]:
    """Parses a file written by :func:`write`.

    Returns:
      ``(header, sections)``: the :class:`Header` and the payload sections (index bytes, then the
      data bytes for a lossless file).

    Raises:
      FormatError: bad magic, unknown version, truncated, trailing bytes, checksum mismatch or an
        invalid header value; the message says which.
      InvalidArgumentError: ``data`` is not bytes-like.
    """
    data = _check_magic(data)
    r = _Reader(data, len(MAGIC), max(len(data) - _CRC.size, len(MAGIC)))
    version = r.byte("version")
    if version != FORMAT_VERSION:
        raise FormatError(f"unknown format version {version} (this jaxrec reads version {FORMAT_VERSION})")
    prng_id = r.byte("prng")
    flags = r.byte("flags")
    coder_name = r.string("coder name", _MAX_NAME)
    coder_args = tuple(r.value("coder argument") for _ in range(r.count("coder argument count")))
    key_words = (r.varint("key word 0", _U32), r.varint("key word 1", _U32))
    item = r.varint("item", _U32)
    latent_size = r.varint("latent size")
    num_blocks = r.varint("num blocks")
    plan_fingerprint = _CRC.unpack(r.take(4, "plan fingerprint"))[0]
    ndim = r.varint("data ndim", _MAX_NDIM + 1)
    data_shape = tuple(r.varint("data shape") for _ in range(ndim))
    models_raw = []
    for _ in range(r.count("model count", 2)):
        kind = r.byte("model kind")
        cls = MODEL_KINDS.get(kind)
        if cls is None:
            raise FormatError(f"unknown entropy model kind {kind}")
        models_raw.append((cls, tuple(r.value(f"{cls.__name__} field") for _ in dataclasses.fields(cls))))
    lengths = [r.varint("section length") for _ in range(r.count("section count"))]
    expected = r.pos + sum(lengths) + _CRC.size
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
    if flags & ~(_FLAG_FLOAT64 | _FLAG_LOSSLESS):
        raise FormatError(f"unknown flags {flags:#04x}")
    lossless = bool(flags & _FLAG_LOSSLESS)
    if len(lengths) != 1 + lossless:
        raise FormatError(f"expected {1 + lossless} payload sections, got {len(lengths)}")
    if not 1 <= num_blocks <= latent_size:
        raise FormatError(f"need 1 <= num_blocks <= latent size, got {num_blocks} and {latent_size}")
    models = []
    for cls, fields in models_raw:
        try:
            models.append(cls(*fields))
        except (InvalidArgumentError, TypeError, ValueError) as err:
            raise FormatError(f"invalid {cls.__name__} parameters {fields!r}: {err}") from None
    sections, pos = [], r.pos
    for n in lengths:
        sections.append(data[pos : pos + n])
        pos += n
    header = Header(
        coder_name=coder_name,
        coder_args=coder_args,
        key_words=key_words,
        item=item,
        latent_size=latent_size,
        latent_dtype=DTYPES[flags & _FLAG_FLOAT64],
        num_blocks=num_blocks,
        plan_fingerprint=plan_fingerprint,
        data_shape=data_shape,
        lossless=lossless,
        models=tuple(models),
        prng_impl=PRNG_IDS[prng_id],
        version=version,
    )
    return header, tuple(sections)
